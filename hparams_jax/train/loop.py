"""`fit(config)`: the training loop around the compiled steps.

It moves a small dataset to the device(s) once (or streams ImageNet from the host), feeds
chunks of steps up to the next log, evaluation or checkpoint (one `lax.scan` each on
accelerators) with per-epoch shuffled example indices, logs to `metrics.jsonl`, evaluates on
the test split, checkpoints with orbax and resumes from the newest readable checkpoint in the
same workdir. A non-finite loss freezes the member it hit (the update is not applied); a run whose
every member diverged stops with `DivergenceError`, leaving the last good checkpoint and the
metrics written so far on disk.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from hparams_jax.errors import ConfigError
from hparams_jax.transforms import ADAM_HYPERPARAM_NAMES
from hparams_jax.train.checkpoint import Checkpointer
from hparams_jax.train.config import EXECUTION_FIELDS, TrainConfig
from hparams_jax.train.metrics import History, MetricsLog, write_json_atomic
from hparams_jax.train.session import open_session

# Config fields that may change between a run and its resumption: where it is written, and how
# it executes (not what it computes).
RESUMABLE_CHANGES = ("workdir", *EXECUTION_FIELDS)


class DivergenceError(RuntimeError):
    """Training met a non-finite loss (every member, for a sweep)."""


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


def fit(config: TrainConfig) -> History:
    """Trains `config` (all its sweep members at once) and returns the history.

    Writes `metrics.jsonl`, `summary.json`, `config.json` and `checkpoints/` into
    `config.workdir` (a temporary folder, removed afterwards, when it is None).
    """
    if config.workdir is None:
        tmp = tempfile.mkdtemp(prefix="hparams_jax_")
        try:
            return fit(config.replace(workdir=tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    start_time = time.perf_counter()
    workdir = Path(config.workdir)
    is_main = jax.process_index() == 0
    session = open_session(config)
    steps_per_epoch, total_steps = session.steps_per_epoch, session.total_steps
    # "once an epoch" rounds up to whole logging intervals, so no chunk is cut short
    epoch_in_logs = -(-steps_per_epoch // config.log_every) * config.log_every
    eval_every = config.eval_every or epoch_in_logs
    checkpoint_every = config.checkpoint_every or epoch_in_logs

    workdir.mkdir(parents=True, exist_ok=True)
    _check_config_matches(workdir, config)
    if is_main:
        write_json_atomic(workdir / "config.json", config.to_dict())
    checkpointer = Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints)
    state = session.init_state()
    restored = checkpointer.restore_latest(state)
    step = 0
    if restored is not None:
        step, state = restored
    log = MetricsLog(workdir / "metrics.jsonl", resume_step=step, enabled=is_main)

    def evaluate() -> list[dict[str, Any]]:
        m = session.evaluate(state)
        return [{"kind": "eval", "step": step, "epoch": step / steps_per_epoch, "member": k,
                 "test_loss": m["loss"][k], "test_accuracy": m["accuracy"][k]}
                for k in range(session.num_members)]

    bar = tqdm(total=total_steps, initial=step, disable=not (config.progress and is_main),
               unit="step", dynamic_ncols=True)
    # Throughput excludes the chunks that compiled (the first of each length).
    train_seconds, trained_steps, timed_seconds, timed_steps = 0.0, 0, 0.0, 0
    compiled_lengths: set[int] = set()
    status, diverged = "interrupted", np.zeros(session.num_members, bool)
    try:
        while step < total_steps:
            n = session.chunk_length(step, config.log_every, eval_every, checkpoint_every)
            t0 = time.perf_counter()
            state, m = session.chunk(state, step, n)
            m = jax.device_get(m)
            seconds = time.perf_counter() - t0
            train_seconds, trained_steps = train_seconds + seconds, trained_steps + n
            if n in compiled_lengths:
                timed_seconds, timed_steps = timed_seconds + seconds, timed_steps + n
            compiled_lengths.add(n)
            prev, step = step, step + n
            rows = [{"kind": "train", "step": step, "epoch": step / steps_per_epoch,
                     "member": k, "train_loss": np.mean(m["loss"][:, k]),
                     "train_accuracy": np.mean(m["accuracy"][:, k]),
                     "learning_rate": m["learning_rate"][-1, k],
                     "momentum": m["momentum"][-1, k],
                     "weight_decay": m["weight_decay"][-1, k],
                     **{name: m[name][-1, k] for name in ADAM_HYPERPARAM_NAMES if name in m}}
                    for k in range(session.num_members)]
            diverged = np.asarray(jax.device_get(state.diverged))
            if not diverged.all():
                due_eval = step // eval_every > prev // eval_every or step == total_steps
                if due_eval:
                    rows += evaluate()
            log.write(rows)
            bar.update(n)
            bar.set_postfix(loss=f"{rows[0]['train_loss']:.4f}",
                            lr=f"{rows[0]['learning_rate']:.3g}")
            if diverged.all():
                status = "diverged"
                bad = np.argmax(~m["finite"], axis=0)
                first = prev + 1 + int(bad.min())
                lr = float(m["learning_rate"][bad.min(), 0])
                kept = (f"the last good checkpoint is step {checkpointer.latest_step} in "
                        f"{checkpointer.directory}" if checkpointer.latest_step is not None
                        else "no checkpoint had been written yet")
                raise DivergenceError(
                    f"training diverged: non-finite loss at step {first} (learning rate "
                    f"{lr:.4g}). The metrics so far are in {log.path}; {kept}. Lower max_lr "
                    "or weight_decay.")
            if step // checkpoint_every > prev // checkpoint_every or step == total_steps:
                log.sync()
                checkpointer.save(step, state)
        status = "completed"
    finally:
        bar.close()
        log.close()
        wall = time.perf_counter() - start_time
        per_step = (timed_seconds / timed_steps if timed_steps
                    else train_seconds / max(trained_steps, 1))
        summary = _summary(config, log.rows, status, np.flatnonzero(diverged), step,
                           total_steps, steps_per_epoch, wall, train_seconds,
                           per_step * steps_per_epoch)
        if is_main:
            write_json_atomic(workdir / "summary.json", summary)
        checkpointer.close()
    return History(log.rows, summary)


def _summary(config, rows, status, diverged, step, total_steps, steps_per_epoch, wall,
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
        "optimizer": config.optimizer,
        "accumulate_steps": config.accumulate_steps,
        "wall_time_s": wall,
        "train_time_s": train_seconds,
        "seconds_per_epoch": seconds_per_epoch,
        "members": members,
        "config": config.to_dict(),
    }
