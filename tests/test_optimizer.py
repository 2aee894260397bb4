"""`make_optimizer` through the engine: AdamW with cyclical beta1, and gradient accumulation
(`accumulate_steps`) counted in optimizer steps, on tiny LeNet runs over the offline
Fashion-MNIST; schedule-free SGD/AdamW and Prodigy against optax.contrib step for step."""

import json
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import assert_same_checkpoints, params_of, tiny
from hparams_jax import ConfigError, schedules, transforms
from hparams_jax.train import TrainConfig, fit
from hparams_jax.train.metrics import untimed
from hparams_jax.train.optimizer import make_optimizer, member_hparams
from hparams_jax.train.session import Session

ADAMW = dict(optimizer="adamw", min_lr=1e-3, max_lr=1e-2, weight_decay=0.05)


def test_accumulated_micro_batches_equal_one_batch():
    """LeNet has no batch norm, so 4 micro-batches of B/4 per optimizer step compute the
    gradient of the batch of B: after 3 steps the parameters agree to float32 rounding (the
    mean is summed in another order), within 2e-7, a few ulps of the largest weights (~0.4)
    and far below how far the weights move. So do the micro-batches scanned (`lax.scan`, the
    accelerator plan) and unrolled (the CPU plan)."""
    atol = 2e-7
    out = {}
    for k, plan in ((1, "cpu"), (4, "cpu"), (4, "accelerator")):
        session = Session(tiny(accumulate_steps=k, plan=plan))
        state = session.init_state()
        start = jax.device_get(state.params)
        state, metrics = session.chunk(state, 0, 3)
        out[k, plan] = jax.device_get((state.params, metrics["loss"], state.opt_state))
    one, loss_one, _ = out[1, "cpu"]
    for accumulated, loss, opt_state in (out[4, "cpu"], out[4, "accelerator"]):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=0, atol=atol), one,
                     accumulated)
        np.testing.assert_allclose(loss, loss_one, rtol=1e-5)
        # three optimizer steps of 4 micro-batches each, the accumulator empty between steps
        assert isinstance(opt_state, optax.MultiStepsState)
        assert opt_state.gradient_step.tolist() == [3] and opt_state.mini_step.tolist() == [0]
    moved = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(one),
                                                            jax.tree.leaves(start)))
    assert moved > 100 * atol


def test_adamw_with_accumulation_logs_optimizer_steps_and_resumes_exactly(tmp_path):
    """Rows every 4 optimizer steps of 2 micro-batches carry AdamW's 1cycle LR and cyclical
    beta1 (as `momentum` and `b1`) at those steps; the summary names the optimizer; the
    step-4 checkpoint falls between optimizer steps (empty accumulator), and a run resumed
    from it ends bitwise where the uninterrupted run does."""
    config = tiny(**ADAMW, accumulate_steps=2, steps=8, log_every=4, eval_every=4,
                  checkpoint_every=4)
    full = fit(config.replace(workdir=str(tmp_path / "full")))
    train = [r for r in full.rows if r["kind"] == "train"]
    assert [r["step"] for r in train] == [4, 8]
    assert train[-1]["epoch"] == pytest.approx(1.0)  # 256 examples / 32 per optimizer step
    lr = schedules.one_cycle(8, 1e-3, 1e-2)
    b1 = schedules.one_cycle_momentum(8, max_momentum=0.95, min_momentum=0.85)
    for r in train:
        assert r["learning_rate"] == pytest.approx(float(lr(r["step"] - 1)), rel=1e-5)
        assert r["momentum"] == r["b1"] == pytest.approx(float(b1(r["step"] - 1)), rel=1e-6)
        assert r["b2"] == pytest.approx(0.999) and r["weight_decay"] == pytest.approx(0.05)
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert (summary["optimizer"], summary["accumulate_steps"], summary["step"]) == ("adamw", 2, 8)

    resumed = tmp_path / "resumed"  # the run as a kill after step 4's checkpoint left it
    shutil.copytree(tmp_path / "full", resumed)
    shutil.rmtree(resumed / "checkpoints" / "8")
    (resumed / "summary.json").unlink()
    saved = params_of(resumed)
    assert saved["['opt_state']['mini_step']"].tolist() == [0]
    assert all(not v.any() for name, v in saved.items() if "acc_grads" in name)
    again = fit(config.replace(workdir=str(resumed)))
    assert untimed(again.rows) == untimed(full.rows)
    assert_same_checkpoints(resumed, tmp_path / "full")


# --- schedule-free and LR-free optimizers ---------------------------------------------------

def _trajectory(opt, params, steps=30):
    """`steps` updates on the gradient of a fixed non-quadratic function."""
    state = opt.init(params)
    for t in range(steps):
        grads = jax.tree.map(lambda p: jnp.sin(p * (t + 1)) + 0.1 * p, params)
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


@pytest.mark.parametrize("name,lr,reference", [
    ("schedule_free_sgd", 0.3, lambda: optax.contrib.schedule_free_sgd(
        0.3, warmup_steps=5, b1=0.9, weight_decay=1e-2)),
    ("schedule_free_adamw", 0.01, lambda: optax.contrib.schedule_free_adamw(
        0.01, warmup_steps=5, b1=0.9, b2=0.99, eps=1e-8, weight_decay=1e-2)),
    ("prodigy", 1.0, lambda: optax.contrib.prodigy(1.0, betas=(0.9, 0.99), eps=1e-8,
                                                   weight_decay=1e-2)),
])
def test_todays_optimizers_step_as_optax_contrib_does(name, lr, reference):
    """At fixed hyper-parameters (a constant LR with a warmup of 5 of 30 steps, b1 0.9, b2
    0.99, WD 1e-2) the config's optimizer takes optax.contrib's steps, schedule-free's
    averaged weights are optax's `schedule_free_eval_params`, and the logged LR and momentum
    are what the optimizer used (Prodigy's LR: its estimate d times the multiplier)."""
    config = TrainConfig(optimizer=name, lr_policy="constant", max_lr=lr, min_lr=0.0,
                         momentum=0.9, adam_b2=0.99, weight_decay=1e-2, warmup_fraction=5 / 30,
                         steps=30, param_multipliers=False)
    hp = {k: jnp.asarray(v[0]) for k, v in member_hparams(config).items()}
    params = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array([0.5])}
    ours, our_state = _trajectory(make_optimizer(config, hp, 30), params)
    theirs, their_state = _trajectory(reference(), params)
    chex.assert_trees_all_close(ours, theirs, rtol=2e-6, atol=1e-6)
    logged = transforms.hyperparams(our_state)
    if name == "prodigy":
        assert logged["learning_rate"] == pytest.approx(float(their_state.estim_lr), rel=1e-6)
        assert float(their_state.estim_lr) > 1e-6  # d grew from its start: LR-free at work
    else:
        assert logged["learning_rate"] == pytest.approx(lr)
        assert logged["momentum"] == pytest.approx(0.9)
        chex.assert_trees_all_close(transforms.schedule_free_eval_params(our_state, ours),
                                    optax.contrib.schedule_free_eval_params(their_state, theirs),
                                    rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("changes,match", [
    (dict(optimizer="schedule_free_sgd", momentum=(0.95, 0.85)),
     r"momentum=.*a constant for optimizer='schedule_free_sgd'"),
    (dict(optimizer="prodigy", momentum=0.9, lr_policy="cosine", warmup_fraction=0.05),
     r"warmup_fraction=0.05 .*0 for optimizer='prodigy'"),
    (dict(lr_policy="wsd", warmup_fraction=0.5, decay_fraction=0.6),
     r"decay_fraction=0.6 .*at most 1 - warmup_fraction = 0.5"),
    (dict(lr_policy="cosine", final_lr=0.5), r"final_lr=0.5 is above max_lr=0.1"),
])
def test_todays_policies_and_optimizers_refuse_what_they_cannot_run(changes, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**changes)
