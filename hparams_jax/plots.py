"""Matplotlib figures: schedules (Smith 2018, Fig. 8-style policy plots), LR range tests and their
families (Sec. 4.1, Figs. 9-11), training curves with their diagnosis (Sec. 3) and run
comparisons.

Each function returns a `matplotlib.figure.Figure` (a notebook shows it: `display(fig)`, or as a
cell's last value) and, given a `path`, also saves it there as a PNG. The figures are built
without pyplot, so this module leaves matplotlib's backend and pyplot's figure list alone: it
works on machines without a screen and keeps a notebook's inline backend.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from hparams_jax import _extras
from hparams_jax._validate import one_of
from hparams_jax.diagnose import check_member
from hparams_jax.errors import ConfigError

try:
    import matplotlib
    from matplotlib.figure import Figure
except ModuleNotFoundError as _err:  # matplotlib comes with the train extra
    _extras.reraise(_err, "hparams_jax.plots")

if TYPE_CHECKING:
    from hparams_jax.train.metrics import History


DPI = 120  # of the PNG files and of the figures a notebook shows


def _save(fig: Figure, path: str | Path | None) -> Figure:
    """`fig`, saved as a PNG at `path` first when one is given."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return fig


class _Figure(Figure):
    """A `Figure` that a notebook shows as a PNG whichever backend is active: figures made
    without pyplot get no image form from the inline backend unless pyplot was imported."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
        return buffer.getvalue()


def _figure(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1, **kw):
    """A figure that pyplot does not hold, and its axes (as `plt.subplots` returns them)."""
    fig = _Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kw)


def plot_schedules(curves: Mapping[str, np.ndarray], path: str | Path | None = None, *,
                   title: str = "Hyper-parameter schedules") -> Figure:
    """One panel per hyper-parameter (`learning_rate`, `momentum`, `weight_decay`, ...) against
    the training step; `curves` maps a name to its values at steps 0, 1, 2, ..."""
    fig, axes = _figure((7, 2.4 * len(curves)), len(curves), 1, sharex=True, squeeze=False)
    for ax, (name, values) in zip(axes[:, 0], curves.items()):
        values = np.asarray(values)
        ax.plot(np.arange(len(values)), values)
        ax.set_ylabel(name.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("training step")
    return _save(fig, path)


# --- shared pieces -------------------------------------------------------------------------

YLIM_FACTOR = 3.0  # loss axes stop at 3x a reference loss: a diverging tail would squash the rest
CAPTION_WIDTH = 120  # characters per caption line under a figure
# one colour per finding kind, none shared with the curves (blue, orange, purple, gray)
FINDING_COLOURS = {"diverged": "tab:red", "unstable": "tab:pink", "overfitting": "tab:brown",
                   "underfitting": "tab:olive", "insufficient_data": "black",
                   "healthy": "tab:cyan", "horizontal_test_loss": "tab:green"}
ALTERNATIVE_COLOURS = ("tab:purple", "tab:brown", "tab:gray", "tab:olive", "tab:cyan")


def _finite(*arrays) -> np.ndarray:
    values = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays])
    return values[np.isfinite(values)]


def _first_finite(x) -> float:
    values = _finite(x)
    return float(values[0]) if len(values) else np.nan


def _clip_loss_axis(ax, values, top: float) -> None:
    """Stops the y-axis at `top` when the data go beyond it (a diverging tail)."""
    v = _finite(*values)
    if not len(v) or not np.isfinite(top) or v.max() <= top:
        return
    low = v.min()
    pad = 0.05 * (top - low)
    ax.set_ylim(low - pad, top + pad)


def _log_x(log_x: bool | None, results) -> bool:
    """`log_x=None`: a log axis when every result's LR ramp was exponential."""
    if log_x not in (None, True, False):
        raise ConfigError(f"log_x={log_x!r} is not allowed: log_x must be None (log axis for "
                          "exponential ramps), True or False.")
    return all(r.mode == "exp" for r in results) if log_x is None else log_x


def _caption(fig, lines) -> None:
    """Wrapped text under the axes (suggestion reasons, diagnosis findings)."""
    wrapped = [w for line in lines for w in textwrap.wrap(line, CAPTION_WIDTH,
                                                          subsequent_indent="    ")]
    if wrapped:
        fig.text(0.01, 0.0, "\n".join(wrapped), va="top", ha="left", fontsize=8,
                 family="monospace")


def _finish(axes, *, xlabel: str, log_x: bool = False) -> None:
    for ax in axes:
        ax.grid(alpha=0.3)
        if log_x:
            ax.set_xscale("log")
    axes[-1].set_xlabel(xlabel)


# --- LR range tests (Smith 2018, Sec. 4.1, Figs. 9-11) -------------------------------------------

def _range_loss_top(results) -> float:
    """The start of the smoothed loss or YLIM_FACTOR x its minimum, whichever is higher."""
    tops = [max(_first_finite(r.smoothed_loss), YLIM_FACTOR * np.min(_finite(r.smoothed_loss)))
            for r in results if len(_finite(r.smoothed_loss))]
    return max(tops, default=np.nan)


def _mark_suggestion(axes, s) -> None:
    """Vertical lines at the suggested min_lr / max_lr and, dotted, at the alternatives (none
    where the reading gives no suggestion)."""
    if s.max_lr is None:
        return
    method = "\n".join(textwrap.wrap(s.method, 40))
    lines = [(s.max_lr, "tab:red", "-", f"max_lr = {s.max_lr:.3g}\n{method}"),
             (s.min_lr, "tab:red", "--", f"min_lr = {s.min_lr:.3g}")]
    lines += [(a.lr, c, ":", f"{a.name}: {a.lr:.3g}")
              for a, c in zip(s.alternatives, ALTERNATIVE_COLOURS)]
    for i, ax in enumerate(axes):
        for x, colour, style, label in lines:
            ax.axvline(x, color=colour, ls=style, lw=1.4, label=label if i == 0 else None)


def plot_range_test(result, path: str | Path | None = None, *,
                    log_x: bool | None = None) -> Figure:
    """One LR range test (Sec. 4.1): training loss (raw and smoothed) and held-out loss
    against the LR, held-out accuracy below, and the suggested bounds marked."""
    log_x = _log_x(log_x, [result])
    has_acc = len(_finite(result.eval_accuracy)) > 0
    fig, axes = _figure((9, 7 if has_acc else 4.5), 2 if has_acc else 1, 1, sharex=True,
                        squeeze=False, gridspec_kw={"height_ratios": [2, 1] if has_acc else [1]})
    axes = axes[:, 0]
    ax = axes[0]
    ax.plot(result.learning_rate, result.train_loss, color="tab:blue", alpha=0.3, lw=0.8,
            label="training loss (raw)")
    ax.plot(result.learning_rate, result.smoothed_loss, color="tab:blue", lw=2,
            label="training loss (smoothed)")
    if len(_finite(result.eval_loss)):
        ax.plot(result.eval_learning_rate, result.eval_loss, "o", color="tab:orange", ms=5,
                label="held-out loss")
    ax.set_ylabel("loss")
    _clip_loss_axis(ax, [result.train_loss, result.smoothed_loss, result.eval_loss],
                    _range_loss_top([result]))
    if has_acc:
        axes[1].plot(result.eval_learning_rate, result.eval_accuracy, "o-", color="tab:green",
                     ms=5, label="held-out accuracy")
        axes[1].set_ylabel("accuracy")
        axes[1].legend(loc="best", fontsize=8)
    suggestion = result.suggest()
    _mark_suggestion(axes, suggestion)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    _finish(axes, xlabel="learning rate", log_x=log_x)
    label = f": {result.label}" if result.label else ""
    ax.set_title(f"LR range test{label} ({result.mode} ramp)")
    fig.tight_layout()
    found = suggestion.max_lr is not None
    _caption(fig, [f"{'suggestion' if found else 'no suggestion'}: "
                   f"{suggestion.reason}"]
             + [f"warning: {w}" for w in suggestion.warnings])
    return _save(fig, path)


def _colours(n: int):
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "viridis"]
    return [cmap(i if n <= 10 else i / max(n - 1, 1)) for i in range(n)]


def plot_family(results, path: str | Path | None = None, *, log_x: bool | None = None,
                title: str | None = None) -> Figure:
    """Range tests overlaid, one colour per result (Figs. 9-11: weight decays, momenta, batch
    sizes): smoothed training loss, held-out loss and held-out accuracy against the LR; a
    triangle marks each suggested max_lr."""
    results = list(results)
    if not results:
        raise ConfigError("results=[] is not allowed: results must hold at least one range test.")
    log_x = _log_x(log_x, results)
    panels = ["smoothed_loss"] + [k for k in ("eval_loss", "eval_accuracy")
                                  if any(len(_finite(getattr(r, k))) for r in results)]
    names = {"smoothed_loss": "training loss\n(smoothed)", "eval_loss": "held-out loss",
             "eval_accuracy": "held-out accuracy"}
    fig, axes = _figure((9, 2.2 + 2.4 * len(panels)), len(panels), 1, sharex=True,
                        squeeze=False)
    axes = axes[:, 0]
    for i, (r, colour) in enumerate(zip(results, _colours(len(results)))):
        max_lr = r.suggest().max_lr
        shown = "no suggestion" if max_lr is None else f"max_lr {max_lr:.3g}"
        label = f"{r.label or f'test {i}'} ({shown})"
        axes[0].plot(r.learning_rate, r.smoothed_loss, color=colour, lw=1.8, label=label)
        if max_lr is not None:
            axes[0].plot([max_lr], [np.interp(max_lr, r.learning_rate, r.smoothed_loss)], "v",
                         color=colour, ms=9, mec="black")
        for ax, key in zip(axes[1:], panels[1:]):
            ax.plot(r.eval_learning_rate, getattr(r, key), "o-", color=colour, ms=4)
    for ax, key in zip(axes, panels):
        ax.set_ylabel(names[key])
    top = _range_loss_top(results)
    _clip_loss_axis(axes[0], [r.smoothed_loss for r in results], top)
    if "eval_loss" in panels:
        _clip_loss_axis(axes[1], [r.eval_loss for r in results], top)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                   title="max_lr marked by a triangle", title_fontsize=8)
    _finish(axes, xlabel="learning rate", log_x=log_x)
    axes[0].set_title(title or "LR range tests")
    fig.tight_layout()
    return _save(fig, path)


# --- training runs ---------------------------------------------------------------------------

def _mark_findings(axes, diagnosis, train) -> None:
    """A dashed line, coloured by kind, at each finding that has a step; a shaded band
    over a finding's stretch (`evidence` with `start_step` and `end_step`)."""
    def epoch(step):
        return float(np.interp(step, train["step"], train["epoch"]))

    for f in diagnosis.findings:
        if f.step is None:
            continue
        colour = FINDING_COLOURS[f.kind]
        for i, ax in enumerate(axes):
            ax.axvline(epoch(f.step), color=colour, ls="--", lw=1.3,
                       label=f"{f.kind} (step {f.step})" if i == 0 else None)
            if "end_step" in f.evidence:
                ax.axvspan(epoch(f.evidence["start_step"]), epoch(f.evidence["end_step"]),
                           color=colour, alpha=0.08)


def plot_training(history, path: str | Path | None = None, *, diagnosis=None, member: int = 0,
                  title: str | None = None) -> Figure:
    """A run's curves against the epoch (Sec. 3: read the test loss): losses, accuracies, and
    the learning rate with the momentum (twin axis); `diagnosis` findings marked and listed."""
    member = check_member(history, member)
    train, ev = history.train(member), history.eval(member)
    if not train:
        raise ConfigError(f"history has no training rows for member={member}: nothing to plot.")
    fig, axes = _figure((9, 9), 3, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1.3, 1]})
    ax = axes[0]
    ax.plot(train["epoch"], train["train_loss"], color="tab:blue", label="training loss")
    if ev:
        ax.plot(ev["epoch"], ev["test_loss"], "o-", color="tab:orange", ms=4, label="test loss")
    ax.set_ylabel("loss")
    _clip_loss_axis(ax, [train["train_loss"], ev.get("test_loss", [])],
                    YLIM_FACTOR * _first_finite(train["train_loss"]))
    metric = _metric_name(train)  # accuracy, or a task's own metric
    if metric:
        axes[1].plot(train["epoch"], train[f"train_{metric}"], color="tab:blue", alpha=0.6,
                     label=f"training {metric}")
        if ev and f"test_{metric}" in ev:
            axes[1].plot(ev["epoch"], ev[f"test_{metric}"], "o-", color="tab:orange", ms=4,
                         label=f"test {metric}")
        axes[1].set_ylabel(metric)
        axes[1].legend(loc="lower right", fontsize=8)
    _plot_hparams(axes[2], train)
    if diagnosis is not None:
        _mark_findings(axes, diagnosis, train)
    ax.legend(loc="upper right", fontsize=8)
    _finish(axes, xlabel="epoch")
    name = title or "Training curves"
    name += f" (member {member})" if history.num_members > 1 else ""
    name += f": {diagnosis.verdict}" if diagnosis is not None else ""
    ax.set_title(name)
    fig.tight_layout()
    if diagnosis is not None:
        _caption(fig, diagnosis.text().splitlines())
    return _save(fig, path)


def _metric_name(train) -> str | None:
    """"accuracy" where the rows have it, else the first other metric of a task's loss."""
    names = [k[len("train_"):] for k in train if k.startswith("train_") and k != "train_loss"]
    return "accuracy" if "accuracy" in names else (names[0] if names else None)


def _plot_hparams(ax, train) -> None:
    """Learning rate (left axis) and momentum (right axis) against the epoch."""
    lines = ax.plot(train["epoch"], train["learning_rate"], color="tab:purple",
                    label="learning rate")
    ax.set_ylabel("learning rate")
    twin = ax.twinx()
    lines += twin.plot(train["epoch"], train["momentum"], color="tab:gray", ls="--",
                       label="momentum")
    twin.set_ylabel("momentum")
    # above the panel: inside, the twin axis would draw its line over the legend
    twin.legend(lines, [line.get_label() for line in lines], loc="lower right",
                bbox_to_anchor=(1.0, 1.0), ncol=2, fontsize=8, frameon=False)


TRAIN_METRICS = ("train_loss", "train_accuracy", "learning_rate", "momentum", "weight_decay")
EVAL_METRICS = ("test_loss", "test_accuracy")


def plot_comparison(histories: Mapping[str, History], path: str | Path | None = None, *,
                    metric: str = "test_accuracy", title: str | None = None) -> Figure:
    """Several runs' `metric` against the epoch, overlaid (e.g. 1cycle against a baseline, as
    in the paper's tables); the legend gives each run's final value."""
    one_of("metric", metric, TRAIN_METRICS + EVAL_METRICS)
    if not histories:
        raise ConfigError("histories={} is not allowed: histories must map at least one run "
                          "name to its History.")
    fig, ax = _figure((9, 5))
    curves = []
    for (name, h), colour in zip(histories.items(), _colours(len(histories))):
        d = h.eval() if metric in EVAL_METRICS else h.train()
        x, y = d.get("epoch", np.array([])), d.get(metric, np.array([]))
        label = f"{name} (final {y[-1]:.4g})" if len(y) else f"{name} (no data)"
        ax.plot(x, y, "o-" if metric in EVAL_METRICS else "-", color=colour, ms=4, label=label)
        curves.append(y)
    starts = _finite([_first_finite(y) for y in curves])
    if metric.endswith("_loss") and len(starts):
        _clip_loss_axis(ax, curves, YLIM_FACTOR * starts.max())
    ax.set_ylabel(metric.replace("_", " "))
    ax.legend(loc="best", fontsize=9)
    _finish([ax], xlabel="epoch")
    ax.set_title(title or f"{metric.replace('_', ' ')} by run")
    fig.tight_layout()
    return _save(fig, path)


def _mean_curve(curves) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Members' (epoch, value) curves on their common evaluation epochs: epoch, mean, std."""
    n = min(len(e) for e, _ in curves)
    epoch = curves[0][0][:n]
    values = np.stack([v[:n] for _, v in curves])
    return epoch, values.mean(0), values.std(0)


def plot_epochs_to_target(curves: Mapping[str, list], path: str | Path | None = None, *,
                          groups: Mapping[str, list[str]], target: float | None,
                          epochs_to_target: Mapping[str, np.ndarray],
                          budgets: Mapping[str, float], title: str,
                          diverged: Mapping[str, list] = {}) -> Figure:
    """The super-convergence figure (Smith & Topin 2017; Smith 2018, Table 1): one panel per
    comparison with each setting's test accuracy against the epoch (mean over its runs, ±1
    std shaded), the baseline's final accuracy dashed and, where a setting reached it, a star
    at the mean epoch it did; a last panel with the epochs each setting needed to reach it
    beside the epochs it ran. Panels wrap three to a row.

    `curves` maps a setting to its runs' (epochs, accuracies) pairs; `diverged` maps a setting
    whose every run diverged to its runs' pairs, drawn dashed as they fell (to chance accuracy,
    below the axis), and marked "diverged" in the last panel."""
    if not curves:
        raise ConfigError("curves={} is not allowed: curves must map at least one setting to "
                          "its runs' curves.")
    names = list(curves) + [n for n in diverged if n not in curves]
    panels = len(groups) + 1
    cols = min(3, panels)
    rows = -(-panels // cols)
    fig, grid = _figure((4.8 * cols, 4.2 * rows), rows, cols, squeeze=False)
    axes = list(grid.flat)
    for ax in axes[panels:]:
        ax.set_visible(False)
    for ax, (group, members) in zip(axes, groups.items()):
        colour = dict(zip(members, _colours(len(members))))  # distinct within each panel
        finals = []
        for name in members:
            for k, (epoch, acc) in enumerate(diverged.get(name, [])):
                ax.plot(epoch, acc, "--", lw=1, color=colour[name], label=None if k else
                        f"{name} (every run diverged, by ep. {budgets[name]:.2g})")
            if not curves.get(name):
                continue
            epoch, mean, std = _mean_curve(curves[name])
            finals += list(mean[-1:])
            ax.plot(epoch, mean, "o-", ms=3, color=colour[name],
                    label=f"{name} ({mean[-1]:.4f})" if len(mean) else name)
            ax.fill_between(epoch, mean - std, mean + std, color=colour[name], alpha=0.2)
            hit = epochs_to_target.get(name, np.array([np.nan]))
            if target is not None and np.isfinite(hit).any():
                ax.plot([np.nanmean(hit)], [target], "*", ms=12, color=colour[name], mec="k",
                        zorder=5)
        if target is not None:
            ax.axhline(target, color="k", ls="--", lw=1, label=f"baseline final {target:.4f}")
            low = min([target - 0.15] + [f - 0.05 for f in finals])  # every run's end shows
            ax.set_ylim(max(0.0, low), min(1.0, target + 0.05))
        ax.set_title(group)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    ax = axes[panels - 1]
    colour = dict(zip(names, _colours(len(names))))
    y = np.arange(len(names))
    ax.barh(y, [budgets[n] for n in names], color="0.85", label="epochs run")
    reached = [np.nanmean(epochs_to_target[n]) if n in epochs_to_target
               and np.isfinite(epochs_to_target[n]).any() else np.nan for n in names]
    spread = [np.nanstd(epochs_to_target[n]) if np.isfinite(reached[i]) else 0.0
              for i, n in enumerate(names)]
    ax.barh(y, np.nan_to_num(reached), xerr=spread, color=[colour[n] for n in names],
            height=0.5, label="epochs to baseline's final accuracy")
    for i, r in enumerate(reached):
        if not np.isfinite(r):
            ax.text(0.02 * max(budgets.values()), i,
                    "diverged" if names[i] in diverged else "not reached", va="center",
                    fontsize=8)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("epochs")
    ax.set_title("epochs to the baseline's final accuracy")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
