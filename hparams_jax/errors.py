"""`ConfigError`: a setting or argument that is not allowed; `UnreadableFileError`: a file given
to the project (a config file, a run's records, a tune's stage) that cannot be read;
`MissingExtraError`: a part of the package whose optional dependencies are not installed.

`ConfigError` is raised by every check of user input (`TrainConfig`, the schedules and
transforms, the models, the data and the experiment grid); its message names the argument, the
value and what is allowed. It is a `ValueError`, so ``except ValueError`` keeps catching it.
`MissingExtraError` is a `ModuleNotFoundError` (an `ImportError`) whose message names the
extra to install. The command line prints either as one line and exits with status 2, while
any other exception keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """A setting or argument that is not allowed; the message says which, and what is."""


class MissingExtraError(ModuleNotFoundError):
    """A part of hparams_jax whose packages the install lacks: the message names the extra that
    brings them (``pip install "hparams_jax[train]"``). `import hparams_jax` needs only jax,
    optax, chex and numpy; the training engine, the model zoo, the datasets, checkpoints and
    plots come with the ``train`` extra, TensorBoard output with ``tensorboard``."""


class UnreadableFileError(ConfigError):
    """A file that cannot be read as what it should be (a folder where a file belongs, a syntax
    error, junk, a JSON document of the wrong shape); the message names the file and the cause.

    Attributes:
      path: the file.
      cause: what is wrong with it, in a few words.

    Examples:
      >>> from hparams_jax.errors import UnreadableFileError
      >>> print(UnreadableFileError("runs/x/summary.json", "not JSON (line 1 column 1)"))
      runs/x/summary.json cannot be read: not JSON (line 1 column 1).
    """

    def __init__(self, path: str | Path, cause: str, what: str = ""):
        self.path, self.cause = Path(path), cause.rstrip(".")
        name = f"{what}{str(path)!r}" if what else str(path)
        super().__init__(f"{name} cannot be read: {self.cause}.")
