"""The schedules of today's practice that 1cycle is measured against: cosine decay after a
linear warmup, and warmup-stable-decay (WSD), both built from optax's pieces."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from hparams_jax import _validate as v
from hparams_jax.schedules._base import Scalar, _spans, _step

def _warmup_then(total_steps: int, warmup_steps: int, init_value: Scalar, peak_value: Scalar,
                 after: list, boundaries: list) -> optax.Schedule:
    """A linear warmup from `init_value` to `peak_value` over `warmup_steps` (none when 0),
    then the schedules `after` joined at `boundaries` (optax's `join_schedules`); a float32
    value at every step."""
    pieces = [optax.linear_schedule(init_value, peak_value, warmup_steps)] if warmup_steps else []
    join = optax.join_schedules(pieces + after, [warmup_steps] * bool(warmup_steps) + boundaries)
    return _spans(lambda count: jnp.asarray(join(count), jnp.float32), total_steps)


def _check_warmup(total_steps: int, warmup_steps: int, decay_steps: int = 0) -> int:
    total_steps = v.step_count("total_steps", total_steps)
    for name, steps in (("warmup_steps", warmup_steps), ("decay_steps", decay_steps)):
        v.check(name, steps, isinstance(steps, int) and not isinstance(steps, bool)
                and 0 <= steps <= total_steps, f"an integer in [0, total_steps={total_steps}]")
    v.check("decay_steps", decay_steps, warmup_steps + decay_steps <= total_steps,
            f"at most total_steps - warmup_steps = {total_steps - warmup_steps} (the warmup "
            "and the decay must fit in the run)")
    return total_steps


def cosine(total_steps: int, peak_value: Scalar, *, warmup_steps: int, init_value: Scalar = 0.0,
           final_value: Scalar = 0.0) -> optax.Schedule:
    """Cosine decay with a linear warmup (Loshchilov & Hutter 2017 without restarts; Goyal et
    al. 2017's warmup), the schedule of the Flax ImageNet example that 1cycle is measured
    against: `init_value -> peak_value` over `warmup_steps`, then
    `final + (peak - final) * (1 + cos(pi * s)) / 2` with `s` the fraction of the remaining
    steps done, then `final_value`. `optax.warmup_cosine_decay_schedule` computes the same
    but cannot take a traced `peak_value` (a vmapped sweep), so it is built from optax's
    `linear_schedule` and `cosine_decay_schedule`.

    Args:
      total_steps: length of the run in steps, warmup included (a positive integer).
      peak_value: the LR at the end of the warmup (> 0).
      warmup_steps: steps of the warmup (in [0, total_steps]).
      init_value: the LR at step 0 (>= 0).
      final_value: the LR at `total_steps` and after (>= 0).

    Returns:
      An `optax.Schedule` with `horizon = total_steps`.

    Raises:
      ConfigError: a value is out of range or a step count does not fit in the run.

    Examples:
      >>> from hparams_jax import schedules
      >>> lr = schedules.cosine(100, 1.0, warmup_steps=10)
      >>> print(*[f"{float(lr(t)):.4g}" for t in (0, 5, 10, 55, 100, 1000)])
      0 0.5 1 0.5 0 0
    """
    total_steps = _check_warmup(total_steps, warmup_steps)
    v.strictly_positive("peak_value", peak_value)
    v.non_negative("init_value", init_value)
    v.non_negative("final_value", final_value)
    decay = optax.cosine_decay_schedule(peak_value, max(total_steps - warmup_steps, 1),
                                        alpha=final_value / peak_value)
    return _warmup_then(total_steps, warmup_steps, init_value, peak_value, [decay], [])


WSD_DECAYS = ("linear", "1-sqrt")


def wsd(total_steps: int, peak_value: Scalar, *, warmup_steps: int, decay_steps: int,
        init_value: Scalar = 0.0, final_value: Scalar = 0.0, decay: str = "linear"
        ) -> optax.Schedule:
    """Warmup-stable-decay (WSD; Hu et al. 2024, MiniCPM, arXiv 2404.06395), a schedule of
    today's practice that 1cycle is measured against::

        [0, w]              init_value -> peak_value, linear      (warmup)
        [w, total - d]      peak_value                            (stable)
        [total - d, total]  peak_value -> final_value             (decay, or cooldown)
        past total          final_value

    With `s` the fraction of the decay done, the decay is `peak + (final - peak) * s` for
    `decay="linear"`, or `final + (peak - final) * (1 - sqrt(s))` for `decay="1-sqrt"` (the
    cooldown Hägele et al. 2024, arXiv 2405.18392, found best). Built from optax's
    `linear_schedule`, `constant_schedule` and `join_schedules`.

    Args:
      total_steps: length of the run in steps (a positive integer).
      peak_value: the LR of the stable phase (>= 0).
      warmup_steps: steps of the warmup (>= 0).
      decay_steps: steps of the decay (>= 0); `warmup_steps + decay_steps <= total_steps`.
      init_value: the LR at step 0 (>= 0).
      final_value: the LR at `total_steps` and after (>= 0).
      decay: "linear" or "1-sqrt", the shape of the decay.

    Returns:
      An `optax.Schedule` with `horizon = total_steps`.

    Raises:
      ConfigError: a value is negative, a step count is out of range, the warmup and the decay
        do not fit in `total_steps`, or `decay` is unknown.

    Examples:
      >>> from hparams_jax import schedules
      >>> lr = schedules.wsd(100, 1.0, warmup_steps=10, decay_steps=20, decay="1-sqrt")
      >>> print(*[f"{float(lr(t)):.4g}" for t in (0, 5, 10, 80, 85, 100, 1000)])
      0 0.5 1 1 0.5 0 0
    """
    total_steps = _check_warmup(total_steps, warmup_steps, decay_steps)
    for name, value in (("peak_value", peak_value), ("init_value", init_value),
                        ("final_value", final_value)):
        v.non_negative(name, value)
    v.one_of("decay", decay, WSD_DECAYS)
    after, boundaries = [optax.constant_schedule(peak_value)], []
    if decay_steps:
        boundaries.append(total_steps - decay_steps)
        if decay == "linear":
            after.append(optax.linear_schedule(peak_value, final_value, decay_steps))
        else:
            after.append(lambda count: final_value + (peak_value - final_value) * (
                1.0 - jnp.sqrt(jnp.clip(_step(count) / decay_steps, 0.0, 1.0))))
    return _warmup_then(total_steps, warmup_steps, init_value, peak_value,
                        after + [optax.constant_schedule(final_value)],
                        boundaries + [total_steps])
