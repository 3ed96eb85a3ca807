"""What a probe is keyed on: only what changes the probe.

Recompiling with another learning rate (or a schedule) used to rebuild the
probe, with its eager calls and a new trace, because the key hashed the
optimizer's whole configuration.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_initdiag
from keras_initdiag.diagnostics import cache, oneshot, probe

RNG = np.random.default_rng(0)
X = RNG.standard_normal((32, 6)).astype("float32")
Y = RNG.standard_normal((32, 2)).astype("float32")


def _model():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(
                16, activation="relu", kernel_initializer="he_normal", name="h0"
            ),
            keras.layers.Dense(2, name="head"),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    return model


def _compiled_probe(model):
    """The cached probe of `model`, past its eager calls: traced once."""
    for _ in range(probe.EAGER_CALLS + 1):
        keras_initdiag.diagnose(model, X, Y)
    compiled = oneshot.cached_diagnoser(model).probe
    assert compiled.traces == 1
    return compiled


def test_a_new_learning_rate_or_schedule_keeps_the_probe():
    model = _model()
    first = _compiled_probe(model)
    model.compile(keras.optimizers.Adam(0.1), "mse")
    report = keras_initdiag.diagnose(model, X, Y)
    assert oneshot.cached_diagnoser(model).probe is first
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, 100, 0.5)
    model.compile(keras.optimizers.Adam(schedule), "mse")
    again = keras_initdiag.diagnose(model, X, Y)
    assert oneshot.cached_diagnoser(model).probe is first
    assert first.traces == 1
    mse = float(np.mean((Y - np.asarray(model(X))) ** 2))
    assert report.loss == pytest.approx(mse, rel=1e-5)
    assert again.loss == pytest.approx(mse, rel=1e-5)


def test_the_callback_keeps_its_probe_across_a_learning_rate_change():
    model = _model()
    callback = keras_initdiag.InitDiagnostics(probe_data=(X, Y), verbose=0)
    model.fit(X, Y, epochs=1, verbose=0, callbacks=[callback])
    kept = callback.diagnoser
    model.compile(keras.optimizers.Adam(0.5), "mse")
    model.fit(X, Y, epochs=1, verbose=0, callbacks=[callback])
    assert callback.diagnoser is kept


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.compile(keras.optimizers.Adam(1e-3), "mae"),
        lambda m: m.compile(keras.optimizers.Adam(1e-3), "mse", loss_weights=[2.0]),
        lambda m: m.compile(keras.optimizers.SGD(1e-3), "mse"),
    ],
    ids=["loss", "loss_weights", "optimizer_class"],
)
def test_what_changes_the_probe_rebuilds_it(change):
    model = _model()
    first = _compiled_probe(model)
    state = cache.model_state(model)
    change(model)
    assert cache.model_state(model) != state
    keras_initdiag.diagnose(model, X, Y)
    assert oneshot.cached_diagnoser(model).probe is not first


def test_loss_scaling_and_freezing_change_the_key():
    model = _model()
    state = cache.model_state(model)
    model.compile(keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam()), "mse")
    assert cache.model_state(model) != state
    model.compile(keras.optimizers.Adam(), "mse")
    assert cache.model_state(model) == state
    model.get_layer("h0").trainable = False
    assert cache.model_state(model) != state
