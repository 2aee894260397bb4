"""The model registry: ``create(name, num_classes=..., rngs=...)`` and ``available()``."""

from __future__ import annotations

import inspect
import json
import typing
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


# Keywords `create` fills itself, and those a training config sets through its own fields.
_CREATE_KEYWORDS = ("num_classes", "rngs")


def options(name: str) -> tuple[str, ...]:
    """The keywords network `name` takes besides ``num_classes`` and ``rngs``: those of its
    constructor (a factory that forwards ``**kwargs`` is read through the class it returns).

    Args:
      name: one of `available()`.

    Returns:
      The keyword names, in the constructor's order.

    Raises:
      ConfigError: ``name`` is not registered.

    Examples:
      >>> from hparams_jax import models
      >>> models.registry.options("lenet")
      ('input_size', 'dtype', 'layers')
      >>> models.registry.options("resnet20")[:3]
      ('blocks', 'widths', 'bn_momentum')
    """
    return tuple(k for k, p in _parameters(name).items() if k not in _CREATE_KEYWORDS
                 and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


def _parameters(name: str) -> dict[str, inspect.Parameter]:
    """The parameters of network `name`'s constructor, read through a factory's ``**kwargs``
    to the class it is annotated to return."""
    factory = _factory(name)
    params = _signature(factory)
    returns = typing.get_type_hints(factory).get("return")
    if _open(params) and isinstance(returns, type):
        params = _signature(returns)
    return params


def _signature(factory: Callable) -> dict[str, inspect.Parameter]:
    """The parameters of a function, or of a class's constructor (not its metaclass's)."""
    if isinstance(factory, type):
        return dict(list(inspect.signature(factory.__init__).parameters.items())[1:])
    return dict(inspect.signature(factory).parameters)


def _open(params: dict[str, inspect.Parameter]) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in params.values())


def check_options(name: str, given: Any, exclude: tuple[str, ...] = ()) -> None:
    """Refuses keywords network `name` does not take, before anything is built.

    Args:
      name: one of `available()`.
      given: the keywords meant for it (a mapping or their names).
      exclude: keywords set elsewhere (a training config's ``dtype`` and ``layers`` come from
        its precision and plan), refused here as well.

    Raises:
      ConfigError: naming the network, the keywords it does not take and those it takes.

    Examples:
      >>> from hparams_jax import models
      >>> models.registry.check_options("cifar3", {"in_channels": 1, "input_size": 28})
      >>> models.registry.check_options("lenet", {"in_channels": 1})  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      hparams_jax.errors.ConfigError: model='lenet' takes no keyword 'in_channels': ...
    """
    accepted = [k for k in options(name) if k not in exclude]
    unknown = [k for k in given if k not in accepted
               and (k in exclude or not _open(_parameters(name)))]
    if unknown:
        raise ConfigError(
            f"model={name!r} takes no keyword{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}: the keywords it takes are "
            f"{', '.join(accepted) or 'none'}.")


def check_model(name: str, model_options: Any) -> None:
    """A training config's network and its keywords (`model` and `model_options`), checked
    before anything is built or written: `dtype` and `layers` come from the config's
    `precision` and `plan`, so they are refused here.

    Args:
      name: the network's name.
      model_options: the keywords meant for it, a mapping.

    Raises:
      ConfigError: `name` is not one of `available()`, or naming `model_options` and the
        keywords the network does not take.

    Examples:
      >>> from hparams_jax import models
      >>> models.registry.check_model("cifar3", {"in_channels": 1})
      >>> models.registry.check_model("lenett", {})  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      hparams_jax.errors.ConfigError: model='lenett' is unknown; available: cifar3, ...
    """
    if name not in _REGISTRY:
        raise ConfigError(f"model={name!r} is unknown; available: {', '.join(available())}")
    try:
        check_options(name, model_options, exclude=("dtype", "layers"))
    except ConfigError as err:
        raise ConfigError(f"model_options={json.dumps(dict(model_options))} is not allowed: "
                          f"{err}") from None


def _factory(name: str) -> Callable[..., nnx.Module]:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ConfigError(f"unknown model name={name!r}: available models are "
                          f"{', '.join(available())}")
    return _REGISTRY[name]


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
      ConfigError: ``name`` is not registered, a keyword of ``kwargs`` is not one the network
        takes (`options`), ``num_classes`` is not a positive int or ``rngs`` is not an
        ``nnx.Rngs``.

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
    factory = _factory(name)
    check_options(name, kwargs)
    layers.validate_num_classes(num_classes)
    if not isinstance(rngs, nnx.Rngs):
        raise ConfigError(f"rngs={rngs!r} is not allowed: rngs must be an nnx.Rngs, e.g. "
                          "nnx.Rngs(params=0, dropout=1)")
    return factory(num_classes=num_classes, rngs=rngs, **kwargs)
