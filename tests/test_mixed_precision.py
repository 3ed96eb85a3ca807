"""Mixed precision: statistics in float32, gradients never loss-scaled.

Under the `mixed_float16` policy (with Keras's `LossScaleOptimizer`) the
diagnosis must match a float32 model holding the same weights, including
small gradients that would underflow float16 without the probe's own fixed
loss scale, and training with overflow-and-skip steps raises no false flags.
"""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np
import pytest

import keras_initdiag
from keras_initdiag.callbacks import InitDiagnosticsWarning
from keras_initdiag.diagnostics import engine
from keras_initdiag.diagnostics import probe as probe_lib

RNG = np.random.default_rng(0)
X = RNG.standard_normal((32, 6)).astype("float32")
Y = RNG.standard_normal((32, 2)).astype("float32")
GRADIENT_STATS = ("activation_gradient_rms", "gradient_norm")


@pytest.fixture
def mixed_policy():
    """Set `mixed_float16` for the test; always restore the previous policy."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy(previous)


def _build() -> keras.Model:
    return keras.Sequential(
        [keras.Input((6,))]
        + [
            keras.layers.Dense(16, activation="tanh", name=f"dense_{i}")
            for i in range(3)
        ]
        + [keras.layers.Dense(2, dtype="float32", name="head")]
    )


def _pair():
    """A mixed-precision model and a float32 twin with the same weights."""
    mixed = _build()
    assert mixed.get_layer("dense_0").compute_dtype == "float16"
    mixed.compile(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD()), "mse")
    keras.mixed_precision.set_global_policy("float32")
    twin = _build()
    twin.set_weights(mixed.get_weights())
    twin.compile("sgd", "mse")
    keras.mixed_precision.set_global_policy("mixed_float16")
    return mixed, twin


def _compare(mixed_report, twin_report, rel):
    for layer in twin_report.layers:
        for stat in ("activation_variance",) + GRADIENT_STATS:
            expected = twin_report.stats[layer][stat]
            if np.isnan(expected):  # e.g. the gradient norm of an input
                assert np.isnan(mixed_report.stats[layer][stat]), (layer, stat)
                continue
            assert mixed_report.stats[layer][stat] == pytest.approx(
                expected, rel=rel
            ), (layer, stat)


@pytest.mark.parametrize("loss_factor", [1.0, 1e-6], ids=["plain", "tiny-loss"])
def test_stats_match_float32_twin(mixed_policy, loss_factor):
    mixed, twin = _pair()

    def loss(y_true, y_pred):
        return loss_factor * keras.losses.mean_squared_error(y_true, y_pred)

    mixed_report = keras_initdiag.diagnose(mixed, X, Y, loss=loss)
    twin_report = keras_initdiag.diagnose(twin, X, Y, loss=loss)
    # With a 1e-6 loss the hidden layers' gradients (~1e-8) are below float16's
    # smallest normal: only the probe's loss scale keeps them within a few %.
    if loss_factor < 1:
        assert twin_report.stats["dense_0"]["activation_gradient_rms"] < 6e-8
    _compare(mixed_report, twin_report, rel=0.03)
    assert mixed_report.loss == pytest.approx(twin_report.loss, rel=1e-2)
    # Not multiplied by the optimizer's loss scale (2**15 to start with).
    assert float(np.asarray(mixed.optimizer.scale_loss(1.0))) > 1.0


def test_probe_scales_only_float16_models(mixed_policy):
    mixed, twin = _pair()
    assert engine.Diagnoser(mixed).probe.scale == probe_lib.FLOAT16_LOSS_SCALE
    assert engine.Diagnoser(twin).probe.scale == 1.0


@pytest.mark.slow
def test_fit_with_loss_scale_overflow_raises_no_false_flags(mixed_policy, tmp_path):
    mixed, _ = _pair()
    # A huge initial scale: the first steps overflow (gradients ~1 times 2**20
    # exceed float16's 65504) and are skipped while the dynamic scale halves.
    mixed.compile(
        keras.optimizers.LossScaleOptimizer(
            keras.optimizers.SGD(0.01), initial_scale=2.0**20
        ),
        "mse",
    )
    before = mixed.get_layer("head").kernel.numpy().copy()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=str(tmp_path), probe_data=(X, Y), update_freq=2, verbose=0
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mixed.fit(X, Y, batch_size=4, epochs=1, verbose=0, callbacks=[callback])
    scale = float(np.asarray(mixed.optimizer.scale_loss(1.0)))
    assert scale < 2.0**20  # Some steps did overflow and were skipped.
    assert not np.array_equal(before, mixed.get_layer("head").kernel.numpy())
    kinds = {flag.kind for flag in callback.flags}
    assert not kinds & {"nonfinite", "exploding"}, callback.flags
    failures = [
        w
        for w in caught
        if issubclass(w.category, InitDiagnosticsWarning) and "failed" in str(w)
    ]
    assert not failures
    # The step is `optimizer.iterations`, which counts applied updates: the
    # skipped overflow steps do not count (as in Keras's own TensorBoard).
    applied = int(np.asarray(mixed.optimizer.iterations))
    assert 0 < applied < 8
    scheduled = [
        r.step
        for r in callback.reports
        if all(math.isnan(v) for v in r.stat("update_ratio"))
    ]
    assert scheduled == list(range(0, applied + 1, 2))
    for report in callback.reports:
        for layer in report.layers:
            if report.info[layer].weight_shape:
                assert np.isfinite(report.stats[layer]["gradient_norm"])
