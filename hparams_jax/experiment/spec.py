"""What an experiment of the paper is: a base `TrainConfig`, named settings that change it, the
author's numbers beside them, and which values had to be inferred.

Config files are small Python modules in `experiments/configs/` that define `EXPERIMENT`
(Flax-examples / big_vision style: config as code).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path
from typing import Any, Mapping

from hparams_jax import _validate as v
from hparams_jax.errors import ConfigError
from hparams_jax.train.config import TrainConfig

CONFIGS_ENV = "HPARAMS_JAX_EXPERIMENTS"


@dataclasses.dataclass(frozen=True)
class PaperResult:
    """The author's number for a setting: final test accuracy (a fraction) after `epochs`,
    with the log or table it comes from."""

    accuracy: float
    epochs: float
    source: str
    top5: float | None = None

    def __post_init__(self):
        v.check("accuracy", self.accuracy, 0.0 <= self.accuracy <= 1.0, "a fraction in [0, 1]")
        v.positive_number("epochs", self.epochs)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One row of an experiment: `changes` to the experiment's base config, what the author
    reported for it (`paper`, None where his logs give no number) and a `note` saying what it
    shows and which of its values are inferred. `runs` (seeds trained together) and
    `eval_every_epochs` override the experiment's defaults for this row (e.g. fewer seeds and
    sparser evaluation for an 85-epoch baseline)."""

    name: str
    changes: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    paper: PaperResult | None = None
    note: str = ""
    runs: int | None = None
    eval_every_epochs: float | None = None

    def __post_init__(self):
        if self.runs is not None:
            v.positive_int("runs", self.runs)
        if self.eval_every_epochs is not None:
            v.positive_number("eval_every_epochs", self.eval_every_epochs)


@dataclasses.dataclass(frozen=True)
class RangeTest:
    """An LR range test of an experiment (Sec. 4.1), or a family of them over `family`
    (`("batch_size", (128, 256))`, `("weight_decay", (1e-3, 1e-4))`, `("momentum", ...)`;
    Sec. 4.2-4.4), on the experiment's base config with `changes`. The settings whose bounds
    come from it say so in their notes."""

    name: str
    start: float
    stop: float
    num_steps: int
    mode: str = "linear"
    changes: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    family: tuple[str, tuple[Any, ...]] | None = None
    note: str = ""

    def __post_init__(self):
        v.positive_int("num_steps", self.num_steps)
        v.ordered("start", self.start, "stop", self.stop)


# The rules a claim may name: each is the function of that name in `experiment.claims`.
CHECKS = ("super_convergence", "range_test_bounds", "batch_size", "cyclical_momentum",
          "weight_decay_pick", "weight_decay_policy", "curve_reading", "todays_schedules",
          "lr_free", "procedure")


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claim of the paper and how this experiment tests it: `check` names the rule of
    `experiment.claims` that gives the verdict, `roles` the settings (and range test) it reads,
    as that rule's keyword arguments."""

    name: str
    section: str
    statement: str
    check: str
    roles: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        v.one_of("check", self.check, CHECKS)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One network x dataset of the paper.

    `baseline` names the setting whose final test accuracy is the target of the
    super-convergence figure of merit (epochs each setting needs to reach it);
    `comparisons` groups setting names into the paper's comparisons (learning-rate policy,
    momentum, weight decay, batch size); `eval_every_epochs` sets how often every setting is
    evaluated on the test set (the paper reads the test curve, Sec. 3).
    """

    name: str
    title: str
    section: str
    config: TrainConfig
    settings: tuple[Setting, ...]
    baseline: str
    comparisons: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    eval_every_epochs: float = 1.0
    notes: tuple[str, ...] = ()
    range_tests: tuple[RangeTest, ...] = ()
    runs: int = 4
    claims: tuple[Claim, ...] = ()

    def __post_init__(self):
        names = [s.name for s in self.settings]
        v.check("settings", names, bool(names) and len(names) == len(set(names)),
                "a non-empty tuple of settings with unique names")
        v.one_of("baseline", self.baseline, names)
        for group, members in self.comparisons.items():
            for name in members:
                v.one_of(f"comparisons[{group!r}]", name, names)
        v.positive_number("eval_every_epochs", self.eval_every_epochs)
        v.positive_int("runs", self.runs)
        tests = [t.name for t in self.range_tests]
        v.check("range_tests", tests, len(tests) == len(set(tests)), "uniquely named")
        for claim in self.claims:
            for role, name in _role_names(claim.roles):
                allowed = tests if role == "test" else names
                v.one_of(f"claim {claim.name!r} role {role!r}", name, allowed)

    def setting(self, name: str) -> Setting:
        return {s.name: s for s in self.settings}[v.one_of("setting", name, self.setting_names)]

    @property
    def setting_names(self) -> list[str]:
        return [s.name for s in self.settings]

    def range_test(self, name: str) -> RangeTest:
        tests = {t.name: t for t in self.range_tests}
        return tests[v.one_of("range test", name, tests)]

    def runs_for(self, name: str) -> int:
        """Seeds the setting trains by default: its own `runs`, else the experiment's."""
        return self.setting(name).runs or self.runs

    def config_for(self, name: str, *, runs: int | None = None, scale: float = 1.0,
                   workdir: str | None = None, progress: bool = True) -> TrainConfig:
        """The `TrainConfig` of setting `name`: `runs` seeds (0, 1, ...; default `runs_for`)
        trained together, the length (epochs or steps, and an explicit step size) multiplied
        by `scale`."""
        runs = self.runs_for(name) if runs is None else runs
        v.positive_int("runs", runs)
        check_scale(scale)
        config = self.config.replace(**self.setting(name).changes)
        changes: dict[str, Any] = {"workdir": workdir, "progress": progress}
        if config.steps is not None:
            changes["steps"] = max(1, round(config.steps * scale))
        else:
            changes["epochs"] = round(config.epochs * scale, 6)
        if config.step_size is not None:
            changes["step_size"] = max(1.0, config.step_size * scale)
        if runs > 1:
            changes["members"] = tuple({"seed": config.seed + k} for k in range(runs))
        every = self.setting(name).eval_every_epochs or self.eval_every_epochs
        changes["eval_every"] = max(1, round(every * steps_per_epoch(config)))
        changes["log_every"] = min(config.log_every, changes["eval_every"])
        return config.replace(**changes)


def check_scale(scale: Any) -> float:
    """A run-length multiplier of `experiment run --scale`: a number in (0, 1] (a quick check
    shortens every setting; nothing lengthens it past the paper's)."""
    ok = isinstance(scale, (int, float)) and not isinstance(scale, bool) and 0 < scale <= 1
    v.check("scale", scale, ok, "a number in (0, 1] (the fraction of each setting's length)")
    return float(scale)


# Roles that name a file a check reads (a `tune.json`), not a setting or range test.
FILE_ROLES = ("record",)


def _role_names(roles: Mapping[str, Any]):
    """(role, name) for every setting or range-test name a claim's roles mention."""
    for role, value in roles.items():
        if role in FILE_ROLES:
            continue
        values = value.values() if isinstance(value, Mapping) else (
            value if isinstance(value, (tuple, list)) else (value,))
        for name in values:
            yield role, name


def steps_per_epoch(config: TrainConfig) -> int:
    """Optimizer steps in one epoch of `config`'s training split (drop-last batches)."""
    from hparams_jax import data

    size = data.info(config.dataset).train_size
    if config.train_examples is not None:
        size = min(size, config.train_examples)
    return max(1, size // config.batch_size)


# The source checkout this package runs from, if it does (an installed wheel has none).
_REPOSITORY = Path(__file__).resolve().parents[2]


def configs_dir() -> Path:
    """`$HPARAMS_JAX_EXPERIMENTS`, else the `experiments/configs` of the source checkout this
    package runs from. Config files are code: nothing else (the current directory in
    particular) is searched, so pass another folder explicitly (`--configs DIR`)."""
    if os.environ.get(CONFIGS_ENV):
        return Path(os.environ[CONFIGS_ENV])
    if (_REPOSITORY / "pyproject.toml").is_file():
        return _REPOSITORY / "experiments" / "configs"
    raise ConfigError(f"this installed hparams_jax has no experiment configs of its own: pass "
                      f"a folder of them with --configs DIR (or load_all(DIR)) or set "
                      f"{CONFIGS_ENV}.")


def load_all(directory: str | Path | None = None) -> dict[str, Experiment]:
    """Every `EXPERIMENT` in the config files of `directory` (see `configs_dir`), by name."""
    directory = Path(directory) if directory is not None else configs_dir()
    if not directory.is_dir():
        raise ConfigError(f"experiment configs directory {str(directory)!r} does not exist: "
                          f"pass an existing one (--configs DIR) or set {CONFIGS_ENV}.")
    experiments = {}
    for path in sorted(directory.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"hparams_jax_experiment_{path.stem}",
                                                      path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        experiment = getattr(module, "EXPERIMENT", None)
        if not isinstance(experiment, Experiment):
            raise ConfigError(f"{path} defines no EXPERIMENT (an hparams_jax.experiment."
                              "Experiment).")
        if experiment.name in experiments:
            raise ConfigError(f"{path}: experiment name {experiment.name!r} is used twice.")
        experiments[experiment.name] = experiment
    return experiments


def find(name: str, directory: str | Path | None = None) -> Experiment:
    """The experiment called `name`."""
    experiments = load_all(directory)
    return experiments[v.one_of("experiment", name, experiments)]
