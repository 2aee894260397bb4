"""The search's budget: how many training examples the range tests of `tune` may spend.

The paper's procedure (Smith 2018, Sec. 4-5) runs one LR range test, then range tests per
batch-size candidate (Sec. 4.2), per momentum (Sec. 4.3) and per weight decay (Sec. 4.4), each
family at every seed. Every test sees the same training examples (a larger batch takes fewer
steps), so the search's cost is counted in steps at the starting batch size (a step of batch b
costs b / the starting batch; a family of K settings at S seeds costs K x S tests: they share a
compiled program, but each setting computes its own step), plus the exponential scout that finds
the LR range where no stop is given. The budget is given as those steps, or as a multiple of
the 1cycle run's training examples (`"1.0x"`: the search may cost one final run; `read`).

When `budget` is below the default plan, `plan_search` cuts in this order, and records what it
cut (a `Cut` per stage concerned):

1. thin the families, the largest first (on a tie the lower `Stage.tie`: momentum, then batch
   size, then weight decay), dropping each family's last candidate (the candidate lists put the
   paper's defaults first, and the batch sizes the starting one, then the largest, so those
   are kept longest); the batch-size family keeps its starting batch (and runs no test when
   left with it alone), and a momentum or weight-decay family thinned to nothing keeps the
   value the search started from (its stage is skipped);
2. then, where step 1's test alone does not fit, shorten it, down to `MIN_RANGE_STEPS`.

Families are thinned before the tests are shortened: a test that reads fewer than
`ramp.MIN_USABLE_STEPS` usable steps is run again over a longer ramp, so a shorter plan would
spend its savings again.

A budget too small for step 1 (its scout and one range test of `MIN_RANGE_STEPS`) is a
`ConfigError`. Tests that stop early spend less than the plan, and tests run again over a
longer ramp more: `tune.json` records what was spent, in epochs and seconds beside the 1cycle
run's.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping, Sequence

from hparams_jax import _validate as v
from hparams_jax.errors import ConfigError
from hparams_jax.tuning.procedure import BY_NAME, STAGES, show
from hparams_jax.tuning.ramp import MIN_USABLE_STEPS

MIN_RANGE_STEPS = MIN_USABLE_STEPS  # the shortest range test
_MULTIPLE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*x\s*$")


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
    seeds: int = 1
    scout_steps: int = 0

    @property
    def steps(self) -> int:
        """Steps at the starting batch of this plan (tests that stop early spend fewer)."""
        return _cost(self.range_steps, self.candidates, self.seeds, self.scout_steps)

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
                   d["planned_steps"], tuple(Cut(**c) for c in d["cuts"]),
                   d.get("seeds", 1), d.get("scout_steps", 0))


def _cost(steps: int, candidates: Mapping[str, Sequence], seeds: int, scout: int) -> int:
    return scout + steps * sum(s.tests(len(candidates.get(s.name, ())), seeds) for s in STAGES)


def read(budget: int | str | None, final_examples: int | None, batch_size: int
         ) -> int | None:
    """`budget` in steps at the starting `batch_size`: an integer is that already; `"Nx"`
    is N times the 1cycle run's `final_examples` training examples (None: no cap).

    Raises:
      ConfigError: `budget` is neither, or a multiple where the run's examples are unknown.
    """
    if budget is None or (isinstance(budget, int) and not isinstance(budget, bool)):
        return budget
    match = _MULTIPLE.match(budget) if isinstance(budget, str) else None
    v.check("budget", budget, match is not None and float(match.group(1)) > 0,
            "an integer (steps at the starting batch size), a positive multiple of the "
            "1cycle run's training examples such as '1.0x', or None for no cap")
    assert match is not None
    if final_examples is None:
        raise ConfigError(f"budget={budget!r} is not allowed here: the 1cycle run's training "
                          "examples are unknown (a streamed task without a length); give the "
                          "budget in steps.")
    return int(float(match.group(1)) * final_examples // batch_size)


def check_budget(budget: int | None, scout_steps: int = 0) -> None:
    """ConfigError unless `budget` (steps) is None or affords step 1: the scout and one
    range test of `MIN_RANGE_STEPS`."""
    if budget is not None:
        least = scout_steps + MIN_RANGE_STEPS
        v.check("budget", budget, isinstance(budget, int) and not isinstance(budget, bool)
                and budget >= least,
                f"at least {least} steps at the starting batch (the search needs "
                + (f"its scout of {scout_steps} steps and " if scout_steps else "")
                + f"one LR range test of {MIN_RANGE_STEPS} steps), or None for no cap")


def plan_search(budget: int | None, range_steps: int, candidates: Mapping[str, Sequence],
                seeds: int = 1, scout_steps: int = 0) -> SearchPlan:
    """The plan that fits `budget` steps at the starting batch (None: no cap); see the
    module docstring. `candidates` holds each family stage's, by name in the stages' order;
    the batch sizes start with the starting batch size; each family runs at `seeds` seeds, and
    step 1 spends `scout_steps` on its scout."""
    planned = _cost(range_steps, candidates, seeds, scout_steps)
    check_budget(budget, scout_steps)
    if budget is None or planned <= budget:
        return SearchPlan(range_steps, {k: tuple(xs) for k, xs in candidates.items()},
                          planned, (), seeds, scout_steps)
    families = {name: list(xs) for name, xs in candidates.items()}
    dropped: dict[str, list] = {name: [] for name in families}

    def fits(steps: int) -> bool:
        return _cost(steps, families, seeds, scout_steps) <= budget

    while not fits(range_steps):
        thinnable = [n for n in families if len(families[n]) > BY_NAME[n].kept]
        if not thinnable:
            break
        name = max(thinnable, key=lambda n: (len(families[n]) - BY_NAME[n].kept,
                                             -BY_NAME[n].tie))
        dropped[name].insert(0, families[name].pop())
    steps = min(range_steps, (budget - scout_steps) // _cost(1, families, seeds, 0))
    cuts = []
    if steps < range_steps:
        cuts.append(Cut(None, f"range tests shortened from {range_steps} to {steps} steps "
                              f"(minimum {MIN_RANGE_STEPS})"))
    for name, values in dropped.items():
        if values:
            stage = BY_NAME[name]
            skipped = len(families[name]) <= stage.kept
            cuts.append(Cut(name, f"{stage.label} family thinned: "
                                  f"{', '.join(map(show, values))} not tested"
                                  + ("; stage skipped, the starting value kept" if skipped
                                     else "")))
    return SearchPlan(steps, {k: tuple(xs) for k, xs in families.items()}, planned,
                      tuple(cuts), seeds, scout_steps)
