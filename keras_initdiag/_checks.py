"""Argument checks shared by the whole package (pure Python).

Every message says what must hold and what was received, in Keras's style:
``Argument `gain` must be a positive finite number. Received: gain=-1``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def positive(name: str, value) -> float:
    """`value` as a float; TypeError unless a number, ValueError unless > 0."""
    return _number(name, value, "a positive finite number", lambda v: v > 0)


def non_negative(name: str, value) -> float:
    """`value` as a float; TypeError unless a number, ValueError unless >= 0."""
    return _number(name, value, "a non-negative finite number", lambda v: v >= 0)


def fraction(name: str, value) -> float:
    """`value` as a float in (0, 1]."""
    return _number(name, value, "a fraction in (0, 1]", lambda v: 0 < v <= 1)


def _number(name: str, value, what: str, holds) -> float:
    if not _is_number(value):
        raise TypeError(
            f"Argument `{name}` must be {what}. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    if not math.isfinite(value) or not holds(value):
        raise ValueError(
            f"Argument `{name}` must be {what}. Received: {name}={value!r}"
        )
    return float(value)


def choice(name: str, value, allowed: tuple[str, ...]) -> str:
    """`value` lower-cased; ValueError unless it is one of `allowed`."""
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ValueError(
            f"Argument `{name}` must be one of {list(allowed)}. "
            f"Received: {name}={value!r}"
        )
    return value.lower()


def boolean(name: str, value) -> bool:
    """`value` as a bool; TypeError unless it is one."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"Argument `{name}` must be a bool. Received: {name}={value!r}")
    return bool(value)


def integer(name: str, value, minimum: int | None = None) -> int:
    """`value` as an int; TypeError unless an int, ValueError below `minimum`."""
    bound = "" if minimum is None else f" >= {minimum}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"Argument `{name}` must be an int{bound}. Received: {name}={value!r}"
        )
    if minimum is not None and value < minimum:
        raise ValueError(
            f"Argument `{name}` must be an int{bound}. Received: {name}={value!r}"
        )
    return int(value)
