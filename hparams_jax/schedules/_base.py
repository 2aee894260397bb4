"""What every schedule shares: the step as float32, the phase arithmetic, the `horizon` a
schedule records (see the package docstring)."""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import optax

from hparams_jax import _validate as v

Scalar = Any  # float, or a JAX/NumPy array when a sweep is vmapped


def _interpolate(start: Scalar, end: Scalar, frac: jnp.ndarray, anneal: str) -> jnp.ndarray:
    """Value a fraction `frac` in [0, 1] of the way from `start` to `end`."""
    if anneal == "cos":
        frac = 0.5 * (1.0 - jnp.cos(jnp.pi * frac))
    return (1.0 - frac) * start + frac * end


def _phase(step: jnp.ndarray, begin: float, length: float) -> jnp.ndarray:
    """Progress in [0, 1] through a phase; a phase of length 0 is complete once begun."""
    if length <= 0:
        return (step > begin).astype(jnp.float32)
    return jnp.clip((step - begin) / length, 0.0, 1.0)


def _step(count) -> jnp.ndarray:
    return jnp.asarray(count, dtype=jnp.float32)


def _float_steps(schedule: optax.Schedule) -> optax.Schedule:
    """`schedule` (optax's) fed the step count as float32, so that a Python int step past the
    int32 range holds the final value instead of overflowing."""
    return lambda count: schedule(_step(count))


def _spans(schedule: optax.Schedule, horizon: float) -> optax.Schedule:
    """Records that `schedule` takes all its values within steps `[0, horizon]`."""
    schedule.horizon = min(math.ceil(horizon), v.MAX_STEPS)
    return schedule
