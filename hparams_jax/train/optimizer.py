"""From a `TrainConfig` and one member's hyper-parameters to the optax optimizer it trains with.

The member's values (`min_lr`, `max_lr`, momentum bounds, `weight_decay`) arrive as scalars that
may be traced under `jax.vmap`, so K settings share one compiled step (Smith 2018, Sec. 4.4).
The LR policy and the optimizer are entries of `train.policies`; the momentum schedule is SGD's
momentum or AdamW's beta1 alike.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

from hparams_jax import momenta
from hparams_jax.train.config import TrainConfig
from hparams_jax.train.policies import LR_POLICIES, OPTIMIZERS, HParams


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


def learning_rate(config: TrainConfig, hp: HParams, total_steps: int) -> optax.Schedule:
    """The LR schedule of `config.lr_policy` (Smith 2018, Sec. 4.1)."""
    return LR_POLICIES[config.lr_policy].learning_rate(config, hp, total_steps)


def momentum(config: TrainConfig, hp: HParams, total_steps: int) -> optax.Schedule | jnp.ndarray:
    """Constant, or the mirror image of the LR cycle (Smith 2018, Sec. 4.3)."""
    cyclical = LR_POLICIES[config.lr_policy].momentum
    if cyclical is None or not momenta.is_cyclical(config.members_or_self()[0].momentum):
        return hp["max_momentum"]
    return cyclical(config, hp, total_steps)


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
    opt = OPTIMIZERS[config.optimizer].build(
        config, hp, total_steps, learning_rate(config, hp, total_steps),
        momentum(config, hp, total_steps), multipliers)
    if config.accumulate_steps > 1:
        opt = optax.MultiSteps(opt, config.accumulate_steps).gradient_transformation()
    return opt
