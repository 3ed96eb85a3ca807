"""Helpers shared by the tests: serialization round trips and event reading.

Only public APIs are used: `keras.saving` for round trips and TensorBoard's
own event reader for logs.
"""

from __future__ import annotations

import os

import keras


def config_round_trip(obj):
    """Serialize `obj` with `keras.saving` and deserialize it again."""
    config = keras.saving.serialize_keras_object(obj)
    return keras.saving.deserialize_keras_object(config)


def save_and_reload(model: keras.Model, directory: str) -> keras.Model:
    """Save `model` as a `.keras` file under `directory` and load it (safe mode)."""
    path = os.path.join(directory, "model.keras")
    model.save(path)
    return keras.saving.load_model(path, safe_mode=True)
