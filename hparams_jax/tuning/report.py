"""`WORKDIR/report.md`: the recorded decisions of `tune` read top to bottom as the paper's
argument applied to one network (Smith 2018, Sec. 4-5), with the figures it links: each
range test and family (`plots.plot_range_test`, `plots.plot_family`) and the tuned run's
curves with their diagnosis (`plots.plot_training`, Sec. 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hparams_jax import plots
from hparams_jax.range_test import RangeTestResult
from hparams_jax.train.metrics import write_text_atomic
from hparams_jax.tuning.budget import SearchPlan
from hparams_jax.tuning.procedure import ONE_CYCLE, STAGES, Stage, show
from hparams_jax.tuning.records import TuneResult


def markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    """The lines of a Markdown table of `rows` (its columns: every key, in order of first
    appearance), then a blank line."""
    if not rows:
        return []
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(show(r.get(c)) for c in columns) + " |" for r in rows]
    return lines + [""]


def _figure(workdir: Path, stage: Stage, results: list[RangeTestResult]) -> str | None:
    if not results:
        return None
    path = workdir / f"{stage.name}.png"
    if stage.argument is None:
        plots.plot_range_test(results[0], path)
    else:
        plots.plot_family(results, path, title=f"LR range tests by {stage.label}")
    return path.name


def write(workdir: Path, records: dict[str, dict[str, Any]], result: TuneResult,
          plan: SearchPlan) -> Path:
    """Writes the figures and `report.md` into `workdir`; returns the report's path.
    `records` holds each stage's record (`records.stage_of`) by name."""
    config = result.config
    lines = [f"# Tuning {config.model} on {config.dataset}: the disciplined approach",
             "", "Smith 2018, *A disciplined approach to neural network hyper-parameters: "
             "Part 1* (arXiv:1803.09820): set the LR, batch size, momentum and weight decay "
             "together, each read from short runs' held-out loss (Sec. 4), then train with "
             "1cycle and read the test loss for under- or over-fitting (Sec. 3, 5). Every "
             "number below is in `tune.json`.", "", "## Budget", ""]
    spent = sum(d.steps_spent for d in result.decisions)
    lines.append(f"The search's range tests ran {spent} training steps (a step of one "
                 f"setting) against a plan of {plan.steps}; the default plan was "
                 f"{plan.planned_steps}, each range test {plan.range_steps} steps.")
    lines += ["", *(f"- cut: {c.text}" for c in plan.cuts)] if plan.cuts else [
        "", "Nothing was cut."]
    for number, stage in enumerate(STAGES, 1):
        d = records[stage.name]["decision"]
        results = [RangeTestResult.from_dict(r) for r in records[stage.name]["range_tests"]]
        title = f"{number}. {stage.title}"
        lines += ["", f"## {title} (Sec. {d['section']})", "", stage.intro, "",
                  f"Rule: {d['rule']}.", ""]
        lines += markdown_table(d["candidates"])
        lines.append(f"**Choice: {stage.label} = {show(d['choice'])}** "
                     f"({d['reason']}). Bounds now: max_lr {d['bounds']['max_lr']:.4g}, "
                     f"min_lr {d['bounds']['min_lr']:.4g}.")
        if d["budget_cut"]:
            lines.append(f"\nCut by the budget: {d['budget_cut']}.")
        figure = _figure(workdir, stage, results)
        if figure:
            lines += ["", f"![{title}]({figure})"]
    history, diagnosis = result.history, result.diagnosis
    member = history.summary["members"][0]
    plots.plot_training(history, workdir / "one_cycle.png", diagnosis=diagnosis,
                        title=f"{config.model} / {config.dataset}, tuned 1cycle")
    lines += ["", f"## {len(STAGES) + 1}. {ONE_CYCLE.title}", "",
              f"1cycle from {config.min_lr:.4g} to {config.max_lr:.4g} and back, then "
              f"annihilation; batch {config.batch_size}, momentum {show(config.momentum)}"
              f", weight decay {config.weight_decay:g}, {history.summary['epochs']:g} epochs "
              f"({history.summary['status']}).", "",
              *markdown_table([{"test accuracy": member["test_accuracy"],
                        "test loss": member["test_loss"], "train loss": member["train_loss"],
                        "s/epoch": history.summary["seconds_per_epoch"]}]),
              "Diagnosis:", "", "```", diagnosis.text(), "```", "",
              f"**Next step:** {result.next_step}.", "",
              "![the tuned 1cycle run](one_cycle.png)", ""]
    path = workdir / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path
