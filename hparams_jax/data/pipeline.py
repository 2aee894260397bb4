"""Batching for a device mesh: per-epoch shuffling from a seed, the global batch sharded on
the mesh's "data" axis, the last partial batch dropped in training and kept (masked) in
evaluation. Small datasets live on the device whole; a step gathers its batch there from these
index arrays (the training engine does the gather inside its compiled step)."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from hparams_jax import _validate as v


def make_mesh(devices=None) -> Mesh:
    """A one-axis mesh named "data" over all devices (of all hosts) or the given ones."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_batch_divisible(batch_size: int, num_devices: int) -> None:
    v.positive_int("batch_size", batch_size)
    if batch_size % num_devices:
        raise ValueError(
            f"batch_size={batch_size} does not divide over {num_devices} devices: the global "
            f"batch must be a multiple of {num_devices} (e.g. "
            f"{max(num_devices, batch_size - batch_size % num_devices)}).")


def epoch_indices(num_examples: int, batch_size: int, *, seed: int, epoch: int) -> np.ndarray:
    """(steps, batch_size) int32 example indices of one training epoch, shuffled by
    (seed, epoch); the last partial batch is dropped."""
    v.positive_int("num_examples", num_examples)
    v.positive_int("batch_size", batch_size)
    steps = num_examples // batch_size
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    return order[: steps * batch_size].reshape(steps, batch_size).astype(np.int32)


def eval_indices(num_examples: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every example once, in order: (steps, batch_size) indices and a float32 mask that is 0
    on the padding of the last batch."""
    v.positive_int("num_examples", num_examples)
    v.positive_int("batch_size", batch_size)
    steps = -(-num_examples // batch_size)
    idx = np.arange(steps * batch_size)
    mask = (idx < num_examples).astype(np.float32)
    return np.minimum(idx, num_examples - 1).reshape(steps, batch_size).astype(np.int32), \
        mask.reshape(steps, batch_size)
