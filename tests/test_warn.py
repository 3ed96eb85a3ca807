"""Warnings point at the user's line, not into the library or Keras.

A warning from the callback used to name a line of `callbacks/actor.py` or
of Keras's `fit` loop, where the user can do nothing about it.
"""

from __future__ import annotations

import os
import sys
import warnings

import keras
import numpy as np

import keras_initdiag
from keras_initdiag import _warn
from keras_initdiag.callbacks import InitDiagnosticsWarning
from keras_initdiag.lsuv import LSUVWarning

RNG = np.random.default_rng(0)
X = RNG.standard_normal((32, 6)).astype("float32")
Y = RNG.standard_normal((32, 2)).astype("float32")


def _relu_mlp(initializer: str) -> keras.Model:
    model = keras.Sequential(
        [keras.Input((6,))]
        + [
            keras.layers.Dense(16, activation="relu", kernel_initializer=initializer)
            for _ in range(2)
        ]
        + [keras.layers.Dense(2)]
    )
    model.compile("sgd", "mse")
    return model


def _lineno() -> int:
    """The line of the caller of this function."""
    return sys._getframe(1).f_lineno


def _fit_warnings(kernel_initializer):
    """Our warnings from one `fit`, and the line of that `model.fit` call."""
    model = _relu_mlp(kernel_initializer)
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(X, Y), verbose=0
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _lineno() + 1
        model.fit(X, Y, epochs=1, verbose=0, callbacks=[callback])
    ours = [w for w in caught if issubclass(w.category, InitDiagnosticsWarning)]
    return ours, line, caught


def test_a_flag_during_fit_points_at_the_fit_call():
    # Glorot kernels under ReLU: an advisory `init_mismatch` warning.
    ours, line, caught = _fit_warnings("glorot_uniform")
    assert ours, [str(w.message) for w in caught]
    assert [(w.filename, w.lineno) for w in ours] == [(__file__, line)] * len(ours)


def test_a_serious_flag_during_fit_points_at_the_fit_call():
    # All-zero kernels: symmetry and vanishing, warned once per kind and layer.
    ours, line, _ = _fit_warnings("zeros")
    assert len(ours) >= 2
    assert {(w.filename, w.lineno) for w in ours} == {(__file__, line)}


def test_a_direct_call_points_at_the_call():
    bias = keras.initializers.RandomNormal(0.0, 0.5)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(16, "tanh", bias_initializer=bias)]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _lineno() + 1
        keras_initdiag.lsuv(model, X, tol=1e-9, max_iter=1, verbose=0)
    ours = [w for w in caught if issubclass(w.category, LSUVWarning)]
    assert [(w.filename, w.lineno) for w in ours] == [(__file__, line)]


def test_keras_prefix_does_not_hide_a_sibling_directory():
    # `.../keras` must not match `.../keras_initdiag` or a user's `keras_app/`.
    prefixes = _warn.library_prefixes()
    package = os.path.dirname(os.path.abspath(keras_initdiag.__file__)) + os.sep
    assert package in prefixes
    assert os.path.dirname(os.path.abspath(keras.__file__)) + os.sep in prefixes
    assert all(prefix.endswith(os.sep) for prefix in prefixes)
    assert not __file__.startswith(prefixes)
