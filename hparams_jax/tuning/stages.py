"""`tune`: the disciplined approach as one procedure (Smith 2018, Sec. 4-5).

The paper sets four hyper-parameters together, each read from short runs' held-out loss, in
the stages of `procedure.STAGES` (their sections, rules and default candidates):

1. LR range test (Sec. 4.1) at the starting batch size, momentum and weight decay:
   `max_lr`, `min_lr` by `RangeTestResult.suggest` (its alternatives and confidence kept).
   Without a given `stop`, an exponential scout finds where the loss blows up and the linear
   ramp ends just past it (`tuning.ramp`); every later stage ramps over this range.
2. Batch size (Sec. 4.2): a range test at each candidate that fits the hardware
   (`tuning.batch`), each seeing the same training examples (a larger batch takes fewer
   steps), at every seed, and the candidate's throughput measured on this device; the
   candidates whose mean held-out loss ties with the lowest (`tuning.readings`) go, in the
   order of their throughput, to the fastest (the smallest of those within 10% of it).
3. Momentum (Sec. 4.3): the momentum family (cyclical 0.95-0.85, falling while the LR rises,
   and constant 0.9/0.95/0.97/0.99) at the chosen batch size and every seed; a tie with the
   lowest mean held-out loss goes to the first in the list (the paper's defaults first).
4. Weight decay (Sec. 4.4): the weight-decay family (1e-3/1e-4/1e-5, and 1e-6 on a large
   dataset) at the chosen batch size and momentum, by the same rule.
5. A 1cycle run (Sec. 4.1, 5) with the chosen values and the bounds of the last stage, at
   every seed (sweep members), `diagnose`d (Sec. 3, its first seed), and the paper's next step
   for its verdict (`tuning.advice`).

No decision rests on a range test with fewer than `ramp.MIN_USABLE_STEPS` usable steps (its
steps before it stopped): a shorter one is run again over a longer ramp, or left out of its
family's comparison with the reason (`tuning.ramp`). Every candidate row of every decision
records `usable_steps`; the family rows record their `seeds` and `best_eval_loss_std`, the
batch rows `planned_examples` and `examples_per_s`.

Each stage is recorded in `WORKDIR/stages/STAGE.json` when it finishes (written atomically,
`tuning.records`) and loaded on a restart, so a killed `tune` continues at the stage it was in;
the 1cycle run resumes through `fit`'s own checkpoints in `WORKDIR/one_cycle`. A stage record
that cannot be read (truncated, junk, not a record) is moved to `WORKDIR/stages/damaged/` with
a warning and the stage runs again; a damaged `inputs.json` or `plan.json` is refused, named
(the stages rest on them).
A record that cannot be written (a full disk, a read-only folder) stops the tune with
`WorkdirWriteError` naming the file and the cause, the stages recorded before it intact. A
range test that gives no suggestion where the procedure needs bounds stops it with
`NoSuggestionError` (nothing recorded for that stage). The whole tune holds the locks of
`WORKDIR` and of `WORKDIR/one_cycle`, and a workdir holding a tune of other inputs (config,
candidates, ramp, seeds or budget) is refused.
`WORKDIR/tune.json` holds every decision, its candidates and numbers, the paper's section, what
the budget cut (`tuning.budget`) and the search's cost in epochs and seconds beside the 1cycle
run's; `WORKDIR/report.md` reads them as the paper's argument (`tuning.report`).
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hparams_jax import _files, momenta
from hparams_jax import _validate as v
from hparams_jax.errors import ConfigError, UnreadableFileError
from hparams_jax.range_test import (NoSuggestionError, RangeTestResult, check_ramp,
                                    lr_range_test, range_test_members)
from hparams_jax.train import (TrainConfig, WorkdirWriteError, workdir_lock)
from hparams_jax.train import tensorboard as tensorboard_
from hparams_jax.train.config import EXECUTION_FIELDS
from hparams_jax.train.policies import FINAL_POLICIES
from hparams_jax.train.task import Task, resolve, train_examples
from hparams_jax.tuning import final, readings, records, report
from hparams_jax.tuning import budget as budget_
from hparams_jax.tuning.batch import check_candidate, examples_per_second
from hparams_jax.tuning.budget import MIN_RANGE_STEPS, SearchPlan, check_budget, plan_search
from hparams_jax.tuning.procedure import (DEFAULT_SEEDS, FAMILIES, STAGES, Stage,
                                          show)
from hparams_jax.tuning.ramp import (SCOUT_EVAL_EVERY, SCOUT_SPAN, SCOUT_STEPS, Ramp,
                                     Readings, long_enough, scout_stop)
from hparams_jax.tuning.records import Decision, TuneResult, write

RANGE_EVAL_EXAMPLES = 1000  # held-out examples a range test evaluates (at most)


def _candidate(x):
    """A candidate as held: a momentum as `momenta.parse` reads it (a (max, min) pair read back
    from JSON as a list is a tuple), a batch size or weight decay as it is."""
    return momenta.parse(x) if isinstance(x, (list, tuple, str)) else x


# --- inputs --------------------------------------------------------------------------------

def _check_list(name: str, values, item_ok: Callable[[Any], bool], allowed: str) -> tuple:
    ok = isinstance(values, (list, tuple)) and len(values) > 0
    v.check(name, values, ok, f"a non-empty list of {allowed} (or None for the defaults)")
    for x in values:
        v.check(name, list(values), item_ok(x), f"a non-empty list of {allowed}")
    return tuple(_candidate(x) for x in values)


def _real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and bool(np.isfinite(
        float(x)))


def _momentum_ok(x) -> bool:
    try:
        momenta.parse(x)
    except ConfigError:
        return False
    return True


# What each family's candidates must be: the check of one and what is allowed, in words.
_ALLOWED = {
    "batch_size": (lambda b: isinstance(b, int) and not isinstance(b, bool) and b > 0,
                   "positive integers"),
    "momentum": (_momentum_ok, "momenta in [0, 1), each a number or a (max, min) pair"),
    "weight_decay": (lambda w: _real(w) and w >= 0, "finite numbers >= 0"),
}


def _candidates(config: TrainConfig, task: Task | None, given: dict[str, Any]
                ) -> dict[str, tuple]:
    """Each family stage's candidates, by name: `given[stage.argument]`, else its defaults."""
    found = {}
    for stage in FAMILIES:
        assert stage.argument is not None and stage.defaults is not None
        values = given[stage.argument]
        found[stage.name] = _check_list(stage.argument, stage.defaults(config, task)
                                        if values is None else values, *_ALLOWED[stage.name])
    return found


def _inputs(config: TrainConfig, **search) -> dict[str, Any]:
    """What a tune's results depend on (the config less how it executes and where)."""
    fields = {k: x for k, x in config.to_dict().items()
              if k not in (*EXECUTION_FIELDS, "workdir")}
    return json.loads(json.dumps({"config": fields, **search}))


def _final_examples(config: TrainConfig, task: Task | None) -> int | None:
    """The 1cycle run's training examples (one seed): its steps at the starting batch, or its
    epochs of the training set; None where the training set's size is unknown."""
    if config.steps is not None:
        return config.steps * config.batch_size
    num_train = train_examples(config, task)
    return None if num_train is None or config.epochs is None else round(
        config.epochs * num_train)


# --- the procedure -------------------------------------------------------------------------

class _Stages:
    """The stages of one tune in its workdir, each loaded when recorded, else run."""

    def __init__(self, workdir: Path, plan: SearchPlan, fit_records: list, ramp: dict,
                 say: Callable[[str], None], task: Task | None, seeds: list[int],
                 tensorboard: bool = False):
        self.workdir = workdir
        self.plan, self.fit_records, self.say, self.task = plan, fit_records, say, task
        self.start, self.stop = ramp["start"], ramp["stop"]
        self.seeds = seeds
        self.ramp: Ramp | None = None  # the ramp so far: the first stage's, then each stage's
        # with --tensorboard each stage's range tests go to WORKDIR/tensorboard/STAGE
        self.tensorboard = workdir / tensorboard_.LOGDIR if tensorboard else None
        self.records: dict[str, dict[str, Any]] = {}
        self.began = 0.0

    def run(self, stage: Stage, config: TrainConfig, bounds: dict[str, float] | None
            ) -> Decision:
        """Stage `stage` at `config`, from its record or run (`bounds`: the bounds so far)."""
        name = stage.name
        path = records.path(self.workdir, name)
        record = records.recorded(path, records.stage_of)
        if record is not None:
            self.say(f"{name}: recorded in {path}")
        else:
            self.began = time.perf_counter()
            try:
                decision, results = self._compute(stage, config, bounds)
            except NoSuggestionError as err:
                raise NoSuggestionError(
                    f"tune stage {name} (Sec. {stage.section}): {err}. Nothing is recorded "
                    "for this stage; another ramp (--start, --stop, --range-steps) needs "
                    "another workdir.") from None
            record = {"decision": decision.to_dict(),
                      "range_tests": [r.to_dict() for r in results]}
            if self.tensorboard and results:  # before the record: a recorded stage has them
                tensorboard_.write_range_tests(results, self.tensorboard / name)
            write(path, record)
            self.say(f"{name} (Sec. {decision.section}): {show(decision.choice)} "
                     f"({decision.reason})")
        self.records[name] = record
        decision, results = records.stage_of(record)
        if self.tensorboard and results and not (self.tensorboard / name).exists():
            # a stage recorded by a run without --tensorboard
            tensorboard_.write_range_tests(results, self.tensorboard / name)
        if decision.ramp:
            self.ramp = Ramp.from_dict(decision.ramp)
        return decision

    def _compute(self, stage: Stage, config: TrainConfig, bounds: dict[str, float] | None
                 ) -> tuple[Decision, list[RangeTestResult]]:
        if stage.name == "lr_range":
            return self.lr_range(stage, config)
        assert bounds is not None  # the LR range test's, at least
        if stage.name == "batch_size":
            return self.batch_size(stage, config, bounds)
        return self.family(stage, config, bounds)

    def decision(self, stage: Stage, candidates, choice, reason, bounds,
                 spent: Sequence[tuple[RangeTestResult, int]], ramp: dict[str, Any],
                 attempts: Sequence[str] = (), tie_order: Sequence[Any] = ()) -> Decision:
        """The stage's `Decision`; `spent` holds every test it ran, with its batch size."""
        return Decision(stage.name, stage.section, stage.rule, candidates, choice, reason,
                        self.plan.cut_for(stage.name), bounds,
                        sum(r.steps_run for r, _ in spent),
                        sum(r.steps_run * b for r, b in spent),
                        time.perf_counter() - self.began, ramp, list(attempts),
                        list(tie_order))

    def _members(self, **setting) -> tuple[dict[str, Any], ...]:
        return tuple({**setting, "seed": s} for s in self.seeds)

    def lr_range(self, stage: Stage, config: TrainConfig
                 ) -> tuple[Decision, list[RangeTestResult]]:
        """Sec. 4.1: one range test at the starting values (its ramp scouted where no stop is
        given, and long enough, `tuning.ramp`); its suggestion sets the bounds."""
        b = config.batch_size
        stop, attempts, spent = self.stop, [], []
        if stop is None:
            scout = lr_range_test(config, start=self.start, stop=self.start * SCOUT_SPAN,
                                  num_steps=SCOUT_STEPS, mode="exp",
                                  eval_every=SCOUT_EVAL_EVERY, task=self.task)
            spent.append((scout, b))
            stop, text = scout_stop(scout)
            attempts.append(text)
            if stop <= self.start:
                raise NoSuggestionError(f"{text}; its loss blew up at the first LR: lower "
                                        "start")

        def run(ramp: Ramp, _) -> Readings:
            return {0: [lr_range_test(config, **ramp.kwargs(b), task=self.task)]}

        ramp, found, _, notes, tests = long_enough(
            run, Ramp.of(self.start, stop, self.plan.range_steps, b), ["the LR range test"],
            [b])
        (result,) = found[0]
        result.label = (f"batch {b}, momentum {show(config.momentum)}, weight decay "
                        f"{config.weight_decay:g}")
        s = result.suggest("one_cycle").require("the LR range test")
        assert s.max_lr is not None and s.min_lr is not None
        usable = {"usable_steps": result.steps_run, "seeds": [config.seed]}
        candidates = [{"name": "paper", "lr": s.max_lr, "reason": s.method, **usable}] + [
            {**dataclasses.asdict(a), **usable} for a in s.alternatives]
        reason = s.reason + "".join(f"; warning: {w}" for w in s.warnings)
        bounds = {"max_lr": s.max_lr, "min_lr": s.min_lr}
        return self.decision(stage, candidates, bounds, reason, bounds, spent + tests,
                             ramp.to_dict(b), attempts + notes), [result]

    def batch_size(self, stage: Stage, config: TrainConfig, bounds: dict[str, float]
                   ) -> tuple[Decision, list[RangeTestResult]]:
        """Sec. 4.2: each batch that fits read at equal training examples and every seed, its
        throughput measured; the tie rule of `readings.batch_order`. Left with the starting
        batch alone (the budget), the stage keeps it untested."""
        assert self.ramp is not None
        values = list(self.plan.candidates[stage.name])
        if len(values) <= stage.kept:
            candidates = [{**c, "tested": False} for c in self.fit_records]
            return self.decision(stage, candidates, config.batch_size,
                                 "the only candidate left by the budget: the starting batch "
                                 "kept untested, with the bounds so far", bounds, [],
                                 self.ramp.to_dict(config.batch_size)), []
        speed = {b: examples_per_second(config.replace(batch_size=b), self.task)
                 for b in values}

        def run(ramp: Ramp, indices: list[int]) -> Readings:
            return {i: range_test_members(
                config.replace(batch_size=values[i], members=self._members()),
                task=self.task, **ramp.kwargs(values[i])) for i in indices}

        ramp, found, left_out, notes, spent = long_enough(
            run, self.ramp, [f"batch {b}" for b in values], values)
        rows = []
        for i, b in enumerate(values):
            row = readings.row(stage.name, b, found[i])
            rows.append({**row, "planned_examples": row["steps"] * b,
                         "examples_per_s": speed[b], "excluded": left_out.get(i, "")})
        what, lowest = readings.compare(rows)
        order = readings.batch_order(rows)
        chosen = readings.first_tied(rows, order)
        reason = (readings.reason(stage.name, chosen, lowest, what, order, rows)
                  + "; throughput read on this device (examples/s): "
                  + ", ".join(f"{b} {speed[b]:.0f}" for b in values))
        by_size = {r["batch_size"]: r for r in rows}
        candidates = [{**c, "tested": c["batch_size"] in by_size,
                       **by_size.get(c["batch_size"], {})} for c in self.fit_records]
        results = [r for i in range(len(values)) for r in found[i]]
        return self.decision(stage, candidates, chosen["batch_size"], reason,
                             readings.bounds(chosen), spent,
                             ramp.to_dict(chosen["batch_size"]), notes, order), results

    def family(self, stage: Stage, config: TrainConfig, bounds: dict[str, float]
               ) -> tuple[Decision, list[RangeTestResult]]:
        """Sec. 4.3-4.4: each candidate at every seed, at the values chosen so far, as one
        vmapped program (constant and cyclical momenta apart); the tie rule of `readings`. A
        family the budget thinned to nothing keeps the starting value."""
        assert self.ramp is not None
        b = config.batch_size
        values = list(self.plan.candidates[stage.name])
        if not values:
            return self.decision(stage, [], getattr(config, stage.name), "not searched (cut "
                                 "by the budget): the starting value kept, with the bounds "
                                 "so far", bounds, [], self.ramp.to_dict(b)), []
        seeds = len(self.seeds)

        def run(ramp: Ramp, indices: list[int]) -> Readings:
            groups: dict[bool, list[int]] = {}
            for i in indices:  # constant and cyclical momenta compile separately
                groups.setdefault(momenta.is_cyclical(values[i]), []).append(i)
            out = {}
            for group in groups.values():
                members = tuple(m for i in group for m in self._members(
                    **{stage.name: values[i]}))
                results = range_test_members(config.replace(members=members), task=self.task,
                                             **ramp.kwargs(b))
                out.update({i: results[j * seeds:(j + 1) * seeds]
                            for j, i in enumerate(group)})
            return out

        ramp, found, left_out, notes, spent = long_enough(
            run, self.ramp, [show(x) for x in values], [b] * len(values))
        rows = [{**readings.row(stage.name, x, found[i]), "excluded": left_out.get(i, "")}
                for i, x in enumerate(values)]
        what, lowest = readings.compare(rows)
        chosen = readings.first_tied(rows, values)
        reason = readings.reason(stage.name, chosen, lowest, what, values, rows)
        results = [r for i in range(len(values)) for r in found[i]]
        return self.decision(stage, rows, chosen[stage.name], reason, readings.bounds(chosen),
                             spent, ramp.to_dict(b), notes, values), results


def tune(config: TrainConfig, *, budget: int | str | None = None,
         batch_sizes: Sequence[int] | None = None, momenta: Sequence | None = None,
         weight_decays: Sequence[float] | None = None, start: float = 0.001,
         stop: float | None = None, range_steps: int = 300, seeds: int = DEFAULT_SEEDS,
         final_policy: str = "one_cycle", task: Task | None = None) -> TuneResult:
    """Runs the paper's procedure (see the module docstring) for `config`'s network and data
    (or `task`'s: the user's own model, loss and data, a `Task` with held-out data) into
    `config.workdir`, and returns its decisions and the tuned 1cycle run.

    `config` gives the starting batch size, momentum and weight decay of the first range test,
    the 1cycle run's length (`epochs` or `steps`), its first seed and everything else the runs
    share. `batch_sizes` (default: the starting batch x 1, 2, 4), `momenta` (default: cyclical
    0.95-0.85, then constant 0.9, 0.95, 0.97, 0.99) and `weight_decays` (default: 1e-3, 1e-4,
    1e-5, and 1e-6 from `LARGE_DATASET` training examples) are the candidates
    (`procedure.STAGES`). The range tests ramp the LR linearly from `start` to `stop` (None:
    just past where an exponential scout from `start` blows up) over `range_steps` steps at
    the starting batch (the same examples at any other), lengthened where a test reads fewer
    than 50 usable steps (`tuning.ramp`); the families and the 1cycle run repeat at `seeds`
    seeds (`config.seed` on). `budget` caps what the search's range tests spend, in steps at
    the starting batch, or as a multiple of the 1cycle run's training examples ("1.0x";
    `tuning.budget`; None: no cap). With `config.tensorboard`, each stage's range tests are
    written to `WORKDIR/tensorboard/STAGE` (`train.tensorboard.write_range_tests`) and the
    1cycle run's metrics to `WORKDIR/one_cycle/tensorboard`. `final_policy` trains the final
    run under another LR policy of `FINAL_POLICIES` (cosine or WSD, peaking at the chosen
    max_lr) in place of 1cycle, to measure the procedure's choices under today's schedules.
    """
    v.one_of("final_policy", final_policy, FINAL_POLICIES)
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
    v.positive_int("seeds", seeds)
    if stop is None:
        v.strictly_positive("start", start)  # the scout's exponential ramp starts there
    else:
        check_ramp(start, stop, range_steps)
    scout_steps = SCOUT_STEPS if stop is None else 0
    budget_steps = budget_.read(budget, _final_examples(config, task), config.batch_size)
    check_budget(budget_steps, scout_steps)
    candidates = _candidates(config, task, dict(batch_sizes=batch_sizes, momenta=momenta,
                                                weight_decays=weight_decays))
    if config.tensorboard:
        tensorboard_.check_installed()  # before anything trains
    workdir = Path(config.workdir)
    # the search and the 1cycle run are one writer's: no other run may start in one_cycle
    with workdir_lock(workdir), workdir_lock(workdir / "one_cycle"):
        return _tune(config, task, workdir, budget, budget_steps, candidates,
                     dict(start=start, stop=stop), range_steps, seeds, scout_steps, final_policy)


def _tune(config, task, workdir, budget, budget_steps, candidates, ramp, range_steps, seeds,
          scout_steps, final_policy):
    say = print if config.progress else (lambda _: None)
    inputs = _inputs(config, budget=budget, **{s.argument: candidates[s.name] for s in FAMILIES},
                     range_steps=range_steps, seeds=seeds, **ramp,
                     # only where it is not 1cycle: a tune recorded before it was an input resumes
                     **({"final_policy": final_policy} if final_policy != "one_cycle" else {}))
    records.make_folder(workdir)
    records.check_same_inputs(records.path(workdir, records.INPUTS), inputs)
    plan_path = records.path(workdir, records.PLAN)
    search = (budget_steps, range_steps, seeds, scout_steps)
    if plan_path.exists():  # fixed once: a resumed tune runs the plan it started with
        fit_records, plan = _saved_plan(plan_path, config, candidates, *search)
    else:
        fit_records = _fit_records(config, task, candidates["batch_size"])
        plan = _search_plan(config, fit_records, candidates, *search)
        write(plan_path, {"batch_candidates": fit_records, "plan": plan.to_dict()})
    base = config.replace(eval_examples=min(config.eval_examples or RANGE_EVAL_EXAMPLES,
                                            RANGE_EVAL_EXAMPLES),
                          workdir=None, progress=False)
    stages = _Stages(workdir, plan, fit_records, ramp, say, task,
                     [config.seed + i for i in range(seeds)], tensorboard=config.tensorboard)
    decisions: list[Decision] = []
    chosen = base  # the values chosen so far, each stage's at its end
    for stage in STAGES:
        d = stages.run(stage, chosen, decisions[-1].bounds if decisions else None)
        decisions.append(d)
        if stage.argument is not None:
            chosen = chosen.replace(**{stage.name: _candidate(d.choice)})
    run = final.final_config(config.replace(**{s.name: getattr(chosen, s.name) for s in FAMILIES},
                                            **decisions[-1].bounds), task, workdir, stages.seeds,
                             final_policy)
    result = final.one_cycle(stages, run, decisions)
    final.write_tune_json(workdir, inputs, plan, budget_steps, fit_records, result, config, task)
    try:
        report.write(workdir, stages.records, result, plan)
    except OSError as err:
        raise WorkdirWriteError(f"could not write the report or its figures into {workdir} "
                                f"({err.strerror or err}); tune.json and the stages are "
                                "intact: run the same tune again to write it.") from err
    return result


def _saved_plan(path: Path, config, candidates, budget_steps, range_steps, seeds, scout_steps
                ) -> tuple[list, SearchPlan]:
    """The plan a tune started with; a damaged one is refused, named (the recorded stages
    followed it). A plan recorded before cuts were recorded by stage holds each family under
    its `argument` and the cuts as text: the plan is made again from its batch candidates
    and must match it."""
    saved = _files.read_json(path)
    try:
        fit_records, plan = saved["batch_candidates"], saved["plan"]
        if "candidates" in plan:
            return fit_records, SearchPlan.from_dict(plan, _candidate)
        again = _search_plan(config, fit_records, candidates, budget_steps, range_steps, seeds,
                             scout_steps)
        same = plan == json.loads(json.dumps({
            "range_steps": again.range_steps,
            **{s.argument: again.candidates[s.name] for s in FAMILIES},
            "planned_steps": again.planned_steps, "cuts": [c.text for c in again.cuts]}))
    except (KeyError, TypeError, ValueError) as err:
        raise UnreadableFileError(path, f"it is not a tune's plan ({type(err).__name__} "
                                        f"{err}); the recorded stages followed it: restore "
                                        "it, or use another workdir") from None
    if not same:
        raise UnreadableFileError(path, "its plan is not the one its batch candidates and the "
                                        "tune's inputs give; the recorded stages followed it: "
                                        "restore it, or use another workdir")
    return fit_records, again


def _fit_records(config, task, batch_sizes) -> list[dict[str, Any]]:
    """Whether each batch candidate fits (`tuning.batch`), the starting batch first."""
    found = [check_candidate(config, b, task).to_dict()
             for b in dict.fromkeys((config.batch_size, *batch_sizes))]
    if not found[0]["fits"]:
        raise ConfigError(f"batch_size={config.batch_size} (the starting batch) does not fit: "
                          f"{found[0]['reason']}.")
    return found


def _search_plan(config, fit_records, candidates, budget_steps, range_steps, seeds,
                 scout_steps) -> SearchPlan:
    """The search plan within the budget: the batches that fit, the largest kept longest."""
    fitting = [r["batch_size"] for r in fit_records[1:] if r["fits"]]
    return plan_search(budget_steps, range_steps, {
        **candidates, "batch_size": [config.batch_size, *sorted(fitting, reverse=True)]},
        seeds, scout_steps)
