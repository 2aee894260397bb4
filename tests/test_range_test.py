"""The LR range test: reading synthetic curves with known answers, warnings on bad curves, a
real short test, families run as one vmapped program, JSON round trip; degenerate tests (no
suggestion, few held-out points, equal bounds) and strict JSON."""

import json
from pathlib import Path

import numpy as np
import pytest

from hparams_jax import cli, plots, schedules
from hparams_jax.range_test import (Family, NoSuggestionError, RangeTestResult, centred,
                                    check_ramp, ema, lr_range_test, range_test_family)
from hparams_jax.train import TrainConfig


def synthetic(lr, loss, *, eval_every=10, eval_loss=None, eval_acc=None, stop_reason="completed",
              mode="linear"):
    loss = np.asarray(loss, float)
    idx = np.arange(eval_every - 1, len(lr), eval_every)
    eval_loss = loss[idx] if eval_loss is None else eval_loss(lr[idx])
    eval_acc = (1 - eval_loss / 3) if eval_acc is None else eval_acc(lr[idx])
    return RangeTestResult(
        learning_rate=lr, train_loss=loss, smoothed_loss=centred(loss),
        train_accuracy=np.zeros_like(loss), eval_step=idx + 1.0, eval_learning_rate=lr[idx],
        eval_loss=eval_loss, eval_accuracy=eval_acc, mode=mode, start=float(lr[0]),
        stop=float(lr[-1]), num_steps=len(lr), stop_factor=4.0, stop_reason=stop_reason)


def valley_curve(lr, best=0.3):
    """Falls until `best`, then climbs steeply: a clean range-test curve."""
    return 2.3 - 2.0 * np.minimum(lr / best, 1) + 8.0 * np.maximum(lr - best, 0) ** 2


def test_suggest_finds_the_largest_lr_before_the_loss_worsens():
    lr = np.linspace(0.001, 1.0, 400)
    r = synthetic(lr, valley_curve(lr), eval_loss=lambda x: valley_curve(x))
    s = r.suggest()
    assert 0.25 <= s.max_lr <= 0.45
    assert s.min_lr == pytest.approx(s.max_lr / 10)
    assert r.suggest("triangular").min_lr == pytest.approx(s.max_lr / 4)
    assert "paper" in s.method and s.warnings == ()
    names = {a.name: a.lr for a in s.alternatives}
    assert set(names) == {"steepest", "valley", "minimum/10"}
    assert all(0.001 <= v <= 1.0 for v in names.values())


def test_held_out_curve_caps_the_suggestion():
    """The training loss still falls, but the held-out accuracy collapses past lr 0.2."""
    lr = np.linspace(0.001, 1.0, 400)
    r = synthetic(lr, valley_curve(lr, best=0.8),
                  eval_loss=lambda x: 0.5 + 3 * np.maximum(x - 0.2, 0),
                  eval_acc=lambda x: 0.9 - 2 * np.maximum(x - 0.2, 0))
    s = r.suggest()
    assert s.max_lr == pytest.approx(0.2, abs=0.03)
    assert "held-out" in s.reason


def test_a_task_without_accuracy_is_read_on_its_held_out_loss():
    """A loss that reports no accuracy (NaN): the held-out loss alone sets the bound, within
    its tolerance, and the reason does not speak of an accuracy."""
    lr = np.linspace(0.001, 1.0, 400)
    # lowest at lr 0.2, within 1% of it up to 0.4, then rising
    eval_loss = lambda x: 0.5 + 0.005 * (x > 0.2) + 3 * np.maximum(x - 0.4, 0)  # noqa: E731
    nan = lambda x: np.full_like(x, np.nan)  # noqa: E731
    s = synthetic(lr, valley_curve(lr, best=0.8), eval_loss=eval_loss, eval_acc=nan).suggest()
    with_acc = synthetic(lr, valley_curve(lr, best=0.8), eval_loss=eval_loss,
                         eval_acc=lambda x: np.full_like(x, 0.9)).suggest()
    assert s.max_lr == pytest.approx(with_acc.max_lr) and 0.37 < s.max_lr <= 0.4
    assert "accuracy" not in s.reason and "accuracy best 0.900" in with_acc.reason


def test_ragged_training_loss_caps_the_suggestion():
    rng = np.random.default_rng(0)
    lr = np.linspace(0.001, 1.0, 400)
    loss = valley_curve(lr, best=0.8) * (1 + 0.01 * rng.normal(size=400))
    loss[lr > 0.4] *= 1 + 0.4 * np.abs(rng.normal(size=(lr > 0.4).sum()))
    r = synthetic(lr, loss, eval_every=1000)  # no held-out points: the training loss decides
    s = r.suggest()
    assert s.max_lr < 0.55
    assert "ragged" in s.reason


def test_held_out_evidence_outweighs_early_raggedness_but_lowers_confidence():
    """An exponential ramp: the loss scatters more once the LR leaves its tiny start (ragged by
    the early-scatter rule at ~0.003) while the held-out loss keeps improving up to 0.04."""
    rng = np.random.default_rng(3)
    lr = np.geomspace(1e-4, 1.0, 300)
    loss = 2.5 - 0.4 * np.log10(np.minimum(lr, 0.06) / 1e-4) + 30 * np.maximum(lr - 0.06, 0)
    loss = loss * (1 + np.where(lr > 0.003, 0.08, 0.005) * rng.normal(size=300))
    r = synthetic(lr, loss, mode="exp",
                  eval_loss=lambda x: 0.5 + 0.3 * np.abs(np.log10(x / 0.04)),
                  eval_acc=lambda x: 0.8 - 0.1 * np.abs(np.log10(x / 0.04)))
    s = r.suggest()
    assert 0.03 <= s.max_lr <= 0.06, s.text()
    assert "held-out" in s.reason and "low confidence" in s.method
    assert any("disagree" in w and "ragged" in w for w in s.warnings), s.warnings


def test_lowest_training_loss_caps_the_held_out_pick():
    lr = np.linspace(0.001, 1.0, 400)
    r = synthetic(lr, valley_curve(lr, best=0.3), eval_loss=lambda x: 0.5 + 0 * x,
                  eval_acc=lambda x: 0.9 + 0 * x)  # a held-out curve that never worsens
    s = r.suggest()
    assert s.max_lr == pytest.approx(0.3, abs=0.03)
    assert "training loss is lowest" in s.reason


@pytest.mark.parametrize("loss, warning", [
    (lambda lr: 2.3 + 0 * lr, "hardly fell"),
    (lambda lr: 2.3 - lr, "still falling"),
    (lambda lr: 1.0 + 5 * lr, "lowest at the start"),
])
def test_unreadable_curves_warn_instead_of_answering_confidently(loss, warning):
    lr = np.linspace(0.01, 1.0, 200)
    s = synthetic(lr, loss(lr)).suggest()
    assert any(warning in w for w in s.warnings), s.warnings
    assert "low confidence" in s.method


def test_too_short_and_noisy_curves_warn():
    lr = np.linspace(0.01, 0.3, 12)
    assert any("usable steps" in w for w in synthetic(lr, valley_curve(lr)).suggest().warnings)
    lr = np.linspace(0.01, 1.0, 300)
    noisy = valley_curve(lr) * (1 + 1.5 * np.random.default_rng(1).random(300))
    assert any("noisy" in w for w in synthetic(lr, noisy).suggest().warnings)


def test_centred_smoothing_does_not_lag_like_the_ema():
    """On a fast ramp the EMA's minimum comes ~1/(1 - beta) steps late; the reading must not."""
    lr = np.linspace(0.001, 1.0, 300)
    loss = valley_curve(lr, best=0.3) + 0.02 * np.random.default_rng(2).normal(size=300)
    assert abs(lr[np.argmin(centred(loss))] - 0.3) < 0.03
    assert lr[np.argmin(ema(loss))] > 0.35  # what reading the EMA would have said


def test_json_round_trip(tmp_path):
    lr = np.linspace(0.001, 1.0, 100)
    r = synthetic(lr, valley_curve(lr))
    again = RangeTestResult.load(r.save(tmp_path / "rt.json"))
    np.testing.assert_array_equal(again.learning_rate, r.learning_rate)
    assert again.suggest() == r.suggest()


TINY = TrainConfig(model="lenet", dataset="fashion_mnist", batch_size=32, train_examples=2048,
                   eval_examples=128, momentum=0.9, weight_decay=5e-4, progress=False)


def test_real_range_test_ramps_records_and_stops_on_divergence():
    r = lr_range_test(TINY, start=0.01, stop=3.0, num_steps=60, eval_every=10)
    assert r.learning_rate[0] == pytest.approx(0.01)
    np.testing.assert_allclose(np.diff(r.learning_rate), (3.0 - 0.01) / 59, rtol=1e-4)
    assert r.stop_reason != "completed" and r.steps_run < 60  # LeNet cannot train at 3
    assert len(r.eval_loss) == r.steps_run // 10
    s = r.suggest()
    assert 0.01 * (1 - 1e-6) <= s.max_lr < 1.0  # float32 LRs


def test_family_runs_members_together_and_matches_single_tests():
    kw = dict(start=0.01, stop=0.2, num_steps=20, eval_every=10)
    family = range_test_family(TINY, "weight_decay", [1e-2, 1e-4], **kw)
    assert [r.label for r in family.results] == ["weight_decay=0.01", "weight_decay=0.0001"]
    single = lr_range_test(TINY.replace(weight_decay=1e-4), **kw)
    np.testing.assert_allclose(family.results[1].train_loss, single.train_loss, rtol=1e-5)
    assert not np.allclose(family.results[0].train_loss, family.results[1].train_loss)
    assert "weight_decay" in family.text()


@pytest.mark.parametrize("optimizer, start, stop", [("sgd", 0.01, 0.1), ("adamw", 1e-4, 1e-3)])
def test_momentum_family_mixes_constant_and_cyclical(optimizer, start, stop):
    """SGD's momenta or AdamW's beta1s: a constant and a cyclical one, each its own program."""
    family = range_test_family(TINY.replace(optimizer=optimizer), "momentum",
                               [0.9, (0.95, 0.85)], start=start, stop=stop, num_steps=10,
                               eval_every=5)
    assert [r.label for r in family.results] == ["momentum=0.9", "momentum=0.95-0.85"]
    assert [r.optimizer for r in family.results] == [optimizer, optimizer]
    assert all(r.steps_run == 10 and np.isfinite(r.train_loss).all() for r in family.results)


def test_adamw_range_test_with_accumulation_counts_optimizer_steps():
    """AdamW's range test (an exponential ramp over AdamW's smaller LRs) with 2
    micro-batches per step takes one ramp step per optimizer step, at the LRs of the test
    without accumulation, and records the same losses to float32 rounding (LeNet has no batch
    norm, so the two compute the same gradients)."""
    config = TINY.replace(optimizer="adamw", weight_decay=0.01)
    kw = dict(start=1e-4, stop=1e-2, num_steps=20, mode="exp", eval_every=10)
    one = lr_range_test(config, **kw)
    accumulated = lr_range_test(config.replace(accumulate_steps=2), **kw)
    ramp = schedules.range_test(1e-4, 1e-2, 20, mode="exp")
    for r in (one, accumulated):
        assert (r.steps_run, r.optimizer, r.stop_reason) == (20, "adamw", "completed")
        np.testing.assert_allclose(r.learning_rate, ramp(np.arange(20)), rtol=1e-5)
        assert r.eval_step.tolist() == [10, 20]
    np.testing.assert_allclose(accumulated.train_loss, one.train_loss, rtol=1e-4)
    np.testing.assert_allclose(accumulated.eval_loss, one.eval_loss, rtol=1e-4)


@pytest.mark.parametrize("kwargs, argument", [
    (dict(start=0.5, stop=0.1, num_steps=10), "start"),
    (dict(start=0.0, stop=0.1, num_steps=10, mode="exp"), "start"),
    (dict(start=0.01, stop=0.1, num_steps=1), "num_steps"),
    (dict(start=0.01, stop=0.1, num_steps=10, stop_factor=1.0), "stop_factor"),
])
def test_bad_ramps(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        lr_range_test(TINY, **kwargs)


def test_family_pick_is_lowest_held_out_loss_kept_to_the_largest_lr():
    """Sec. 4.4: of the values whose held-out loss is (within 2%) lowest, the one whose
    held-out curve stays low to the largest LR."""
    from hparams_jax.range_test import Family

    lr = np.linspace(0.001, 1.0, 400)

    def member(best_loss, worsens_at):
        return synthetic(lr, valley_curve(lr, best=0.8),
                         eval_loss=lambda x: best_loss + 3 * np.maximum(x - worsens_at, 0),
                         eval_acc=lambda x: 0.9 - 2 * np.maximum(x - worsens_at, 0))

    family = Family("weight_decay", [1e-3, 3e-4, 1e-5],
                    [member(0.345, 0.4), member(0.343, 0.2), member(0.40, 0.6)])
    value, reason = family.pick()
    assert value == 1e-3 and "0.345" in reason
    assert "pick: weight_decay=0.001" in family.text()
    family = Family("weight_decay", [1e-3, 3e-4], [member(0.36, 0.4), member(0.343, 0.2)])
    assert family.pick()[0] == 3e-4  # 5% above the lowest is not "lowest"


def test_range_test_in_bfloat16_reads_like_float32():
    """Mixed precision (bfloat16 activations): the ramp of Sec. 4.1 records the same curve
    as in float32 up to bfloat16's rounding (2^-8 relative: the first steps' mean loss within
    5%), stops when the loss blows up (LeNet at batch 32 passes LR ~0.1), and its reading
    lands within a factor of 2 of float32's (the scatter of one noisy reading)."""
    kw = dict(start=0.001, stop=0.3, num_steps=60, eval_every=10)
    half, full = lr_range_test(TINY.replace(precision="bfloat16"), **kw), lr_range_test(TINY, **kw)
    assert half.stop_reason != "completed" and abs(half.steps_run - full.steps_run) <= 10
    assert np.isfinite(half.train_loss[:10]).all() and np.isfinite(half.eval_loss[:1]).all()
    assert half.train_loss[:10].mean() == pytest.approx(full.train_loss[:10].mean(), rel=0.05)
    assert 0.5 < half.suggest().max_lr / full.suggest().max_lr < 2.0


# --- degenerate readings: no suggestion, the held-out cap, equal bounds, strict JSON ----------

def test_few_held_out_points_still_cap_the_suggestion_at_the_best_held_out_loss():
    """Too few held-out points for the paper's reading (the training loss decides), but the
    suggestion never passes the LR at which the held-out loss was best (Sec. 4.1)."""
    lr = np.linspace(0.001, 1.0, 400)
    r = synthetic(lr, valley_curve(lr, best=0.8), eval_every=100,
                  eval_loss=lambda x: 0.5 + 3 * np.maximum(x - 0.3, 0))  # points at 0.25, 0.5, ...
    s = r.suggest()
    assert s.max_lr == pytest.approx(lr[99]) and s.min_lr == pytest.approx(lr[99] / 10)
    assert f"capped where the held-out loss was best (0.5 at lr {lr[99]:.4g})" in s.reason


@pytest.mark.parametrize("loss, stop_reason, why", [
    (lambda lr: np.full_like(lr, np.nan), "non-finite loss or gradient",
     "the loss was non-finite from the first step"),
    (lambda lr: 2.3 + 1e3 * lr ** 2, "smoothed loss above 4x its minimum",
     "the test diverged before its loss ever fell"),
])
def test_a_test_that_diverges_before_its_loss_falls_gives_no_bounds(loss, stop_reason, why):
    lr = np.linspace(0.5, 5.0, 40)
    r = synthetic(lr, loss(lr), stop_reason=stop_reason)
    s = r.suggest()
    assert (s.found, s.max_lr, s.min_lr, s.method) == (False, None, None, "no suggestion")
    assert s.reason.startswith(why) and s.text().startswith(f"no suggestion: {why}")
    with pytest.raises(NoSuggestionError, match=f"the range test gives no suggestion: {why}"):
        s.require()


def test_a_family_never_picks_a_test_without_a_suggestion(tmp_path):
    lr = np.linspace(0.001, 1.0, 100)
    fine = synthetic(lr, valley_curve(lr, best=0.3), eval_loss=lambda x: 0.9 + 0 * x)
    blown = synthetic(lr[:20], 2.3 + 1e3 * lr[:20], stop_reason="non-finite loss or gradient")
    blown.eval_loss[:] = 0.1  # the lowest held-out loss, yet no reading
    family = Family("weight_decay", [1e-3, 1e-4], [fine, blown])
    assert family.rows()[1]["max_lr"] is None and family.pick()[0] == 1e-3
    assert "0.0001         -" in family.text()
    assert plots.plot_family(family.results, tmp_path / "family.png") is not None
    with pytest.raises(NoSuggestionError, match="none of the 1 range test"):
        Family("weight_decay", [1e-4], [blown]).pick()


def strict_json(path):
    """The JSON document at `path`, refusing NaN and Infinity as any strict parser does."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(Path(path).read_text(), parse_constant=refuse)


@pytest.mark.parametrize("start, stop", [(1e3, 1e4), (0.001, 1e9)])
def test_a_range_test_that_diverges_at_once_says_so_exits_3_and_saves_strict_json(
        tmp_path, capsys, start, stop):
    workdir = tmp_path / "rt"
    assert cli.main(["range-test", "--model", "lenet", "--batch-size", "32",
                     "--train-examples", "256", "--eval-examples", "128", "--start", str(start),
                     "--stop", str(stop), "--steps", "40", "--workdir", str(workdir)]) == 3
    out, err = capsys.readouterr()
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("hparams-jax: the range test gives no suggestion: the test diverged "
                          "before its loss ever fell: it stopped after ")
    assert out.startswith("no suggestion: the test diverged before its loss ever fell")
    saved = strict_json(workdir / "range_test.json")
    assert saved["suggestion"]["max_lr"] is None and saved["suggestion"]["min_lr"] is None
    assert saved["stop_reason"] != "completed"
    again = RangeTestResult.load(workdir / "range_test.json")
    assert not again.suggest().found and (workdir / "range_test.png").exists()


def test_saved_results_are_strict_json_with_non_finite_values_as_null(tmp_path):
    lr = np.linspace(0.001, 1.0, 100)
    r = synthetic(lr, valley_curve(lr))
    r.eval_loss[-1], r.eval_loss[-2] = np.nan, np.inf
    saved = strict_json(r.save(tmp_path / "rt.json"))
    assert saved["eval_loss"][-2:] == [None, None]
    again = RangeTestResult.load(tmp_path / "rt.json")
    assert np.isnan(again.eval_loss[-2:]).all() and again.suggest() == r.suggest()
    family = Family("weight_decay", [1e-4], [r])
    assert strict_json(family.save(tmp_path / "family.json"))["results"][0]["eval_loss"][-1] \
        is None


def test_equal_bounds_are_no_ramp(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"stop=0.1 is not allowed: stop must be above "
                                         r"start=0.1 \(the ramp rises from start to stop\)"):
        check_ramp(0.1, 0.1, 40)
    assert cli.main(["range-test", "--start", "0.1", "--stop", "0.1", "--workdir",
                     str(tmp_path / "rt")]) == 2
    assert capsys.readouterr().err.startswith("hparams-jax: error: stop=0.1 is not allowed")
    assert not (tmp_path / "rt").exists()
