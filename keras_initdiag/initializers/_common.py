"""Shared plumbing: registration, argument checks and seeding.

Every initializer class is registered with `_register`, under the package
name `keras_initdiag` and its class name (`"keras_initdiag>He"`), wherever
in the package it is defined.
"""

from __future__ import annotations

import math
import numbers
import random as python_random

import keras
import numpy as np

_PACKAGE = "keras_initdiag"


def _register(cls):
    return keras.saving.register_keras_serializable(package=_PACKAGE)(cls)


# --------------------------------------------------------------------------
# Argument checks (Keras-style messages: what must hold, what was received).
# --------------------------------------------------------------------------


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Argument `{name}` must be a positive finite float. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"Argument `{name}` must be a positive finite float. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def _check_non_negative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Argument `{name}` must be a non-negative finite float. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"Argument `{name}` must be a non-negative finite float. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def _check_choice(name: str, value, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ValueError(
            f"Argument `{name}` must be one of {list(allowed)}. "
            f"Received: {name}={value!r}"
        )
    return value.lower()


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"Argument `{name}` must be a bool. Received: {name}={value!r}")
    return bool(value)


def _resolve_seed(seed):
    """Returns the seed to draw with: an int, or the user's SeedGenerator.

    Like Keras, `None` draws an int at construction (from Python's `random`,
    which `keras.utils.set_random_seed` seeds), so an unseeded instance
    repeats its values while two unseeded instances differ.
    """
    if isinstance(seed, dict):
        seed = keras.saving.deserialize_keras_object(seed)
    if seed is None:
        return python_random.randint(1, int(1e9))
    if isinstance(seed, keras.random.SeedGenerator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            "Argument `seed` must be None, an int or a "
            "`keras.random.SeedGenerator`. "
            f"Received: seed={seed!r} of type {type(seed).__name__}"
        )
    return int(seed)


class _SeededInitializer(keras.initializers.Initializer):
    """Seed handling shared by every initializer here (mirrors Keras)."""

    def __init__(self, seed=None):
        self._seed = _resolve_seed(seed)
        self.seed = seed

    def get_config(self):
        """Returns the constructor arguments as a JSON-serializable dict."""
        return {"seed": keras.saving.serialize_keras_object(self.seed)}
