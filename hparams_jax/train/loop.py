"""`fit(config)`: the training loop around the compiled steps.

It moves a small dataset to the device(s) once (or streams ImageNet from the host), feeds
chunks of steps up to the next log, evaluation or checkpoint (one `lax.scan` each on
accelerators) with per-epoch shuffled example indices, logs to `metrics.jsonl`, evaluates on
the test split, checkpoints with orbax and resumes from the newest readable checkpoint in the
same workdir. A non-finite loss freezes the member it hit (the update is not applied); a run whose
every member diverged stops with `DivergenceError`, leaving the last good checkpoint and the
metrics written so far on disk.

Nothing written is lost: one run writes a workdir at a time (`lock`); a damaged checkpoint is
moved aside and a differently structured one refused (`checkpoint`); SIGINT/SIGTERM stop the
run after saving its last completed step (`interrupt`); a failed write (a full disk) stops it
with `WorkdirWriteError`, the last good checkpoint and the metrics so far intact; a finished
run's records are returned as they are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import jax
import numpy as np
from tqdm.auto import tqdm

from hparams_jax import _xla
from hparams_jax.errors import ConfigError
from hparams_jax.transforms import ADAM_HYPERPARAM_NAMES
from hparams_jax.train.checkpoint import Checkpointer
from hparams_jax.train.config import EXECUTION_FIELDS, TrainConfig
from hparams_jax.train.interrupt import TrainingInterrupted, stop_on_signals
from hparams_jax.train.lock import workdir_lock
from hparams_jax.train import tensorboard
from hparams_jax.train.metrics import History, MetricsLog, Throughput, write_json_atomic
from hparams_jax.train.session import open_session
from hparams_jax.train.task import Task, resolve

# The hyper-parameters a train row records as the step used them.
HYPERPARAM_NAMES = ("learning_rate", "momentum", "weight_decay", *ADAM_HYPERPARAM_NAMES)

# Config fields that may change between a run and its resumption: where it is written, and how
# it executes (not what it computes).
RESUMABLE_CHANGES = ("workdir", *EXECUTION_FIELDS)


class DivergenceError(RuntimeError):
    """Training met a non-finite loss (every member, for a sweep)."""


class WorkdirWriteError(OSError):
    """Writing the metrics or a checkpoint into the workdir failed (a full disk, a folder made
    read-only or removed); what was written before is intact and the run resumes from it."""


def _check_config_matches(workdir: Path, config: TrainConfig) -> None:
    path = workdir / "config.json"
    if not path.exists():
        return
    changed = [k for k in config.changed_fields(json.loads(path.read_text()))
               if k not in RESUMABLE_CHANGES]
    if changed:
        raise ConfigError(
            f"workdir={str(workdir)!r} holds a run with a different config ({', '.join(changed)} "
            "differ); use a new workdir or the same config to resume.")


def fit(config: TrainConfig, *, task: Task | None = None) -> History:
    """Trains `config` (all its sweep members at once) on `task` (default: the config's zoo
    network and dataset) and returns the history.

    Writes `metrics.jsonl`, `summary.json`, `config.json` and `checkpoints/` (and, with
    `config.tensorboard`, `tensorboard/`: `train.tensorboard`) into
    `config.workdir` (a temporary folder, removed afterwards, when it is None), holding the
    workdir's lock all along (`WorkdirLocked` at once if another run holds it). Resumes from
    the newest readable checkpoint there (`CheckpointMismatchError` if the state's structure
    changed); returns a finished run's records untouched. While it trains, SIGINT and SIGTERM
    save the last completed step and raise `TrainingInterrupted` (the previous handlers are
    back when `fit` returns).

    Args:
      config: how to train (a sweep of `config.num_members` settings trains them together).
      task: what to train, a `Task` (the user's own model, loss and data); its config's
        model and data fields are not used, and `config.json` records them as `task:NAME`.

    Returns:
      The `History` of the run: its metric rows and its summary (`status` "completed").

    Raises:
      DivergenceError: every member met a non-finite loss.
      ConfigError: `config.workdir` holds a run of a different config.
      WorkdirLocked: another process is writing `config.workdir`.
      CheckpointMismatchError: the workdir's checkpoint does not fit the state's structure.
      TrainingInterrupted: SIGINT or SIGTERM stopped the run (after saving its last step).
      WorkdirWriteError: writing the metrics or a checkpoint failed.

    Examples:
      LeNet on a Fashion-MNIST subset, 16 steps of 1cycle with cyclical momentum:

      >>> import os, tempfile
      >>> from hparams_jax.train import TrainConfig, fit
      >>> config = TrainConfig(model="lenet", dataset="fashion_mnist", batch_size=32, steps=16,
      ...                      train_examples=256, eval_examples=128, min_lr=0.01, max_lr=0.05,
      ...                      momentum=(0.95, 0.85), log_every=4, eval_every=8,
      ...                      progress=False, workdir=tempfile.mkdtemp())
      >>> history = fit(config)
      >>> history.summary["status"], history.summary["step"]
      ('completed', 16)
      >>> history.train()["step"], history.eval()["step"]
      (array([ 4.,  8., 12., 16.]), array([ 8., 16.]))
      >>> sorted(os.listdir(config.workdir))
      ['checkpoints', 'config.json', 'metrics.jsonl', 'summary.json']
      >>> fit(config).train()["step"]  # a finished run's records, returned as they are
      array([ 4.,  8., 12., 16.])
    """
    _xla.apply_cpu_defaults(config.plan)  # before anything starts JAX (the lock asks it)
    if config.workdir is None:
        tmp = tempfile.mkdtemp(prefix="hparams_jax_")
        try:
            return fit(config.replace(workdir=tmp), task=task)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    config, task = resolve(config, task)
    with workdir_lock(config.workdir) as workdir:
        return _fit(config, task, workdir)


def _fit(config: TrainConfig, task: Task, workdir: Path) -> History:
    start_time = time.perf_counter()
    is_main = jax.process_index() == 0
    _check_config_matches(workdir, config)
    session = open_session(config, task)
    checkpointer = Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints,
                                primary=is_main)
    try:
        state = session.init_state()
        restored = checkpointer.restore_latest(state)
        step = 0 if restored is None else restored[0]
        if restored is not None:
            state = restored[1]
        with _writing(workdir):
            log = MetricsLog(workdir / "metrics.jsonl", resume_step=step, enabled=is_main,
                             tensorboard=tensorboard.for_run(config, workdir))
        summary_path = workdir / "summary.json"
        if step >= session.total_steps and _completed(summary_path):  # returned untouched
            log.close()
            return History(log.rows, json.loads(summary_path.read_text()))
        if is_main:
            with _writing(workdir):
                _write_if_changed(workdir / "config.json", config.to_dict())
        with stop_on_signals() as stop:
            return _train(_Run(config, session, state, step, log, checkpointer, stop,
                               start_time, summary_path if is_main else None))
    finally:
        checkpointer.close()


@contextlib.contextmanager
def _writing(workdir: Path) -> Iterator[None]:
    try:
        yield
    except OSError as err:
        raise WorkdirWriteError(f"could not write into workdir={str(workdir)!r} ({err}); what "
                                "it holds is intact. Free space (or fix the folder) and run "
                                "again.") from err


def _completed(summary_path: Path) -> bool:
    return summary_path.exists() and json.loads(summary_path.read_text()).get(
        "status") == "completed"


def _write_if_changed(path: Path, obj: Any) -> None:
    if not path.exists() or json.loads(path.read_text()) != obj:
        write_json_atomic(path, obj)


@dataclasses.dataclass
class _Run:
    """What the training loop carries: the run's config and session, its state and step,
    where it writes (metrics log, checkpointer, summary path: None off the main process), the
    signal watch and when it started."""

    config: TrainConfig
    session: Any
    state: Any
    step: int
    log: MetricsLog
    checkpointer: Checkpointer
    stop: Any
    start_time: float
    summary_path: Path | None


def _metric_rows(kind: str, step: int, steps_per_epoch: int, values: dict[str, Any],
                 num_members: int) -> list[dict[str, Any]]:
    """A row per member: `{prefix}loss`, `{prefix}accuracy` where the task reports one, and
    `{prefix}NAME` for its other metrics (prefix "train_" or "test_")."""
    prefix = "train_" if kind == "train" else "test_"
    return [{"kind": kind, "step": step, "epoch": step / steps_per_epoch, "member": k,
             **{prefix + name: x[k] for name, x in values.items()}}
            for k in range(num_members)]


def _train(run: _Run) -> History:
    """Trains from `run.step` to the end, writing rows and checkpoints, then the summary (also
    when it stops early: diverged, interrupted or failed)."""
    config, session, log, checkpointer, stop = (run.config, run.session, run.log,
                                                run.checkpointer, run.stop)
    step = run.step
    steps_per_epoch, total_steps = session.steps_per_epoch, session.total_steps
    # "once an epoch" rounds up to whole logging intervals, so no chunk is cut short
    epoch_in_logs = -(-steps_per_epoch // config.log_every) * config.log_every
    eval_every = config.eval_every or epoch_in_logs
    checkpoint_every = config.checkpoint_every or epoch_in_logs
    start = step

    def evaluate() -> list[dict[str, Any]]:
        return _metric_rows("eval", step, steps_per_epoch, session.evaluate(run.state),
                            session.num_members)

    def kept() -> str:
        latest = checkpointer.latest_step
        return (f"the last good checkpoint is step {latest} in {checkpointer.directory}"
                if latest is not None else "no checkpoint had been written yet")

    def save() -> None:
        try:
            log.sync()
            checkpointer.save(step, run.state)
        except Exception as err:  # orbax and tensorstore raise many kinds for a failed write
            raise WorkdirWriteError(
                f"could not write the checkpoint of step {step} ({type(err).__name__}: "
                f"{' '.join(str(err).split())[:200]}); {kept()}, the metrics so far are in "
                f"{log.path}. Free space (or fix the folder) and run again to resume.") from err

    bar = tqdm(total=total_steps, initial=step, disable=not (config.progress and run.summary_path),
               unit="step", dynamic_ncols=True)
    # Throughput excludes the chunks that compiled (the first of each length).
    train_seconds, trained_steps, timed_seconds, timed_steps = 0.0, 0, 0.0, 0
    compiled_lengths: set[int] = set()
    throughput = Throughput(config.batch_size)
    status, diverged = "failed", np.zeros(session.num_members, bool)
    try:
        while step < total_steps:
            if stop.requested():
                status = "interrupted"
                if step > start:
                    save()
                    where = f"saved a checkpoint of step {step} in {checkpointer.directory}"
                else:
                    where = kept()
                raise TrainingInterrupted(
                    f"training interrupted by {stop.name} at step {step} of {total_steps}; "
                    f"{where}. Run it again with the same workdir to resume.", stop.signum)
            n = session.chunk_length(step, config.log_every, eval_every, checkpoint_every)
            t0 = time.perf_counter()
            run.state, m = session.chunk(run.state, step, n)
            m = jax.device_get(m)
            seconds = time.perf_counter() - t0
            speed = throughput.record(n, seconds, compiled=n not in compiled_lengths)
            train_seconds, trained_steps = train_seconds + seconds, trained_steps + n
            if n in compiled_lengths:
                timed_seconds, timed_steps = timed_seconds + seconds, timed_steps + n
            compiled_lengths.add(n)
            prev, step = step, step + n
            rows = _metric_rows("train", step, steps_per_epoch, {
                "loss": m["loss"].mean(0), **{k: x.mean(0) for k, x in m["metrics"].items()}},
                session.num_members)
            for k, row in enumerate(rows):
                row.update({name: m[name][-1, k] for name in HYPERPARAM_NAMES if name in m})
                row.update(speed)
            diverged = np.asarray(jax.device_get(run.state.diverged))
            if not diverged.all() and session.has_eval:
                due_eval = step // eval_every > prev // eval_every or step == total_steps
                if due_eval:
                    rows += evaluate()
            try:
                log.write(rows)
            except OSError as err:
                raise WorkdirWriteError(
                    f"could not append the metrics of step {step} to {log.path} ({err}); "
                    f"{kept()}. Free space (or fix the folder) and run again to resume.") from err
            bar.update(n)
            bar.set_postfix(loss=f"{rows[0]['train_loss']:.4f}",
                            lr=f"{rows[0]['learning_rate']:.3g}")
            if diverged.all():
                status = "diverged"
                bad = np.argmax(~m["finite"], axis=0)
                first = prev + 1 + int(bad.min())
                lr = float(m["learning_rate"][bad.min(), 0])
                raise DivergenceError(
                    f"training diverged: non-finite loss at step {first} (learning rate "
                    f"{lr:.4g}). The metrics so far are in {log.path}; {kept()}. Lower max_lr "
                    "or weight_decay.")
            if step // checkpoint_every > prev // checkpoint_every or step == total_steps:
                save()
        status = "completed"
    except KeyboardInterrupt:  # a second Ctrl-C stops at once
        status = "interrupted"
        raise
    finally:
        bar.close()
        failing = status != "completed"
        wall = time.perf_counter() - run.start_time
        per_step = (timed_seconds / timed_steps if timed_steps
                    else train_seconds / max(trained_steps, 1))
        summary = _summary(config, session.engine.plan.name, log.rows, status,
                           np.flatnonzero(diverged), step, total_steps, steps_per_epoch, wall,
                           train_seconds, per_step * steps_per_epoch)
        summary_path = run.summary_path
        summary.update(throughput.summary())
        try:
            log.close()
            # a finished run's summary is replaced only by that of a run that finished again
            if summary_path is not None and not (failing and _completed(summary_path)):
                write_json_atomic(summary_path, summary)
        except OSError as err:
            if not failing:
                raise WorkdirWriteError(f"could not write the summary or the metrics of the "
                                        f"finished run in {summary_path.parent} ({err}).") from err
            warnings.warn(f"could not write the summary of the stopped run ({err}).",
                          RuntimeWarning, stacklevel=2)
    return History(log.rows, summary)


def _summary(config, plan, rows, status, diverged, step, total_steps, steps_per_epoch, wall,
             train_seconds, seconds_per_epoch) -> dict[str, Any]:
    members = []
    for k in range(config.num_members):
        last_train = next((r for r in reversed(rows) if r["kind"] == "train"
                           and r["member"] == k), {})
        last_eval = next((r for r in reversed(rows) if r["kind"] == "eval"
                          and r["member"] == k), {})
        members.append({"member": k, "setting": config.members_or_self()[k].__dict__,
                        "diverged": bool(k in diverged),
                        "train_loss": last_train.get("train_loss"),
                        "train_accuracy": last_train.get("train_accuracy"),
                        "test_loss": last_eval.get("test_loss"),
                        "test_accuracy": last_eval.get("test_accuracy")})
    return {
        "status": status,
        "step": step,
        "total_steps": total_steps,
        "steps_per_epoch": steps_per_epoch,
        "epochs": step / steps_per_epoch,
        "devices": jax.device_count(),
        "backend": jax.default_backend(),
        "plan": plan,
        "precision": config.precision,
        "optimizer": config.optimizer,
        "accumulate_steps": config.accumulate_steps,
        "wall_time_s": wall,
        "train_time_s": train_seconds,
        "seconds_per_epoch": seconds_per_epoch,
        "members": members,
        "config": config.to_dict(),
    }
