"""A momentum setting, held one way: a float for a constant momentum, a `(max, min)` tuple of
floats for cyclical momentum (Smith 2018, Sec. 4.3: momentum falls from max to min while the LR
rises, and climbs back while it falls). `TrainConfig.momentum`, a sweep member's momentum and
the candidates of a momentum family are all this.

- `parse` reads a value as a user gives it: a number, a list or tuple of two, or text, `0.9`
  or a cyclical pair written `0.95:0.85`, `0.95-0.85` or `0.95,0.85` (max first); it refuses a
  momentum outside [0, 1), a pair whose max is below its min, and anything else, with a
  `ConfigError` naming the argument, the value and what is allowed.
- `bounds` gives `(max, min)`, equal for a constant momentum.
- `format` writes one as the paper does, max-min: `0.9`, `0.95-0.85`.
"""

from __future__ import annotations

import numbers
import re
from typing import Any, Union

from hparams_jax import _validate as v

Momentum = Union[float, tuple[float, float]]

ALLOWED = "a number in [0, 1) or a cyclical (max, min) pair, written max:min, max-min or max,min"
# A pair's separator: a colon, a comma, or a minus sign after a digit, a point or a space (so
# that neither a leading sign nor an exponent, 1e-3, splits a number).
_SEPARATOR = re.compile(r"[:,]|(?<=[\d.\s])-")


def _number(name: str, value: Any) -> float:
    """One momentum value: a real number in [0, 1)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v.check(name, value, ok, "a float or a (max, min) pair")
    v.momentum(name, value)
    return float(value)


def _read(name: str, text: str) -> Any:
    """The number, or the pair of numbers, written as `text`."""
    items = _SEPARATOR.split(text.strip().strip("[]()"))
    try:
        numbers_ = [float(item) for item in items]
    except ValueError:
        numbers_ = []
    v.check(name, text, len(numbers_) in (1, 2), ALLOWED)
    return numbers_[0] if len(numbers_) == 1 else numbers_


def parse(value: Any, name: str = "momentum") -> Momentum:
    """`value` as a momentum setting: a float, or a cyclical `(max, min)` tuple of floats.

    Args:
      value: a real number; a list or tuple of two (max, then min); or text: a number, or a
        pair written `max:min`, `max-min` or `max,min` (brackets around it are allowed).
      name: the argument's name in an error message.

    Returns:
      The float, or the `(max, min)` tuple of floats.

    Raises:
      ConfigError: the value is not a number or a pair of two, a momentum lies outside
        [0, 1), or the pair's max is below its min.

    Examples:
      >>> from hparams_jax import momenta
      >>> momenta.parse("0.95-0.85"), momenta.parse("0.95:0.85"), momenta.parse([0.95, 0.85])
      ((0.95, 0.85), (0.95, 0.85), (0.95, 0.85))
      >>> momenta.parse("0.9"), momenta.parse(0)
      (0.9, 0.0)
      >>> momenta.parse("0.85:0.95")  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      hparams_jax.errors.ConfigError: momentum min=0.95 is above momentum max=0.85: ...
    """
    if isinstance(value, str):
        value = _read(name, value)
    if isinstance(value, (list, tuple)):
        v.check(name, value, len(value) == 2, "a float or a (max, min) pair")
        high, low = _number(name, value[0]), _number(name, value[1])
        v.ordered(f"{name} min", low, f"{name} max", high)
        return high, low
    return _number(name, value)


def bounds(momentum: Momentum) -> tuple[float, float]:
    """`(max, min)` of a momentum setting; equal for a constant one.

    Args:
      momentum: a float or a `(max, min)` pair (as `parse` returns it).

    Returns:
      The pair of floats.

    Examples:
      >>> from hparams_jax import momenta
      >>> momenta.bounds(0.9), momenta.bounds((0.95, 0.85))
      ((0.9, 0.9), (0.95, 0.85))
    """
    if isinstance(momentum, (tuple, list)):
        return float(momentum[0]), float(momentum[1])
    return float(momentum), float(momentum)


def is_cyclical(momentum: Momentum) -> bool:
    """Whether a momentum setting is a cyclical `(max, min)` pair.

    Args:
      momentum: a float or a `(max, min)` pair.

    Returns:
      True for a pair.

    Examples:
      >>> from hparams_jax import momenta
      >>> momenta.is_cyclical((0.95, 0.85)), momenta.is_cyclical(0.9)
      (True, False)
    """
    return isinstance(momentum, (tuple, list))


def format(momentum: Momentum) -> str:
    """A momentum setting as text, max-min for a cyclical one (the paper's "0.95-0.85");
    `parse` reads it back.

    Args:
      momentum: a float or a `(max, min)` pair.

    Returns:
      The text: each number with `:g`.

    Examples:
      >>> from hparams_jax import momenta
      >>> momenta.format((0.95, 0.85)), momenta.format(0.9)
      ('0.95-0.85', '0.9')
    """
    if is_cyclical(momentum):
        return "-".join(f"{x:g}" for x in bounds(momentum))
    return f"{float(momentum):g}"
