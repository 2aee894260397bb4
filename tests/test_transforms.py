"""`sgd`/`trace` against optax and an independent NumPy loop; `hyperparams`; composition."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hparams_jax import schedules, transforms


def random_problem(seed=0, steps=12):
    rng = np.random.default_rng(seed)
    params = {"w": rng.normal(size=(4, 3)).astype(np.float32),
              "b": rng.normal(size=(3,)).astype(np.float32)}
    grads = [{k: rng.normal(size=p.shape).astype(np.float32) for k, p in params.items()}
             for _ in range(steps)]
    return params, grads


def run_optax(opt, params, grads):
    params = jax.tree.map(jnp.asarray, params)
    state = opt.init(params)
    trajectory = []
    for g in grads:
        updates, state = opt.update(g, state, params)
        params = optax.apply_updates(params, updates)
        trajectory.append(params)
    return trajectory, state


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("momentum", [None, 0.9])
def test_constant_sgd_equals_optax_chain(nesterov, momentum):
    params, grads = random_problem()
    ours, _ = run_optax(transforms.sgd(0.05, momentum, nesterov=nesterov, weight_decay=5e-3),
                        params, grads)
    ref, _ = run_optax(optax.chain(optax.add_decayed_weights(5e-3),
                                   optax.sgd(0.05, momentum, nesterov=nesterov)), params, grads)
    for a, b in zip(ours, ref):
        chex.assert_trees_all_close(a, b, rtol=1e-6, atol=1e-7)


def numpy_sgd(params, grads, lr, mom, wd, *, nesterov, decoupled):
    """Hand-written SGD (PyTorch's formulation), hyper-parameters given per step."""
    params = {k: v.astype(np.float64) for k, v in params.items()}
    buf = {k: np.zeros_like(v) for k, v in params.items()}
    out = []
    for t, g in enumerate(grads):
        new = {}
        for k in params:
            d = g[k].astype(np.float64)
            if not decoupled:
                d = d + wd[t] * params[k]
            buf[k] = mom[t] * buf[k] + d
            step = d + mom[t] * buf[k] if nesterov else buf[k]
            if decoupled:
                step = step + wd[t] * params[k]
            new[k] = params[k] - lr[t] * step
        params = new
        out.append(params)
    return out


def closed_form_hyperparams(steps):
    """1cycle LR 0.1-1 (step size 4, final 1e-4), momentum 0.95-0.85, WD 1e-3 -> 0."""
    t = np.arange(steps, dtype=np.float64)
    lr = np.where(t <= 4, 0.1 + 0.9 * t / 4,
                  np.where(t <= 8, 1.0 - 0.9 * (t - 4) / 4,
                           0.1 + (1e-4 - 0.1) * (t - 8) / (steps - 8)))
    mom = np.where(t <= 4, 0.95 - 0.1 * t / 4, np.where(t <= 8, 0.85 + 0.1 * (t - 4) / 4, 0.95))
    wd = 1e-3 * (1 - t / steps)
    return lr, mom, wd


@pytest.mark.parametrize("decoupled", [False, True])
def test_scheduled_nesterov_sgd_matches_numpy_loop(decoupled):
    steps = 12
    params, grads = random_problem(seed=1, steps=steps)
    opt = transforms.sgd(
        schedules.one_cycle(steps, 0.1, 1.0, step_size=4),
        schedules.one_cycle_momentum(steps, step_size=4),
        nesterov=True,
        weight_decay=schedules.linear(1e-3, 0.0, steps),
        decoupled_weight_decay=decoupled,
    )
    ours, state = run_optax(opt, params, grads)
    lr, mom, wd = closed_form_hyperparams(steps)
    ref = numpy_sgd(params, grads, lr, mom, wd, nesterov=True, decoupled=decoupled)
    for a, b in zip(ours, ref):
        chex.assert_trees_all_close(a, b, rtol=2e-5, atol=2e-6)
    used = transforms.hyperparams(state)
    assert used["learning_rate"] == pytest.approx(lr[-1], rel=1e-5)
    assert used["momentum"] == pytest.approx(mom[-1], rel=1e-6)
    assert used["weight_decay"] == pytest.approx(wd[-1], rel=1e-5)


def test_decoupled_differs_from_coupled():
    params, grads = random_problem(seed=2, steps=5)
    coupled, _ = run_optax(transforms.sgd(0.1, 0.9, weight_decay=0.1), params, grads)
    decoupled, _ = run_optax(transforms.sgd(0.1, 0.9, weight_decay=0.1,
                                            decoupled_weight_decay=True), params, grads)
    assert not np.allclose(coupled[-1]["w"], decoupled[-1]["w"])


def test_trace_with_schedule_matches_chain_of_optax_parts():
    params, grads = random_problem(seed=3, steps=10)
    mom = schedules.one_cycle_momentum(10, step_size=4)
    lr = schedules.one_cycle(10, 0.1, 1.0, step_size=4)
    ours, _ = run_optax(optax.chain(transforms.trace(mom), optax.scale_by_learning_rate(lr)),
                        params, grads)
    lr_np, mom_np, _ = closed_form_hyperparams(10)
    ref = numpy_sgd(params, grads, lr_np, mom_np, np.zeros(10), nesterov=False,
                    decoupled=False)
    for a, b in zip(ours, ref):
        chex.assert_trees_all_close(a, b, rtol=2e-5, atol=2e-6)


def test_hyperparams_track_each_update_and_see_through_wrappers():
    lr = schedules.one_cycle(20, 0.1, 1.0, step_size=5)
    mom = schedules.one_cycle_momentum(20, step_size=5)
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.full(3, 0.5)}

    opt = optax.apply_if_finite(transforms.sgd(lr, mom, weight_decay=1e-4), 3)
    state = opt.init(params)
    for t in range(7):
        _, state = opt.update(grads, state, params)
        used = transforms.hyperparams(state)
        assert used["learning_rate"] == pytest.approx(float(lr(t)), rel=1e-6)
        assert used["momentum"] == pytest.approx(float(mom(t)), rel=1e-6)
        assert used["weight_decay"] == pytest.approx(1e-4)

    # MultiSteps: the schedule advances once per real update (every k micro-steps).
    opt = optax.MultiSteps(transforms.sgd(lr, 0.9), every_k_schedule=2)
    state = opt.init(params)
    for _ in range(6):
        _, state = opt.update(grads, state, params)
    assert transforms.hyperparams(state)["learning_rate"] == pytest.approx(float(lr(2)))

    # Absent hyper-parameters read 0.
    state = transforms.sgd(0.3).init(params)
    assert transforms.hyperparams(state) == {"learning_rate": pytest.approx(0.3),
                                             "momentum": 0.0, "weight_decay": 0.0}


def test_apply_if_finite_skips_nan_updates():
    params = {"w": jnp.ones(3)}
    opt = optax.apply_if_finite(transforms.sgd(0.1, 0.9), 2)
    state = opt.init(params)
    updates, state = opt.update({"w": jnp.array([jnp.nan, 1.0, 1.0])}, state, params)
    assert np.all(np.asarray(updates["w"]) == 0)
    assert int(state.notfinite_count) == 1


def test_vmap_over_hyperparameters_equals_separate_runs():
    params, grads = random_problem(seed=4, steps=6)

    def final_params(max_lr, wd):
        opt = transforms.sgd(schedules.one_cycle(6, max_lr / 10, max_lr, step_size=2), 0.9,
                             nesterov=True, weight_decay=wd)
        p = jax.tree.map(jnp.asarray, params)
        state = opt.init(p)
        for g in grads:
            u, state = opt.update(g, state, p)
            p = optax.apply_updates(p, u)
        return p

    max_lrs, wds = jnp.array([0.3, 1.0]), jnp.array([1e-4, 1e-2])
    swept = jax.jit(jax.vmap(final_params))(max_lrs, wds)
    for k in range(2):
        single = final_params(float(max_lrs[k]), float(wds[k]))
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[k], swept), single,
                                    rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: transforms.sgd(-0.1), "learning_rate"),
        (lambda: transforms.sgd(0.1, 1.0), "momentum"),
        (lambda: transforms.sgd(0.1, -0.5), "momentum"),
        (lambda: transforms.sgd(0.1, 0.9, weight_decay=-1e-4), "weight_decay"),
        (lambda: transforms.sgd(lambda t: -0.1 + 0 * t), "learning_rate"),
        (lambda: transforms.trace(1.2), "momentum"),
        (lambda: transforms.sgd("0.1"), "learning_rate='0.1'"),
        (lambda: transforms.trace(False), "momentum=False"),
        (lambda: transforms.sgd(0.1, [0.9]), "momentum=\\[0.9\\]"),
        (lambda: transforms.sgd(0.1, 0.9, weight_decay="1e-4"), "weight_decay='1e-4'"),
    ],
)
def test_invalid_arguments(build, argument):
    with pytest.raises(ValueError, match=argument):
        build()


@pytest.mark.parametrize("momentum, step", [
    (schedules.linear(0.9, 1.2, 1000), 334),  # 0.9 + 0.3 t / 1000 reaches 1 at t = 333.3
    (schedules.one_cycle(100, 0.5, 1.05, step_size=40), 37),  # rises past 1 during the cycle
    (schedules.triangular(0.8, 1.1, 10), 7),  # every cycle peaks at 1.1
])
def test_momentum_schedule_is_checked_over_its_horizon(momentum, step):
    """A momentum schedule that is fine at step 0 but reaches 1 later (which would train into
    NaN) is refused at construction, naming the first bad step."""
    assert float(momentum(0)) < 1
    for build in (lambda: transforms.sgd(0.1, momentum), lambda: transforms.trace(momentum)):
        with pytest.raises(ValueError, match=f"momentum at step {step}=1.0"):
            build()


def test_schedule_beyond_the_sample_count_is_checked_at_evenly_spaced_steps():
    lr = schedules.one_cycle(10**7, 0.5, 1.05)  # momentum > 1 around the peak at 4.5e6
    with pytest.raises(ValueError, match="momentum at step 4"):
        transforms.trace(lr)
    transforms.trace(schedules.one_cycle_momentum(10**7))  # a valid one passes


def test_callable_without_horizon_is_checked_at_step_0():
    with pytest.raises(ValueError, match="learning_rate at step 0"):
        transforms.sgd(lambda t: -0.1 + 0 * t)
    transforms.sgd(lambda t: 0.1 + 0 * t, lambda t: 0.9 + 0 * t)


def test_an_explicit_horizon_checks_a_schedule_without_its_own():
    def rising(t):  # reaches 1 at step 500
        return 0.9 + 0.0002 * t

    transforms.sgd(0.1, rising)  # a plain callable: step 0 only
    with pytest.raises(ValueError, match="momentum at step 500="):
        transforms.sgd(0.1, rising, horizon=1000)
    with pytest.raises(ValueError, match="b1 at step 500="):
        transforms.adamw(0.1, rising, horizon=1000)
    with pytest.raises(ValueError, match="horizon=0 is not allowed"):
        transforms.trace(0.9, horizon=0)


def test_per_parameter_multipliers_match_caffe_semantics():
    """decay_mult and lr_mult per parameter: wd_eff = wd * dm, lr_eff = lr * lm."""
    params, grads = random_problem(seed=5, steps=6)
    decay_mult = {"w": 250.0, "b": 0.0}
    lr_mult = {"w": 1.0, "b": 2.0}
    ours, _ = run_optax(transforms.sgd(0.01, 0.9, weight_decay=1e-4,
                                       weight_decay_multipliers=decay_mult,
                                       learning_rate_multipliers=lr_mult), params, grads)
    for name in params:
        single = {name: params[name]}
        ref = numpy_sgd(single, [{name: g[name]} for g in grads],
                        np.full(6, 0.01 * lr_mult[name]), np.full(6, 0.9),
                        np.full(6, 1e-4 * decay_mult[name]), nesterov=False, decoupled=False)
        np.testing.assert_allclose(ours[-1][name], ref[-1][name], rtol=1e-5, atol=1e-6)


# --- Caffe's momentum form -------------------------------------------------------------------

def numpy_caffe_sgd(params, grads, lr, mom, wd, *, nesterov):
    """Caffe's SGDSolver / NesterovSolver, hand-written: the LR lives in the velocity,
    `v = m v - lr (g + wd w)`; SGD applies `w += v`, Nesterov `w += (1 + m) v - m v_prev`."""
    params = {k: v.astype(np.float64) for k, v in params.items()}
    vel = {k: np.zeros_like(v) for k, v in params.items()}
    out = []
    for t, g in enumerate(grads):
        new = {}
        for k in params:
            prev = vel[k]
            vel[k] = mom[t] * prev - lr[t] * (g[k] + wd[t] * params[k])
            step = (1 + mom[t]) * vel[k] - mom[t] * prev if nesterov else vel[k]
            new[k] = params[k] + step
        params = new
        out.append(params)
    return out


@pytest.mark.parametrize("nesterov", [False, True])
def test_caffe_form_matches_numpy_caffe_solver(nesterov):
    steps = 12
    params, grads = random_problem(seed=6, steps=steps)
    opt = transforms.sgd(schedules.one_cycle(steps, 0.1, 1.0, step_size=4),
                         schedules.one_cycle_momentum(steps, step_size=4), nesterov=nesterov,
                         weight_decay=schedules.linear(1e-3, 0.0, steps), momentum_form="caffe")
    ours, state = run_optax(opt, params, grads)
    lr, mom, wd = closed_form_hyperparams(steps)
    ref = numpy_caffe_sgd(params, grads, lr, mom, wd, nesterov=nesterov)
    for a, b in zip(ours, ref):
        chex.assert_trees_all_close(a, b, rtol=2e-5, atol=2e-6)
    # The PyTorch form of the same schedules is a different trajectory.
    pytorch = numpy_sgd(params, grads, lr, mom, wd, nesterov=nesterov, decoupled=False)
    assert np.abs(pytorch[-1]["w"] - ref[-1]["w"]).max() > 1e-2
    assert transforms.hyperparams(state)["learning_rate"] == pytest.approx(lr[-1], rel=1e-5)


@pytest.mark.parametrize("nesterov", [False, True])
def test_forms_agree_at_constant_lr_and_split_at_a_drop(nesterov):
    params, grads = random_problem(seed=7, steps=10)

    def run(form, lr):
        return run_optax(transforms.sgd(lr, 0.9, nesterov=nesterov, weight_decay=1e-3,
                                        momentum_form=form), params, grads)[0]

    for a, b in zip(run("caffe", 0.1), run("pytorch", 0.1)):
        chex.assert_trees_all_close(a, b, rtol=1e-5, atol=1e-6)
    drop = schedules.multistep(0.1, 0.1, (5,))
    caffe, pytorch = run("caffe", drop), run("pytorch", drop)
    for t in range(5):  # identical before the drop ...
        chex.assert_trees_all_close(caffe[t], pytorch[t], rtol=1e-5, atol=1e-6)
    # ... after it, PyTorch's whole velocity is rescaled at once, Caffe's decays gradually
    lr = np.where(np.arange(10) >= 5, 0.01, 0.1)
    ref = numpy_caffe_sgd(params, grads, lr, np.full(10, 0.9), np.full(10, 1e-3),
                          nesterov=nesterov)
    chex.assert_trees_all_close(caffe[-1], ref[-1], rtol=2e-5, atol=2e-6)
    assert np.abs(np.asarray(caffe[-1]["w"]) - np.asarray(pytorch[-1]["w"])).max() > 1e-3


def test_caffe_form_trace_is_a_complete_update():
    params, grads = random_problem(seed=8, steps=8)
    lr = schedules.one_cycle(8, 0.1, 1.0, step_size=3)
    mom = schedules.one_cycle_momentum(8, step_size=3)
    ours, _ = run_optax(transforms.trace(mom, momentum_form="caffe", learning_rate=lr),
                        params, grads)
    t = np.arange(8)
    ref = numpy_caffe_sgd(params, grads, np.array([float(lr(i)) for i in t]),
                          np.array([float(mom(i)) for i in t]), np.zeros(8), nesterov=False)
    for a, b in zip(ours, ref):
        chex.assert_trees_all_close(a, b, rtol=2e-5, atol=2e-6)


def test_caffe_form_decoupled_and_multipliers_equal_their_definition():
    """SGDW in the Caffe form: w += v - lr * wd * w, with lr_mult scaling the whole step."""
    params, grads = random_problem(seed=9, steps=6)
    lr = schedules.inv(0.1, 0.1, 0.75)
    lr_mult = {"w": 1.0, "b": 2.0}
    ours, _ = run_optax(transforms.sgd(lr, 0.9, weight_decay=1e-2, decoupled_weight_decay=True,
                                       momentum_form="caffe",
                                       learning_rate_multipliers=lr_mult), params, grads)
    for name in params:
        w, vel = params[name].astype(np.float64), np.zeros_like(params[name], np.float64)
        for t, g in enumerate(grads):
            rate = float(lr(t))
            vel = 0.9 * vel - rate * g[name]
            w = w + lr_mult[name] * (vel - rate * 1e-2 * w)
        np.testing.assert_allclose(ours[-1][name], w, rtol=2e-5, atol=2e-6)


def test_momentum_form_arguments():
    with pytest.raises(ValueError, match="momentum_form"):
        transforms.sgd(0.1, 0.9, momentum_form="keras")
    with pytest.raises(ValueError, match="learning_rate"):
        transforms.trace(0.9, momentum_form="caffe")


# --- AdamW -----------------------------------------------------------------------------------

def numpy_adamw(params, grads, lr, b1, b2, eps, wd, *, decay_mask=None, bias_correction="current"):
    """AdamW (Loshchilov & Hutter 2019) as PyTorch's `AdamW` steps it, hand-written in float64,
    hyper-parameters given per step. `bias_correction="current"` divides the first moment by
    `1 - b1_t ** t` (PyTorch's and optax's reading of a changed beta1); `"product"` by
    `1 - prod_s b1_s` (the exact weight of the moving average)."""
    params = {k: v.astype(np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    s = {k: np.zeros_like(v) for k, v in params.items()}
    decay_mask = decay_mask or {k: True for k in params}
    b1_product, out = 1.0, []
    for t, g in enumerate(grads):
        count = t + 1
        b1_product *= b1[t]
        new = {}
        for k in params:
            gk = g[k].astype(np.float64)
            m[k] = b1[t] * m[k] + (1 - b1[t]) * gk
            s[k] = b2[t] * s[k] + (1 - b2[t]) * gk ** 2
            c1 = 1 - (b1[t] ** count if bias_correction == "current" else b1_product)
            direction = (m[k] / c1) / (np.sqrt(s[k] / (1 - b2[t] ** count)) + eps)
            decay = wd[t] * params[k] if decay_mask[k] else 0.0
            new[k] = params[k] - lr[t] * (direction + decay)
        params = new
        out.append(params)
    return out


def adamw_schedules(steps):
    """1cycle LR 1e-3 -> 1e-2 (step size 4, final 1e-6), beta1 0.95 -> 0.85 -> 0.95, beta2
    0.99 -> 0.999 linearly, weight decay 0.1 -> 0, in closed form."""
    t = np.arange(steps, dtype=np.float64)
    lr = np.where(t <= 4, 1e-3 + 9e-3 * t / 4,
                  np.where(t <= 8, 1e-2 - 9e-3 * (t - 4) / 4,
                           1e-3 + (1e-6 - 1e-3) * (t - 8) / (steps - 8)))
    b1 = np.where(t <= 4, 0.95 - 0.1 * t / 4, np.where(t <= 8, 0.85 + 0.1 * (t - 4) / 4, 0.95))
    b2 = 0.99 + 0.009 * t / steps
    wd = 0.1 * (1 - t / steps)
    return lr, b1, b2, wd


def test_scheduled_adamw_matches_numpy_loop_with_mask():
    """Scheduled LR, beta1, beta2 and weight decay, decay masked off the bias: step for step
    the hand-written AdamW, bias-correcting with the current beta1."""
    steps = 12
    params, grads = random_problem(seed=8, steps=steps)
    opt = transforms.adamw(
        schedules.one_cycle(steps, 1e-3, 1e-2, step_size=4, final_value=1e-6),
        b1=schedules.one_cycle_momentum(steps, step_size=4),
        b2=schedules.linear(0.99, 0.999, steps), eps=1e-8,
        weight_decay=schedules.linear(0.1, 0.0, steps),
        weight_decay_mask={"w": True, "b": False})
    ours, state = run_optax(opt, params, grads)
    lr, b1, b2, wd = adamw_schedules(steps)
    mask = {"w": True, "b": False}
    ref = numpy_adamw(params, grads, lr, b1, b2, 1e-8, wd, decay_mask=mask)
    for a, b in zip(ours, ref):
        chex.assert_trees_all_close(a, b, rtol=1e-5, atol=1e-6)
    # the test tells the two bias corrections apart, and the mask from no mask
    exact = numpy_adamw(params, grads, lr, b1, b2, 1e-8, wd, decay_mask=mask,
                        bias_correction="product")
    assert np.abs(exact[1]["w"] - ref[1]["w"]).max() > 1e-4
    unmasked = numpy_adamw(params, grads, lr, b1, b2, 1e-8, wd)
    assert np.abs(unmasked[-1]["b"] - ref[-1]["b"]).max() > 1e-4
    used = transforms.hyperparams(state)
    assert used["learning_rate"] == pytest.approx(lr[-1], rel=1e-5)
    assert used["momentum"] == used["b1"] == pytest.approx(b1[-1], rel=1e-6)
    assert used["b2"] == pytest.approx(b2[-1], rel=1e-6)
    assert used["weight_decay"] == pytest.approx(wd[-1], rel=1e-5, abs=1e-9)


def test_constant_adamw_equals_optax_adamw():
    params, grads = random_problem(seed=9)
    mask = {"w": True, "b": False}
    ours, _ = run_optax(transforms.adamw(3e-3, 0.9, 0.99, 1e-6, weight_decay=0.05,
                                         weight_decay_mask=mask), params, grads)
    ref, _ = run_optax(optax.adamw(3e-3, 0.9, 0.99, 1e-6, weight_decay=0.05, mask=mask),
                       params, grads)
    for a, b in zip(ours, ref):
        chex.assert_trees_all_close(a, b, rtol=1e-6, atol=1e-7)


def test_adamw_multipliers_scale_decay_and_step_per_parameter():
    params, grads = random_problem(seed=10, steps=6)
    decay_mult, lr_mult = {"w": 3.0, "b": 0.0}, {"w": 1.0, "b": 2.0}
    ours, _ = run_optax(transforms.adamw(1e-2, weight_decay=0.1,
                                         weight_decay_multipliers=decay_mult,
                                         learning_rate_multipliers=lr_mult), params, grads)
    for name in params:
        ref = numpy_adamw({name: params[name]}, [{name: g[name]} for g in grads],
                          np.full(6, 1e-2 * lr_mult[name]), np.full(6, 0.9), np.full(6, 0.999),
                          1e-8, np.full(6, 0.1 * decay_mult[name]))
        np.testing.assert_allclose(ours[-1][name], ref[-1][name], rtol=1e-5, atol=1e-6)


def test_hyperparams_of_sgd_have_no_adam_keys():
    state = transforms.sgd(0.1, 0.9).init({"w": jnp.ones(2)})
    assert set(transforms.hyperparams(state)) == set(transforms.HYPERPARAM_NAMES)
    state = transforms.adamw(1e-3).init({"w": jnp.ones(2)})
    assert transforms.hyperparams(state) == {
        "learning_rate": pytest.approx(1e-3), "momentum": pytest.approx(0.9),
        "weight_decay": 0.0, "b1": pytest.approx(0.9), "b2": pytest.approx(0.999)}


@pytest.mark.parametrize("build, argument", [
    (lambda: transforms.adamw(-1e-3), "learning_rate"),
    (lambda: transforms.adamw(1e-3, b1=1.0), "b1"),
    (lambda: transforms.adamw(1e-3, b1=lambda t: 1.5 + 0 * t), "b1"),
    (lambda: transforms.adamw(1e-3, b2=-0.1), "b2"),
    (lambda: transforms.adamw(1e-3, eps=-1e-8), "eps"),
    (lambda: transforms.adamw(1e-3, weight_decay=-0.1), "weight_decay"),
])
def test_adamw_invalid_arguments(build, argument):
    with pytest.raises(ValueError, match=argument):
        build()
