"""The training engine on tiny LeNet runs over the offline Fashion-MNIST: metrics, sweeps,
kill-and-resume, corrupt checkpoints, divergence, data parallelism, mixed precision, the CLI."""

import dataclasses
import json
import signal
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import TINY_CLI, assert_same_checkpoints, params_of, run_cli, tiny
from hparams_jax import schedules
from hparams_jax.train import DivergenceError, History, TrainConfig, fit
from hparams_jax.train.metrics import TIMING_KEYS, MetricsLog, untimed
from hparams_jax.train.tensorboard import read_scalars
from hparams_jax.train.optimizer import learning_rate, member_hparams, momentum

# --- config -------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, argument", [
    (dict(min_lr=1.0, max_lr=0.1), "min_lr"),
    (dict(lr_policy="cosine_restarts"), "lr_policy"),
    (dict(epochs=None, steps=None), "epochs"),
    (dict(batch_size=0), "batch_size"),
    (dict(momentum=1.2), "momentum"),
    (dict(momentum=(0.85, 0.95)), "momentum"),
    (dict(weight_decay=-1.0), "weight_decay"),
    (dict(members=({"batch_size": 64},)), "members"),
    (dict(members=({"momentum": 0.9}, {"momentum": (0.95, 0.85)})), "momentum"),
    (dict(members=({"max_lr": 0.001},)), "min_lr"),
    (dict(optimizer="adam"), "optimizer"),
    (dict(optimizer="adamw", adam_b2=1.0), "adam_b2"),
    (dict(optimizer="adamw", adam_eps=-1.0), "adam_eps"),
    (dict(accumulate_steps=0), "accumulate_steps"),
    (dict(batch_size=32, accumulate_steps=3), "batch_size=32.*accumulate_steps=3"),
    (dict(plan="tpu"), "plan"),
    (dict(precision="float16"), "precision"),
    (dict(model_options={"dtype": "bfloat16"}), "precision"),
    (dict(model_options={"layers": None}), "plan"),
])
def test_config_rejects_bad_values(changes, argument):
    with pytest.raises(ValueError, match=argument):
        tiny(**changes)


def test_config_refuses_a_final_lr_above_min_lr():
    """1cycle's annihilation (Sec. 4.1) ends at or below min_lr, every sweep member's too."""
    with pytest.raises(ValueError, match=r"final_lr=5.0 is above min_lr=0.01: final_lr must be "
                                         r"<= min_lr \(1cycle's annihilation"):
        tiny(final_lr=5.0)
    with pytest.raises(ValueError, match=r"final_lr=0.005 is above min_lr=0.001"):
        tiny(final_lr=0.005, members=({"min_lr": 0.01}, {"min_lr": 0.001}))
    assert tiny(final_lr=0.01).final_lr == 0.01


def test_config_round_trips_through_json():
    config = tiny(members=({"seed": 1, "weight_decay": 1e-4}, {"seed": 2}))
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_policies_from_config_match_closed_forms():
    config = tiny(lr_policy="piecewise", max_lr=0.1, piecewise_boundaries=(0.5, 0.75),
                  piecewise_gamma=0.1, momentum=0.9)
    hp = {k: v[0] for k, v in member_hparams(config).items()}
    lr = learning_rate(config, hp, 100)
    np.testing.assert_allclose([lr(t) for t in (0, 49, 50, 74, 75, 99)],
                               [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)
    assert float(momentum(config, hp, 100)) == pytest.approx(0.9)

    config = tiny(lr_policy="triangular", step_size=10, max_lr=0.1, momentum=(0.95, 0.85))
    hp = {k: v[0] for k, v in member_hparams(config).items()}
    lr, mom = learning_rate(config, hp, 100), momentum(config, hp, 100)
    for t in (0, 5, 10, 15, 20):  # momentum mirrors the LR triangle
        frac = (float(lr(t)) - 0.01) / 0.09
        assert float(mom(t)) == pytest.approx(0.95 - 0.1 * frac, abs=1e-6)


def test_inv_policy_and_caffe_momentum_form_reach_the_optimizer():
    config = tiny(lr_policy="inv", max_lr=0.01, inv_gamma=1e-4, inv_power=0.75, momentum=0.9,
                  momentum_form="caffe")
    hp = {k: v[0] for k, v in member_hparams(config).items()}
    lr = learning_rate(config, hp, 100)
    for t in (0, 50, 5000):
        assert float(lr(t)) == pytest.approx(0.01 * (1 + 1e-4 * t) ** -0.75, rel=1e-6)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="momentum_form"):
        tiny(momentum_form="keras")
    with pytest.raises(ValueError, match="inv_power"):
        tiny(inv_power=-1.0)


# --- a run ---------------------------------------------------------------------------------

def test_fit_writes_metrics_summary_and_logs_hyperparameters_used(tmp_path):
    config = tiny(workdir=str(tmp_path), tensorboard=True)
    history = fit(config)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in train] == [4, 8, 12, 16]
    assert [r["step"] for r in evals] == [8, 16]
    assert train[-1]["epoch"] == pytest.approx(2.0)  # 256 examples / 32 = 8 steps an epoch
    lr = schedules.one_cycle(16, 0.01, 0.05)
    mom = schedules.one_cycle_momentum(16, max_momentum=0.95, min_momentum=0.85)
    for r in train:  # the row at step s reports what step s - 1 (the chunk's last) used
        assert r["learning_rate"] == pytest.approx(float(lr(r["step"] - 1)), rel=1e-5)
        assert r["momentum"] == pytest.approx(float(mom(r["step"] - 1)), rel=1e-5)
        assert r["weight_decay"] == pytest.approx(5e-4)
        assert np.isfinite(r["train_loss"]) and 0 <= r["train_accuracy"] <= 1
        # throughput: the chunk's 4 steps of 32 examples
        assert r["step_time_s"] > 0
        assert r["examples_per_second"] == pytest.approx(32 / r["step_time_s"])
    assert 0 <= evals[-1]["test_accuracy"] <= 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["step"] == 16
    assert (summary["precision"], summary["plan"]) == ("float32", "cpu")
    assert summary["members"][0]["test_loss"] == pytest.approx(evals[-1]["test_loss"])
    assert summary["wall_time_s"] > 0 and summary["seconds_per_epoch"] > 0
    # the median of the chunks that did not compile (all but the first of each length)
    assert summary["median_step_time_s"] == pytest.approx(
        np.median([r["step_time_s"] for r in train[1:]]))
    assert summary["median_examples_per_second"] == pytest.approx(
        32 / summary["median_step_time_s"])
    # TensorBoard holds the same scalars at the same steps (float32)
    scalars = read_scalars(tmp_path / "tensorboard")
    assert set(scalars) == {"train_loss", "train_accuracy", "learning_rate", "momentum",
                            "weight_decay", *TIMING_KEYS, "test_loss", "test_accuracy"}
    for kind, rows in (("train", train), ("eval", evals)):
        for key in {k for r in rows for k in r} - {"kind", "step", "epoch", "member"}:
            assert scalars[key] == [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in rows]
    np.testing.assert_allclose(history.eval()["test_loss"], [r["test_loss"] for r in evals])
    assert History.load(tmp_path).train()["step"].tolist() == [4, 8, 12, 16]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["16", "8"]


def test_training_reduces_loss(tmp_path):
    history = fit(tiny(steps=40, train_examples=1024, max_lr=0.05, workdir=str(tmp_path)))
    train = history.train()
    assert train["train_loss"][-1] < 0.7 * train["train_loss"][0]


def test_vmapped_sweep_equals_separate_runs(tmp_path):
    members = ({"seed": 0, "weight_decay": 1e-3, "max_lr": 0.05},
               {"seed": 3, "weight_decay": 0.0, "max_lr": 0.03})
    swept = fit(tiny(members=members, workdir=str(tmp_path / "sweep")))
    sweep_params = params_of(tmp_path / "sweep")
    for k, member in enumerate(members):
        single = fit(tiny(**member, workdir=str(tmp_path / f"single{k}")))
        np.testing.assert_allclose(swept.train(k)["train_loss"], single.train()["train_loss"],
                                   rtol=1e-5)
        np.testing.assert_allclose(swept.eval(k)["test_loss"], single.eval()["test_loss"],
                                   rtol=1e-5)
        single_params = params_of(tmp_path / f"single{k}")
        for name, value in single_params.items():
            np.testing.assert_allclose(sweep_params[name][k], value[0], rtol=1e-5, atol=1e-6,
                                       err_msg=name)
    # the members differ from each other
    assert not np.allclose(swept.train(0)["train_loss"], swept.train(1)["train_loss"])


def test_vectorized_members_equal_unrolled_members():
    """vmap (the accelerators' way of running K members) and the unrolled members (XLA:CPU's)
    compute the same chunk."""
    from hparams_jax.train.session import Session

    config = tiny(members=({"seed": 0, "max_lr": 0.05}, {"seed": 1, "weight_decay": 0.0}))
    results, convs = {}, {}
    for vectorize in (True, False):
        session = Session(config)
        session.engine.plan = dataclasses.replace(  # read when the step is first traced
            session.engine.plan, vmap_members=vectorize)
        state = session.init_state()
        step = jax.make_jaxpr(session.engine._train_step)(
            state, session.hp, session.train, session._indices(0, 1), 0)
        convs[vectorize] = str(step).count("conv_general_dilated")
        state, metrics = session.chunk(state, 0, 6)
        results[vectorize] = jax.device_get((state.params, metrics["loss"],
                                             session.evaluate(state)))
    assert convs[False] == 2 * convs[True] > 0  # two members' convolutions, or one batched
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6),
                 results[True], results[False])


def test_model_options_reach_the_network(tmp_path):
    """The 3-layer CIFAR net, sized by model_options, trains on 28x28x1 Fashion-MNIST."""
    history = fit(tiny(model="cifar3", model_options={"in_channels": 1, "input_size": 28},
                       steps=8, max_lr=0.01, workdir=str(tmp_path)))
    assert np.isfinite(history.summary["members"][0]["test_loss"])
    assert json.loads((tmp_path / "config.json").read_text())["model_options"] == {
        "in_channels": 1, "input_size": 28}


# --- kill and resume -----------------------------------------------------------------------

KILLED_CHILD = textwrap.dedent("""
    import json, os, signal, sys
    from hparams_jax.train import TrainConfig, fit, metrics

    write = metrics.MetricsLog.write
    def write_then_die(self, rows):
        write(self, rows)
        if any(r["step"] > {kill_after} for r in rows):  # mid-way between two checkpoints
            os.kill(os.getpid(), signal.SIGKILL)
    metrics.MetricsLog.write = write_then_die
    fit(TrainConfig.from_dict(json.loads(sys.argv[1])))
""")


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    config = tiny(steps=24, checkpoint_every=8)
    full = fit(config.replace(workdir=str(tmp_path / "full")))

    killed = config.replace(workdir=str(tmp_path / "killed"), tensorboard=True)
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_CHILD.format(kill_after=12),
         json.dumps(killed.to_dict())], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    steps_on_disk = [json.loads(l)["step"] for l in
                     (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert max(steps_on_disk) == 16  # rows past the step-8 checkpoint were written
    assert sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir()) == ["8"]

    resumed = fit(killed)
    assert untimed(resumed.rows) == untimed(full.rows)  # all but the timings
    assert_same_checkpoints(tmp_path / "killed", tmp_path / "full")
    # TensorBoard drops the steps the killed process logged past its checkpoint: it shows what
    # metrics.jsonl holds, each step once
    loss = read_scalars(tmp_path / "killed" / "tensorboard")["train_loss"]
    assert loss == [(r["step"], pytest.approx(r["train_loss"], rel=1e-6))
                    for r in resumed.rows if r["kind"] == "train"]


def test_corrupt_latest_checkpoint_is_moved_aside_and_retrained(tmp_path):
    config = tiny(steps=16, checkpoint_every=8, keep_checkpoints=3, workdir=str(tmp_path))
    first = fit(config)
    latest = tmp_path / "checkpoints" / "16"
    for f in latest.rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\0" * 7)  # truncated garbage
    damaged = {p.relative_to(latest): p.read_bytes() for p in latest.rglob("*") if p.is_file()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(config)
    moved = tmp_path / "checkpoints" / "damaged" / "16"
    assert any("step 16" in str(w.message) and f"moved it to {moved}" in str(w.message)
               and "resuming from step 8" in str(w.message) for w in caught)
    assert {p.relative_to(moved): p.read_bytes() for p in moved.rglob("*")
            if p.is_file()} == damaged  # set aside as it was, not deleted
    assert history.summary["step"] == 16  # retrained steps 9-16 from the step-8 checkpoint
    assert untimed(history.rows) == untimed(first.rows)
    assert params_of(tmp_path)  # the rewritten step-16 checkpoint reads back


def test_resume_keeps_metric_rows_byte_for_byte(tmp_path):
    """Rows up to the restored step stay exactly as written (not re-encoded); later rows and a
    torn last line go; a line that is JSON but no row is kept, and readers skip it."""
    path = tmp_path / "metrics.jsonl"
    lines = [b'{"kind": "train", "step": 4, "member": 0, "train_loss": 1.50}\n',
             b'{"step":8,"kind":"eval","member":0,"test_loss":1e-3}\n',
             b'[1, 2]\n',
             b'{"kind": "train", "step": 12, "member": 0, "train_loss": 0.9}\n',
             b'{"kind": "train", "step": 16, "member": 0, "tr']  # torn by a kill
    path.write_bytes(b"".join(lines))
    with pytest.warns(RuntimeWarning, match=r"skipped line\(s\) 3 \(not a metrics row"):
        log = MetricsLog(path, resume_step=8)
    log.close()
    assert path.read_bytes() == b"".join(lines[:3])
    assert [(r["kind"], r["step"]) for r in log.rows] == [("train", 4), ("eval", 8)]
    inode = path.stat().st_ino
    with pytest.warns(RuntimeWarning):
        log = MetricsLog(path, resume_step=100)  # a finished run reopened: nothing changes
    log.write([{"kind": "train", "step": 20, "member": 0, "train_loss": 0.5}])
    log.close()
    assert path.stat().st_ino == inode
    assert path.read_bytes() == b"".join(lines[:3]) + (
        b'{"kind": "train", "step": 20, "member": 0, "train_loss": 0.5}\n')
    with pytest.warns(RuntimeWarning, match="line\\(s\\) 3"):
        assert [r["step"] for r in History.load(tmp_path).rows] == [4, 8, 20]


def test_changed_config_in_same_workdir_is_refused(tmp_path):
    fit(tiny(steps=4, workdir=str(tmp_path)))
    with pytest.raises(ValueError, match="max_lr"):
        fit(tiny(steps=4, max_lr=0.2, workdir=str(tmp_path)))


# --- divergence ----------------------------------------------------------------------------

def test_divergence_stops_run_and_keeps_last_good_checkpoint(tmp_path):
    config = tiny(steps=400, lr_policy="one_cycle", min_lr=0.01, max_lr=5.0, momentum=0.9,
                  checkpoint_every=4, log_every=4, workdir=str(tmp_path))
    with pytest.raises(DivergenceError, match="non-finite loss at step"):
        fit(config)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged"
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] in ("nan", "inf") or not np.isfinite(rows[-1]["train_loss"])
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir())
    assert steps and max(steps) < rows[-1]["step"]
    params = params_of(tmp_path)
    assert all(np.all(np.isfinite(v)) for v in params.values() if v.dtype.kind == "f")


def test_diverging_member_is_frozen_while_others_train(tmp_path):
    members = ({"max_lr": 0.05}, {"max_lr": 1e4})
    history = fit(tiny(steps=40, momentum=0.9, members=members, workdir=str(tmp_path)))
    assert history.summary["status"] == "completed"
    assert [m["diverged"] for m in history.summary["members"]] == [False, True]
    assert np.isfinite(history.summary["members"][0]["test_loss"])


# --- devices and CLI -----------------------------------------------------------------------

def test_four_devices_match_one_device(tmp_path):
    results = {}
    for devices in (1, 4):
        workdir = tmp_path / f"d{devices}"
        proc = run_cli([*TINY_CLI, "--workdir", str(workdir)], devices=devices)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads((workdir / "summary.json").read_text())
        assert summary["devices"] == devices
        results[devices] = summary["members"][0]
    for key in ("train_loss", "test_loss"):
        assert results[4][key] == pytest.approx(results[1][key], rel=1e-4)


@pytest.mark.parametrize("args, message", [
    (["--model", "alexnet"], "model='alexnet' is unknown; available: "),
    (["--min-lr", "1.0", "--max-lr", "0.1"], "min_lr=1.0 is above max_lr=0.1"),
    (["--batch-size", "30"], "batch_size"),
    (["--momentum", "0.9:x"], "--momentum"),
])
def test_cli_bad_values_exit_with_one_line_error(tmp_path, args, message):
    proc = run_cli([*TINY_CLI, "--workdir", str(tmp_path), *args], devices=4)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_batch_norm_network_trains_on_mock_cifar(tmp_path):
    """ResNet-20 (batch norm) through the engine, on tfds mock CIFAR-10 with the flip
    augmentation: BN statistics move, losses stay finite."""
    import tensorflow_datasets as tfds

    for model in ("resnet20",):
        workdir = tmp_path / model
        with tfds.testing.mock_data(num_examples=64):
            history = fit(tiny(model=model, dataset="cifar10", batch_size=16, train_examples=None,
                               eval_examples=None, steps=4, log_every=2, eval_every=4,
                               checkpoint_every=4, workdir=str(workdir)))
        assert np.all(np.isfinite(history.train()["train_loss"]))
        assert np.isfinite(history.eval()["test_loss"][-1])
        stats = {k: v for k, v in params_of(workdir).items() if "mean" in k}
        assert stats and any(np.abs(v).max() > 0 for v in stats.values())


# --- mixed precision -----------------------------------------------------------------------

def equations(jaxpr):
    """Every equation of a jaxpr and of the jaxprs nested in its equations."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    yield from equations(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    yield from equations(sub)


@pytest.mark.parametrize("plan", ["cpu", "accelerator"])
def test_precision_sets_the_compute_dtype_and_keeps_state_in_float32(plan):
    """bfloat16: every convolution and matrix product of the step (forward and backward, the
    XLA:CPU form's 1x1-conv products included) takes bfloat16 operands; parameters, optimizer
    state, batch-norm statistics, loss and softmax (its exp and log) stay float32. float32:
    no bfloat16 anywhere."""
    from hparams_jax.train.session import Session

    for precision, compute in (("bfloat16", jnp.bfloat16), ("float32", jnp.float32)):
        session = Session(tiny(model="wide_resnet32_4", plan=plan, precision=precision,
                               model_options={"blocks": (1, 1, 1), "widths": (8, 16, 32),
                                              "in_channels": 1}))
        state = jax.eval_shape(session.engine.init, session.hp)
        for leaf in jax.tree.leaves((state.params, state.rest, state.opt_state)):
            if jnp.issubdtype(leaf.dtype, jnp.floating):
                assert leaf.dtype == jnp.float32
        jaxpr = jax.make_jaxpr(session.engine._train_step)(
            state, session.hp, session.train, session._indices(0, 1), 0).jaxpr
        eqns = list(equations(jaxpr))
        products = [e for e in eqns if e.primitive.name in ("conv_general_dilated",
                                                           "dot_general")]
        assert len(products) > 3 * 8  # 8 convolutions and the fc, forward and backward
        for e in products:
            assert {v.aval.dtype for v in e.invars} == {jnp.dtype(compute)}, e
        softmax = [e for e in eqns if e.primitive.name in ("exp", "log")]
        assert softmax and all(e.invars[0].aval.dtype == jnp.float32 for e in softmax)
        new_state, metrics = jax.eval_shape(session.engine._train_step, state, session.hp,
                                            session.train, session._indices(0, 1), 0)
        assert jax.tree.map(lambda a: a.dtype, new_state) == jax.tree.map(lambda a: a.dtype,
                                                                          state)
        assert metrics["loss"].dtype == jnp.float32
        if precision == "float32":
            assert not any(jnp.dtype(jnp.bfloat16) in {v.aval.dtype for v in e.invars
                                                       if hasattr(v, "aval")} for e in eqns)


def short_runs(workdir, **changes):
    """The same short run in float32 and in bfloat16: their summaries' first member."""
    out = {}
    for precision in ("float32", "bfloat16"):
        history = fit(tiny(**changes, precision=precision,
                           workdir=str(workdir / precision)))
        assert history.summary["precision"] == precision
        out[precision] = history
    return out


def test_bfloat16_trains_lenet_as_well_as_float32(tmp_path):
    """64 steps of LeNet: bfloat16 rounding (2^-8 relative) perturbs the trajectory about as
    much as another seed does (measured: the final train losses of two float32 seeds differ
    by 3%, float32 and bfloat16 by 1%; test accuracies by 0.004 and 0.014 on 512 examples),
    so the tolerances are set above a seed's spread: train loss of the last 24 steps within
    10%, test accuracy within 0.05, both far from an untrained net's (loss 2.3, accuracy 0.1)."""
    runs = short_runs(tmp_path, steps=64, train_examples=2048, eval_examples=512, max_lr=0.03,
                      momentum=0.9, log_every=8, eval_every=64, checkpoint_every=64)
    full, half = (runs[p].train()["train_loss"][-3:].mean() for p in ("float32", "bfloat16"))
    assert half == pytest.approx(full, rel=0.10) and full < 0.8
    accuracy = {p: h.summary["members"][0]["test_accuracy"] for p, h in runs.items()}
    assert abs(accuracy["bfloat16"] - accuracy["float32"]) <= 0.05
    assert accuracy["float32"] > 0.6


@pytest.mark.slow
def test_bfloat16_trains_resnet20_as_well_as_float32(tmp_path):
    """32 steps of ResNet-20 (batch norm) on Fashion-MNIST: bfloat16 and float32 train losses
    within 10% (measured 0.1%; two float32 seeds differ by 3%)."""
    runs = short_runs(tmp_path, model="resnet20", model_options={"in_channels": 1}, steps=32,
                      train_examples=2048, eval_examples=512, max_lr=0.03, momentum=0.9,
                      log_every=8, eval_every=32, checkpoint_every=32)
    full, half = (runs[p].train()["train_loss"][-2:].mean() for p in ("float32", "bfloat16"))
    assert half == pytest.approx(full, rel=0.10)
    assert full < 0.6 * runs["float32"].train()["train_loss"][0]
