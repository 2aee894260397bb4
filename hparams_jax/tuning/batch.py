"""Batch-size candidates that fit (Smith 2018, Sec. 4.2: "use as large a batch size as the
hardware allows").

A candidate fits when its global batch splits evenly over the devices (and into the config's
`accumulate_steps` micro-batches), it is no larger than the training set, and one compiled
training step fits the device's memory. The memory check compiles the step (without running
it) and compares XLA's `memory_analysis()` (arguments + outputs + temporaries, less the donated
buffers it reuses) with the device's `bytes_limit`, where JAX reports one (GPUs, TPUs). The CPU
backend reports no device memory, so there the check is not made and host RAM bounds the batch:
the candidate is kept and the record says so.

`examples_per_second` measures a candidate's training throughput on this device (Sec. 4.2
prefers a larger batch for the wall time it buys: on a GPU a larger batch trains more examples
a second, on a CPU it often does not).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax

from hparams_jax import data
from hparams_jax.errors import ConfigError
from hparams_jax.train.config import TrainConfig
from hparams_jax.train.session import open_session
from hparams_jax.train.task import Task, train_examples


@dataclasses.dataclass(frozen=True)
class Candidate:
    batch_size: int
    fits: bool
    reason: str
    step_bytes: int | None = None  # XLA's estimate of one training step's device memory
    device_bytes: int | None = None  # the device's memory limit, where JAX reports it

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def device_memory() -> int | None:
    """The first device's memory limit in bytes, or None where JAX reports none (CPU)."""
    stats = jax.local_devices()[0].memory_stats()
    return int(stats["bytes_limit"]) if stats and "bytes_limit" in stats else None


def _step_bytes(config: TrainConfig, task: Task | None = None) -> int:
    memory = open_session(config, task).compiled_step().memory_analysis()
    return int(memory.argument_size_in_bytes + memory.output_size_in_bytes
               + memory.temp_size_in_bytes - memory.alias_size_in_bytes)


THROUGHPUT_STEPS = 10  # steps a chunk of the throughput measure
THROUGHPUT_REPEATS = 3  # chunks timed after the one that compiles; the fastest counts


def examples_per_second(config: TrainConfig, task: Task | None = None,
                        steps: int = THROUGHPUT_STEPS) -> float:
    """Training examples a second of one setting of `config` (on `task`, default the config's
    zoo task) at its batch size: the fastest of `THROUGHPUT_REPEATS` chunks of `steps`
    compiled training steps, after one that compiles and warms up (no evaluation; the fastest,
    as other work on a shared machine only slows a chunk down)."""
    chunks = THROUGHPUT_REPEATS + 1
    session = open_session(config.replace(members=(), workdir=None, progress=False,
                                          steps=chunks * steps), task)
    state = session.init_state()
    fastest = float("inf")
    for k in range(chunks):
        began = time.perf_counter()
        state, metrics = session.chunk(state, k * steps, steps)
        jax.block_until_ready(metrics)
        if k:
            fastest = min(fastest, time.perf_counter() - began)
    return steps * config.batch_size / max(fastest, 1e-9)


def check_candidate(config: TrainConfig, batch_size: int, task: Task | None = None
                    ) -> Candidate:
    """Whether `config` (on `task`, default the config's zoo task) can train at `batch_size`
    (see the module docstring)."""
    devices = jax.device_count()
    try:
        data.check_batch_divisible(batch_size, devices, config.accumulate_steps)
    except ConfigError as err:
        return Candidate(batch_size, False, str(err))
    if task is not None and not task.held and batch_size != config.batch_size:
        return Candidate(batch_size, False, f"task {task.name!r} streams batches of "
                         f"{config.batch_size} from an iterator")
    num_train = train_examples(config, task)
    if num_train is not None and batch_size > num_train:
        return Candidate(batch_size, False, f"larger than the {num_train} training examples")
    limit = device_memory()
    if limit is None:
        return Candidate(batch_size, True, f"divides over {devices} device(s); memory not "
                         f"checked: the {jax.default_backend()} backend reports no device "
                         "memory (host RAM bounds it)")
    need = _step_bytes(config.replace(batch_size=batch_size, members=(), workdir=None,
                                      progress=False), task)
    fits = need <= limit
    return Candidate(batch_size, fits, f"one compiled step needs {need / 2**30:.2f} GiB of "
                     f"the device's {limit / 2**30:.2f} GiB" + ("" if fits else ": too large"),
                     need, limit)
