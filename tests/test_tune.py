"""`hparams_jax.tune` and `hparams-jax tune`: one small real run on a Fashion-MNIST subset that
completes every stage, each recorded choice checked by re-applying the paper's rule to the
numbers recorded in tune.json (every reading at least 50 usable steps, families at 2 seeds,
batch sizes at equal examples); the ramp's scout and lengthening, the tie rules and the budget
on made-up numbers; a killed `tune` resumed; damaged stage records and failed writes; bad input
and the workdir locks."""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import held_by_another_process, run_cli

from hparams_jax import ConfigError, cli
from hparams_jax.errors import UnreadableFileError
from hparams_jax.range_test import EVAL_TOLERANCE, NoSuggestionError, RangeTestResult, centred
from hparams_jax.train import TrainConfig, WorkdirLocked, WorkdirWriteError
from hparams_jax.train.metrics import read_rows
from hparams_jax.train.tensorboard import read_scalars
from hparams_jax.tuning import advice, budget, final, ramp, readings, records, stages, tune
from hparams_jax.tuning.batch import _step_bytes, check_candidate
from hparams_jax.tuning.budget import Cut, plan_search

SMALL = TrainConfig(model="lenet", dataset="fashion_mnist", batch_size=64, train_examples=1024,
                    eval_examples=256, epochs=2, momentum=0.9, weight_decay=5e-4,
                    progress=False)
SEARCH = dict(batch_sizes=[64, 128, 2048], momenta=[(0.95, 0.85), 0.9],
              weight_decays=[1e-3, 1e-5, 1e-4], start=0.001, stop=0.3, range_steps=60,
              budget=800)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tune")
    result = tune(SMALL.replace(workdir=str(workdir)), **SEARCH)
    return result, json.loads((workdir / "tune.json").read_text())


def _decision(record, stage):
    return next(d for d in record["decisions"] if d["stage"] == stage)


def _stage_results(workdir, name):
    path = workdir / "stages" / f"{name}.json"
    return [RangeTestResult.from_dict(r) for r in json.loads(path.read_text())["range_tests"]]


def _same(x, y):
    return (list(x) if isinstance(x, (list, tuple)) else x) == (
        list(y) if isinstance(y, (list, tuple)) else y)


def _tied(rows):
    """The rows tied with the lowest mean held-out loss, re-derived from the recorded seeds:
    within two standard errors of the difference, at least 2% of the lowest."""
    compared = [r for r in rows if not r["excluded"] and r["max_lr"] is not None]
    lowest = min(compared, key=lambda r: r["best_eval_loss"])

    def margin(r):
        var = sum(np.var(x, ddof=1) / len(x)
                  for x in (r["best_eval_losses"], lowest["best_eval_losses"]))
        return max(2 * math.sqrt(var), EVAL_TOLERANCE * lowest["best_eval_loss"])

    return [r for r in compared if r["best_eval_loss"] - lowest["best_eval_loss"] <= margin(r)]


def _check_rows(rows, seeds):
    """Every compared row rests on `seeds` tests of at least 50 usable steps; the recorded
    mean and spread are those of its seeds."""
    for r in rows:
        assert r["seeds"] == seeds
        assert r["excluded"] or r["usable_steps"] >= ramp.MIN_USABLE_STEPS
        assert r["best_eval_loss"] == pytest.approx(np.mean(r["best_eval_losses"]))
        assert r["best_eval_loss_std"] == pytest.approx(np.std(r["best_eval_losses"], ddof=1))


def test_tune_completes_every_stage_by_the_papers_rules(tuned):
    result, record = tuned
    workdir = result.workdir
    assert [d["stage"] for d in record["decisions"]] == [
        "lr_range", "batch_size", "momentum", "weight_decay", "one_cycle"]
    assert [d["section"] for d in record["decisions"][:4]] == ["4.1", "4.2", "4.3", "4.4"]

    # 1. the range test's bounds are its curve's suggestion, read on enough usable steps
    first = _decision(record, "lr_range")
    (start,) = _stage_results(workdir, "lr_range")
    s = start.suggest("one_cycle")
    assert first["choice"] == {"max_lr": s.max_lr, "min_lr": s.min_lr} == first["bounds"]
    assert [c["name"] for c in first["candidates"]] == ["paper", "steepest", "valley",
                                                        "minimum/10"]
    assert {c["usable_steps"] for c in first["candidates"]} == {start.steps_run}
    assert start.steps_run >= ramp.MIN_USABLE_STEPS
    assert (first["ramp"]["start"], first["ramp"]["stop"]) == (0.001, 0.3)  # --stop kept
    # 60 steps to 0.3 blow up after about 20: the ramp is lengthened, and the record says so
    assert first["ramp"]["steps"] == start.num_steps > 60
    assert "the LR range test stopped after" in first["attempts"][0]
    assert "run again over" in first["attempts"][0]

    # 2. batch sizes at equal examples and 2 seeds; ties go to the fastest, then the smallest
    batch = _decision(record, "batch_size")
    by_size = {c["batch_size"]: c for c in batch["candidates"]}
    assert not by_size[2048]["fits"] and "1024 training examples" in by_size[2048]["reason"]
    tested = [c for c in batch["candidates"] if c["tested"]]
    assert sorted(c["batch_size"] for c in tested) == [64, 128]
    _check_rows(tested, [0, 1])
    examples = {c["planned_examples"] for c in tested}
    assert max(examples) - min(examples) <= 64  # the same examples, rounded to whole steps
    assert by_size[64]["steps"] == pytest.approx(2 * by_size[128]["steps"], abs=1)
    assert all(c["examples_per_s"] > 0 for c in tested)
    tied = _tied(tested)
    fastest = max(c["examples_per_s"] for c in tested)
    fast = [c["batch_size"] for c in tested if c["examples_per_s"] * 1.1 >= fastest]
    assert batch["tie_order"][:len(fast)] == sorted(fast)
    assert batch["choice"] == next(b for b in batch["tie_order"]
                                   if b in [c["batch_size"] for c in tied])
    assert batch["bounds"]["max_lr"] == by_size[batch["choice"]]["max_lr"]
    assert "examples/s" in batch["reason"]

    # 3.-4. the families at 2 seeds: ties with the lowest mean go to the first in the list
    for stage, order in (("momentum", [[0.95, 0.85], 0.9]),
                         ("weight_decay", [1e-3, 1e-5])):  # 1e-4 cut by the budget
        d = _decision(record, stage)
        assert d["tie_order"] == order and len(d["candidates"]) == 2
        _check_rows(d["candidates"], [0, 1])
        tied = _tied(d["candidates"])
        assert _same(d["choice"], next(v for v in order
                                       if any(_same(r[stage], v) for r in tied)))
        assert [r[stage] for r in d["candidates"] if r["tie"]] == [r[stage] for r in tied]
        chosen = next(r for r in d["candidates"] if _same(r[stage], d["choice"]))
        assert d["bounds"]["max_lr"] == chosen["max_lr"]
        assert d["bounds"]["min_lr"] == pytest.approx(chosen["max_lr"] / 10)
        tests = _stage_results(workdir, stage)
        assert len(tests) == 4 and [r.setting["seed"] for r in tests] == [0, 1, 0, 1]
        assert d["steps_spent"] >= sum(r.steps_run for r in tests)
    mom, wd = _decision(record, "momentum"), _decision(record, "weight_decay")
    for r in _stage_results(workdir, "weight_decay"):  # run at the chosen batch and momentum
        assert _same(r.setting["momentum"], mom["choice"])
        assert r.label.startswith("weight_decay=")

    # 5. 1cycle with the chosen values and the last bounds, at 2 seeds
    final = _decision(record, "one_cycle")
    config = result.config
    assert final["choice"]["batch_size"] == config.batch_size == batch["choice"]
    assert _same(final["choice"]["momentum"], mom["choice"])
    assert config.weight_decay == wd["choice"]
    assert (config.max_lr, config.min_lr) == (wd["bounds"]["max_lr"], wd["bounds"]["min_lr"])
    members = result.history.summary["members"]
    assert [m["setting"]["seed"] for m in members] == final["result"]["seeds"] == [0, 1]
    accuracies = [m["test_accuracy"] for m in members]
    assert final["result"]["test_accuracies"] == accuracies
    assert final["result"]["test_accuracy"] == pytest.approx(np.mean(accuracies))
    assert final["result"]["test_accuracy_std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert final["result"]["epochs"] == pytest.approx(2)
    assert final["diagnosis"]["verdict"] == result.diagnosis.verdict
    assert final["next_step"] == advice.next_step(result.diagnosis.verdict)
    assert "±" in result.text()

    # the report reads the stages in order and links figures that exist
    report = (workdir / "report.md").read_text()
    headings = [line for line in report.splitlines() if line.startswith("## ")]
    assert headings[1:] == ["## 1. LR range test (Sec. 4.1)", "## 2. Batch size (Sec. 4.2)",
                            "## 3. Momentum (Sec. 4.3)", "## 4. Weight decay (Sec. 4.4)",
                            "## 5. The 1cycle run (Sec. 4.1, 5) and its reading (Sec. 3)"]
    assert "| batch_size | fits | tested | steps | planned_examples | examples_per_s |" in report
    for name in ("lr_range", "batch_size", "momentum", "weight_decay", "one_cycle"):
        assert f"]({name}.png)" in report and (workdir / f"{name}.png").stat().st_size > 0


def test_the_budget_thins_a_family_and_the_record_states_the_cost(tuned):
    result, record = tuned
    spent = record["budget"]
    assert spent["range_steps"] == 60 and spent["planned_steps"] == 60 * 15
    assert spent["cuts"] == ["weight decay family thinned: 0.0001 not tested"]
    assert spent["plan_steps"] == 60 * 13 <= SEARCH["budget"]
    assert _decision(record, "weight_decay")["budget_cut"] == spent["cuts"][0]
    assert all(not d["budget_cut"] for d in record["decisions"][:3])
    examples = sum(d["examples_spent"] for d in record["decisions"][:4])
    assert spent["spent_examples"] == examples and spent["spent_steps"] == round(examples / 64)
    assert spent["spent_epochs"] == pytest.approx(examples / 1024)
    assert spent["final_examples"] == 2 * 1024 and spent["final_epochs"] == pytest.approx(2)
    assert spent["spent_seconds"] > 0 and spent["final_seconds"] > 0
    assert spent["spent_per_final_run"] == pytest.approx(examples / 2048)
    assert spent["within_budget"] == (examples / 64 <= SEARCH["budget"])
    report = (result.workdir / "report.md").read_text()
    assert "0.0001 not tested" in report
    # counted at the starting batch 64, whichever batch the search chose
    assert f"({examples / 64:.0f} steps at the starting batch against a plan" in report


def test_plan_search_thins_families_from_their_end_then_shortens():
    plan = plan_search(None, 300, dict(batch_size=[128, 512, 256], momentum=[0.9, 0.95],
                                       weight_decay=[1e-3, 1e-4]), seeds=2, scout_steps=100)
    assert plan.cuts == () and plan.steps == plan.planned_steps == 100 + 300 * (1 + 2 * 7)
    plan = plan_search(850, 100, dict(batch_size=[128, 512, 256],
                                       momentum=[(0.95, 0.85), 0.9, 0.99],
                                       weight_decay=[1e-3, 1e-4]), seeds=1)
    assert plan.range_steps == 100 and plan.steps == 800
    assert plan.candidates["batch_size"] == (128, 512, 256)
    assert plan.candidates["momentum"] == ((0.95, 0.85), 0.9)
    assert plan.candidates["weight_decay"] == (1e-3, 1e-4)
    assert plan.cuts == (Cut("momentum", "momentum family thinned: 0.99 not tested"),)
    plan = plan_search(170, 100, dict(batch_size=[128, 256], momentum=[0.9],
                                      weight_decay=[1e-4]), seeds=2, scout_steps=100)
    assert plan.candidates == dict(batch_size=(128,), momentum=(), weight_decay=())
    assert plan.range_steps == 70 and plan.steps == 170
    assert "stage skipped, the starting value kept" in plan.cut_for("momentum")
    assert plan.cut_for("lr_range") == "range tests shortened from 100 to 70 steps (minimum 50)"


def test_a_budget_in_final_runs_reads_as_steps_at_the_starting_batch():
    assert budget.read("1.5x", 3 * 60_000, 128) == int(1.5 * 180_000 // 128)
    assert budget.read(" 2x ", 1000, 10) == 200 and budget.read(700, None, 64) == 700
    assert budget.read(None, 1000, 64) is None
    for bad in ("fast", "0x", "-1x", 1.5):
        with pytest.raises(ConfigError, match="budget must be an integer .* such as '1.0x'"):
            budget.read(bad, 1000, 64)
    with pytest.raises(ConfigError, match="training examples are unknown"):
        budget.read("1x", None, 64)


# --- the ramp and the readings, on made-up tests -----------------------------------------------

def _test(steps_run, num_steps=100, reason=None, seed=0, eval_loss=1.0, rise_at=0.6):
    """A made-up linear range test that stopped after `steps_run` of `num_steps` steps."""
    lr = np.linspace(0.01, 1.0, num_steps)[:steps_run]
    loss = 2.3 - 1.5 * lr + 20.0 * np.maximum(lr - rise_at, 0.0) ** 2
    at = np.arange(4, steps_run, 5)
    return RangeTestResult(lr, loss, centred(loss), 0 * lr, at + 1.0, lr[at],
                           eval_loss + 0.1 * (lr[at] - lr[at].mean()) ** 2, 0.8 + 0 * lr[at],
                           "linear", 0.01, 1.0, num_steps, 4.0,
                           reason or ("completed" if steps_run == num_steps else "blew up"),
                           setting={"seed": seed})


def test_scout_stop_is_where_the_exponential_scout_stopped():
    r = _test(40, reason="non-finite loss or gradient")
    stop, text = ramp.scout_stop(r)
    assert stop == r.learning_rate[-1] and "stopped after 40 steps" in text
    done = _test(100)
    assert ramp.scout_stop(done)[0] == done.stop and "never blew up" in ramp.scout_stop(done)[1]


def test_long_enough_lengthens_a_short_family_and_leaves_out_a_far_shorter_one():
    """Candidate a reads 100 steps on any ramp, b blows up after 40% of the ramp's first 100
    steps (more on a longer ramp), c after 10 steps at any length."""
    ran = []

    def run(r, indices):
        ran.append((r.examples, list(indices)))
        steps = r.steps(10)
        return {i: [_test(min(steps, {0: 100, 1: 40 * steps // 100, 2: 10}[i]), steps)]
                for i in indices}

    start = ramp.Ramp.of(0.01, 1.0, 100, 10)
    found, read, left_out, notes, spent = ramp.long_enough(run, start, ["a", "b", "c"],
                                                           [10, 10, 10])
    factor = ramp.HEADROOM * ramp.MIN_USABLE_STEPS / 40
    assert found.examples == math.ceil(1000 * factor)
    assert ran == [(1000, [0, 1, 2]), (found.examples, [0, 1])]  # c is not run again
    assert read[1][0].steps_run >= ramp.MIN_USABLE_STEPS
    assert list(left_out) == [2] and "after 10 usable steps" in left_out[2]
    assert notes == [f"b stopped after 40 usable steps: run again over {factor:.2f}x the "
                     f"examples, {found.text(10)}"]
    assert len(spent) == 5 and all(b == 10 for _, b in spent)


def test_long_enough_gives_up_on_a_single_test_that_blows_up_at_once():
    def run(r, indices):
        return {0: [_test(5, r.steps(10))]}

    with pytest.raises(NoSuggestionError, match="stopped after 5 usable steps .* lower start"):
        ramp.long_enough(run, ramp.Ramp.of(0.01, 1.0, 100, 10), ["x"], [10])


def _rows(losses_by_value, param="momentum", extra=None):
    rows = []
    for value, losses in losses_by_value.items():
        tests = [_test(100, eval_loss=x, seed=s) for s, x in enumerate(losses)]
        rows.append({**readings.row(param, value, tests), "excluded": "",
                     **(extra or {}).get(value, {})})
    return rows


def test_ties_go_to_the_first_in_the_stated_order():
    rows = _rows({0.9: [0.40, 0.44], 0.95: [0.41, 0.41], 0.99: [0.60, 0.61]})
    what, lowest = readings.compare(rows)
    assert what == "held-out" and lowest["momentum"] == 0.95
    assert [r["tie"] for r in rows] == [True, True, False]
    # two standard errors of the difference: sqrt(var(a)/2 + var(b)/2), var(b) = 0
    assert rows[0]["margin"] == pytest.approx(2 * math.sqrt(np.var([0.40, 0.44], ddof=1) / 2),
                                              rel=1e-3)
    assert readings.first_tied(rows, [0.9, 0.95, 0.99])["momentum"] == 0.9
    assert readings.first_tied(rows, [0.99, 0.95, 0.9])["momentum"] == 0.95
    one = _rows({0.9: [0.40], 0.95: [0.407], 0.99: [0.41]})  # one seed: the 2% tolerance
    readings.compare(one)
    assert [r["tie"] for r in one] == [True, True, False]
    assert one[0]["best_eval_loss_std"] is None
    left_out = _rows({0.9: [0.3, 0.3], 0.95: [0.4, 0.4]}, extra={0.9: {"excluded": "too short"}})
    assert readings.compare(left_out)[1]["momentum"] == 0.95 and not left_out[0]["tie"]
    with pytest.raises(NoSuggestionError, match="0.9: too short"):
        readings.compare(left_out[:1])


def test_tied_batch_sizes_go_to_the_fastest_then_the_smallest():
    speed = {128: 1000.0, 256: 1050.0, 512: 3000.0}
    rows = _rows({b: [0.4, 0.41] for b in speed}, param="batch_size",
                 extra={b: {"examples_per_s": x} for b, x in speed.items()})
    assert readings.batch_order(rows) == [512, 256, 128]  # a GPU: the larger batch buys time
    for r, x in zip(rows, (1000.0, 1050.0, 1080.0)):  # a CPU: none does
        r["examples_per_s"] = x
    assert readings.batch_order(rows) == [128, 256, 512]


def test_resumes_a_killed_tune_without_recomputing_finished_stages(tmp_path):
    workdir = tmp_path / "tune"
    args = ["tune", "--workdir", str(workdir), "--model", "lenet", "--dataset",
            "fashion_mnist", "--train-examples", "512", "--eval-examples", "128",
            "--batch-size", "64", "--batch-sizes", "64", "--momenta", "0.9",
            "--weight-decays", "1e-4", "--range-steps", "50", "--stop", "0.3", "--steps",
            "8", "--seeds", "1", "--no-progress", "--tensorboard"]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}  # run_cli's
    proc = subprocess.Popen([sys.executable, "-m", "hparams_jax", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = workdir / "stages" / "lr_range.json"
    deadline = time.monotonic() + 300
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists(), proc.stderr.read().decode()
    done = {p: (p.read_bytes(), p.stat().st_mtime_ns)
            for p in (workdir / "stages").glob("*.json")}
    assert not (workdir / "tune.json").exists()

    finished = run_cli(args, timeout=300)
    assert finished.returncode == 0, finished.stderr
    for path, (data, mtime) in done.items():
        assert (path.read_bytes(), path.stat().st_mtime_ns) == (data, mtime), path.name
    record = json.loads((workdir / "tune.json").read_text())
    assert [d["stage"] for d in record["decisions"]] == [
        "lr_range", "batch_size", "momentum", "weight_decay", "one_cycle"]
    assert record["decisions"][-1]["result"]["test_accuracy"] > 0.1
    assert "next step:" in finished.stdout
    # --tensorboard: each stage's range tests (one TensorBoard run per test) and the 1cycle run
    stages = workdir / "tensorboard"
    assert sorted(p.name for p in stages.iterdir()) == [  # the one batch size is not tested
        "lr_range", "momentum", "weight_decay"]
    (first_test,) = _stage_results(workdir, "lr_range")
    (run,) = [p for p in (stages / "lr_range").iterdir() if p.is_dir()]
    loss = read_scalars(run)["train_loss"]
    assert [x for _, x in loss] == pytest.approx(first_test.train_loss, rel=1e-6)
    one_cycle = read_scalars(workdir / "one_cycle" / "tensorboard")
    assert [s for s, _ in one_cycle["learning_rate"]] == [
        r["step"] for r in read_rows(workdir / "one_cycle" / "metrics.jsonl")
        if r["kind"] == "train"]


def test_changed_inputs_under_an_existing_workdir_are_refused(tuned):
    result, _ = tuned
    config = SMALL.replace(workdir=str(result.workdir))
    with pytest.raises(ConfigError, match=r"other inputs \(budget differ"):
        tune(config, **{**SEARCH, "budget": 400})  # refused before any step
    with pytest.raises(ConfigError, match=r"config\.weight_decay"):
        tune(config.replace(weight_decay=1e-4), **SEARCH)


@pytest.mark.parametrize("changes, message", [
    (dict(batch_sizes=[]), r"batch_sizes=\[\] is not allowed: batch_sizes must be a non-empty"),
    (dict(batch_sizes=[64, -8]), r"batch_sizes=\[64, -8\] is not allowed"),
    (dict(momenta=[0.9, 1.5]), r"momenta=\[0.9, 1.5\] is not allowed: .*\[0, 1\)"),
    (dict(momenta=[(0.85, 0.95)]), r"momenta=\[\(0.85, 0.95\)\] is not allowed"),
    (dict(weight_decays=[-1e-4]), r"weight_decays=\[-0.0001\] is not allowed: .*>= 0"),
    (dict(budget=10), r"budget=10 is not allowed: budget must be at least 150 steps at the "
                      r"starting batch \(the search needs its scout of 100 steps and one LR "
                      r"range test of 50 steps\)"),
    (dict(budget="much"), r"budget='much' is not allowed: .* such as '1.0x'"),
    (dict(seeds=0), r"seeds=0 is not allowed"),
    (dict(range_steps=20), r"range_steps=20 is not allowed: .*>= 50"),
    (dict(start=0.5, stop=0.1), r"start=0.5 is above stop=0.1"),
])
def test_bad_input_names_argument_value_and_allowed(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        tune(SMALL.replace(workdir=str(tmp_path / "w")), **changes)
    assert not (tmp_path / "w").exists()  # refused before anything is written


def test_tune_needs_a_workdir():
    with pytest.raises(ConfigError, match="workdir=None is not allowed here"):
        tune(SMALL)


def test_a_locked_workdir_is_refused(tmp_path):
    with held_by_another_process(tmp_path) as holder:
        with pytest.raises(WorkdirLocked, match=f"process {holder.pid}"):
            tune(SMALL.replace(workdir=str(tmp_path)), range_steps=50)
        cli = run_cli(["tune", "--workdir", str(tmp_path), "--range-steps", "50"])
    assert cli.returncode == 2
    assert cli.stderr.strip().count("\n") == 0 and "is in use by another run" in cli.stderr
    assert not (tmp_path / "stages").exists()


def test_cli_bad_lists_exit_2_in_one_line(tmp_path):
    out = run_cli(["tune", "--workdir", str(tmp_path), "--momenta", "0.9,fast"])
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "--momenta '0.9,fast': expected a comma-separated list of momenta" in out.stderr
    out = run_cli(["tune", "--workdir", str(tmp_path), "--weight-decays=-1e-4"])
    assert out.returncode == 2
    assert "weight_decays=[-0.0001] is not allowed" in out.stderr


def test_batch_candidates_that_do_not_fit_are_recorded_with_the_reason():
    config = SMALL.replace(train_examples=256)
    assert check_candidate(config, 128).fits
    too_large = check_candidate(config, 512)
    assert not too_large.fits and "256 training examples" in too_large.reason
    assert "memory not checked" in check_candidate(config, 128).reason  # the CPU backend
    assert _step_bytes(config) > 0  # the compiled step's memory, as a GPU check reads it


def test_import_stays_light_and_tune_is_reachable():
    code = ("import sys, hparams_jax\n"
            "heavy = [m for m in ('jax', 'flax', 'optax', 'hparams_jax.tuning') if m in "
            "sys.modules]\n"
            "assert not heavy, heavy\n"
            "from hparams_jax import tune\n"
            "assert tune.__module__ == 'hparams_jax.tuning.stages'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


# --- damaged records, failed writes, the locks ------------------------------------------------

def _copy_of(tuned, tmp_path) -> Path:
    return Path(shutil.copytree(tuned[0].workdir, tmp_path / "tune"))


def _where_moved(record: bytes) -> dict:
    """A stage record less the workdir it names (the copy's, not the original's) and the
    times it measured (wall time, throughput), which a run again does not repeat."""
    d = json.loads(record)
    d.get("config", {}).pop("workdir", None)
    d.pop("seconds", None)
    d.get("decision", {}).pop("seconds", None)
    for row in d.get("decision", {}).get("candidates", []):
        row.pop("examples_per_s", None)
    return d


def _records(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.json"))}


# The stage records' names when hparams_jax numbered them by position.
NUMBERED = {"0_inputs.json": "inputs.json", "0_plan.json": "plan.json",
            "1_lr_range.json": "lr_range.json", "2_batch_size.json": "batch_size.json",
            "3_momentum.json": "momentum.json", "4_weight_decay.json": "weight_decay.json",
            "5_one_cycle.json": "one_cycle.json"}


def _as_numbered(workdir: Path, cut: str | None = None) -> None:
    """`workdir`'s records as hparams_jax wrote them before they were named by stage: numbered
    by position, the plan's families under tune's keywords and its cuts as text (`cut` in
    place of the first)."""
    folder = workdir / "stages"
    record = json.loads((folder / "plan.json").read_text())
    plan = record["plan"]
    cuts = [c["text"] for c in plan["cuts"]]
    record["plan"] = {"range_steps": plan["range_steps"],
                      "batch_sizes": plan["candidates"]["batch_size"],
                      "momenta": plan["candidates"]["momentum"],
                      "weight_decays": plan["candidates"]["weight_decay"],
                      "planned_steps": plan["planned_steps"],
                      "cuts": cuts if cut is None else [cut, *cuts[1:]]}
    (folder / "plan.json").write_text(json.dumps(record, indent=2))
    for old, new in NUMBERED.items():
        (folder / new).rename(folder / old)
    for name in ("tune.json", "report.md"):
        (workdir / name).unlink()


def test_a_workdir_of_numbered_records_resumes_without_running_its_stages_again(
        tuned, tmp_path, monkeypatch):
    result, record = tuned
    workdir = _copy_of(tuned, tmp_path)
    _as_numbered(workdir)
    folder = workdir / "stages"
    numbered = _records(folder)
    assert sorted(numbered) == sorted(NUMBERED)

    def run_again(*args, **kwargs):
        raise AssertionError("a recorded stage ran again")

    for name in ("check_candidate", "lr_range_test", "range_test_members",
                 "examples_per_second"):
        monkeypatch.setattr(stages, name, run_again)
    monkeypatch.setattr(final, "fit", run_again)
    resumed = tune(SMALL.replace(workdir=str(workdir)), **SEARCH)
    assert _records(folder) == {NUMBERED[k]: x for k, x in numbered.items()}  # renamed as is
    assert json.loads((workdir / "tune.json").read_text()) == record
    assert [d.to_dict() for d in resumed.decisions] == [d.to_dict() for d in result.decisions]
    assert (workdir / "report.md").read_text() == (result.workdir / "report.md").read_text()

    # a numbered plan that the plan's inputs would not give is refused, named
    again = _copy_of(tuned, tmp_path / "again")
    _as_numbered(again, cut="range tests shortened from 60 to 55 steps (minimum 50)")
    with pytest.raises(UnreadableFileError, match=re.escape(str(again / "stages" / "plan.json"))
                       + ".*its plan is not the one its batch candidates and the tune's "
                       "inputs give"):
        tune(SMALL.replace(workdir=str(again)), **SEARCH)


@pytest.mark.parametrize("stage, damage", [("lr_range", "truncated"), ("momentum", "junk"),
                                           ("one_cycle", "an empty object")])
def test_a_damaged_stage_record_is_moved_aside_and_the_stage_run_again(tuned, tmp_path, stage,
                                                                       damage):
    workdir = _copy_of(tuned, tmp_path)
    folder = workdir / "stages"
    path = folder / f"{stage}.json"
    good = path.read_bytes()
    bad = {"truncated": good[:len(good) // 2], "junk": bytes(range(255, -1, -1)),
           "an empty object": b"{}"}[damage]
    path.write_bytes(bad)
    others = {k: x for k, x in _records(folder).items() if k != path.name}
    moved = folder / "damaged" / path.name
    with pytest.warns(RuntimeWarning, match=f"{re.escape(str(path))} is damaged .*: moved it "
                                            f"to {re.escape(str(moved))}; running the stage "
                                            "again"):
        tune(SMALL.replace(workdir=str(workdir)), **SEARCH)
    assert moved.read_bytes() == bad  # set aside as it was
    assert _where_moved(path.read_bytes()) == _where_moved(good)  # run again, to the same record
    assert {k: x for k, x in _records(folder).items() if k != path.name} == others


def test_a_damaged_inputs_record_is_refused_naming_it(tuned, tmp_path, capsys):
    workdir = _copy_of(tuned, tmp_path)
    path = workdir / "stages" / "inputs.json"
    path.write_text('{"config": {"model": "lenet"')
    before = _records(workdir / "stages")
    assert cli.main(["tune", "--workdir", str(workdir), "--range-steps", "60"]) == 2
    err = capsys.readouterr().err
    assert err == (f"hparams-jax: error: {path} cannot be read: it is not JSON (Expecting ',' "
                   "delimiter: line 1 column 29).\n")
    with pytest.raises(UnreadableFileError, match=re.escape(str(path))):
        tune(SMALL.replace(workdir=str(workdir)), **SEARCH)
    assert _records(workdir / "stages") == before


def test_a_stage_record_that_cannot_be_written_is_one_line_and_the_earlier_stages_intact(
        tuned, tmp_path, monkeypatch):
    workdir = _copy_of(tuned, tmp_path)
    folder = workdir / "stages"
    (folder / "weight_decay.json").unlink()
    (folder / "one_cycle.json").unlink()
    before = _records(folder)
    write = records.write_json_atomic

    def full_disk(path, obj):  # the disk fills up as the weight-decay stage is recorded
        if Path(path).name == "weight_decay.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"{path}.tmp")
        write(path, obj)

    monkeypatch.setattr(records, "write_json_atomic", full_disk)
    with pytest.raises(WorkdirWriteError) as err:
        tune(SMALL.replace(workdir=str(workdir)), **SEARCH)
    assert str(err.value) == (
        f"could not write {folder / 'weight_decay.json'} (No space left on device); the "
        "stages recorded before it are intact. Free space (or fix the folder) and run the "
        "same tune again to continue.")
    assert _records(folder) == before


def test_tune_holds_the_one_cycle_workdir_from_the_start(tmp_path, monkeypatch):
    """Another run may not start in WORKDIR/one_cycle while the search runs, and a tune does
    not start while another run holds it."""
    workdir = tmp_path / "tune"
    probe = ("import sys\n"
             "from hparams_jax.train import WorkdirLocked, workdir_lock\n"
             "try:\n"
             "    with workdir_lock(sys.argv[1]):\n"
             "        print('free')\n"
             "except WorkdirLocked:\n"
             "    print('locked')\n")
    seen = []

    class Stop(Exception):
        pass

    def first_range_test(*args, **kwargs):  # the search's first step
        seen.append(subprocess.run([sys.executable, "-c", probe, str(workdir / "one_cycle")],
                                   capture_output=True, text=True).stdout.strip())
        raise Stop

    monkeypatch.setattr(stages, "lr_range_test", first_range_test)
    with pytest.raises(Stop):
        tune(SMALL.replace(workdir=str(workdir)), **SEARCH)
    assert seen == ["locked"]
    with held_by_another_process(workdir / "one_cycle") as holder:
        with pytest.raises(WorkdirLocked, match=f"process {holder.pid}"):
            tune(SMALL.replace(workdir=str(tmp_path / "tune")), **SEARCH)
    assert seen == ["locked"]  # refused before the search


def test_the_final_run_may_take_one_of_todays_schedules(tmp_path):
    """`final_policy`: the final run under cosine or WSD peaking at the chosen max_lr, every
    seed a member; any other policy is refused before anything runs."""
    chosen = TrainConfig(max_lr=0.2, min_lr=0.02, epochs=1)
    run = final.final_config(chosen, None, tmp_path, [0, 1], "cosine")
    assert (run.lr_policy, run.max_lr, run.members) == ("cosine", 0.2, ({"seed": 0},
                                                                        {"seed": 1}))
    assert run.workdir == str(tmp_path / "one_cycle")
    with pytest.raises(ConfigError, match=r"final_policy='inv' .*one of 'one_cycle', "
                                          r"'cosine', 'wsd'"):
        tune(TrainConfig(workdir=str(tmp_path / "t")), final_policy="inv")
