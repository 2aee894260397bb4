"""Reading a family of range tests repeated over seeds (Smith 2018, Sec. 4.2-4.4).

The paper compares candidates by their range tests' held-out loss, each one short run. One run's
best held-out loss moves with the seed (a rerun of a family moved it from 0.343 to 0.404), so
`tune` runs each candidate at several seeds and reads a row per candidate (`row`): the mean of
the seeds' best held-out losses and their standard deviation, the mean suggested max_lr, and the
usable steps of its shortest test.

Candidates whose mean lies within the tie margin of the lowest mean tie (`compare`): two
standard errors of the difference of the two means, and never less than `EVAL_TOLERANCE` of the
lowest (the tolerance one reading is read against; with one seed the margin is that alone). A
tie goes to the first candidate in a stated order (`first_tied`): the paper's defaults come first
in the momentum and weight-decay lists; the batch size orders by throughput (`batch_order`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from hparams_jax import momenta
from hparams_jax.range_test import (EVAL_TOLERANCE, MIN_LR_FRACTION, NoSuggestionError,
                                    RangeTestResult)
from hparams_jax.tuning.procedure import show

# Throughputs within this factor of the fastest count as equally fast (Sec. 4.2 reads a larger
# batch as a gain in speed; where it brings none, the smaller batch takes more steps).
THROUGHPUT_TIE = 1.1


def mean(xs: Sequence[float | None]) -> float | None:
    """The mean of the known values of `xs` (None where none is known)."""
    known = [x for x in xs if x is not None]
    return float(np.mean(known)) if known else None


def _std(xs: Sequence[float | None]) -> float | None:
    """The seeds' sample standard deviation (None below 2 seeds, or with a missing reading)."""
    if len(xs) < 2 or any(x is None for x in xs):
        return None
    return float(np.std(np.asarray(xs, float), ddof=1))


def _best(r: RangeTestResult) -> tuple[float | None, float | None, float | None]:
    """One test's best held-out loss, lowest smoothed training loss, best held-out accuracy."""
    ok = np.isfinite(r.eval_loss)
    finite = np.isfinite(r.smoothed_loss)
    acc = r.eval_accuracy[ok]
    return (float(np.min(r.eval_loss[ok])) if ok.any() else None,
            float(np.min(r.smoothed_loss[finite])) if finite.any() else None,
            float(np.max(acc)) if ok.any() and np.isfinite(acc).all() else None)


def row(param: str, value: Any, results: Sequence[RangeTestResult]) -> dict[str, Any]:
    """The reading of one candidate from its tests at each seed: `usable_steps` (the shortest
    test's steps before it stopped), the mean and standard deviation of the best held-out
    losses, the mean suggested max_lr (None when no seed's test gives a suggestion)."""
    best = [_best(r) for r in results]
    lrs = [r.suggest().max_lr for r in results]
    return {param: value, "seeds": [r.setting.get("seed") for r in results],
            "steps": results[0].num_steps,
            "usable_steps": min(r.steps_run for r in results),
            "best_eval_loss": mean([b[0] for b in best]),
            "best_eval_loss_std": _std([b[0] for b in best]),
            "best_eval_losses": [b[0] for b in best],
            "min_smoothed_loss": mean([b[1] for b in best]),
            "min_smoothed_losses": [b[1] for b in best],
            "best_eval_accuracy": mean([b[2] for b in best]),
            "max_lr": mean(lrs) if all(x is not None for x in lrs) else None,
            "stopped": [r.stop_reason for r in results]}


def tie_margin(a: Sequence[float], b: Sequence[float], lowest: float) -> float:
    """Two standard errors of the difference of the means of `a` and `b` (a single seed adds
    no variance of its own), at least `EVAL_TOLERANCE` x `lowest`."""
    var = sum(np.var(x, ddof=1) / len(x) for x in (a, b) if len(x) > 1)
    return max(2 * math.sqrt(float(var)), EVAL_TOLERANCE * abs(lowest))


def compare(rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Marks the rows that tie with the lowest mean loss (see the module docstring): each
    compared row gets `margin` (its tie margin against the lowest) and `tie`; a row left out
    (`excluded`, or no suggested max_lr) gets `tie` False. The held-out loss is read where every
    compared row has held-out points, else the smoothed training loss. Returns the loss's name
    and the lowest row.

    Raises:
      NoSuggestionError: no row can be compared.
    """
    compared = [r for r in rows if not r.get("excluded") and r["max_lr"] is not None]
    if not compared:
        raise NoSuggestionError(
            f"none of the {len(rows)} candidate(s) gives a reading: "
            + "; ".join(f"{show(_value(r))}: {r.get('excluded') or 'no suggestion'}"
                        for r in rows))
    held = all(r["best_eval_loss"] is not None for r in compared)
    key, what = ("best_eval_loss", "held-out") if held else ("min_smoothed_loss",
                                                               "smoothed training")
    lowest = min(compared, key=lambda r: r[key])
    for r in rows:
        r["margin"], r["tie"] = None, False
    for r in compared:
        seeds = [x for x in r[_PER_SEED[key]] if x is not None]
        low = [x for x in lowest[_PER_SEED[key]] if x is not None]
        r["margin"] = tie_margin(seeds, low, lowest[key])
        r["tie"] = r[key] - lowest[key] <= r["margin"]
    return what, lowest


_PER_SEED = {"best_eval_loss": "best_eval_losses", "min_smoothed_loss": "min_smoothed_losses"}


def _value(r: dict[str, Any]) -> Any:
    return next(iter(r.values()))


def first_tied(rows: list[dict[str, Any]], order: Sequence[Any]) -> dict[str, Any]:
    """The first row in `order` (candidate values) among those `compare` marked tied."""
    by_value = {_key(_value(r)): r for r in rows}
    return next(by_value[_key(v)] for v in order if by_value[_key(v)]["tie"])


def _key(x: Any) -> Any:
    return momenta.parse(x) if isinstance(x, list) else x


def batch_order(rows: list[dict[str, Any]]) -> list[int]:
    """Sec. 4.2's order among tied batch sizes: the batches whose measured throughput
    (`examples_per_s`) lies within `THROUGHPUT_TIE` of the fastest, smallest first (none buys
    wall time over another, and at equal examples the smaller takes more steps); then the
    others, fastest first."""
    fastest = max(r["examples_per_s"] for r in rows)
    fast = sorted(r["batch_size"] for r in rows
                  if r["examples_per_s"] * THROUGHPUT_TIE >= fastest)
    slow = sorted((r for r in rows if r["batch_size"] not in fast),
                  key=lambda r: -r["examples_per_s"])
    return fast + [r["batch_size"] for r in slow]


def bounds(chosen: dict[str, Any]) -> dict[str, float]:
    """1cycle's bounds from a chosen row: its mean suggested max_lr, min_lr a tenth of it
    (`MIN_LR_FRACTION`, Sec. 4.1)."""
    return {"max_lr": chosen["max_lr"],
            "min_lr": chosen["max_lr"] * MIN_LR_FRACTION["one_cycle"]}


def reason(param: str, chosen: dict[str, Any], lowest: dict[str, Any], what: str,
           order: Sequence[Any], rows: Sequence[dict[str, Any]]) -> str:
    """The decision's reason: the chosen row's mean loss, the lowest, the tied rows and the
    order ties go in."""
    key = "best_eval_loss" if what == "held-out" else "min_smoothed_loss"

    def loss(r):
        std = r["best_eval_loss_std"] if key == "best_eval_loss" else None
        return f"{r[key]:.4f}" + ("" if std is None else f" ± {std:.4f}")

    n = len(chosen["seeds"])
    tied = [r for r in rows if r["tie"]]
    text = (f"mean {what} loss over {n} seed(s) {loss(chosen)}; lowest {show(_value(lowest))} "
            f"{loss(lowest)}")
    if len(tied) > 1:
        text += (f"; {', '.join(show(_value(r)) for r in tied)} tie within the margin (two "
                 f"standard errors of the difference, at least {EVAL_TOLERANCE:.0%}); ties go "
                 f"to the first in the order {', '.join(map(show, order))}")
    return text + f"; max_lr {chosen['max_lr']:.4g} (mean of its seeds' suggestions)"
