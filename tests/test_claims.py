"""The claims' rules on hand-made records with known answers: the tie margin, each check's
verdicts both ways, missing and diverged runs, and the claims table of a report."""

import numpy as np
import pytest

from hparams_jax.experiment import Claim, claims
from hparams_jax.experiment.records import Run
from hparams_jax.range_test import Family, RangeTestResult
from hparams_jax.train import History


def run(name, accs, epochs=12.0, losses=None, curve=None, diverged=(), batch=512):
    """A finished run of `name`: final accuracies per seed, and an accuracy curve over
    `epochs` of 100 steps of `batch` (linear to the final value unless `curve(epoch) -> acc`
    is given)."""
    losses = [1 - a for a in accs] if losses is None else losses
    members, rows = [], []
    for k, (acc, loss) in enumerate(zip(accs, losses)):
        members.append({"member": k, "diverged": k in diverged, "test_accuracy": acc,
                        "test_loss": loss})
        for ep in np.linspace(epochs / 10, epochs, 10):
            a = curve(ep) if curve else acc * ep / epochs
            rows.append({"kind": "eval", "step": int(ep * 100), "epoch": float(ep),
                         "member": k, "test_accuracy": float(a), "test_loss": 1 - float(a)})
    return Run(name, 1.0, {"members": members, "epochs": epochs, "step": round(epochs * 100),
                           "config": {"batch_size": batch}}, History(rows))


def test_tie_margin_is_two_standard_errors_with_a_floor():
    a, b = np.array([0.90, 0.91, 0.92, 0.93]), np.array([0.95, 0.96])
    se = np.sqrt(a.var(ddof=1) / 4 + b.var(ddof=1) / 2)
    assert claims.tie_margin(a, b) == pytest.approx(2 * se)
    assert claims.tie_margin(np.array([0.9]), np.array([0.9])) == claims.MIN_MARGIN
    assert claims.compare(b, a) == 1 and claims.compare(a, b) == -1
    assert claims.compare(np.array([0.9000, 0.9010]), np.array([0.9004, 0.9008])) == 0


def test_super_convergence_holds_or_not_with_epochs_both_ways():
    claim = Claim("sc", "Sec. 4.1", "s", "super_convergence",
                  dict(one_cycle="1c", baseline="base", others=("const",)))
    base = run("base", [0.900, 0.902], epochs=85, curve=lambda ep: min(0.901, 0.85 + ep / 100))
    const = run("const", [0.895, 0.897], epochs=85)
    good = claims.evaluate(claim, {"1c": run("1c", [0.905, 0.906, 0.904, 0.905]),
                                   "base": base, "const": const}, {})
    assert good.verdict == claims.HOLDS and "7.1x fewer epochs" in good.why
    bad = claims.evaluate(claim, {"1c": run("1c", [0.880, 0.881, 0.879, 0.880]),
                                  "base": base, "const": const}, {})
    assert bad.verdict == claims.FAILS
    # the baseline's curve crosses 0.88 at epoch 3 (0.85 + ep / 100): the evaluation after it
    assert "the baseline needs 8.5 epochs" in bad.why
    assert "1cycle's epochs to the baseline's final accuracy: never" in bad.measured
    # the other policies are context: the verdict needs only 1cycle and the baseline
    alone = claims.evaluate(claim, {"1c": run("1c", [0.905, 0.906, 0.904, 0.905]),
                                    "base": base}, {})
    assert alone.verdict == claims.HOLDS and "`const` not run yet" in alone.measured
    assert claims.evaluate(claim, {"base": base}, {}).verdict == claims.NOT_RUN


def test_missing_and_diverged_runs():
    claim = Claim("cm", "Sec. 4.3", "s", "cyclical_momentum",
                  dict(cyclical=("a",), constant=("b",)))
    assert claims.evaluate(claim, {"a": run("a", [0.9])}, {}).verdict == claims.NOT_RUN
    partly = run("b", [0.9, np.nan, 0.92], diverged=(1,))
    verdict = claims.evaluate(claim, {"a": run("a", [0.9]), "b": partly}, {})
    assert "`b` 0.9100 ± 0.0141 (12 ep.; 1 of 3 runs diverged, not counted)" in verdict.measured
    dead = run("b", [np.nan], diverged=(0,))
    assert claims.evaluate(claim, {"a": run("a", [0.9]), "b": dead}, {}).verdict == \
        claims.INCONCLUSIVE


def _family(param, values, eval_losses, max_lrs):
    results = []
    for loss, lr in zip(eval_losses, max_lrs):
        ramp = np.linspace(0.001, 1.0, 100)
        train = 2.0 - 1.5 * np.minimum(ramp / lr, 1) + 10 * np.maximum(ramp - lr, 0) ** 2
        idx = np.arange(9, 100, 10)
        results.append(RangeTestResult(
            learning_rate=ramp, train_loss=train, smoothed_loss=train,
            train_accuracy=np.zeros(100), eval_step=idx + 1.0, eval_learning_rate=ramp[idx],
            eval_loss=loss + np.maximum(ramp[idx] - lr, 0), eval_accuracy=0.9 - 0 * idx,
            mode="linear", start=0.001, stop=1.0, num_steps=100, stop_factor=4.0,
            stop_reason="completed"))
    return Family(param, list(values), results)


def test_weight_decay_pick_and_policy():
    family = _family("weight_decay", [1e-3, 1e-4], [0.40, 0.35], [0.5, 0.5])
    runs = {1e-3: "wd3", 1e-4: "wd4"}
    pick = Claim("wd", "Sec. 4.4", "s", "weight_decay_pick", dict(test="wd", runs=runs))
    records = {"wd3": run("wd3", [0.90, 0.90]), "wd4": run("wd4", [0.92, 0.92])}
    assert claims.evaluate(pick, records, {"wd": family}).verdict == claims.HOLDS
    records["wd3"] = run("wd3", [0.95, 0.95])
    verdict = claims.evaluate(pick, records, {"wd": family})
    assert verdict.verdict == claims.FAILS and "picks WD 0.0001" in verdict.why

    policy = Claim("p", "Sec. 4.4", "s", "weight_decay_policy",
                   dict(one_cycle={1e-3: "wd3", 1e-4: "wd4", 1e-5: "wd5"},
                        constant={1e-3: "c3", 1e-4: "c4", 1e-5: "c5"}))
    records = {"wd3": run("wd3", [0.90, 0.90]), "wd4": run("wd4", [0.92, 0.92]),
               "wd5": run("wd5", [0.88, 0.88]), "c3": run("c3", [0.91, 0.91]),
               "c4": run("c4", [0.89, 0.89]), "c5": run("c5", [0.87, 0.87])}
    assert claims.evaluate(policy, records, {}).verdict == claims.HOLDS
    records["c4"] = run("c4", [0.93, 0.93])
    verdict = claims.evaluate(policy, records, {})
    assert verdict.verdict == claims.FAILS
    assert "`c5` 0.8700 ± 0.0000 (12 ep.); under 1cycle: `wd3`" in verdict.measured
    assert "|" not in verdict.measured  # a cell of the report's markdown table
    assert verdict.why == ("both policies train best at WD 0.0001 (constant LR: +0.0200 over WD "
                           "0.001, tie margin 0.0010; 1cycle: +0.0200 over WD 0.001, tie margin "
                           "0.0010)")
    # The same best at an end of the values tried: the optimum may lie beyond it.
    records.update(wd5=run("wd5", [0.95, 0.95]), c5=run("c5", [0.95, 0.95]))
    verdict = claims.evaluate(policy, records, {})
    assert verdict.verdict == claims.INCONCLUSIVE
    assert verdict.why == ("both policies train best at WD 1e-05, an end of the values tried "
                           "under constant LR and 1cycle: the optimum may lie beyond it")
    # The same best inside, but within the tie margin of the runner-up under each.
    records.update(wd3=run("wd3", [0.919, 0.921]), wd4=run("wd4", [0.920, 0.922]),
                   wd5=run("wd5", [0.90, 0.90]), c3=run("c3", [0.910, 0.912]),
                   c4=run("c4", [0.911, 0.913]), c5=run("c5", [0.90, 0.90]))
    verdict = claims.evaluate(policy, records, {})
    assert verdict.verdict == claims.INCONCLUSIVE
    assert "under neither beyond the tie margin" in verdict.why
    assert "constant LR: +0.0010 over WD 0.001, tie margin 0.0028" in verdict.why


def test_range_test_bounds_and_batch_size():
    family = _family("setting", ["lr"], [0.35], [0.2])
    claim = Claim("rt", "Sec. 4.1", "s", "range_test_bounds",
                  dict(test="lr", at={"1x": "x1", "0.5x": "x05", "2x": "x2"},
                       min_fraction={"max/3": "third"}))
    records = {"x1": run("x1", [0.91, 0.91]), "x05": run("x05", [0.90, 0.90]),
               "x2": run("x2", [np.nan], diverged=(0,)), "third": run("t", [0.91, 0.911])}
    verdict = claims.evaluate(claim, records, {"lr": family})
    assert verdict.verdict == claims.HOLDS
    assert "2x: `x2` diverged (1 of 1 runs, by epoch 12)" in verdict.measured
    assert "(2x diverged)" in verdict.why and "min_lr max/3 ties max/10" in verdict.why
    records["third"] = run("t", [np.nan] * 2, diverged=(0, 1))
    verdict = claims.evaluate(claim, records, {"lr": family})
    assert verdict.verdict == claims.HOLDS
    assert "min_lr max/3 diverged, where max/10 trains" in verdict.why
    records["x05"] = run("x05", [0.93, 0.93])
    assert claims.evaluate(claim, records, {"lr": family}).verdict == claims.FAILS
    records["x1"] = run("x1", [np.nan] * 2, diverged=(0, 1))
    verdict = claims.evaluate(claim, records, {"lr": family})
    assert verdict.verdict == claims.FAILS and "suggested max_lr diverged" in verdict.why
    del records["third"]
    assert claims.evaluate(claim, records, {"lr": family}).verdict == claims.NOT_RUN

    sizes = _family("batch_size", [128, 1024], [0.3, 0.35], [0.1, 0.3])
    claim = Claim("bs", "Sec. 4.2", "s", "batch_size",
                  dict(test="bs", runs={128: "b128", 1024: "b1024"}))
    records = {"b128": run("b128", [0.90, 0.90], losses=[0.25, 0.25]),
               "b1024": run("b1024", [0.90, 0.901], losses=[0.30, 0.30])}
    verdict = claims.evaluate(claim, records, {"bs": sizes})
    assert verdict.verdict == claims.HOLDS
    assert "smaller batches end at lower test loss" in verdict.why


def test_curve_reading_checks_each_reading_against_the_longer_run(monkeypatch):
    claim = Claim("c", "Sec. 3", "s", "curve_reading", dict(series=("short", "long")))
    records = {"short": run("short", [0.9, 0.9], losses=[0.30, 0.30]),
               "long": run("long", [0.91, 0.91], losses=[0.25, 0.25])}
    readings = {"short": "underfitting", "long": "healthy"}
    monkeypatch.setattr(claims, "_verdict_of", lambda r: readings[r.setting])
    assert claims.evaluate(claim, records, {}).verdict == claims.HOLDS
    readings["short"] = "overfitting"  # but the longer run ended lower
    verdict = claims.evaluate(claim, records, {})
    assert verdict.verdict == claims.FAILS
    assert "`long` ends below `short` in test loss" in verdict.why
    readings["short"] = "healthy"
    assert claims.evaluate(claim, records, {}).verdict == claims.INCONCLUSIVE
    # other policies' runs are read beside the series once they exist; they decide nothing
    claim = Claim("c", "Sec. 3", "s", "curve_reading",
                  dict(series=("short", "long"), others=("base",)))
    readings.update(short="underfitting", base="overfitting")
    verdict = claims.evaluate(claim, records, {})
    assert verdict.verdict == claims.HOLDS and "`base` not run yet" in verdict.measured
    records["base"] = run("base", [0.8], losses=[0.5])
    verdict = claims.evaluate(claim, records, {})
    assert verdict.verdict == claims.HOLDS and "`base` overfitting (test loss 0.5000)" in \
        verdict.measured
    del records["long"]
    assert claims.evaluate(claim, records, {}).verdict == claims.NOT_RUN


def test_todays_schedules_against_1cycle_both_ways_and_at_unequal_examples():
    claim = Claim("t", "Sec. 4.1", "s", "todays_schedules",
                  dict(one_cycle="1c", others={"cosine": "cos", "WSD": "wsd"}))
    one_cycle = run("1c", [0.912, 0.914, 0.913, 0.911])
    level = {"1c": one_cycle, "cos": run("cos", [0.913, 0.912, 0.914, 0.910]),
             "wsd": run("wsd", [0.900, 0.902, np.nan, 0.901], diverged=(2,))}
    held = claims.evaluate(claim, level, {})
    assert held.verdict == claims.HOLDS and held.why == "1cycle: ties cosine; beats WSD"
    assert "1 of 4 runs diverged, not counted" in held.measured
    better = dict(level, cos=run("cos", [0.920, 0.921, 0.922, 0.921]))
    failed = claims.evaluate(claim, better, {})
    assert failed.verdict == claims.FAILS and failed.why == "cosine trains better than 1cycle"
    longer = dict(level, cos=run("cos", [0.913, 0.912], epochs=24))
    assert claims.evaluate(claim, longer, {}).verdict == claims.INCONCLUSIVE
    # half its runs diverged: the two that trained end higher, a selected sample: undecided
    unstable = dict(level, cos=run("cos", [0.920, np.nan, 0.921, np.nan], diverged=(1, 3)))
    verdict = claims.evaluate(claim, unstable, {})
    assert verdict.verdict == claims.INCONCLUSIVE
    assert verdict.why == ("1cycle: beats WSD; cosine diverged in some runs, and the runs that "
                           "trained end above 1cycle")
    level_unstable = dict(level, cos=run("cos", [0.913, np.nan], diverged=(1,)))
    verdict = claims.evaluate(claim, level_unstable, {})
    assert verdict.verdict == claims.HOLDS and verdict.why == (
        "1cycle: beats WSD; cosine diverged in some runs, and the others end level")


def test_lr_free_counts_the_range_tests_examples_and_compares_by_the_tie_rule():
    claim = Claim("f", "Sec. 4.1", "s", "lr_free",
                  dict(procedure="1c", test="lr", others={"Prodigy": "prodigy"}))
    test = {"lr": _family("lr", [None], [0.3], [0.2])}  # a 100-step range test
    procedure = run("1c", [0.912, 0.914, 0.913, 0.911])  # 1,200 steps of 512
    behind = claims.evaluate(claim, {"1c": procedure, "prodigy": run(
        "prodigy", [0.905, 0.904, 0.906, 0.905])}, test)
    assert behind.verdict == claims.HOLDS and behind.why == "the procedure's 1cycle: beats Prodigy"
    assert "procedure 13 epochs of examples (range test 1 + run 12)" in behind.measured
    assert "Prodigy 12" in behind.measured
    ahead = claims.evaluate(claim, {"1c": procedure, "prodigy": run(
        "prodigy", [0.925, 0.924, 0.926, 0.925], epochs=12.8)}, test)
    assert ahead.verdict == claims.FAILS and "Prodigy 12.8" in ahead.measured


def test_procedure_against_the_grids_best_of_its_length_and_the_default_1cycle(tmp_path):
    record = tmp_path / "tune" / "tune.json"
    claim = Claim("p", "Sec. 4-5", "s", "procedure",
                  dict(tuned="tuned", default="1c", record=str(record)))
    grid = {"1c": run("1c", [0.912, 0.914, 0.913, 0.911]),
            "mom": run("mom", [0.917, 0.918, 0.916, 0.917]),
            # ends higher, but two of its four runs diverged: shown, never the grid's best
            "cos": run("cos", [0.925, np.nan, 0.926, np.nan], diverged=(1, 3)),
            "long": run("long", [0.930, 0.931], epochs=24),  # another length: not compared
            "tuned": run("tuned", [0.9165, 0.9175, 0.917, 0.916], batch=128)}
    grid["tuned"].summary["step"] *= 4  # 12 epochs at batch 128: the grid's examples
    tests = {"lr": _family("lr", ["lr"], [0.3], [0.2]),  # 100 steps of 512: 1 epoch
             "bs": _family("batch_size", [128, 1024], [0.3, 0.3], [0.2, 0.2])}  # 0.25 + 2
    assert claims.evaluate(claim, grid, tests).verdict == claims.NOT_RUN  # no tune.json yet
    record.parent.mkdir()
    record.write_text('{"budget": {"spent_epochs": 9.5, "spent_seconds": 600.0, "seeds": 2, '
                      '"final_seeds": [0, 1, 2, 3]}}')
    held = claims.evaluate(claim, grid, tests)
    assert held.verdict == claims.HOLDS
    assert held.why.startswith("tuned ties the grid's best `mom` (-0.0002, tie margin")
    assert "; beats the default 1cycle `1c` (+0.0043" in held.why
    assert "the grid's best of 2 settings of its length: `mom` 0.9170" in held.measured
    assert "above it with runs diverged: `cos`" in held.measured
    # runs: 4x12 + 4x12 + 4x12 + 2x24; range tests 1 + 0.25 + 2 epochs of examples
    assert ("the search 9.5 epochs of examples (10 min, range tests at 2 seeds); the grid "
            "195.2 epochs (runs 192 over 4 settings, range tests 3.25)") in held.measured
    worse = dict(grid, tuned=run("tuned", [0.905, 0.906, 0.904, 0.905]))
    failed = claims.evaluate(claim, worse, tests)
    assert failed.verdict == claims.FAILS
    assert "trails the grid's best `mom`" in failed.why and "trails the default" in failed.why
    alone = {"1c": grid["1c"], "tuned": run("tuned", [0.92], epochs=6)}  # nothing of its length
    assert claims.evaluate(claim, alone, tests).verdict == claims.INCONCLUSIVE
    dead = dict(grid, tuned=run("tuned", [np.nan, np.nan], diverged=(0, 1)))
    assert claims.evaluate(claim, dead, tests).why == "every tuned run diverged"
