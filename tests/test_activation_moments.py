"""The theory's activation moments come from NumPy, never from TensorFlow.

They used to run eager TensorFlow ops for every node at every diagnosis
(thousands of `convert_to_tensor` calls per prediction): the moments are
now NumPy quadrature of NumPy twins of Keras's activations, and any other
callable is evaluated once and interpolated. The reference below is the
old computation: the Keras activation on the quadrature nodes, in float64.
"""

from __future__ import annotations

import functools
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_initdiag
from keras_initdiag.diagnostics import assemble, oneshot, theory
from keras_initdiag.diagnostics.activation_moments import (
    ActivationMoments,
    _activation_function,
)
from keras_initdiag.initializers import numpy_activations

BUILT_INS = [
    "relu",
    "leaky_relu",
    "elu",
    "selu",
    "gelu",
    "silu",
    "swish",
    "tanh",
    "sigmoid",
    "softplus",
    "softsign",
    "hard_sigmoid",
    "hard_silu",
    "relu6",
    "linear",
    "exponential",
    "mish",
    "celu",
    "hard_tanh",
    "log_sigmoid",
    "tanh_shrink",
    "squareplus",
    "soft_shrink",
    "hard_shrink",
    "sparse_plus",
    "sparse_sigmoid",
]
GAUSSIANS = [(0.0, 1.0), (0.5, 0.25), (-1.0, 4.0), (2.0, 0.01), (0.3, 9.0)]


def _keras_moments(function, mean, variance, points=2001):
    """The old way: the Keras function on Simpson nodes over +-10 sigma."""
    nodes = np.linspace(-10.0, 10.0, points)
    simpson = np.ones(points)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    weights = simpson * (nodes[1] - nodes[0]) / 3.0
    weights *= np.exp(-0.5 * nodes * nodes) / math.sqrt(2.0 * math.pi)
    x = keras.ops.convert_to_tensor(mean + math.sqrt(variance) * nodes, "float64")
    try:
        values = function(x)
    except Exception:  # noqa: BLE001 - float32-only activations.
        values = function(keras.ops.cast(x, "float32"))
    values = np.asarray(keras.ops.convert_to_numpy(values), np.float64)
    return [float(np.sum(weights * values**k)) for k in (1, 2, 4)]


@pytest.mark.parametrize("name", BUILT_INS)
def test_built_in_moments_equal_the_keras_quadrature(name):
    assert numpy_activations.numpy_function(name) is not None
    for mean, variance in GAUSSIANS:
        expected = _keras_moments(keras.activations.get(name), mean, variance)
        found = keras_initdiag.initializers.gaussian_moments(
            name, mean, variance, points=2001
        )
        np.testing.assert_allclose(found, expected, rtol=1e-6, atol=1e-12)


ACTIVATION_LAYERS = {
    "relu_layer": keras.layers.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5),
    "leaky_layer": keras.layers.LeakyReLU(negative_slope=0.3),
    "elu_layer": keras.layers.ELU(alpha=0.7),
    "gelu_layer": keras.layers.Activation("gelu"),
}
FUSED = {
    "tanh_gelu": functools.partial(keras.activations.gelu, approximate=True),
    "capped": functools.partial(keras.activations.relu, max_value=2.0),
    "custom": lambda x: x * keras.ops.sigmoid(2.0 * x),
}


def _model_of_every_kind():
    x = inputs = keras.Input((8,))
    for name, layer in ACTIVATION_LAYERS.items():
        x = keras.layers.Dense(8, name=f"{name}_dense")(x)
        x = type(layer).from_config({**layer.get_config(), "name": name})(x)
    for name, activation in FUSED.items():
        x = keras.layers.Dense(8, activation=activation, name=name)(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x))


def test_every_node_kind_matches_the_keras_quadrature():
    model = _model_of_every_kind()
    moments = ActivationMoments(oneshot.cached_diagnoser(model).tapset)
    functions = {**ACTIVATION_LAYERS, **FUSED}
    for name, function in functions.items():
        for mean, variance in GAUSSIANS:
            expected = _keras_moments(function, mean, variance)
            found = moments(name, mean, variance)
            # The custom callable is interpolated: a few 1e-9 off.
            np.testing.assert_allclose(found, expected, rtol=1e-6, atol=1e-9)
    assert moments("head", 0.0, 1.0) is None  # Linear: no activation.


def _deep_model(depth=20, width=64):
    layers = [keras.Input((32,))]
    activations = ["relu", "tanh", "gelu", "silu", "elu"]
    for i in range(depth):
        layers.append(
            keras.layers.Dense(
                width,
                activation=activations[i % len(activations)],
                kernel_initializer="he_normal",
            )
        )
    model = keras.Sequential([*layers, keras.layers.Dense(1)])
    model.compile("adam", "mse")
    return model


def test_a_prediction_runs_no_tensorflow_op(monkeypatch):
    model = _deep_model()
    x = np.random.default_rng(0).standard_normal((64, 32)).astype("float32")
    report = keras_initdiag.diagnose(model, x, np.zeros((64, 1), "float32"))
    diagnoser = oneshot.cached_diagnoser(model)
    calls = []
    convert = tf.convert_to_tensor

    def counting(*args, **kwargs):
        calls.append(1)
        return convert(*args, **kwargs)

    monkeypatch.setattr(tf, "convert_to_tensor", counting)
    fresh = ActivationMoments(diagnoser.tapset)  # Nothing cached.
    monkeypatch.setattr(diagnoser, "_moments", fresh)
    predicted = diagnoser.predict(report)
    assert calls == []
    monkeypatch.setattr(tf, "convert_to_tensor", convert)
    # The prediction is the one the old, TensorFlow-based moments give.
    functions = {tap.name: _activation_function(tap) for tap in diagnoser.tapset.taps}

    def old_moments(name, mean, variance):
        function = functions.get(name)
        return None if function is None else _keras_moments(function, mean, variance)

    affine = {
        n: {k: diagnoser.last_values[n][k] for k in assemble.AFFINE}
        for n in report.layers
    }
    expected = theory.predict(report, affine, old_moments)
    assert [n for n, s in predicted.items() if s] == [
        n for n, s in expected.items() if s
    ]
    for name, state in predicted.items():
        if state is not None:
            assert state.variance == pytest.approx(expected[name].variance, rel=1e-6)
            assert state.spread == pytest.approx(expected[name].spread, rel=1e-6)
