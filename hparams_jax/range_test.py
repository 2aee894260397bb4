"""The LR range test and its families (Smith 2018, Sec. 4.1, 4.3-4.5; Smith 2017, Sec. 3.3).

A short run whose learning rate rises from `start` to `stop` (linearly, as in the paper, or
exponentially) records the training loss every step and, every `eval_every` steps, the loss and
accuracy on a fixed held-out subset. It runs the training engine's compiled step (the config's
optimizer, SGD or AdamW; a step is one optimizer step, of `accumulate_steps` micro-batches) in
chunks of `lax.scan`, checks between chunks and stops once the smoothed loss exceeds
`stop_factor` x its minimum or turns non-finite. It builds its own state: no model or optimizer
of the caller's is touched.

`RangeTestResult.suggest()` reads the curve by the paper's rule: the largest LR before the
held-out loss or accuracy worsens (never past the lowest training loss), or, without enough
held-out points, before the training loss worsens or turns ragged; never past the LR at which
the held-out loss was best; where the training curve points far lower than the held-out one,
the suggestion is flagged low-confidence. A test whose loss was never finite, or that diverged
before its loss ever fell, gives no suggestion at all: no bounds, and the reason
(`Suggestion.found`; `Suggestion.require` raises `NoSuggestionError`, the command line's exit
status 3). It gives the
minimum LR as a stated fraction of the maximum; the steepest-descent, valley and minimum/10
picks of fastai and pytorch-lr-finder come alongside, labelled. `range_test_family` repeats the
test over weight decays, momenta or batch sizes (Figs. 9-11): settings that share shapes run as
one vmapped program.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import jax
import numpy as np

from hparams_jax import _files
from hparams_jax import _validate as v
from hparams_jax.errors import ConfigError, UnreadableFileError
from hparams_jax.train.config import RANGE_MODES, TrainConfig
from hparams_jax.train.metrics import ACCURACY, write_text_atomic

if TYPE_CHECKING:
    from hparams_jax.train.task import Task

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


class _Ema:
    """Bias-corrected exponential moving average of K series, fed one step at a time."""

    def __init__(self, k: int, beta: float = 0.98):
        self.beta, self.count, self.avg = beta, 0, np.zeros(k)

    def step(self, row: np.ndarray) -> np.ndarray:
        self.count += 1
        self.avg = self.beta * self.avg + (1 - self.beta) * np.asarray(row, np.float64)
        return self.avg / (1 - self.beta ** self.count)


def smooth(loss: np.ndarray, beta: float = 0.98) -> np.ndarray:
    """Bias-corrected exponential moving average (as in fastai's and pytorch-lr-finder's
    finders); non-finite values propagate. Causal, so it decides when to stop; it lags the
    loss by about 1 / (1 - beta) steps, so the curve is read with `centred` instead.

    Args:
      loss: the losses, one per step.
      beta: the decay of the average, in [0, 1).

    Returns:
      The smoothed losses (same length).

    Examples:
      >>> import numpy as np
      >>> from hparams_jax.range_test import smooth
      >>> smooth(np.array([1.0, 1.0, 4.0]), beta=0.5)  # (2 * 0.5 + 4 * 0.5) / (1 - 0.125)
      array([1.        , 1.        , 2.71428571])
    """
    ema = _Ema(1, beta)
    return np.array([ema.step(np.array([x]))[0] for x in loss])


def centred(loss: np.ndarray) -> np.ndarray:
    """Centred moving average over 5% of the steps (at least 5): zero-phase smoothing. An EMA
    read after the fact puts the loss minimum ~1/(1 - beta) steps late, which on a fast linear
    ramp means a much larger LR than the one where the loss was lowest.

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


@dataclasses.dataclass
class RangeTestResult:
    """The curves of one range test; arrays are per step (train) or per evaluation.

    `lr_range_test` and `range_test_family` return them; `save` / `load` keep them as JSON.

    Attributes:
      learning_rate: the LR of each step run.
      train_loss: the training loss of each step.
      smoothed_loss: `centred(train_loss)`, the curve `suggest` reads.
      train_accuracy: the training accuracy of each step.
      eval_step: the steps after which the held-out subset was evaluated.
      eval_learning_rate: the LR of those steps.
      eval_loss: the held-out loss at those steps.
      eval_accuracy: the held-out accuracy at those steps.
      mode: the ramp, "linear" or "exp".
      start: the ramp's first LR.
      stop: the ramp's last LR.
      num_steps: the ramp's length (the test may stop before).
      stop_factor: the test stopped once the smoothed loss passed this many times its minimum.
      stop_reason: why the test ended ("completed" when it ran all `num_steps`).
      label: the family member it belongs to ("" for a single test).
      setting: the swept values it ran with (seed, momentum, weight decay, ...).
      optimizer: "sgd" or "adamw", whose LRs the bounds are.

    Examples:
      `lr_range_test` runs one; here a made-up curve, saved and read back:

      >>> import numpy as np
      >>> from hparams_jax.range_test import RangeTestResult, centred
      >>> lr = np.linspace(0.01, 1.0, 100)  # a linear ramp of 100 steps
      >>> def range_test(rise_at):  # losses that rise once the LR passes rise_at
      ...     loss = 2.3 - 1.5 * lr + 20.0 * np.maximum(lr - rise_at, 0.0) ** 2
      ...     at = np.arange(9, 100, 10)  # held-out evaluations every 10 steps
      ...     return RangeTestResult(lr, loss, centred(loss), 0 * lr, at + 1.0, lr[at],
      ...                            loss[at] - 0.2, 0 * lr[at], "linear", 0.01, 1.0, 100, 4.0,
      ...                            "completed")
      >>> import pathlib, tempfile
      >>> result = range_test(rise_at=0.6)
      >>> path = result.save(pathlib.Path(tempfile.mkdtemp()) / "range_test.json")
      >>> loaded = RangeTestResult.load(path)
      >>> loaded.steps_run, loaded.eval_step[:3], loaded.suggest() == result.suggest()
      (100, array([10., 20., 30.]), True)
    """

    learning_rate: np.ndarray
    train_loss: np.ndarray
    smoothed_loss: np.ndarray
    train_accuracy: np.ndarray
    eval_step: np.ndarray
    eval_learning_rate: np.ndarray
    eval_loss: np.ndarray
    eval_accuracy: np.ndarray
    mode: str
    start: float
    stop: float
    num_steps: int
    stop_factor: float
    stop_reason: str
    label: str = ""
    setting: dict = dataclasses.field(default_factory=dict)
    optimizer: str = "sgd"  # the bounds are the optimizer's: AdamW's lie 10-100x below SGD's

    @property
    def steps_run(self) -> int:
        """The number of steps the test ran."""
        return len(self.train_loss)

    def suggest(self, policy: str = "one_cycle") -> Suggestion:
        """LR bounds for `policy` ("one_cycle" or "triangular"); see the module docstring.

        Args:
          policy: "one_cycle" (min_lr = max_lr / 10) or "triangular" (max_lr / 4).

        Returns:
          The `Suggestion`: max_lr by the paper's rule (Sec. 4.1), min_lr, the reasons, the
          other finders' picks and any warnings.

        Raises:
          ConfigError: `policy` is unknown.

        Examples:
          A made-up curve whose held-out loss falls until the LR reaches 0.6, then rises:

          >>> import numpy as np
          >>> from hparams_jax.range_test import RangeTestResult, centred
          >>> lr = np.linspace(0.01, 1.0, 100)  # a linear ramp of 100 steps
          >>> def range_test(rise_at):  # losses that rise once the LR passes rise_at
          ...     loss = 2.3 - 1.5 * lr + 20.0 * np.maximum(lr - rise_at, 0.0) ** 2
          ...     at = np.arange(9, 100, 10)  # held-out evaluations every 10 steps
          ...     return RangeTestResult(lr, loss, centred(loss), 0 * lr, at + 1.0, lr[at],
          ...                            loss[at] - 0.2, 0 * lr[at], "linear", 0.01, 1.0, 100, 4.0,
          ...                            "completed")
          >>> s = range_test(rise_at=0.6).suggest()
          >>> print(f"max_lr {s.max_lr:.2g}, min_lr {s.min_lr:.2g}")
          max_lr 0.6, min_lr 0.06
          >>> print(f"{range_test(rise_at=0.6).suggest('triangular').min_lr:.2g}")
          0.15
        """
        v.one_of("policy", policy, tuple(MIN_LR_FRACTION))
        return _suggest(self, MIN_LR_FRACTION[policy], policy)

    def to_dict(self) -> dict[str, Any]:
        """The curves as JSON-ready lists, and the `suggest()`ion; a non-finite number (a
        diverged loss) is None, so the JSON is strict (null) and `from_dict` reads it as NaN."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["suggestion"] = self.suggest().to_dict()
        return _strict(d)

    def save(self, path: str | Path) -> Path:
        """Writes `to_dict()` as strict JSON (non-finite numbers as null) to `path` (its folder
        made as needed; the file is replaced whole, never left half-written); returns the
        path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1, allow_nan=False))
        return path

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RangeTestResult":
        """The result of a `to_dict` dict."""
        return cls(**{k: (np.array(x, dtype=float) if k in _ARRAYS else x)
                      for k, x in d.items() if k != "suggestion"})

    @classmethod
    def load(cls, path: str | Path) -> "RangeTestResult":
        """The result `save` wrote to `path` (`UnreadableFileError` naming a damaged file)."""
        return _loaded(path, lambda d: cls.from_dict(d))


_ARRAYS = tuple(f.name for f in dataclasses.fields(RangeTestResult)
                if f.type == "np.ndarray")


def _strict(x: Any) -> Any:
    """`x` with arrays as lists and every non-finite float as None (strict JSON)."""
    if isinstance(x, np.ndarray):
        x = x.tolist()
    if isinstance(x, dict):
        return {k: _strict(y) for k, y in x.items()}
    if isinstance(x, (list, tuple)):
        return [_strict(y) for y in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    return x


def _loaded(path: str | Path, build: Callable[[dict[str, Any]], Any]) -> Any:
    """`build` of the JSON object in `path`; a file that is not one, or lacks what `build`
    reads, is an `UnreadableFileError` naming it."""
    d = _files.read_json(path)
    try:
        return build(d)
    except (KeyError, TypeError, ValueError) as err:
        raise UnreadableFileError(path, f"it is not a saved range test ({type(err).__name__}: "
                                        f"{err})") from None


# --- reading the curve ---------------------------------------------------------------------

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


def _suggest(r: RangeTestResult, fraction: float, policy: str) -> Suggestion:
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


# --- running it ----------------------------------------------------------------------------

def _engine():
    """The training engine's session and task modules, imported here on first use: reading
    range tests needs only the core install, running them the train extra."""
    from hparams_jax import _extras

    try:
        from hparams_jax.train import session, task
    except ModuleNotFoundError as err:
        _extras.reraise(err, "running an LR range test")
    return session, task


def _open_session(config: TrainConfig, task: Task):
    return _engine()[0].open_session(config, task)


class _StoppingRule:
    """The EMA of each member's loss kept up chunk by chunk with its running minimum, so the
    rule reads each new loss once instead of re-smoothing the whole curve."""

    def __init__(self, k: int):
        self.ema, self.best, self.last = _Ema(k), np.full(k, np.inf), np.full(k, np.nan)

    def update(self, loss: np.ndarray, stop_factor: float) -> np.ndarray:
        """Feeds (n, K) losses; True where the smoothed loss now exceeds stop_factor x its
        minimum."""
        for row in loss:
            self.last = self.ema.step(row)
            self.best = np.fmin(self.best, self.last)
        return self.last > stop_factor * self.best


def check_ramp(start, stop, num_steps, mode="linear", stop_factor=4.0, eval_every=None):
    """Checks an LR range test's ramp before anything trains (`lr_range_test`,
    `range_test_family`, `tune`).

    Args:
      start: the LR at step 0 (>= 0; > 0 for `mode="exp"`).
      stop: the LR at the last step (> `start`: equal bounds are no ramp).
      num_steps: the ramp's length in optimizer steps (an integer >= 2).
      mode: "linear" (the paper) or "exp".
      stop_factor: the early-stopping factor on the smoothed training loss (> 1).
      eval_every: steps between held-out evaluations (a positive integer), or None.

    Returns:
      None; a disallowed value raises.

    Raises:
      ConfigError: naming the argument, its value and what is allowed.

    Examples:
      >>> from hparams_jax.range_test import check_ramp
      >>> check_ramp(0.001, 1.0, 100)
      >>> check_ramp(0.1, 0.01, 100)  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      hparams_jax.errors.ConfigError: ...
    """
    v.one_of("mode", mode, RANGE_MODES)
    (v.strictly_positive if mode == "exp" else v.non_negative)("start", start)
    v.strictly_positive("stop", stop)
    v.ordered("start", start, "stop", stop)
    v.check("stop", stop, bool(np.all(np.asarray(stop) > np.asarray(start))),
            f"above start={start!r} (the ramp rises from start to stop)")
    v.positive_int("num_steps", num_steps)
    v.check("num_steps", num_steps, num_steps >= 2, "at least 2")
    v.check("stop_factor", stop_factor, stop_factor > 1, "greater than 1")
    if eval_every is not None:
        v.positive_int("eval_every", eval_every)


def _run(config: TrainConfig, task: Task, *, start, stop, num_steps, mode, eval_every,
         stop_factor, labels: Sequence[str]) -> list[RangeTestResult]:
    session = _open_session(config.replace(lr_policy="range_test", min_lr=start, max_lr=stop,
                                           steps=num_steps, range_mode=mode, workdir=None,
                                           progress=False), task)
    k = session.num_members
    state = session.init_state()
    eval_every = eval_every or max(1, num_steps // 20)
    losses, accs, lrs, finite = [], [], [], []
    evals: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    stopped = np.full(k, -1)  # step at which each member stopped, -1 while running
    reasons = ["completed"] * k
    rule = _StoppingRule(k)
    step = 0
    while step < num_steps and (stopped < 0).any():
        n = session.chunk_length(step, eval_every)
        state, m = session.chunk(state, step, n)
        m = jax.device_get(m)
        for out, key in ((losses, "loss"), (lrs, "learning_rate"), (finite, "finite")):
            out.append(m[key])
        accs.append(_accuracy(m["metrics"], m["loss"].shape))
        step += n
        e = session.evaluate(state)
        evals.append((step, m["learning_rate"][-1], e["loss"], _accuracy(e, e["loss"].shape)))
        ever_bad = ~np.all(np.concatenate(finite), axis=0)
        too_high = rule.update(m["loss"], stop_factor)
        for j in np.flatnonzero(stopped < 0):
            if ever_bad[j]:
                stopped[j], reasons[j] = step, "non-finite loss or gradient"
            elif too_high[j]:
                stopped[j], reasons[j] = step, f"smoothed loss above {stop_factor:g}x its minimum"
    loss, acc, lr, finite = (np.concatenate(x) for x in (losses, accs, lrs, finite))
    results = []
    settings = session.config.members_or_self()
    for j in range(k):
        end = stopped[j] if stopped[j] >= 0 else step
        bad = np.flatnonzero(~finite[:, j])  # the step that met a non-finite loss or gradient;
        end = min(end, bad[0]) if len(bad) else end  # the member's state is frozen after it
        ev = [(s, l[j], el[j], ea[j]) for s, l, el, ea in evals if s <= end]
        cols = np.array(ev, dtype=float).reshape(-1, 4).T
        results.append(RangeTestResult(
            learning_rate=lr[:end, j].astype(float), train_loss=loss[:end, j].astype(float),
            smoothed_loss=centred(loss[:end, j]), train_accuracy=acc[:end, j].astype(float),
            eval_step=cols[0], eval_learning_rate=cols[1], eval_loss=cols[2],
            eval_accuracy=cols[3], mode=mode, start=float(start), stop=float(stop),
            num_steps=num_steps, stop_factor=stop_factor, stop_reason=reasons[j],
            label=labels[j], setting=dataclasses.asdict(settings[j]),
            optimizer=config.optimizer))
    return results


def _accuracy(metrics, shape) -> np.ndarray:
    """The task's "accuracy" metric, or NaN where its loss reports none."""
    return np.asarray(metrics[ACCURACY]) if ACCURACY in metrics else np.full(shape, np.nan)


def lr_range_test(config: TrainConfig, *, start: float, stop: float, num_steps: int,
                  mode: str = "linear", eval_every: int | None = None,
                  stop_factor: float = 4.0, task: Task | None = None) -> RangeTestResult:
    """One LR range test of `config`'s (or `task`'s) model and data at the config's batch
    size, momentum and weight decay (its LR policy, length and sweep are replaced by the
    ramp). The held-out subset is `config.eval_examples` examples of the held-out data;
    evaluated every `eval_every` steps (default: twenty times in the test).

    Args:
      config: the batch size, optimizer, momentum and weight decay to test, and the model and
        data where `task` is None (no sweep `members`).
      start: the LR at step 0 (>= 0; > 0 for `mode="exp"`).
      stop: the LR at the last step (> `start`).
      num_steps: the ramp's length in optimizer steps (>= 2).
      mode: "linear" (the paper) or "exp".
      eval_every: steps between held-out evaluations (None: `num_steps // 20`, at least 1).
      stop_factor: stop once the smoothed training loss exceeds this many times its minimum
        (> 1).
      task: the user's own model, loss and data (`Task`; it needs held-out data), in place of
        the config's model and dataset.

    Returns:
      The `RangeTestResult`; `result.suggest()` reads LR bounds from it.

    Raises:
      ConfigError: a ramp argument is out of range, `config` has sweep members, or `task` has
        no held-out data.

    Examples:
      >>> from hparams_jax.range_test import lr_range_test
      >>> from hparams_jax.train import TrainConfig
      >>> config = TrainConfig(model="lenet", dataset="fashion_mnist", batch_size=64,
      ...                      train_examples=512, eval_examples=256, momentum=0.9,
      ...                      weight_decay=5e-4, progress=False)
      >>> result = lr_range_test(config, start=0.001, stop=1.0, num_steps=40, eval_every=4)
      >>> print(f"{result.learning_rate[0]:.3f}", result.eval_step[:2])
      0.001 [4. 8.]
      >>> result.steps_run < 40, result.stop_reason != "completed"  # the loss blew up early
      (True, True)
      >>> bool(0.001 <= result.suggest().max_lr < result.learning_rate[-1])
      True
    """
    check_ramp(start, stop, num_steps, mode, stop_factor, eval_every)
    if config.members:
        raise ConfigError(f"config.members={list(config.members)!r}: use range_test_family "
                          "to compare settings")
    config, task = _with_eval(config, task, "the LR range test")
    return _run(config, task, start=start, stop=stop, num_steps=num_steps, mode=mode,
                eval_every=eval_every, stop_factor=stop_factor, labels=[""])[0]


FAMILY_PARAMS = ("weight_decay", "momentum", "batch_size")


@dataclasses.dataclass
class Family:
    """Range tests of one setting varied (Smith 2018, Figs. 9-11).

    `range_test_family` returns one; `save` / `load` keep it as JSON.

    Attributes:
      param: the varied setting ("weight_decay", "momentum" or "batch_size").
      values: its values, in the order given.
      results: the `RangeTestResult` of each value.

    Examples:
      See `range_test_family` and `pick`.

      >>> from hparams_jax.range_test import Family
      >>> Family("weight_decay", [1e-4, 1e-3], []).param
      'weight_decay'
    """

    param: str
    values: list
    results: list[RangeTestResult]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per value: its suggested max_lr (None: no suggestion), lowest smoothed and
        held-out losses, best held-out accuracy and why its test stopped."""
        out = []
        for value, r in zip(self.values, self.results):
            s = r.suggest()
            ok = np.isfinite(r.eval_loss)
            finite = np.isfinite(r.smoothed_loss)
            out.append({self.param: value, "max_lr": s.max_lr,
                        "min_smoothed_loss": float(np.min(r.smoothed_loss[finite]))
                        if finite.any() else None,
                        "best_eval_loss": float(np.min(r.eval_loss[ok])) if ok.any() else None,
                        "best_eval_accuracy": float(np.max(r.eval_accuracy[ok]))
                        if ok.any() else None,
                        "stopped": r.stop_reason})
        return out

    def text(self) -> str:
        """`rows()` as a table, then the `pick()`."""
        lines = [f"{self.param:>14} {'max_lr':>9} {'min loss':>9} {'best eval loss':>15} "
                 f"{'best eval acc':>14}  stop"]
        def show(x, fmt):
            return "-" if x is None else format(x, fmt)

        for r in self.rows():
            lines.append(f"{str(r[self.param]):>14} {show(r['max_lr'], '.4g'):>9} "
                         f"{show(r['min_smoothed_loss'], '.4f'):>9} "
                         f"{show(r['best_eval_loss'], '.4f'):>15} "
                         f"{show(r['best_eval_accuracy'], '.4f'):>14}  {r['stopped']}")
        try:
            value, reason = self.pick()
            lines.append(f"pick: {self.param}={_fmt(value)} ({reason})")
        except NoSuggestionError as err:
            lines.append(f"pick: none ({err})")
        return "\n".join(lines)

    def pick(self) -> tuple[Any, str]:
        """The paper's choice among the family (Sec. 4.4): the value whose held-out loss is
        lowest and stays low to the largest LR. Values whose lowest held-out loss lies within
        `EVAL_TOLERANCE` of the family's lowest count as lowest; of those, the one with the
        largest suggested max_lr is picked. Without held-out points the smoothed training loss
        stands in. A value whose test gives no suggestion is never picked.

        Returns:
          The picked value and the reason, with the numbers it rests on.

        Raises:
          NoSuggestionError: no test of the family gives a suggestion.

        Examples:
          Two made-up range tests; the held-out loss of weight decay 1e-3 is lowest and holds
          up to a larger LR:

          >>> import numpy as np
          >>> from hparams_jax.range_test import RangeTestResult, centred
          >>> lr = np.linspace(0.01, 1.0, 100)  # a linear ramp of 100 steps
          >>> def range_test(rise_at):  # losses that rise once the LR passes rise_at
          ...     loss = 2.3 - 1.5 * lr + 20.0 * np.maximum(lr - rise_at, 0.0) ** 2
          ...     at = np.arange(9, 100, 10)  # held-out evaluations every 10 steps
          ...     return RangeTestResult(lr, loss, centred(loss), 0 * lr, at + 1.0, lr[at],
          ...                            loss[at] - 0.2, 0 * lr[at], "linear", 0.01, 1.0, 100, 4.0,
          ...                            "completed")
          >>> from hparams_jax.range_test import Family
          >>> family = Family("weight_decay", [1e-4, 1e-3],
          ...                 [range_test(rise_at=0.5), range_test(rise_at=0.7)])
          >>> value, reason = family.pick()
          >>> value
          0.001
          >>> print(reason)  # doctest: +ELLIPSIS
          lowest held-out loss 1.0500 (family's lowest 1.0500, ...) ... LR, max_lr 0.7
        """
        near, key, lowest, what = near_lowest_loss(self.rows())
        chosen = max(near, key=lambda r: r["max_lr"])
        reason = (f"lowest {what} loss {chosen[key]:.4f} (family's lowest {lowest:.4f}, within "
                  f"{EVAL_TOLERANCE:.0%} counts as lowest) kept up to the largest LR, "
                  f"max_lr {chosen['max_lr']:.4g}")
        return chosen[self.param], reason

    def save(self, path: str | Path) -> Path:
        """Writes the family as strict JSON (non-finite numbers as null) to `path` (its folder
        made as needed; the file is replaced whole, never left half-written); returns the
        path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(
            {"family": self.param,
             "values": [list(x) if isinstance(x, tuple) else x for x in self.values],
             "results": [r.to_dict() for r in self.results]}, indent=1, allow_nan=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Family":
        """The family `save` wrote to `path` (`UnreadableFileError` naming a damaged file)."""
        def build(d: dict[str, Any]) -> "Family":
            results = [RangeTestResult.from_dict(r) for r in d["results"]]
            values = [tuple(x) if isinstance(x, list) else x for x in d["values"]]
            return cls(d["family"], values, results)

        return _loaded(path, build)


def near_lowest_loss(rows: Sequence[dict[str, Any]]
                     ) -> tuple[list[dict[str, Any]], str, float, str]:
    """The rows that count as lowest (Sec. 4.4's reading of a family): those whose best
    held-out loss lies within `EVAL_TOLERANCE` of the lowest (the smoothed training loss stands
    in where a test has no held-out points). A row whose test gives no suggestion (its
    "max_lr" None) never counts. `Family.pick` and `tune`'s batch-size choice read the same
    rule.

    Args:
      rows: one dict per range test with "best_eval_loss" (None without held-out points),
        "min_smoothed_loss" and "max_lr", as `Family.rows` gives.

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


def _with_eval(config: TrainConfig, task: Task | None, tool: str) -> tuple[TrainConfig, Task]:
    config, task = _engine()[1].resolve(config, task)
    task.require_eval(tool)
    return config, task


def range_test_family(config: TrainConfig, param: str, values: Sequence, *, start: float,
                      stop: float, num_steps: int, mode: str = "linear",
                      eval_every: int | None = None, stop_factor: float = 4.0,
                      task: Task | None = None) -> Family:
    """Range tests of `config` for each of `values` of `param` ("weight_decay", "momentum" —
    a float or a (max, min) pair, falling while the LR rises — or "batch_size"). Weight decays
    and momenta of one kind run as one vmapped program; batch sizes one after another.

    Args:
      config: the model, data and other settings shared by the family (its `members` are
        replaced).
      param: "weight_decay", "momentum" or "batch_size".
      values: the values of `param` to test (at least one).
      start: the LR at step 0, as in `lr_range_test`.
      stop: the LR at the last step.
      num_steps: the ramp's length in optimizer steps.
      mode: "linear" or "exp".
      eval_every: steps between held-out evaluations.
      stop_factor: a test stops once its smoothed loss exceeds this many times its minimum.
      task: the user's own model, loss and data (`Task`), as in `lr_range_test`.

    Returns:
      The `Family`: one `RangeTestResult` per value; `family.pick()` chooses among them.

    Raises:
      ConfigError: `param` is unknown, `values` is empty, a value or a ramp argument is not
        allowed.

    Examples:
      >>> from hparams_jax.range_test import range_test_family
      >>> from hparams_jax.train import TrainConfig
      >>> config = TrainConfig(model="lenet", dataset="fashion_mnist", batch_size=64,
      ...                      train_examples=512, eval_examples=256, momentum=0.9,
      ...                      weight_decay=5e-4, progress=False)
      >>> family = range_test_family(config, "weight_decay", [1e-4, 1e-3], start=0.001,
      ...                            stop=1.0, num_steps=40, eval_every=4)
      >>> [(r.label, r.steps_run < 40) for r in family.results]
      [('weight_decay=0.0001', True), ('weight_decay=0.001', True)]
      >>> print(family.text())  # doctest: +ELLIPSIS
        weight_decay    max_lr  min loss  best eval loss  best eval acc  stop
              0.0001 ...
               0.001 ...
      pick: weight_decay=... (lowest held-out loss ...)
    """
    v.one_of("param", param, FAMILY_PARAMS)
    v.check("values", values, len(values) >= 1, "a non-empty list")
    check_ramp(start, stop, num_steps, mode, stop_factor, eval_every)
    kw = dict(start=start, stop=stop, num_steps=num_steps, mode=mode, eval_every=eval_every,
              stop_factor=stop_factor)
    values = [tuple(x) if isinstance(x, list) else x for x in values]
    config, task = _with_eval(config, task, "a range-test family")
    if param == "batch_size" and not task.held:
        raise ConfigError(f"param='batch_size': task {task.name!r} streams batches of a fixed "
                          "size from an iterator; vary the batch size with data held as "
                          "arrays.")
    results: dict[int, RangeTestResult] = {}
    if param == "batch_size":
        for i, b in enumerate(values):
            results[i] = _run(config.replace(batch_size=b, members=()), task,
                              labels=[f"batch_size={b}"], **kw)[0]
    else:
        groups: dict[bool, list[int]] = {}
        for i, x in enumerate(values):  # constant and cyclical momenta compile separately
            groups.setdefault(isinstance(x, tuple), []).append(i)
        for idx in groups.values():
            members = tuple({param: values[i], "seed": config.seed} for i in idx)
            out = _run(config.replace(members=members), task, labels=[
                f"{param}={_fmt(values[i])}" for i in idx], **kw)
            results.update(zip(idx, out))
    return Family(param, list(values), [results[i] for i in range(len(values))])


def _fmt(x) -> str:
    return ":".join(f"{y:g}" for y in x) if isinstance(x, tuple) else f"{x:g}"


def range_test_members(config: TrainConfig, *, start: float, stop: float, num_steps: int,
                       mode: str = "linear", eval_every: int | None = None,
                       stop_factor: float = 4.0, task: Task | None = None
                       ) -> list[RangeTestResult]:
    """One range test per member of `config.members` (any of `SWEEPABLE`'s settings: seeds,
    momenta, weight decays), run as one vmapped program: a family repeated over seeds measures
    the noise of its readings (Smith 2018, Sec. 4: each reading is one short run). The members'
    momenta must be all constant or all (max, min) pairs, as in any sweep.

    Args:
      config: the model, data and shared settings, with the `members` to test (at least one).
      start: the LR at step 0, as in `lr_range_test`.
      stop: the LR at the last step.
      num_steps: the ramp's length in optimizer steps.
      mode: "linear" or "exp".
      eval_every: steps between held-out evaluations (None: `num_steps // 20`, at least 1).
      stop_factor: a member stops once its smoothed loss exceeds this many times its minimum.
      task: the user's own model, loss and data (`Task`), as in `lr_range_test`.

    Returns:
      A `RangeTestResult` per member, in order; each one's `label` names the member's
      settings and its `setting` holds them.

    Raises:
      ConfigError: `config` has no members, or a ramp argument is not allowed.

    Examples:
      >>> from hparams_jax.range_test import range_test_members
      >>> from hparams_jax.train import TrainConfig
      >>> config = TrainConfig(model="lenet", dataset="fashion_mnist", batch_size=64,
      ...                      train_examples=512, eval_examples=256, momentum=0.9,
      ...                      weight_decay=5e-4, progress=False,
      ...                      members=[{"seed": 0}, {"seed": 1}])
      >>> results = range_test_members(config, start=0.001, stop=0.3, num_steps=20,
      ...                              eval_every=5)
      >>> [r.label for r in results], [r.setting["seed"] for r in results]
      (['seed=0', 'seed=1'], [0, 1])
    """
    check_ramp(start, stop, num_steps, mode, stop_factor, eval_every)
    v.check("config.members", list(config.members), bool(config.members),
            "at least one member (use lr_range_test for a single setting)")
    config, task = _with_eval(config, task, "a range test of sweep members")
    labels = [", ".join(f"{k}={_fmt(tuple(x) if isinstance(x, list) else x)}"
                        for k, x in m.items()) for m in config.members]
    return _run(config, task, start=start, stop=stop, num_steps=num_steps, mode=mode,
                eval_every=eval_every, stop_factor=stop_factor, labels=labels)
