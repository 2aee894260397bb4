"""The model registry: ``create(name, num_classes=..., rngs=...)`` and ``available()``."""

from __future__ import annotations

from typing import Any, Callable

from flax import nnx

from hparams_jax.errors import ConfigError
from hparams_jax.models import layers
from hparams_jax.models.cifar3 import Cifar3
from hparams_jax.models.densenet import densenet40
from hparams_jax.models.inception_resnet_v2 import inception_resnet_v2
from hparams_jax.models.lenet import LeNet
from hparams_jax.models.resnet50 import resnet50
from hparams_jax.models.resnet_cifar import resnet20, resnet56, resnet110
from hparams_jax.models.wide_resnet import wide_resnet32_4

_REGISTRY: dict[str, Callable[..., nnx.Module]] = {
    "lenet": LeNet,
    "cifar3": Cifar3,
    "resnet20": resnet20,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "wide_resnet32_4": wide_resnet32_4,
    "densenet40": densenet40,
    "resnet50": resnet50,
    "inception_resnet_v2": inception_resnet_v2,
}


def available() -> list[str]:
    """The names `create` accepts, sorted.

    Returns:
      The registered network names.

    Examples:
      >>> from hparams_jax import models
      >>> models.available()[:4]
      ['cifar3', 'densenet40', 'inception_resnet_v2', 'lenet']
    """
    return sorted(_REGISTRY)


def create(name: str, *, num_classes: int, rngs: nnx.Rngs, **kwargs: Any) -> nnx.Module:
    """Build the network ``name`` with ``num_classes`` outputs.

    Args:
      name: one of `available()`.
      num_classes: number of logits (a positive int).
      rngs: ``nnx.Rngs``; networks with dropout (``densenet40``, ``inception_resnet_v2``) draw
        their masks from its ``dropout`` stream (e.g. ``nnx.Rngs(params=0, dropout=1)``),
        falling back to its default stream.
      **kwargs: network-specific options (``dtype``, ``layers``, ``bn_momentum``,
        ``bn_epsilon``, ``dropout_rate``, ``input_size``, ...; see each network's class).
        ``dtype`` is the computation dtype (parameters stay float32); ``layers`` the layer
        implementations, `layers.PLAIN` (default) or ``xla_cpu.LAYERS``.

    Returns:
      An ``nnx.Module`` mapping an NHWC float batch ``(N, H, W, C)`` to float32 logits
      ``(N, num_classes)``. Modules start in train mode; ``model.eval()`` switches batch norm to
      its running statistics and dropout off, ``model.train()`` back.

    Raises:
      ConfigError: ``name`` is not registered, ``num_classes`` is not a positive int or
        ``rngs`` is not an ``nnx.Rngs``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from hparams_jax import models
      >>> model = models.create("lenet", num_classes=10, rngs=nnx.Rngs(params=0, dropout=1))
      >>> model(jnp.zeros((2, 28, 28, 1))).shape
      (2, 10)
      >>> models.count_params(nnx.state(model, nnx.Param))
      431080

      ``nnx.eval_shape`` builds a network's structure without computing its initial values:

      >>> abstract = nnx.eval_shape(
      ...     lambda: models.create("resnet20", num_classes=10, rngs=nnx.Rngs(0)))
      >>> models.count_params(nnx.state(abstract, nnx.Param))
      280154
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ConfigError(f"unknown model name={name!r}: available models are "
                          f"{', '.join(available())}")
    layers.validate_num_classes(num_classes)
    if not isinstance(rngs, nnx.Rngs):
        raise ConfigError(f"rngs={rngs!r} is not allowed: rngs must be an nnx.Rngs, e.g. "
                          "nnx.Rngs(params=0, dropout=1)")
    return _REGISTRY[name](num_classes=num_classes, rngs=rngs, **kwargs)
