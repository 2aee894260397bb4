"""The training configuration: one frozen dataclass, config as code (Flax-examples style).

A run is fully described by a `TrainConfig`; `fit(config)` trains it. `members` turns one run
into a sweep of K settings trained together in one compiled program with `jax.vmap` (Smith 2018
ran four runs per setting and grids of weight decays: Sec. 4.4, Fig. 9-11).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from hparams_jax import _validate as v
from hparams_jax.data.augment import POLICIES
from hparams_jax.errors import ConfigError

LR_POLICIES = ("one_cycle", "triangular", "constant", "piecewise", "range_test")
RANGE_MODES = ("linear", "exp")
ANNEALS = ("linear", "cos")
NORMALIZATIONS = ("standardize", "mean")
# Settings a sweep member may override; each becomes a (K,) array in one compiled program.
SWEEPABLE = ("seed", "min_lr", "max_lr", "momentum", "weight_decay")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs.

    Policies (Smith 2018, Sec. 4): `lr_policy="one_cycle"` rises from `min_lr` to `max_lr` over
    `step_size` steps, falls back and anneals to `final_lr` (`schedules.one_cycle`);
    `"triangular"` cycles between the bounds (CLR); `"constant"` uses `max_lr`; `"piecewise"` is
    the step-decay baseline: `max_lr` multiplied by `piecewise_gamma` at each fraction of the run
    in `piecewise_boundaries`; `"range_test"` ramps from `min_lr` to `max_lr` over the run
    (`range_mode` "linear" or "exp"; the LR range test of Sec. 4.1). `momentum` is a float
    (constant) or `(max, min)` (cyclical, the mirror image of the LR cycle).
    `param_multipliers` applies the network's per-parameter learning-rate and weight-decay
    multipliers of the author's prototxts (Caffe `lr_mult`, `decay_mult`; e.g. no decay on the
    final bias). `model_options` are passed to `models.create` (e.g. ``{"in_channels": 1,
    "input_size": 28}`` runs the 3-layer CIFAR net on MNIST-shaped images).
    `normalization="standardize"` feeds ``(pixel - mean) / std``; ``"mean"`` feeds
    ``pixel - mean`` on the 0-255 scale, as the author's Caffe data layers did (his shallow
    CIFAR net's initialisation, std 1e-4 on conv1, assumes that scale). Step counts
    (`step_size`, `log_every`, `eval_every`, `checkpoint_every`) are optimizer steps; `steps`,
    when set, overrides `epochs`; `None` evaluation and checkpoint intervals mean once an epoch
    (rounded up to whole `log_every` intervals). `train_examples` / `eval_examples` keep a
    subset of the splits. Streamed datasets (ImageNet) only: `image_size` is the side of the
    host's crops (None: the dataset's, 224; Inception-ResNet-v2 takes 299) and `data_workers`
    the number of grain worker processes decoding them (0: threads of the training process).
    """

    model: str = "lenet"
    model_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    dataset: str = "fashion_mnist"
    batch_size: int = 128
    epochs: float | None = 3.0
    steps: int | None = None
    lr_policy: str = "one_cycle"
    min_lr: float = 0.01
    max_lr: float = 0.1
    step_size: float | None = None
    final_lr: float | None = None
    anneal: str = "linear"
    piecewise_boundaries: tuple[float, ...] = (0.5, 0.75)
    piecewise_gamma: float = 0.1
    range_mode: str = "linear"
    momentum: float | tuple[float, float] = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    decoupled_weight_decay: bool = False
    param_multipliers: bool = True
    augmentation: str | None = None
    normalization: str = "standardize"
    image_size: int | None = None
    data_workers: int = 0
    train_examples: int | None = None
    eval_examples: int | None = None
    seed: int = 0
    members: tuple[Mapping[str, Any], ...] = ()
    log_every: int = 50
    eval_every: int | None = None
    checkpoint_every: int | None = None
    keep_checkpoints: int = 3
    workdir: str | None = None
    progress: bool = True

    def __post_init__(self):
        if isinstance(self.momentum, list):
            object.__setattr__(self, "momentum", tuple(self.momentum))
        object.__setattr__(self, "piecewise_boundaries", tuple(self.piecewise_boundaries))
        object.__setattr__(self, "members", tuple(dict(m) for m in self.members))
        object.__setattr__(self, "model_options", dict(self.model_options))
        self.validate()

    def validate(self) -> None:
        v.positive_int("batch_size", self.batch_size)
        if self.epochs is None and self.steps is None:
            raise ConfigError("epochs=None, steps=None: give the length of the run as epochs "
                              "(a positive number) or steps (a positive integer).")
        if self.epochs is not None:
            v.positive_number("epochs", self.epochs)
        if self.steps is not None:
            v.positive_int("steps", self.steps)
        v.one_of("lr_policy", self.lr_policy, LR_POLICIES)
        v.one_of("anneal", self.anneal, ANNEALS)
        v.one_of("range_mode", self.range_mode, RANGE_MODES)
        v.one_of("normalization", self.normalization, NORMALIZATIONS)
        if self.augmentation is not None:
            v.one_of("augmentation", self.augmentation, POLICIES)
        for member in self.members:
            unknown = set(member) - set(SWEEPABLE)
            if unknown:
                raise ConfigError(f"members={list(self.members)!r}: {sorted(unknown)} cannot be "
                                  f"swept; a member may set {', '.join(SWEEPABLE)}.")
        for setting in self.members_or_self():
            _validate_rates(setting)
        if self.step_size is not None:
            v.positive_number("step_size", self.step_size)
        for b in self.piecewise_boundaries:
            v.check("piecewise_boundaries", self.piecewise_boundaries, 0 < b < 1,
                    "fractions of the run strictly between 0 and 1")
        v.check("piecewise_gamma", self.piecewise_gamma, 0 < self.piecewise_gamma <= 1,
                "in (0, 1]")
        for name in ("log_every", "eval_every", "checkpoint_every", "train_examples",
                     "eval_examples", "image_size"):
            if getattr(self, name) is not None:
                v.positive_int(name, getattr(self, name))
        v.positive_int("keep_checkpoints", self.keep_checkpoints)
        v.check("data_workers", self.data_workers,
                isinstance(self.data_workers, int) and self.data_workers >= 0,
                "an integer >= 0")
        cyclical = {isinstance(m.momentum, tuple) for m in self.members_or_self()}
        v.check("momentum", [m.momentum for m in self.members_or_self()], len(cyclical) == 1,
                "all constant or all (max, min) pairs across members")

    @property
    def num_members(self) -> int:
        return max(1, len(self.members))

    def members_or_self(self) -> list["Setting"]:
        """The K settings of the sweep (just this run's when there is no sweep)."""
        base = {name: getattr(self, name) for name in SWEEPABLE}
        if not self.members:
            return [Setting(**base)]
        return [Setting(**{**base, **member}) for member in self.members]

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown TrainConfig fields {sorted(unknown)}; known: "
                              f"{sorted(names)}")
        d = dict(d)
        if isinstance(d.get("momentum"), list):
            d["momentum"] = tuple(d["momentum"])
        return cls(**d)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One member's swept values."""

    seed: int
    min_lr: float
    max_lr: float
    momentum: float | tuple[float, float]
    weight_decay: float

    @property
    def momentum_bounds(self) -> tuple[float, float]:
        """(max, min); equal for constant momentum."""
        if isinstance(self.momentum, (tuple, list)):
            return float(self.momentum[0]), float(self.momentum[1])
        return float(self.momentum), float(self.momentum)


def _validate_rates(s) -> None:
    v.check("seed", s.seed, isinstance(s.seed, int) and s.seed >= 0, "an integer >= 0")
    v.non_negative("min_lr", s.min_lr)
    v.strictly_positive("max_lr", s.max_lr)
    v.ordered("min_lr", s.min_lr, "max_lr", s.max_lr)
    v.non_negative("weight_decay", s.weight_decay)
    momentum = s.momentum
    if isinstance(momentum, (tuple, list)):
        v.check("momentum", momentum, len(momentum) == 2, "a float or a (max, min) pair")
        v.momentum("momentum", momentum[0])
        v.momentum("momentum", momentum[1])
        v.ordered("momentum min", momentum[1], "momentum max", momentum[0])
    else:
        v.momentum("momentum", momentum)
