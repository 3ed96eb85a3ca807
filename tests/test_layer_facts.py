"""What a layer does, judged by its class and through its wrappers.

A node's kind decides where the signal's scale is reset: a normalization
layer sets its output scale by design, a layer with weights does not. It is
read with `isinstance` against the public Keras classes, never from a class
name, and a wrapper (`SpectralNormalization`, `TimeDistributed`,
`Bidirectional`) is judged by the layer it wraps.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_initdiag
from keras_initdiag.diagnostics import layer_facts
from keras_initdiag.diagnostics.graph import kind_of
from keras_initdiag.diagnostics.taps import activation_of, weight_spec

L = keras.layers


class SpectralLookalikeNormalization(L.Dense):
    """A layer with weights whose class name merely ends in "Normalization"."""


class MyLayerNorm(L.LayerNormalization):
    """A normalization layer whose class name does not say so."""


@pytest.mark.parametrize(
    "layer, kind",
    [
        (L.BatchNormalization(), "norm"),
        (L.LayerNormalization(), "norm"),
        (L.GroupNormalization(groups=2), "norm"),
        (L.UnitNormalization(), "norm"),
        (MyLayerNorm(), "norm"),
        (L.TimeDistributed(L.BatchNormalization()), "norm"),
        (L.SpectralNormalization(L.Dense(4)), "layer"),
        (SpectralLookalikeNormalization(4), "layer"),
        (L.TimeDistributed(L.Dense(4)), "layer"),
        (L.Bidirectional(L.LSTM(4)), "layer"),
        (L.Dense(4), "layer"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v,
)
def test_kind_comes_from_the_class_and_the_wrapped_layer(layer, kind):
    assert kind_of(layer) == kind


def test_a_wrapper_is_judged_by_its_inner_layer():
    inner = L.Dense(8, activation="relu", kernel_initializer="he_normal")
    wrapped = L.SpectralNormalization(inner)
    wrapped.build((None, 4))
    assert layer_facts.unwrapped(wrapped) is inner
    assert activation_of(wrapped) == "relu"
    spec = weight_spec(wrapped)
    assert spec.variable is inner.kernel
    assert spec.fans == (4, 8)
    assert type(spec.initializer).__name__ == "HeNormal"
    assert layer_facts.bias_and_scale(wrapped) == (inner.bias, None)
    # Spectral normalization divides the kernel by its largest singular
    # value: the mean-field map of a plain Dense does not describe it.
    assert layer_facts.propagation(wrapped, "layer") == ""
    timed = L.TimeDistributed(L.Dense(8))
    assert layer_facts.propagation(timed, "layer") == "linear"
    recurrent = L.Bidirectional(L.LSTM(3, activation="tanh"))
    assert layer_facts.unwrapped(recurrent) is recurrent.forward_layer
    assert activation_of(recurrent) == "tanh"


@pytest.mark.parametrize(
    "layer",
    [
        L.Rescaling(1 / 255),
        L.Normalization(),
        L.Resizing(8, 8),
        L.CenterCrop(8, 8),
        L.RandomFlip(),
        L.RandomContrast(0.1),
        keras_initdiag.Whitening(),
    ],
    ids=lambda v: type(v).__name__,
)
def test_preprocessing_layers_are_their_own_kind(layer):
    # Their output scale is set by design (as a normalization layer's is),
    # but they do not make a network "normalized" for the backward rules.
    assert kind_of(layer) == "preprocess"


def _time_model(wrap: bool):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 16))
    dense = L.Dense(32, activation="relu", kernel_initializer="he_normal")
    h = (L.TimeDistributed(dense) if wrap else dense)(inputs)
    model = keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling1D()(h)))
    model.compile("sgd", "mse")
    return model, model.layers[1].name


def test_the_theory_sees_through_time_distributed():
    # TimeDistributed(Dense) is the Dense applied at every step: the same
    # prediction and measurement as the Dense on the same 3-D input.
    x = np.random.default_rng(0).standard_normal((64, 5, 16)).astype("float32")
    y = np.zeros((64, 2), "float32")
    found = []
    for wrap in (True, False):
        model, name = _time_model(wrap)
        stats = keras_initdiag.diagnose(model, x, y).stats[name]
        found.append(
            (stats["predicted_activation_variance"], stats["activation_variance"])
        )
    (predicted, measured), (plain_predicted, plain_measured) = found
    assert predicted == pytest.approx(plain_predicted, rel=1e-6)
    assert measured == pytest.approx(plain_measured, rel=1e-5)
    assert predicted == pytest.approx(measured, rel=0.15)
