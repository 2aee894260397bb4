"""The release: `python -m build` makes an sdist and a wheel that `twine check` passes, the wheel
holds the package alone, the version lives in one place, the extras match the code that names
them, and the wheel installed with its core dependencies alone into a fresh virtual environment
runs the README's optax quickstart and names the extra a missing part needs.

The fresh environment installs from wheel files only (`pip install --no-index`): the core
dependencies' wheels are downloaded once into a wheelhouse that later runs reuse offline
(`$HPARAMS_JAX_WHEELHOUSE`, by default `wheelhouse/` in the environment running the tests)."""

import email
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

import hparams_jax
from hparams_jax import _extras

ROOT = Path(__file__).resolve().parents[1]
# Not part of a release, nor needed to build one.
NOT_COPIED = (".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__",
              ".pytest_cache", ".mypy_cache", ".ruff_cache", "checkpoints", "tensorboard")
CORE = {"jax", "optax", "chex", "numpy"}


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """The sdist and the wheel, built from a copy of this tree (its tests, records and
    notebooks included) without build isolation, so offline, with this environment's
    setuptools."""
    src = tmp_path_factory.mktemp("src") / "hparams_jax"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_COPIED))
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                           str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def wheel_of(dist: Path) -> Path:
    (wheel,) = dist.glob("*.whl")
    return wheel


def test_build_makes_an_sdist_and_a_wheel_that_twine_check_passes(dist):
    version = hparams_jax.__version__
    assert sorted(p.name for p in dist.iterdir()) == [
        f"hparams_jax-{version}-py3-none-any.whl", f"hparams_jax-{version}.tar.gz"]
    proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict",
                           *map(str, sorted(dist.iterdir()))], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == 2, proc.stdout


def test_the_wheel_holds_the_package_alone_and_the_sdist_no_tests_records_or_notebooks(dist):
    names = zipfile.ZipFile(wheel_of(dist)).namelist()
    info = f"hparams_jax-{hparams_jax.__version__}.dist-info/"
    assert all(n.startswith(("hparams_jax/", info)) for n in names), sorted(
        n for n in names if not n.startswith(("hparams_jax/", info)))
    packaged = {n for n in names if n.startswith("hparams_jax/")}
    in_tree = {p.relative_to(ROOT).as_posix() for p in (ROOT / "hparams_jax").rglob("*.py")}
    assert packaged == in_tree  # every module, and nothing else (no caches)
    assert f"{info}licenses/LICENSE" in names

    (sdist,) = dist.glob("*.tar.gz")
    members = [m.split("/", 1)[1] for m in tarfile.open(sdist).getnames() if "/" in m]
    assert not [m for m in members if m.startswith(("tests", "experiments", "notebooks"))
                or m.endswith((".ipynb", ".jsonl"))]
    assert {"README.md", "LICENSE", "pyproject.toml", "hparams_jax/__init__.py"} <= set(members)


def test_version_in_one_place_classifiers_urls_and_core_dependencies(dist):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    with zipfile.ZipFile(wheel_of(dist)) as wheel:
        meta = email.message_from_bytes(wheel.read(
            f"hparams_jax-{hparams_jax.__version__}.dist-info/METADATA"))
    assert meta["Version"] == hparams_jax.__version__
    assert meta["License-Expression"] == "Apache-2.0"
    assert any(c.startswith("Programming Language :: Python :: 3")
               for c in meta.get_all("Classifier"))
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Source", "Issues"} <= set(urls)
    requires = meta.get_all("Requires-Dist")
    core = {_name(r) for r in requires if "extra ==" not in r}
    assert core == CORE
    extras = set(meta.get_all("Provides-Extra"))
    assert {"train", "tensorboard", "all"} <= extras


def _name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()


def test_the_extras_named_in_the_code_are_those_pyproject_installs():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for extra, modules in _extras.EXTRAS.items():
        assert {d.lower() for d in modules.values()} == {_name(r) for r in extras[extra]}, extra
    assert extras["all"] == ["hparams_jax[train,tensorboard,imagenet]"]


# --- the core install ---------------------------------------------------------------------

CORE_CHECKS = r"""
import subprocess, sys
import hparams_jax
from hparams_jax import diagnose, schedules, transforms
from hparams_jax.errors import MissingExtraError
from hparams_jax.range_test import Family, RangeTestResult
from hparams_jax.train import History, TrainConfig, tensorboard
for name in ("flax", "orbax", "tensorflow_datasets", "matplotlib", "tqdm", "tensorboardX"):
    try:
        __import__(name)
    except ImportError:
        continue
    raise AssertionError(f"{name} is importable in the core environment")
try:
    from hparams_jax.train import fit
except MissingExtraError as err:
    print("fit:", err)
try:
    tensorboard.for_run(TrainConfig(tensorboard=True), "runs/x")
except MissingExtraError as err:
    print("tensorboard:", err)
cli = subprocess.run([sys.executable, "-m", "hparams_jax", "train", "--steps", "2"],
                     capture_output=True, text=True)
print("cli:", cli.returncode, cli.stderr.strip())
"""


def readme_quickstart() -> str:
    """The Python blocks of the README's "Quickstart for optax users" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart for optax users", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "no python block in the quickstart"
    return "\n".join(blocks)


@pytest.fixture(scope="module")
def wheelhouse(dist) -> Path:
    """Wheels of the core dependencies: those already in the wheelhouse, else downloaded."""
    folder = Path(os.environ.get("HPARAMS_JAX_WHEELHOUSE", Path(sys.prefix) / "wheelhouse"))
    folder.mkdir(parents=True, exist_ok=True)
    wheel = str(wheel_of(dist))
    offline = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-index",
                              "--find-links", str(folder), "-d", str(folder), wheel],
                             capture_output=True, text=True)
    if offline.returncode != 0:
        online = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d",
                                 str(folder), wheel], capture_output=True, text=True)
        assert online.returncode == 0, online.stderr[-3000:]
    return folder


def test_core_install_runs_the_readme_quickstart_and_names_the_missing_extras(
        dist, wheelhouse, tmp_path):
    venv = tmp_path / "core"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheelhouse),
         str(wheel_of(dist))], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"],
                            capture_output=True, text=True, check=True).stdout
    installed = {line.split("==")[0].lower() for line in listed.split()}
    assert CORE <= installed and not {"flax", "orbax-checkpoint", "matplotlib",
                                      "tensorflow-datasets", "tqdm"} & installed, listed

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    quick = subprocess.run([python, "-c", readme_quickstart()], capture_output=True,
                           text=True, cwd=tmp_path, env=env)
    assert quick.returncode == 0, quick.stderr[-3000:]
    lines = quick.stdout.splitlines()
    assert lines[0].startswith("step   0") and lines[-2].startswith("step 299"), quick.stdout
    assert "'b1': 0.95" in lines[-1]

    checks = subprocess.run([python, "-c", CORE_CHECKS], capture_output=True, text=True,
                            cwd=tmp_path, env=env)
    assert checks.returncode == 0, checks.stderr[-3000:]
    out = checks.stdout
    assert re.search(r'^fit: .*flax.*pip install "hparams_jax\[train\]"$', out, re.M), out
    assert re.search(r'^tensorboard: .*tensorboardX.*pip install "hparams_jax\[tensorboard\]"$',
                     out, re.M), out
    cli = re.search(r"^cli: (\d+) (.*)$", out, re.M)
    assert cli and cli.group(1) == "2", out  # a one-line message, no traceback
    assert cli.group(2).startswith("hparams-jax: error: ") and "hparams_jax[train]" in out
