"""The end of `tune` (Smith 2018, Sec. 4.1, 5): the tuned 1cycle run at every seed, its
diagnosis (Sec. 3), and `tune.json`, every decision with the search's cost beside the run's."""

from __future__ import annotations

from pathlib import Path

from hparams_jax import _files
from hparams_jax.diagnose import diagnose
from hparams_jax.train import DivergenceError, History, TrainConfig, fit
from hparams_jax.train.task import Task, train_examples
from hparams_jax.tuning import advice, readings, records
from hparams_jax.tuning.budget import SearchPlan
from hparams_jax.tuning.procedure import ONE_CYCLE, show
from hparams_jax.tuning.records import Decision, TuneResult, final_accuracy, write

EVALS_PER_EPOCH = 5  # the 1cycle run's test evaluations per epoch when eval_every is None


def final_config(config: TrainConfig, task: Task | None, workdir: Path, seeds: list[int],
                 policy: str = "one_cycle") -> TrainConfig:
    """The 1cycle run (or `policy`'s) at every seed (sweep members): `EVALS_PER_EPOCH` test
    evaluations an epoch where `eval_every` is None (diagnose reads the test loss early and
    often, Sec. 3)."""
    config = config.replace(lr_policy=policy, workdir=str(workdir / "one_cycle"),
                            members=tuple({"seed": s} for s in seeds) if len(seeds) > 1
                            else ())
    num_train = train_examples(config, task)
    if config.eval_every is None:
        steps = (num_train // config.batch_size if num_train is not None else
                 task.steps_per_epoch if task is not None and task.steps_per_epoch else
                 config.steps or 1)
        every = max(1, steps // EVALS_PER_EPOCH)
        config = config.replace(eval_every=every, log_every=min(config.log_every, every))
    return config


def one_cycle(stages, config: TrainConfig, decisions: list[Decision]) -> TuneResult:
    """Sec. 4.1, 5: the tuned 1cycle run at every seed (resumed by `fit`), its first seed
    `diagnose`d (Sec. 3); `stages` is the search (`stages._Stages`: its workdir, task, seeds
    and `say`)."""
    path = records.path(stages.workdir, ONE_CYCLE.name)
    done = records.recorded(path, records.check_final) is not None
    if not done:
        stages.say(f"one_cycle: {config.min_lr:.4g} -> {config.max_lr:.4g}, batch "
                   f"{config.batch_size}, momentum {show(config.momentum)}, weight decay "
                   f"{config.weight_decay:g}, seeds {', '.join(map(str, stages.seeds))}")
        try:
            fit(config, task=stages.task)
        except DivergenceError as err:  # diagnosed and recorded like any other outcome
            stages.say(str(err))
    history = History.load(stages.workdir / "one_cycle")
    found = diagnose(history)
    if not done:
        summary = history.summary
        accuracy = final_accuracy(summary)
        write(path, {
            "config": config.to_dict(), "status": summary["status"],
            "epochs": summary["epochs"], "seeds": stages.seeds,
            "test_accuracy": accuracy["test_accuracy"],
            "test_accuracy_std": accuracy["test_accuracy_std"],
            "test_accuracies": accuracy["test_accuracies"],
            "test_loss": readings.mean([m["test_loss"] for m in summary["members"]]),
            "train_loss": readings.mean([m["train_loss"] for m in summary["members"]]),
            "examples": summary["step"] * config.batch_size,
            "seconds": summary["seconds_per_epoch"] * summary["epochs"],
            "diagnosis": found.to_dict(), "next_step": advice.next_step(found.verdict)})
    return TuneResult(stages.workdir, decisions, config, history, found,
                      advice.next_step(found.verdict))


def write_tune_json(workdir: Path, inputs, plan: SearchPlan, budget_steps, fit_records,
                     result: TuneResult, config: TrainConfig, task: Task | None):
    final = _files.read_json(records.path(workdir, ONE_CYCLE.name))
    spent = sum(d.examples_spent for d in result.decisions)
    num_train = train_examples(config, task)

    def epochs(examples):
        return None if num_train is None or examples is None else examples / num_train

    write(workdir / "tune.json", {
        "procedure": "Smith 2018, A disciplined approach to neural network hyper-parameters: "
                     "Part 1 (arXiv:1803.09820), Sec. 4-5",
        "inputs": inputs,
        "budget": {"budget": inputs["budget"], "budget_steps": budget_steps,
                   "unit": f"steps at the starting batch {config.batch_size}",
                   "planned_steps": plan.planned_steps, "plan_steps": plan.steps,
                   "range_steps": plan.range_steps, "seeds": plan.seeds,
                   "scout_steps": plan.scout_steps,
                   "spent_steps": round(spent / config.batch_size),
                   # a test lengthened within a stage may take the search past its budget
                   "within_budget": None if budget_steps is None
                   else spent / config.batch_size <= budget_steps,
                   "spent_examples": spent, "spent_epochs": epochs(spent),
                   "spent_seconds": sum(d.seconds for d in result.decisions),
                   "final_examples": final["examples"],
                   "final_epochs": epochs(final["examples"]),
                   "final_seconds": final["seconds"], "final_seeds": final["seeds"],
                   "spent_per_final_run": spent / final["examples"]
                   if final["examples"] else None,
                   "cuts": [c.text for c in plan.cuts]},
        "batch_candidates": fit_records,
        "decisions": [d.to_dict() for d in result.decisions] + [{
            "stage": ONE_CYCLE.name, "section": ONE_CYCLE.section,
            "rule": ONE_CYCLE.rule, "choice": {
                k: final["config"][k] for k in ("batch_size", "momentum", "weight_decay",
                                                "min_lr", "max_lr", "epochs", "steps")},
            "result": {k: final[k] for k in ("status", "epochs", "seeds", "test_accuracy",
                                             "test_accuracy_std", "test_accuracies",
                                             "test_loss", "train_loss")},
            "diagnosis": final["diagnosis"], "next_step": final["next_step"]}],
    })
