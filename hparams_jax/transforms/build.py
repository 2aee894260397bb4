"""Building the transforms: `trace`, `sgd` (two momentum forms), `adamw`, and Caffe's
per-parameter multipliers (see the package docstring; Smith 2018, Sec. 4)."""

from __future__ import annotations

from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hparams_jax import _validate as v

Hyperparam = Union[float, jax.Array, optax.Schedule]

MOMENTUM_FORMS = ("pytorch", "caffe")


SCHEDULE_SAMPLES = 4097  # steps at which a schedule with a long horizon is checked


def _check_rate(name: str, value: Any, check, horizon: int | None = None) -> None:
    """Checks a constant with `check`, and a schedule at every step of `[0, horizon]`
    (`SCHEDULE_SAMPLES` evenly spaced steps when longer). Without a `horizon`, a schedule of
    `hparams_jax.schedules` gives its own (the steps that hold all its values) and any other
    callable is checked at step 0 only, as its range is unknown."""
    if not callable(value):
        check(name, value)
        return
    first = value(0)
    horizon = getattr(value, "horizon", 0) if horizon is None else horizon
    if isinstance(first, jax.core.Tracer) or horizon == 0:
        check(f"{name} at step 0", first)
        return
    steps = np.unique(np.linspace(0, horizon, min(horizon + 1, SCHEDULE_SAMPLES)).round())
    values = np.asarray(jax.vmap(value)(jnp.asarray(steps, jnp.int32)))
    try:
        check(name, values)
    except ValueError:  # name the first step whose value is not allowed
        for t, x in zip(steps, values):
            check(f"{name} at step {int(t)}", x.item() if x.ndim == 0 else x)
        raise


def _horizon(horizon: int | None) -> int | None:
    return None if horizon is None else v.step_count("horizon", horizon)


def _caffe(parts: list, learning_rate) -> list:
    """`parts` (the momentum trace and what follows it) with the LR inside the velocity, as
    Caffe's solvers keep it: the gradient scaled by the LR first, the sign flipped last."""
    return [optax.scale(learning_rate), *parts, optax.scale(-1.0)]


def _trace(momentum, learning_rate, nesterov: bool, momentum_form: str
           ) -> optax.GradientTransformation:
    velocity = optax.trace(decay=momentum, nesterov=nesterov)
    if momentum_form == "pytorch":
        return velocity
    return optax.chain(*_caffe([velocity], learning_rate))


def trace(momentum: Hyperparam, *, nesterov: bool = False, momentum_form: str = "pytorch",
          learning_rate: Hyperparam | None = None, horizon: int | None = None
          ) -> optax.GradientTransformation:
    """Momentum (heavy-ball or Nesterov) with a constant or scheduled coefficient.

    The schedule is evaluated at this transform's update count, which advances with every update
    like an optax learning-rate schedule's, so `trace(one_cycle_momentum(...))` chained with a
    `one_cycle` learning rate gives the paper's cyclical momentum (Sec. 4.3).

    `momentum_form="pytorch"` (the default) is `optax.trace`: a direction that
    `optax.scale_by_learning_rate` then scales. `momentum_form="caffe"` keeps `learning_rate`
    (required) inside the velocity, `v = m * v - lr * g` (Nesterov: `(1 + m) * v - m * v_prev`),
    and returns `v` itself: a complete update, not to be scaled again.

    The momentum is checked as in `sgd`: in [0, 1) at every step of the `horizon`.

    Args:
      momentum: the momentum coefficient in [0, 1): a constant or a schedule.
      nesterov: Nesterov momentum instead of heavy ball.
      momentum_form: "pytorch" or "caffe".
      learning_rate: the learning rate (a constant or a schedule, >= 0); required by
        `momentum_form="caffe"`, ignored by "pytorch".
      horizon: the steps `[0, horizon]` at which a schedule is checked, as in `sgd`.

    Returns:
      An `optax.GradientTransformation` whose state records the values its last update used
      (read them with `hyperparams`).

    Raises:
      ConfigError: the momentum is outside [0, 1) (at any step of a schedule's horizon),
        `momentum_form` is unknown, or "caffe" comes without a valid learning rate.

    Examples:
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from hparams_jax import schedules, transforms
      >>> opt = optax.chain(transforms.trace(schedules.one_cycle_momentum(100)),
      ...                   optax.scale_by_learning_rate(0.1))
      >>> params = {"w": jnp.zeros(2)}
      >>> grads = {"w": jnp.array([1.0, -1.0])}
      >>> state = opt.init(params)
      >>> for _ in range(2):
      ...     updates, state = opt.update(grads, state, params)
      >>> print(*(f"{x:.4f}" for x in updates["w"]))  # -0.1 * (m_1 + 1) * g, m_1 = 0.95 - 0.1 / 45
      -0.1948 0.1948
      >>> print(f"{float(transforms.hyperparams(state)['momentum']):.4f}")
      0.9478
    """
    horizon = _horizon(horizon)
    _check_rate("momentum", momentum, v.momentum, horizon)
    v.one_of("momentum_form", momentum_form, MOMENTUM_FORMS)
    if momentum_form == "caffe":
        v.check("learning_rate", learning_rate, learning_rate is not None,
                "given (a constant or a schedule) when momentum_form='caffe'")
        _check_rate("learning_rate", learning_rate, v.non_negative, horizon)
    return optax.inject_hyperparams(_trace, static_args=("nesterov", "momentum_form"))(
        momentum=momentum, learning_rate=learning_rate, nesterov=nesterov,
        momentum_form=momentum_form)


def scale_by_multipliers(multipliers: Any) -> optax.GradientTransformation:
    """Multiplies each update by its parameter's multiplier (a tree shaped like the params,
    scalars broadcast): Caffe's per-layer `lr_mult`.

    Args:
      multipliers: a tree shaped like the params (a prefix of its structure is not enough) of
        scalars or arrays that broadcast against each parameter.

    Returns:
      A stateless `optax.GradientTransformation`.

    Examples:
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from hparams_jax import transforms
      >>> opt = optax.chain(transforms.scale_by_multipliers({"w": 1.0, "b": 2.0}),
      ...                   optax.scale_by_learning_rate(0.1))
      >>> params = {"w": jnp.zeros(2), "b": jnp.zeros(1)}
      >>> grads = {"w": jnp.ones(2), "b": jnp.ones(1)}
      >>> updates, _ = opt.update(grads, opt.init(params), params)
      >>> print(updates["w"], updates["b"])  # the bias takes twice the step (Caffe lr_mult: 2)
      [-0.1 -0.1] [-0.2]
    """

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, m: u * m, updates, multipliers), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def add_decayed_weights(weight_decay: Any, multipliers: Any = None
                        ) -> optax.GradientTransformation:
    """`optax.add_decayed_weights` with Caffe's per-layer `decay_mult`: adds
    `weight_decay * multiplier * param` to each update.

    Args:
      weight_decay: the decay rate, a constant or a schedule.
      multipliers: a tree shaped like the params of per-parameter factors, or None (every
        factor 1: `optax.add_decayed_weights(weight_decay)` itself).

    Returns:
      An `optax.GradientTransformation`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from hparams_jax import transforms
      >>> decay = transforms.add_decayed_weights(0.1, {"w": 1.0, "b": 0.0})  # no decay on biases
      >>> params = {"w": jnp.array([2.0]), "b": jnp.array([2.0])}
      >>> grads = {"w": jnp.zeros(1), "b": jnp.zeros(1)}
      >>> updates, _ = decay.update(grads, decay.init(params), params)
      >>> print(updates["w"], updates["b"])
      [0.2] [0.]
    """
    if multipliers is None:
        return optax.add_decayed_weights(weight_decay)

    def update(updates, state, params):
        return jax.tree.map(lambda u, p, m: u + weight_decay * m * p, updates, params,
                            multipliers), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _sgd(learning_rate, momentum, weight_decay, nesterov: bool, decoupled_weight_decay: bool,
         momentum_form: str, weight_decay_multipliers, learning_rate_multipliers
         ) -> optax.GradientTransformation:
    caffe = momentum_form == "caffe"
    coupled = [] if decoupled_weight_decay else [
        add_decayed_weights(weight_decay, weight_decay_multipliers)]
    parts = []
    if momentum is not None:
        parts.append(optax.trace(decay=momentum, nesterov=nesterov))
    if decoupled_weight_decay:  # SGDW: w -= lr * wd * w, outside the velocity
        parts.append(add_decayed_weights(learning_rate * weight_decay if caffe else weight_decay,
                                         weight_decay_multipliers))
    if learning_rate_multipliers is not None:
        parts.append(scale_by_multipliers(learning_rate_multipliers))
    if caffe:  # v = m * v - lr * g: the LR enters before the velocity
        return optax.chain(*coupled, *_caffe(parts, learning_rate))
    return optax.chain(*coupled, *parts, optax.scale_by_learning_rate(learning_rate))


def sgd(
    learning_rate: Hyperparam,
    momentum: Hyperparam | None = None,
    *,
    nesterov: bool = False,
    weight_decay: Hyperparam = 0.0,
    decoupled_weight_decay: bool = False,
    momentum_form: str = "pytorch",
    weight_decay_multipliers: Any = None,
    learning_rate_multipliers: Any = None,
    horizon: int | None = None,
) -> optax.GradientTransformation:
    """SGD with momentum and weight decay, each a constant or a schedule (Smith 2018, Sec. 4).

    Coupled weight decay (the default; the paper's Caffe solver and PyTorch's SGD) adds
    `wd_t * params` to the gradient before the momentum buffer::

        g_t = grad + wd_t * params;  b_t = m_t * b_{t-1} + g_t
        update = -lr_t * (g_t + m_t * b_t)  (Nesterov)  or  -lr_t * b_t

    `decoupled_weight_decay=True` keeps the decay out of the buffer and subtracts
    `lr_t * wd_t * params` from the parameters instead (Loshchilov & Hutter's SGDW). With
    constants, this equals `optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr, momentum,
    nesterov=nesterov))` step for step.

    `momentum_form="caffe"` puts the learning rate inside the velocity as the paper's Caffe
    solvers do (`v = m * v - lr_t * g_t; w += v`; see the module docstring); with a constant LR
    it equals the default form.

    `weight_decay_multipliers` / `learning_rate_multipliers` (trees shaped like the params, e.g.
    a zoo model's `weight_decay_multipliers()`) scale the decay and the step per parameter, as
    Caffe's `decay_mult` / `lr_mult` do in the paper's prototxts.

    Checked at construction: a constant must be a number (or numeric array), the learning rate
    and weight decay >= 0, the momentum in [0, 1). A schedule is checked at every step of
    `[0, horizon]` (4097 evenly spaced ones when longer), so a momentum schedule that reaches 1
    later is refused rather than training into NaN. Without a `horizon`, a schedule from
    `hparams_jax.schedules` gives its own (its `horizon` attribute: the steps that hold all its
    values) and any other callable is checked at step 0 only.

    Args:
      learning_rate: the learning rate (>= 0), a constant or a schedule (e.g.
        `schedules.one_cycle`).
      momentum: the momentum in [0, 1), a constant or a schedule (e.g.
        `schedules.one_cycle_momentum`); None for plain SGD.
      nesterov: Nesterov momentum instead of heavy ball.
      weight_decay: the L2 weight decay (>= 0), a constant or a schedule.
      decoupled_weight_decay: SGDW's decay outside the momentum buffer.
      momentum_form: "pytorch" or "caffe".
      weight_decay_multipliers: per-parameter decay factors (a tree shaped like the params), or
        None.
      learning_rate_multipliers: per-parameter LR factors (a tree shaped like the params), or
        None.
      horizon: the steps `[0, horizon]` at which the schedules given are checked (a positive
        integer, e.g. the run's length), or None.

    Returns:
      An `optax.GradientTransformation` whose state records the values its last update used
      (read them with `hyperparams`).

    Raises:
      ConfigError: a hyper-parameter is not a number or out of range (at any step of a
        schedule's horizon), or `momentum_form` is unknown.

    Examples:
      The paper's 1cycle with cyclical momentum and weight decay 5e-4:

      >>> import jax.numpy as jnp
      >>> import optax
      >>> from hparams_jax import schedules, transforms
      >>> opt = transforms.sgd(schedules.one_cycle(100, 0.1, 1.0),
      ...                      schedules.one_cycle_momentum(100), weight_decay=5e-4)
      >>> params = {"w": jnp.ones(2)}
      >>> state = opt.init(params)
      >>> updates, state = opt.update({"w": jnp.ones(2)}, state, params)
      >>> params = optax.apply_updates(params, updates)
      >>> print(*(f"{x:.5f}" for x in params["w"]))  # 1 - 0.1 * (1 + 5e-4 * 1)
      0.89995 0.89995
      >>> {k: round(float(x), 4) for k, x in transforms.hyperparams(state).items()}
      {'learning_rate': 0.1, 'momentum': 0.95, 'weight_decay': 0.0005}

      A momentum schedule that reaches 1 is refused when the optimizer is built:

      >>> transforms.sgd(0.1, schedules.linear(0.9, 1.0, 10))  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      hparams_jax.errors.ConfigError: momentum at step 10=1.0 is not allowed: ...
    """
    horizon = _horizon(horizon)
    _check_rate("learning_rate", learning_rate, v.non_negative, horizon)
    if momentum is not None:
        _check_rate("momentum", momentum, v.momentum, horizon)
    _check_rate("weight_decay", weight_decay, v.non_negative, horizon)
    v.one_of("momentum_form", momentum_form, MOMENTUM_FORMS)
    return optax.inject_hyperparams(
        _sgd, static_args=("nesterov", "decoupled_weight_decay", "momentum_form",
                           "weight_decay_multipliers", "learning_rate_multipliers"))(
        learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay,
        nesterov=nesterov, decoupled_weight_decay=decoupled_weight_decay,
        momentum_form=momentum_form,
        weight_decay_multipliers=weight_decay_multipliers,
        learning_rate_multipliers=learning_rate_multipliers)


def _adamw(learning_rate, b1, b2, eps, weight_decay, weight_decay_mask,
           weight_decay_multipliers, learning_rate_multipliers) -> optax.GradientTransformation:
    decay = add_decayed_weights(weight_decay, weight_decay_multipliers)
    if weight_decay_mask is not None:
        decay = optax.masked(decay, weight_decay_mask)
    parts = [optax.scale_by_adam(b1=b1, b2=b2, eps=eps), decay]
    if learning_rate_multipliers is not None:
        parts.append(scale_by_multipliers(learning_rate_multipliers))
    parts.append(optax.scale_by_learning_rate(learning_rate))
    return optax.chain(*parts)


def adamw(
    learning_rate: Hyperparam,
    b1: Hyperparam = 0.9,
    b2: Hyperparam = 0.999,
    eps: Hyperparam = 1e-8,
    weight_decay: Hyperparam = 0.0,
    *,
    weight_decay_mask: Any = None,
    weight_decay_multipliers: Any = None,
    learning_rate_multipliers: Any = None,
    horizon: int | None = None,
) -> optax.GradientTransformation:
    """AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization") whose learning
    rate, `b1`, `b2`, `eps` and weight decay are each a constant or a schedule: a 1cycle LR
    with `schedules.one_cycle_momentum` as `b1` is fastai's `fit_one_cycle`, Adam's first-moment
    decay cycled as the paper cycles momentum (Smith 2018, Sec. 4.3). At update `t` (from 1),
    with the values the schedules give at step `t - 1`::

        m_t = b1_t * m_{t-1} + (1 - b1_t) * g_t;   v_t = b2_t * v_{t-1} + (1 - b2_t) * g_t**2
        p_t = p_{t-1} - lr_t * (m_t / (1 - b1_t**t) / (sqrt(v_t / (1 - b2_t**t)) + eps)
                                + wd_t * p_{t-1})

    as `optax.adamw` and PyTorch's `AdamW` compute it (with constants this is
    `optax.adamw(lr, b1, b2, eps, weight_decay=wd)` step for step). The decay is decoupled:
    it bypasses the moments and is scaled by the learning rate.

    Bias correction with a moving `b1`: `optax.scale_by_adam` (like PyTorch's Adam when a
    scheduler changes `betas`) divides by `1 - b1_t**t`, the *current* `b1` to the power of
    the step count, not by `1 - prod_s b1_s`, the weight the moving average has actually
    lost to its zero start. Both products fall below 1% within ~100 steps at `b1` <= 0.95, so
    only the first steps differ: while a 1cycle `b1` falls from 0.95 to 0.85, `b1_t**t` is the
    smaller, so the corrected first moment and the step come out smaller than the exact
    correction's, at most by 12.7% (step 14) in a 100-step run, 6.2% in 300 steps, 2.4% in
    1,000 and 0.3% in 10,000.

    `weight_decay_mask` (a tree of bools shaped like the params, or a function of the params
    returning one, as in `optax.adamw`) limits the decay to the leaves where it is True.
    `weight_decay_multipliers` / `learning_rate_multipliers` are per-parameter factors, as in
    `sgd` (Caffe's `decay_mult` / `lr_mult`); the LR multipliers scale the whole update.

    Args:
      learning_rate: the learning rate (>= 0), a constant or a schedule.
      b1: the first-moment decay in [0, 1), a constant or a schedule (e.g.
        `schedules.one_cycle_momentum`).
      b2: the second-moment decay in [0, 1), a constant or a schedule.
      eps: added to the denominator (>= 0), a constant or a schedule.
      weight_decay: the decoupled decay rate (>= 0), a constant or a schedule.
      weight_decay_mask: a tree of bools shaped like the params (or a function of the params
        returning one), or None (decay everywhere).
      weight_decay_multipliers: per-parameter decay factors, or None.
      learning_rate_multipliers: per-parameter LR factors, or None.
      horizon: the steps `[0, horizon]` at which the schedules given are checked, as in `sgd`.

    Returns:
      An `optax.GradientTransformation` whose state records the values its last update used
      (read them with `hyperparams`; `b1` also as `momentum`).

    Raises:
      ConfigError: a hyper-parameter is not a number or out of range (at any step of a
        schedule's horizon).

    Examples:
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from hparams_jax import schedules, transforms
      >>> opt = transforms.adamw(schedules.one_cycle(100, 1e-4, 1e-3),
      ...                        b1=schedules.one_cycle_momentum(100), weight_decay=1e-2)
      >>> params = {"w": jnp.ones(2)}
      >>> state = opt.init(params)
      >>> updates, state = opt.update({"w": jnp.array([1.0, -1.0])}, state, params)
      >>> print(*(f"{x:.6f}" for x in updates["w"]))  # -lr * (sign(g) + wd * w) at first
      -0.000101 0.000099
      >>> print(f"{float(transforms.hyperparams(state)['b1']):.2f}")
      0.95
    """
    horizon = _horizon(horizon)
    for name, value, check in (("learning_rate", learning_rate, v.non_negative),
                               ("b1", b1, v.momentum), ("b2", b2, v.momentum),
                               ("eps", eps, v.non_negative),
                               ("weight_decay", weight_decay, v.non_negative)):
        _check_rate(name, value, check, horizon)
    return optax.inject_hyperparams(
        _adamw, static_args=("weight_decay_mask", "weight_decay_multipliers",
                             "learning_rate_multipliers"))(
        learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
        weight_decay_mask=weight_decay_mask, weight_decay_multipliers=weight_decay_multipliers,
        learning_rate_multipliers=learning_rate_multipliers)
