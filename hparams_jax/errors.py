"""`ConfigError`: a setting or argument that is not allowed; `MissingExtraError`: a part of the
package whose optional dependencies are not installed.

`ConfigError` is raised by every check of user input (`TrainConfig`, the schedules and
transforms, the models, the data and the experiment grid); its message names the argument, the
value and what is allowed. It is a `ValueError`, so ``except ValueError`` keeps catching it.
`MissingExtraError` is a `ModuleNotFoundError` (an `ImportError`) whose message names the
extra to install. The command line prints either as one line and exits with status 2, while
any other exception keeps its traceback.
"""


class ConfigError(ValueError):
    """A setting or argument that is not allowed; the message says which, and what is."""


class MissingExtraError(ModuleNotFoundError):
    """A part of hparams_jax whose packages the install lacks: the message names the extra that
    brings them (``pip install "hparams_jax[train]"``). `import hparams_jax` needs only jax,
    optax, chex and numpy; the training engine, the model zoo, the datasets, checkpoints and
    plots come with the ``train`` extra, TensorBoard output with ``tensorboard``."""
