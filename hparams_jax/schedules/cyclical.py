"""The cyclical policies and the range-test ramp: CLR (Smith 2017, Sec. 3.1), 1cycle and its
mirror for momentum (Smith 2018, Sec. 4.1, 4.3), the LR range test's ramp (Sec. 4.1)."""

from __future__ import annotations


import jax.numpy as jnp
import optax

from hparams_jax import _validate as v
from hparams_jax.errors import ConfigError
from hparams_jax.schedules._base import Scalar, _interpolate, _phase, _spans, _step

TRIANGULAR_MODES = ("triangular", "triangular2", "exp_range")
ANNEALS = ("linear", "cos")
RAMP_MODES = ("linear", "exp")


def triangular(min_value: Scalar, max_value: Scalar, step_size: float, *,
               mode: str = "triangular", gamma: Scalar = 1.0) -> optax.Schedule:
    """Cyclical learning rate (CLR), Smith 2017, Sec. 3.1.

    The value moves linearly between `min_value` and `max_value` and back; `step_size` is half a
    cycle in steps. With `cycle = floor(1 + t / (2 s))` and `x = |t / s - 2 cycle + 1|`::

        value(t) = min + (max - min) * max(0, 1 - x) * scale(t)

    where `scale` is 1 (`triangular`), `1 / 2**(cycle - 1)` (`triangular2`: the amplitude halves
    every cycle) or `gamma**t` (`exp_range`). The cycles go on forever; `triangular2` and
    `exp_range` settle at `min_value`.

    Args:
      min_value: the lower bound (>= 0), e.g. the LR range test's max_lr / 3 or / 4.
      max_value: the upper bound (>= `min_value`), e.g. the range test's max_lr.
      step_size: steps in half a cycle (a positive number); the paper uses 2-10 epochs.
      mode: "triangular", "triangular2" or "exp_range".
      gamma: the per-step decay of the amplitude for `mode="exp_range"`, in (0, 1].

    Returns:
      An `optax.Schedule` with `horizon = 2 * step_size`.

    Raises:
      ConfigError: a bound is negative or the bounds are out of order, `step_size` is not
        positive, `mode` is unknown or `gamma` is outside (0, 1].

    Examples:
      >>> from hparams_jax import schedules
      >>> lr = schedules.triangular(0.1, 1.0, step_size=4)
      >>> print(*[f"{float(lr(t)):.4f}" for t in (0, 2, 4, 6, 8, 12)])
      0.1000 0.5500 1.0000 0.5500 0.1000 1.0000
      >>> lr2 = schedules.triangular(0.1, 1.0, step_size=4, mode="triangular2")
      >>> print(f"{float(lr2(12)):.4f}")  # the second peak is half as high
      0.5500
    """
    v.non_negative("min_value", min_value)
    v.non_negative("max_value", max_value)
    v.ordered("min_value", min_value, "max_value", max_value)
    step_size = v.step_length("step_size", step_size)
    v.one_of("mode", mode, TRIANGULAR_MODES)
    gamma_arr = v.numeric("gamma", gamma)
    if gamma_arr is not None:
        v.check("gamma", gamma, bool((gamma_arr > 0).all() and (gamma_arr <= 1).all()),
                "in (0, 1]")

    def schedule(count):
        t = _step(count)
        cycle = jnp.floor(1.0 + t / (2.0 * step_size))
        x = jnp.abs(t / step_size - 2.0 * cycle + 1.0)
        height = jnp.maximum(0.0, 1.0 - x)
        if mode == "triangular2":
            height = height * jnp.exp2(1.0 - cycle)
        elif mode == "exp_range":
            height = height * jnp.power(gamma, t)
        return min_value + (max_value - min_value) * height

    return _spans(schedule, 2.0 * step_size)  # later cycles stay within the first


def _one_cycle_steps(total_steps: int, step_size: float | None) -> tuple[int, float]:
    total_steps = v.step_count("total_steps", total_steps)
    if step_size is None:
        step_size = 0.45 * total_steps
    step_size = v.step_length("step_size", step_size)
    if 2 * step_size > total_steps:
        raise ConfigError(
            f"step_size={step_size!r} is not allowed with total_steps={total_steps}: the cycle "
            f"(2 * step_size = {2 * step_size}) must fit in total_steps, so step_size must be "
            f"<= {total_steps / 2}."
        )
    return total_steps, step_size


def one_cycle(total_steps: int, min_value: Scalar, max_value: Scalar, *,
              step_size: float | None = None, final_value: Scalar | None = None,
              anneal: str = "linear") -> optax.Schedule:
    """The 1cycle learning-rate policy, Smith 2018, Sec. 4.1.

    One cycle shorter than the run, then the annihilation phase::

        [0, s]          min_value -> max_value
        [s, 2s]         max_value -> min_value
        [2s, total]     min_value -> final_value   (annihilation)
        past total      final_value

    with `s = step_size` (default `0.45 * total_steps`) and `final_value` (default
    `min_value / 1000`, "several orders of magnitude below the initial LR"). `anneal="cos"`
    interpolates every phase with a half cosine instead of a straight line.

    Args:
      total_steps: length of the run in steps (a positive integer).
      min_value: the LR at step 0 and at the end of the cycle (>= 0); the paper uses
        max_value / 10 (or / 3 to / 4 from the range test).
      max_value: the LR at the top of the cycle (>= `min_value`), from the LR range test.
      step_size: steps in half the cycle (default `0.45 * total_steps`); the cycle
        (`2 * step_size`) must fit in `total_steps`.
      final_value: the LR at `total_steps` and after (in [0, `min_value`]; default
        `min_value / 1000`): the annihilation ends at or below `min_value`.
      anneal: "linear" or "cos", the shape of every phase.

    Returns:
      An `optax.Schedule` with `horizon = total_steps`.

    Raises:
      ConfigError: a value is negative or the bounds are out of order (`final_value` above
        `min_value` included), a step count is not positive, the cycle does not fit in
        `total_steps`, or `anneal` is unknown.

    Examples:
      >>> from hparams_jax import schedules
      >>> lr = schedules.one_cycle(100, 0.1, 1.0)  # step_size 45, final_value 1e-4
      >>> print(*[f"{float(lr(t)):.4g}" for t in (0, 45, 90, 95, 100, 1000)])
      0.1 1 0.1 0.05005 0.0001 0.0001
    """
    total_steps, step_size = _one_cycle_steps(total_steps, step_size)
    v.non_negative("min_value", min_value)
    v.non_negative("max_value", max_value)
    v.ordered("min_value", min_value, "max_value", max_value)
    if final_value is None:
        final_value = min_value / 1000.0
    v.non_negative("final_value", final_value)
    v.ordered("final_value", final_value, "min_value", min_value,
              "the annihilation takes the LR down from min_value, Sec. 4.1")
    v.one_of("anneal", anneal, ANNEALS)
    annihilation = total_steps - 2.0 * step_size

    def schedule(count):
        t = _step(count)
        rise = _interpolate(min_value, max_value, _phase(t, 0.0, step_size), anneal)
        fall = _interpolate(max_value, min_value, _phase(t, step_size, step_size), anneal)
        anneal_ = _interpolate(
            min_value, final_value, _phase(t, 2.0 * step_size, annihilation), anneal)
        return jnp.where(t <= step_size, rise, jnp.where(t <= 2.0 * step_size, fall, anneal_))

    return _spans(schedule, total_steps)


def one_cycle_momentum(total_steps: int, *, max_momentum: Scalar = 0.95,
                       min_momentum: Scalar = 0.85, step_size: float | None = None,
                       anneal: str = "linear") -> optax.Schedule:
    """Cyclical momentum, the mirror image of `one_cycle`, Smith 2018, Sec. 4.3 and Fig. 8.

    Momentum falls from `max_momentum` to `min_momentum` while the learning rate rises
    (`[0, s]`), climbs back while it falls (`[s, 2s]`) and is held at `max_momentum` through the
    annihilation phase and beyond. Use the same `total_steps`/`step_size` as the LR policy.

    Args:
      total_steps: length of the run in steps, as for `one_cycle`.
      max_momentum: the momentum at step 0 and from `2 * step_size` on, in [0, 1).
      min_momentum: the momentum at the LR's peak (`step_size`), in [0, `max_momentum`].
      step_size: steps in half the cycle (default `0.45 * total_steps`), as for `one_cycle`.
      anneal: "linear" or "cos", the shape of both phases.

    Returns:
      An `optax.Schedule` with `horizon = total_steps`.

    Raises:
      ConfigError: a momentum is outside [0, 1) or the bounds are out of order, a step count is
        not positive or the cycle does not fit, or `anneal` is unknown.

    Examples:
      >>> from hparams_jax import schedules
      >>> lr = schedules.one_cycle(100, 0.1, 1.0)
      >>> momentum = schedules.one_cycle_momentum(100)
      >>> for t in (0, 45, 90, 100):
      ...     print(t, f"lr {float(lr(t)):.4g}", f"momentum {float(momentum(t)):.2f}")
      0 lr 0.1 momentum 0.95
      45 lr 1 momentum 0.85
      90 lr 0.1 momentum 0.95
      100 lr 0.0001 momentum 0.95
    """
    total_steps, step_size = _one_cycle_steps(total_steps, step_size)
    v.momentum("min_momentum", min_momentum)
    v.momentum("max_momentum", max_momentum)
    v.ordered("min_momentum", min_momentum, "max_momentum", max_momentum)
    v.one_of("anneal", anneal, ANNEALS)

    def schedule(count):
        t = _step(count)
        down = _interpolate(max_momentum, min_momentum, _phase(t, 0.0, step_size), anneal)
        up = _interpolate(min_momentum, max_momentum, _phase(t, step_size, step_size), anneal)
        return jnp.where(t <= step_size, down, up)

    return _spans(schedule, total_steps)


def range_test(start: Scalar, stop: Scalar, num_steps: int, *, mode: str = "linear"
               ) -> optax.Schedule:
    """The LR range-test ramp, Smith 2018, Sec. 4.1 (Smith 2017, Sec. 3.3).

    Step 0 uses `start`, step `num_steps - 1` uses `stop`, held after. `mode="linear"` (as in
    the paper) rises in equal increments; `mode="exp"` in equal ratios (geometric), which gives
    more steps to small values, as fastai's and pytorch-lr-finder's finders do.

    Args:
      start: the value at step 0 (>= 0; > 0 for `mode="exp"`).
      stop: the value at step `num_steps - 1` and after (> 0, >= `start`).
      num_steps: steps of the ramp (an integer >= 2).
      mode: "linear" or "exp".

    Returns:
      An `optax.Schedule` with `horizon = num_steps - 1`.

    Raises:
      ConfigError: `start` or `stop` is out of range or they are out of order, `num_steps` is
        below 2, or `mode` is unknown.

    Examples:
      >>> from hparams_jax import schedules
      >>> ramp = schedules.range_test(0.0, 1.0, 11)
      >>> print(*[f"{float(ramp(t)):.2f}" for t in (0, 5, 10, 20)])
      0.00 0.50 1.00 1.00
      >>> ramp = schedules.range_test(1e-4, 1.0, 5, mode="exp")
      >>> print(*[f"{float(ramp(t)):.0e}" for t in range(5)])
      1e-04 1e-03 1e-02 1e-01 1e+00
    """
    num_steps = v.step_count("num_steps", num_steps)
    v.check("num_steps", num_steps, num_steps >= 2, "at least 2")
    v.one_of("mode", mode, RAMP_MODES)
    (v.strictly_positive if mode == "exp" else v.non_negative)("start", start)
    v.strictly_positive("stop", stop)
    v.ordered("start", start, "stop", stop)

    def schedule(count):
        frac = jnp.clip(_step(count) / (num_steps - 1), 0.0, 1.0)
        if mode == "exp":
            return start * jnp.power(stop / start, frac)
        return start + (stop - start) * frac

    return _spans(schedule, num_steps - 1)
