"""A prepared run: the data on the device(s), the compiled engine and the members'
hyper-parameters, with the two moves every loop makes (a chunk of steps, an evaluation).

`fit` and the LR range test both drive one; a reader follows a batch from `data.load` through
`chunk` (example indices, shuffled per epoch and member) into `Engine.train_chunk`.
"""

from __future__ import annotations

import numpy as np
import jax

from hparams_jax import data
from hparams_jax.train.config import TrainConfig
from hparams_jax.train.optimizer import member_hparams
from hparams_jax.train.steps import Engine, TrainState


def _subset(images, labels, n: int | None, seed: int = 0):
    """A fixed random subset of `n` examples (the same for every run)."""
    if n is None or n >= len(labels):
        return images, labels
    keep = np.sort(np.random.default_rng(seed).permutation(len(labels))[:n])
    return images[keep], labels[keep]


class Session:
    """Everything `config` needs on the device, built once."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.mesh = data.make_mesh()
        data.check_batch_divisible(config.batch_size, self.mesh.size)
        info = data.info(config.dataset)
        train_x, train_y = _subset(*data.load(config.dataset, "train"), config.train_examples)
        test_x, test_y = _subset(*data.load(config.dataset, "test"), config.eval_examples)
        self.num_train = len(train_y)
        self.steps_per_epoch = self.num_train // config.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"batch_size={config.batch_size} is larger than the "
                             f"{self.num_train} training examples: it must be at most that.")
        self.total_steps = config.steps or max(1, round(config.epochs * self.steps_per_epoch))
        self.engine = Engine(config, num_classes=info.num_classes, mean=info.mean, std=info.std,
                             augmentation=config.augmentation or info.augmentation,
                             total_steps=self.total_steps, mesh=self.mesh)
        replicated = self.engine.replicated
        hp = member_hparams(config)
        self.seeds = hp["seed"]
        self.hp = jax.tree.map(lambda a: data.put(a, replicated), hp)
        self.train = data.DeviceDataset.from_arrays(train_x, train_y, self.mesh)
        self.test = data.DeviceDataset.from_arrays(test_x, test_y, self.mesh)
        eval_sharding = data.batch_sharding(self.mesh, leading=1)
        self.eval_idx, self.eval_mask = (
            data.put(a, eval_sharding) for a in data.eval_indices(len(test_y), config.batch_size))
        self._epochs: dict[int, np.ndarray] = {}

    @property
    def num_members(self) -> int:
        return self.engine.num_members

    def init_state(self) -> TrainState:
        return self.engine.init(self.hp)

    def chunk_length(self, step: int, *intervals: int) -> int:
        """Steps from `step` to the next multiple of any of `intervals` (or the run's end)."""
        return min(*(every - step % every for every in intervals), self.total_steps - step)

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

    def evaluate(self, state: TrainState) -> dict[str, np.ndarray]:
        """Test loss and accuracy of each member, (K,) arrays."""
        return jax.device_get(self.engine.evaluate(state, self.test, self.eval_idx,
                                                   self.eval_mask))
