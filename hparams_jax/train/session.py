"""A prepared run: the task's data, the compiled engine and the members' hyper-parameters, with
the two moves every loop makes (a chunk of steps, an evaluation).

`fit` and the LR range test both drive one, from `open_session(config, task)` (the config's
zoo task where `task` is None):

- `Session` (a task whose data are arrays: MNIST, Fashion-MNIST, CIFAR, a user's mappings):
  the splits are held whole on the device(s); a reader follows a batch from the task's arrays
  through `chunk` (example indices, shuffled per epoch and member) into `Engine.train_chunk`.
- `StreamedSession` (a task whose data are iterators: ImageNet, Sec. 5.3; a user's tfds, grain
  or DataLoader batches): batches are fed from the host to `Engine.train_batches`. The members
  of a sweep share the batch stream. A resumed run at step s reads the stream from batch s on
  (seeking where the task's data take a `start`, else skipping s batches).
"""

from __future__ import annotations


import jax
import numpy as np

from hparams_jax import _xla, data
from hparams_jax.errors import ConfigError
from hparams_jax.train.config import TrainConfig
from hparams_jax.train.optimizer import member_hparams
from hparams_jax.train.steps import Engine, TrainState, means
from hparams_jax.train.task import (EXAMPLE_MASK, Task, iterable_length, open_stream, seekable,
                                    subset)


class _Prepared:
    """What both kinds of session hold: the mesh, the engine and the members' settings."""

    def _build(self, config: TrainConfig, task: Task, steps_per_epoch: int) -> None:
        self.config = config
        self.task = task
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = config.steps or max(1, round(config.epochs * self.steps_per_epoch))
        self.engine = Engine(config, task, total_steps=self.total_steps, mesh=self.mesh)
        hp = member_hparams(config)
        self.seeds = hp["seed"]
        self.hp = jax.tree.map(lambda a: data.put(a, self.engine.replicated), hp)

    @property
    def num_members(self) -> int:
        return self.engine.num_members

    @property
    def has_eval(self) -> bool:
        return self.task.eval is not None

    def init_state(self) -> TrainState:
        return self.engine.init(self.hp)

    def _prepare_eval(self) -> None:
        """Held-out arrays go onto the device(s) once, in full batches of `batch_size` and a
        padded, masked last one; an iterator is read anew at each evaluation."""
        if self.task.eval is None or callable(self.task.eval):
            return
        test = subset(self.task.eval, self.config.eval_examples)
        self.test = data.DeviceDataset.from_mapping(test, self.mesh, name="eval")
        idx, mask = data.eval_indices(len(self.test), self.config.batch_size)
        full = mask.all(axis=1)
        self.eval_idx = data.put(idx[full], data.batch_sharding(self.mesh, leading=1))
        self.eval_last = None
        if not full.all():
            last = data.batch_sharding(self.mesh)
            self.eval_last = (data.put(idx[-1], last), data.put(mask[-1], last))

    def evaluate(self, state: TrainState) -> dict[str, np.ndarray]:
        """Held-out loss and metrics of each member, (K,) arrays."""
        if self.task.eval is None:
            raise ConfigError(f"task {self.task.name!r} has eval=None: nothing to evaluate.")
        state = self.engine.averaged(state, self._statistics_batches())
        if not callable(self.task.eval):
            last, mask = self.eval_last or (None, None)
            return means(self.engine.evaluate(state, self.test, self.eval_idx, last, mask))
        batches = (self._device(b, "task.eval", eval=True)
                   for b in open_stream("eval", self.task.eval))
        try:
            return self.engine.evaluate_batches(state, batches)
        except ValueError as err:
            raise ConfigError(f"task.eval yielded no batch ({err}).") from err

    def _device(self, batch, what: str, *, eval: bool = False):
        """A host batch (or one already on the device) as global arrays sharded on the batch
        axis (an eval batch that does not divide over the devices: replicated); (batch,
        mask)."""
        if not isinstance(batch, dict):
            try:
                batch = dict(batch)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"{what} yielded {type(batch).__name__}: batches must be "
                                  "mappings of arrays.") from err
        mask = batch.pop(EXAMPLE_MASK, None) if eval else None
        n = data.check_same_length(what, batch)
        if not eval and n != self.config.batch_size:
            raise ConfigError(f"{what} yielded a batch of {n} examples: training batches must "
                              f"hold the global batch_size={self.config.batch_size}.")
        if all(isinstance(a, jax.Array) for a in batch.values()):
            return batch, mask
        sharding = (data.batch_sharding(self.mesh) if n % self.mesh.size == 0
                    else self.engine.replicated)
        out = {k: data.put(np.asarray(a), sharding) for k, a in batch.items()}
        return out, None if mask is None else data.put(np.asarray(mask, np.float32), sharding)


    def chunk_length(self, step: int, *intervals: int) -> int:
        """Steps from `step` to the next multiple of any of `intervals` (or the run's end)."""
        return min(*(every - step % every for every in intervals), self.total_steps - step)


class Session(_Prepared):
    """A run on data held whole on the device(s) (see the module docstring), built once."""

    def __init__(self, config: TrainConfig, task: Task | None = None):
        task = Task.from_config(config) if task is None else task
        self.mesh = data.make_mesh()
        data.check_batch_divisible(config.batch_size, self.mesh.size, config.accumulate_steps)
        train = subset(task.train, config.train_examples)
        self.num_train = data.check_same_length("train", train)
        if self.num_train < config.batch_size:
            raise ConfigError(f"batch_size={config.batch_size} is larger than the "
                              f"{self.num_train} training examples: it must be at most that.")
        self.train = data.DeviceDataset.from_mapping(train, self.mesh, name="train")
        self._build(config, task, self.num_train // config.batch_size)
        self._prepare_eval()
        self._epochs: dict[int, np.ndarray] = {}

    def _statistics_batches(self):
        """The first `bn_batches` full training batches in the data's order (schedule-free's
        batch-norm statistics, `Engine.averaged`)."""
        b = self.config.batch_size
        for i in range(min(self.config.bn_batches, self.num_train // b)):
            yield self.train.gather(data.put(np.arange(i * b, (i + 1) * b, dtype=np.int32),
                                             data.batch_sharding(self.mesh)))

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


class StreamedSession(_Prepared):
    """A run on batches streamed from the host (see the module docstring)."""

    def __init__(self, config: TrainConfig, task: Task | None = None):
        task = Task.from_config(config) if task is None else task
        self.mesh = data.make_mesh()
        data.check_batch_divisible(config.batch_size, self.mesh.size, config.accumulate_steps)
        self.epoch_length = task.steps_per_epoch or iterable_length(task.train)
        steps_per_epoch = self.epoch_length
        if steps_per_epoch is None:
            if config.steps is None:
                raise ConfigError(
                    f"task {task.name!r} streams its training batches from an iterator "
                    "without a length, so epochs cannot be counted: give the run's length "
                    "as steps (or the task's steps_per_epoch).")
            steps_per_epoch = config.steps
        self.seekable = seekable(task.train)
        self._build(config, task, steps_per_epoch)
        self._prepare_eval()
        self._stream, self._next_step = None, None

    def _statistics_batches(self):
        """The first `bn_batches` batches of the training stream (schedule-free's batch-norm
        statistics, `Engine.averaged`)."""
        stream = open_stream("train", self.task.train)
        for _, batch in zip(range(self.config.bn_batches), stream):
            yield self._device(batch, "task.train")[0]

    def _open(self, step: int):
        """The training stream from batch `step` on: sought where the task's data take a
        `start`, else a fresh pass that skips the batches of this epoch already trained."""
        if self.seekable:
            return open_stream("train", self.task.train, step)
        return open_stream("train", self.task.train,
                           step % self.epoch_length if self.epoch_length else step)

    def _train_batches(self, step: int, n: int):
        for t in range(step, step + n):
            batch = next(self._stream, None)
            if batch is None and self.epoch_length and not self.seekable:  # the next epoch
                self._stream = open_stream("train", self.task.train)
                batch = next(self._stream, None)
            if batch is None:
                raise ConfigError(
                    f"task.train ended after {t} batches; the run needs {self.total_steps} "
                    "(its steps). Give a longer iterator or fewer steps.")
            yield self._device(batch, "task.train")[0]

    def chunk(self, state: TrainState, step: int, n: int):
        """Runs steps [step, step + n) on the next n batches: (state, per-step metrics)."""
        if self._next_step != step:  # a fresh run, or a resumption: restart the stream there
            self._stream = self._open(step)
        self._next_step = step + n
        return self.engine.train_batches(state, self.hp, self._train_batches(step, n))

    def compiled_step(self):
        """One training step compiled for this session's batch, not run
        (`Engine.compile_step`)."""
        batch, _ = self._device(next(open_stream("train", self.task.train)), "task.train")
        abstract = {k: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding)
                    for k, a in batch.items()}
        return self.engine.compile_step(self.hp, abstract)


def open_session(config: TrainConfig, task: Task | None = None) -> Session | StreamedSession:
    """The session of `task` (default: the config's zoo network and dataset; a user's task
    comes with the config as `task.resolve` records it) run as `config` says: its data held
    whole on the device(s), or streamed. The entry point of every run: it
    sets the CPU plan's XLA flags (`_xla`) if JAX has not started yet."""
    _xla.apply_cpu_defaults(config.plan)
    task = Task.from_config(config) if task is None else task
    if task.held:
        return Session(config, task)
    return StreamedSession(config, task)
