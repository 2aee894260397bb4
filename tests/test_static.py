"""The static checks `make test` runs first: the lint rules in pyproject.toml catch what they
are meant to catch (a rule set that selects nothing would pass any tree)."""

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
