"""Which optional parts of the package need which installed packages (`pyproject.toml`'s extras).

`pip install hparams_jax` brings jax, optax, chex and numpy: enough for `schedules`,
`transforms`, `diagnose` and reading range tests (`RangeTestResult.load`, `suggest`,
`Family.pick`). The training engine, the model zoo, the datasets, checkpoints and plots need the
``train`` extra; TensorBoard output the ``tensorboard`` extra. Where such a part is imported,
`reraise` turns a missing package into `MissingExtraError` with the command that fixes it
instead of a bare ``No module named 'flax'``; `require` checks before a run starts.
"""

from __future__ import annotations

import importlib.util
from typing import NoReturn

from hparams_jax.errors import MissingExtraError

# The modules each extra brings, and the distribution that installs each (as pyproject.toml's
# optional-dependencies name it; a test keeps the two in step).
EXTRAS: dict[str, dict[str, str]] = {
    "train": {"flax": "flax", "orbax": "orbax-checkpoint",
              "tensorflow_datasets": "tensorflow-datasets", "matplotlib": "matplotlib",
              "tqdm": "tqdm", "PIL": "pillow"},
    "tensorboard": {"tensorboardX": "tensorboardX", "tensorboard": "tensorboard"},
    "imagenet": {"grain": "grain"},
}


def missing(*modules: str) -> list[str]:
    """The top-level `modules` that cannot be imported here (none are imported)."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require(feature: str, *modules: str, extra: str = "train") -> None:
    """Raises `MissingExtraError` naming `extra` if one of `modules` is not installed.

    Args:
      feature: what needs them, as the user called it (e.g. "hparams_jax.train.fit").
      modules: top-level module names, each one of `EXTRAS[extra]`'s.
      extra: the extra of `pyproject.toml` that installs them.

    Raises:
      MissingExtraError: a module is missing; the message names `feature`, the missing
        distributions and ``pip install "hparams_jax[extra]"``.
    """
    absent = missing(*modules)
    if absent:
        raise MissingExtraError(_message(feature, absent, extra), name=absent[0])


def reraise(err: ModuleNotFoundError, feature: str) -> NoReturn:
    """Raises `MissingExtraError` for `err` when the module it could not find is one an extra
    brings (`err` itself otherwise), from inside ``except ModuleNotFoundError as err:``.

    Args:
      err: the failed import's error.
      feature: the part of hparams_jax that was being imported (e.g. "hparams_jax.models").

    Raises:
      MissingExtraError: naming `feature`, the missing distribution and its extra.
      ModuleNotFoundError: `err`, when no extra brings the missing module.
    """
    root = (err.name or "").partition(".")[0]
    for extra, modules in EXTRAS.items():
        if root in modules:  # name every package of the extra that is missing, not the first
            absent = [root, *(m for m in missing(*modules) if m != root)]
            raise MissingExtraError(_message(feature, absent, extra), name=root) from err
    raise err


def _message(feature: str, absent: list[str], extra: str) -> str:
    names = ", ".join(EXTRAS[extra][m] for m in absent)
    return (f"{feature} needs {names}, which this install of hparams_jax lacks (the core "
            f"install brings jax, optax, chex and numpy only): pip install "
            f"\"hparams_jax[{extra}]\"")
