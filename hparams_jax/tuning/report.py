"""`WORKDIR/report.md`: the recorded decisions of `tune` read top to bottom as the paper's
argument applied to one network (Smith 2018, Sec. 4-5), with the figures it links: each
range test and family (`plots.plot_range_test`, `plots.plot_family`) and the tuned run's
curves with their diagnosis (`plots.plot_training`, Sec. 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from hparams_jax import plots
from hparams_jax.range_test import RangeTestResult
from hparams_jax.train.metrics import write_text_atomic
from hparams_jax.tuning.budget import SearchPlan
from hparams_jax.tuning.procedure import ONE_CYCLE, STAGES, Stage, show
from hparams_jax.tuning.records import TuneResult, final_accuracy


def markdown_table(rows: list[dict[str, Any]], columns: Sequence[str] | None = None
                   ) -> list[str]:
    """The lines of a Markdown table of `rows` (its columns: `columns`, default every key in
    order of first appearance), then a blank line."""
    if not rows:
        return []
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return lines + [""]


def _cell(x: Any) -> str:
    if isinstance(x, bool):
        return "yes" if x else ""
    if isinstance(x, list) and not all(isinstance(y, float) for y in x):
        return ", ".join(map(str, x))  # seeds, stop reasons
    return show(x)


# The columns of a family's table in the report (tune.json holds every number).
_FAMILY_COLUMNS = ("seeds", "usable_steps", "best_eval_loss", "best_eval_loss_std", "margin",
                   "tie", "max_lr", "excluded")
_BATCH_COLUMNS = ("batch_size", "fits", "tested", "steps", "planned_examples",
                  "examples_per_s", *_FAMILY_COLUMNS)


def _columns(stage: Stage) -> Sequence[str] | None:
    if stage.argument is None:
        return None
    if stage.name == "batch_size":
        return _BATCH_COLUMNS
    return (stage.name, *_FAMILY_COLUMNS)


def _figure(workdir: Path, stage: Stage, results: list[RangeTestResult]) -> str | None:
    """The stage's figure: its range test, or its family's tests at the first seed."""
    if not results:
        return None
    path = workdir / f"{stage.name}.png"
    if stage.argument is None:
        plots.plot_range_test(results[0], path)
    else:
        first = results[0].setting.get("seed")
        plots.plot_family([r for r in results if r.setting.get("seed") == first], path,
                          title=f"LR range tests by {stage.label} (seed {first})")
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
    spent = sum(d.examples_spent for d in result.decisions)
    start_batch = result.decisions[0].ramp.get("batch_size", config.batch_size)  # the unit's
    seconds = sum(d.seconds for d in result.decisions)
    history = result.history
    final = history.summary["step"] * config.batch_size
    final_seconds = history.summary["seconds_per_epoch"] * history.summary["epochs"]
    lines.append(f"The search's range tests ran {spent:,} training examples "
                 f"({spent / start_batch:.0f} steps at the starting batch against a "
                 f"plan of {plan.steps}; the default plan was {plan.planned_steps}, each "
                 f"range test {plan.range_steps} steps at the starting batch, the families "
                 f"at {plan.seeds} seed(s)) in {seconds:.0f} s: "
                 f"{spent / max(final, 1):.2f} times the {final:,} examples of one seed's "
                 f"1cycle run ({history.summary['epochs']:g} epochs, {final_seconds:.0f} s of "
                 "training).")
    lines += ["", *(f"- cut: {c.text}" for c in plan.cuts)] if plan.cuts else [
        "", "Nothing was cut."]
    for number, stage in enumerate(STAGES, 1):
        d = records[stage.name]["decision"]
        results = [RangeTestResult.from_dict(r) for r in records[stage.name]["range_tests"]]
        title = f"{number}. {stage.title}"
        lines += ["", f"## {title} (Sec. {d['section']})", "", stage.intro, "",
                  f"Rule: {d['rule']}.", ""]
        if d.get("ramp"):
            ramp = d["ramp"]
            lines += [f"Ramp: LR {ramp['start']:.4g} -> {ramp['stop']:.4g} over "
                      f"{ramp['examples']:,} training examples ({ramp['steps']} steps at "
                      f"batch {ramp['batch_size']}).", ""]
        lines += [f"- {a}" for a in d.get("attempts", [])] + (
            [""] if d.get("attempts") else [])
        lines += markdown_table(d["candidates"], _columns(stage))
        if d.get("tie_order"):
            lines += [f"Ties go to the first in the order: "
                      f"{', '.join(map(show, d['tie_order']))}.", ""]
        lines.append(f"**Choice: {stage.label} = {show(d['choice'])}** "
                     f"({d['reason']}). Bounds now: max_lr {d['bounds']['max_lr']:.4g}, "
                     f"min_lr {d['bounds']['min_lr']:.4g}.")
        if d["budget_cut"]:
            lines.append(f"\nCut by the budget: {d['budget_cut']}.")
        figure = _figure(workdir, stage, results)
        if figure:
            lines += ["", f"![{title}]({figure})"]
    diagnosis = result.diagnosis
    accuracy = final_accuracy(history.summary)
    seeds = [m["setting"]["seed"] for m in history.summary["members"]]
    plots.plot_training(history, workdir / "one_cycle.png", diagnosis=diagnosis,
                        title=f"{config.model} / {config.dataset}, tuned 1cycle")
    lines += ["", f"## {len(STAGES) + 1}. {ONE_CYCLE.title}", "",
              f"1cycle from {config.min_lr:.4g} to {config.max_lr:.4g} and back, then "
              f"annihilation; batch {config.batch_size}, momentum {show(config.momentum)}"
              f", weight decay {config.weight_decay:g}, {history.summary['epochs']:g} epochs "
              f"({history.summary['status']}), seeds {', '.join(map(str, seeds))}.", "",
              *markdown_table([{"seed": m["setting"]["seed"],
                                "test accuracy": m["test_accuracy"],
                                "test loss": m["test_loss"], "train loss": m["train_loss"]}
                               for m in history.summary["members"]]),
              f"Test accuracy {accuracy['text']} (mean ± standard deviation over the seeds); "
              f"{history.summary['seconds_per_epoch']:.1f} s an epoch.", "",
              f"Diagnosis (seed {seeds[0]}):", "", "```", diagnosis.text(), "```", "",
              f"**Next step:** {result.next_step}.", "",
              "![the tuned 1cycle run](one_cycle.png)", ""]
    path = workdir / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path
