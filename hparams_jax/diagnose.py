"""Reading a run's training and test curves (Smith 2018, Sec. 3).

The paper reads the test loss early and often: "underfitting is characterized by a continuously
decreasing test loss", overfitting by a test loss that reaches a minimum and then rises while the
training loss keeps falling (Figs. 2-3), and a horizontal test loss early in training, while the
LR is large, is an early positive clue of well-balanced regularisation (Figs. 3-4). `diagnose`
turns these readings, plus divergence and instability, into `Finding`s that carry the numbers
they rest on.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import numpy as np

from hparams_jax import _validate as v

SEVERITIES = ("info", "warning", "error")
# Verdict order, most important first: a broken run before a mis-tuned one before a remark.
KINDS = ("diverged", "unstable", "overfitting", "underfitting", "insufficient_data", "healthy",
         "horizontal_test_loss")
PROBLEMS = ("diverged", "unstable", "overfitting", "underfitting")

DIVERGE_FACTOR = 3.0  # a training loss this many times its early value has blown up
EARLY_POINTS = 3  # the early value: median of the first few training rows (one row is noisy)
MIN_EVALS = 5  # a minimum followed by a rise needs at least five test evaluations to be seen
MIN_TRAIN_POINTS = 10  # fewer training rows cannot separate a trend from noise
TAIL_FRACTION = 0.25  # "the end of training": the last quarter of the steps
NOISE_WINDOW = 5  # running-median window for the trend (ignores a spike of one or two rows)
NOISE_K = 3.0  # a rise counts only when it exceeds 3 robust standard deviations of the noise
TREND_T = 2.0  # a fitted fall counts when it exceeds 2 standard errors (one-sided ~98%)
UNDERFIT_TAIL_SHARE = 0.05  # still steep: the last quarter brought >= 5% of the total fall
NOT_LEARNING_DROP = 0.05  # a training loss that never fell 5% below its start is not learning
ANNEAL_FACTOR = 3.0  # an LR that fell this much over the tail explains a late fall (1cycle)
OVERFIT_RISE = 0.05  # a test loss 5% above its minimum (and above noise) has risen
SPIKE_JUMP = 0.25  # a training row 25% off its running-median trend is a spike
SPIKE_FLOOR = 0.05  # near zero, jumps are measured against 5% of the starting loss instead
UNSTABLE_FRACTION = 0.05  # spikes at >= 5% of the rows (and at least 3) make a run unstable
UNSTABLE_MIN_SPIKES = 3
HORIZ_EARLY = 0.6  # "early": the flat stretch lies within the first 60% of the steps
HORIZ_BAND = 0.10  # flat: all test losses of the stretch within 10% (+-5%) of its median
HORIZ_NOISE_BAND = 4.0  # or within 4 noise standard deviations (a noisy test loss)
HORIZ_SLOPE = 0.03  # and its fitted line changes < 3% of its level per tenth of the run
HORIZ_MIN_SPAN = 0.15  # and it lasts at least 15% of the run ...
HORIZ_MIN_POINTS = 5  # ... and at least five evaluations (fewer cannot tell flat from a slow fall)
HORIZ_LR_FRACTION = 0.5  # "while the LR is large": at least half the run's largest LR
HORIZ_LEARNED = 0.10  # the model had learned: training loss 10% below its first value


@dataclasses.dataclass(frozen=True)
class Finding:
    """One reading of the curves; `evidence` holds the numbers that led to it.

    Attributes:
      kind: one of `KINDS` ("diverged", "unstable", "overfitting", ...).
      severity: "info", "warning" or "error".
      message: the reading in words, with what to change.
      evidence: the numbers it rests on.
      step: the step it refers to, or None.

    Raises:
      ConfigError: `kind` or `severity` is unknown.

    Examples:
      >>> from hparams_jax.diagnose import Finding
      >>> f = Finding("overfitting", "warning", "the test loss rose", {"rise": 0.2}, step=800)
      >>> f.to_dict()["evidence"], f.step
      ({'rise': 0.2}, 800)
    """

    kind: str
    severity: str
    message: str
    evidence: dict[str, Any]
    step: int | None = None

    def __post_init__(self):
        v.one_of("kind", self.kind, KINDS)
        v.one_of("severity", self.severity, SEVERITIES)

    def to_dict(self) -> dict[str, Any]:
        """The finding as a JSON-ready dict (non-finite numbers as strings)."""
        return {"kind": self.kind, "severity": self.severity, "message": self.message,
                "evidence": _plain(self.evidence), "step": self.step}


@dataclasses.dataclass
class Diagnosis:
    """The findings of `diagnose`, most important first via `verdict`.

    Attributes:
      findings: the `Finding`s, in the order they were read.

    Examples:
      >>> from hparams_jax.diagnose import Diagnosis, Finding
      >>> d = Diagnosis([Finding("underfitting", "warning", "still falling", {}),
      ...                Finding("unstable", "warning", "spikes", {})])
      >>> d.verdict
      'unstable'
    """

    findings: list[Finding]

    @property
    def verdict(self) -> str:
        """The most important finding's kind (order of `KINDS`); "none" without findings."""
        if not self.findings:
            return "none"
        return min(self.findings, key=lambda f: KINDS.index(f.kind)).kind

    def to_dict(self) -> dict[str, Any]:
        """The verdict and the findings as a JSON-ready dict."""
        return {"verdict": self.verdict, "findings": [f.to_dict() for f in self.findings]}

    def text(self) -> str:
        """The verdict, then one line per finding."""
        lines = [f"verdict: {self.verdict}"]
        for f in self.findings:
            at = "" if f.step is None else f" (step {f.step})"
            lines.append(f"[{f.severity}] {f.kind}{at}: {f.message}")
        return "\n".join(lines)


def _plain(x: Any) -> Any:
    """JSON-ready copy: NumPy scalars to Python, non-finite floats as "nan"/"inf" strings."""
    if isinstance(x, dict):
        return {k: _plain(y) for k, y in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(y) for y in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return repr(x)
    return x


def _num(x: float) -> float:
    """A float to 6 significant digits, for readable evidence."""
    return float(f"{float(x):.6g}")


def check_member(history, member: int) -> int:
    """`member` must index one of `history`'s sweep members.

    Args:
      history: a `History`.
      member: the index of a sweep member.

    Returns:
      `member` as an int.

    Raises:
      ConfigError: `member` is not an integer in [0, history.num_members).

    Examples:
      >>> from hparams_jax.diagnose import check_member
      >>> from hparams_jax.train import History
      >>> check_member(History([{"kind": "train", "step": 1, "member": 1}]), 1)
      1
    """
    n = history.num_members
    ok = isinstance(member, numbers.Integral) and not isinstance(member, bool) and 0 <= member < n
    v.check("member", member, ok, f"an integer in [0, {n}) (the history has {n} member(s))")
    return int(member)


@dataclasses.dataclass
class _Curves:
    step: np.ndarray
    loss: np.ndarray
    lr: np.ndarray
    ev_step: np.ndarray
    ev_epoch: np.ndarray
    ev_loss: np.ndarray
    ev_acc: np.ndarray


def _curves(history, member: int) -> _Curves:
    tr, ev = history.train(member), history.eval(member)

    def col(d, key):
        n = len(next(iter(d.values()))) if d else 0
        return np.asarray(d.get(key, np.full(n, np.nan)), dtype=float)

    return _Curves(col(tr, "step"), col(tr, "train_loss"),
                   col(tr, "learning_rate"), col(ev, "step"), col(ev, "epoch"),
                   col(ev, "test_loss"), col(ev, "test_accuracy"))


# --- curve arithmetic ----------------------------------------------------------------------

def _trend(x: np.ndarray, window: int = NOISE_WINDOW) -> np.ndarray:
    """Running median (edge-padded): follows a fall exactly and ignores single spikes."""
    window = min(window, len(x))
    window -= 1 - window % 2  # odd, so the median is centred
    padded = np.pad(x, window // 2, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, window), axis=1)


def _noise(x: np.ndarray) -> float:
    """Robust standard deviation of the noise, from the second differences (which cancel a
    locally linear trend; for white noise their std is sqrt(6) x the noise's)."""
    d2 = np.diff(x, 2)
    return float(1.4826 * np.median(np.abs(d2)) / np.sqrt(6)) if len(d2) else 0.0


def _tail(step: np.ndarray, x: np.ndarray) -> dict[str, float]:
    """Least-squares line through the last TAIL_FRACTION of the steps (at least 3 points):
    where it starts, its fall across the tail and that fall as a share of the whole fall."""
    idx = np.flatnonzero(step >= step[-1] - TAIL_FRACTION * (step[-1] - step[0]))
    idx = idx if len(idx) >= 3 else np.arange(len(step))[-3:]
    slope, icpt = np.polyfit(step[idx], x[idx], 1)
    span = step[idx[-1]] - step[idx[0]]
    drop = -slope * span
    total = _trend(x)[0] - (slope * step[-1] + icpt)
    spread = np.sqrt(np.sum((step[idx] - step[idx].mean()) ** 2))
    return {"tail_start_step": int(step[idx[0]]), "tail_drop": _num(drop),
            "tail_drop_se": _num(_noise(x) * span / spread),
            "tail_share": _num(drop / total) if total > 0 else 0.0, "final": _num(x[-1])}


def _fall(t: dict[str, float]) -> str:
    """How the curve ends: "clear" (a real share of the whole fall, beyond 2 standard errors),
    "possible" (a real share, within the noise) or "no"."""
    if t["tail_drop"] <= 0 or t["tail_share"] < UNDERFIT_TAIL_SHARE:
        return "no"
    return "clear" if t["tail_drop"] > TREND_T * t["tail_drop_se"] else "possible"


def _rose(rise: float, level: float, x: np.ndarray) -> bool:
    """A rise of OVERFIT_RISE x `level` that also beats the noise of `x`."""
    return rise > max(OVERFIT_RISE * level, NOISE_K * _noise(x))


def _lr_at(c: _Curves, steps) -> np.ndarray:
    return np.interp(steps, c.step, c.lr) if len(c.step) else np.full(np.shape(steps), np.nan)


# --- readings ------------------------------------------------------------------------------

def _diverged(c: _Curves) -> list[Finding]:
    """Non-finite loss (training or test) or a training loss DIVERGE_FACTOR x its early value."""
    early = float(np.median(c.loss[np.isfinite(c.loss)][:EARLY_POINTS])) \
        if np.isfinite(c.loss).any() else math.nan
    bad = [(int(c.step[i]), "training loss", float(c.loss[i]))
           for i in np.flatnonzero(~np.isfinite(c.loss))[:1]]
    bad += [(int(c.ev_step[i]), "test loss", float(c.ev_loss[i]))
            for i in np.flatnonzero(~np.isfinite(c.ev_loss))[:1]]
    bad += [(int(c.step[i]), "training loss", float(c.loss[i]))
            for i in np.flatnonzero(c.loss > DIVERGE_FACTOR * early)[:1]]
    if not bad:
        return []
    step, metric, value = min(bad)
    before = c.loss[(c.step < step) & np.isfinite(c.loss)]
    lr = float(_lr_at(c, step))
    what = (f"became {value}" if not math.isfinite(value)
            else f"reached {value:.4g}, over {DIVERGE_FACTOR:g}x its early value {early:.4g}")
    msg = (f"diverged at step {step}: the {metric} {what} (learning rate {lr:.4g}). Lower max_lr "
           "or the weight decay; the range test's max_lr is the largest LR that still trains "
           "(Sec. 4.1).")
    return [Finding("diverged", "error", msg, {
        "step": step, "metric": metric, "value": value, "early_train_loss": _num(early),
        "last_finite_train_loss": _num(before[-1]) if len(before) else None,
        "learning_rate": _num(lr)}, step)]


def _spikes(c: _Curves) -> list[Finding]:
    """A training loss that jumps SPIKE_JUMP off its trend at many rows."""
    if len(c.loss) < MIN_TRAIN_POINTS:
        return []
    trend = _trend(c.loss)
    jump = np.abs(c.loss - trend) / np.maximum(np.abs(trend), SPIKE_FLOOR * np.abs(trend[0]))
    spikes = np.flatnonzero(jump > SPIKE_JUMP)
    if len(spikes) < max(UNSTABLE_MIN_SPIKES, UNSTABLE_FRACTION * len(c.loss)):
        return []
    worst = spikes[np.argmax(jump[spikes])]
    msg = (f"the training loss jumps more than {SPIKE_JUMP:.0%} off its trend at {len(spikes)} "
           f"of {len(c.loss)} rows (worst {c.loss[worst]:.4g} vs {trend[worst]:.4g} at step "
           f"{int(c.step[worst])}): the LR is likely too large for this batch size and "
           "momentum (Sec. 4.1-4.3); lower max_lr or use a larger batch.")
    return [Finding("unstable", "warning", msg, {
        "pattern": "spikes", "spikes": len(spikes), "rows": len(c.loss),
        "spike_steps": [int(s) for s in c.step[spikes][:10]],
        "worst_step": int(c.step[worst]), "worst_jump": _num(jump[worst]),
        "median_jump": _num(np.median(jump))}, int(c.step[spikes[0]]))]


def _test_rise(c: _Curves) -> list[Finding]:
    """Test loss up from its minimum: overfitting while the training loss does not rise,
    instability when it rises too (Sec. 3, Figs. 2-3)."""
    y, trend = c.ev_loss, _trend(c.ev_loss, 3)
    i_min = int(np.argmin(trend))
    after = y[i_min + 1:]
    if len(after) < 2:
        return []
    y_min, end = float(trend[i_min]), float(np.median(after[-3:]))
    rise = end - y_min
    if not _rose(rise, y_min, y):
        return []
    step = int(c.ev_step[i_min])
    train = np.interp([step, c.step[-1]], c.step, _trend(c.loss))
    ev = {"onset_step": step, "onset_epoch": _num(c.ev_epoch[i_min]),
          "min_test_loss": _num(y_min), "final_test_loss": _num(end), "rise": _num(rise),
          "rise_relative": _num(rise / y_min), "train_loss_at_onset": _num(train[0]),
          "train_loss_final": _num(train[1])}
    if np.isfinite(c.ev_acc).any():
        ev |= {"test_accuracy_at_onset": _num(c.ev_acc[i_min]),
               "test_accuracy_final": _num(c.ev_acc[-1])}
    if not _rose(train[1] - train[0], train[0], c.loss):
        msg = (f"the test loss rose {rise / y_min:.0%} from its minimum {y_min:.4g} at step "
               f"{step} (epoch {c.ev_epoch[i_min]:.3g}) while the training loss did not rise "
               f"({train[0]:.4g} -> {train[1]:.4g}): overfitting (Sec. 3, Figs. 2-3). "
               "Regularise more (larger weight decay, larger LR or smaller batch) or stop at "
               "the minimum.")
        return [Finding("overfitting", "warning", msg, ev, step)]
    msg = (f"the test loss rose {rise / y_min:.0%} since step {step} and the training loss "
           f"rose too ({train[0]:.4g} -> {train[1]:.4g}) without diverging: the LR is likely "
           "too large (Sec. 4.1); lower max_lr.")
    return [Finding("unstable", "warning", msg, {"pattern": "both_rising", **ev}, step)]


def _underfitting(c: _Curves) -> list[Finding]:
    """Both losses still falling at the end, or never having fallen (Sec. 3)."""
    trend = _trend(c.loss)
    first, last = float(trend[0]), float(trend[-1])
    if last > (1 - NOT_LEARNING_DROP) * first:
        msg = (f"the losses hardly fell (training {first:.4g} -> {last:.4g}): the model is not "
               "learning. Check the LR with a range test (Sec. 4.1), the data and the labels.")
        return [Finding("underfitting", "warning", msg, {
            "pattern": "not_learning", "train_loss_first": _num(first),
            "train_loss_last": _num(last)})]
    train, test = _tail(c.step, c.loss), _tail(c.ev_step, c.ev_loss)
    falls = {"training": _fall(train), "test": _fall(test)}
    if "no" in falls.values():
        return []
    lr0, lr1 = _lr_at(c, [train["tail_start_step"], c.step[-1]])
    annealing = lr1 * ANNEAL_FACTOR <= lr0
    unsure = [name for name, fall in falls.items() if fall == "possible"]
    msg = (f"both losses are still falling at the end: since step {test['tail_start_step']} the "
           f"test loss fell {test['tail_drop']:.4g} ({test['tail_share']:.0%} of its whole fall) "
           f"and the training loss {train['tail_drop']:.4g}. A continuously decreasing test loss "
           "means underfitting (Sec. 3): train longer, use a larger LR or less regularisation.")
    if unsure:
        msg += (f" The {' and '.join(unsure)} loss's fall is within {TREND_T:g} standard errors "
                "of its noise: evaluate more examples or more often to be sure.")
    if annealing:
        msg += (f" The LR fell {lr0:.3g} -> {lr1:.3g} meanwhile, which explains part of the fall "
                "(1cycle's annihilation).")
    return [Finding("underfitting", "info" if annealing or unsure else "warning", msg, {
        "pattern": "still_falling", "train": train, "test": test, "falls": falls,
        "learning_rate_tail_start": _num(lr0), "learning_rate_final": _num(lr1)})]


def _flat(step: np.ndarray, y: np.ndarray, run_span: float, noise: float) -> bool:
    """Within HORIZ_BAND of its median (or HORIZ_NOISE_BAND x the noise), with a fitted change
    of at most HORIZ_SLOPE of the level per tenth of the run (a slow steady fall is not flat)."""
    level = np.median(y)
    if np.ptp(y) > max(HORIZ_BAND * level, HORIZ_NOISE_BAND * noise):
        return False
    return abs(np.polyfit(step, y, 1)[0]) * 0.1 * run_span <= HORIZ_SLOPE * level


def _horizontal(c: _Curves) -> list[Finding]:
    """The longest early stretch of flat test loss while the LR is large (Sec. 3, Figs. 3-4)."""
    s0, s1 = c.ev_step[0], c.ev_step[-1]
    lr = _lr_at(c, c.ev_step)
    ok = (c.ev_step - s0 <= HORIZ_EARLY * (s1 - s0)) & (lr >= HORIZ_LR_FRACTION * np.max(c.lr))
    learned = np.interp(c.ev_step, c.step, c.loss) <= (1 - HORIZ_LEARNED) * c.loss[0]
    noise = _noise(c.ev_loss)
    stretches = []
    for i in np.flatnonzero(ok & learned):
        stop = i + int(np.argmin(np.append(ok[i:], False)))  # end of the run of `ok` from i
        stretches += [(c.ev_step[j] - c.ev_step[i], i, j)
                      for j in range(i + HORIZ_MIN_POINTS - 1, stop)
                      if _flat(c.ev_step[i:j + 1], c.ev_loss[i:j + 1], s1 - s0, noise)]
    if not stretches:
        return []
    span, i, j = max(stretches)
    if span < HORIZ_MIN_SPAN * (s1 - s0):
        return []
    level = float(np.median(c.ev_loss[i:j + 1]))
    lr_low, lr_high = lr[i:j + 1].min(), lr[i:j + 1].max()
    msg = (f"the test loss is horizontal at about {level:.4g} from step {int(c.ev_step[i])} to "
           f"{int(c.ev_step[j])} ({span / (s1 - s0):.0%} of the run) while the LR is large "
           f"({lr_low:.3g}-{lr_high:.3g}): an early positive clue of well-balanced "
           "regularisation (Sec. 3, Figs. 3-4).")
    return [Finding("horizontal_test_loss", "info", msg, {
        "start_step": int(c.ev_step[i]), "end_step": int(c.ev_step[j]), "level": _num(level),
        "band": _num(np.ptp(c.ev_loss[i:j + 1]) / level), "points": j - i + 1,
        "learning_rate_range": [_num(lr_low), _num(lr_high)]}, int(c.ev_step[i]))]


def _insufficient(c: _Curves) -> Finding:
    parts = []
    if len(c.ev_step) < MIN_EVALS:
        parts.append(f"{len(c.ev_step)} test evaluation(s) (need {MIN_EVALS})")
    if len(c.step) < MIN_TRAIN_POINTS:
        parts.append(f"{len(c.step)} training row(s) (need {MIN_TRAIN_POINTS})")
    msg = (f"only {' and '.join(parts)}: too few to read under- or over-fitting; evaluate more "
           "often (eval_every, log_every) or train longer.")
    ev: dict[str, Any] = {"evals": len(c.ev_step), "train_rows": len(c.step)}
    if len(c.step) >= MIN_TRAIN_POINTS:
        ev["train"] = _tail(c.step, c.loss)
        if _fall(ev["train"]) == "clear":
            msg += (f" The training loss is still falling at the end (by "
                    f"{ev['train']['tail_drop']:.4g} over the last {TAIL_FRACTION:.0%}).")
    return Finding("insufficient_data", "info", msg, ev)


def _healthy(c: _Curves) -> Finding:
    train, test = _tail(c.step, c.loss), _tail(c.ev_step, c.ev_loss)
    acc = f", test accuracy {c.ev_acc[-1]:.4g}" if np.isfinite(c.ev_acc[-1]) else ""
    msg = (f"converged: the losses have flattened (over the last {TAIL_FRACTION:.0%}: training "
           f"{-train['tail_drop']:+.3g}, test {-test['tail_drop']:+.3g}) and the test loss does "
           f"not rise; final test loss {test['final']:.4g}{acc}.")
    return Finding("healthy", "info", msg, {"train": train, "test": test,
                                           "test_accuracy_final": _num(c.ev_acc[-1])})


def _stopped_diverged(history, member: int, c: _Curves) -> list[Finding]:
    """Divergence the run itself recorded (`summary.json`: the engine stops a member at its
    first non-finite loss), which the logged averages may not show (a run that blew up within
    its first log interval logs one finite but huge row)."""
    summary = history.summary or {}
    members = summary.get("members") or []
    if not (member < len(members) and members[member].get("diverged")):
        return []
    step = int(c.step[-1]) if len(c.step) else summary.get("step")
    msg = (f"diverged: the run stopped this member on a non-finite loss (summary.json: status "
           f"{summary.get('status')!r}, last logged step {step}). Lower max_lr or the weight "
           "decay; the range test's max_lr is the largest LR that still trains (Sec. 4.1).")
    return [Finding("diverged", "error", msg, {"source": "summary", "step": step,
                                               "status": summary.get("status")}, step)]


def diagnose(history, *, member: int = 0) -> Diagnosis:
    """Reads `history`'s curves for `member` (Smith 2018, Sec. 3): divergence, instability,
    over- and under-fitting, an early horizontal test loss, or a healthy converged run. A
    member the run's summary records as diverged is called so even when its curves are too
    short to show it.

    Args:
      history: the run's `History` (from `fit` or `History.load`); its training rows need
        `step` and `train_loss` (and `learning_rate` for the readings that depend on it), its
        evaluation rows `step` and `test_loss`.
      member: the sweep member to read.

    Returns:
      The `Diagnosis`: its `verdict` and its `findings`, each with its evidence.

    Raises:
      ConfigError: `member` is not one of the history's members.

    Examples:
      A test loss that reaches its minimum and rises while the training loss keeps falling
      (Fig. 3's overfitting):

      >>> from hparams_jax.diagnose import diagnose
      >>> from hparams_jax.train import History
      >>> train = [{"kind": "train", "step": s, "train_loss": 2.0 * 0.9 ** (s / 10),
      ...           "learning_rate": 0.1} for s in range(10, 210, 10)]
      >>> test_loss = (1.0, 0.7, 0.55, 0.5, 0.52, 0.58, 0.66, 0.75, 0.85, 0.95)
      >>> test = [{"kind": "eval", "step": s, "test_loss": loss}
      ...         for s, loss in zip(range(20, 220, 20), test_loss)]
      >>> d = diagnose(History(train + test))
      >>> d.verdict, [f.kind for f in d.findings]
      ('overfitting', ['overfitting'])
    """
    member = check_member(history, member)
    c = _curves(history, member)
    findings = _diverged(c) or _stopped_diverged(history, member, c)
    if findings:  # the rest would read a broken curve
        return Diagnosis(findings)
    findings += _spikes(c)
    if len(c.ev_step) < MIN_EVALS or len(c.step) < MIN_TRAIN_POINTS:
        return Diagnosis(findings + [_insufficient(c)])
    rise = _test_rise(c)
    findings += rise + _underfitting(c) + ([] if rise else _horizontal(c))
    if not any(f.kind in PROBLEMS for f in findings):
        findings.append(_healthy(c))
    return Diagnosis(findings)
