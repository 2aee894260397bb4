"""TensorBoard output (`hparams_jax.train.tensorboard`), read back with TensorBoard's own event
reader: metric rows as scalars, a resumption that shows what metrics.jsonl holds, sweeps, range
tests, and the error without tensorboardX. A `fit` run's event files are read back in
test_train.py, the `range-test` command's in test_cli.py."""

import importlib.util
import math

import numpy as np
import pytest

from hparams_jax import cli
from hparams_jax.errors import MissingExtraError
from hparams_jax.range_test import RangeTestResult, centred
from hparams_jax.train import TrainConfig, tensorboard
from hparams_jax.train.config import EXECUTION_FIELDS
from hparams_jax.train.metrics import MetricsLog, read_rows
from hparams_jax.train.tensorboard import ScalarWriter, read_scalars, write_range_tests


def rows(steps, loss_offset=0.0, members=1):
    out = []
    for s in steps:
        for k in range(members):
            out.append({"kind": "train", "step": s, "epoch": s / 8, "member": k,
                        "train_loss": 2.0 / s + loss_offset + k, "learning_rate": 0.01 * s,
                        "examples_per_second": 1000.0 + s, "step_time_s": 0.032})
            if s % 8 == 0:
                out.append({"kind": "eval", "step": s, "epoch": s / 8, "member": k,
                            "test_loss": 1.0 / s + k, "test_accuracy": 0.5})
    return out


def test_a_resumed_log_shows_in_tensorboard_what_metrics_jsonl_holds(tmp_path):
    path, logdir = tmp_path / "metrics.jsonl", tmp_path / "tensorboard"
    log = MetricsLog(path, tensorboard=ScalarWriter(logdir))
    log.write(rows([4, 8]))
    log.sync()  # a checkpoint at step 8
    log.write(rows([12, 16]))  # steps a killed process logged past its checkpoint
    log.close()
    assert [s for s, _ in read_scalars(logdir)["train_loss"]] == [4, 8, 12, 16]

    # the resumption from step 8 logs steps 12 and 16 again, with other values
    log = MetricsLog(path, resume_step=8, tensorboard=ScalarWriter(logdir))
    log.write(rows([12, 16], loss_offset=1.0))
    log.close()
    recorded = [r for r in read_rows(path) if r["kind"] == "train"]
    assert [r["step"] for r in recorded] == [4, 8, 12, 16]
    scalars = read_scalars(logdir)
    assert scalars["train_loss"] == [(r["step"], pytest.approx(r["train_loss"], rel=1e-6))
                                     for r in recorded]
    assert scalars["examples_per_second"] == [(s, 1000.0 + s) for s in (4, 8, 12, 16)]
    assert scalars["test_loss"] == [(8, 0.125), (16, 0.0625)]
    assert "epoch" not in scalars and "member" not in scalars


def test_a_finished_run_reopened_writes_no_event_file(tmp_path):
    path, logdir = tmp_path / "metrics.jsonl", tmp_path / "tensorboard"
    log = MetricsLog(path, tensorboard=ScalarWriter(logdir))
    log.write(rows([4, 8]))
    log.close()
    files = sorted(logdir.iterdir())
    MetricsLog(path, resume_step=8, tensorboard=ScalarWriter(logdir)).close()
    assert sorted(logdir.iterdir()) == files


def test_a_sweep_writes_one_tensorboard_run_per_member_and_keeps_nan(tmp_path):
    writer = ScalarWriter(tmp_path, num_members=2)
    sweep = rows([4, 8], members=2)
    sweep[-2]["train_loss"] = math.nan  # member 1 diverged at step 8
    writer.write(sweep)
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["member_0", "member_1"]
    assert read_scalars(tmp_path / "member_0")["train_loss"] == [(4, 0.5), (8, 0.25)]
    loss = read_scalars(tmp_path / "member_1")["train_loss"]
    assert loss[0] == (4, 1.5) and loss[1][0] == 8 and math.isnan(loss[1][1])


def made_up_range_test(rise_at, label=""):
    """A range test whose loss falls, then blows up once the LR passes `rise_at`."""
    lr = np.linspace(0.01, 1.0, 60)
    loss = 2.3 - 1.5 * lr + 20.0 * np.maximum(lr - rise_at, 0.0) ** 2
    at = np.arange(9, 60, 10)
    return RangeTestResult(lr, loss, centred(loss), 0 * lr, at + 1.0, lr[at], loss[at] - 0.2,
                           0.5 + 0 * lr[at], "linear", 0.01, 1.0, 60, 4.0, "completed",
                           label=label)


def test_range_tests_write_loss_and_lr_per_step_and_the_loss_against_the_lr(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    single = made_up_range_test(0.6)
    write_range_tests(single, tmp_path / "one")
    scalars = read_scalars(tmp_path / "one")
    assert sorted(scalars) == ["eval_accuracy", "eval_loss", "learning_rate", "smoothed_loss",
                               "train_accuracy", "train_loss"]
    assert [x for _, x in scalars["learning_rate"]] == pytest.approx(single.learning_rate)
    assert [x for _, x in scalars["train_loss"]] == pytest.approx(single.train_loss)
    assert [s for s, _ in scalars["eval_loss"]] == [10, 20, 30, 40, 50, 60]
    acc = EventAccumulator(str(tmp_path / "one"))
    acc.Reload()
    image = acc.Images(tensorboard.RANGE_TEST_IMAGE)[0]
    assert image.step == 60 and image.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"

    family = [made_up_range_test(0.5, "weight_decay=0.001"),
              made_up_range_test(0.7, "momentum=0.95:0.85")]
    write_range_tests(family, tmp_path / "family")
    assert sorted(p.name for p in (tmp_path / "family").iterdir() if p.is_dir()) == [
        "momentum=0.95_0.85", "weight_decay=0.001"]
    lowest = {name: min(x for _, x in read_scalars(tmp_path / "family" / name)["train_loss"])
              for name in ("weight_decay=0.001", "momentum=0.95_0.85")}
    assert lowest == pytest.approx({"weight_decay=0.001": float(family[0].train_loss.min()),
                                    "momentum=0.95_0.85": float(family[1].train_loss.min())})


def test_tensorboard_is_an_execution_field_and_a_command_line_option():
    assert "tensorboard" in EXECUTION_FIELDS  # switching it on or off resumes the same run
    assert not TrainConfig().tensorboard
    args = cli.build_parser().parse_args(["train", "--tensorboard"])
    assert args.tensorboard is True


def test_missing_tensorboardx_names_the_extra(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboardX" else find_spec(name, *a))
    with pytest.raises(MissingExtraError, match=r'pip install "hparams_jax\[tensorboard\]"'):
        tensorboard.for_run(TrainConfig(tensorboard=True), "runs/x")
    assert tensorboard.for_run(TrainConfig(), "runs/x") is None  # not asked for: no check
