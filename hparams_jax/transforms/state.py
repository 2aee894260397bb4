"""Reading an optimizer's state: the hyper-parameters its last update used (for logging) and
the averaged weights a schedule-free optimizer is evaluated at."""

from __future__ import annotations

import jax
import optax

HYPERPARAM_NAMES = ("learning_rate", "momentum", "weight_decay")
# Adam's decay rates, read besides HYPERPARAM_NAMES where the optimizer has them (b1 is also
# reported as `momentum`).
ADAM_HYPERPARAM_NAMES = ("b1", "b2")


def _is_injected(x) -> bool:
    return isinstance(x, optax.InjectStatefulHyperparamsState)


def _states(opt_state: optax.OptState, kinds: tuple[type, ...]):
    """The states of the `kinds` inside `opt_state`, outermost first, through any wrapper
    (and inside the wrapped states of `inject_hyperparams` and `schedule_free`)."""
    for state in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda x: isinstance(x, kinds)):
        if isinstance(state, kinds):
            yield state
            if isinstance(state, optax.InjectStatefulHyperparamsState):
                yield from _states(state.inner_state, kinds)
            elif isinstance(state, optax.contrib.ScheduleFreeState):
                yield from _states(state.base_optimizer_state, kinds)


def hyperparams(opt_state: optax.OptState) -> dict[str, jax.Array | float]:
    """The `learning_rate`, `momentum` and `weight_decay` used by the last update, and Adam's
    `b1` and `b2` where the optimizer has them (`adamw`; its `b1` is also its `momentum`, so
    logs and plots read the same key for SGD's momentum and Adam's first-moment decay).

    Looks through `optax.chain`, `optax.MultiSteps`, `optax.apply_if_finite` and any other
    wrapper for the states of `sgd`/`trace`/`adamw`/`optax.inject_hyperparams`; a
    hyper-parameter of HYPERPARAM_NAMES the optimizer does not have (no momentum, no weight
    decay) reads 0. Before the first update the values are those the first update will use.
    Schedule-free's interpolation `b1` reads as its momentum (`optax.contrib.schedule_free`),
    and Prodigy's learning rate as the one it steps with, its distance estimate `d` times the
    injected multiplier (`optax.contrib.prodigy`).

    Args:
      opt_state: the state of an optimizer built from `sgd`, `trace`, `adamw` or
        `optax.inject_hyperparams`, alone or inside wrappers.

    Returns:
      A dict from `learning_rate`, `momentum`, `weight_decay` (and `b1`, `b2` for Adam) to
      their values: scalars, or (K,) arrays for an optimizer vmapped over K settings.

    Examples:
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from hparams_jax import schedules, transforms
      >>> opt = optax.MultiSteps(transforms.sgd(schedules.one_cycle(10, 0.1, 1.0), 0.9), 2)
      >>> state = opt.init({"w": jnp.zeros(1)})
      >>> print({k: round(float(x), 3) for k, x in transforms.hyperparams(state).items()})
      {'learning_rate': 0.1, 'momentum': 0.9, 'weight_decay': 0.0}
    """
    found: dict[str, jax.Array] = {}
    for state in _states(opt_state, (optax.InjectStatefulHyperparamsState,
                                     optax.contrib.ScheduleFreeState, optax.contrib.ProdigyState)):
        if isinstance(state, optax.contrib.ScheduleFreeState):
            found.setdefault("momentum", state.b1)
        elif isinstance(state, optax.contrib.ProdigyState):
            found["learning_rate"] = found.get("learning_rate", 1.0) * state.estim_lr
        else:
            for name in (*HYPERPARAM_NAMES, *ADAM_HYPERPARAM_NAMES):
                if name in state.hyperparams:
                    found.setdefault(name, state.hyperparams[name])
    if "b1" in found:
        found.setdefault("momentum", found["b1"])
    out = {name: found.get(name, 0.0) for name in HYPERPARAM_NAMES}
    out.update({name: found[name] for name in ADAM_HYPERPARAM_NAMES if name in found})
    return out


def schedule_free_eval_params(opt_state: optax.OptState, params):
    """The averaged weights `x` a schedule-free optimizer evaluates (Defazio et al. 2024;
    `optax.contrib.schedule_free_eval_params`), its state found through any wrapper
    (`optax.MultiSteps`, `optax.chain`).

    Args:
      opt_state: the optimizer's state.
      params: the trained weights (schedule-free's `y`).

    Returns:
      The averaged weights, or `params` as they are where the optimizer is not schedule-free.

    Examples:
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from hparams_jax import transforms
      >>> opt = optax.MultiSteps(optax.contrib.schedule_free_sgd(1.0, b1=0.5), 1)
      >>> params = {"w": jnp.array([1.0])}
      >>> state = opt.init(params)
      >>> for _ in range(2):  # gradient 1: z = 1, 0, -1; x, the mean of the z's since 0
      ...     updates, state = opt.update({"w": jnp.array([1.0])}, state, params)
      ...     params = optax.apply_updates(params, updates)  # y = 0.5 x + 0.5 z
      >>> print(params["w"], transforms.schedule_free_eval_params(state, params)["w"])
      [-0.75] [-0.5]
    """
    for state in _states(opt_state, (optax.contrib.ScheduleFreeState,)):
        return optax.contrib.schedule_free_eval_params(state, params)
    return params
