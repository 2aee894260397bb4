"""The execution plan: how the training engine runs a config on a backend.

One engine, two plans, picked from the backend by default (`TrainConfig.plan = "auto"`) and
overridable, so the accelerator plan runs (and is tested) on a CPU too:

====================== ================================ =====================================
                       ``"accelerator"`` (GPU, TPU)     ``"cpu"`` (XLA:CPU)
====================== ================================ =====================================
a chunk of steps       one ``lax.scan``                 a host loop over the jitted step
sweep members          batched with ``jax.vmap``        unrolled in one program
layers                 `models.PLAIN_LAYERS` (Flax)     `models.XLA_CPU_LAYERS`
====================== ================================ =====================================

Why the CPU plan differs: on XLA:CPU a convolution's weight gradient inside a loop body misses
the fast convolution path and runs 10-100x slower (jax-ml/jax#12868), so the chunk is a host
loop whose asynchronous dispatch keeps the host's share small; ``vmap`` turns each convolution
into a grouped one that ran 2.6x slower per member than separate convolutions (LeNet, 4
members); and the XLA:CPU layer forms are faster there (`models.xla_cpu`). Both plans compute
the same function with the same parameter tree, so a checkpoint resumes under either.

``sync_each_step`` is not a choice but a fact of the machine: with several CPU devices in one
process (only simulated, ``--xla_force_host_platform_device_count``) the host loop awaits each
step, because overlapping steps starve the in-process all-reduce of threads. Real accelerators
and one CPU device per process (multi-process runs) keep dispatching asynchronously.
"""

from __future__ import annotations

import dataclasses

import jax

from hparams_jax import _validate as v
from hparams_jax import models
from hparams_jax.train.config import PLANS


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a config runs (see the module docstring).

    Attributes:
      name: "accelerator" or "cpu".
      scan_chunks: a chunk of steps is one ``lax.scan`` (else a host loop over the jitted step).
      vmap_members: sweep members are batched with ``jax.vmap`` (else unrolled in one program).
      sync_each_step: the host loop waits for each step before dispatching the next.
      layers: the layer implementations the networks are built from (`models.Layers`).
    """

    name: str
    scan_chunks: bool
    vmap_members: bool
    sync_each_step: bool
    layers: models.Layers


def resolve(plan: str = "auto", *, backend: str | None = None,
            local_devices: int | None = None) -> Plan:
    """The `Plan` for `plan` on `backend` (default: `jax.default_backend()`) with
    `local_devices` devices in this process (default: `jax.local_device_count()`); "auto"
    picks "cpu" on the CPU backend and "accelerator" elsewhere."""
    v.one_of("plan", plan, PLANS)
    backend = jax.default_backend() if backend is None else backend
    local = jax.local_device_count() if local_devices is None else local_devices
    name = ("cpu" if backend == "cpu" else "accelerator") if plan == "auto" else plan
    sync = backend == "cpu" and local > 1
    if name == "cpu":
        return Plan("cpu", scan_chunks=False, vmap_members=False, sync_each_step=sync,
                    layers=models.XLA_CPU_LAYERS)
    return Plan("accelerator", scan_chunks=True, vmap_members=True, sync_each_step=sync,
                layers=models.PLAIN_LAYERS)
