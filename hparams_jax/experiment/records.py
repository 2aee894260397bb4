"""Reading an experiment's records: the finished runs of its settings (`Run`) and its LR range
tests, as `run_setting` and `run_range_test` wrote them under `ROOT/NAME/`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from hparams_jax import _files
from hparams_jax.experiment.runner import range_test_dir
from hparams_jax.experiment.spec import Experiment
from hparams_jax.range_test import Family
from hparams_jax.train import History


@dataclasses.dataclass
class Run:
    """One setting's finished runs (K members) at one scale."""

    setting: str
    scale: float
    summary: dict
    history: History

    @property
    def members(self) -> list[int]:
        return [m["member"] for m in self.summary["members"] if not m["diverged"]]

    @property
    def diverged(self) -> int:
        return sum(m["diverged"] for m in self.summary["members"])

    def final(self, key: str) -> np.ndarray:
        return np.array([self.summary["members"][k][key] for k in self.members], float)

    def curve(self, member: int) -> tuple[np.ndarray, np.ndarray]:
        ev = self.history.eval(member)
        return ev.get("epoch", np.zeros(0)), ev.get("test_accuracy", np.zeros(0))


# A run that ended: trained to its end, or stopped because every member diverged.
FINISHED = ("completed", "diverged")


def find_runs(root: str | Path, experiment: Experiment) -> list[Run]:
    """The finished runs of `experiment` under `root`, sorted by scale (full first), setting."""
    runs = []
    for path in sorted((Path(root) / experiment.name).glob("*/experiment.json")):
        meta = _files.read_json(path)
        summary_path = path.parent / "summary.json"
        if meta.get("setting") not in experiment.setting_names or not summary_path.exists():
            continue
        summary = _files.read_json(summary_path)
        if summary.get("status") not in FINISHED:
            continue
        runs.append(Run(meta["setting"], float(meta["scale"]), summary,
                        History.load(path.parent)))
    order = {name: i for i, name in enumerate(experiment.setting_names)}
    return sorted(runs, key=lambda r: (-r.scale, order[r.setting]))


def epochs_to_reach(run: Run, target: float) -> np.ndarray:
    """Per member: the first evaluated epoch whose test accuracy is at least `target`
    (NaN where the run never got there)."""
    out = []
    for member in run.members:
        epoch, acc = run.curve(member)
        hit = np.flatnonzero(acc >= target)
        out.append(epoch[hit[0]] if len(hit) else np.nan)
    return np.array(out, float)


def mean_std(x: np.ndarray, fmt: str = "{:.4f}") -> str:
    x = x[np.isfinite(x)]
    if not len(x):
        return "—"
    if len(x) == 1:
        return fmt.format(x[0])
    return f"{fmt.format(x.mean())} ± {fmt.format(x.std(ddof=1))}"


def reached_text(epochs: np.ndarray, fmt: str, none: str, counted: str) -> str:
    """The epochs runs needed to reach a target (`epochs_to_reach`: NaN where a run never did)
    as `mean_std` in `fmt`, followed by "(k/n `counted`)" when only k of the n runs reached
    it; `none` when no run did."""
    reached = np.isfinite(epochs)
    if not reached.any():
        return none
    text = mean_std(epochs, fmt)
    return text if reached.all() else f"{text} ({reached.sum()}/{len(epochs)} {counted})"


def find_range_tests(root: str | Path, experiment: Experiment) -> dict[str, Family]:
    """The range tests of `experiment` that have been run under `root`, by name."""
    found = {}
    for test in experiment.range_tests:
        path = range_test_dir(root, experiment.name, test.name) / "range_test.json"
        if path.exists():
            found[test.name] = Family.load(path)
    return found
