"""The Colab notebooks in `notebooks/`: each runs top to bottom on tiny settings, and each is
stored without outputs.

Tiny settings are injected papermill-style: a code cell tagged `injected-parameters`, inserted
right after the cell tagged `parameters`, re-assigns the size knobs (`TINY` below; every name it
sets must be assigned in the notebook's parameters cell, so a renamed knob fails here instead of
being silently ignored). The notebooks run with `nbclient` in a temporary folder (their `runs/`
land there) on the `python3` kernel, which jupyter_client starts with this interpreter
(`sys.executable`, i.e. the venv's python); a first injected cell checks that.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# The whole set of notebooks the README documents (a missing or extra file fails a test).
EXPECTED = ["01_optax_quickstart", "02_lr_range_test", "03_one_cycle_vs_baseline",
            "04_your_own_model"]

_SMALL = {"DATASET": "fashion_mnist", "TRAIN_EXAMPLES": 1024, "EVAL_EXAMPLES": 256}
TINY = {
    "01_optax_quickstart": {**_SMALL, "EPOCHS": 2, "LOG_EVERY": 2},
    "02_lr_range_test": {**_SMALL, "MODEL": "lenet", "RANGE_STEPS": 50, "BATCH_SIZES": [128],
                         "MOMENTA": [0.9, 0.95], "WEIGHT_DECAYS": [1e-3, 1e-5],
                         "TUNE_EPOCHS": 1, "TUNE_SEEDS": 1},
    "03_one_cycle_vs_baseline": {**_SMALL, "MODEL": "lenet", "EPOCHS": 2, "EVALS": 16,
                                 "RANGE_STEPS": 40},
    "04_your_own_model": {"TRAIN_EXAMPLES": 512, "EVAL_EXAMPLES": 256, "BATCH_SIZE": 64,
                          "EPOCHS": 1, "RANGE_STEPS": 30, "TUNE_EPOCHS": 1,
                          "TUNE_RANGE_STEPS": 50, "MOMENTA": [0.9], "WEIGHT_DECAYS": [5e-4],
                          "TUNE_SEEDS": 1},
}
CELL_TIMEOUT_S = 300


def _parameters_index(nb) -> int:
    found = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(found) == 1, f"expected one cell tagged 'parameters', found {len(found)}"
    return found[0]


def _assigned_names(source: str) -> set[str]:
    return set(re.findall(r"^([A-Z_][A-Z0-9_]*)\s*=", source, flags=re.M))


def _with_tiny_settings(nb, overrides: dict):
    i = _parameters_index(nb)
    unknown = set(overrides) - _assigned_names(nb.cells[i].source)
    assert not unknown, f"overrides {sorted(unknown)} are not knobs of the parameters cell"
    injected = nbformat.v4.new_code_cell(
        "# Parameters injected by tests/test_notebooks.py\n"
        + "".join(f"{k} = {v!r}\n" for k, v in overrides.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    check = nbformat.v4.new_code_cell(
        f"import sys\nassert sys.prefix == {sys.prefix!r}, sys.executable")
    nb.cells.insert(i + 1, injected)
    nb.cells.insert(0, check)
    return nb


def test_the_expected_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {cell.get('id')} has outputs: clear them"
            assert cell.execution_count is None, f"cell {cell.get('id')} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_installs_from_the_repository_the_readme_links(path):
    """The install cell names the repository once; the README's Colab badge points there."""
    nb = nbformat.read(path, as_version=4)
    install = nb.cells[1].source
    repos = re.findall(r'^REPO = "https://github\.com/([^/"]+/[^/"]+)"', install, flags=re.M)
    assert len(repos) == 1, "the install cell must set REPO once"
    assert 'git+{REPO}' in install and "import hparams_jax" in install
    readme = (ROOT / "README.md").read_text()
    badge = f"https://colab.research.google.com/github/{repos[0]}/blob/main/notebooks/{path.name}"
    assert badge in readme
    assert badge in nb.cells[0].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_tiny_settings(path, tmp_path):
    nb = _with_tiny_settings(nbformat.read(path, as_version=4), TINY[path.stem])
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the failing cell's traceback
    assert any(tmp_path.glob("runs/*/*.png")), "the notebook wrote no figure"
    for cell in nb.cells:  # each figure shows under its cell, as a Colab user sees it
        if cell.cell_type == "code" and "plots.plot_" in cell.source:
            kinds = {kind for output in cell.outputs for kind in output.get("data", {})}
            assert "image/png" in kinds, f"cell {cell.get('id')} shows no figure"
