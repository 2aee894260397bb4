"""The records of LR range tests (Smith 2018, Sec. 4.1-4.4): `RangeTestResult`, the curves of
one test, and `Family`, the tests of one setting varied; both kept as strict JSON.

A result's `suggest()` and a family's `pick()` read them by the rules of
`hparams_jax.range_test.read`; `hparams_jax.range_test.run` makes them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hparams_jax import _files, momenta
from hparams_jax.errors import UnreadableFileError
from hparams_jax.range_test.read import (EVAL_TOLERANCE, NoSuggestionError, Suggestion,
                                         centred, near_lowest_loss, suggest)
from hparams_jax.train.metrics import write_text_atomic


@dataclasses.dataclass
class RangeTestResult:
    """The curves of one range test; arrays are per step (train) or per evaluation.

    `lr_range_test` and `range_test_family` return them; `save` / `load` keep them as JSON.

    Attributes:
      learning_rate: the LR of each step run.
      train_loss: the training loss of each step.
      smoothed_loss: `centred(train_loss)`, the zero-phase smoothing of the training loss
        that `suggest` reads.
      train_accuracy: the training accuracy of each step.
      eval_step: the steps after which the held-out subset was evaluated.
      eval_learning_rate: the LR of those steps.
      eval_loss: the held-out loss at those steps.
      eval_accuracy: the held-out accuracy at those steps.
      mode: the ramp, "linear" or "exp".
      start: the ramp's first LR.
      stop: the ramp's last LR.
      num_steps: the ramp's length (the test may stop before).
      stop_factor: the test stopped once the EMA of the training loss (`ema`) passed this
        many times its minimum.
      stop_reason: why the test ended ("completed" when it ran all `num_steps`).
      label: the family member it belongs to ("" for a single test).
      setting: the swept values it ran with (seed, momentum, weight decay, ...).
      optimizer: "sgd" or "adamw", whose LRs the bounds are.

    Examples:
      `lr_range_test` runs one; here a made-up one (`_example_curve`), saved and read back:

      >>> import pathlib, tempfile
      >>> from hparams_jax.range_test import RangeTestResult
      >>> from hparams_jax.range_test.result import _example_curve
      >>> result = _example_curve(rise_at=0.6)
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
        """LR bounds for `policy` ("one_cycle" or "triangular"), read by the paper's rule
        (`hparams_jax.range_test.read.suggest`).

        Args:
          policy: "one_cycle" (min_lr = max_lr / 10) or "triangular" (max_lr / 4).

        Returns:
          The `Suggestion`: max_lr by the paper's rule (Sec. 4.1), min_lr, the reasons, the
          other finders' picks and any warnings.

        Raises:
          ConfigError: `policy` is unknown.

        Examples:
          A made-up test (`_example_curve`) whose held-out loss falls until the LR reaches
          0.6, then rises:

          >>> from hparams_jax.range_test.result import _example_curve
          >>> s = _example_curve(rise_at=0.6).suggest()
          >>> print(f"max_lr {s.max_lr:.2g}, min_lr {s.min_lr:.2g}")
          max_lr 0.6, min_lr 0.06
          >>> print(f"{_example_curve(rise_at=0.6).suggest('triangular').min_lr:.2g}")
          0.15
        """
        return suggest(self, policy)

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
        return _save_json(path, self.to_dict())

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


def _save_json(path: str | Path, d: dict[str, Any]) -> Path:
    """Writes `d` as strict JSON to `path` (its folder made as needed; the file replaced whole,
    never left half-written); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(d, indent=1, allow_nan=False))
    return path


def _loaded(path: str | Path, build: Callable[[dict[str, Any]], Any]) -> Any:
    """`build` of the JSON object in `path`; a file that is not one, or lacks what `build`
    reads, is an `UnreadableFileError` naming it."""
    d = _files.read_json(path)
    try:
        return build(d)
    except (KeyError, TypeError, ValueError) as err:
        raise UnreadableFileError(path, f"it is not a saved range test ({type(err).__name__}: "
                                        f"{err})") from None


@dataclasses.dataclass
class Family:
    """Range tests of one setting varied: batch sizes, momenta or weight decays (Smith 2018,
    Sec. 4.2-4.4).

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
        """One dict per value: its suggested max_lr (None: no suggestion), lowest smoothed
        training loss ("min_smoothed_loss", the `centred` curve) and held-out loss, best
        held-out accuracy and why its test stopped."""
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
            lines.append(f"pick: {_label(self.param, value)} ({reason})")
        except NoSuggestionError as err:
            lines.append(f"pick: none ({err})")
        return "\n".join(lines)

    def pick(self) -> tuple[Any, str]:
        """The paper's choice among the family (Sec. 4.4): the value whose held-out loss is
        lowest and stays low to the largest LR. Values whose lowest held-out loss lies within
        `EVAL_TOLERANCE` of the family's lowest count as lowest; of those, the one with the
        largest suggested max_lr is picked (`near_lowest_loss`). Without held-out points the
        lowest `centred` training loss stands in. A value whose test gives no suggestion is
        never picked.

        Returns:
          The picked value and the reason, with the numbers it rests on.

        Raises:
          NoSuggestionError: no test of the family gives a suggestion.

        Examples:
          Two made-up range tests (`_example_curve`); the held-out loss of weight decay 1e-3
          is lowest and holds up to a larger LR:

          >>> from hparams_jax.range_test import Family
          >>> from hparams_jax.range_test.result import _example_curve
          >>> family = Family("weight_decay", [1e-4, 1e-3],
          ...                 [_example_curve(rise_at=0.5), _example_curve(rise_at=0.7)])
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
        return _save_json(path, {
            "family": self.param,
            "values": [list(x) if momenta.is_cyclical(x) else x for x in self.values],
            "results": [r.to_dict() for r in self.results]})

    @classmethod
    def load(cls, path: str | Path) -> "Family":
        """The family `save` wrote to `path` (`UnreadableFileError` naming a damaged file)."""
        def build(d: dict[str, Any]) -> "Family":
            results = [RangeTestResult.from_dict(r) for r in d["results"]]
            values = _values(d["family"], d["values"])
            return cls(d["family"], values, results)

        return _loaded(path, build)


def _values(param: str, values: list) -> list:
    """A family's values as held: momenta by `momenta.parse` (a pair read back from JSON as a
    list is a cyclical momentum), other values as they are."""
    return [momenta.parse(x, "values") for x in values] if param == "momentum" else list(values)


def _label(param: str, value) -> str:
    """`param=value`, a momentum written as `momenta.format` writes it."""
    return f"{param}={momenta.format(value) if param == 'momentum' else format(value, 'g')}"


def _example_curve(rise_at: float) -> RangeTestResult:
    """A made-up range test for the examples: a linear ramp of 100 steps from 0.01 to 1.0
    whose training loss falls, then rises once the LR passes `rise_at`; the held-out loss, 0.2
    below it, evaluated every 10 steps."""
    lr = np.linspace(0.01, 1.0, 100)
    loss = 2.3 - 1.5 * lr + 20.0 * np.maximum(lr - rise_at, 0.0) ** 2
    at = np.arange(9, 100, 10)
    return RangeTestResult(lr, loss, centred(loss), 0 * lr, at + 1.0, lr[at], loss[at] - 0.2,
                           0 * lr[at], "linear", 0.01, 1.0, 100, 4.0, "completed")
