"""Argument checks shared by the whole package (pure Python).

Every message says what must hold and what was received, in Keras's style:
``Argument `gain` must be a positive finite number. Received: gain=-1``.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence

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


def verbose(value) -> int:
    """`value` as 0, 1 or 2 (Keras's verbosity levels)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"Argument `verbose` must be 0, 1 or 2. Received: verbose={value!r}"
        )
    if value not in (0, 1, 2):
        raise ValueError(
            f"Argument `verbose` must be 0, 1 or 2. Received: verbose={value!r}"
        )
    return int(value)


def names(name: str, value) -> list[str] | None:
    """`value` as a list of names, or None; TypeError for anything else."""
    if value is None:
        return None
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or not all(isinstance(item, str) for item in value)
    ):
        raise TypeError(
            f"Argument `{name}` must be a list of layer names or None. "
            f"Received: {name}={value!r}"
        )
    return list(value)


def path(name: str, value, optional: bool = False) -> str | None:
    """`value` as a non-empty path string (None passes when `optional`)."""
    if value is None and optional:
        return None
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        what = "a non-empty path or None" if optional else "a non-empty path"
        raise ValueError(
            f"Argument `{name}` must be {what}. Received: {name}={value!r}"
        )
    return os.fspath(value)


def frequency(name: str, value) -> str | int:
    """`"auto"`, `"epoch"` or a positive int: a callback's `update_freq`.

    As Keras's callbacks take `update_freq`, and `"auto"` as Keras takes
    `steps_per_execution`.
    """
    if isinstance(value, str) and value in ("auto", "epoch"):
        return value
    if (
        isinstance(value, numbers.Integral)
        and not isinstance(value, (bool, np.bool_))
        and value > 0
    ):
        return int(value)
    raise ValueError(
        f'Argument `{name}` must be "auto", "epoch" or a positive int (a number '
        f"of batches). Received: {name}={value!r}"
    )
