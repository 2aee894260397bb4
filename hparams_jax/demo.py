"""The main job (`make demo`): the paper's procedure end to end on the offline Fashion-MNIST.

1. `tune` (Smith 2018, Sec. 4-5) on LeNet: an exponential scout finds where the loss blows up,
   an LR range test ramps to just past it, then range tests at 2 seeds each choose the batch
   size (at equal training examples), the momentum and the weight decay, then 1cycle trains
   with the chosen values at 2 seeds and is diagnosed; `tune.json`, `report.md` and the
   figures in the workdir. A table of the decisions shows each candidate's usable steps, seeds
   and the spread of its held-out loss.
2. Beside it, for the same epochs: a hand-set 1cycle (the README's LeNet settings: LR 0.01-0.1,
   batch 128, momentum 0.95-0.85, weight decay 5e-4) at the same 2 seeds, and a constant-LR
   baseline (Caffe's LeNet solver: LR 0.01, momentum 0.9, weight decay 5e-4).
3. A table compares the three (mean ± standard deviation over the seeds; also in
   `comparison.md`), with the verdict of the tuned run against the hand-set one: the
   difference of their mean test accuracies read against the tie margin (two standard errors
   of the difference, at least 0.001; `experiment.claims.tie_margin`), and, where the tuned run
   trails, the settings and losses that differ. `comparison.png` overlays their test accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hparams_jax import plots
from hparams_jax.diagnose import diagnose
from hparams_jax.experiment.claims import tie_margin
from hparams_jax.train import DivergenceError, History, TrainConfig, fit, workdir_lock
from hparams_jax.train.metrics import write_text_atomic
from hparams_jax.tuning import readings, tune
from hparams_jax.tuning.records import final_accuracy
from hparams_jax.tuning.report import markdown_table, show

BATCH_SIZES = (128, 256)
SEEDS = 2  # of tune's families and of the tuned and hand-set 1cycle runs
# The search may cost twice the 1cycle run's training examples: the budget thins the momentum
# and weight-decay families to the paper's first candidates (tune.json says which).
DEMO_BUDGET = "2.0x"


def run(workdir: str | Path, *, epochs: float = 3.0, range_steps: int = 200,
        budget: int | str | None = DEMO_BUDGET, train_examples: int | None = None,
        eval_examples: int | None = None, progress: bool = True) -> list[dict]:
    """Runs the demo into `workdir`, which it locks while it runs (the tune's records, and
    the two companion runs in `workdir/hand_set` and `workdir/constant`); returns the
    comparison rows."""
    with workdir_lock(workdir):
        return _run(Path(workdir), epochs, range_steps, budget, train_examples, eval_examples,
                    progress)


def _run(workdir: Path, epochs: float, range_steps: int, budget: int | str | None,
         train_examples: int | None, eval_examples: int | None, progress: bool) -> list[dict]:
    base = TrainConfig(model="lenet", dataset="fashion_mnist", batch_size=128, epochs=epochs,
                       momentum=0.9, weight_decay=5e-4, train_examples=train_examples,
                       eval_examples=eval_examples, progress=progress)
    print(f"1. tune: LeNet on Fashion-MNIST, an exponential scout from LR 0.001, then range "
          f"tests of {range_steps} steps at batch 128 (as many examples at 256), {SEEDS} "
          f"seeds, budget {budget}, then 1cycle for {epochs:g} epochs at {SEEDS} seeds")
    tuned = tune(base.replace(workdir=str(workdir)), budget=budget, batch_sizes=BATCH_SIZES,
                 range_steps=range_steps, start=0.001, seeds=SEEDS)
    print(tuned.text())
    decisions = "\n".join(markdown_table(decision_rows(tuned.decisions))).rstrip()
    print("\n" + decisions + "\n")
    steps_per_epoch = (train_examples or 60_000) // 128
    hand = base.replace(eval_every=max(1, steps_per_epoch // 5),
                        log_every=min(base.log_every, max(1, steps_per_epoch // 5)))
    seeds = tuple({"seed": s} for s in range(SEEDS))
    runs = {
        "tuned 1cycle": (tuned.config, tuned.history),
        "hand-set 1cycle": (hand.replace(lr_policy="one_cycle", min_lr=0.01, max_lr=0.1,
                                         momentum=(0.95, 0.85), members=seeds,
                                         workdir=str(workdir / "hand_set")), None),
        "constant": (hand.replace(lr_policy="constant", min_lr=0.01, max_lr=0.01,
                                  workdir=str(workdir / "constant")), None),
    }
    histories, rows = {}, []
    for i, (name, (config, history)) in enumerate(runs.items(), start=1):
        if history is None:
            print(f"{i + 1}. {name}: LR {_lr(config)}, {epochs:g} epochs, "
                  f"{config.num_members} seed(s)")
            try:
                history = fit(config)
            except DivergenceError as err:  # reported in the table; the other runs still go
                print(err)
                history = History.load(config.workdir)
            found = diagnose(history)
            plots.plot_training(history, workdir / f"{Path(config.workdir).name}.png",
                                diagnosis=found, title=f"LeNet / Fashion-MNIST, {name}")
        else:
            found = tuned.diagnosis
        histories[name] = history
        summary = history.summary
        rows.append({"run": name, "learning rate": _lr(config),
                     "batch": str(config.batch_size),
                     "momentum": show(config.momentum),
                     "weight decay": f"{config.weight_decay:g}",
                     "epochs": f"{summary['epochs']:g}", "seeds": str(config.num_members),
                     "status": summary["status"],
                     "test accuracy": final_accuracy(summary)["text"],
                     "test loss": _fmt(readings.mean([m["test_loss"] for m in summary["members"]])),
                     "s/epoch": f"{summary['seconds_per_epoch']:.1f}",
                     "diagnosis": found.verdict})
    plots.plot_comparison(histories, workdir / "comparison.png", metric="test_accuracy")
    table = "\n".join(markdown_table(rows)).rstrip()
    said = verdict(histories["tuned 1cycle"].summary, histories["hand-set 1cycle"].summary,
                   tuned.config, runs["hand-set 1cycle"][0])
    write_text_atomic(workdir / "comparison.md", f"{decisions}\n\n{table}\n\n{said}\n")
    print("\n" + table + "\n\n" + said)
    print(f"report: {workdir / 'report.md'}; decisions: {workdir / 'tune.json'}; figures: "
          f"{', '.join(sorted(p.name for p in workdir.glob('*.png')))}")
    return rows


def decision_rows(decisions) -> list[dict[str, str]]:
    """One row per candidate of each search stage: its usable steps, seeds, mean best held-out
    loss ± standard deviation, whether it ties with the lowest, and the choice."""
    rows = []
    for d in decisions:
        for c in d.candidates:
            if d.stage == "lr_range":
                if c["name"] != "paper":
                    continue
                value, loss = f"max_lr {c['lr']:.4g}", "-"
            elif c.get("usable_steps") is None:  # a batch size that was not tested
                continue
            else:
                value = show(c[d.stage])
                std = c["best_eval_loss_std"]
                loss = "-" if c["best_eval_loss"] is None else (
                    f"{c['best_eval_loss']:.4f}" + ("" if std is None else f" ± {std:.4f}"))
            rows.append({"stage": d.stage, "candidate": value,
                         "usable steps": str(c["usable_steps"]),
                         "seeds": ", ".join(map(str, c["seeds"])),
                         "best held-out loss": loss,
                         "tie": "yes" if c.get("tie") else "",
                         "chosen": "yes" if d.stage == "lr_range" or show(d.choice) == value
                         else "", "excluded": c.get("excluded") or ""})
    return rows


def verdict(tuned: dict[str, Any], hand: dict[str, Any], tuned_config: TrainConfig,
            hand_config: TrainConfig) -> str:
    """The tuned 1cycle against the hand-set one: the difference of their mean final test
    accuracies against the tie margin; where the tuned run trails, what differs, in
    numbers."""
    a = np.array([m["test_accuracy"] for m in tuned["members"]], float)
    b = np.array([m["test_accuracy"] for m in hand["members"]], float)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return "verdict: a run has no final test accuracy (it diverged): no comparison."
    diff, margin = a.mean() - b.mean(), tie_margin(a, b)
    head = (f"verdict: tuned {a.mean():.4f} - hand-set {b.mean():.4f} = {diff:+.4f}, tie margin "
            f"{margin:.4f} (two standard errors of the difference, at least 0.001; {len(a)} "
            f"and {len(b)} seeds): ")
    if diff > margin:
        return head + "the tuned 1cycle is more accurate."
    if diff >= -margin:
        return head + "a tie: the tuned 1cycle is as accurate as the hand-set one."
    differs = [f"{k} {show(getattr(tuned_config, k))} (hand-set {show(getattr(hand_config, k))})"
               for k in ("batch_size", "max_lr", "min_lr", "momentum", "weight_decay")
               if getattr(tuned_config, k) != getattr(hand_config, k)]
    losses = {k: (readings.mean([m[k] for m in tuned["members"]]), readings.mean([m[k] for m in
                                                                  hand["members"]]))
              for k in ("train_loss", "test_loss")}
    train, hand_train = losses["train_loss"]
    fits_less = train is not None and hand_train is not None and train > hand_train
    return head + ("the tuned 1cycle trails the hand-set one. It differs in "
                   + "; ".join(differs) + ". Final losses, tuned vs hand-set: "
                   + ", ".join(f"{k.replace('_', ' ')} {_fmt(x)} vs {_fmt(y)}"
                               for k, (x, y) in losses.items())
                   + (" (the tuned run fits the training set less: its settings regularise "
                      "more, or it takes fewer steps)" if fits_less else
                      " (the tuned run fits the training set as well or better, but "
                      "generalises less)") + ".")


def _lr(config: TrainConfig) -> str:
    if config.lr_policy == "one_cycle":
        return f"{config.min_lr:.4g} -> {config.max_lr:.4g}"
    return f"{config.max_lr:.4g}"


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"
