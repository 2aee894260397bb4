"""Argument checks shared by the public constructors: errors (`ConfigError`) name the argument,
the value and what is allowed. Values that are JAX tracers (a schedule built inside `jax.vmap`
or `jax.jit`) cannot be inspected and pass through unchecked.

Hyper-parameters are numbers or numeric arrays: a string, a bool or a list is refused at
construction (it would otherwise fail, or silently convert, inside the first update). Step counts
must fit the int32 step counter of optax: at most `MAX_STEPS` = 2**31 - 1.
"""

from __future__ import annotations

import numbers
from typing import Any, Iterable

import jax
import numpy as np

from hparams_jax.errors import ConfigError


MAX_STEPS = 2**31 - 1  # optax counts steps in int32


def numeric(name: str, value: Any) -> np.ndarray | None:
    """`value` (a real number or an array of them) as a NumPy array, None when traced; a str,
    bool, list or non-numeric array is refused."""
    if isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, (np.ndarray, jax.Array, np.generic)):
        ok = np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)
    else:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    check(name, value, ok, "a real number or a numeric array (not a str, bool or list)")
    return np.asarray(value, dtype=np.float64)


def check(name: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is not allowed: {name} must be {allowed}.")


def positive_int(name: str, value: Any) -> int:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) > 0
    check(name, value, ok, "a positive integer")
    return int(value)


def step_count(name: str, value: Any) -> int:
    """A number of steps: a positive integer that int32 step arithmetic can hold."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    check(name, value, ok and 0 < value <= MAX_STEPS, f"a positive integer <= {MAX_STEPS} "
          "(2**31 - 1: optax counts steps in int32)")
    return int(value)


def positive_number(name: str, value: Any) -> float:
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and bool(np.isfinite(float(value))) and float(value) > 0)
    check(name, value, ok, "a positive finite number")
    return float(value)


def non_negative_number(name: str, value: Any) -> float:
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and bool(np.isfinite(float(value))) and float(value) >= 0)
    check(name, value, ok, "a finite number >= 0")
    return float(value)


def step_length(name: str, value: Any) -> float:
    """A length in steps (may be fractional, e.g. a step size): positive, at most MAX_STEPS."""
    value = positive_number(name, value)
    check(name, value, value <= MAX_STEPS, f"at most {MAX_STEPS} (2**31 - 1 steps)")
    return value


def non_negative(name: str, value: Any) -> None:
    """A rate (scalar or array of a sweep) that must be finite and >= 0."""
    arr = numeric(name, value)
    if arr is not None:
        check(name, value, bool(np.all(np.isfinite(arr)) and np.all(arr >= 0)),
              "a finite number >= 0 (or an array of them)")


def strictly_positive(name: str, value: Any) -> None:
    arr = numeric(name, value)
    if arr is not None:
        check(name, value, bool(np.all(np.isfinite(arr)) and np.all(arr > 0)),
              "a finite number > 0 (or an array of them)")


def momentum(name: str, value: Any) -> None:
    arr = numeric(name, value)
    if arr is not None:
        check(name, value, bool(np.all(arr >= 0) and np.all(arr < 1)),
              "in [0, 1) (or an array of such values)")


def ordered(low_name: str, low: Any, high_name: str, high: Any, why: str = "") -> None:
    """`low` <= `high` (elementwise for arrays); `why`, when given, ends the message."""
    lo, hi = numeric(low_name, low), numeric(high_name, high)
    if lo is not None and hi is not None and not np.all(lo <= hi):
        raise ConfigError(
            f"{low_name}={low!r} is above {high_name}={high!r}: {low_name} must be <= {high_name}"
            f"{f' ({why})' if why else ''}."
        )


def one_of(name: str, value: Any, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    check(name, value, value in allowed, "one of " + ", ".join(repr(a) for a in allowed))
    return value
