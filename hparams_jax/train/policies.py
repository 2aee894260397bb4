"""The learning-rate policies and optimizers a `TrainConfig` names: one entry each, a table of
each (Smith 2018, Sec. 4).

An `LRPolicy` entry is its `lr_policy` name, a few words of help, the builder of its LR
schedule, the builder of the cyclical momentum that goes with it (the mirror image of its LR
cycle, Sec. 4.3; None: a cyclical momentum is held at its max), the `TrainConfig` fields of its
own (beyond the LR bounds `LR_BOUNDS`, which every policy takes) and the check of their values.
An `Optimizer` entry is its `optimizer` name, its help, the builder of the optax optimizer from
the LR and momentum schedules, its own fields and their check. Builders take
`(config, hp, total_steps)`: the config, one sweep member's hyper-parameters (scalars, traced
under `jax.vmap`: `min_lr`, `max_lr`, `max_momentum`, `min_momentum`, `weight_decay`) and the
run's length in optimizer steps.

Everything else is read from the tables: `TrainConfig`'s `lr_policy` and `optimizer` choices,
their help, the validation of the entries' fields, which fields the command line's
`range-test` and `tune` leave out, and `check_fields_apply`. A new policy or optimizer is one
entry here (and a `TrainConfig` field in `train/config.py` for a setting of its own).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Mapping

import jax.numpy as jnp
import optax

from hparams_jax import _validate as v
from hparams_jax import momenta, schedules, transforms
from hparams_jax.errors import ConfigError

if TYPE_CHECKING:
    from hparams_jax.train.config import TrainConfig

HParams = Mapping[str, jnp.ndarray]
Build = Callable[["TrainConfig", HParams, int], Any]
LR_BOUNDS = ("min_lr", "max_lr")  # read by every policy (constant, piecewise, inv: max_lr only)


def _nothing(config: TrainConfig) -> None:
    """No field of its own to check."""


@dataclasses.dataclass(frozen=True)
class LRPolicy:
    """A learning-rate policy, `TrainConfig.lr_policy`.

    Attributes:
      name: its `lr_policy` value.
      help: a few words, listed in the field's help.
      learning_rate: builds its LR schedule from `(config, hp, total_steps)`.
      fields: the `TrainConfig` fields it reads besides `LR_BOUNDS`.
      momentum: builds the schedule of a cyclical momentum under it from `(config, hp,
        total_steps)`: falling from `hp["max_momentum"]` to `hp["min_momentum"]` while the LR
        rises (Sec. 4.3); None holds it at its max.
      validate: raises `ConfigError` for a value of `fields` that is not allowed (run on every
        config, whatever its policy).

    Examples:
      >>> from hparams_jax.train.policies import LR_POLICIES
      >>> LR_POLICIES["inv"].fields, LR_POLICIES["inv"].momentum is None
      (('inv_gamma', 'inv_power'), True)
    """

    name: str
    help: str
    learning_rate: Build
    fields: tuple[str, ...] = ()
    momentum: Build | None = None
    validate: Callable[[TrainConfig], None] = _nothing


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """An optimizer, `TrainConfig.optimizer`.

    Attributes:
      name: its `optimizer` value.
      help: a few words, listed in the field's help.
      build: `(config, hp, total_steps, learning_rate, momentum, multipliers)` -> the
        `optax.GradientTransformation`: `learning_rate` and `momentum` are the policy's
        schedules (or values), `multipliers` the keywords `weight_decay_multipliers` and
        `learning_rate_multipliers`.
      fields: the `TrainConfig` fields it reads.
      validate: raises `ConfigError` for a value of `fields` that is not allowed (run on every
        config, whatever its optimizer).
      averaged: it is evaluated at averaged weights, not at the trained ones (schedule-free:
        `transforms.schedule_free_eval_params`, with batch-norm statistics recomputed for
        them, `steps.Engine.averaged`).

    Examples:
      >>> from hparams_jax.train.policies import OPTIMIZERS
      >>> OPTIMIZERS["adamw"].fields, OPTIMIZERS["schedule_free_sgd"].averaged
      (('adam_b2', 'adam_eps'), True)
    """

    name: str
    help: str
    build: Callable[..., optax.GradientTransformation]
    fields: tuple[str, ...] = ()
    validate: Callable[[TrainConfig], None] = _nothing
    averaged: bool = False


def step_size(config: TrainConfig, total_steps: int) -> float:
    """Steps in half a cycle: `config.step_size`, else an eighth of the run for `triangular`
    (four cycles; Smith 2017 takes 2-10 epochs) and 45% of it for 1cycle (Sec. 4.1)."""
    if config.step_size is not None:
        return config.step_size
    if config.lr_policy == "triangular":
        return max(1.0, total_steps / 8)
    return 0.45 * total_steps


def _mirror(shape: optax.Schedule, hp: HParams) -> optax.Schedule:
    """The momentum falling from max to min as `shape` rises from 0 to 1 (Sec. 4.3)."""
    high, low = hp["max_momentum"], hp["min_momentum"]
    return lambda count: high - (high - low) * shape(count)


# --- learning-rate policies ----------------------------------------------------------------

def _one_cycle(config: TrainConfig, hp: HParams, total_steps: int) -> optax.Schedule:
    return schedules.one_cycle(total_steps, hp["min_lr"], hp["max_lr"],
                               step_size=step_size(config, total_steps),
                               final_value=config.final_lr, anneal=config.anneal)


def _one_cycle_momentum(config: TrainConfig, hp: HParams, total_steps: int) -> optax.Schedule:
    return schedules.one_cycle_momentum(total_steps, max_momentum=hp["max_momentum"],
                                        min_momentum=hp["min_momentum"],
                                        step_size=step_size(config, total_steps),
                                        anneal=config.anneal)


def _check_step_size(config: TrainConfig) -> None:
    if config.step_size is not None:
        v.positive_number("step_size", config.step_size)


def _check_one_cycle(config: TrainConfig) -> None:
    if config.final_lr is not None and config.lr_policy not in _DECAY_TO_FINAL:
        v.non_negative_number("final_lr", config.final_lr)
        for setting in config.members_or_self():
            v.ordered("final_lr", config.final_lr, "min_lr", setting.min_lr,
                      "1cycle's annihilation takes the LR down from min_lr, Sec. 4.1")
    _check_step_size(config)


def _triangular(config: TrainConfig, hp: HParams, total_steps: int) -> optax.Schedule:
    return schedules.triangular(hp["min_lr"], hp["max_lr"], step_size(config, total_steps))


def _triangular_momentum(config: TrainConfig, hp: HParams, total_steps: int
                         ) -> optax.Schedule:
    return _mirror(schedules.triangular(0.0, 1.0, step_size(config, total_steps)), hp)


def _piecewise(config: TrainConfig, hp: HParams, total_steps: int) -> optax.Schedule:
    boundaries = sorted({max(1, int(round(b * total_steps))) for b in config.piecewise_boundaries})
    return schedules.multistep(hp["max_lr"], config.piecewise_gamma, boundaries)


def _check_piecewise(config: TrainConfig) -> None:
    for b in config.piecewise_boundaries:
        v.check("piecewise_boundaries", config.piecewise_boundaries, 0 < b < 1,
                "fractions of the run strictly between 0 and 1")
    v.check("piecewise_gamma", config.piecewise_gamma, 0 < config.piecewise_gamma <= 1,
            "in (0, 1]")


def _inv(config: TrainConfig, hp: HParams, total_steps: int) -> optax.Schedule:
    return schedules.inv(hp["max_lr"], config.inv_gamma, config.inv_power)


def _check_inv(config: TrainConfig) -> None:
    v.non_negative_number("inv_gamma", config.inv_gamma)
    v.non_negative_number("inv_power", config.inv_power)


def _range_test(config: TrainConfig, hp: HParams, total_steps: int) -> optax.Schedule:
    return schedules.range_test(hp["min_lr"], hp["max_lr"], max(total_steps, 2),
                                mode=config.range_mode)


def _range_test_momentum(config: TrainConfig, hp: HParams, total_steps: int
                         ) -> optax.Schedule:  # falls while the LR rises (Sec. 4.3, Fig. 8a)
    return _mirror(schedules.range_test(0.0, 1.0, max(total_steps, 2)), hp)


def _warmup_steps(config: TrainConfig, total_steps: int) -> int:
    return round(config.warmup_fraction * total_steps)


def _final(config: TrainConfig) -> float:
    return 0.0 if config.final_lr is None else config.final_lr


def _cosine(config: TrainConfig, hp: HParams, total_steps: int) -> optax.Schedule:
    return schedules.cosine(total_steps, hp["max_lr"], final_value=_final(config),
                            warmup_steps=_warmup_steps(config, total_steps))


def _wsd(config: TrainConfig, hp: HParams, total_steps: int) -> optax.Schedule:
    return schedules.wsd(total_steps, hp["max_lr"], final_value=_final(config),
                         warmup_steps=_warmup_steps(config, total_steps),
                         decay_steps=round(config.decay_fraction * total_steps),
                         decay=config.wsd_decay)


def _check_warmup(config: TrainConfig) -> None:
    v.check("warmup_fraction", config.warmup_fraction, 0 <= config.warmup_fraction < 1,
            "a fraction of the run in [0, 1)")
    v.check("decay_fraction", config.decay_fraction, 0 <= config.decay_fraction <= 1,
            "a fraction of the run in [0, 1]")
    if config.lr_policy == "wsd":
        v.check("decay_fraction", config.decay_fraction,
                config.warmup_fraction + config.decay_fraction <= 1,
                f"at most 1 - warmup_fraction = {1 - config.warmup_fraction:g} (wsd's warmup "
                "and decay must fit in the run)")
    if config.lr_policy in _DECAY_TO_FINAL and config.final_lr is not None:
        v.non_negative_number("final_lr", config.final_lr)
        for setting in config.members_or_self():
            v.ordered("final_lr", config.final_lr, "max_lr", setting.max_lr,
                      f"{config.lr_policy} decays from max_lr")


_DECAY_TO_FINAL = ("cosine", "wsd")  # the policies that end at final_lr (None: 0)

LR_POLICIES: dict[str, LRPolicy] = {p.name: p for p in (
    LRPolicy("one_cycle", "1cycle", _one_cycle, ("step_size", "final_lr", "anneal"),
             momentum=_one_cycle_momentum, validate=_check_one_cycle),
    LRPolicy("triangular", "CLR", _triangular, ("step_size",),
             momentum=_triangular_momentum, validate=_check_step_size),
    LRPolicy("constant", "max_lr", lambda config, hp, total_steps: lambda count: hp["max_lr"]),
    LRPolicy("piecewise", "step decay from max_lr", _piecewise,
             ("piecewise_boundaries", "piecewise_gamma"), validate=_check_piecewise),
    LRPolicy("inv", "Caffe's LeNet baseline", _inv, ("inv_gamma", "inv_power"),
             validate=_check_inv),
    LRPolicy("range_test", "a ramp from min_lr to max_lr", _range_test, ("range_mode",),
             momentum=_range_test_momentum),
    LRPolicy("cosine", "linear warmup, then a cosine decay to final_lr", _cosine,
             ("warmup_fraction", "final_lr"), validate=_check_warmup),
    LRPolicy("wsd", "warmup, max_lr held, then a linear or 1-sqrt decay to final_lr", _wsd,
             ("warmup_fraction", "decay_fraction", "wsd_decay", "final_lr")),
)}


# The policies `tune`'s final run may take (`final_policy`): 1cycle, the paper's, or one of
# today's schedules, peaking at the max_lr the search chose.
FINAL_POLICIES = ("one_cycle", "cosine", "wsd")


# --- optimizers ----------------------------------------------------------------------------

def _sgd(config: TrainConfig, hp: HParams, total_steps: int, learning_rate, momentum,
         multipliers: Mapping[str, Any]) -> optax.GradientTransformation:
    return transforms.sgd(learning_rate, momentum, nesterov=config.nesterov,
                          weight_decay=hp["weight_decay"],
                          decoupled_weight_decay=config.decoupled_weight_decay,
                          momentum_form=config.momentum_form, horizon=total_steps,
                          **multipliers)


def _adamw(config: TrainConfig, hp: HParams, total_steps: int, learning_rate, momentum,
           multipliers: Mapping[str, Any]) -> optax.GradientTransformation:
    return transforms.adamw(learning_rate, b1=momentum, b2=config.adam_b2, eps=config.adam_eps,
                            weight_decay=hp["weight_decay"], horizon=total_steps, **multipliers)


def _check_adamw(config: TrainConfig) -> None:
    v.momentum("adam_b2", config.adam_b2)
    v.non_negative_number("adam_eps", config.adam_eps)


def _schedule_free(config: TrainConfig, hp: HParams, total_steps: int, learning_rate, b1,
                   multipliers: Mapping[str, Any]) -> optax.GradientTransformation:
    """Schedule-free SGD or AdamW (Defazio et al. 2024; `optax.contrib.schedule_free`): the
    momentum-free base optimizer (`transforms.sgd` with momentum 0, or Adam's second moment
    with decoupled decay as `optax.contrib.schedule_free_adamw` builds it) steps `z`, and the
    trained weights interpolate between `z` and their running average with `b1`. Under
    `lr_policy="constant"` the LR warms up linearly over `warmup_fraction` of the run and then
    holds, as optax's `schedule_free_sgd(learning_rate, warmup_steps)` does; other policies
    give the LR as they are (the range test's ramp)."""
    if config.lr_policy == "constant" and _warmup_steps(config, total_steps):
        learning_rate = optax.warmup_constant_schedule(0.0, hp["max_lr"],
                                                       _warmup_steps(config, total_steps))
    if config.optimizer == "schedule_free_sgd":
        base = transforms.sgd(learning_rate, 0.0, nesterov=False,
                              weight_decay=hp["weight_decay"],
                              decoupled_weight_decay=config.decoupled_weight_decay,
                              **multipliers)
    else:
        base = optax.chain(
            optax.scale_by_rms(decay=config.adam_b2, eps=config.adam_eps, eps_in_sqrt=False,
                               bias_correction=True),
            transforms.add_decayed_weights(hp["weight_decay"],
                                           multipliers["weight_decay_multipliers"]),
            optax.inject_hyperparams(optax.scale_by_learning_rate)(learning_rate=learning_rate))
        if multipliers["learning_rate_multipliers"] is not None:
            base = optax.chain(base, transforms.scale_by_multipliers(
                multipliers["learning_rate_multipliers"]))
    return optax.contrib.schedule_free(base, learning_rate=learning_rate, b1=b1)


def _prodigy(config: TrainConfig, hp: HParams, total_steps: int, learning_rate, b1,
             multipliers: Mapping[str, Any]) -> optax.GradientTransformation:
    """Prodigy (Mishchenko & Defazio 2024; `optax.contrib.prodigy`): Adam whose LR is its own
    running estimate of the distance to the solution, times the policy's LR as a multiplier
    (`max_lr` 1: the estimate itself). Its weight decay is its own, on every parameter; the
    network's LR multipliers scale its steps."""
    opt = optax.inject_hyperparams(optax.contrib.prodigy, static_args=("betas",))(
        learning_rate=learning_rate, betas=(b1, config.adam_b2), eps=config.adam_eps,
        weight_decay=hp["weight_decay"])
    if multipliers["learning_rate_multipliers"] is None:
        return opt
    return optax.chain(opt, transforms.scale_by_multipliers(
        multipliers["learning_rate_multipliers"]))


def _check_constant_momentum(config: TrainConfig) -> None:
    """Schedule-free's interpolation and Prodigy's beta1 are held in their states: constant."""
    if config.optimizer in ("schedule_free_sgd", "schedule_free_adamw", "prodigy"):
        v.check("momentum", [m.momentum for m in config.members_or_self()],
                not any(momenta.is_cyclical(m.momentum) for m in config.members_or_self()),
                f"a constant for optimizer={config.optimizer!r} (its b1, held in the optimizer "
                "state)")


def _check_schedule_free(config: TrainConfig) -> None:
    _check_constant_momentum(config)
    v.positive_int("bn_batches", config.bn_batches)


def _check_prodigy(config: TrainConfig) -> None:
    _check_constant_momentum(config)
    if config.optimizer == "prodigy" and config.lr_policy in _DECAY_TO_FINAL:
        v.check("warmup_fraction", config.warmup_fraction, config.warmup_fraction == 0,
                "0 for optimizer='prodigy' (a warmup from LR 0 leaves Prodigy's first steps "
                "nothing to estimate its LR from, and the estimate is NaN)")


OPTIMIZERS: dict[str, Optimizer] = {o.name: o for o in (
    Optimizer("sgd", "momentum SGD, the paper's", _sgd,
              ("nesterov", "momentum_form", "decoupled_weight_decay")),
    Optimizer("adamw", "momentum is its beta1; decoupled weight decay", _adamw,
              ("adam_b2", "adam_eps"), validate=_check_adamw),
    Optimizer("schedule_free_sgd", "Defazio et al. 2024: momentum is its interpolation b1; "
              "evaluated at the averaged weights", _schedule_free,
              ("decoupled_weight_decay", "bn_batches"), validate=_check_schedule_free,
              averaged=True),
    Optimizer("schedule_free_adamw", "schedule-free AdamW, as schedule_free_sgd", _schedule_free,
              ("adam_b2", "adam_eps", "bn_batches"), validate=_check_schedule_free,
              averaged=True),
    Optimizer("prodigy", "LR-free: max_lr multiplies the LR it estimates", _prodigy,
              ("adam_b2", "adam_eps"), validate=_check_prodigy),
)}


def choices_help(table: Mapping[str, LRPolicy] | Mapping[str, Optimizer]) -> str:
    """The entries of `table` with their help, for the field's own: "a (..), b (..) or c (..)".

    Args:
      table: `LR_POLICIES` or `OPTIMIZERS`.

    Returns:
      The text.

    Examples:
      >>> from hparams_jax.train.policies import OPTIMIZERS, choices_help
      >>> choices_help({name: OPTIMIZERS[name] for name in ("sgd", "adamw")})
      "sgd (momentum SGD, the paper's) or adamw (momentum is its beta1; decoupled weight decay)"
    """
    items = [f"{e.name} ({e.help})" for e in table.values()]
    return " or ".join(filter(None, (", ".join(items[:-1]), items[-1])))


def fields_of(table: Mapping[str, LRPolicy] | Mapping[str, Optimizer]) -> tuple[str, ...]:
    """The fields the entries of `table` read (each once, in the table's order).

    Args:
      table: `LR_POLICIES` or `OPTIMIZERS`.

    Returns:
      The field names.

    Examples:
      >>> from hparams_jax.train.policies import LR_POLICIES, fields_of
      >>> fields_of(LR_POLICIES)  # doctest: +NORMALIZE_WHITESPACE
      ('step_size', 'final_lr', 'anneal', 'piecewise_boundaries', 'piecewise_gamma',
       'inv_gamma', 'inv_power', 'range_mode', 'warmup_fraction', 'decay_fraction', 'wsd_decay')
    """
    return tuple(dict.fromkeys(name for entry in table.values() for name in entry.fields))


def validate(config: TrainConfig) -> None:
    """Checks the values of every entry's fields, whatever the config's policy and optimizer
    (`TrainConfig.validate` runs it).

    Args:
      config: the configuration.

    Raises:
      ConfigError: a field's value is not allowed.
    """
    for entry in (*LR_POLICIES.values(), *OPTIMIZERS.values()):
        entry.validate(config)


def check_fields_apply(config: TrainConfig, *, lr_policy: bool = True) -> None:
    """Refuses a field of an LR policy (with `lr_policy`) or of an optimizer that `config` sets
    away from its default though its own policy or optimizer does not read it: `--inv-gamma`
    under 1cycle, `--adam-b2` under SGD or `--no-nesterov` under AdamW would change nothing.

    `TrainConfig` itself takes such a config: a range test or `tune` switches a config's
    `lr_policy` (to a ramp, then to 1cycle) and keeps the other fields, and an experiment's
    settings vary its base config's policy. The command line checks a run's own config with it
    before anything is written (the LR policy's fields only where the run keeps its policy).

    Args:
      config: the configuration.
      lr_policy: check the fields of the LR policies too, not only the optimizers'.

    Raises:
      ConfigError: naming the fields set, the entries that read them and the config's own.

    Examples:
      >>> from hparams_jax.train import TrainConfig
      >>> from hparams_jax.train.policies import check_fields_apply
      >>> check_fields_apply(TrainConfig(lr_policy="inv", inv_gamma=1e-3))  # read: passes
      >>> check_fields_apply(TrainConfig(optimizer="adamw", nesterov=False))
      ... # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      hparams_jax.errors.ConfigError: nesterov=False only applies to optimizer sgd; ...
    """
    defaults = type(config)()
    tables = {"lr_policy": LR_POLICIES, "optimizer": OPTIMIZERS}
    for kind, table in tables.items():
        if kind == "lr_policy" and not lr_policy:
            continue
        chosen = getattr(config, kind)
        for name in fields_of(table):
            value, default = getattr(config, name), getattr(defaults, name)
            if name in table[chosen].fields or value == default:
                continue
            readers = " or ".join(e.name for e in table.values() if name in e.fields)
            raise ConfigError(f"{name}={value!r} only applies to {kind} {readers}; this "
                              f"config's {kind} is {chosen!r} (leave {name} at its default, "
                              f"{default!r}).")
