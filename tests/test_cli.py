"""The command line: the demo's output files, errors without tracebacks."""

import subprocess
import sys

from hparams_jax import cli


def test_demo_prints_table_and_saves_png(tmp_path, capsys):
    assert cli.main(["demo", "--workdir", str(tmp_path), "--steps", "200"]) == 0
    out = capsys.readouterr().out
    assert "learning_rate" in out and "momentum" in out
    png = tmp_path / "schedules.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_value_is_one_line_error_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hparams_jax", "demo", "--workdir",
                           str(tmp_path), "--steps", "0"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "total_steps=0" in proc.stderr
