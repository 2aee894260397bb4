"""The search's budget: how many training steps the range tests of `tune` may spend.

The paper's procedure (Smith 2018, Sec. 4-5) runs one LR range test, then a range test per
batch-size candidate (Sec. 4.2), per momentum (Sec. 4.3) and per weight decay (Sec. 4.4). Its
cost is counted in training steps, one step of one setting: a family of K settings run for n
steps costs K x n (they share a compiled program, but each setting computes its own step).
The test at the starting batch size is step 1's, so the batch-size stage costs one test per
other candidate.

When `budget` is below the default plan, `plan_search` cuts in this order, and records what it
cut:

1. shorten every range test, down to `MIN_RANGE_STEPS` (fewer steps cannot support a confident
   reading of the curve, `range_test.MIN_STEPS`, with room for its held-out points);
2. thin the families, the largest first (on a tie momentum, then batch size, then weight
   decay), dropping each family's last candidate (the candidate lists put the paper's defaults
   first, and the batch sizes the starting one, then the largest, so those are kept longest);
   the batch-size family keeps its starting batch, and a momentum or weight-decay family
   thinned to nothing keeps the value the search started from (its stage is skipped).

A budget too small for step 1's single test at `MIN_RANGE_STEPS` is a `ConfigError`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from hparams_jax import _validate as v
from hparams_jax.tuning.report import show

MIN_RANGE_STEPS = 50


@dataclasses.dataclass(frozen=True)
class SearchPlan:
    """The range tests the search runs: their length and each family's candidates."""

    range_steps: int
    batch_sizes: tuple[int, ...]  # the starting batch size first
    momenta: tuple[Any, ...]
    weight_decays: tuple[float, ...]
    planned_steps: int  # what the default plan would spend
    cuts: tuple[str, ...]  # what the budget cut, in words

    @property
    def steps(self) -> int:
        """Training steps of this plan (range tests that stop early spend fewer)."""
        return _cost(self.range_steps, self.batch_sizes, self.momenta, self.weight_decays)

    def cut_for(self, stage: str) -> str:
        """What the budget cut that concerns `stage` ("" when nothing)."""
        return "; ".join(c for c in self.cuts if c.startswith(("range tests", stage)))


def _cost(steps: int, batch_sizes: Sequence, momenta: Sequence, weight_decays: Sequence) -> int:
    return steps * (1 + len(batch_sizes) - 1 + len(momenta) + len(weight_decays))


def check_budget(budget: int | None) -> None:
    """ConfigError unless `budget` is None or affords step 1's range test."""
    if budget is not None:
        v.check("budget", budget, isinstance(budget, int) and not isinstance(budget, bool)
                and budget >= MIN_RANGE_STEPS,
                f"an integer >= {MIN_RANGE_STEPS} (training steps: the search needs at least "
                f"one LR range test of {MIN_RANGE_STEPS} steps), or None for no cap")


def plan_search(budget: int | None, range_steps: int, batch_sizes: Sequence[int],
                momenta: Sequence, weight_decays: Sequence[float]) -> SearchPlan:
    """The plan that fits `budget` training steps (None: no cap); see the module docstring.
    `batch_sizes` starts with the starting batch size (its test is step 1's)."""
    planned = _cost(range_steps, batch_sizes, momenta, weight_decays)
    check_budget(budget)
    if budget is None or planned <= budget:
        return SearchPlan(range_steps, tuple(batch_sizes), tuple(momenta),
                          tuple(weight_decays), planned, ())
    cuts = []
    families = {"batch size": list(batch_sizes), "momentum": list(momenta),
                "weight decay": list(weight_decays)}
    floor = {"batch size": 1, "momentum": 0, "weight decay": 0}  # the starting batch is free
    dropped: dict[str, list] = {name: [] for name in families}

    def fits(steps: int) -> bool:
        return _cost(steps, *families.values()) <= budget

    while not fits(MIN_RANGE_STEPS):
        name = max(families, key=lambda n: (len(families[n]) - floor[n], n == "momentum"))
        dropped[name].insert(0, families[name].pop())
    steps = min(range_steps, budget // _cost(1, *families.values()))
    if steps < range_steps:
        cuts.append(f"range tests shortened from {range_steps} to {steps} steps "
                    f"(minimum {MIN_RANGE_STEPS})")
    for name, values in dropped.items():
        if values:
            kept = families[name]
            cuts.append(f"{name} family thinned: {', '.join(map(show, values))} not tested"
                        + ("" if len(kept) > floor[name] else
                           "; stage skipped, the starting value kept"))
    return SearchPlan(steps, tuple(families["batch size"]), tuple(families["momentum"]),
                      tuple(families["weight decay"]), planned, tuple(cuts))
