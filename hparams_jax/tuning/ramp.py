"""The LR ramp of `tune`'s range tests, and readings long enough to decide on (Smith 2018,
Sec. 4.1-4.4).

The paper's range test raises the LR linearly until the loss blows up; what it reads (the
largest LR before the held-out loss worsens, the lowest held-out loss) needs the steps before
the blow-up. `tune` makes sure every test it decides on has at least `MIN_USABLE_STEPS` of them
(its steps before it stopped):

- Where no `stop` is given, a cheap exponential scout (`lr_range_test` with `mode="exp"`, from
  `start` over `SCOUT_SPAN`, `SCOUT_STEPS` steps) finds where the loss blows up, and the linear
  ramp runs from `start` to the LR at which the scout stopped (just past that point).
- A `Ramp` counts its length in training examples, so tests at different batch sizes see the
  same examples (Sec. 4.2: a larger batch takes fewer steps); later stages ramp over the range
  that the first stage found.
- A test that stops before `MIN_USABLE_STEPS` is run again over a ramp lengthened by the factor
  that brings it to `HEADROOM` x `MIN_USABLE_STEPS` (the same LRs, more steps; a given `stop`
  is kept), with the whole family, so the candidates still share one ramp (`long_enough`). A
  candidate that would need more than `MAX_LENGTHEN` x the ramp takes a far smaller LR range
  than the rest of its family (Sec. 4.3's large momenta): it is left out of the comparison,
  with its reason, rather than lengthen every test for it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

from hparams_jax.range_test import NoSuggestionError, RangeTestResult

MIN_USABLE_STEPS = 50  # no decision rests on a test with fewer steps before it stopped
SCOUT_STEPS = 100  # the exponential scout's steps
SCOUT_SPAN = 1e4  # the scout ramps from start to start x SCOUT_SPAN
SCOUT_EVAL_EVERY = 4  # steps between the scout's checks of its loss (and held-out points)
HEADROOM = 1.5  # a lengthened ramp aims at this many times MIN_USABLE_STEPS
MAX_LENGTHEN = 3.0  # a family candidate that would need more is left out
MAX_TRIES = 3  # ramps tried before a single test that stays too short stops the tune
EVALS = 20  # held-out evaluations over a ramp of the starting length


@dataclasses.dataclass(frozen=True)
class Ramp:
    """A linear LR ramp from `start` to `stop` over `examples` training examples, evaluated
    every `eval_examples` (Sec. 4.1); at batch size b it takes `examples / b` steps."""

    start: float
    stop: float
    examples: int
    eval_examples: int

    @classmethod
    def of(cls, start: float, stop: float, steps: int, batch_size: int) -> Ramp:
        """The ramp of `steps` steps at `batch_size`, with `EVALS` held-out evaluations (at
        least one every `MIN_USABLE_STEPS // 8` steps, so a short reading still has
        several)."""
        every = max(1, min(steps // EVALS, MIN_USABLE_STEPS // 8))
        return cls(float(start), float(stop), steps * batch_size, every * batch_size)

    def steps(self, batch_size: int) -> int:
        return max(2, round(self.examples / batch_size))

    def kwargs(self, batch_size: int) -> dict[str, Any]:
        """The arguments of `lr_range_test` and `range_test_members` at `batch_size`."""
        return dict(start=self.start, stop=self.stop, num_steps=self.steps(batch_size),
                    eval_every=max(1, round(self.eval_examples / batch_size)))

    def longer(self, factor: float) -> Ramp:
        return dataclasses.replace(self, examples=math.ceil(self.examples * factor))

    def to_dict(self, batch_size: int) -> dict[str, Any]:
        """The ramp as recorded: its LRs and examples, and its steps at `batch_size`."""
        return {"mode": "linear", "start": self.start, "stop": self.stop,
                "examples": self.examples, "eval_examples": self.eval_examples,
                "batch_size": batch_size, "steps": self.steps(batch_size)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ramp:
        return cls(d["start"], d["stop"], d["examples"], d["eval_examples"])

    def text(self, batch_size: int) -> str:
        return (f"LR {self.start:.4g} -> {self.stop:.4g} over {self.steps(batch_size)} steps at "
                f"batch {batch_size} ({self.examples} examples)")


def scout_stop(scout: RangeTestResult) -> tuple[float, str]:
    """The linear ramp's stop read from the exponential scout: the LR at which it stopped
    (its last LR where the loss never blew up), and the reading as text."""
    stop = float(scout.learning_rate[-1]) if scout.steps_run else scout.start
    if scout.stop_reason == "completed":
        return scout.stop, (f"the exponential scout {scout.start:.4g} -> {scout.stop:.4g} over "
                            f"{scout.num_steps} steps never blew up: the ramp ends at "
                            f"{scout.stop:.4g}")
    return stop, (f"the exponential scout {scout.start:.4g} -> {scout.stop:.4g} stopped after "
                  f"{scout.steps_run} steps at LR {stop:.4g} ({scout.stop_reason}): the linear "
                  "ramp ends there, just past where the loss blows up")


Readings = dict[int, list[RangeTestResult]]  # by candidate index: its test at each seed


def usable(tests: Sequence[RangeTestResult]) -> int:
    """A candidate's usable steps: those of its shortest test before it stopped."""
    return min(r.steps_run for r in tests)


def long_enough(run: Callable[[Ramp, list[int]], Readings], ramp: Ramp, names: Sequence[str],
                batches: Sequence[int]
                ) -> tuple[Ramp, Readings, dict[int, str], list[str],
                           list[tuple[RangeTestResult, int]]]:
    """Runs the candidates named `names` (`run(ramp, indices)`: their tests on `ramp`; each
    at its batch size in `batches`) until each has `MIN_USABLE_STEPS` usable steps or is left
    out (see the module docstring).

    Returns the ramp of the final readings, the readings by candidate, the candidates left out
    with the reason, what was run again and why (text), and every test run with its batch size
    (the cost).

    Raises:
      NoSuggestionError: a single test (one name) still stops too early after `MAX_TRIES`
        ramps.
    """
    count = len(names)
    readings = run(ramp, list(range(count)))
    spent = [(r, batches[i]) for i, tests in readings.items() for r in tests]
    left_out: dict[int, str] = {}
    notes: list[str] = []
    for attempt in range(MAX_TRIES):
        short = {i: usable(readings[i]) for i in readings
                 if i not in left_out and usable(readings[i]) < MIN_USABLE_STEPS}
        if not short:
            break
        need = {i: HEADROOM * MIN_USABLE_STEPS / max(u, 1) for i, u in short.items()}
        last = attempt == MAX_TRIES - 1
        for i, f in need.items():
            if count > 1 and (f > MAX_LENGTHEN or last):
                left_out[i] = (f"its test stopped after {short[i]} usable steps (fewer than "
                               f"{MIN_USABLE_STEPS}) on the ramp "
                               f"{ramp.text(batches[i])}; it takes a far smaller LR range "
                               "than the others: left out of the comparison")
        again = [i for i in need if i not in left_out]
        if not again:
            break
        if count == 1 and last:
            raise NoSuggestionError(
                f"the range test stopped after {short[0]} usable steps (fewer than "
                f"{MIN_USABLE_STEPS}) even on the ramp {ramp.text(batches[0])}: the loss "
                "blows up right from the start; lower start")
        factor = min(max(need[i] for i in again), MAX_LENGTHEN)
        ramp = ramp.longer(factor)
        notes.append(", ".join(f"{names[i]} stopped after {short[i]} usable steps"
                               for i in again)
                     + f": run again over {factor:.2f}x the examples, "
                     f"{ramp.text(batches[again[0]])}")
        rerun = [i for i in range(count) if i not in left_out]
        fresh = run(ramp, rerun)
        readings.update(fresh)
        spent += [(r, batches[i]) for i, tests in fresh.items() for r in tests]
    return ramp, readings, left_out, notes, spent
