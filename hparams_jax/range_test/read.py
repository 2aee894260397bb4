"""Reading an LR range test's curve (Smith 2018, Sec. 4.1 and 4.4; Smith 2017, Sec. 3.3).

`suggest` reads one test by the paper's rule: the largest LR before the held-out loss or
accuracy worsens (never past the lowest training loss), or, without enough held-out points,
before the training loss worsens or turns ragged; never past the LR at which the held-out loss
was best; where the training curve points far lower than the held-out one, the suggestion is
flagged low-confidence. The training loss is read smoothed by `centred`, a zero-phase moving
average (what a result keeps as `smoothed_loss`). A test whose loss was never finite, or that
diverged before its loss ever fell, gives no suggestion at all: no bounds, and the reason
(`Suggestion.found`; `Suggestion.require` raises `NoSuggestionError`, the command line's exit
status 3). The minimum LR is a stated fraction of the maximum; the steepest-descent, valley and
minimum/10 picks of fastai and pytorch-lr-finder come alongside, labelled.

`near_lowest_loss` reads a family of tests (Sec. 4.4): the members whose held-out loss counts
as lowest, among which `Family.pick` and `tune` choose.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from hparams_jax import _validate as v

if TYPE_CHECKING:
    from hparams_jax.range_test.result import RangeTestResult


# min_lr as a fraction of max_lr: the author's 1cycle job scripts use max/10 (Sec. 4.1 and
# shared/reference); for CLR the paper sets the minimum "a factor of 3 or 4" below the maximum.
MIN_LR_FRACTION = {"one_cycle": 0.1, "triangular": 0.25}
# The held-out loss may sit this far above its best before it counts as worse (eval noise).
EVAL_TOLERANCE = 0.02
# Raw-loss scatter around its local mean (relative) beyond which training counts as ragged: a
# multiple of the scatter in the first third of the test, and never below a 1% floor (a
# noiseless curve would otherwise call any bend ragged).
RAGGED_FACTOR = 3.0
RAGGED_FLOOR = 0.01
MIN_STEPS = 30  # fewer recorded steps cannot support a confident reading
MIN_EVALS = 5  # fewer held-out points and the reading uses the training loss alone
FLAT_DROP = 0.05  # a loss that never falls 5% below its start gives no signal
NOISY_SCATTER = 0.2  # median relative scatter above this: too noisy to read
# The training curve disagrees with the held-out pick when its own signal (lowest loss, onset
# of raggedness) lies more than this factor below it.
DISAGREE_FACTOR = 3.0


@dataclasses.dataclass(frozen=True)
class Alternative:
    """Another finder's pick of max_lr, shown beside the suggestion.

    Attributes:
      name: the rule ("steepest", "valley", "min/10").
      lr: the learning rate it picks.
      reason: the numbers it rests on.

    Examples:
      >>> from hparams_jax.range_test import Alternative
      >>> Alternative("min/10", 0.05, "a tenth of the LR of the lowest loss").lr
      0.05
    """

    name: str
    lr: float
    reason: str


NO_SUGGESTION = "no suggestion"  # the method of a reading that gives no bounds


class NoSuggestionError(RuntimeError):
    """A range test's reading gives no LR bounds (it diverged before its loss ever fell, or its
    loss was never finite); the message says why. The command line exits with status 3."""


@dataclasses.dataclass(frozen=True)
class Suggestion:
    """LR bounds read from a range test (`RangeTestResult.suggest`), or the reason there are
    none.

    Attributes:
      max_lr: the suggested upper bound (None: no suggestion).
      min_lr: the suggested lower bound, a fraction of `max_lr` set by the policy (None: no
        suggestion).
      method: the curve the reading used ("no suggestion" when it gives no bounds).
      reason: the numbers it rests on, or why there are no bounds.
      alternatives: the picks of other finders, labelled.
      warnings: reasons to distrust the reading (too short, flat, noisy, disagreeing curves).

    Examples:
      >>> from hparams_jax.range_test import Suggestion
      >>> print(Suggestion(0.3, 0.03, "eval", "held-out loss lowest up to 0.3").text())
      max_lr = 0.3, min_lr = 0.03 (eval): held-out loss lowest up to 0.3
      >>> none = Suggestion(None, None, "no suggestion", "the loss was never finite")
      >>> none.found, none.text()
      (False, 'no suggestion: the loss was never finite')
    """

    max_lr: float | None
    min_lr: float | None
    method: str
    reason: str
    alternatives: tuple[Alternative, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        """Whether the reading gives bounds."""
        return self.max_lr is not None

    def require(self, what: str = "the range test") -> "Suggestion":
        """This suggestion when it gives bounds; `NoSuggestionError` (saying why) otherwise.

        Args:
          what: the test, as the message names it.

        Returns:
          self.

        Raises:
          NoSuggestionError: the reading gives no bounds.
        """
        if not self.found:
            raise NoSuggestionError(f"{what} gives no suggestion: {self.reason}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return dataclasses.asdict(self)

    def text(self) -> str:
        """The suggestion, its alternatives and warnings, one per line."""
        if self.max_lr is None or self.min_lr is None:
            lines = [f"{NO_SUGGESTION}: {self.reason}"]
        else:
            lines = [f"max_lr = {self.max_lr:.4g}, min_lr = {self.min_lr:.4g} "
                     f"({self.method}): {self.reason}"]
        lines += [f"  {a.name}: {a.lr:.4g} ({a.reason})" for a in self.alternatives]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def centred(loss: np.ndarray) -> np.ndarray:
    """Centred moving average over 5% of the steps (at least 5): zero-phase smoothing, the
    curve `suggest` reads and a result keeps as `smoothed_loss`. The causal EMA that stops a
    test (`ema`) puts the loss minimum ~1/(1 - beta) steps late when read after the fact, which
    on a fast linear ramp means a much larger LR than the one where the loss was lowest.

    Args:
      loss: the losses, one per step.

    Returns:
      The smoothed losses (same length; the ends padded with the first and last values).

    Examples:
      >>> import numpy as np
      >>> from hparams_jax.range_test import centred
      >>> centred(np.array([5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))  # a 5-step window
      array([3., 2., 1., 0., 0., 0., 0.])
    """
    window = max(5, len(loss) // 20) | 1
    padded = np.pad(loss, window // 2, mode="edge")
    return np.convolve(padded, np.ones(window) / window, mode="valid")


def _finite_prefix(x: np.ndarray) -> int:
    bad = np.flatnonzero(~np.isfinite(x))
    return int(bad[0]) if len(bad) else len(x)


def _scatter(loss: np.ndarray) -> np.ndarray:
    """Relative deviation of each step's loss from its centred moving average."""
    mean = centred(loss)
    return np.abs(loss - mean) / np.abs(mean)


def _ragged_from(r: RangeTestResult, end: int) -> int | None:
    """First step where the raw loss scatters RAGGED_FACTOR x more than early on."""
    window = max(5, end // 20)
    if end < 3 * window:
        return None
    scatter = _scatter(r.train_loss[:end])
    rolling = np.convolve(scatter, np.ones(window) / window, mode="valid")
    baseline = np.median(rolling[: max(1, len(rolling) // 3)])
    over = np.flatnonzero(rolling > RAGGED_FACTOR * max(baseline, RAGGED_FLOOR))
    over = over[over >= window]  # the first windows see the edge of the curve
    return int(over[0] + window - 1) if len(over) else None


def _steepest(lr, loss) -> int:
    x = np.log(lr) if np.all(lr > 0) else lr
    slope = np.gradient(loss, x)
    return int(np.nanargmin(slope))


def _valley(loss) -> tuple[int, int]:
    """fastai's valley: the longest decreasing subsequence of the loss, as (first, last)."""
    n = len(loss)
    length, prev = np.ones(n, int), np.arange(n)
    for i in range(1, n):
        earlier = np.flatnonzero(loss[:i] > loss[i])
        if len(earlier):
            j = earlier[np.argmax(length[earlier])]
            length[i], prev[i] = length[j] + 1, j
    last = int(np.argmax(length))
    first = last
    while prev[first] != first:
        first = int(prev[first])
    return first, last


def _warnings(r: RangeTestResult, end: int, best: int) -> list[str]:
    out = []
    if end < MIN_STEPS:
        out.append(f"only {end} usable steps: run at least {MIN_STEPS} (raise num_steps)")
    s = r.smoothed_loss[:end]
    if end and (s[0] - np.min(s)) < FLAT_DROP * abs(s[0]):
        out.append(f"the loss hardly fell ({s[0]:.4g} -> {np.min(s):.4g}): the range may be "
                   "too low or too high, or the model is not learning")
    scatter = _scatter(r.train_loss[:end])
    if end and np.median(scatter) > NOISY_SCATTER:
        out.append(f"noisy loss (median scatter {np.median(scatter):.0%} around the smoothed "
                   "curve): use a larger batch or more steps")
    if end and best >= end - max(2, end // 50) and r.stop_reason == "completed":
        out.append(f"the loss was still falling at stop={r.stop:.4g}: raise stop")
    if end and best <= max(2, end // 50):
        out.append(f"the loss was lowest at the start ({r.start:.4g}): lower start")
    return out


def _no_suggestion(r: RangeTestResult, end: int) -> str | None:
    """Why the first `end` steps of `r` give no bounds at all, or None when they give some
    (Sec. 4.1 reads the LR at which the loss stops improving, so a loss that never improved
    names none): the loss was never finite, or the test diverged (stopped early) before its
    training loss ever fell `FLAT_DROP` below its first value. The raw loss is read here: on
    the few steps before a divergence the centred average mixes the blow-up into the start."""
    if end == 0:
        return ("the loss was non-finite from the first step: lower start (the LR range "
                "begins above any LR this network trains at)")
    loss = r.train_loss[:end]
    lowest = float(np.nanmin(loss))
    if r.stop_reason != "completed" and loss[0] - lowest < FLAT_DROP * abs(loss[0]):
        return (f"the test diverged before its loss ever fell: it stopped after {end} steps "
                f"at lr {r.learning_rate[end - 1]:.4g} ({r.stop_reason}) with the training "
                f"loss never {FLAT_DROP:.0%} below its first value ({loss[0]:.4g} -> at best "
                f"{lowest:.4g}); the range begins too high or rises too fast: lower start and "
                "stop, or ramp over more steps")
    return None


def _held_out_best(r: RangeTestResult, end: int) -> tuple[float, float] | None:
    """The largest LR up to which the held-out loss stays at its best (within
    `EVAL_TOLERANCE`, from the best point on) among the evaluations of the first `end` steps,
    and that best loss; None without a finite held-out point."""
    ok = np.isfinite(r.eval_loss) & (r.eval_step <= end)
    if not ok.any():
        return None
    e_lr, e_loss = r.eval_learning_rate[ok], r.eval_loss[ok]
    best = i = int(np.argmin(e_loss))
    while i + 1 < len(e_loss) and e_loss[i + 1] <= e_loss[best] * (1 + EVAL_TOLERANCE):
        i += 1
    return float(e_lr[i]), float(e_loss[best])


def suggest(r: RangeTestResult, policy: str = "one_cycle") -> Suggestion:
    """LR bounds for `policy` read from the curves of `r` by the paper's rule (Sec. 4.1; see
    the module docstring); `RangeTestResult.suggest` calls it.

    Args:
      r: the range test (`RangeTestResult`).
      policy: "one_cycle" (min_lr = max_lr / 10) or "triangular" (max_lr / 4).

    Returns:
      The `Suggestion`: max_lr, min_lr, the reasons, the other finders' picks and any
      warnings; no bounds where the test diverged before its loss ever fell or its loss was
      never finite.

    Raises:
      ConfigError: `policy` is unknown.

    Examples:
      >>> from hparams_jax.range_test.read import suggest
      >>> from hparams_jax.range_test.result import _example_curve
      >>> s = suggest(_example_curve(rise_at=0.6), "triangular")
      >>> print(f"max_lr {s.max_lr:.2g}, min_lr {s.min_lr:.2g}")
      max_lr 0.6, min_lr 0.15
    """
    v.one_of("policy", policy, tuple(MIN_LR_FRACTION))
    fraction = MIN_LR_FRACTION[policy]
    end = min(_finite_prefix(r.smoothed_loss), r.steps_run)
    why_none = _no_suggestion(r, end)
    if why_none is not None:
        return Suggestion(None, None, NO_SUGGESTION, why_none,
                          warnings=tuple(_warnings(r, end, int(np.argmin(
                              r.smoothed_loss[:end])))) if end else ())
    lr, s = r.learning_rate[:end], r.smoothed_loss[:end]
    best = int(np.argmin(s))
    ragged = _ragged_from(r, end)
    disagree = []
    ok = np.isfinite(r.eval_loss)
    if ok.sum() >= MIN_EVALS:
        # The paper reads the held-out curve: the largest LR up to which the held-out loss and
        # accuracy have not yet worsened. Past the lowest training loss training itself
        # worsens, so that LR caps it; a ragged training loss only lowers the confidence.
        # A task whose loss reports no accuracy is read on its held-out loss alone.
        e_lr, e_loss, e_acc = r.eval_learning_rate[ok], r.eval_loss[ok], r.eval_accuracy[ok]
        has_acc = bool(np.isfinite(e_acc).all())
        i_loss = int(np.argmin(e_loss))
        i_acc = int(np.argmax(e_acc)) if has_acc else i_loss
        good = e_loss <= e_loss[i_loss] * (1 + EVAL_TOLERANCE)
        if has_acc:
            good &= e_acc >= e_acc[i_acc] - EVAL_TOLERANCE
        last_good = i_loss
        while last_good + 1 < len(good) and good[last_good + 1]:
            last_good += 1
        eval_max = float(e_lr[last_good])
        method = "paper: largest LR before the held-out loss/accuracy worsens"
        why = (f"held-out loss {e_loss[i_loss]:.4g} (best) holds up to lr {eval_max:.4g}"
               + (f", accuracy best {e_acc[i_acc]:.3f}" if has_acc else ""))
        max_lr = eval_max
        if lr[best] < eval_max:
            max_lr = float(lr[best])
            why += f"; capped where the smoothed training loss is lowest (lr {lr[best]:.4g})"
            if lr[best] < eval_max / DISAGREE_FACTOR:
                disagree.append(f"the training loss is lowest at lr {lr[best]:.4g}, far below "
                                f"the held-out curve's {eval_max:.4g}")
        if ragged is not None and lr[ragged] < max_lr / DISAGREE_FACTOR:
            disagree.append(f"the training loss turns ragged at lr {lr[ragged]:.4g}, well below "
                            f"the suggested {max_lr:.4g}")
    else:
        max_lr, why = float(lr[best]), f"smoothed training loss lowest at lr {lr[best]:.4g}"
        if ragged is not None and ragged < best:
            max_lr, why = float(lr[ragged]), f"training loss turns ragged at lr {lr[ragged]:.4g}"
        method = "paper: largest LR before the training loss worsens"
    held = _held_out_best(r, end)
    if held is not None and max_lr > held[0]:  # never past the best held-out loss
        max_lr = held[0]
        why += f"; capped where the held-out loss was best ({held[1]:.4g} at lr {held[0]:.4g})"

    upto = min(max(best + 1, 3), end)  # the descent before the minimum (a few points at least)
    i_steep = _steepest(lr[:upto], s[:upto]) if upto >= 2 else 0
    first, last = _valley(s)
    i_valley = first + (last - first) * 2 // 3
    alternatives = (
        Alternative("steepest", float(lr[i_steep]),
                    "steepest fall of the smoothed loss per log LR (fastai 'steep')"),
        Alternative("valley", float(lr[i_valley]),
                    "2/3 down the longest descending stretch (fastai 'valley')"),
        Alternative("minimum/10", float(lr[best] / 10),
                    "LR of the lowest smoothed loss divided by 10 (fastai 'minimum')"),
    )
    warnings = tuple(_warnings(r, end, best)) + tuple(
        f"the curves disagree: {d}; check the plot" for d in disagree)
    if warnings:
        method += " (low confidence)"
    reason = f"{why}; min_lr = {fraction:g} x max_lr for {policy}"
    return Suggestion(float(max_lr), float(max_lr * fraction), method, reason, alternatives,
                      warnings)


def near_lowest_loss(rows: Sequence[dict[str, Any]]
                     ) -> tuple[list[dict[str, Any]], str, float, str]:
    """The rows that count as lowest (Sec. 4.4's reading of a family): those whose best
    held-out loss lies within `EVAL_TOLERANCE` of the lowest (the lowest `centred` training loss
    stands in where a test has no held-out points). A row whose test gives no suggestion (its
    "max_lr" None) never counts. `Family.pick` and `tune`'s batch-size choice read the same
    rule.

    Args:
      rows: one dict per range test with "best_eval_loss" (None without held-out points),
        "min_smoothed_loss" (the lowest `centred` training loss) and "max_lr", as
        `Family.rows` gives.

    Returns:
      (the rows within the tolerance, the key read, the lowest value, the loss's name).

    Raises:
      NoSuggestionError: no row's test gives a suggestion.

    Examples:
      >>> from hparams_jax.range_test import near_lowest_loss
      >>> rows = [{"v": 1, "best_eval_loss": 0.500, "min_smoothed_loss": 0.4},
      ...         {"v": 2, "best_eval_loss": 0.505, "min_smoothed_loss": 0.3},
      ...         {"v": 3, "best_eval_loss": 0.600, "min_smoothed_loss": 0.2}]
      >>> near, key, lowest, what = near_lowest_loss(rows)
      >>> [r["v"] for r in near], key, lowest, what
      ([1, 2], 'best_eval_loss', 0.5, 'held-out')
    """
    given = [r for r in rows if r.get("max_lr", 0.0) is not None]
    if not given:
        raise NoSuggestionError(f"none of the {len(rows)} range test(s) gives a suggestion "
                                "(each diverged before its loss fell, or was never finite)")
    rows = given
    use_eval = all(r["best_eval_loss"] is not None for r in rows)
    key = "best_eval_loss" if use_eval else "min_smoothed_loss"
    lowest = min(r[key] for r in rows)
    near = [r for r in rows if r[key] <= lowest * (1 + EVAL_TOLERANCE)]
    return near, key, lowest, "held-out" if use_eval else "smoothed training"
