"""From a `TrainConfig` and one member's hyper-parameters to the optax optimizer it trains with.

The member's values (`min_lr`, `max_lr`, momentum bounds, `weight_decay`) arrive as scalars that
may be traced under `jax.vmap`, so K settings share one compiled step (Smith 2018, Sec. 4.4).
The momentum schedule is SGD's momentum or AdamW's beta1 alike.
"""

from __future__ import annotations

from typing import Mapping

import jax.numpy as jnp
import numpy as np
import optax

from hparams_jax import schedules, transforms
from hparams_jax.train.config import SCHEDULE_FREE, TrainConfig

HParams = Mapping[str, jnp.ndarray]


def member_hparams(config: TrainConfig) -> dict[str, np.ndarray]:
    """The swept values of the K members as (K,) float32 arrays (seeds as int32)."""
    settings = config.members_or_self()
    bounds = np.array([s.momentum_bounds for s in settings], np.float32)
    return {
        "seed": np.array([s.seed for s in settings], np.int32),
        "min_lr": np.array([s.min_lr for s in settings], np.float32),
        "max_lr": np.array([s.max_lr for s in settings], np.float32),
        "max_momentum": bounds[:, 0],
        "min_momentum": bounds[:, 1],
        "weight_decay": np.array([s.weight_decay for s in settings], np.float32),
    }


def _step_size(config: TrainConfig, total_steps: int) -> float:
    if config.step_size is not None:
        return config.step_size
    if config.lr_policy == "triangular":  # Smith 2017: step size of 2-10 epochs; 4 cycles here
        return max(1.0, total_steps / 8)
    return 0.45 * total_steps


def _warmup_steps(config: TrainConfig, total_steps: int) -> int:
    return round(config.warmup_fraction * total_steps)


def learning_rate(config: TrainConfig, hp: HParams, total_steps: int) -> optax.Schedule:
    policy = config.lr_policy
    if policy == "one_cycle":
        return schedules.one_cycle(total_steps, hp["min_lr"], hp["max_lr"],
                                   step_size=_step_size(config, total_steps),
                                   final_value=config.final_lr, anneal=config.anneal)
    if policy == "triangular":
        return schedules.triangular(hp["min_lr"], hp["max_lr"], _step_size(config, total_steps))
    if policy == "constant":
        return lambda count: hp["max_lr"]
    if policy == "range_test":
        return schedules.range_test(hp["min_lr"], hp["max_lr"], max(total_steps, 2),
                                    mode=config.range_mode)
    if policy == "inv":
        return schedules.inv(hp["max_lr"], config.inv_gamma, config.inv_power)
    final = 0.0 if config.final_lr is None else config.final_lr
    if policy == "cosine":  # the Flax ImageNet example's schedule
        return schedules.cosine(total_steps, hp["max_lr"], warmup_steps=_warmup_steps(
            config, total_steps), final_value=final)
    if policy == "wsd":
        return schedules.wsd(total_steps, hp["max_lr"], warmup_steps=_warmup_steps(
            config, total_steps), decay_steps=round(config.decay_fraction * total_steps),
            final_value=final, decay=config.wsd_decay)
    boundaries = sorted({max(1, int(round(b * total_steps))) for b in config.piecewise_boundaries})
    return schedules.multistep(hp["max_lr"], config.piecewise_gamma, boundaries)


def momentum(config: TrainConfig, hp: HParams, total_steps: int) -> optax.Schedule | jnp.ndarray:
    """Constant, or the mirror image of the LR cycle (Smith 2018, Sec. 4.3)."""
    if not isinstance(config.members_or_self()[0].momentum, tuple):
        return hp["max_momentum"]
    hi, lo = hp["max_momentum"], hp["min_momentum"]
    if config.lr_policy == "one_cycle":
        return schedules.one_cycle_momentum(total_steps, max_momentum=hi, min_momentum=lo,
                                            step_size=_step_size(config, total_steps),
                                            anneal=config.anneal)
    if config.lr_policy == "triangular":
        wave = schedules.triangular(0.0, 1.0, _step_size(config, total_steps))
        return lambda count: hi - (hi - lo) * wave(count)
    if config.lr_policy == "range_test":  # falls while the LR rises (Sec. 4.3, Fig. 8a)
        ramp = schedules.range_test(0.0, 1.0, max(total_steps, 2))
        return lambda count: hi - (hi - lo) * ramp(count)
    return hi


def make_optimizer(config: TrainConfig, hp: HParams, total_steps: int, *,
                   weight_decay_multipliers=None, learning_rate_multipliers=None
                   ) -> optax.GradientTransformation:
    """`config.optimizer` (SGD or AdamW) under the config's policies; the multipliers are the
    network's Caffe `decay_mult`/`lr_mult` (used when `config.param_multipliers`). With
    `config.accumulate_steps` k > 1 it is wrapped in `optax.MultiSteps`: fed one micro-batch's
    gradient per update, it updates the parameters on every k-th, with the mean of the k (the
    schedules count those updates)."""
    use = config.param_multipliers
    multipliers = dict(weight_decay_multipliers=weight_decay_multipliers if use else None,
                       learning_rate_multipliers=learning_rate_multipliers if use else None)
    lr, beta = learning_rate(config, hp, total_steps), momentum(config, hp, total_steps)
    if config.optimizer in SCHEDULE_FREE:
        opt = _schedule_free(config, hp, total_steps, lr, beta, multipliers)
    elif config.optimizer == "prodigy":
        opt = optax.inject_hyperparams(optax.contrib.prodigy, static_args=("betas",))(
            learning_rate=lr, betas=(beta, config.adam_b2), eps=config.adam_eps,
            weight_decay=hp["weight_decay"])
        if multipliers["learning_rate_multipliers"] is not None:
            opt = optax.chain(opt, transforms.scale_by_multipliers(
                multipliers["learning_rate_multipliers"]))
    elif config.optimizer == "adamw":
        opt = transforms.adamw(lr, b1=beta, b2=config.adam_b2, eps=config.adam_eps,
                               weight_decay=hp["weight_decay"], **multipliers)
    else:
        opt = transforms.sgd(lr, beta, nesterov=config.nesterov,
                             weight_decay=hp["weight_decay"],
                             decoupled_weight_decay=config.decoupled_weight_decay,
                             momentum_form=config.momentum_form, **multipliers)
    if config.accumulate_steps > 1:
        opt = optax.MultiSteps(opt, config.accumulate_steps).gradient_transformation()
    return opt


def _schedule_free(config: TrainConfig, hp: HParams, total_steps: int, lr, b1, multipliers
                   ) -> optax.GradientTransformation:
    """Schedule-free SGD or AdamW (Defazio et al. 2024; `optax.contrib.schedule_free`): the
    momentum-free base optimizer (`transforms.sgd` with momentum 0, or Adam's second moment
    with decoupled decay as `optax.contrib.schedule_free_adamw` builds it) steps `z`, and the
    trained weights interpolate between `z` and their running average with `b1`. Under
    `lr_policy="constant"` the LR warms up linearly over `warmup_fraction` of the run and then
    holds, as optax's `schedule_free_sgd(learning_rate, warmup_steps)` does; other policies
    give the LR as they are (the range test's ramp)."""
    if config.lr_policy == "constant" and _warmup_steps(config, total_steps):
        lr = optax.warmup_constant_schedule(0.0, hp["max_lr"], _warmup_steps(config, total_steps))
    if config.optimizer == "schedule_free_sgd":
        base = transforms.sgd(lr, 0.0, nesterov=False, weight_decay=hp["weight_decay"],
                              decoupled_weight_decay=config.decoupled_weight_decay,
                              **multipliers)
    else:
        base = optax.chain(
            optax.scale_by_rms(decay=config.adam_b2, eps=config.adam_eps, eps_in_sqrt=False,
                               bias_correction=True),
            transforms.add_decayed_weights(hp["weight_decay"],
                                           multipliers["weight_decay_multipliers"]),
            optax.inject_hyperparams(optax.scale_by_learning_rate)(learning_rate=lr))
        if multipliers["learning_rate_multipliers"] is not None:
            base = optax.chain(base, transforms.scale_by_multipliers(
                multipliers["learning_rate_multipliers"]))
    return optax.contrib.schedule_free(base, learning_rate=lr, b1=b1)
