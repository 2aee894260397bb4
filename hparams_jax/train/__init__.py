"""The training engine: `Task` (what is trained) + `TrainConfig` (how) -> `fit` -> `History`
(Smith 2018's experiments), and the errors a run stops with.

`TrainConfig`, `History` and the workdir lock need only the core install; `fit`, `Task` and the
errors of a run (Flax, orbax, tqdm) are imported on first use and need the ``train`` extra
(`hparams_jax.errors.MissingExtraError` says so where it is missing)."""

from typing import Any

from hparams_jax.train.config import TrainConfig
from hparams_jax.train.interrupt import TrainingInterrupted
from hparams_jax.train.lock import WorkdirLocked, workdir_lock
from hparams_jax.train.metrics import History

__all__ = ["CheckpointMismatchError", "DivergenceError", "History", "TrainConfig",
           "Task", "TrainingInterrupted", "WorkdirLocked", "WorkdirWriteError", "fit",
           "workdir_lock"]

# The names of the engine's modules, imported when first asked for.
_ENGINE = {"fit": "loop", "DivergenceError": "loop", "WorkdirWriteError": "loop",
           "CheckpointMismatchError": "checkpoint", "Task": "task"}


def __getattr__(name: str) -> Any:
    if name in _ENGINE:
        import importlib

        from hparams_jax import _extras

        try:
            module = importlib.import_module(f"hparams_jax.train.{_ENGINE[name]}")
        except ModuleNotFoundError as err:
            _extras.reraise(err, f"hparams_jax.train.{name}")
        return getattr(module, name)
    raise AttributeError(f"module 'hparams_jax.train' has no attribute {name!r}")
