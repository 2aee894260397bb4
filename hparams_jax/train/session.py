"""A prepared run: the data, the compiled engine and the members' hyper-parameters, with the
two moves every loop makes (a chunk of steps, an evaluation).

`fit` and the LR range test both drive one, from `open_session(config)`:

- `Session` (MNIST, Fashion-MNIST, CIFAR): the splits are held whole on the device(s); a
  reader follows a batch from `data.load` through `chunk` (example indices, shuffled per epoch
  and member) into `Engine.train_chunk`.
- `StreamedSession` (ImageNet, Sec. 5.3): batches are decoded, cropped and resized on the host
  by `data.imagenet` (grain), each process reading its share, and fed to
  `Engine.train_batches`. The members of a sweep share the batch stream (its order comes
  from the config's `seed`). The stream is a pure function of the step, so a run resumed at
  step s reads exactly the batches an uninterrupted run reads from s on.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np

from hparams_jax import _xla, data
from hparams_jax.data import imagenet, sources
from hparams_jax.errors import ConfigError
from hparams_jax.train.config import TrainConfig
from hparams_jax.train.optimizer import member_hparams
from hparams_jax.train.steps import Engine, TrainState


def _subset(images, labels, n: int | None, seed: int = 0):
    """A fixed random subset of `n` examples (the same for every run)."""
    if n is None or n >= len(labels):
        return images, labels
    keep = np.sort(np.random.default_rng(seed).permutation(len(labels))[:n])
    return images[keep], labels[keep]


class _Prepared:
    """What both kinds of session hold: the mesh, the engine and the members' settings."""

    def _build(self, config: TrainConfig, num_train: int, augmentation: str) -> None:
        self.config = config
        self.num_train = num_train
        self.steps_per_epoch = num_train // config.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(f"batch_size={config.batch_size} is larger than the "
                              f"{num_train} training examples: it must be at most that.")
        self.total_steps = config.steps or max(1, round(config.epochs * self.steps_per_epoch))
        info = data.info(config.dataset)
        self.engine = Engine(config, num_classes=info.num_classes, mean=info.mean, std=info.std,
                             augmentation=augmentation, total_steps=self.total_steps,
                             mesh=self.mesh)
        hp = member_hparams(config)
        self.seeds = hp["seed"]
        self.hp = jax.tree.map(lambda a: data.put(a, self.engine.replicated), hp)

    @property
    def num_members(self) -> int:
        return self.engine.num_members

    def init_state(self) -> TrainState:
        return self.engine.init(self.hp)

    def chunk_length(self, step: int, *intervals: int) -> int:
        """Steps from `step` to the next multiple of any of `intervals` (or the run's end)."""
        return min(*(every - step % every for every in intervals), self.total_steps - step)


class Session(_Prepared):
    """An in-memory dataset's run (see the module docstring), built once."""

    def __init__(self, config: TrainConfig):
        self.mesh = data.make_mesh()
        data.check_batch_divisible(config.batch_size, self.mesh.size, config.accumulate_steps)
        if config.image_size is not None:
            raise ConfigError(f"image_size={config.image_size} applies to streamed datasets; "
                              f"{config.dataset} is held whole at its own size: leave it None.")
        info = data.info(config.dataset)
        train_x, train_y = _subset(*data.load(config.dataset, "train"), config.train_examples)
        test_x, test_y = _subset(*data.load(config.dataset, "test"), config.eval_examples)
        self._build(config, len(train_y), config.augmentation or info.augmentation)
        self.train = data.DeviceDataset.from_arrays(train_x, train_y, self.mesh)
        self.test = data.DeviceDataset.from_arrays(test_x, test_y, self.mesh)
        eval_sharding = data.batch_sharding(self.mesh, leading=1)
        self.eval_idx, self.eval_mask = (
            data.put(a, eval_sharding) for a in data.eval_indices(len(test_y), config.batch_size))
        self._epochs: dict[int, np.ndarray] = {}

    def _epoch_indices(self, epoch: int) -> np.ndarray:
        """(steps_per_epoch, K, B): each member shuffles every epoch with its own seed."""
        if epoch not in self._epochs:
            self._epochs = {e: a for e, a in self._epochs.items() if e == epoch - 1}
            self._epochs[epoch] = np.stack(
                [data.epoch_indices(self.num_train, self.config.batch_size, seed=int(s),
                                    epoch=epoch) for s in self.seeds], axis=1)
        return self._epochs[epoch]

    def _indices(self, step: int, n: int) -> np.ndarray:
        """(n, K, B) example indices of steps [step, step + n), across epoch ends."""
        spe = self.steps_per_epoch
        rows = [self._epoch_indices(t // spe)[t % spe] for t in range(step, step + n)]
        return np.stack(rows)

    def chunk(self, state: TrainState, step: int, n: int):
        """Runs steps [step, step + n): (state, per-step metrics)."""
        return self.engine.train_chunk(state, self.hp, self.train, self._indices(step, n))

    def compiled_step(self):
        """One training step compiled for this session's batch, not run
        (`Engine.compile_step`)."""
        idx = jax.ShapeDtypeStruct((1, self.num_members, self.config.batch_size), np.int32,
                                   sharding=self.engine.chunk_sharding)
        return self.engine.compile_step(self.hp, self.train, idx)

    def evaluate(self, state: TrainState) -> dict[str, np.ndarray]:
        """Test loss and accuracy of each member, (K,) arrays."""
        return jax.device_get(self.engine.evaluate(state, self.test, self.eval_idx,
                                                   self.eval_mask))


class StreamedSession(_Prepared):
    """A streamed dataset's run (ImageNet; see the module docstring)."""

    def __init__(self, config: TrainConfig):
        self.mesh = data.make_mesh()
        data.check_batch_divisible(config.batch_size, self.mesh.size, config.accumulate_steps)
        info = data.info(config.dataset)
        if config.augmentation not in (None, "none"):
            raise ConfigError(f"augmentation={config.augmentation!r}: {config.dataset} is "
                              f"augmented on the host ({info.augmentation}); leave it None.")
        self.image_size = config.image_size or info.image_shape[0]
        self._train = sources.open_tfds(info.tfds_name, "train")
        self._test = sources.open_tfds(info.tfds_name, "validation")
        num_train = len(self._train)
        self._build(config, min(num_train, config.train_examples or num_train), "none")
        self._stream, self._next_step = None, None

    def _batches(self, source, split: str, num_examples: int | None, start: int = 0):
        """Device batches of `split` (its first `num_examples`) from batch `start` on."""
        local = imagenet.from_source(
            source, split, self.config.batch_size, seed=self.config.seed,
            image_size=self.image_size, worker_count=self.config.data_workers,
            num_examples=num_examples, start_batch=start, process_index=jax.process_index(),
            process_count=jax.process_count())
        return (imagenet.to_device(b, self.mesh) for b in local)

    def chunk(self, state: TrainState, step: int, n: int):
        """Runs steps [step, step + n) on the next n batches: (state, per-step metrics)."""
        if self._next_step != step:  # a fresh run, or a resumption: restart the stream there
            self._stream = self._batches(self._train, "train", self.config.train_examples,
                                         start=step)
        self._next_step = step + n
        batches = itertools.islice(self._stream, n)
        return self.engine.train_batches(state, self.hp, batches)

    def compiled_step(self):
        """One training step compiled for this session's batch, not run
        (`Engine.compile_step`)."""
        b, s = self.config.batch_size, self.image_size
        sharding = data.batch_sharding(self.mesh)
        return self.engine.compile_step(
            self.hp, jax.ShapeDtypeStruct((b, s, s, 3), np.uint8, sharding=sharding),
            jax.ShapeDtypeStruct((b,), np.int32, sharding=sharding))

    def evaluate(self, state: TrainState) -> dict[str, np.ndarray]:
        """Validation loss and accuracy of each member (the central crops), (K,) arrays."""
        return self.engine.evaluate_batches(state, self._batches(self._test, "validation",
                                                                  self.config.eval_examples))


def open_session(config: TrainConfig) -> Session | StreamedSession:
    """The session `config`'s dataset needs: held whole on the device(s), or streamed. The
    entry point of every run: it sets the CPU plan's XLA flags (`_xla`) if JAX has not
    started yet."""
    _xla.apply_cpu_defaults(config.plan)
    if data.info(config.dataset).in_memory:
        return Session(config)
    return StreamedSession(config)
