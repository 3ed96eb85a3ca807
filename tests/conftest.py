"""Shared test setup: quiet TensorFlow, fixed seeds, a fresh Keras session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Every test starts from the same seeds and an empty Keras session."""
    _clear_session()
    keras.utils.set_random_seed(1234)
    yield


def _clear_session():
    # free_memory=False skips a gc.collect() that costs ~0.3 s per test.
    try:
        keras.backend.clear_session(free_memory=False)
    except TypeError:  # Keras releases before the argument existed.
        keras.backend.clear_session()


# Session fixtures of the dashboard tests (a log dir and a live TensorBoard).
from dashboard_fixtures import dashboard_logs, dashboard_server  # noqa: E402, F401
