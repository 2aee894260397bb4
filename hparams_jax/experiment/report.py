"""`write_report`: every finished run of the grid in one Markdown file, beside the author's
numbers, with the super-convergence figure of merit (Smith & Topin 2017; Smith 2018, Table 1):
the epochs each setting needs to reach its baseline's final test accuracy.

Runs are read from `ROOT/EXPERIMENT/SETTING[@scaleS]/` (`experiment.json`, `summary.json`,
`metrics.jsonl`); a row of the grid without a finished run says "not run here".
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np

from hparams_jax import data, plots
from hparams_jax.experiment.runner import EVALUATION
from hparams_jax.experiment.spec import Experiment
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


def find_runs(root: str | Path, experiment: Experiment) -> list[Run]:
    """The completed runs of `experiment` under `root`, sorted by scale (full first), setting."""
    runs = []
    for path in sorted((Path(root) / experiment.name).glob("*/experiment.json")):
        meta = json.loads(path.read_text())
        summary_path = path.parent / "summary.json"
        if meta.get("setting") not in experiment.setting_names or not summary_path.exists():
            continue
        summary = json.loads(summary_path.read_text())
        if summary.get("status") != "completed":
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


def _mean_std(x: np.ndarray, fmt: str = "{:.4f}") -> str:
    x = x[np.isfinite(x)]
    if not len(x):
        return "—"
    if len(x) == 1:
        return fmt.format(x[0])
    return f"{fmt.format(x.mean())} ± {fmt.format(x.std(ddof=1))}"


def _scale_text(scale: float) -> str:
    return "full" if scale == 1 else f"scaled ×{scale:g}"


def _paper_text(setting) -> str:
    p = setting.paper
    if p is None:
        return "—"
    top5 = f" / {p.top5:.4f}" if p.top5 is not None else ""
    return f"{p.accuracy:.4f}{top5} ({p.epochs:g} ep.)"


def _reach_text(epochs: np.ndarray) -> str:
    reached = np.isfinite(epochs)
    if not reached.any():
        return f"not reached (0/{len(epochs)})"
    text = _mean_std(epochs, "{:.2f}")
    return text if reached.all() else f"{text} ({reached.sum()}/{len(epochs)} reached)"


def _group_by_scale(runs: Iterable[Run]) -> dict[float, dict[str, Run]]:
    groups: dict[float, dict[str, Run]] = {}
    for r in runs:
        groups.setdefault(r.scale, {})[r.setting] = r
    return groups


def _figure(experiment: Experiment, scale: float, runs: dict[str, Run], target: float | None,
            reach: dict[str, np.ndarray], figures: Path) -> Path:
    tag = "" if scale == 1 else f"@scale{scale:g}"
    curves = {name: [r.curve(m) for m in r.members] for name, r in runs.items()}
    groups = {g: [n for n in names if n in runs] for g, names in experiment.comparisons.items()}
    groups = {g: names for g, names in groups.items() if names} or {"all": list(runs)}
    budgets = {name: r.summary["epochs"] for name, r in runs.items()}
    path = figures / f"{experiment.name}{tag}.png"
    plots.plot_epochs_to_target(
        curves, path, groups=groups, target=target, epochs_to_target=reach, budgets=budgets,
        title=f"{experiment.title} ({_scale_text(scale)}; "
              f"{EVALUATION[data.info(experiment.config.dataset).in_memory]})")
    return path


def _experiment_section(experiment: Experiment, runs: list[Run], root: Path, figures: Path,
                        link_base: Path) -> list[str]:
    config = experiment.config
    lines = [f"## {experiment.title} — `{experiment.name}`", "",
             f"{experiment.section}. Model `{config.model}`, dataset `{config.dataset}`, "
             f"augmentation `{config.augmentation or 'dataset default'}`, "
             f"normalization `{config.normalization}`. Config: "
             f"`experiments/configs/{experiment.name}.py`.", ""]
    by_scale = _group_by_scale(runs)
    reach_by_scale, targets = {}, {}
    for scale, group in by_scale.items():
        base = group.get(experiment.baseline)
        if base is not None and len(base.members):
            target = float(base.final("test_accuracy").mean())
            targets[scale] = target
            reach_by_scale[scale] = {n: epochs_to_reach(r, target) for n, r in group.items()}

    lines += ["| setting | paper: test acc. (epochs) | our run | runs | epochs | "
              "test accuracy | test loss | epochs to baseline acc. | baseline's epochs to "
              "this acc. | wall time |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for setting in experiment.settings:
        mine = [r for r in runs if r.setting == setting.name]
        if not mine:
            lines.append(f"| `{setting.name}` | {_paper_text(setting)} | not run here | | | | "
                         "| | | |")
            continue
        for r in mine:
            n = len(r.summary["members"])
            runs_text = f"{n}" + (f" ({r.diverged} diverged)" if r.diverged else "")
            reach = reach_by_scale.get(r.scale, {}).get(setting.name)
            base = by_scale[r.scale].get(experiment.baseline)
            back = (_reach_text(epochs_to_reach(base, float(r.final("test_accuracy").mean())))
                    if base is not None and len(r.members) else "—")
            lines.append(
                f"| `{setting.name}` | {_paper_text(setting)} | {_scale_text(r.scale)} | "
                f"{runs_text} | {r.summary['epochs']:.3g} | "
                f"{_mean_std(r.final('test_accuracy'))} | {_mean_std(r.final('test_loss'))} | "
                f"{_reach_text(reach) if reach is not None else '—'} | {back} | "
                f"{r.summary['wall_time_s'] / 60:.1f} min |")
    lines.append("")
    lines += [f"- `{s.name}`: {s.note}" + (f" (paper: {s.paper.source})" if s.paper else "")
              for s in experiment.settings]
    lines.append("")
    for scale, group in by_scale.items():
        target = targets.get(scale)
        if target is not None:
            lines.append(f"Baseline (`{experiment.baseline}`, {_scale_text(scale)}) final test "
                         f"accuracy: {target:.4f}, mean of its runs. \"Epochs to baseline acc.\" "
                         "is each run's first evaluated epoch at or above it; \"baseline's "
                         "epochs to this acc.\" is the baseline runs' first epoch at or above "
                         "the setting's mean final accuracy.")
        path = _figure(experiment, scale, group, target, reach_by_scale.get(scale, {}), figures)
        lines += ["", f"![{experiment.name} {_scale_text(scale)}]"
                      f"({_relative(path, link_base)})", ""]
    range_test = root / experiment.name / "range_test" / "range_test.png"
    if range_test.exists():
        copy = figures / f"{experiment.name}_range_test.png"
        shutil.copyfile(range_test, copy)
        lines += [f"LR range test behind the bounds: ![range test]({_relative(copy, link_base)})",
                  ""]
    lines += [f"{note}" for note in experiment.notes]
    return lines


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def write_report(experiments: dict[str, Experiment], *, root: str | Path = "runs",
                 output: str | Path = "experiments/RESULTS.md") -> Path:
    """Writes `output` (and its figures beside it in `figures/`) from the runs under `root`."""
    root, output = Path(root), Path(output)
    figures = output.parent / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    all_runs = {name: find_runs(root, e) for name, e in experiments.items()}
    machines = sorted({f"{r.summary['backend']} x{r.summary['devices']}"
                       for runs in all_runs.values() for r in runs})
    ran = sum(bool(runs) for runs in all_runs.values())
    lines = [
        "# Results: the paper's grid", "",
        f"Written by `hparams-jax experiment report` on {datetime.date.today()} from the runs "
        f"in `{root}/`. {ran} of {len(experiments)} experiments have finished runs here "
        f"(devices: {', '.join(machines) or 'none'}); every other row says \"not run here\".",
        "",
        f"- Evaluation: {EVALUATION[True]} (ImageNet: {EVALUATION[False]}); the author's "
        "logged accuracies are on a 6,400-image "
        "(ResNet, WRN) or 7,400-image (DenseNet) subset of the CIFAR test split with random "
        "flips, ImageNet's on its validation split.",
        "- Test accuracy and loss are the mean ± sample std over the runs (seeds 0..K-1, "
        "trained together in one program) at the end of training.",
        "- A *scaled* run multiplies the epochs (and the 1cycle step size) of every setting "
        "by the factor shown; its numbers are not comparable with the paper's full-length "
        "numbers, only with the other settings at the same scale.",
        "- Paper numbers are the final test accuracy of the author's own logged run "
        "(`shared/reference/smith2018_runs.md`); \"—\" where his logs give none.", ""]
    ordered = sorted(experiments, key=lambda n: (not all_runs[n], n))
    for name in ordered:
        experiment = experiments[name]
        lines += _experiment_section(experiment, all_runs[name], root, figures, output.parent)
        lines.append("")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines).rstrip() + "\n")
    return output
