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
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp

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

    def lift(self, fn: Callable, num_members: int, shared: tuple[int, ...] = ()) -> Callable:
        """`fn` of one member applied to K members: every argument has a leading axis K
        except those at the positions in `shared`, which all members see whole. Batched with
        `jax.vmap` where the plan vmaps members; otherwise each member's computation is traced
        once into the same program (unrolled) and the results are stacked."""
        if num_members > 1 and self.vmap_members:
            def batched(*args):
                in_axes = tuple(None if i in shared else 0 for i in range(len(args)))
                return jax.vmap(fn, in_axes=in_axes)(*args)

            return batched

        def unrolled(*args):
            outs = [fn(*[a if i in shared else jax.tree.map(lambda x: x[k], a)
                         for i, a in enumerate(args)])
                    for k in range(num_members)]
            return jax.tree.map(lambda *x: jnp.stack(x), *outs)

        return unrolled

    def loop(self, body: Callable, carry: Any, xs: Any, length: int) -> tuple[Any, Any]:
        """`lax.scan(body, carry, xs)` inside one program: a scan where the plan scans chunks,
        unrolled where it loops on the host (XLA:CPU: see the module docstring); `length` is
        the leading size of `xs`."""
        if self.scan_chunks:
            return jax.lax.scan(body, carry, xs)
        outs = []
        for i in range(length):
            carry, out = body(carry, jax.tree.map(lambda a: a[i], xs))
            outs.append(out)
        return carry, jax.tree.map(lambda *o: jnp.stack(o), *outs)

    def host_loop(self, state: Any, steps: Iterable[Callable[[Any], tuple[Any, Any]]]
                  ) -> tuple[Any, Any]:
        """`state` through each `step(state) -> (state, metrics)` of `steps`, dispatched
        asynchronously (awaiting each where `sync_each_step`); the last state and the metrics
        stacked on a leading axis."""
        metrics = []
        for step in steps:
            state, m = step(state)
            if self.sync_each_step:
                jax.block_until_ready(m)
            metrics.append(m)
        return state, jax.tree.map(lambda *x: jnp.stack(x), *metrics)


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
