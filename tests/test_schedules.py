"""Schedules against closed forms, at phase boundaries and inside phases; jit/vmap/scan; errors."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hparams_jax import schedules
from hparams_jax.errors import ConfigError


def values(schedule, steps):
    return np.array([float(schedule(int(t))) for t in steps])


# --- one_cycle ----------------------------------------------------------------------------

def test_one_cycle_closed_form_linear():
    sched = schedules.one_cycle(1000, 0.1, 1.0, step_size=400, final_value=0.001)
    # rise: 0.1 + 0.9 t / 400
    for t in (0, 100, 250, 400):
        assert sched(t) == pytest.approx(0.1 + 0.9 * t / 400, rel=1e-6)
    # fall: 1 - 0.9 (t - 400) / 400
    for t in (500, 700, 800):
        assert sched(t) == pytest.approx(1.0 - 0.9 * (t - 400) / 400, rel=1e-6)
    # annihilation over [800, 1000]: 0.1 -> 0.001
    for t in (850, 900, 1000):
        assert sched(t) == pytest.approx(0.1 + (0.001 - 0.1) * (t - 800) / 200, rel=1e-5)
    # held past the end
    for t in (1001, 5000, 2**30):
        assert sched(t) == pytest.approx(0.001, rel=1e-6)


def test_one_cycle_defaults():
    sched = schedules.one_cycle(200, 0.08, 0.8)
    # step_size = 0.45 * 200 = 90; final_value = 0.08 / 1000
    assert sched(90) == pytest.approx(0.8)
    assert sched(180) == pytest.approx(0.08, rel=1e-6)
    assert sched(200) == pytest.approx(0.08e-3, rel=1e-5)
    assert sched(45) == pytest.approx(0.44, rel=1e-6)


def test_one_cycle_fractional_step_size():
    sched = schedules.one_cycle(101, 0.0, 1.0, step_size=45.5)
    assert sched(45.5) == pytest.approx(1.0)
    assert sched(45) == pytest.approx(45 / 45.5, rel=1e-6)
    assert sched(91) == pytest.approx(0.0, abs=1e-7)


def test_one_cycle_cosine():
    sched = schedules.one_cycle(100, 0.1, 1.0, step_size=40, final_value=0.0, anneal="cos")
    for t in (0, 10, 20, 40):
        frac = 0.5 * (1 - math.cos(math.pi * t / 40))
        assert sched(t) == pytest.approx(0.1 + 0.9 * frac, rel=1e-6)
    for t in (50, 60, 80):
        frac = 0.5 * (1 - math.cos(math.pi * (t - 40) / 40))
        assert sched(t) == pytest.approx(1.0 - 0.9 * frac, rel=1e-6)
    assert sched(90) == pytest.approx(0.05, rel=1e-5)  # half-way through annihilation
    assert sched(100) == pytest.approx(0.0, abs=1e-7)


def test_one_cycle_monotone_and_continuous_per_phase():
    total, s = 1000, 450
    for anneal in ("linear", "cos"):
        v = values(schedules.one_cycle(total, 0.1, 3.0, anneal=anneal), range(total + 20))
        assert np.all(np.diff(v[: s + 1]) > 0)
        assert np.all(np.diff(v[s: 2 * s + 1]) < 0)
        assert np.all(np.diff(v[2 * s: total + 1]) < 0)
        assert np.all(v[total:] == v[total])
        # continuity: no jump bigger than the steepest slope allows
        max_slope = (3.0 - 0.1) / s * (math.pi / 2 if anneal == "cos" else 1.0)
        assert np.max(np.abs(np.diff(v))) <= max_slope * 1.001


def test_one_cycle_without_annihilation_phase():
    sched = schedules.one_cycle(100, 0.1, 1.0, step_size=50, final_value=0.01)
    assert sched(100) == pytest.approx(0.1, rel=1e-6)
    assert sched(101) == pytest.approx(0.01, rel=1e-6)
    assert np.all(np.isfinite(values(sched, range(0, 120))))


def test_author_run_reference_values():
    """The author's wide32 run: 0.1 -> 1 over stepsize 2246 logs 0.42057 at iteration 800."""
    sched = schedules.one_cycle(4882, 0.1, 1.0, step_size=2246)
    assert sched(800) == pytest.approx(0.42057, rel=1e-4)


# --- one_cycle_momentum -------------------------------------------------------------------

def test_one_cycle_momentum_mirrors_lr():
    total, s = 100, 40
    lr = schedules.one_cycle(total, 0.1, 1.0, step_size=s)
    mom = schedules.one_cycle_momentum(total, max_momentum=0.95, min_momentum=0.85, step_size=s)
    for t in range(0, 2 * s + 1):
        lr_frac = (float(lr(t)) - 0.1) / 0.9
        mom_frac = (0.95 - float(mom(t))) / 0.1
        assert mom_frac == pytest.approx(lr_frac, abs=1e-5)
    for t in (81, 90, 100, 1000):
        assert mom(t) == pytest.approx(0.95)
    assert mom(40) == pytest.approx(0.85)
    assert mom(20) == pytest.approx(0.90)


# --- triangular ---------------------------------------------------------------------------

def clr_reference(t, lo, hi, s, mode, gamma=1.0):
    cycle = math.floor(1 + t / (2 * s))
    x = abs(t / s - 2 * cycle + 1)
    scale = {"triangular": 1.0, "triangular2": 1 / 2 ** (cycle - 1), "exp_range": gamma ** t}[mode]
    return lo + (hi - lo) * max(0.0, 1 - x) * scale


@pytest.mark.parametrize("mode", schedules.TRIANGULAR_MODES)
def test_triangular_matches_clr_formula(mode):
    sched = schedules.triangular(0.001, 0.006, 20, mode=mode, gamma=0.99)
    for t in range(0, 200, 7):
        assert sched(t) == pytest.approx(clr_reference(t, 0.001, 0.006, 20, mode, 0.99), rel=1e-5)


def test_triangular_shape():
    v = values(schedules.triangular(1.0, 2.0, 10), range(0, 41))
    assert v[0] == pytest.approx(1.0) and v[10] == pytest.approx(2.0)
    assert v[20] == pytest.approx(1.0) and v[30] == pytest.approx(2.0)
    v2 = values(schedules.triangular(0.0, 1.0, 10, mode="triangular2"), [10, 30, 50])
    np.testing.assert_allclose(v2, [1.0, 0.5, 0.25], rtol=1e-6)


def test_triangular2_never_nan_far_out():
    sched = schedules.triangular(0.1, 1.0, 1, mode="triangular2")
    assert np.isfinite(float(sched(2**31 - 1)))
    assert float(sched(2**31 - 1)) == pytest.approx(0.1)


# --- range_test ramps ---------------------------------------------------------------------

def test_range_test_linear_and_exp():
    lin = schedules.range_test(0.0, 2.0, 101)
    assert lin(0) == 0.0 and lin(50) == pytest.approx(1.0) and lin(100) == pytest.approx(2.0)
    assert lin(500) == pytest.approx(2.0)
    exp = schedules.range_test(1e-5, 10.0, 7, mode="exp")
    np.testing.assert_allclose(values(exp, range(7)), np.logspace(-5, 1, 7), rtol=1e-5)
    assert np.all(np.diff(np.log(values(exp, range(7)))) == pytest.approx(math.log(10)))


# --- weight-decay policies ----------------------------------------------------------------

def test_weight_decay_policies():
    assert schedules.constant(5e-4)(123) == pytest.approx(5e-4)
    lin = schedules.linear(1e-4, 5e-5, 100)
    assert lin(0) == pytest.approx(1e-4) and lin(50) == pytest.approx(7.5e-5)
    assert lin(1000) == pytest.approx(5e-5)


# --- Caffe's decay policies ------------------------------------------------------------------

def test_caffe_policies_match_closed_forms():
    t = np.array([0, 1, 99, 100, 101, 250, 10_000, 12_345], dtype=np.float64)
    np.testing.assert_allclose(values(schedules.inv(0.01, 1e-4, 0.75), t),
                               0.01 * (1 + 1e-4 * t) ** -0.75, rtol=1e-6)
    np.testing.assert_allclose(values(schedules.step(0.1, 0.5, 100), t),
                               0.1 * 0.5 ** np.floor(t / 100), rtol=1e-6, atol=1e-37)
    np.testing.assert_allclose(values(schedules.multistep(0.1, 0.316, (100, 250)), t),
                               0.1 * 0.316 ** ((t >= 100).astype(int) + (t >= 250)), rtol=1e-6)
    np.testing.assert_allclose(values(schedules.poly(0.1, 2.0, 10_000), t),
                               0.1 * np.clip(1 - t / 10_000, 0, 1) ** 2, rtol=1e-5, atol=1e-12)


def test_caffe_lenet_inv_reference_values():
    """Caffe's lenet_solver (base 0.01, gamma 1e-4, power 0.75) at its test iterations."""
    lr = schedules.inv(0.01, 1e-4, 0.75)
    assert float(lr(0)) == pytest.approx(0.01)
    assert float(lr(5000)) == pytest.approx(0.01 * 1.5 ** -0.75, rel=1e-6)  # 0.007378
    assert float(lr(10_000)) == pytest.approx(0.01 * 2 ** -0.75, rel=1e-6)  # 0.005946


# --- jit / vmap / scan --------------------------------------------------------------------

ALL = {
    "one_cycle": schedules.one_cycle(300, 0.1, 1.0),
    "one_cycle_cos": schedules.one_cycle(300, 0.1, 1.0, anneal="cos"),
    "momentum": schedules.one_cycle_momentum(300),
    "triangular": schedules.triangular(0.1, 1.0, 37),
    "triangular2": schedules.triangular(0.1, 1.0, 37, mode="triangular2"),
    "exp_range": schedules.triangular(0.1, 1.0, 37, mode="exp_range", gamma=0.999),
    "range_lin": schedules.range_test(1e-3, 1.0, 250),
    "range_exp": schedules.range_test(1e-3, 1.0, 250, mode="exp"),
    "linear": schedules.linear(1e-3, 1e-4, 250),
    "inv": schedules.inv(0.01, 1e-4, 0.75),
    "step": schedules.step(0.1, 0.1, 100),
    "multistep": schedules.multistep(0.1, 0.1, (50, 300)),
    "poly": schedules.poly(0.1, 0.9, 250),
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_jit_equals_eager_and_scan(name):
    sched = ALL[name]
    steps = jnp.arange(0, 400, dtype=jnp.int32)
    eager = values(sched, range(400))
    jitted = np.asarray(jax.jit(jax.vmap(sched))(steps))
    chex.assert_trees_all_close(jitted, eager, rtol=1e-5, atol=1e-9)

    def body(carry, t):
        return carry, sched(t)

    _, scanned = jax.lax.scan(body, None, steps)
    chex.assert_trees_all_close(np.asarray(scanned), eager, rtol=1e-5, atol=1e-9)
    assert np.all(np.isfinite(eager))


def test_vmap_over_parameters():
    def lr_at(max_lr, t):
        return schedules.one_cycle(100, max_lr / 10, max_lr)(t)

    max_lrs = jnp.array([0.5, 1.0, 3.0])
    out = jax.jit(jax.vmap(lr_at, in_axes=(0, None)))(max_lrs, 45)
    np.testing.assert_allclose(out, max_lrs, rtol=1e-6)
    out = jax.vmap(lr_at, in_axes=(0, None))(max_lrs, 90)
    np.testing.assert_allclose(out, max_lrs / 10, rtol=1e-5)
    # array-valued bounds without vmap broadcast too
    sched = schedules.triangular(jnp.array([0.1, 0.2]), jnp.array([1.0, 2.0]), 10)
    np.testing.assert_allclose(sched(10), [1.0, 2.0])


# --- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: schedules.one_cycle(100, 1.0, 0.1), "min_value"),
        (lambda: schedules.one_cycle(0, 0.1, 1.0), "total_steps"),
        (lambda: schedules.one_cycle(-5, 0.1, 1.0), "total_steps"),
        (lambda: schedules.one_cycle(100.5, 0.1, 1.0), "total_steps"),
        (lambda: schedules.one_cycle(100, 0.1, 1.0, step_size=0), "step_size"),
        (lambda: schedules.one_cycle(100, 0.1, 1.0, step_size=51), "step_size"),
        (lambda: schedules.one_cycle(100, -0.1, 1.0), "min_value"),
        (lambda: schedules.one_cycle(100, 0.1, 1.0, final_value=-1e-3), "final_value"),
        (lambda: schedules.one_cycle(100, 0.1, 1.0, anneal="exp"), "anneal"),
        (lambda: schedules.one_cycle(100, 0.1, float("nan")), "max_value"),
        (lambda: schedules.one_cycle_momentum(100, max_momentum=1.0), "max_momentum"),
        (lambda: schedules.one_cycle_momentum(100, min_momentum=-0.1), "min_momentum"),
        (lambda: schedules.one_cycle_momentum(100, max_momentum=0.8, min_momentum=0.9),
         "min_momentum"),
        (lambda: schedules.one_cycle_momentum(100, step_size=60), "step_size"),
        (lambda: schedules.triangular(1.0, 0.1, 10), "min_value"),
        (lambda: schedules.triangular(0.1, 1.0, 0), "step_size"),
        (lambda: schedules.triangular(0.1, 1.0, 10, mode="sawtooth"), "mode"),
        (lambda: schedules.triangular(0.1, 1.0, 10, mode="exp_range", gamma=1.5), "gamma"),
        (lambda: schedules.range_test(1.0, 0.1, 10), "start"),
        (lambda: schedules.range_test(0.0, 1.0, 10, mode="exp"), "start"),
        (lambda: schedules.range_test(0.1, 1.0, 1), "num_steps"),
        (lambda: schedules.range_test(0.1, 1.0, 10, mode="log"), "mode"),
        (lambda: schedules.constant(-1e-4), "value"),
        (lambda: schedules.linear(1e-4, -1e-5, 10), "end"),
        (lambda: schedules.triangular(0.1, 1.0, 10, mode="exp_range", gamma="0.9"), "gamma"),
        (lambda: schedules.triangular("0.1", 1.0, 10), "min_value"),
        (lambda: schedules.triangular(0.1, 1.0, True), "step_size"),
        (lambda: schedules.one_cycle(100, 0.1, [1.0]), "max_value"),
        (lambda: schedules.one_cycle_momentum(100, max_momentum="0.95"), "max_momentum"),
        (lambda: schedules.constant(False), "value"),
        (lambda: schedules.range_test(0.1, 1.0, 2**40), "num_steps"),
        (lambda: schedules.range_test(0.1, 1.0, 2**31), "num_steps"),
        (lambda: schedules.linear(0.1, 0.0, 2**31), "num_steps"),
        (lambda: schedules.one_cycle(2**31, 0.1, 1.0), "total_steps"),
        (lambda: schedules.triangular(0.1, 1.0, 2.0**31), "step_size"),
        (lambda: schedules.poly(0.1, 1.0, 2**40), "num_steps"),
        (lambda: schedules.inv("0.01", 1e-4, 0.75), "base_value"),
        (lambda: schedules.inv(0.01, -1e-4, 0.75), "gamma"),
        (lambda: schedules.inv(0.01, 1e-4, float("inf")), "power"),
        (lambda: schedules.step(0.1, 1.5, 100), "gamma"),
        (lambda: schedules.step(0.1, 0.1, 0), "step_size"),
        (lambda: schedules.multistep(0.1, 0.1, (300, 50)), "boundaries"),
        (lambda: schedules.multistep(0.1, 0.1, (0.5,)), "boundaries"),
        (lambda: schedules.poly(0.1, 1.0, 0), "num_steps"),
    ],
)
def test_invalid_arguments_name_argument_and_value(build, argument):
    with pytest.raises(ValueError, match=argument) as err:
        build()
    assert "must" in str(err.value)


def test_largest_step_counts_work_at_any_step():
    """Step counts up to 2**31 - 1 build, and a schedule called at a step beyond int32 holds
    its final value instead of overflowing."""
    big = 2**31 - 1
    ramp = schedules.range_test(0.1, 1.0, big)
    assert float(ramp(0)) == pytest.approx(0.1) and float(ramp(big)) == pytest.approx(1.0)
    assert float(schedules.range_test(0.1, 1.0, 100)(2**40)) == pytest.approx(1.0)
    decay = schedules.linear(1e-3, 0.0, 100)
    for t in (2**31, 2**40):
        assert float(decay(t)) == 0.0
    assert float(decay(50)) == pytest.approx(5e-4)
    assert float(schedules.linear(0.0, 1.0, big)(big)) == pytest.approx(1.0)


def test_horizon_holds_every_value_of_the_schedule():
    """`horizon` (read by transforms.sgd to check a schedule) covers each policy's range."""
    cases = [(schedules.one_cycle(100, 0.1, 1.0), 100), (schedules.range_test(0.1, 1.0, 50), 49),
             (schedules.triangular(0.1, 1.0, 7.5), 15), (schedules.linear(1.0, 0.0, 30), 30),
             (schedules.one_cycle_momentum(80), 80)]
    for sched, horizon in cases:
        assert sched.horizon == horizon
        inside = values(sched, range(horizon + 1))
        later = values(sched, range(horizon, 4 * horizon + 10))
        assert inside.min() <= later.min() + 1e-7 and later.max() <= inside.max() + 1e-7


def test_annihilation_ends_at_or_below_min_value():
    """Sec. 4.1: the annihilation takes the LR from min_value "several orders of magnitude"
    lower; a final value above min_value would make the LR climb there instead."""
    with pytest.raises(ValueError, match=r"final_value=5.0 is above min_value=0.01: final_value "
                                         r"must be <= min_value \(the annihilation"):
        schedules.one_cycle(100, 0.01, 0.1, final_value=5.0)
    lr = schedules.one_cycle(100, 0.01, 0.1, final_value=0.01)  # held flat: allowed
    assert float(lr(100)) == pytest.approx(0.01)


# --- today's schedules: cosine and WSD ------------------------------------------------------

def _cosine_reference(t, total, peak, warmup, init, final):
    if t < warmup:
        return init + (peak - init) * t / warmup
    s = min((t - warmup) / (total - warmup), 1.0)
    return final + (peak - final) * 0.5 * (1 + math.cos(math.pi * s))


def _wsd_reference(t, total, peak, warmup, decay_steps, init, final, decay):
    if t < warmup:
        return init + (peak - init) * t / warmup
    if t < total - decay_steps:
        return peak
    s = min((t - (total - decay_steps)) / decay_steps, 1.0)
    if decay == "linear":
        return peak + (final - peak) * s
    return final + (peak - final) * (1 - math.sqrt(s))


@pytest.mark.parametrize("decay", ["linear", "1-sqrt"])
def test_wsd_and_cosine_match_numpy_formulas_at_every_step(decay):
    """Every step of a 200-step run and past its end, against the formulas of the MiniCPM
    paper (linear decay) and Hägele et al. 2024 (1-sqrt cooldown), and the warmup-cosine of
    the Flax ImageNet example (which `optax.warmup_cosine_decay_schedule` also computes)."""
    steps = range(0, 260)
    wsd = schedules.wsd(200, 0.4, warmup_steps=10, decay_steps=50, init_value=0.01,
                        final_value=0.002, decay=decay)
    np.testing.assert_allclose(values(wsd, steps), [
        _wsd_reference(t, 200, 0.4, 10, 50, 0.01, 0.002, decay) for t in steps], rtol=2e-6,
        atol=1e-8)
    cosine = schedules.cosine(200, 0.4, warmup_steps=10, init_value=0.01, final_value=0.002)
    np.testing.assert_allclose(values(cosine, steps), [
        _cosine_reference(t, 200, 0.4, 10, 0.01, 0.002) for t in steps], rtol=2e-6, atol=1e-8)
    optax_cosine = optax.warmup_cosine_decay_schedule(0.01, 0.4, 10, 200, 0.002)
    np.testing.assert_allclose(values(cosine, steps), values(optax_cosine, steps), rtol=2e-6)
    assert wsd.horizon == cosine.horizon == 200


def test_wsd_and_cosine_take_a_swept_peak_under_vmap_and_refuse_bad_lengths():
    peaks = jnp.array([0.1, 0.2])
    got = jax.vmap(lambda p: schedules.wsd(100, p, warmup_steps=10, decay_steps=20,
                                           decay="1-sqrt")(85))(peaks)
    np.testing.assert_allclose(got, [0.05, 0.1], rtol=1e-6)  # half-way by 1 - sqrt(1/4)
    got = jax.vmap(lambda p: schedules.cosine(100, p, warmup_steps=0)(50))(peaks)
    np.testing.assert_allclose(got, [0.05, 0.1], rtol=1e-5)
    with pytest.raises(ConfigError, match=r"decay_steps=30 .*at most total_steps - "
                                          r"warmup_steps = 20"):
        schedules.wsd(100, 0.1, warmup_steps=80, decay_steps=30)
    with pytest.raises(ConfigError, match=r"decay='cos'.*one of 'linear', '1-sqrt'"):
        schedules.wsd(100, 0.1, warmup_steps=0, decay_steps=10, decay="cos")
    with pytest.raises(ConfigError, match=r"warmup_steps=101 .*\[0, total_steps=100\]"):
        schedules.cosine(100, 0.1, warmup_steps=101)
