"""The own-model cases of `experiments/own_model.py` (README, "Your own model") at the tests'
size: a functional model on named tabular inputs and an NNX transformer with AdamW and the
exponential range test run end to end through `hparams_jax.Task` and write their records. (The
Flax tutorial's CNN runs in `notebooks/04_your_own_model.ipynb`, tested with the notebooks.)"""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).resolve().parents[1] / "experiments" / "own_model.py"


@pytest.fixture(scope="module")
def own_model():
    spec = importlib.util.spec_from_file_location("own_model", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["own_model"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_tabular_case_runs_a_functional_model_on_named_inputs(own_model, tmp_path):
    record = own_model.run_case("tabular", "test", tmp_path, figures=False)
    s = record["suggestion"]
    assert 1e-5 <= s["min_lr"] < s["max_lr"] <= 0.1 and s["usable_steps"] > 0
    (run,) = record["runs"]
    assert run["test_accuracy"] is None  # the task reports no accuracy, its own MAE instead
    rows = [json.loads(line) for line in open(tmp_path / "tabular" / "one_cycle"
                                              / "metrics.jsonl")]
    assert any("test_mae" in r for r in rows) and np.isfinite(run["test_loss"])
    config = json.loads((tmp_path / "tabular" / "one_cycle" / "config.json").read_text())
    assert config["model"] == "task:friedman1_mlp"
    again = own_model.run_case("tabular", "test", tmp_path, figures=False)  # resumes: records
    assert again["suggestion"] == record["suggestion"] and again["runs"] == record["runs"]


def test_transformer_case_reads_an_exponential_adamw_range_test(own_model, tmp_path):
    record = own_model.run_case("transformer", "test", tmp_path, figures=False,
                                study=False)
    s = record["suggestion"]
    assert s["max_lr"] <= 1.0 and set(s["alternatives"]) >= {"steepest", "valley"}
    assert [r["factor"] for r in record["runs"]] == [1.0, 0.5, 2.0]
    config = json.loads((tmp_path / "transformer" / "one_cycle" / "config.json").read_text())
    assert config["optimizer"] == "adamw" and len(config["members"]) == 3
