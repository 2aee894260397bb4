"""Decays: the weight-decay policies (Smith 2018, Sec. 4.4: constant, linear) and Caffe's LR
decay policies, the baselines the author's solvers ran against (`inv` is the LeNet/MNIST
baseline of Sec. 4.1 and Table 1; `step`, `multistep`, `poly`)."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from hparams_jax import _validate as v
from hparams_jax.schedules._base import Scalar, _float_steps, _spans, _step

def constant(value: Scalar) -> optax.Schedule:
    """A constant value; the paper's recommended weight-decay policy (Sec. 4.4).

    Args:
      value: the value at every step (>= 0).

    Returns:
      An `optax.Schedule` (`optax.constant_schedule(value)`).

    Raises:
      ConfigError: `value` is negative or not a number.

    Examples:
      >>> from hparams_jax import schedules
      >>> wd = schedules.constant(5e-4)
      >>> print(wd(0), wd(10_000))
      0.0005 0.0005
    """
    v.non_negative("value", value)
    return optax.constant_schedule(value)


def linear(start: Scalar, end: Scalar, num_steps: int) -> optax.Schedule:
    """Linear change from `start` (step 0) to `end` (step `num_steps`), then held
    (`optax.linear_schedule`).

    A linearly decaying weight decay as tried in Smith 2018, Sec. 4.4.

    Args:
      start: the value at step 0 (>= 0).
      end: the value at step `num_steps` and after (>= 0; above or below `start`).
      num_steps: steps of the change (a positive integer).

    Returns:
      An `optax.Schedule` with `horizon = num_steps`.

    Raises:
      ConfigError: `start` or `end` is negative, or `num_steps` is not a positive integer.

    Examples:
      >>> from hparams_jax import schedules
      >>> wd = schedules.linear(5e-4, 0.0, 100)
      >>> print(*[f"{float(wd(t)):.2e}" for t in (0, 50, 100, 200)])
      5.00e-04 2.50e-04 0.00e+00 0.00e+00
    """
    v.non_negative("start", start)
    v.non_negative("end", end)
    num_steps = v.step_count("num_steps", num_steps)
    return _spans(_float_steps(optax.linear_schedule(start, end, num_steps)), num_steps)


# --- Caffe's decay policies (the baselines of the author's solvers) ---------------------------

def inv(base_value: Scalar, gamma: float, power: float) -> optax.Schedule:
    """Caffe's `inv` policy, the LR of its LeNet solver and of the paper's MNIST baseline
    (Sec. 4.1, Table 1)::

        value(t) = base_value * (1 + gamma * t) ** (-power)

    Caffe's `lenet_solver.prototxt` uses base 0.01, gamma 1e-4, power 0.75.

    Args:
      base_value: the value at step 0 (>= 0).
      gamma: the decay rate per step (>= 0).
      power: the exponent (>= 0).

    Returns:
      An `optax.Schedule`.

    Raises:
      ConfigError: a value is negative or not a number.

    Examples:
      >>> from hparams_jax import schedules
      >>> lr = schedules.inv(0.01, 1e-4, 0.75)  # Caffe's LeNet solver
      >>> print(*[f"{float(lr(t)):.4g}" for t in (0, 10_000, 30_000)])  # 0.01 * 2**-0.75, 4**-0.75
      0.01 0.005946 0.003536
    """
    v.non_negative("base_value", base_value)
    gamma = v.non_negative_number("gamma", gamma)
    power = v.non_negative_number("power", power)

    def schedule(count):
        return base_value * jnp.power(1.0 + gamma * _step(count), -power)

    return schedule


def _factor(gamma: float) -> float:
    """A decay policy's factor, in (0, 1]."""
    gamma = v.positive_number("gamma", gamma)
    v.check("gamma", gamma, gamma <= 1, "in (0, 1]")
    return gamma


def step(base_value: Scalar, gamma: float, step_size: int) -> optax.Schedule:
    """Caffe's `step` policy: the value drops by `gamma` every `step_size` steps
    (`optax.exponential_decay` in its staircase form)::

        value(t) = base_value * gamma ** floor(t / step_size)

    Args:
      base_value: the value at step 0 (>= 0).
      gamma: the factor applied every `step_size` steps, in (0, 1].
      step_size: steps between drops (a positive integer).

    Returns:
      An `optax.Schedule`.

    Raises:
      ConfigError: `base_value` is negative, `gamma` is outside (0, 1] or `step_size` is not a
        positive integer.

    Examples:
      >>> from hparams_jax import schedules
      >>> lr = schedules.step(0.1, 0.1, 30)
      >>> print(*[f"{float(lr(t)):.4g}" for t in (0, 29, 30, 60)])
      0.1 0.1 0.01 0.001
    """
    v.non_negative("base_value", base_value)
    gamma, step_size = _factor(gamma), v.step_count("step_size", step_size)
    return _float_steps(optax.exponential_decay(base_value, step_size, gamma, staircase=True))


def multistep(base_value: Scalar, gamma: float, boundaries) -> optax.Schedule:
    """Caffe's `multistep` policy (its `stepvalue`s): the value drops by `gamma` at each step
    of `boundaries`, the baselines of the author's DenseNet and ImageNet runs::

        value(t) = base_value * gamma ** (number of boundaries <= t)

    Args:
      base_value: the value at step 0 (>= 0).
      gamma: the factor applied at each boundary, in (0, 1].
      boundaries: strictly increasing step counts (positive integers).

    Returns:
      An `optax.Schedule`.

    Raises:
      ConfigError: `base_value` is negative, `gamma` is outside (0, 1] or `boundaries` are not
        strictly increasing positive integers.

    Examples:
      >>> from hparams_jax import schedules
      >>> lr = schedules.multistep(0.1, 0.1, (100, 150))
      >>> print(*[f"{float(lr(t)):.4g}" for t in (0, 99, 100, 150)])
      0.1 0.1 0.01 0.001
    """
    v.non_negative("base_value", base_value)
    gamma, boundaries = _factor(gamma), tuple(boundaries)
    for b in boundaries:
        v.step_count("boundaries", b)
    v.check("boundaries", boundaries, list(boundaries) == sorted(set(boundaries)),
            "strictly increasing step counts")

    def schedule(count):
        t = _step(count)
        drops = sum((t >= b).astype(jnp.float32) for b in boundaries)
        return base_value * jnp.power(gamma, drops)

    return schedule


def poly(base_value: Scalar, power: float, num_steps: int) -> optax.Schedule:
    """Caffe's `poly` policy: a polynomial decay to 0 at `num_steps` (its `max_iter`), then 0::

        value(t) = base_value * (1 - t / num_steps) ** power

    Args:
      base_value: the value at step 0 (>= 0).
      power: the exponent (>= 0; 1 is a linear decay).
      num_steps: the step at which the value reaches 0 (a positive integer).

    Returns:
      An `optax.Schedule`.

    Raises:
      ConfigError: a value is negative or `num_steps` is not a positive integer.

    Examples:
      >>> from hparams_jax import schedules
      >>> lr = schedules.poly(0.1, 2.0, 100)  # 0.1 * (1 - t / 100) ** 2
      >>> [round(float(lr(t)), 4) for t in (0, 50, 100, 200)]
      [0.1, 0.025, 0.0, 0.0]
    """
    v.non_negative("base_value", base_value)
    power = v.non_negative_number("power", power)
    num_steps = v.step_count("num_steps", num_steps)

    def schedule(count):  # optax.polynomial_schedule's `1 - count / steps` can fall below 0
        # once compiled (XLA divides by multiplying), which a fractional power turns into NaN
        remaining = jnp.clip((num_steps - _step(count)) / num_steps, 0.0, 1.0)
        return base_value * jnp.power(remaining, power)

    return schedule
