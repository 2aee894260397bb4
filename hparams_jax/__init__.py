"""hparams_jax: Smith's disciplined approach to neural-network hyper-parameters in JAX.

Smith, *A disciplined approach to neural network hyper-parameters: Part 1* (2018,
arXiv:1803.09820): cyclical learning rates, the LR range test, the 1cycle policy, cyclical
momentum and weight decay, as optax building blocks and a jit training loop. `hparams_jax.tune`
runs the paper's whole procedure (`hparams_jax.tuning`) and `hparams_jax.Task` holds a user's
own model, loss and data for every tool (`hparams_jax.train.task`); both are imported on first
use, so importing the package stays light.

`pip install hparams_jax` brings jax, optax, chex and numpy: `schedules`, `transforms`,
`diagnose` and reading range tests. The training engine, the model zoo, the datasets,
checkpoints and plots need ``pip install "hparams_jax[train]"``, TensorBoard output
``[tensorboard]``; `errors.MissingExtraError` names the extra a missing part needs.
"""

from typing import Any

from hparams_jax.errors import ConfigError

__version__ = "0.1.0"
__all__ = ["ConfigError", "Task", "TuneResult", "__version__", "tune"]


def __getattr__(name: str) -> Any:
    if name in ("tune", "TuneResult"):
        from hparams_jax import tuning

        return getattr(tuning, name)
    if name == "Task":
        from hparams_jax.train.task import Task

        return Task
    raise AttributeError(f"module 'hparams_jax' has no attribute {name!r}")
