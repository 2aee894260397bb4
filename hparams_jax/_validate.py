"""Argument checks shared by the public constructors: errors (`ConfigError`) name the argument,
the value and what is allowed. Values that are JAX tracers (a schedule built inside `jax.vmap`
or `jax.jit`) cannot be inspected and pass through unchecked."""

from __future__ import annotations

import numbers
from typing import Any, Iterable

import jax
import numpy as np

from hparams_jax.errors import ConfigError


def concrete(value: Any) -> np.ndarray | None:
    """`value` as a NumPy array, or None when it is traced (unknowable at build time)."""
    if isinstance(value, jax.core.Tracer):
        return None
    return np.asarray(value, dtype=np.float64)


def check(name: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is not allowed: {name} must be {allowed}.")


def positive_int(name: str, value: Any) -> int:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) > 0
    check(name, value, ok, "a positive integer")
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


def non_negative(name: str, value: Any) -> None:
    """A rate (scalar or array of a sweep) that must be finite and >= 0."""
    arr = concrete(value)
    if arr is not None:
        check(name, value, bool(np.all(np.isfinite(arr)) and np.all(arr >= 0)),
              "a finite number >= 0 (or an array of them)")


def strictly_positive(name: str, value: Any) -> None:
    arr = concrete(value)
    if arr is not None:
        check(name, value, bool(np.all(np.isfinite(arr)) and np.all(arr > 0)),
              "a finite number > 0 (or an array of them)")


def momentum(name: str, value: Any) -> None:
    arr = concrete(value)
    if arr is not None:
        check(name, value, bool(np.all(arr >= 0) and np.all(arr < 1)),
              "in [0, 1) (or an array of such values)")


def ordered(low_name: str, low: Any, high_name: str, high: Any) -> None:
    lo, hi = concrete(low), concrete(high)
    if lo is not None and hi is not None and not np.all(lo <= hi):
        raise ConfigError(
            f"{low_name}={low!r} is above {high_name}={high!r}: {low_name} must be <= {high_name}."
        )


def one_of(name: str, value: Any, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    check(name, value, value in allowed, "one of " + ", ".join(repr(a) for a in allowed))
    return value
