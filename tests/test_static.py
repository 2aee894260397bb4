"""The static checks `make test` runs first: the lint rules in pyproject.toml catch what they
are meant to catch (a rule set that selects nothing would pass any tree); and the public API's
documentation: Args/Returns (or Attributes) and runnable Examples, which pytest runs as
doctests."""

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_lint_rules_catch_planted_errors(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("import os\n\n\ndef f():\n    return undefined_name\n\n\n"
                       f"LONG = {'1' * 100!r}\n")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache",
                           "--config", str(ROOT / "pyproject.toml"), str(planted)],
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for code in ("F401", "F821", "E501"):  # unused import, undefined name, line over 100
        assert f"{code} " in proc.stdout, (code, proc.stdout)


# The documented public API: every public function and class defined in these modules, and the
# names these packages export from the given module (prefix).
API_MODULES = ("hparams_jax.schedules.cyclical", "hparams_jax.schedules.decay",
               "hparams_jax.schedules.warmup", "hparams_jax.transforms.build",
               "hparams_jax.transforms.state", "hparams_jax.range_test.run",
               "hparams_jax.range_test.result", "hparams_jax.range_test.read",
               "hparams_jax.diagnose")
API_EXPORTS = {"hparams_jax.train": "hparams_jax.train.",
               "hparams_jax.schedules": "hparams_jax.schedules.",
               "hparams_jax.transforms": "hparams_jax.transforms.",
               "hparams_jax.range_test": "hparams_jax.range_test.",
               "hparams_jax.models": "hparams_jax.models.registry",
               "hparams_jax.data": "hparams_jax.data.sources"}
SECTION = re.compile(r"^\s*(Args|Attributes|Returns|Raises|Examples):\s*$", re.M)


def public_api() -> list[tuple[str, object]]:
    found = {}
    for name in API_MODULES:
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if (not attr.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
                    and obj.__module__ == name):
                found[f"{name}.{attr}"] = obj
    for package, prefix in API_EXPORTS.items():
        module = importlib.import_module(package)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and \
                    obj.__module__.startswith(prefix):
                found[f"{package}.{attr}"] = obj
    return sorted(found.items())


def sections(doc: str) -> dict[str, str]:
    """The text of each Google-style section of a docstring."""
    parts = SECTION.split(doc)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def undocumented(name: str, obj) -> list[str]:
    """What `obj`'s docs lack: Args (every parameter) or Attributes, Returns, and Examples with
    at least one `>>>` line; for a class, a docstring on every public method and property;
    for an exception, a docstring."""
    doc = inspect.getdoc(obj) or ""
    if not doc:
        return [f"{name}: no docstring"]
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return []
    found = sections(doc)
    missing = []
    if ">>>" not in found.get("Examples", ""):
        missing.append(f"{name}: no Examples section with a >>> line")
    if inspect.isclass(obj):
        if "Args" not in found and "Attributes" not in found:
            missing.append(f"{name}: no Args or Attributes section")
        for attr, member in vars(obj).items():
            if attr.startswith("_"):
                continue
            if isinstance(member, (classmethod, staticmethod)):
                member = member.__func__
            if (inspect.isfunction(member) or isinstance(member, property)) and \
                    not inspect.getdoc(member):
                missing.append(f"{name}.{attr}: no docstring")
        return missing
    if "Returns" not in found:
        missing.append(f"{name}: no Returns section")
    params = [p for p in inspect.signature(obj).parameters.values()
              if p.name not in ("self", "cls")]
    for p in params:
        label = {p.VAR_KEYWORD: "**", p.VAR_POSITIONAL: "*"}.get(p.kind, "") + p.name
        if not re.search(rf"^\s*{re.escape(label)}:", found.get("Args", ""), re.M):
            missing.append(f"{name}: parameter {label!r} not in its Args section")
    return missing


def test_public_api_is_documented_with_examples():
    api = public_api()
    names = {name for name, _ in api}
    for expected in ("hparams_jax.schedules.one_cycle", "hparams_jax.transforms.sgd",
                     "hparams_jax.train.TrainConfig", "hparams_jax.train.fit",
                     "hparams_jax.range_test.lr_range_test", "hparams_jax.diagnose.diagnose",
                     "hparams_jax.models.create", "hparams_jax.data.load"):
        assert expected in names, (expected, sorted(names))
    missing = [line for name, obj in api for line in undocumented(name, obj)]
    assert not missing, "\n".join(missing)


def test_pytest_collects_the_examples_as_doctests():
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "hparams_jax/schedules", "hparams_jax/train/loop.py"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for item in ("hparams_jax/schedules/cyclical.py::hparams_jax.schedules.cyclical.one_cycle",
                 "hparams_jax/train/loop.py::hparams_jax.train.loop.fit"):
        assert item in proc.stdout.splitlines(), proc.stdout
