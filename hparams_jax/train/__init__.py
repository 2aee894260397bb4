"""The training engine: `TrainConfig` -> `fit` -> `History` (Smith 2018's experiments)."""

from hparams_jax.train.config import TrainConfig
from hparams_jax.train.loop import DivergenceError, fit
from hparams_jax.train.metrics import History

__all__ = ["DivergenceError", "History", "TrainConfig", "fit"]
