"""The main job (`make demo`): the paper's procedure end to end on the offline Fashion-MNIST.

1. `tune` (Smith 2018, Sec. 4-5) on LeNet: an LR range test, then range tests that choose the
   batch size, the momentum and the weight decay, then 1cycle with the chosen values and its
   diagnosis; `tune.json`, `report.md` and the figures in the workdir.
2. Beside it, for the same epochs: a hand-set 1cycle (the README's LeNet settings: LR 0.01-0.1,
   batch 128, momentum 0.95-0.85, weight decay 5e-4) and a constant-LR baseline (Caffe's LeNet
   solver: LR 0.01, momentum 0.9, weight decay 5e-4).
3. A table compares the three (also in `comparison.md`); `comparison.png` overlays their test
   accuracy.
"""

from __future__ import annotations

from pathlib import Path

from hparams_jax import plots
from hparams_jax.diagnose import diagnose
from hparams_jax.train import DivergenceError, History, TrainConfig, fit, workdir_lock
from hparams_jax.train.metrics import write_text_atomic
from hparams_jax.tuning import tune
from hparams_jax.tuning.report import markdown_table, show

BATCH_SIZES = (128, 256, 512)
DEMO_BUDGET = 1000  # training steps of the search's range tests
# The range tests' linear ramp: at batch 128 LeNet's loss blows up near LR 0.1, so a ramp to
# 0.15 spends most of its 100 steps below that (Sec. 4.1: the test must read the rise).
RAMP = dict(start=0.001, stop=0.15)


def run(workdir: str | Path, *, epochs: float = 3.0, range_steps: int = 100,
        budget: int | None = DEMO_BUDGET, train_examples: int | None = None,
        eval_examples: int | None = None, progress: bool = True) -> list[dict]:
    """Runs the demo into `workdir`, which it locks while it runs (the tune's records, and
    the two companion runs in `workdir/hand_set` and `workdir/constant`); returns the
    comparison rows."""
    with workdir_lock(workdir):
        return _run(Path(workdir), epochs, range_steps, budget, train_examples, eval_examples,
                    progress)


def _run(workdir: Path, epochs: float, range_steps: int, budget: int | None,
         train_examples: int | None, eval_examples: int | None, progress: bool) -> list[dict]:
    base = TrainConfig(model="lenet", dataset="fashion_mnist", batch_size=128, epochs=epochs,
                       momentum=0.9, weight_decay=5e-4, train_examples=train_examples,
                       eval_examples=eval_examples, progress=progress)
    print(f"1. tune: LeNet on Fashion-MNIST, range tests LR {RAMP['start']:g} -> "
          f"{RAMP['stop']:g} over {range_steps} "
          f"steps, budget {budget} steps, then 1cycle for {epochs:g} epochs")
    tuned = tune(base.replace(workdir=str(workdir)), budget=budget, batch_sizes=BATCH_SIZES,
                 range_steps=range_steps, **RAMP)
    print(tuned.text())
    steps_per_epoch = (train_examples or 60_000) // 128
    hand = base.replace(eval_every=max(1, steps_per_epoch // 5),
                        log_every=min(base.log_every, max(1, steps_per_epoch // 5)))
    runs = {
        "tuned 1cycle": (tuned.config, tuned.history),
        "hand-set 1cycle": (hand.replace(lr_policy="one_cycle", min_lr=0.01, max_lr=0.1,
                                         momentum=(0.95, 0.85),
                                         workdir=str(workdir / "hand_set")), None),
        "constant": (hand.replace(lr_policy="constant", min_lr=0.01, max_lr=0.01,
                                  workdir=str(workdir / "constant")), None),
    }
    histories, rows = {}, []
    for i, (name, (config, history)) in enumerate(runs.items(), start=1):
        if history is None:
            print(f"{i + 1}. {name}: LR {_lr(config)}, {epochs:g} epochs")
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
        member = summary["members"][0]
        rows.append({"run": name, "learning rate": _lr(config),
                     "batch": str(config.batch_size),
                     "momentum": show(config.momentum),
                     "weight decay": f"{config.weight_decay:g}",
                     "epochs": f"{summary['epochs']:g}", "status": summary["status"],
                     "test accuracy": _fmt(member["test_accuracy"]),
                     "test loss": _fmt(member["test_loss"]),
                     "s/epoch": f"{summary['seconds_per_epoch']:.1f}",
                     "diagnosis": found.verdict})
    plots.plot_comparison(histories, workdir / "comparison.png", metric="test_accuracy")
    table = "\n".join(markdown_table(rows)).rstrip()
    write_text_atomic(workdir / "comparison.md", table + "\n")
    print("\n" + table)
    print(f"report: {workdir / 'report.md'}; decisions: {workdir / 'tune.json'}; figures: "
          f"{', '.join(sorted(p.name for p in workdir.glob('*.png')))}")
    return rows


def _lr(config: TrainConfig) -> str:
    if config.lr_policy == "one_cycle":
        return f"{config.min_lr:.4g} -> {config.max_lr:.4g}"
    return f"{config.max_lr:.4g}"


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"
