"""Reading synthetic curves with known answers (Smith 2018, Sec. 3): over- and under-fitting,
divergence, instability, an early horizontal test loss, a healthy run, too-short histories."""

import json

import numpy as np
import pytest

from hparams_jax.diagnose import Diagnosis, Finding, diagnose
from hparams_jax.train import History

STEPS = 1000  # 100 training rows (every 10 steps), 20 evaluations (every 50), 100 steps/epoch


def make_history(train_loss, test_loss, *, lr=0.1, test_acc=None, train_every=10,
                 eval_every=50, noise=0.01, seed=0, member=0):
    """`train_loss`, `test_loss` and `lr` are functions of t = step / STEPS (or constants)."""
    rng = np.random.default_rng(seed)
    f = (lambda g: g if callable(g) else (lambda t: np.full_like(t, g)))
    t_train = np.arange(train_every, STEPS + 1, train_every) / STEPS
    t_eval = np.arange(eval_every, STEPS + 1, eval_every) / STEPS
    train = f(train_loss)(t_train) * (1 + noise * rng.normal(size=len(t_train)))
    test = f(test_loss)(t_eval) * (1 + noise * rng.normal(size=len(t_eval)))
    acc = 1 - test / 3 if test_acc is None else f(test_acc)(t_eval)
    rates = f(lr)(t_train)
    rows = [{"kind": "train", "step": int(round(t * STEPS)), "epoch": t * 10, "member": member,
             "train_loss": float(x), "train_accuracy": 0.5, "learning_rate": float(r),
             "momentum": 0.9, "weight_decay": 1e-4} for t, x, r in zip(t_train, train, rates)]
    rows += [{"kind": "eval", "step": int(round(t * STEPS)), "epoch": t * 10, "member": member,
              "test_loss": float(x), "test_accuracy": float(a)}
             for t, x, a in zip(t_eval, test, acc) if np.isfinite(x)]
    return History(sorted(rows, key=lambda r: r["step"]))


def healthy_train(t):
    return 0.2 + 2.1 * np.exp(-t / 0.1)


def healthy_test(t):
    return 0.45 + 1.8 * np.exp(-t / 0.08)


def one_cycle_lr(t):
    """Up 0.01 -> 0.1 over 45%, down to 0.01 by 90%, then annihilation to 1e-4."""
    return np.interp(t, [0, 0.45, 0.9, 1.0], [0.01, 0.1, 0.01, 1e-4])


def kinds(d: Diagnosis) -> list[str]:
    return [f.kind for f in d.findings]


def finding(d: Diagnosis, kind: str) -> Finding:
    return next(f for f in d.findings if f.kind == kind)


def test_overfitting_u_shaped_test_loss():
    def test_loss(t):
        return 0.5 + 1.8 * np.exp(-t / 0.08) + 2.0 * np.maximum(t - 0.4, 0) ** 2

    t = np.arange(50, STEPS + 1, 50) / STEPS
    expected = t[np.argmin(test_loss(t))] * STEPS
    d = diagnose(make_history(healthy_train, test_loss))
    assert d.verdict == "overfitting"
    f = finding(d, "overfitting")
    assert f.severity == "warning"
    assert abs(f.step - expected) <= 100  # within two evaluations
    assert f.evidence["onset_step"] == f.step
    assert f.evidence["rise_relative"] > 0.2
    assert f.evidence["train_loss_final"] < f.evidence["train_loss_at_onset"]
    assert "horizontal_test_loss" not in kinds(d) and "healthy" not in kinds(d)


def test_underfitting_both_losses_still_steep():
    d = diagnose(make_history(lambda t: 0.2 + 2.1 * np.exp(-t), lambda t: 0.4 + 1.9 *
                              np.exp(-t / 1.2)))
    assert d.verdict == "underfitting"
    f = finding(d, "underfitting")
    assert f.severity == "warning"
    assert f.evidence["pattern"] == "still_falling"
    assert f.evidence["test"]["tail_share"] > 0.1
    assert f.evidence["train"]["tail_drop"] > 0
    assert f.evidence["test"]["tail_start_step"] == pytest.approx(750, abs=50)


def test_underfitting_while_the_lr_anneals_is_only_info():
    d = diagnose(make_history(lambda t: 0.2 + 2.1 * np.exp(-t), lambda t: 0.4 + 1.9 *
                              np.exp(-t / 1.2), lr=one_cycle_lr))
    f = finding(d, "underfitting")
    assert (d.verdict, f.severity) == ("underfitting", "info")
    assert "annihilation" in f.message and "healthy" not in kinds(d)


def test_a_fall_within_the_noise_is_a_tentative_underfitting():
    d = diagnose(make_history(lambda t: 0.2 + 2.1 * np.exp(-t), lambda t: 0.4 + 1.9 *
                              np.exp(-t / 1.2), noise=0.04))
    f = finding(d, "underfitting")
    assert f.evidence["falls"] == {"training": "clear", "test": "possible"}
    assert f.severity == "info" and "standard errors" in f.message
    assert d.verdict == "underfitting"  # not "healthy": the test loss may still be falling


def test_not_learning_is_underfitting():
    d = diagnose(make_history(2.30, 2.30))
    assert d.verdict == "underfitting"
    assert finding(d, "underfitting").evidence["pattern"] == "not_learning"


def test_diverged_nan_at_step_k():
    d = diagnose(make_history(lambda t: np.where(t < 0.6, healthy_train(t), np.nan),
                              lambda t: np.where(t < 0.6, healthy_test(t), np.nan)))
    assert kinds(d) == ["diverged"] and d.verdict == "diverged"
    f = d.findings[0]
    assert (f.step, f.severity) == (600, "error")
    assert f.evidence["metric"] == "training loss"
    assert f.evidence["last_finite_train_loss"] == pytest.approx(healthy_train(0.59), rel=0.05)
    assert f.evidence["learning_rate"] == pytest.approx(0.1)


def test_diverged_exploding_loss_without_nan():
    d = diagnose(make_history(lambda t: np.where(t < 0.7, healthy_train(t), 50.0),
                              healthy_test))
    f = finding(d, "diverged")
    assert d.verdict == "diverged" and f.step == 700
    assert f.evidence["value"] > 3 * f.evidence["early_train_loss"]


def test_healthy_run_converges():
    d = diagnose(make_history(healthy_train, healthy_test))
    assert d.verdict == "healthy"
    assert not any(f.kind in ("overfitting", "underfitting", "unstable") for f in d.findings)
    f = finding(d, "healthy")
    assert abs(f.evidence["test"]["tail_drop"]) < 0.02


def test_unstable_training_loss_spikes():
    rng = np.random.default_rng(1)
    spikes = 1 + 0.8 * (rng.random(100) < 0.15)

    def spiky(t):
        return healthy_train(t) * spikes[: len(t)]

    d = diagnose(make_history(spiky, healthy_test))
    assert d.verdict == "unstable"
    f = finding(d, "unstable")
    assert f.evidence["pattern"] == "spikes" and f.evidence["spikes"] >= 8
    assert f.step == f.evidence["spike_steps"][0]


def test_jitter_of_a_near_zero_training_loss_is_not_unstable():
    jitter = 1 + np.random.default_rng(2).random(100)  # up to 2x row to row, but at ~0.002

    def memorising(t):
        return 2.3 * np.exp(-t / 0.05) + 0.002 * jitter[: len(t)]

    d = diagnose(make_history(memorising, healthy_test, noise=0.0))
    assert "unstable" not in kinds(d) and d.verdict == "healthy"


def test_both_losses_rising_is_unstable_not_overfitting():
    def rising(base):
        return lambda t: base(t) * (1 + 1.5 * np.maximum(t - 0.5, 0))

    d = diagnose(make_history(rising(healthy_train), rising(healthy_test)))
    assert d.verdict == "unstable" and "overfitting" not in kinds(d)
    assert finding(d, "unstable").evidence["pattern"] == "both_rising"


def test_horizontal_early_test_loss_is_a_positive_finding():
    def test_loss(t):  # quick fall, flat while the LR is large, second fall as it decays
        return 0.5 + 0.4 / (1 + np.exp((t - 0.65) / 0.03)) + 1.2 * np.exp(-t / 0.04)

    d = diagnose(make_history(lambda t: 0.1 + 2.2 * np.exp(-t / 0.2), test_loss,
                              lr=one_cycle_lr, noise=0.005))
    f = finding(d, "horizontal_test_loss")
    assert f.severity == "info" and d.verdict == "healthy"
    assert 150 <= f.evidence["start_step"] <= 300
    assert 450 <= f.evidence["end_step"] <= 600
    assert f.evidence["level"] == pytest.approx(0.9, abs=0.05)
    assert min(f.evidence["learning_rate_range"]) >= 0.05


def test_no_horizontal_finding_while_the_lr_is_small():
    def test_loss(t):
        return 0.5 + 0.4 / (1 + np.exp((t - 0.65) / 0.03)) + 1.2 * np.exp(-t / 0.04)

    lr = lambda t: np.where(t < 0.1, 0.1, 0.001)  # noqa: E731
    d = diagnose(make_history(lambda t: 0.1 + 2.2 * np.exp(-t / 0.2), test_loss, lr=lr,
                              noise=0.005))
    assert "horizontal_test_loss" not in kinds(d)


def test_short_history_says_so():
    d = diagnose(make_history(lambda t: 0.2 + 2.1 * np.exp(-t), healthy_test, eval_every=400))
    assert d.verdict == "insufficient_data"
    f = finding(d, "insufficient_data")
    assert f.evidence["evals"] == 2 and "2 test evaluation(s)" in f.message
    assert "still falling" in f.message  # the training curve is read anyway
    assert "overfitting" not in kinds(d) and "healthy" not in kinds(d)


def test_empty_history():
    d = diagnose(History([]))
    assert d.verdict == "insufficient_data"


def test_divergence_the_run_recorded_is_read_from_the_summary():
    """A run that blew up within its first log interval logs one finite, huge row: too short a
    curve to read, but its summary says the engine stopped it on a non-finite loss."""
    rows = [{"kind": "train", "step": 8, "epoch": 1.0, "member": 0, "train_loss": 1.4e35,
             "train_accuracy": 0.08, "learning_rate": 1.0}]
    summary = {"status": "diverged", "step": 8, "members": [{"member": 0, "diverged": True}]}
    d = diagnose(History(rows, summary))
    assert d.verdict == "diverged" and d.findings[0].step == 8
    assert "summary.json" in d.findings[0].message
    assert diagnose(History(rows)).verdict == "insufficient_data"  # the curve alone cannot tell
    finished = {"status": "completed", "members": [{"member": 0, "diverged": False}]}
    assert diagnose(History(rows, finished)).verdict == "insufficient_data"


def test_metrics_lines_that_are_not_rows_are_skipped_with_a_warning(tmp_path):
    history = make_history(healthy_train, healthy_test)
    lines = [json.dumps(r) for r in history.rows]
    lines[3:3] = ["[1, 2]", "42", '"text"', '{"no": "step"}']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.warns(RuntimeWarning, match=r"skipped line\(s\) 4, 5, 6, 7 \(not a metrics row"):
        loaded = History.load(tmp_path)
    assert loaded.rows == history.rows
    assert diagnose(loaded).verdict == "healthy"


def test_member_selects_the_sweep_member_and_is_checked():
    h0 = make_history(healthy_train, healthy_test)
    h1 = make_history(lambda t: np.where(t < 0.3, healthy_train(t), np.nan), healthy_test,
                      member=1)
    history = History(h0.rows + h1.rows)
    assert diagnose(history).verdict == "healthy"
    assert diagnose(history, member=1).verdict == "diverged"
    for bad in (2, -1, 0.5, True):
        with pytest.raises(ValueError, match="member"):
            diagnose(history, member=bad)


def test_to_dict_is_json_and_text_is_readable():
    d = diagnose(make_history(lambda t: np.where(t < 0.6, healthy_train(t), np.nan),
                              healthy_test))
    out = json.loads(json.dumps(d.to_dict(), allow_nan=False))
    assert out["verdict"] == "diverged"
    assert out["findings"][0]["evidence"]["value"] == "nan"
    lines = d.text().splitlines()
    assert lines[0] == "verdict: diverged" and lines[1].startswith("[error] diverged (step 600)")


def test_finding_checks_kind_and_severity():
    with pytest.raises(ValueError, match="severity='fatal'.*one of 'info', 'warning', 'error'"):
        Finding("diverged", "fatal", "m", {})
    with pytest.raises(ValueError, match="kind='weird'"):
        Finding("weird", "info", "m", {})
    assert Diagnosis([]).verdict == "none"


def test_real_short_runs(tmp_path):
    """A stable LeNet run is not called diverged or over-fitting; a run pushed to LR 5
    is called diverged, at the step the engine stopped it."""
    from hparams_jax.train import DivergenceError, TrainConfig, fit

    base = TrainConfig(model="lenet", dataset="fashion_mnist", batch_size=64, steps=96,
                       train_examples=2048, eval_examples=256, momentum=(0.95, 0.85),
                       weight_decay=5e-4, log_every=4, eval_every=8, progress=False)
    ok = diagnose(fit(base.replace(min_lr=0.005, max_lr=0.05, workdir=str(tmp_path / "ok"))))
    assert ok.verdict in ("healthy", "underfitting", "horizontal_test_loss"), ok.text()
    with pytest.raises(DivergenceError):
        fit(base.replace(min_lr=0.01, max_lr=5.0, momentum=0.9, workdir=str(tmp_path / "bad")))
    bad = diagnose(History.load(tmp_path / "bad"))
    assert bad.verdict == "diverged", bad.text()
