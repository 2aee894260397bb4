"""Running an experiment's rows: `run_setting` trains one setting, its runs as one program, into
`ROOT/NAME/SETTING` (`ROOT/NAME/SETTING@scale0.25` when shrunk) and records how it was run in
`experiment.json` beside the run's own `config.json`, `metrics.jsonl` and `summary.json`;
`run_range_test` runs one of the experiment's LR range tests (or families of them, Sec. 4.1-4.4)
into `ROOT/NAME/range_tests/TEST/` (`range_test.json`, `range_test.png`).

A setting whose `summary.json` already says "completed" with the same config is not trained
again (its records may be the committed ones of `experiments/records`); an interrupted one
resumes from its last checkpoint. Each setting's and each range test's folder is locked while
it is read and written (`train.workdir_lock`): a second `experiment run` stops there at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hparams_jax import _files
from hparams_jax import _validate as v
from hparams_jax import data, plots
from hparams_jax.errors import ConfigError
from hparams_jax.experiment.spec import Experiment, RangeTest
from hparams_jax.range_test import Family, lr_range_test, range_test_family
from hparams_jax.train import History, TrainConfig, fit, workdir_lock
from hparams_jax.train.config import EXECUTION_FIELDS
from hparams_jax.train.loop import RESUMABLE_CHANGES
from hparams_jax.train.metrics import write_json_atomic

EVALUATION = {True: "the full test split, no augmentation",
              False: "the full validation split, central crops"}  # in memory / streamed
# Where the grid's runs are written and read: the committed records of this repository's runs
# (checkpoints are git-ignored there).
DEFAULT_ROOT = "experiments/records"


def run_dir(root: str | Path, experiment: str, setting: str, scale: float = 1.0) -> Path:
    """Where a setting's runs go: `root/experiment/setting`, tagged with the scale if < 1."""
    tag = "" if scale == 1 else f"@scale{scale:g}"
    return Path(root) / experiment / f"{setting}{tag}"


def range_test_dir(root: str | Path, experiment: str, test: str) -> Path:
    return Path(root) / experiment / "range_tests" / test


def is_complete(workdir: Path, config: TrainConfig) -> bool:
    """Whether `workdir` holds a finished run of `config` (fields that may change on resume
    aside)."""
    summary, saved = workdir / "summary.json", workdir / "config.json"
    if not (summary.exists() and saved.exists()):
        return False
    changed = set(config.changed_fields(_files.read_json(saved))) - set(RESUMABLE_CHANGES)
    return not changed and _files.read_json(summary).get("status") == "completed"


def run_setting(experiment: Experiment, setting: str, *, runs: int | None = None,
                scale: float = 1.0, root: str | Path = DEFAULT_ROOT, progress: bool = True,
                **execution: Any) -> History:
    """Trains `runs` seeds of `setting` (default: the setting's own count; trained together;
    resumes an interrupted run, returns a completed one's records untouched).

    `execution` sets `TrainConfig` fields that change how the runs execute but not what they
    compute (`EXECUTION_FIELDS`, e.g. `data_workers`: grain processes decoding a streamed
    dataset's images); any other field is a `ConfigError`: the experiment defines it.
    """
    for name in execution:
        v.one_of("execution field", name, EXECUTION_FIELDS)
    workdir = run_dir(root, experiment.name, setting, scale)
    config = experiment.config_for(setting, runs=runs, scale=scale, workdir=str(workdir),
                                   progress=progress).replace(**execution)
    with workdir_lock(workdir):  # one writer, from experiment.json to the run's summary
        if is_complete(workdir, config):
            return History.load(workdir)
        info = data.info(config.dataset)
        write_json_atomic(workdir / "experiment.json", {
            "experiment": experiment.name, "setting": setting, "runs": config.num_members,
            "scale": scale, "augmentation": config.augmentation or info.augmentation,
            "evaluation": EVALUATION[info.in_memory]})
        return fit(config)


def run_range_test(experiment: Experiment, name: str, *, root: str | Path = DEFAULT_ROOT
                   ) -> Family:
    """Runs range test `name` of `experiment` (a family of one when it varies nothing) and
    writes its curves and figure; an existing `range_test.json` is read instead, or refused
    when it holds another definition of the test (`_saved_range_test`)."""
    test = experiment.range_test(name)
    out = range_test_dir(root, experiment.name, name)
    with workdir_lock(out):
        return _run_range_test(experiment, name, test, out)


def _run_range_test(experiment: Experiment, name: str, test: RangeTest, out: Path
                    ) -> Family:
    if (out / "range_test.json").exists():
        return _saved_range_test(out / "range_test.json", name, test)
    config = experiment.config.replace(**test.changes, progress=False, workdir=None)
    ramp = dict(start=test.start, stop=test.stop, num_steps=test.num_steps, mode=test.mode)
    if test.family is None:
        result = lr_range_test(config, **ramp)
        result.label = f"{experiment.title}: {name}"
        family = Family("setting", [name], [result])
    else:
        family = range_test_family(config, test.family[0], list(test.family[1]), **ramp)
    family.save(out / "range_test.json")
    plot_range_test(experiment, name, family, out / "range_test.png")
    return family


def _saved_range_test(path: Path, name: str, test: RangeTest) -> Family:
    """The family saved at `path`, if range test `name` as `test` defines it wrote it: the
    varied setting, its values and the ramp must match, else a `ConfigError` (the file is left
    as it is)."""
    family = Family.load(path)
    first = family.results[0]
    param, values = test.family or ("setting", (name,))
    want = {"varied setting": param, "values": list(values),
            "ramp": (test.start, test.stop, test.num_steps, test.mode)}
    have = {"varied setting": family.param, "values": family.values,
            "ramp": (first.start, first.stop, first.num_steps, first.mode)}
    changed = [key for key in want if want[key] != have[key]]
    if changed:
        raise ConfigError(
            f"{str(path)!r} holds another definition of range test {name!r}: "
            + "; ".join(f"{key} {have[key]} where the config has {want[key]}" for key in changed)
            + ". Move it aside to run the test again, or pass another --root.")
    return family


def plot_range_test(experiment: Experiment, name: str, family: Family, path: Path) -> Path:
    """Saves the figure of range test `name` at `path` (returned): the single test's curves
    and bounds, or the family's curves overlaid."""
    if experiment.range_test(name).family is None:
        plots.plot_range_test(family.results[0], path)
    else:
        plots.plot_family(family.results, path, title=f"{experiment.title}: range tests {name}")
    return path
