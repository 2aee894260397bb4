"""`write_report`: every finished run of the grid in one Markdown file, beside the author's
numbers, with the super-convergence figure of merit (Smith & Topin 2017; Smith 2018, Table 1):
the epochs each setting needs to reach its baseline's final test accuracy.

Runs are read from `ROOT/EXPERIMENT/SETTING[@scaleS]/` (`experiment.json`, `summary.json`,
`metrics.jsonl`) and range tests from `ROOT/EXPERIMENT/range_tests/TEST/`; a row of the grid
without a finished run says "not run here". The report opens with the claims tables of the
experiments that define claims (`experiment.claims`).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Iterable

import numpy as np

from hparams_jax import data, plots
from hparams_jax.errors import ConfigError
from hparams_jax.experiment import claims
from hparams_jax.experiment.records import (Run, epochs_to_reach, find_range_tests, find_runs,
                                            mean_std, reached_text)
from hparams_jax.experiment.runner import DEFAULT_ROOT, EVALUATION, plot_range_test
from hparams_jax.experiment.spec import Experiment


def _scale_text(scale: float) -> str:
    return "full" if scale == 1 else f"scaled ×{scale:g}"


def _paper_text(setting) -> str:
    p = setting.paper
    if p is None:
        return "—"
    top5 = f" / {p.top5:.4f}" if p.top5 is not None else ""
    return f"{p.accuracy:.4f}{top5} ({p.epochs:g} ep.)"


def _lr_text(lr: float | None) -> str:
    return "none" if lr is None else f"{lr:.4g}"


def _reach_text(epochs: np.ndarray) -> str:
    return reached_text(epochs, "{:.2f}", f"not reached (0/{len(epochs)})", "reached")


def _group_by_scale(runs: Iterable[Run]) -> dict[float, dict[str, Run]]:
    groups: dict[float, dict[str, Run]] = {}
    for r in runs:
        groups.setdefault(r.scale, {})[r.setting] = r
    return groups


def _figure(experiment: Experiment, scale: float, runs: dict[str, Run], target: float | None,
            reach: dict[str, np.ndarray], figures: Path) -> Path:
    tag = "" if scale == 1 else f"@scale{scale:g}"
    curves = {name: [r.curve(m) for m in r.members] for name, r in runs.items()}
    diverged = {name: [r.curve(m["member"]) for m in r.summary["members"]]
                for name, r in runs.items() if not r.members}
    groups = {g: [n for n in names if n in runs] for g, names in experiment.comparisons.items()}
    groups = {g: names for g, names in groups.items() if names} or {"all": list(runs)}
    budgets = {name: r.summary["epochs"] for name, r in runs.items()}
    path = figures / f"{experiment.name}{tag}.png"
    plots.plot_epochs_to_target(
        curves, path, groups=groups, target=target, epochs_to_target=reach, budgets=budgets,
        diverged=diverged,
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
                f"{mean_std(r.final('test_accuracy'))} | {mean_std(r.final('test_loss'))} | "
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
    lines += _range_test_section(experiment, root, figures, link_base)
    lines += [f"{note}" for note in experiment.notes]
    return lines


def _range_test_section(experiment: Experiment, root: Path, figures: Path, link_base: Path
                        ) -> list[str]:
    """Each range test's suggestions (one row per member of a family) and its figure."""
    tests = find_range_tests(root, experiment)
    if not tests:
        return []
    lines = ["### LR range tests", "",
             "| test | setting | max_lr | min_lr | lowest held-out loss | best held-out acc. | "
             "stopped | reading |", "|---|---|---|---|---|---|---|---|"]
    for test in experiment.range_tests:
        family = tests.get(test.name)
        if family is None:
            lines.append(f"| `{test.name}` | | not run here | | | | | |")
            continue
        for row, result in zip(family.rows(), family.results):
            s = result.suggest()
            value = row[family.param]
            loss, acc = row["best_eval_loss"], row["best_eval_accuracy"]
            lines.append(
                f"| `{test.name}` | {family.param}={value} | {_lr_text(s.max_lr)} | "
                f"{_lr_text(s.min_lr)} | "
                f"{'—' if loss is None else f'{loss:.4f}'} | "
                f"{'—' if acc is None else f'{acc:.4f}'} | {row['stopped']} | {s.method} |")
    lines.append("")
    for test in experiment.range_tests:
        if test.name in tests:
            path = plot_range_test(experiment, test.name, tests[test.name],
                                   figures / f"{experiment.name}_range_test_{test.name}.png")
            lines += [f"- `{test.name}` ({test.start:g} -> {test.stop:g}, {test.num_steps} "
                      f"steps, {test.mode}): {test.note} "
                      f"![range test {test.name}]({_relative(path, link_base)})"]
    return lines + [""]


def _claims_section(experiment: Experiment, runs: list[Run], root: Path) -> list[str]:
    """The claims table: each claim, what was run, the numbers and the verdict."""
    full = {r.setting: r for r in runs if r.scale == 1}
    tests = find_range_tests(root, experiment)
    lines = [f"## The paper's claims, measured: {experiment.title} (`{experiment.name}`)", "",
             "| claim | paper | what was run | measured (test accuracy: mean ± std over seeds) "
             "| verdict | why |", "|---|---|---|---|---|---|"]
    for claim in experiment.claims:
        verdict = claims.evaluate(claim, full, tests)
        lines.append(f"| **{claim.name}**: {claim.statement} | {claim.section} | "
                     f"{verdict.ran or '—'} | {verdict.measured or '—'} | "
                     f"**{verdict.verdict}** | {verdict.why} |")
    lines += ["", "Only full-length runs enter this table; scaled runs carry no verdict. Two "
              "settings tie when their mean final test accuracies differ by at most two "
              "standard errors of the difference (and at least "
              f"{claims.MIN_MARGIN:g}); each claim's rule is in `hparams_jax/experiment/"
              "claims.py`. Range tests read the held-out loss on the test split, as the paper "
              "does.", ""]
    return lines


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def write_report(experiments: dict[str, Experiment], *, root: str | Path = DEFAULT_ROOT,
                 output: str | Path = "experiments/RESULTS.md",
                 allow_empty: bool = False) -> Path:
    """Writes `output` (and its figures beside it in `figures/`) from the runs under `root`.

    Args:
      experiments: the experiments of the grid, by name (`load_all`).
      root: where their runs and range tests are recorded.
      output: the report file (replaced).
      allow_empty: write a report without a single finished run or range test (every row
        "not run here"); refused otherwise, so that a wrong `root` never replaces a report
        that has rows with one that has none.

    Returns:
      `output`.

    Raises:
      ConfigError: `root` holds no finished run or range test of `experiments` and
        `allow_empty` is False (nothing is written).
    """
    root, output = Path(root), Path(output)
    all_runs = {name: find_runs(root, e) for name, e in experiments.items()}
    if not allow_empty and not any(all_runs.values()) and not any(
            find_range_tests(root, e) for e in experiments.values()):
        where = "does not exist" if not root.exists() else (
            f"holds no finished run or range test of the {len(experiments)} experiment(s)")
        kept = f"; {str(output)!r} is left as it is" if output.exists() else ""
        raise ConfigError(f"root={str(root)!r} {where}: the report would have no rows{kept}. "
                          "Give the root the runs were written to (--root), or allow an "
                          "empty report (allow_empty=True, --allow-empty).")
    figures = output.parent / "figures"
    figures.mkdir(parents=True, exist_ok=True)
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
        if experiments[name].claims and all_runs[name]:
            lines += _claims_section(experiments[name], all_runs[name], root)
    for name in ordered:
        experiment = experiments[name]
        lines += _experiment_section(experiment, all_runs[name], root, figures, output.parent)
        lines.append("")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines).rstrip() + "\n")
    return output
