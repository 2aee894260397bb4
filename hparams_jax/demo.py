"""The main job (`make demo`): the paper's method end to end on the offline Fashion-MNIST.

1. An LR range test of LeNet (Smith 2018, Sec. 4.1) picks `max_lr` and `min_lr`.
2. 1cycle with those bounds and cyclical momentum (Sec. 4.1, 4.3) trains for `epochs`.
3. A constant LR at `min_lr` trains for the same epochs: the baseline.
4. A table compares them; the range test, schedules, curves and diagnoses go to PNG files.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from hparams_jax import plots
from hparams_jax.diagnose import diagnose
from hparams_jax.range_test import lr_range_test
from hparams_jax.train import DivergenceError, History, TrainConfig, fit, workdir_lock
from hparams_jax.train.optimizer import learning_rate, member_hparams, momentum


def _schedule_curves(config: TrainConfig, total_steps: int) -> dict[str, np.ndarray]:
    hp = {k: a[0] for k, a in member_hparams(config).items()}
    steps = jnp.arange(total_steps + 1)
    mom = momentum(config, hp, total_steps)
    return {
        "learning_rate": np.asarray(jax.vmap(learning_rate(config, hp, total_steps))(steps)),
        "momentum": np.asarray(jax.vmap(mom)(steps) if callable(mom)
                               else np.full(len(steps), float(mom))),
    }


def run(workdir: str | Path, *, epochs: float = 3.0, range_steps: int = 300,
        train_examples: int | None = None, eval_examples: int | None = None,
        progress: bool = True) -> list[dict]:
    """Runs the demo into `workdir`, which it locks while it runs (its range test and figures,
    and the two training runs in `workdir/one_cycle` and `workdir/constant`); returns the
    comparison rows."""
    with workdir_lock(workdir):
        return _run(Path(workdir), epochs, range_steps, train_examples, eval_examples, progress)


def _run(workdir: Path, epochs: float, range_steps: int, train_examples: int | None,
         eval_examples: int | None, progress: bool) -> list[dict]:
    steps_per_epoch = (train_examples or 60_000) // 128
    every = max(1, steps_per_epoch // 5)  # five test evaluations an epoch: curves to read
    base = TrainConfig(model="lenet", dataset="fashion_mnist", batch_size=128, epochs=epochs,
                       momentum=0.9, weight_decay=5e-4, train_examples=train_examples,
                       eval_examples=eval_examples, log_every=every, eval_every=every,
                       checkpoint_every=5 * every, progress=progress)

    print(f"1. LR range test: LeNet on Fashion-MNIST, LR 0.001 -> 0.3 over {range_steps} steps")
    test = lr_range_test(base.replace(eval_examples=min(eval_examples or 1000, 1000)),
                         start=0.001, stop=0.3, num_steps=range_steps)
    test.label = "LeNet, Fashion-MNIST, momentum 0.9, weight decay 5e-4"
    test.save(workdir / "range_test.json")
    plots.plot_range_test(test, workdir / "range_test.png")
    suggestion = test.suggest("one_cycle")
    print(suggestion.text())

    runs = {
        "1cycle": base.replace(lr_policy="one_cycle", min_lr=suggestion.min_lr,
                               max_lr=suggestion.max_lr, momentum=(0.95, 0.85),
                               workdir=str(workdir / "one_cycle")),
        "constant": base.replace(lr_policy="constant", min_lr=suggestion.min_lr,
                                 max_lr=suggestion.min_lr, workdir=str(workdir / "constant")),
    }
    histories, rows = {}, []
    for i, (name, config) in enumerate(runs.items(), start=2):
        lr = (f"{config.min_lr:.4g} -> {config.max_lr:.4g}" if name == "1cycle"
              else f"{config.max_lr:.4g}")
        print(f"{i}. {name}: LR {lr}, {epochs:g} epochs")
        try:
            history = fit(config)
        except DivergenceError as err:  # reported in the table; the other run still goes
            print(err)
            history = History.load(config.workdir)
        histories[name] = history
        found = diagnose(history)
        plots.plot_training(history, workdir / f"{name}_curves.png", diagnosis=found,
                            title=f"LeNet / Fashion-MNIST, {name}")
        summary = history.summary
        member = summary["members"][0]
        rows.append({"policy": name, "learning rate": lr, "status": summary["status"],
                     "momentum": str(config.momentum).replace(", ", "-"),
                     "epochs": f"{summary['epochs']:g}",
                     "test accuracy": _fmt(member["test_accuracy"]),
                     "test loss": _fmt(member["test_loss"]),
                     "train loss": _fmt(member["train_loss"]),
                     "s/epoch": f"{summary['seconds_per_epoch']:.1f}",
                     "diagnosis": found.verdict})
        if name == "1cycle":
            plots.plot_schedules(_schedule_curves(config, summary["total_steps"]),
                                 workdir / "schedules.png",
                                 title="1cycle learning rate and cyclical momentum")
    plots.plot_comparison(histories, workdir / "comparison.png", metric="test_accuracy")
    _print_table(rows)
    print(f"figures: {', '.join(sorted(p.name for p in workdir.glob('*.png')))} in {workdir}")
    return rows


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def _print_table(rows: list[dict]) -> None:
    columns = list(rows[0])
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in columns]
    print("\n" + "  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(r[c].ljust(w) for c, w in zip(columns, widths)))
