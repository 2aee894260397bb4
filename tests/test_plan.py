"""Execution plans (`train.plan`): the accelerator plan (`lax.scan` chunks, vmapped members,
plain Flax layers) runs here on the CPU beside the CPU plan (host loop, unrolled members,
XLA:CPU layer forms); both give the same losses, metrics and evaluations, for sweeps, and a run
resumes under either plan."""

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from hparams_jax import models
from hparams_jax.train import fit, metrics
from hparams_jax.train.plan import resolve

from conftest import assert_same_checkpoints, tiny

# The plans run the same arithmetic in other orders: vmapped (grouped) against separate
# convolutions, XLA fusions of a scan body against a step's, batch-norm sums over a lane-dense
# view against NHWC, pooling by strided slices against reduce_window. Each differs from the
# other by float32 rounding (~1e-7 relative); a few dozen SGD steps grow that to ~1e-6
# (measured: LeNet 16 steps 4e-7, the batch-norm ResNet below 8 steps 2e-6). RTOL is 20x that
# and still 100x below what one step changes the loss by (~1e-2), so a skipped or repeated step,
# a member's hyper-parameters on another member or batch norm on the wrong statistics fail.
RTOL = 5e-5
MEMBERS = ({"seed": 0, "max_lr": 0.05}, {"seed": 1, "weight_decay": 0.0})
NUMBERS = ("train_loss", "learning_rate", "momentum", "weight_decay", "test_loss")


def assert_rows_close(got, expected, eval_examples, train_examples):
    """Two runs' metric rows: the same rows, numbers within RTOL; an accuracy may differ by
    one example whose top two logits sit closer than the rounding."""
    assert [(r["kind"], r["step"], r["member"]) for r in got] == [
        (r["kind"], r["step"], r["member"]) for r in expected]
    for g, e in zip(got, expected):
        for key in NUMBERS:
            if key in e:
                assert g[key] == pytest.approx(e[key], rel=RTOL), (key, g, e)
        if "test_accuracy" in e:
            assert abs(g["test_accuracy"] - e["test_accuracy"]) <= 1 / eval_examples
        if "train_accuracy" in e:
            assert abs(g["train_accuracy"] - e["train_accuracy"]) <= 1 / train_examples


def interrupt_after(monkeypatch, step):
    """Make the next `fit` stop (KeyboardInterrupt) once it has logged a row past `step`."""
    write = metrics.MetricsLog.write

    def write_then_stop(self, rows):
        write(self, rows)
        if any(r["step"] > step for r in rows):
            monkeypatch.setattr(metrics.MetricsLog, "write", write)
            raise KeyboardInterrupt

    monkeypatch.setattr(metrics.MetricsLog, "write", write_then_stop)


def test_resolve_picks_from_the_backend():
    cpu, accelerator = resolve("auto", backend="cpu", local_devices=1), resolve(
        "auto", backend="gpu", local_devices=8)
    assert (cpu.name, cpu.scan_chunks, cpu.vmap_members, cpu.layers) == (
        "cpu", False, False, models.XLA_CPU_LAYERS)
    assert (accelerator.name, accelerator.scan_chunks, accelerator.vmap_members,
            accelerator.layers) == ("accelerator", True, True, models.PLAIN_LAYERS)
    # only several CPU devices in one process wait for each step
    assert not cpu.sync_each_step and not accelerator.sync_each_step
    assert resolve("accelerator", backend="cpu", local_devices=4).sync_each_step
    assert resolve("cpu", backend="cpu", local_devices=4).sync_each_step
    assert resolve("auto").name == ("cpu" if jax.default_backend() == "cpu" else "accelerator")
    with pytest.raises(ValueError, match="plan='tpu'"):
        resolve("tpu")


def test_plans_agree_on_a_lenet_sweep_and_the_accelerator_plan_resumes_exactly(
        tmp_path, monkeypatch):
    config = tiny(members=MEMBERS, steps=16, checkpoint_every=8)
    cpu = fit(config.replace(plan="cpu", workdir=str(tmp_path / "cpu")))
    accelerator = fit(config.replace(plan="accelerator", workdir=str(tmp_path / "acc")))
    assert (cpu.summary["plan"], accelerator.summary["plan"]) == ("cpu", "accelerator")
    assert_rows_close(accelerator.rows, cpu.rows, config.eval_examples, config.batch_size)
    assert not np.allclose(cpu.train(0)["train_loss"], cpu.train(1)["train_loss"])

    resumed = config.replace(plan="accelerator", workdir=str(tmp_path / "resumed"))
    interrupt_after(monkeypatch, 12)  # after the step-8 checkpoint, before step 16's
    with pytest.raises(KeyboardInterrupt):
        fit(resumed)
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == ["8"]
    assert metrics.untimed(fit(resumed).rows) == metrics.untimed(accelerator.rows)
    assert_same_checkpoints(tmp_path / "resumed", tmp_path / "acc")


def test_plans_agree_on_a_batch_norm_network_and_a_run_resumes_under_the_other_plan(
        tmp_path, monkeypatch):
    """A small ResNet (batch norm, strided projections) on mock CIFAR-10: the plans agree,
    and a run checkpointed under the CPU plan finishes under the accelerator plan with the
    same results (the checkpoint's tree is the same under both)."""
    config = tiny(model="wide_resnet32_4", model_options={"blocks": (1, 1, 1),
                                                          "widths": (8, 16, 32)},
                  dataset="cifar10", batch_size=8, train_examples=None, eval_examples=None,
                  steps=8, log_every=2, eval_every=4, checkpoint_every=4)
    with tfds.testing.mock_data(num_examples=32):
        cpu = fit(config.replace(plan="cpu", workdir=str(tmp_path / "cpu")))
        accelerator = fit(config.replace(plan="accelerator", workdir=str(tmp_path / "acc")))
        switched = config.replace(plan="cpu", workdir=str(tmp_path / "switched"))
        interrupt_after(monkeypatch, 5)  # after the step-4 checkpoint
        with pytest.raises(KeyboardInterrupt):
            fit(switched)
        resumed = fit(switched.replace(plan="accelerator"))
    assert_rows_close(accelerator.rows, cpu.rows, 32, 8)
    assert_rows_close(resumed.rows, cpu.rows, 32, 8)
    assert resumed.summary["plan"] == "accelerator" and resumed.summary["step"] == 8
