"""The search's budget: how many training steps the range tests of `tune` may spend.

The paper's procedure (Smith 2018, Sec. 4-5) runs one LR range test, then a range test per
batch-size candidate (Sec. 4.2), per momentum (Sec. 4.3) and per weight decay (Sec. 4.4). Its
cost is counted in training steps, one step of one setting: a family of K settings run for n
steps costs K x n (they share a compiled program, but each setting computes its own step).
The test at the starting batch size is step 1's, so the batch-size stage costs one test per
other candidate (`Stage.tests`).

When `budget` is below the default plan, `plan_search` cuts in this order, and records what it
cut (a `Cut` per stage concerned):

1. shorten every range test, down to `MIN_RANGE_STEPS` (fewer steps cannot support a confident
   reading of the curve, `range_test.MIN_STEPS`, with room for its held-out points);
2. thin the families, the largest first (on a tie the lower `Stage.tie`: momentum, then batch
   size, then weight decay), dropping each family's last candidate (the candidate lists put the
   paper's defaults first, and the batch sizes the starting one, then the largest, so those
   are kept longest); the batch-size family keeps its starting batch, and a momentum or
   weight-decay family thinned to nothing keeps the value the search started from (its stage
   is skipped).

A budget too small for step 1's single test at `MIN_RANGE_STEPS` is a `ConfigError`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from hparams_jax import _validate as v
from hparams_jax.tuning.procedure import BY_NAME, STAGES, show

MIN_RANGE_STEPS = 50


@dataclasses.dataclass(frozen=True)
class Cut:
    """What the budget cut: `stage` names the stage it concerns, None every stage (the range
    tests shortened); `text` says it."""

    stage: str | None
    text: str


@dataclasses.dataclass(frozen=True)
class SearchPlan:
    """The range tests the search runs: their length and each family's candidates."""

    range_steps: int
    candidates: dict[str, tuple[Any, ...]]  # by family stage; the starting batch size first
    planned_steps: int  # what the default plan would spend
    cuts: tuple[Cut, ...]

    @property
    def steps(self) -> int:
        """Training steps of this plan (range tests that stop early spend fewer)."""
        return _cost(self.range_steps, self.candidates)

    def cut_for(self, stage: str) -> str:
        """What the budget cut that concerns `stage` ("" when nothing)."""
        return "; ".join(c.text for c in self.cuts if c.stage in (None, stage))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], candidate=lambda x: x) -> SearchPlan:
        """The plan `to_dict` wrote; `candidate` reads each candidate back from JSON."""
        return cls(d["range_steps"], {k: tuple(map(candidate, xs))
                                      for k, xs in d["candidates"].items()},
                   d["planned_steps"], tuple(Cut(**c) for c in d["cuts"]))


def _cost(steps: int, candidates: Mapping[str, Sequence]) -> int:
    return steps * sum(s.tests(len(candidates.get(s.name, ()))) for s in STAGES)


def check_budget(budget: int | None) -> None:
    """ConfigError unless `budget` is None or affords step 1's range test."""
    if budget is not None:
        v.check("budget", budget, isinstance(budget, int) and not isinstance(budget, bool)
                and budget >= MIN_RANGE_STEPS,
                f"an integer >= {MIN_RANGE_STEPS} (training steps: the search needs at least "
                f"one LR range test of {MIN_RANGE_STEPS} steps), or None for no cap")


def plan_search(budget: int | None, range_steps: int,
                candidates: Mapping[str, Sequence]) -> SearchPlan:
    """The plan that fits `budget` training steps (None: no cap); see the module docstring.
    `candidates` holds each family stage's, by name in the stages' order; the batch sizes start
    with the starting batch size (its test is step 1's)."""
    planned = _cost(range_steps, candidates)
    check_budget(budget)
    if budget is None or planned <= budget:
        return SearchPlan(range_steps, {k: tuple(xs) for k, xs in candidates.items()},
                          planned, ())
    families = {name: list(xs) for name, xs in candidates.items()}
    dropped: dict[str, list] = {name: [] for name in families}

    def fits(steps: int) -> bool:
        return _cost(steps, families) <= budget

    while not fits(MIN_RANGE_STEPS):
        name = max(families, key=lambda n: (len(families[n]) - BY_NAME[n].free,
                                            -BY_NAME[n].tie))
        dropped[name].insert(0, families[name].pop())
    steps = min(range_steps, budget // _cost(1, families))
    cuts = []
    if steps < range_steps:
        cuts.append(Cut(None, f"range tests shortened from {range_steps} to {steps} steps "
                              f"(minimum {MIN_RANGE_STEPS})"))
    for name, values in dropped.items():
        if values:
            stage = BY_NAME[name]
            skipped = len(families[name]) <= stage.free
            cuts.append(Cut(name, f"{stage.label} family thinned: "
                                  f"{', '.join(map(show, values))} not tested"
                                  + ("; stage skipped, the starting value kept" if skipped
                                     else "")))
    return SearchPlan(steps, {k: tuple(xs) for k, xs in families.items()}, planned,
                      tuple(cuts))
