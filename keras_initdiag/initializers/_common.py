"""Shared plumbing: registration, argument checks and seeding.

Every initializer class is registered with `_register`, under the package
name `keras_initdiag` and its class name (`"keras_initdiag>He"`), wherever
in the package it is defined.
"""

from __future__ import annotations

import numbers
import random as python_random

import keras

from keras_initdiag import _checks

_PACKAGE = "keras_initdiag"


def _register(cls):
    return keras.saving.register_keras_serializable(package=_PACKAGE)(cls)


# Argument checks: the package's shared validators, under the names used here.
_check_positive = _checks.positive
_check_non_negative = _checks.non_negative
_check_choice = _checks.choice
_check_bool = _checks.boolean


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
