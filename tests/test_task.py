"""A user's own model, loss and data (`hparams_jax.Task`) through the same engine as the zoo:
a functional model trains exactly as a plain optax loop does, an NNX model with batch norm and
dropout trains, checkpoints and resumes, iterator data streams, seeks and resumes, a task
trains on 2 devices as on 1, and each kind of bad input is a one-line `ConfigError`."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import chex
import numpy as np
import optax
import pytest
from flax import nnx

from conftest import assert_same_checkpoints
from hparams_jax import ConfigError, Task
from hparams_jax.range_test import lr_range_test, range_test_family
from hparams_jax.train import TrainConfig, fit
from hparams_jax.train import metrics
from hparams_jax.train.session import open_session

RNG = np.random.default_rng(0)
X = RNG.normal(size=(96, 4)).astype(np.float32)
GROUP = RNG.integers(0, 3, 96).astype(np.int32)
Y = (X @ np.array([1.0, -2.0, 0.5, 3.0], np.float32) + np.array([0.0, 1.0, -1.0])[GROUP]
     ).astype(np.float32)
TABLE = {"features": X, "group": GROUP, "target": Y}
HELD_OUT = {k: v[:40] for k, v in TABLE.items()}


def linear_params(key):
    return {"w": jnp.zeros(4), "offset": jnp.zeros(3)}


def linear_loss(params, batch, key):
    pred = batch["features"] @ params["w"] + params["offset"][batch["group"]]
    mse = jnp.mean((pred - batch["target"]) ** 2)
    return mse, {"rmse": jnp.sqrt(mse)}


def linear_task(**changes) -> Task:
    return Task(**{"params": linear_params, "loss": linear_loss, "train": TABLE,
                   "eval": HELD_OUT, "name": "linear", **changes})


def plain(**changes) -> TrainConfig:
    return TrainConfig(**{"batch_size": 96, "steps": 10, "lr_policy": "constant",
                          "max_lr": 0.05, "min_lr": 0.0, "momentum": 0.9, "nesterov": False,
                          "weight_decay": 0.0, "log_every": 1, "eval_every": 5,
                          "checkpoint_every": 5, "progress": False, **changes})


def test_functional_task_trains_as_a_plain_optax_loop(tmp_path):
    """Full-batch SGD with momentum 0.9 (optax's form) and a constant LR: the engine's
    per-step losses and its held-out loss equal a hand-written optax loop's."""
    history = fit(plain(workdir=str(tmp_path)), task=linear_task())
    params, opt = linear_params(None), optax.sgd(0.05, momentum=0.9)
    state, losses = opt.init(params), []
    for _ in range(10):
        (loss, _), grads = jax.value_and_grad(linear_loss, has_aux=True)(params, TABLE, None)
        updates, state = opt.update(grads, state, params)
        params, losses = optax.apply_updates(params, updates), losses + [float(loss)]
    np.testing.assert_allclose(history.train()["train_loss"], losses, rtol=2e-5)
    mse = float(linear_loss(params, HELD_OUT, None)[0])
    assert history.eval()["test_loss"][-1] == pytest.approx(mse, rel=2e-5)
    assert "test_rmse" in history.rows[-1]  # the task's own metric, logged
    assert "train_accuracy" not in history.rows[0]  # the task reports no accuracy
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model"] == saved["dataset"] == "task:linear"


class SmallCNN(nnx.Module):
    """A user's NNX network: its own batch keys, batch norm and dropout."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(1, 4, kernel_size=(3, 3), rngs=rngs)
        self.norm = nnx.BatchNorm(4, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.head = nnx.Linear(4, 3, rngs=rngs)

    def __call__(self, x):
        x = self.dropout(nnx.relu(self.norm(self.conv(x))))
        return self.head(x.mean((1, 2)))


def cnn_loss(model, batch):
    logits = model(batch["pixels"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["target"]).mean()
    return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["target"])}


PIXELS = RNG.normal(size=(64, 8, 8, 1)).astype(np.float32)
TARGET = (PIXELS.mean((1, 2, 3)) > 0).astype(np.int32) + (PIXELS[:, 0, 0, 0] > 1)


def cnn_task(**changes) -> Task:
    return Task(**{"model": lambda rngs: SmallCNN(rngs=rngs), "loss": cnn_loss,
                   "train": {"pixels": PIXELS, "target": TARGET},
                   "eval": {"pixels": PIXELS[:20], "target": TARGET[:20]}, "name": "cnn",
                   **changes})


def _resumes_like(full, config, tmp_path, monkeypatch):
    """`config` killed after its step-4 rows resumes to `full`'s rows and checkpoints."""
    write = metrics.MetricsLog.write

    def write_then_die(self, rows):
        write(self, rows)
        if any(r["step"] > 4 for r in rows):
            raise KeyboardInterrupt

    killed = config.replace(workdir=str(tmp_path / "killed"))
    monkeypatch.setattr(metrics.MetricsLog, "write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit(killed, task=cnn_task())
    monkeypatch.setattr(metrics.MetricsLog, "write", write)
    resumed = fit(killed, task=cnn_task())
    assert metrics.untimed(resumed.rows) == metrics.untimed(full.rows)
    assert_same_checkpoints(tmp_path / "killed", tmp_path / "full")


def test_nnx_task_with_batch_norm_and_dropout_resumes_exactly(tmp_path, monkeypatch):
    """An NNX model's batch-norm statistics are trained state (checkpointed; they move), its
    dropout differs between steps, and a run killed after step 4 resumes to the same rows
    and parameters as the uninterrupted one."""
    config = plain(batch_size=16, steps=8, lr_policy="one_cycle", max_lr=0.1, min_lr=0.01,
                   log_every=2, eval_every=4, checkpoint_every=4)
    full = fit(config.replace(workdir=str(tmp_path / "full")), task=cnn_task())
    assert full.summary["status"] == "completed"
    assert np.isfinite(full.eval()["test_accuracy"]).all()

    _resumes_like(full, config, tmp_path, monkeypatch)

    session = open_session(config, cnn_task())
    state = session.init_state()
    before = np.asarray(jax.tree.leaves(state.rest)[0])
    moved, _ = session.chunk(state, 0, 1)  # donates `state`
    assert not np.allclose(before, jax.tree.leaves(moved.rest)[0])  # batch norm's mean moved
    model = session.engine.model
    member = jax.tree.map(lambda x: x[0], moved)
    batch = {"pixels": PIXELS[:16], "target": TARGET[:16]}
    a, b = (model.loss(member.params, member.rest, batch, jax.random.key(k), train=True)[0]
            for k in (1, 2))
    assert float(a) != float(b)  # dropout draws from the step's key
    c, d = (model.loss(member.params, member.rest, batch, None, train=False)[0]
            for _ in range(2))
    assert float(c) == float(d)  # evaluation is deterministic


def test_schedule_free_evaluates_averaged_weights_with_recomputed_batch_norm(tmp_path,
                                                                           monkeypatch):
    """Schedule-free SGD evaluates its averaged weights x (optax's `schedule_free_eval_params`)
    with batch-norm statistics recomputed for x: the mean over the first `bn_batches` training
    batches of each batch's channel mean and (biased) variance, computed here from the conv
    layer's outputs directly. The run checkpoints what resume needs (z and the averaging
    weights in the optimizer state): killed after step 4, it resumes to the same rows."""
    config = plain(batch_size=16, steps=8, optimizer="schedule_free_sgd", max_lr=0.1,
                   warmup_fraction=0.25, bn_batches=2, log_every=2, eval_every=4,
                   checkpoint_every=4, nesterov=True)
    session = open_session(config, cnn_task())
    state, _ = session.chunk(session.init_state(), 0, 5)
    member = jax.tree.map(lambda x: x[0], state)
    x = optax.contrib.schedule_free_eval_params(member.opt_state, member.params)
    assert max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(x),
                                                          jax.tree.leaves(member.params))) > 1e-3
    module = session.engine.model.merge(x, member.rest, train=False)
    conv = [np.asarray(module.conv(PIXELS[i * 16:(i + 1) * 16])) for i in range(2)]
    mean = np.mean([c.mean((0, 1, 2)) for c in conv], axis=0)
    var = np.mean([c.var((0, 1, 2)) for c in conv], axis=0)
    averaged = jax.tree.map(lambda a: a[0], session.engine.averaged(
        state, session._statistics_batches()))
    chex.assert_trees_all_close(averaged.params, x, rtol=1e-6)
    norm = session.engine.model.merge(averaged.params, averaged.rest, train=False).norm
    np.testing.assert_allclose(norm.mean[...], mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(norm.var[...], var, rtol=1e-4, atol=1e-6)
    held_out = {"pixels": PIXELS[:20], "target": TARGET[:20]}
    loss, _, _ = session.engine.model.loss(averaged.params, averaged.rest, held_out, None,
                                           train=False)
    assert float(session.evaluate(state)["loss"][0]) == pytest.approx(float(loss), rel=1e-5)

    full = fit(config.replace(workdir=str(tmp_path / "full")), task=cnn_task())
    _resumes_like(full, config, tmp_path, monkeypatch)


def test_padded_held_out_batch_is_exact():
    """40 held-out examples at batch 16 (two full batches and one padded): the session's
    held-out readings equal the loss of the 40 examples at once."""
    config = plain(batch_size=16)
    session = open_session(config, linear_task())
    state = session.init_state()
    state, _ = session.chunk(state, 0, 3)
    member = jax.tree.map(lambda x: x[0], state)
    got = session.evaluate(state)
    loss, m = linear_loss(member.params, HELD_OUT, None)
    assert got["loss"][0] == pytest.approx(float(loss), rel=1e-5)
    # the RMSE metric is the mean of the batches' RMSEs, weighted by examples
    per = [float(linear_loss(member.params, {k: v[i:i + 16] for k, v in HELD_OUT.items()},
                             None)[1]["rmse"]) for i in (0, 16)]
    last = [float(linear_loss(member.params, {k: v[i:i + 1] for k, v in HELD_OUT.items()},
                              None)[1]["rmse"]) for i in range(32, 40)]
    assert got["rmse"][0] == pytest.approx((16 * sum(per) + sum(last)) / 40, rel=1e-5)


def batches(data, batch_size, count):
    """`count` batches of `data` in order (a host iterator, as a DataLoader gives)."""
    n = len(next(iter(data.values())))
    for i in range(count):
        j = (i * batch_size) % n
        yield {k: v[j:j + batch_size] for k, v in data.items()}


def test_iterator_data_streams_resumes_and_masks(tmp_path, monkeypatch):
    """Training batches from a zero-argument callable: a killed run resumes (skipping the
    batches it had trained on) to the same rows; an eval iterator's "example_mask" drops
    its padding, giving the held-out arrays' readings."""
    train = lambda: batches(TABLE, 32, 100)  # noqa: E731

    def held_out():
        yield {k: v[:32] for k, v in HELD_OUT.items()}
        pad = {k: np.concatenate([v[32:], v[:24]]) for k, v in HELD_OUT.items()}
        yield {**pad, "example_mask": (np.arange(32) < 8).astype(np.float32)}

    task = linear_task(train=train, eval=held_out)
    config = plain(batch_size=32, steps=8, log_every=2, eval_every=4, checkpoint_every=4)
    full = fit(config.replace(workdir=str(tmp_path / "full")), task=task)
    write = metrics.MetricsLog.write

    def write_then_die(self, rows):
        write(self, rows)
        if any(r["step"] > 4 for r in rows):
            raise KeyboardInterrupt

    monkeypatch.setattr(metrics.MetricsLog, "write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit(config.replace(workdir=str(tmp_path / "killed")), task=task)
    monkeypatch.setattr(metrics.MetricsLog, "write", write)
    resumed = fit(config.replace(workdir=str(tmp_path / "killed")), task=task)
    assert metrics.untimed(resumed.rows) == metrics.untimed(full.rows)

    streamed = open_session(config, task)
    held = open_session(config, linear_task())
    state = streamed.init_state()
    for key in ("loss", "rmse"):
        np.testing.assert_allclose(streamed.evaluate(state)[key], held.evaluate(state)[key],
                                   rtol=1e-6)


def test_a_seekable_iterator_is_asked_for_the_resumed_batch():
    starts = []

    def train(start=0):
        starts.append(start)
        return batches(TABLE, 32, 100)

    session = open_session(plain(batch_size=32), linear_task(train=train))
    state = session.init_state()
    session.chunk(state, 5, 2)
    assert starts[-1] == 5 and len(starts) <= 2  # (a first call reads the length, if any)


@pytest.mark.parametrize("make, match", [
    (lambda: fit(plain(), task=linear_task(loss=lambda p, b, k: (b["features"] @ p["w"]))),
     "must return a scalar"),
    (lambda: Task(params=linear_params, loss=linear_loss,
                  train={"features": X, "target": Y[:50]}), "different lengths"),
    (lambda: fit(plain(), task=linear_task(params=lambda key: 1 / 0)),
     "params factory raised ZeroDivisionError"),
    (lambda: fit(plain(batch_size=32, steps=8),
                 task=linear_task(train=lambda: batches(TABLE, 32, 3))),
     "ended after 3 batches"),
    (lambda: fit(plain(), task=linear_task(eval={"features": X, "target": Y})),
     "batch key 'group'"),
    (lambda: lr_range_test(plain(), task=linear_task(eval=None), start=0.001, stop=0.1,
                           num_steps=10), "eval=None"),
    (lambda: range_test_family(plain(batch_size=32), "batch_size", [16, 32], start=0.001,
                               stop=0.1, num_steps=10,
                               task=linear_task(train=lambda: batches(TABLE, 32, 9),
                                                eval=lambda: batches(HELD_OUT, 8, 5))),
     "fixed size"),
    (lambda: Task(model=lambda rngs: SmallCNN(rngs=rngs), params=linear_params,
                  loss=cnn_loss, train=TABLE), "give exactly one"),
    (lambda: fit(plain(batch_size=32, steps=None, epochs=1),
                 task=linear_task(train=lambda: batches(TABLE, 32, 9))),
     "give the run's length as steps"),
])
def test_bad_task_input_is_a_one_line_config_error(make, match):
    with pytest.raises(ConfigError, match=match) as err:
        make()
    assert "\n" not in str(err.value)


def test_bfloat16_casts_a_user_model_and_keeps_its_state_in_float32():
    session = open_session(plain(batch_size=16, precision="bfloat16"), cnn_task())
    state = jax.eval_shape(session.engine.init, session.hp)
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    jaxpr = str(jax.make_jaxpr(session.engine._train_step)(
        state, session.hp, session.train, session._indices(0, 1), 0))
    assert "conv_general_dilated" in jaxpr and "bf16" in jaxpr
    new, m = jax.eval_shape(session.engine._train_step, state, session.hp, session.train,
                            session._indices(0, 1), 0)
    assert jax.tree.map(lambda a: a.dtype, new) == jax.tree.map(lambda a: a.dtype, state)
    assert m["loss"].dtype == jnp.float32


def test_tune_runs_the_whole_procedure_on_a_task(tmp_path):
    from hparams_jax import tune

    result = tune(plain(batch_size=16, steps=None, epochs=2, workdir=str(tmp_path)),
                  task=linear_task(), start=0.001, stop=0.2, range_steps=50,
                  batch_sizes=(16, 32), momenta=(0.9,), weight_decays=(1e-4,))
    assert [d.stage for d in result.decisions] == ["lr_range", "batch_size", "momentum",
                                                   "weight_decay"]
    assert result.history.summary["status"] == "completed"
    saved = json.loads((tmp_path / "one_cycle" / "config.json").read_text())
    assert saved["model"] == "task:linear" and saved["lr_policy"] == "one_cycle"
    assert (tmp_path / "tune.json").exists()


TWO_DEVICES = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, sys.argv[1])
    from test_task import cnn_task, plain
    from hparams_jax.train import fit
    history = fit(plain(batch_size=16, steps=6, lr_policy="one_cycle", max_lr=0.1,
                        min_lr=0.01, log_every=1, eval_every=3), task=cnn_task())
    print("RESULT", json.dumps({"devices": jax.device_count(),
                                "train": history.train()["train_loss"].tolist(),
                                "test": history.eval()["test_loss"].tolist()}))
""")


def test_a_task_trains_on_two_devices_as_on_one():
    """Data parallel over a mesh of 2 simulated CPU devices: the batch (and batch norm's
    statistics) is the global one, so the losses equal a single device's."""
    out = {}
    for n in (1, 2):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}
        proc = subprocess.run([sys.executable, "-c", TWO_DEVICES, os.path.dirname(__file__)],
                              capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[n] = json.loads(proc.stdout.split("RESULT", 1)[1])
        assert out[n]["devices"] == n
    np.testing.assert_allclose(out[2]["train"], out[1]["train"], rtol=1e-5)
    np.testing.assert_allclose(out[2]["test"], out[1]["test"], rtol=1e-5)
