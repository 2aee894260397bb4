"""Figures: each writes a readable PNG from small synthetic inputs, with its titles, labels and
legends; log axes follow the ramp; NaN and diverging tails neither crash nor squash the plot."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import matplotlib.figure
import matplotlib.text
import numpy as np
import pytest

from hparams_jax import plots
from hparams_jax.diagnose import diagnose
from hparams_jax.train import History

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclasses.dataclass
class Alternative:
    name: str
    lr: float
    reason: str


@dataclasses.dataclass
class Suggestion:
    max_lr: float
    min_lr: float
    method: str
    reason: str
    alternatives: list
    warnings: list


@dataclasses.dataclass
class FakeRangeTest:
    """The duck-typed interface the plots read from a range-test result."""

    learning_rate: np.ndarray
    train_loss: np.ndarray
    smoothed_loss: np.ndarray
    eval_learning_rate: np.ndarray
    eval_loss: np.ndarray
    eval_accuracy: np.ndarray
    mode: str = "linear"
    label: str = ""

    def suggest(self):
        lr = self.learning_rate[np.nanargmin(self.smoothed_loss)]
        return Suggestion(lr, lr / 10, "paper: largest LR before the loss worsens",
                          "smoothed loss lowest here", [Alternative("steepest", lr / 3, "r"),
                                                        Alternative("valley", lr / 2, "r")],
                          ["the loss was still falling"])


def range_test(mode="linear", label="weight_decay=1e-4", best=0.3, n=200, evals=True,
               tail=None):
    lr = np.linspace(0.001, 1.0, n) if mode == "linear" else np.geomspace(1e-4, 1.0, n)
    x = lr / (best if mode == "linear" else best / 10)
    loss = 2.3 - 1.8 * np.minimum(x, 1) + 3.0 * np.maximum(x - 1, 0) ** 2
    if tail is not None:
        loss[int(0.8 * n):] = tail
    smoothed = np.convolve(np.pad(loss, 5, mode="edge"), np.ones(11) / 11, mode="valid")
    idx = np.arange(9, n, 20) if evals else np.array([], int)
    return FakeRangeTest(lr, loss * 1.02, smoothed, lr[idx], loss[idx] + 0.1,
                         1 - loss[idx] / 3, mode, label)


def history(n=50, member=0, tail_nan=False):
    rows = []
    for i in range(1, n + 1):
        t = i / n
        loss = 0.2 + 2 * np.exp(-5 * t)
        rows.append({"kind": "train", "step": 10 * i, "epoch": t * 5, "member": member,
                     "train_loss": np.nan if tail_nan and t > 0.8 else loss,
                     "train_accuracy": 1 - loss / 3, "learning_rate": 0.1 * (1 - t),
                     "momentum": 0.85 + 0.1 * t, "weight_decay": 1e-4})
        if i % 5 == 0 and not (tail_nan and t > 0.8):
            rows.append({"kind": "eval", "step": 10 * i, "epoch": t * 5, "member": member,
                         "test_loss": loss + 0.2, "test_accuracy": 0.9 - loss / 4})
    return History(rows)


def shown(fig):
    """What a figure shows: its texts, x scales and y limits."""
    assert isinstance(fig, matplotlib.figure.Figure)
    return {"texts": [t.get_text() for t in fig.findobj(matplotlib.text.Text)],
            "xscales": [ax.get_xscale() for ax in fig.axes],
            "ylims": [ax.get_ylim() for ax in fig.axes]}


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 10_000


def has(texts, fragment):
    return any(fragment in t for t in texts)


def test_plot_range_test(tmp_path):
    path = tmp_path / "sub" / "rt.png"
    f = shown(plots.plot_range_test(range_test(), path))
    assert_png(path)
    texts = f["texts"]
    assert has(texts, "LR range test: weight_decay=1e-4 (linear ramp)")
    for fragment in ("learning rate", "loss", "accuracy", "training loss (smoothed)",
                     "held-out loss", "held-out accuracy", "max_lr = 0.3", "min_lr = 0.03",
                     "paper: largest LR", "steepest: 0.1", "valley: 0.15",
                     "warning: the loss was still falling"):
        assert has(texts, fragment), fragment
    assert set(f["xscales"]) == {"linear"}


def test_a_figure_without_a_path_is_not_saved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = shown(plots.plot_range_test(range_test()))
    assert has(f["texts"], "LR range test") and not any(tmp_path.iterdir())


def test_plot_range_test_log_x(tmp_path):
    figures = [shown(plots.plot_range_test(range_test(mode="exp"))),
               shown(plots.plot_range_test(range_test(mode="exp"), log_x=False)),
               shown(plots.plot_range_test(range_test(), log_x=True))]
    assert [set(f["xscales"]) for f in figures] == [{"log"}, {"linear"}, {"log"}]
    with pytest.raises(ValueError, match="log_x='yes'.*None"):
        plots.plot_range_test(range_test(), tmp_path / "d.png", log_x="yes")


def test_plot_range_test_diverging_tail_is_clipped(tmp_path):
    r = range_test(tail=1e4, label="")
    r.train_loss[-5:] = np.nan
    r.smoothed_loss[-3:] = np.inf
    f = shown(plots.plot_range_test(r, tmp_path / "rt.png"))
    assert_png(tmp_path / "rt.png")
    top = f["ylims"][0][1]
    assert 2.3 <= top <= 3.0  # the start of the curve, not the 1e4 tail
    assert has(f["texts"], "LR range test (linear ramp)")


def test_plot_range_test_without_evaluations(tmp_path):
    f = shown(plots.plot_range_test(range_test(evals=False), tmp_path / "rt.png"))
    assert_png(tmp_path / "rt.png")
    assert len(f["xscales"]) == 1  # no accuracy panel
    assert not has(f["texts"], "held-out")


def test_plot_family(tmp_path):
    results = [range_test(mode="exp", label=f"weight_decay={wd}", best=b)
               for wd, b in (("1e-5", 0.5), ("1e-4", 0.3), ("1e-3", 0.1))]
    results[2].smoothed_loss[-20:] = np.nan
    f = shown(plots.plot_family(results, tmp_path / "family.png", title="over weight_decay"))
    assert_png(tmp_path / "family.png")
    assert has(f["texts"], "over weight_decay")
    for wd in ("1e-5", "1e-4", "1e-3"):
        assert has(f["texts"], f"weight_decay={wd} (max_lr")
    for label in ("held-out loss", "held-out accuracy", "learning rate"):
        assert has(f["texts"], label)
    assert set(f["xscales"]) == {"log"} and len(f["xscales"]) == 3
    one = shown(plots.plot_family(results[:1], log_x=False))
    assert set(one["xscales"]) == {"linear"} and has(one["texts"], "LR range tests")
    with pytest.raises(ValueError, match="results"):
        plots.plot_family([], tmp_path / "none.png")


def test_plot_training_with_diagnosis(tmp_path):
    h = history(tail_nan=True)
    d = diagnose(h)
    assert d.verdict == "diverged"
    f = shown(plots.plot_training(h, tmp_path / "curves.png", diagnosis=d, title="LeNet"))
    assert_png(tmp_path / "curves.png")
    for fragment in ("LeNet: diverged", "training loss", "test loss", "test accuracy",
                     "learning rate", "momentum", "epoch", "verdict: diverged",
                     "diverged (step 410)"):
        assert has(f["texts"], fragment), fragment


def test_plot_training_members_and_plain(tmp_path):
    h = History(history().rows + history(member=1).rows)
    f = shown(plots.plot_training(h, tmp_path / "m1.png", member=1))
    assert_png(tmp_path / "m1.png")
    assert has(f["texts"], "Training curves (member 1)")
    assert not has(f["texts"], "verdict")
    for bad in (2, "0"):
        with pytest.raises(ValueError, match="member"):
            plots.plot_training(h, tmp_path / "bad.png", member=bad)


def test_plot_comparison(tmp_path):
    runs = {"1cycle": history(), "constant": history(tail_nan=True)}
    texts = shown(plots.plot_comparison(runs, tmp_path / "cmp.png"))["texts"]
    assert_png(tmp_path / "cmp.png")
    assert has(texts, "test accuracy by run") and has(texts, "1cycle (final 0.8")
    assert has(texts, "constant (final") and has(texts, "epoch")
    texts = shown(plots.plot_comparison(runs, tmp_path / "loss.png", metric="train_loss",
                                        title="1cycle vs constant"))["texts"]
    assert_png(tmp_path / "loss.png")
    assert has(texts, "1cycle vs constant") and has(texts, "constant (final nan)")
    with pytest.raises(ValueError, match="metric='accuracy'"):
        plots.plot_comparison(runs, tmp_path / "x.png", metric="accuracy")
    with pytest.raises(ValueError, match="histories"):
        plots.plot_comparison({}, tmp_path / "x.png")


def test_plot_epochs_to_target_marks_reached_missed_and_diverged(tmp_path):
    epochs = np.linspace(0.5, 12, 24)
    good = [(epochs, 0.80 + 0.01 * epochs), (epochs, 0.81 + 0.01 * epochs)]
    slow = [(epochs, 0.80 + 0.005 * epochs)]
    fell = [(epochs[:10], np.r_[0.8 + 0.01 * epochs[:6], [0.1] * 4])]
    f = shown(plots.plot_epochs_to_target(
        {"good": good, "slow": slow, "fell": []}, tmp_path / "e.png",
        groups={"policy": ["good", "slow", "fell"]}, target=0.9,
        epochs_to_target={"good": np.array([10.0, 9.0]), "slow": np.array([np.nan]),
                          "fell": np.array([])},
        budgets={"good": 12.0, "slow": 12.0, "fell": 5.0}, title="t", diverged={"fell": fell}))
    assert_png(tmp_path / "e.png")
    texts = f["texts"]
    assert has(texts, "good (0.9250)") and has(texts, "slow (0.8600)")
    assert has(texts, "fell (every run diverged, by ep. 5)")
    assert texts.count("not reached") == 1 and texts.count("diverged") == 1


def test_plot_schedules(tmp_path):
    steps = np.arange(100)
    f = shown(plots.plot_schedules({"learning_rate": 0.1 * steps / 99,
                                    "momentum": 0.95 - 0.1 * steps / 99},
                                   tmp_path / "s.png", title="1cycle"))
    assert_png(tmp_path / "s.png")
    assert has(f["texts"], "1cycle") and has(f["texts"], "momentum")


# An interactive backend, as Jupyter and Colab select it (matplotlib_inline is installed with
# ipykernel); a library import must not switch it to Agg.
INLINE = "module://matplotlib_inline.backend_inline"


def test_plots_leave_the_backend_and_pyplot_alone(tmp_path):
    script = textwrap.dedent(f"""
        import matplotlib
        import matplotlib.pyplot as plt
        before = matplotlib.get_backend()
        assert before == {INLINE!r}, before
        from hparams_jax import plots
        assert matplotlib.get_backend() == before, ("import", matplotlib.get_backend())
        import numpy as np
        fig = plots.plot_schedules({{"learning_rate": np.linspace(0, 1, 10)}},
                                   {str(tmp_path / "s.png")!r})
        assert matplotlib.get_backend() == before, ("plot", matplotlib.get_backend())
        assert plt.get_fignums() == [], plt.get_fignums()  # pyplot holds none of ours
        assert fig._repr_png_()[:4] == b"\\x89PNG"  # what a notebook shows
        assert matplotlib.get_backend() == before, ("shown", matplotlib.get_backend())
        print("unchanged", before)
    """)
    env = {**os.environ, "MPLBACKEND": INLINE}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"unchanged {INLINE}"
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG_SIGNATURE
