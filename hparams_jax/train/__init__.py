"""The training engine: `Task` (what is trained) + `TrainConfig` (how) -> `fit` -> `History`
(Smith 2018's experiments), and the errors a run stops with."""

from hparams_jax.train.checkpoint import CheckpointMismatchError
from hparams_jax.train.config import TrainConfig
from hparams_jax.train.interrupt import TrainingInterrupted
from hparams_jax.train.lock import WorkdirLocked, workdir_lock
from hparams_jax.train.loop import DivergenceError, WorkdirWriteError, fit
from hparams_jax.train.metrics import History
from hparams_jax.train.task import Task

__all__ = ["CheckpointMismatchError", "DivergenceError", "History", "TrainConfig",
           "Task", "TrainingInterrupted", "WorkdirLocked", "WorkdirWriteError", "fit",
           "workdir_lock"]
