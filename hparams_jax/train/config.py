"""The training configuration: one frozen dataclass, config as code (Flax-examples style).

A run is fully described by a `TrainConfig`; `fit(config)` trains it. `members` turns one run
into a sweep of K settings trained together in one compiled program with `jax.vmap` (Smith 2018
ran four runs per setting and grids of weight decays: Sec. 4.4, Fig. 9-11).

Each field is declared once, with `_field(default, help, choices=..., execution=...)`: `help`
is its one-line meaning, `choices` the values a string field may take (checked by `validate`;
None too where None is the default), and `execution=True` marks a field that changes how a run
executes but not what it computes. The command line (`hparams_jax.options`) reads these:
`hparams-jax train --help` lists every field with its default and help, so a new field needs
nothing but its declaration here.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from hparams_jax import _validate as v
from hparams_jax import momenta, schedules
from hparams_jax.data.augment import POLICIES
from hparams_jax.errors import ConfigError
from hparams_jax.train import policies
from hparams_jax.transforms import MOMENTUM_FORMS

LR_POLICIES = tuple(policies.LR_POLICIES)
RANGE_MODES = ("linear", "exp")
ANNEALS = ("linear", "cos")
NORMALIZATIONS = ("standardize", "mean")
OPTIMIZERS = tuple(policies.OPTIMIZERS)
WSD_DECAYS = schedules.WSD_DECAYS
PRECISIONS = ("float32", "bfloat16")
PLANS = ("auto", "accelerator", "cpu")
# Settings a sweep member may override; each becomes a (K,) array in one compiled program.
SWEEPABLE = ("seed", "min_lr", "max_lr", "momentum", "weight_decay")


def _field(default: Any, help: str, *, choices: tuple[str, ...] | None = None,
           execution: bool = False, parse: Any = None) -> Any:
    """A `TrainConfig` field with its one-line `help`, the `choices` of a string field,
    whether it only changes how the run executes (`execution`), and the reader of its value
    written as text where its type alone does not say (`parse`). A dict default is copied for
    each instance."""
    metadata = {"help": help, "choices": choices, "execution": execution, "parse": parse}
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; each field's meaning is in its `help` (`fields()`).

    Policies (Smith 2018, Sec. 4): `lr_policy="one_cycle"` rises from `min_lr` to `max_lr` over
    `step_size` steps, falls back and anneals to `final_lr` (`schedules.one_cycle`);
    `"triangular"` cycles between the bounds (CLR); `"constant"` uses `max_lr`; `"piecewise"` is
    the step-decay baseline: `max_lr` multiplied by `piecewise_gamma` at each fraction of the run
    in `piecewise_boundaries` (Caffe's `multistep`); `"inv"` is Caffe's LeNet baseline,
    `max_lr * (1 + inv_gamma * t) ** -inv_power` (Sec. 4.1, Table 1); `"range_test"` ramps from
    `min_lr` to `max_lr` over the run (`range_mode` "linear" or "exp"; the LR range test of
    Sec. 4.1). `momentum` is a float (constant) or `(max, min)` (cyclical, the mirror image of
    the LR cycle). `momentum_form="caffe"` keeps the LR inside the velocity as the author's Caffe
    solvers did (`v = m v - lr g`); `"pytorch"` (optax's) scales the velocity by the LR
    (`transforms.sgd`). `optimizer="adamw"` trains with `transforms.adamw` instead: `momentum`
    is its beta1 (constant, or cyclical as fastai's `fit_one_cycle` cycles it), `adam_b2` and
    `adam_eps` its other constants, and `weight_decay` is decoupled (scaled by the LR); the
    SGD-only `nesterov`, `momentum_form` and `decoupled_weight_decay` do not apply to it (as
    `inv_gamma` does not to other policies), nor `adam_*` to SGD.
    `accumulate_steps=k` accumulates the gradients of k micro-batches of `batch_size / k`
    examples (`optax.MultiSteps`) into each optimizer step, inside one compiled step:
    `batch_size` stays the global batch of an optimizer step, and every step count (the
    schedules, `steps`, `epochs`, logging, checkpoints, the range test) counts optimizer steps,
    so a checkpoint always falls between two optimizer steps. Batch norm normalises each
    micro-batch by its own statistics and updates its running averages once per micro-batch.
    `param_multipliers` applies the network's per-parameter learning-rate and weight-decay
    multipliers of the author's prototxts (Caffe `lr_mult`, `decay_mult`; e.g. no decay on the
    final bias). `normalization="mean"` feeds ``pixel - mean`` on the 0-255 scale, as the
    author's Caffe data layers did (his shallow CIFAR net's initialisation, std 1e-4 on conv1,
    assumes that scale). Step counts (`step_size`, `log_every`, `eval_every`,
    `checkpoint_every`) are optimizer steps; `None` evaluation and checkpoint intervals mean
    once an epoch (rounded up to whole `log_every` intervals).

    How it computes: `precision="bfloat16"` runs activations and convolution/matrix inputs in
    bfloat16 while parameters, optimizer state, batch-norm statistics, the loss and the
    softmax stay float32 (mixed precision, as Flax's ImageNet example and big_vision train).
    `plan` is the execution plan (`train.plan`): "auto" picks "accelerator" (`lax.scan`
    chunks, `vmap` members, plain Flax layers) on GPU/TPU and "cpu" (host loop, unrolled
    members, XLA:CPU layer forms) on the CPU; both compute the same function, and a run may be
    resumed under another plan.

    Args:
      **fields: any of the fields below, by name; each one's default and one-line meaning is in
        its declaration (`dataclasses.fields(TrainConfig)[i].metadata["help"]`, listed by
        `hparams-jax train --help`).

    Raises:
      ConfigError: a field is out of range or not one of its choices, a sweep member sets a
        field that cannot be swept, or `batch_size` does not split into `accumulate_steps`.

    Examples:
      >>> from hparams_jax.train import TrainConfig
      >>> config = TrainConfig(model="lenet", dataset="fashion_mnist", epochs=5, max_lr=0.05,
      ...                      momentum=(0.95, 0.85))
      >>> config.lr_policy, config.min_lr, config.momentum
      ('one_cycle', 0.01, (0.95, 0.85))
      >>> sweep = config.replace(members=[{"weight_decay": 1e-4}, {"weight_decay": 1e-3}])
      >>> sweep.num_members, [m.weight_decay for m in sweep.members_or_self()]
      (2, [0.0001, 0.001])

      A max_lr below min_lr (default 0.01) is refused:

      >>> TrainConfig(max_lr=0.001)  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      hparams_jax.errors.ConfigError: min_lr=0.01 is above max_lr=0.001: ...
    """

    model: str = _field("lenet", "network (see hparams_jax.models.available())")
    model_options: Mapping[str, Any] = _field(
        {}, "keyword arguments of models.create, e.g. {\"in_channels\": 1, \"input_size\": 28} "
        "runs the 3-layer CIFAR net on MNIST-shaped images")
    dataset: str = _field("fashion_mnist", "mnist, fashion_mnist, cifar10, cifar100 (held on "
                          "the device) or imagenet2012 (streamed from prepared tfds files)")
    batch_size: int = _field(128, "global batch, split over all devices")
    epochs: float | None = _field(3.0, "length of the run in epochs (steps, when set, "
                                  "overrides it)")
    steps: int | None = _field(None, "length of the run in optimizer steps (overrides epochs)")
    optimizer: str = _field("sgd", policies.choices_help(policies.OPTIMIZERS),
                            choices=OPTIMIZERS)
    lr_policy: str = _field("one_cycle", policies.choices_help(policies.LR_POLICIES),
                            choices=LR_POLICIES)
    min_lr: float = _field(0.01, "lower LR bound (1cycle starts and ends its cycle here)")
    max_lr: float = _field(0.1, "upper LR bound, from an LR range test")
    step_size: float | None = _field(
        None, "optimizer steps in half a cycle (None: 45% of the run for 1cycle, an eighth of "
        "it for triangular)")
    final_lr: float | None = _field(None, "1cycle's LR at the end of the annihilation, at most "
                                    "min_lr (None: min_lr / 1000); cosine's and wsd's at the "
                                    "end (None: 0)")
    anneal: str = _field("linear", "shape of 1cycle's and cyclical momentum's phases: linear "
                         "or cos (half cosine)", choices=ANNEALS)
    piecewise_boundaries: tuple[float, ...] = _field(
        (0.5, 0.75), "piecewise: fractions of the run at which the LR is multiplied by "
        "piecewise_gamma")
    piecewise_gamma: float = _field(0.1, "piecewise: the factor applied at each boundary")
    inv_gamma: float = _field(1e-4, "inv: gamma of max_lr * (1 + gamma * step) ** -power")
    inv_power: float = _field(0.75, "inv: power of max_lr * (1 + gamma * step) ** -power")
    range_mode: str = _field("linear", "range_test: linear ramp (the paper) or exp (equal "
                             "ratios)", choices=RANGE_MODES)
    warmup_fraction: float = _field(0.05, "cosine, wsd (and schedule_free_* under a constant "
                                    "LR): fraction of the run warming up linearly from 0 to "
                                    "max_lr")
    decay_fraction: float = _field(0.2, "wsd: fraction of the run decaying from max_lr to "
                                   "final_lr at the end")
    wsd_decay: str = _field("linear", "wsd: shape of the decay, linear or 1-sqrt",
                            choices=WSD_DECAYS)
    bn_batches: int = _field(20, "schedule_free_*: training batches over which batch norm "
                             "statistics are recomputed for the averaged weights before each "
                             "evaluation")
    momentum: float | tuple[float, float] = _field(
        0.9, "constant (0.9) or cyclical max,min (0.95,0.85 or 0.95:0.85; it falls while the "
        "LR rises); adamw's beta1", parse=momenta.parse)
    nesterov: bool = _field(True, "Nesterov momentum (off: heavy ball); sgd only")
    momentum_form: str = _field("pytorch", "pytorch (optax's): the LR scales the velocity; "
                                "caffe: the LR inside the velocity, v = m v - lr g (sgd only)",
                                choices=MOMENTUM_FORMS)
    adam_b2: float = _field(0.999, "adamw: decay rate of the squared-gradient average (beta2)")
    adam_eps: float = _field(1e-8, "adamw: epsilon added to the denominator")
    weight_decay: float = _field(5e-4, "weight decay: L2 (sgd) or decoupled, lr * weight_decay "
                                 "* params (adamw; typically 1e-2 to 1e-1)")
    decoupled_weight_decay: bool = _field(
        False, "sgd: subtract lr * weight_decay * params outside the momentum buffer (SGDW) "
        "instead of adding the decay to the gradient (the paper's Caffe solver)")
    accumulate_steps: int = _field(
        1, "micro-batches per optimizer step (gradient accumulation): batch_size is split into "
        "this many micro-batches, their gradients averaged into one update")
    param_multipliers: bool = _field(True, "the network's per-parameter LR and weight-decay "
                                     "multipliers (Caffe lr_mult, decay_mult)")
    augmentation: str | None = _field(None, "training augmentation (None: the dataset's, as "
                                      "in the paper)", choices=POLICIES)
    normalization: str = _field("standardize", "standardize: (pixel - mean) / std; mean: "
                                "pixel - mean on the 0-255 scale (Caffe)",
                                choices=NORMALIZATIONS)
    image_size: int | None = _field(None, "streamed datasets only: side of the crops (None: "
                                    "224; 299 for inception_resnet_v2)")
    data_workers: int = _field(0, "streamed datasets only: grain worker processes decoding "
                               "images (0: threads of the training process)", execution=True)
    train_examples: int | None = _field(None, "train on a fixed random subset of the training "
                                        "split (None: all of it)")
    eval_examples: int | None = _field(None, "evaluate on a fixed subset of the test split "
                                       "(None: all of it)")
    seed: int = _field(0, "random seed (initialisation, data order, augmentation)")
    members: tuple[Mapping[str, Any], ...] = _field(
        (), "a sweep trained as one vmapped program, e.g. [{\"seed\": 0}, {\"seed\": 1}]; a "
        "member may set " + ", ".join(SWEEPABLE))
    precision: str = _field("float32", "float32, or bfloat16: mixed precision (bfloat16 "
                            "activations, float32 parameters and statistics)",
                            choices=PRECISIONS)
    plan: str = _field("auto", "execution plan: auto (from the backend), accelerator (scan, "
                       "vmap, plain Flax layers) or cpu (host loop, XLA:CPU layers)",
                       choices=PLANS, execution=True)
    log_every: int = _field(50, "optimizer steps between metric rows")
    eval_every: int | None = _field(None, "optimizer steps between test-set evaluations (None: "
                                    "every epoch)")
    checkpoint_every: int | None = _field(None, "optimizer steps between checkpoints (None: "
                                          "every epoch)")
    keep_checkpoints: int = _field(3, "newest checkpoints kept on disk", execution=True)
    workdir: str | None = _field(None, "folder of the metrics, summary and checkpoints (None: "
                                 "nothing written); a rerun resumes from it")
    progress: bool = _field(True, "progress bars", execution=True)
    tensorboard: bool = _field(False, "also write the metrics as TensorBoard event files into "
                               "WORKDIR/tensorboard (needs hparams_jax[tensorboard])",
                               execution=True)

    def __post_init__(self):
        object.__setattr__(self, "momentum", momenta.parse(self.momentum))
        object.__setattr__(self, "piecewise_boundaries", tuple(self.piecewise_boundaries))
        object.__setattr__(self, "members", tuple(
            {**m, "momentum": momenta.parse(m["momentum"])} if "momentum" in m else dict(m)
            for m in self.members))
        object.__setattr__(self, "model_options", dict(self.model_options))
        self.validate()

    def validate(self) -> None:
        """Raises `ConfigError` for a field that is not allowed (run at construction)."""
        v.positive_int("batch_size", self.batch_size)
        if self.epochs is None and self.steps is None:
            raise ConfigError("epochs=None, steps=None: give the length of the run as epochs "
                              "(a positive number) or steps (a positive integer).")
        if self.epochs is not None:
            v.positive_number("epochs", self.epochs)
        if self.steps is not None:
            v.positive_int("steps", self.steps)
        for f in dataclasses.fields(self):  # None is allowed where it is the default
            value = getattr(self, f.name)
            if f.metadata.get("choices") and not (value is None and f.default is None):
                v.one_of(f.name, value, f.metadata["choices"])
        for name, field in (("dtype", "precision"), ("layers", "plan")):
            if name in self.model_options:
                raise ConfigError(f"model_options={self.model_options!r} sets {name!r}: set "
                                  f"the config's {field} instead.")
        for member in self.members:
            unknown = set(member) - set(SWEEPABLE)
            if unknown:
                raise ConfigError(f"members={list(self.members)!r}: {sorted(unknown)} cannot be "
                                  f"swept; a member may set {', '.join(SWEEPABLE)}.")
        for setting in self.members_or_self():
            _validate_rates(setting)
        policies.validate(self)  # the fields of every LR policy and optimizer
        for name in ("log_every", "eval_every", "checkpoint_every", "train_examples",
                     "eval_examples", "image_size"):
            if getattr(self, name) is not None:
                v.positive_int(name, getattr(self, name))
        v.positive_int("keep_checkpoints", self.keep_checkpoints)
        v.positive_int("accumulate_steps", self.accumulate_steps)
        if self.batch_size % self.accumulate_steps:
            raise ConfigError(
                f"batch_size={self.batch_size} does not split into accumulate_steps="
                f"{self.accumulate_steps} micro-batches: batch_size (the global batch of one "
                f"optimizer step) must be a multiple of accumulate_steps.")
        v.check("data_workers", self.data_workers,
                isinstance(self.data_workers, int) and self.data_workers >= 0,
                "an integer >= 0")
        cyclical = {momenta.is_cyclical(m.momentum) for m in self.members_or_self()}
        v.check("momentum", [m.momentum for m in self.members_or_self()], len(cyclical) == 1,
                "all constant or all (max, min) pairs across members")

    @property
    def num_members(self) -> int:
        """K, the number of sweep members (1 without a sweep)."""
        return max(1, len(self.members))

    def members_or_self(self) -> list["Setting"]:
        """The K settings of the sweep (just this run's when there is no sweep)."""
        base = {name: getattr(self, name) for name in SWEEPABLE}
        if not self.members:
            return [Setting(**base)]
        return [Setting(**{**base, **member}) for member in self.members]

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (a run's `config.json`)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        """The config of a `to_dict` dict (e.g. a run's `config.json`); unknown keys are
        refused with `ConfigError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown TrainConfig fields {sorted(unknown)}; known: "
                              f"{sorted(names)}")
        return cls(**d)

    def changed_fields(self, saved: Mapping[str, Any]) -> list[str]:
        """The fields whose values differ from `saved` (a config dict written by an earlier
        run, e.g. its `config.json`); a field it lacks was added since and had its default."""
        current, defaults = self.to_dict(), TrainConfig().to_dict()
        return sorted(k for k in current if saved.get(k, defaults[k]) != current[k])

    def replace(self, **changes) -> "TrainConfig":
        """A copy with `changes` applied (and validated)."""
        return dataclasses.replace(self, **changes)


# Fields that change how a run executes but not what it computes (`experiment run` sets them).
EXECUTION_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig)
                         if f.metadata.get("execution"))


@dataclasses.dataclass(frozen=True)
class Setting:
    """One member's swept values.

    Attributes:
      seed: the member's random seed.
      min_lr: its lower LR bound.
      max_lr: its upper LR bound.
      momentum: its constant momentum, or its (max, min) cyclical bounds.
      weight_decay: its weight decay.

    Examples:
      >>> from hparams_jax.train import TrainConfig
      >>> config = TrainConfig(momentum=(0.95, 0.85), members=[{"seed": 0}, {"seed": 1}])
      >>> [(s.seed, s.momentum_bounds) for s in config.members_or_self()]
      [(0, (0.95, 0.85)), (1, (0.95, 0.85))]
    """

    seed: int
    min_lr: float
    max_lr: float
    momentum: float | tuple[float, float]
    weight_decay: float

    @property
    def momentum_bounds(self) -> tuple[float, float]:
        """(max, min); equal for constant momentum."""
        return momenta.bounds(self.momentum)


def _validate_rates(s) -> None:
    v.check("seed", s.seed, isinstance(s.seed, int) and s.seed >= 0, "an integer >= 0")
    v.non_negative("min_lr", s.min_lr)
    v.strictly_positive("max_lr", s.max_lr)
    v.ordered("min_lr", s.min_lr, "max_lr", s.max_lr)
    v.non_negative("weight_decay", s.weight_decay)
    momenta.parse(s.momentum)
