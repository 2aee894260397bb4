"""Batching on the device(s) for datasets that fit in device memory (the airbench way).

A split is placed on the device(s) once, replicated over a one-axis mesh named "data". Each step
gathers its global batch there from an index array laid out with `batch_sharding`, so every
device gathers only its own shard; nothing but the indices crosses from the host per step.

Indices come from the host: `epoch_indices` shuffles each epoch from (seed, epoch) and drops the
last partial batch (training); `eval_indices` keeps every example exactly once, padding the last
batch and masking the padding (evaluation). Both are plain NumPy, identical on every host.
`micro_batches` splits a global batch for gradient accumulation without moving it.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from typing import Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from hparams_jax import _validate as v
from hparams_jax.errors import ConfigError

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """A one-axis mesh named "data" over all devices (of all hosts) or the given ones."""
    devices = jax.devices() if devices is None else list(devices)
    v.check("devices", devices, len(devices) > 0, "a non-empty sequence of devices (or None)")
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh, *, leading: int = 0) -> NamedSharding:
    """Shards the batch axis over "data": axis 0, or axis `leading` after that many unsharded
    leading axes (e.g. `leading=1` for (steps, batch) index arrays)."""
    return NamedSharding(mesh, P(*([None] * leading), DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A whole copy on every device of the mesh."""
    return NamedSharding(mesh, P())


def check_batch_divisible(batch_size: int, num_devices: int, micro_batches: int = 1) -> int:
    """`batch_size` if the global batch splits evenly over `num_devices` (each of its
    `micro_batches` equal parts, for gradient accumulation), else ValueError."""
    v.positive_int("batch_size", batch_size)
    v.positive_int("num_devices", num_devices)
    v.positive_int("micro_batches", micro_batches)
    unit = num_devices * micro_batches
    if batch_size % unit:
        lower = batch_size - batch_size % unit
        suggest = f"{lower} or {lower + unit}" if lower else f"{unit}"
        into = (f"over {num_devices} devices" if micro_batches == 1 else
                f"into {micro_batches} micro-batches (accumulate_steps) over {num_devices} "
                "devices")
        raise ConfigError(
            f"batch_size={batch_size} does not divide {into}: the global batch must be a "
            f"multiple of {unit} (e.g. {suggest}).")
    return batch_size


def micro_batches(batch, num_micro: int, num_devices: int):
    """The global batch (B, ...) sharded over `num_devices` as `num_micro` micro-batches
    (num_micro, B / num_micro, ...) for gradient accumulation: micro-batch i is the i-th
    `num_micro`-th of every device's share, so each spreads over all devices as the batch does
    (no data moves between devices). B must divide by `num_micro * num_devices`. A JAX or
    NumPy array."""
    b, *shape = batch.shape
    x = batch.reshape(num_devices, num_micro, b // (num_micro * num_devices), *shape)
    return x.swapaxes(0, 1).reshape(num_micro, b // num_micro, *shape)


def _non_negative_int(name: str, value) -> int:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0
    v.check(name, value, ok, "an integer >= 0")
    return int(value)


def epoch_indices(num_examples: int, batch_size: int, *, seed: int, epoch: int) -> np.ndarray:
    """(steps, batch_size) int32 example indices of one training epoch, steps =
    num_examples // batch_size: a permutation drawn from (seed, epoch), the last partial batch
    dropped. Deterministic for (seed, epoch); a new order every epoch."""
    v.positive_int("num_examples", num_examples)
    v.positive_int("batch_size", batch_size)
    seed, epoch = _non_negative_int("seed", seed), _non_negative_int("epoch", epoch)
    v.check("batch_size", batch_size, batch_size <= num_examples,
            f"at most num_examples={num_examples} (a training epoch drops the last partial "
            "batch, so it would have no step)")
    steps = num_examples // batch_size
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    return order[: steps * batch_size].reshape(steps, batch_size).astype(np.int32)


def eval_indices(num_examples: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every example exactly once, in order: (steps, batch_size) int32 indices, steps =
    ceil(num_examples / batch_size), and a float32 mask that is 1 on real examples and 0 on the
    padding of the last batch (padded with index num_examples - 1, so gathers stay in bounds)."""
    v.positive_int("num_examples", num_examples)
    v.positive_int("batch_size", batch_size)
    steps = -(-num_examples // batch_size)
    flat = np.arange(steps * batch_size)
    mask = (flat < num_examples).astype(np.float32).reshape(steps, batch_size)
    idx = np.minimum(flat, num_examples - 1).astype(np.int32).reshape(steps, batch_size)
    return idx, mask


def put(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A host array that every process holds alike, as one global array laid out by
    `sharding` (multi-host safe: each process fills only its own devices)."""
    array = np.asarray(array)
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def gather(arrays: Mapping[str, jax.Array], idx: jax.Array, mesh: Mesh | None = None
           ) -> dict[str, jax.Array]:
    """`{name: array[idx]}`, for use inside jit. With `mesh`, the results are constrained to
    shard the last axis of `idx` (the batch) over "data", so each device gathers its own shard
    of the batch from its replica of the data."""
    out = {name: a[idx] for name, a in arrays.items()}
    if mesh is not None:
        sharding = batch_sharding(mesh, leading=idx.ndim - 1)
        out = {name: jax.lax.with_sharding_constraint(x, sharding) for name, x in out.items()}
    return out


def _device_dtype(a: np.ndarray) -> np.ndarray:
    """`a` in the dtype JAX holds it in (64-bit numbers as 32-bit unless x64 is enabled)."""
    return a.astype(jax.dtypes.canonicalize_dtype(a.dtype), copy=False)


def check_same_length(name: str, arrays: Mapping[str, np.ndarray]) -> int:
    """The common length of `arrays` (examples on axis 0), or ConfigError naming `name` and
    the lengths."""
    if not isinstance(arrays, Mapping) or not arrays:
        raise ConfigError(f"{name}={type(arrays).__name__}: expected a non-empty mapping of "
                          "arrays with the examples on axis 0 (e.g. {\"image\": x, \"label\": "
                          "y}).")
    lengths = {k: (np.shape(a)[0] if np.ndim(a) else None) for k, a in arrays.items()}
    if None in lengths.values() or len(set(lengths.values())) != 1:
        shown = ", ".join(f"{k!r}: {n if n is not None else 'a scalar'}"
                          for k, n in lengths.items())
        raise ConfigError(f"{name} holds arrays of different lengths ({shown}): every array "
                          "must have the examples on axis 0, as many in each.")
    n = next(iter(lengths.values()))
    v.check(f"{name} length", n, n > 0, "at least one example")
    return n


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DeviceDataset:
    """One split held whole on the device(s): named arrays with the examples on axis 0 (the
    zoo's are uint8 images (N, H, W, C) under "image" and int32 labels (N,) under "label"),
    replicated over `mesh`. A pytree (the mesh is static), so it can be passed to a jitted step,
    which calls `ds.gather(idx)` with `idx` laid out by `ds.index_sharding(...)`."""

    arrays: dict[str, jax.Array]
    mesh: Mesh = dataclasses.field(metadata=dict(static=True))

    @classmethod
    def from_mapping(cls, arrays: Mapping[str, np.ndarray], mesh: Mesh | None = None,
                     *, name: str = "arrays") -> "DeviceDataset":
        """Places host arrays (the same on every process; examples on axis 0, as many in
        each) on every device of `mesh`."""
        check_same_length(name, arrays)
        mesh = make_mesh() if mesh is None else mesh
        rep = replicated(mesh)
        return cls({k: put(_device_dtype(np.asarray(a)), rep) for k, a in arrays.items()}, mesh)

    @classmethod
    def from_arrays(cls, images: np.ndarray, labels: np.ndarray, mesh: Mesh | None = None
                    ) -> "DeviceDataset":
        """An image classification split: uint8 images (N, H, W, C) and integer labels (N,)
        as "image" and "label"."""
        images, labels = np.asarray(images), np.asarray(labels)
        v.check("images", images.shape, images.ndim == 4 and images.dtype == np.uint8,
                "a uint8 array (N, H, W, C)")
        v.check("labels", labels.shape, labels.shape == images.shape[:1],
                f"an integer array ({images.shape[0]},) matching the images")
        return cls.from_mapping({"image": images, "label": labels.astype(np.int32)}, mesh)

    @classmethod
    def load(cls, name: str, split: str, *, mesh: Mesh | None = None,
             data_dir: str | os.PathLike | None = None) -> "DeviceDataset":
        """`data.load(name, split)` placed on the device(s)."""
        from hparams_jax.data.sources import load

        return cls.from_arrays(*load(name, split, data_dir=data_dir), mesh=mesh)

    @property
    def images(self) -> jax.Array:
        return self.arrays["image"]

    @property
    def labels(self) -> jax.Array:
        return self.arrays["label"]

    def __len__(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])

    def index_sharding(self, *, leading: int = 0) -> NamedSharding:
        return batch_sharding(self.mesh, leading=leading)

    def put_indices(self, idx: np.ndarray) -> jax.Array:
        """Host indices (..., batch) on the device(s), the batch (last) axis sharded."""
        check_batch_divisible(int(np.shape(idx)[-1]), self.mesh.size)
        return put(np.asarray(idx, np.int32), self.index_sharding(leading=np.ndim(idx) - 1))

    def gather(self, idx: jax.Array) -> dict[str, jax.Array]:
        """The batch of the examples `idx`: each array's rows, sharded over "data" on idx's
        last axis."""
        return gather(self.arrays, idx, self.mesh)
