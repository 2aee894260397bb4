"""`tune`: the disciplined approach as one procedure (Smith 2018, Sec. 4-5).

The paper sets four hyper-parameters together, each read from short runs' held-out loss:

1. LR range test (Sec. 4.1) at the starting batch size, momentum and weight decay:
   `max_lr`, `min_lr` by `RangeTestResult.suggest` (its alternatives and confidence kept).
2. Batch size (Sec. 4.2): a range test at each candidate that fits the hardware
   (`tuning.batch`); the largest batch whose best held-out loss lies within `EVAL_TOLERANCE` of
   the lowest (the same tolerance as `Family.pick`): "as large a batch as the hardware allows",
   so long as the held-out loss does not suffer.
3. Momentum (Sec. 4.3): the momentum family (constant 0.99/0.97/0.95/0.9 and the cyclical
   0.95-0.85, falling while the LR rises) at the chosen batch size; `Family.pick`.
4. Weight decay (Sec. 4.4): the weight-decay family (1e-3/1e-4/1e-5, and 1e-6 on a large
   dataset) at the chosen batch size and momentum; `Family.pick`: lowest held-out loss that
   stays low to the largest LR.
5. A 1cycle run (Sec. 4.1, 5) with the chosen values and the bounds of the last range test at
   them, `diagnose`d (Sec. 3), and the paper's next step for its verdict (`tuning.advice`).

Each stage is recorded in `WORKDIR/stages/` when it finishes (written atomically) and loaded on
a restart, so a killed `tune` continues at the stage it was in; the 1cycle run resumes through
`fit`'s own checkpoints in `WORKDIR/one_cycle`. A stage record that cannot be read (truncated,
junk, not a record) is moved to `WORKDIR/stages/damaged/` with a warning and the stage runs
again; a damaged `0_inputs.json` or `0_plan.json` is refused, named (the stages rest on them).
A record that cannot be written (a full disk, a read-only folder) stops the tune with
`WorkdirWriteError` naming the file and the cause, the stages recorded before it intact. A
range test that gives no suggestion where the procedure needs bounds stops it with
`NoSuggestionError` (nothing recorded for that stage). The whole tune holds the locks of
`WORKDIR` and of `WORKDIR/one_cycle`, and a workdir holding a tune of other inputs (config,
candidates, ramp or budget) is refused.
`WORKDIR/tune.json` holds every decision, its candidates and numbers, the paper's section and
what the budget cut (`tuning.budget`); `WORKDIR/report.md` reads them as the paper's argument
(`tuning.report`).
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hparams_jax import _files
from hparams_jax import _validate as v
from hparams_jax.diagnose import Diagnosis, diagnose
from hparams_jax.errors import ConfigError, UnreadableFileError
from hparams_jax.range_test import (EVAL_TOLERANCE, Family, NoSuggestionError,
                                    RangeTestResult, check_ramp, lr_range_test,
                                    near_lowest_loss, range_test_family)
from hparams_jax.train import (DivergenceError, History, TrainConfig, WorkdirWriteError, fit,
                               workdir_lock)
from hparams_jax.train import tensorboard as tensorboard_
from hparams_jax.train.config import EXECUTION_FIELDS
from hparams_jax.train.metrics import write_json_atomic
from hparams_jax.train.task import Task, resolve, train_examples
from hparams_jax.tuning import advice, report
from hparams_jax.tuning.report import show
from hparams_jax.tuning.batch import check_candidate
from hparams_jax.tuning.budget import MIN_RANGE_STEPS, SearchPlan, check_budget, plan_search

# The candidates, the paper's first: thinning by the budget drops from the end.
DEFAULT_MOMENTA: tuple[Any, ...] = ((0.95, 0.85), 0.9, 0.95, 0.97, 0.99)
DEFAULT_WEIGHT_DECAYS = (1e-3, 1e-4, 1e-5)
LARGE_DATASET = 500_000  # training examples from which 1e-6 joins the weight decays (Sec. 4.4)
BATCH_FACTORS = (1, 2, 4)  # default batch candidates: the starting batch times these
RANGE_EVAL_EXAMPLES = 1000  # held-out examples a range test evaluates (at most)
EVALS_PER_EPOCH = 5  # the 1cycle run's test evaluations per epoch when eval_every is None

SECTIONS = {"lr_range": "4.1", "batch_size": "4.2", "momentum": "4.3", "weight_decay": "4.4",
            "one_cycle": "4.1, 5 (1cycle); 3 (diagnosis)"}
STAGES = tuple(SECTIONS)
RULES = {
    "lr_range": "RangeTestResult.suggest: the largest LR before the held-out loss or accuracy "
                "worsens (never past the lowest training loss); min_lr = max_lr / 10 for 1cycle",
    "batch_size": f"the largest batch that fits whose best held-out loss lies within "
                  f"{EVAL_TOLERANCE:.0%} of the lowest among the candidates (the tolerance of "
                  "Family.pick); max_lr and min_lr from its range test",
    "momentum": "Family.pick: the lowest held-out loss (within "
                f"{EVAL_TOLERANCE:.0%} counts as lowest) kept up to the largest LR; max_lr and "
                "min_lr from its range test",
    "weight_decay": "Family.pick: the lowest held-out loss (within "
                    f"{EVAL_TOLERANCE:.0%} counts as lowest) kept up to the largest LR; max_lr "
                    "and min_lr from its range test",
    "one_cycle": "1cycle at the chosen batch size, momentum, weight decay and bounds; the "
                 "next step from diagnose's verdict",
}


@dataclasses.dataclass
class Decision:
    """One recorded decision of the procedure."""

    stage: str
    section: str
    rule: str
    candidates: list[dict[str, Any]]  # each candidate with the numbers the rule reads
    choice: Any
    reason: str
    budget_cut: str
    bounds: dict[str, float]  # max_lr and min_lr after this stage
    steps_spent: int  # training steps its range tests ran

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclasses.dataclass
class TuneResult:
    """What `tune` decided and the tuned 1cycle run."""

    workdir: Path
    decisions: list[Decision]
    config: TrainConfig  # the tuned 1cycle run's
    history: History
    diagnosis: Diagnosis
    next_step: str

    def text(self) -> str:
        lines = [f"{d.section:>4}  {d.stage}: {show(d.choice)} ({d.reason})"
                 for d in self.decisions]
        member = self.history.summary["members"][0]
        lines.append(f"1cycle {self.config.min_lr:.4g} -> {self.config.max_lr:.4g}, batch "
                     f"{self.config.batch_size}, momentum {show(self.config.momentum)}, "
                     f"weight decay {self.config.weight_decay:g}: test accuracy "
                     f"{member['test_accuracy']:.4f} after {self.history.summary['epochs']:g} "
                     f"epochs; verdict {self.diagnosis.verdict}")
        lines.append(f"next step: {self.next_step}")
        lines.append(f"tune.json and report.md in {self.workdir}")
        return "\n".join(lines)


def _momentum(x):
    """A momentum read back from JSON: a (max, min) pair is a tuple."""
    return tuple(x) if isinstance(x, list) else x


# --- inputs --------------------------------------------------------------------------------

def _check_list(name: str, values, item_ok: Callable[[Any], bool], allowed: str) -> tuple:
    ok = isinstance(values, (list, tuple)) and len(values) > 0
    v.check(name, values, ok, f"a non-empty list of {allowed} (or None for the defaults)")
    for x in values:
        v.check(name, list(values), item_ok(x), f"a non-empty list of {allowed}")
    return tuple(_momentum(x) for x in values)


def _real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and bool(np.isfinite(
        float(x)))


def _momentum_ok(x) -> bool:
    if isinstance(x, (list, tuple)):
        return len(x) == 2 and all(_real(y) and 0 <= y < 1 for y in x) and x[1] <= x[0]
    return _real(x) and 0 <= x < 1


def _candidates(config: TrainConfig, task: Task | None, batch_sizes, momenta, weight_decays):
    if batch_sizes is None:
        batch_sizes = tuple(config.batch_size * f for f in BATCH_FACTORS)
    batch_sizes = _check_list("batch_sizes", batch_sizes, lambda b: isinstance(b, int) and not
                              isinstance(b, bool) and b > 0, "positive integers")
    momenta = _check_list("momenta", DEFAULT_MOMENTA if momenta is None else momenta,
                          _momentum_ok, "momenta in [0, 1), each a number or a (max, min) pair")
    if weight_decays is None:
        num_train = train_examples(config, task) or 0
        weight_decays = DEFAULT_WEIGHT_DECAYS + ((1e-6,) if num_train >= LARGE_DATASET else ())
    weight_decays = _check_list("weight_decays", weight_decays, lambda w: _real(w) and w >= 0,
                                "finite numbers >= 0")
    return batch_sizes, momenta, weight_decays


def _inputs(config: TrainConfig, **search) -> dict[str, Any]:
    """What a tune's results depend on (the config less how it executes and where)."""
    fields = {k: x for k, x in config.to_dict().items()
              if k not in (*EXECUTION_FIELDS, "workdir")}
    return json.loads(json.dumps({"config": fields, **search}))


def _check_same_inputs(path: Path, inputs: dict[str, Any]) -> None:
    if not path.exists():
        _write(path, inputs)
        return
    saved = _files.read_json(path)
    if not isinstance(saved.get("config"), dict):
        raise UnreadableFileError(path, "it is not a tune's inputs (no config object); the "
                                        "recorded stages rest on them: restore it, or use "
                                        "another workdir")
    changed = [f"config.{k}" for k in inputs["config"]
               if saved["config"].get(k) != inputs["config"][k]]
    changed += [k for k in inputs if k != "config" and saved.get(k) != inputs[k]]
    if changed:
        workdir = path.parent.parent
        raise ConfigError(
            f"workdir={str(workdir)!r} holds a tune of other inputs ({', '.join(changed)} "
            f"differ from {path}): rerun with the same inputs to continue it, or use another "
            "workdir.")


# --- the records ---------------------------------------------------------------------------

def _write(path: Path, obj: Any) -> None:
    """`obj` written to `path` as JSON, atomically; a failed write (a full disk, a read-only
    folder) is a `WorkdirWriteError` naming the file and the cause."""
    try:
        write_json_atomic(path, obj)
    except OSError as err:
        raise WorkdirWriteError(
            f"could not write {path} ({err.strerror or err}); the stages recorded before it "
            "are intact. Free space (or fix the folder) and run the same tune again to "
            "continue.") from err


def _move_aside(path: Path, cause: str) -> None:
    """Moves a damaged stage record to `stages/damaged/` (`NAME-1.json`, ... when taken) with a
    warning; refuses it (`UnreadableFileError`) when it cannot be moved."""
    folder = path.parent / "damaged"
    target, k = folder / path.name, 0
    while target.exists():
        k += 1
        target = folder / f"{path.stem}-{k}{path.suffix}"
    try:
        folder.mkdir(exist_ok=True)
        os.replace(path, target)
    except OSError as err:
        raise UnreadableFileError(path, f"{cause}; it could not be moved aside to {target} "
                                        f"({err.strerror or err})") from None
    warnings.warn(f"{path} is damaged ({cause}): moved it to {target}; running the stage "
                  "again", RuntimeWarning, stacklevel=3)


def _recorded(path: Path, check: Callable[[dict[str, Any]], Any]) -> dict[str, Any] | None:
    """The record at `path` when `check` reads it; None when there is none, or when it is
    damaged (then moved aside: the stage runs again)."""
    if not path.exists():
        return None
    try:
        record = _files.read_json(path)
        check(record)
    except UnreadableFileError as err:
        _move_aside(path, err.cause)
        return None
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        _move_aside(path, f"not a stage record: {type(err).__name__} {err}")
        return None
    return record


def _stage_of(record: dict[str, Any]) -> tuple[Decision, list[RangeTestResult]]:
    return (Decision(**record["decision"]),
            [RangeTestResult.from_dict(r) for r in record["range_tests"]])


FINAL_KEYS = ("config", "status", "epochs", "test_accuracy", "test_loss", "train_loss",
              "diagnosis", "next_step")


def _final_record(record: dict[str, Any]) -> None:
    missing = [k for k in FINAL_KEYS if k not in record]
    if missing:
        raise KeyError(", ".join(missing))


# --- the rules -----------------------------------------------------------------------------

def largest_batch_near_best(rows: Sequence[dict[str, Any]]) -> tuple[int, str]:
    """Sec. 4.2's choice among batch-size range tests (`Family.rows`): the largest batch whose
    best held-out loss (the smoothed training loss where a test has no held-out points) lies
    within `EVAL_TOLERANCE` of the lowest. Returns the batch size and the reason."""
    near, key, lowest, what = near_lowest_loss(rows)
    chosen = max(near, key=lambda r: r["batch_size"])
    return chosen["batch_size"], (
        f"the largest batch whose {what} loss {chosen[key]:.4f} lies within "
        f"{EVAL_TOLERANCE:.0%} of the lowest {lowest:.4f}; its range test gives max_lr "
        f"{chosen['max_lr']:.4g}")


def _bounds(result: RangeTestResult) -> dict[str, float]:
    s = result.suggest("one_cycle").require(f"the range test {result.label}".rstrip())
    assert s.max_lr is not None and s.min_lr is not None
    return {"max_lr": s.max_lr, "min_lr": s.min_lr}


# --- the procedure -------------------------------------------------------------------------

class _Stages:
    """The stages of one tune in its workdir, each loaded when recorded, else run."""

    def __init__(self, workdir: Path, plan: SearchPlan, ramp: dict,
                 say: Callable[[str], None], task: Task | None, tensorboard: bool = False):
        self.dir = workdir / "stages"
        self.plan, self.say, self.task = plan, say, task
        self.ramp = {**ramp, "task": task}  # every range test's ramp, on the task
        # with --tensorboard each stage's range tests go to WORKDIR/tensorboard/STAGE
        self.tensorboard = workdir / tensorboard_.LOGDIR if tensorboard else None
        self.records: dict[str, dict[str, Any]] = {}

    def run(self, name: str, compute: Callable[[], tuple[Decision, list[RangeTestResult]]]
            ) -> tuple[Decision, list[RangeTestResult]]:
        path = self.dir / f"{STAGES.index(name) + 1}_{name}.json"
        record = _recorded(path, _stage_of)
        if record is not None:
            self.say(f"{name}: recorded in {path}")
        else:
            try:
                decision, results = compute()
            except NoSuggestionError as err:
                raise NoSuggestionError(
                    f"tune stage {name} (Sec. {SECTIONS[name]}): {err}. Nothing is recorded "
                    "for this stage; another ramp (--start, --stop, --range-steps) needs "
                    "another workdir.") from None
            record = {"decision": decision.to_dict(),
                      "range_tests": [r.to_dict() for r in results]}
            if self.tensorboard and results:  # before the record: a recorded stage has them
                tensorboard_.write_range_tests(results, self.tensorboard / name)
            _write(path, record)
            self.say(f"{name} (Sec. {decision.section}): {show(decision.choice)} "
                     f"({decision.reason})")
        self.records[name] = record
        decision, results = _stage_of(record)
        if self.tensorboard and results and not (self.tensorboard / name).exists():
            # a stage recorded by a run without --tensorboard
            tensorboard_.write_range_tests(results, self.tensorboard / name)
        return decision, results

    def decision(self, name: str, candidates, choice, reason, bounds, results,
                 steps=None) -> Decision:
        cut = self.plan.cut_for(name.replace("_", " ")) if name != "lr_range" else \
            self.plan.cut_for("range tests")
        spent = sum(r.steps_run for r in results) if steps is None else steps
        return Decision(name, SECTIONS[name], RULES[name], candidates, choice, reason, cut,
                        bounds, spent)

    def lr_range(self, config: TrainConfig) -> tuple[Decision, list[RangeTestResult]]:
        result = lr_range_test(config, **self.ramp)
        result.label = (f"batch {config.batch_size}, momentum {show(config.momentum)}, weight "
                        f"decay {config.weight_decay:g}")
        s = result.suggest("one_cycle").require("the LR range test")
        candidates = [{"name": "paper", "lr": s.max_lr, "reason": s.method}] + [
            dataclasses.asdict(a) for a in s.alternatives]
        reason = s.reason + "".join(f"; warning: {w}" for w in s.warnings)
        bounds = _bounds(result)
        return self.decision("lr_range", candidates, bounds, reason, bounds, [result]), [result]

    def batch_size(self, config: TrainConfig, start: RangeTestResult, fit_records: list
                   ) -> tuple[Decision, list[RangeTestResult]]:
        others = list(self.plan.batch_sizes[1:])
        results = [start]
        if others:
            results += range_test_family(config, "batch_size", others, **self.ramp).results
        values = [config.batch_size, *others]
        family = Family("batch_size", values, results)
        rows = {r["batch_size"]: r for r in family.rows()}
        choice, reason = largest_batch_near_best(list(rows.values()))
        if not others:
            reason = f"the only candidate tested: {reason}"
        candidates = [{**c, "tested": c["batch_size"] in rows, **rows.get(c["batch_size"], {})}
                      for c in fit_records]
        bounds = _bounds(results[values.index(choice)])
        return self.decision("batch_size", candidates, choice, reason, bounds, results,
                             steps=sum(r.steps_run for r in results[1:])), results

    def family(self, name: str, config: TrainConfig, values: tuple, current,
               bounds: dict[str, float]) -> tuple[Decision, list[RangeTestResult]]:
        if not values:
            return self.decision(name, [], current, "not searched (cut by the budget): the "
                                 "starting value kept, with the bounds so far", bounds, []), []
        family = range_test_family(config, name, list(values), **self.ramp)
        choice, reason = family.pick()
        result = family.results[family.values.index(choice)]
        return self.decision(name, family.rows(), choice, reason, _bounds(result),
                             family.results), family.results


def tune(config: TrainConfig, *, budget: int | None = None,
         batch_sizes: Sequence[int] | None = None, momenta: Sequence | None = None,
         weight_decays: Sequence[float] | None = None, start: float = 0.001,
         stop: float = 1.0, range_steps: int = 300, task: Task | None = None) -> TuneResult:
    """Runs the paper's procedure (see the module docstring) for `config`'s network and data
    (or `task`'s: the user's own model, loss and data, a `Task` with held-out data) into
    `config.workdir`, and returns its decisions and the tuned 1cycle run.

    `config` gives the starting batch size, momentum and weight decay of the first range test,
    the 1cycle run's length (`epochs` or `steps`) and everything else the runs share.
    `batch_sizes` (default: the starting batch x 1, 2, 4), `momenta` (default: cyclical
    0.95-0.85, then constant 0.9, 0.95, 0.97, 0.99) and `weight_decays` (default: 1e-3, 1e-4,
    1e-5, and 1e-6 from `LARGE_DATASET` training examples) are the candidates; every range test
    ramps the LR linearly from `start` to `stop` over `range_steps` steps. `budget` caps the
    training steps of the search's range tests (`tuning.budget`; None: no cap). With
    `config.tensorboard`, each stage's range tests are written to `WORKDIR/tensorboard/STAGE`
    (`train.tensorboard.write_range_tests`) and the 1cycle run's metrics to
    `WORKDIR/one_cycle/tensorboard`.
    """
    if task is not None:
        config, task = resolve(config, task)
        task.require_eval("tune")
    if config.workdir is None:
        raise ConfigError("workdir=None is not allowed here: tune records its stages, "
                          "tune.json and report.md in a workdir.")
    if config.members:
        raise ConfigError(f"members={list(config.members)!r} is not allowed here: tune chooses "
                          "one setting (give the starting one).")
    v.check("range_steps", range_steps, isinstance(range_steps, int)
            and not isinstance(range_steps, bool) and range_steps >= MIN_RANGE_STEPS,
            f"an integer >= {MIN_RANGE_STEPS}")
    check_ramp(start, stop, range_steps)
    check_budget(budget)
    batch_sizes, momenta, weight_decays = _candidates(config, task, batch_sizes, momenta,
                                                      weight_decays)
    if config.tensorboard:
        tensorboard_.check_installed()  # before anything trains
    workdir = Path(config.workdir)
    # the search and the 1cycle run are one writer's: no other run may start in one_cycle
    with workdir_lock(workdir), workdir_lock(workdir / "one_cycle"):
        return _tune(config, task, workdir, budget, batch_sizes, momenta, weight_decays,
                     dict(start=start, stop=stop), range_steps)


def _tune(config, task, workdir, budget, batch_sizes, momenta, weight_decays, ramp,
          range_steps):
    say = print if config.progress else (lambda _: None)
    inputs = _inputs(config, budget=budget, batch_sizes=batch_sizes, momenta=momenta,
                     weight_decays=weight_decays, range_steps=range_steps, **ramp)
    try:
        (workdir / "stages").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WorkdirWriteError(f"could not create {workdir / 'stages'} "
                                f"({err.strerror or err}).") from err
    _check_same_inputs(workdir / "stages" / "0_inputs.json", inputs)
    plan_path = workdir / "stages" / "0_plan.json"
    if plan_path.exists():  # fixed once: a resumed tune runs the plan it started with
        fit_records, plan = _saved_plan(plan_path)
    else:
        fit_records, plan = _plan(config, task, budget, batch_sizes, momenta, weight_decays,
                                  range_steps)
        _write(plan_path, {"batch_candidates": fit_records, "plan": dataclasses.asdict(plan)})
    base = config.replace(eval_examples=min(config.eval_examples or RANGE_EVAL_EXAMPLES,
                                            RANGE_EVAL_EXAMPLES),
                          workdir=None, progress=False)
    stages = _Stages(workdir, plan, {**ramp, "num_steps": plan.range_steps}, say, task,
                     tensorboard=config.tensorboard)
    decisions = []

    d, (start_result,) = stages.run("lr_range", lambda: stages.lr_range(base))
    decisions.append(d)
    d, _ = stages.run("batch_size", lambda: stages.batch_size(base, start_result, fit_records))
    decisions.append(d)
    chosen = base.replace(batch_size=d.choice)
    d, _ = stages.run("momentum", lambda: stages.family(
        "momentum", chosen, plan.momenta, config.momentum, decisions[-1].bounds))
    decisions.append(d)
    chosen = chosen.replace(momentum=_momentum(d.choice))
    d, _ = stages.run("weight_decay", lambda: stages.family(
        "weight_decay", chosen, plan.weight_decays, config.weight_decay, decisions[-1].bounds))
    decisions.append(d)
    final = _final_config(config.replace(batch_size=chosen.batch_size, momentum=chosen.momentum,
                                         weight_decay=d.choice, **d.bounds), task, workdir)
    result = _one_cycle(stages, final, decisions)
    _write_tune_json(workdir, inputs, plan, fit_records, result)
    try:
        report.write(workdir, {name: stages.records[name] for name in STAGES[:-1]}, result,
                     plan)
    except OSError as err:
        raise WorkdirWriteError(f"could not write the report or its figures into {workdir} "
                                f"({err.strerror or err}); tune.json and the stages are "
                                "intact: run the same tune again to write it.") from err
    return result


def _saved_plan(path: Path) -> tuple[list, SearchPlan]:
    """The plan a tune started with; a damaged one is refused, named (the recorded stages
    followed it)."""
    saved = _files.read_json(path)
    try:
        return saved["batch_candidates"], SearchPlan(**{
            **saved["plan"], **{k: tuple(_momentum(x) for x in saved["plan"][k])
                                for k in ("batch_sizes", "momenta", "weight_decays", "cuts")}})
    except (KeyError, TypeError, ValueError) as err:
        raise UnreadableFileError(path, f"it is not a tune's plan ({type(err).__name__} "
                                        f"{err}); the recorded stages followed it: restore "
                                        "it, or use another workdir") from None


def _plan(config, task, budget, batch_sizes, momenta, weight_decays, range_steps):
    """The batch candidates' fit records and the search plan within the budget."""
    records = [check_candidate(config, b, task).to_dict()
               for b in dict.fromkeys((config.batch_size, *batch_sizes))]
    if not records[0]["fits"]:
        raise ConfigError(f"batch_size={config.batch_size} (the starting batch) does not fit: "
                          f"{records[0]['reason']}.")
    fitting = [r["batch_size"] for r in records[1:] if r["fits"]]
    order = [config.batch_size, *sorted(fitting, reverse=True)]  # the largest kept longest
    return records, plan_search(budget, range_steps, order, momenta, weight_decays)


def _final_config(config: TrainConfig, task: Task | None, workdir: Path) -> TrainConfig:
    """The 1cycle run: `EVALS_PER_EPOCH` test evaluations an epoch where `eval_every` is None
    (diagnose reads the test loss early and often, Sec. 3)."""
    config = config.replace(lr_policy="one_cycle", workdir=str(workdir / "one_cycle"))
    num_train = train_examples(config, task)
    if config.eval_every is None:
        steps = (num_train // config.batch_size if num_train is not None else
                 task.steps_per_epoch if task is not None and task.steps_per_epoch else
                 config.steps or 1)
        every = max(1, steps // EVALS_PER_EPOCH)
        config = config.replace(eval_every=every, log_every=min(config.log_every, every))
    return config


def _one_cycle(stages: _Stages, config: TrainConfig, decisions: list[Decision]) -> TuneResult:
    path = stages.dir / f"{len(STAGES)}_one_cycle.json"
    done = _recorded(path, _final_record) is not None
    if not done:
        stages.say(f"one_cycle: {config.min_lr:.4g} -> {config.max_lr:.4g}, batch "
                   f"{config.batch_size}, momentum {show(config.momentum)}, weight decay "
                   f"{config.weight_decay:g}")
        try:
            fit(config, task=stages.task)
        except DivergenceError as err:  # diagnosed and recorded like any other outcome
            stages.say(str(err))
    history = History.load(path.parent.parent / "one_cycle")
    found = diagnose(history)
    if not done:
        member = history.summary["members"][0]
        _write(path, {
            "config": config.to_dict(), "status": history.summary["status"],
            "epochs": history.summary["epochs"], "test_accuracy": member["test_accuracy"],
            "test_loss": member["test_loss"], "train_loss": member["train_loss"],
            "diagnosis": found.to_dict(), "next_step": advice.next_step(found.verdict)})
    return TuneResult(path.parent.parent, decisions, config, history, found,
                      advice.next_step(found.verdict))


def _write_tune_json(workdir: Path, inputs, plan: SearchPlan, fit_records, result: TuneResult):
    final = _files.read_json(workdir / "stages" / f"{len(STAGES)}_one_cycle.json")
    _write(workdir / "tune.json", {
        "procedure": "Smith 2018, A disciplined approach to neural network hyper-parameters: "
                     "Part 1 (arXiv:1803.09820), Sec. 4-5",
        "inputs": inputs,
        "budget": {"budget": inputs["budget"], "planned_steps": plan.planned_steps,
                   "plan_steps": plan.steps, "range_steps": plan.range_steps,
                   "spent_steps": sum(d.steps_spent for d in result.decisions),
                   "cuts": list(plan.cuts)},
        "batch_candidates": fit_records,
        "decisions": [d.to_dict() for d in result.decisions] + [{
            "stage": "one_cycle", "section": SECTIONS["one_cycle"],
            "rule": RULES["one_cycle"], "choice": {
                k: final["config"][k] for k in ("batch_size", "momentum", "weight_decay",
                                                "min_lr", "max_lr", "epochs", "steps")},
            "result": {k: final[k] for k in ("status", "epochs", "test_accuracy",
                                             "test_loss", "train_loss")},
            "diagnosis": final["diagnosis"], "next_step": final["next_step"]}],
    })
