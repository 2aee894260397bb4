"""The command line: the demo end to end on a tiny budget, errors without tracebacks."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hparams_jax import ConfigError, cli
from hparams_jax.range_test import Family, RangeTestResult
from hparams_jax.train.tensorboard import read_scalars


def test_demo_tunes_then_compares_with_hand_set_one_cycle_and_constant(tmp_path, capsys):
    assert cli.main(["demo", "--workdir", str(tmp_path), "--epochs", "1", "--range-steps", "50",
                     "--budget", "25x", "--train-examples", "1024", "--eval-examples", "256",
                     "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "next step:" in out and "test accuracy" in out
    record = json.loads((tmp_path / "tune.json").read_text())
    assert [d["stage"] for d in record["decisions"]] == [
        "lr_range", "batch_size", "momentum", "weight_decay", "one_cycle"]
    # 25 runs' examples (25 x 1024) are 200 steps at batch 128: the scout and one range test
    assert record["budget"]["budget"] == "25x" and record["budget"]["budget_steps"] == 200
    assert record["budget"]["cuts"]
    first = record["decisions"][0]
    assert "exponential scout" in first["attempts"][0]  # the demo gives no stop
    assert all(c["usable_steps"] >= 50 for c in first["candidates"])
    tuned = json.loads((tmp_path / "one_cycle" / "config.json").read_text())
    bounds = record["decisions"][3]["bounds"]
    assert (tuned["max_lr"], tuned["min_lr"]) == (bounds["max_lr"], bounds["min_lr"])
    hand = json.loads((tmp_path / "hand_set" / "config.json").read_text())
    assert (hand["lr_policy"], hand["min_lr"], hand["max_lr"]) == ("one_cycle", 0.01, 0.1)
    assert tuned["members"] == hand["members"] == [{"seed": 0}, {"seed": 1}]
    constant = json.loads((tmp_path / "constant" / "config.json").read_text())
    assert (constant["lr_policy"], constant["max_lr"]) == ("constant", 0.01)
    assert tuned["epochs"] == hand["epochs"] == constant["epochs"] == 1
    text = (tmp_path / "comparison.md").read_text()
    decisions, table, verdict = text.strip().split("\n\n")
    assert decisions.startswith("| stage | candidate | usable steps | seeds |")
    table = table.splitlines()
    assert [row.split(" | ")[0] for row in table[2:]] == [
        "| tuned 1cycle", "| hand-set 1cycle", "| constant"]
    assert " | 0.95-0.85 | " in table[3]  # the hand-set cyclical momentum, as max-min
    assert " ± " in table[2] and " ± " in table[3]  # mean ± std over the 2 seeds
    assert verdict.startswith("verdict: tuned ") and "tie margin" in verdict
    assert "## 5. The 1cycle run" in (tmp_path / "report.md").read_text()
    for name in ("lr_range.png", "one_cycle.png", "hand_set.png", "constant.png",
                 "comparison.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_bad_value_is_one_line_error_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hparams_jax", "demo", "--workdir",
                           str(tmp_path), "--epochs", "-1"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "epochs=-1.0" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_diagnose_needs_a_training_workdir(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hparams_jax", "diagnose", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no metrics.jsonl" in proc.stderr


def test_range_test_and_diagnose_commands(tmp_path, capsys):
    common = ["--model", "lenet", "--batch-size", "32", "--train-examples", "512"]
    assert cli.main(["range-test", *common, "--start", "0.001", "--stop", "0.2", "--steps", "20",
                     "--eval-examples", "128", "--tensorboard",
                     "--workdir", str(tmp_path / "rt")]) == 0
    saved = json.loads((tmp_path / "rt" / "range_test.json").read_text())
    assert {"min_lr", "max_lr", "method"} <= set(saved["suggestion"])
    assert len(saved["learning_rate"]) == len(saved["train_loss"]) > 0
    assert (tmp_path / "rt" / "range_test.png").stat().st_size > 10_000
    assert "max_lr =" in capsys.readouterr().out
    # TensorBoard: the loss and the LR of every step, the held-out loss at each evaluation
    result = RangeTestResult.load(tmp_path / "rt" / "range_test.json")
    scalars = read_scalars(tmp_path / "rt" / "tensorboard")
    for key in ("train_loss", "learning_rate"):
        assert scalars[key] == [(s + 1, pytest.approx(x, rel=1e-6))
                                for s, x in enumerate(getattr(result, key))]
    assert scalars["eval_loss"] == [(int(s), pytest.approx(x, rel=1e-6))
                                    for s, x in zip(result.eval_step, result.eval_loss)]

    assert cli.main(["range-test", *common, "--start", "0.001", "--stop", "0.2", "--steps", "20",
                     "--eval-examples", "128", "--family", "momentum=0.9,0.95:0.85",
                     "--tensorboard", "--workdir", str(tmp_path / "family")]) == 0
    family = Family.load(tmp_path / "family" / "range_test.json")
    assert (family.param, family.values) == ("momentum", [0.9, (0.95, 0.85)])
    assert all(0 < len(r.learning_rate) == len(r.train_loss) <= 20 for r in family.results)
    assert "momentum=0.9:" in capsys.readouterr().out
    runs = sorted(p.name for p in (tmp_path / "family" / "tensorboard").iterdir() if p.is_dir())
    assert runs == ["momentum=0.9", "momentum=0.95-0.85"]  # one TensorBoard run per member
    for name, r in zip(runs, family.results):
        lr = read_scalars(tmp_path / "family" / "tensorboard" / name)["learning_rate"]
        assert [x for _, x in lr] == pytest.approx(r.learning_rate, rel=1e-6)

    assert cli.main(["train", *common, "--steps", "16", "--min-lr", "0.003", "--max-lr", "0.03",
                     "--log-every", "4", "--eval-every", "4",
                     "--no-progress", "--workdir", str(tmp_path / "run")]) == 0
    assert cli.main(["diagnose", str(tmp_path / "run")]) == 0
    assert "verdict:" in capsys.readouterr().out
    assert (tmp_path / "run" / "diagnosis.png").exists()


@pytest.mark.parametrize("argv", [["train", "--runs", "0"], ["train", "--runs", "-2"],
                                  ["experiment", "run", "x", "--runs", "0"]])
def test_runs_must_be_positive(argv, tmp_path, capsys):
    assert cli.main([*argv, "--workdir" if argv[0] == "train" else "--root",
                     str(tmp_path / "run")]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith(f"hparams-jax: error: --runs {argv[-1]} is not allowed")
    assert "must be a positive integer" in message and len(message.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_config_error_is_one_line_exit_2_before_anything_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hparams_jax", "train", "--set", "batch_size=0",
                           "--workdir", str(tmp_path / "run")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("hparams-jax: error: batch_size=0 is not allowed: batch_size "
                                   "must be a positive integer.")
    assert not (tmp_path / "run").exists()


def test_any_other_error_surfaces_with_its_traceback_exit_1(tmp_path):
    # a ValueError from inside the engine (as JAX or Flax raise them) is a bug to see, not a
    # message to shorten
    script = ("import sys\n"
              "import hparams_jax.train as train\n"
              "def fit(config):\n"
              "    raise ValueError('Incompatible shapes for broadcasting: (2, 3) and (4,)')\n"
              "train.fit = fit\n"
              "from hparams_jax.cli import main\n"
              f"sys.exit(main(['train', '--workdir', {str(tmp_path)!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "in fit" in proc.stderr
    assert proc.stderr.strip().endswith(
        "ValueError: Incompatible shapes for broadcasting: (2, 3) and (4,)")


def test_each_expected_error_has_its_exit_status(monkeypatch, capsys):
    import signal

    from hparams_jax.data import DatasetUnavailableError
    from hparams_jax.train import (CheckpointMismatchError, DivergenceError, TrainingInterrupted,
                                   WorkdirLocked, WorkdirWriteError)

    for error, status in ((ConfigError("max_lr=-1 is not allowed"), 2),
                          (DatasetUnavailableError("cifar10 is not on this machine"), 2),
                          (WorkdirLocked(Path("runs/x"), 4242), 2),
                          (CheckpointMismatchError("params.fc3 only in this program"), 2),
                          (DivergenceError("loss is nan at step 3"), 3),
                          (WorkdirWriteError("could not write the checkpoint of step 8"), 1),
                          (TrainingInterrupted("stopped at step 8", signal.SIGINT), 130),
                          (TrainingInterrupted("stopped at step 8", signal.SIGTERM), 143)):
        def fail(args, error=error):
            raise error

        monkeypatch.setattr(cli, "_diagnose", fail)
        assert cli.main(["diagnose", "somewhere"]) == status
        assert capsys.readouterr().err.strip().endswith(str(error))


def test_the_demo_verdict_reads_the_tie_margin_and_says_why_the_tuned_run_trails():
    from hparams_jax import demo
    from hparams_jax.train import TrainConfig

    def summary(accuracies, train_loss=0.3):
        return {"members": [{"test_accuracy": a, "test_loss": 0.3, "train_loss": train_loss}
                            for a in accuracies]}

    tuned, hand = TrainConfig(batch_size=256, max_lr=0.2), TrainConfig(max_lr=0.1)
    tie = demo.verdict(summary([0.905, 0.907]), summary([0.906, 0.908]), tuned, hand)
    assert tie.startswith("verdict: tuned 0.9060 - hand-set 0.9070 = -0.0010, tie margin ")
    assert "a tie" in tie
    trails = demo.verdict(summary([0.900, 0.901], 0.35), summary([0.912, 0.913]), tuned, hand)
    assert "the tuned 1cycle trails the hand-set one" in trails
    assert "batch_size 256 (hand-set 128); max_lr 0.2 (hand-set 0.1)" in trails
    assert "train loss 0.3500 vs 0.3000" in trails and "fits the training set less" in trails
    ahead = demo.verdict(summary([0.92, 0.921]), summary([0.90, 0.901]), tuned, hand)
    assert ahead.endswith("the tuned 1cycle is more accurate.")
