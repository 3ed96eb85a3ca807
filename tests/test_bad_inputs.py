# ruff: noqa: E501 - the case tables read best one case per line.
"""Bad-input matrix across the public API.

Every case asserts the exception type (ValueError or TypeError), that the
message names the argument and the received value, and that no raw
TensorFlow error surfaces. Errors of the callback are raised before any
training step.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_initdiag
from keras_initdiag.callbacks import InitDiagnosticsWarning
from keras_initdiag.diagnostics.rules import Thresholds
from keras_initdiag.lsuv import lsuv

RNG = np.random.default_rng(0)
X = RNG.standard_normal((16, 6)).astype("float32")
Y = RNG.standard_normal((16, 2)).astype("float32")
NAN_X = X.copy()
NAN_X[3, 2] = np.nan


def _model(compiled: bool = True) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="relu", name="dense_a"),
            keras.layers.Dense(2, name="dense_out"),
        ]
    )
    if compiled:
        model.compile("sgd", "mse")
    return model


def _two_input_model() -> keras.Model:
    a, b = keras.Input((6,)), keras.Input((3,))
    out = keras.layers.Dense(2)(keras.layers.Concatenate()([a, b]))
    return keras.Model([a, b], out)


def _named_input_model() -> keras.Model:
    a = keras.Input((6,), name="a")
    return keras.Model({"a": a}, keras.layers.Dense(2)(a))


class _Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.out = keras.layers.Dense(2)

    def call(self, x):
        return self.out(self.hidden(x))


def _subclassed_model() -> keras.Model:
    model = _Subclassed()
    model(X)
    return model


def _unbuilt_model() -> keras.Model:
    return keras.Sequential([keras.layers.Dense(4)])


def _fit_with(**kwargs):
    """Fit one epoch with `InitDiagnostics(**kwargs)`; record the step reached."""
    model = _model()
    before = [w.numpy().copy() for w in model.weights]
    callback = keras_initdiag.InitDiagnostics(verbose=0, **kwargs)
    try:
        model.fit(X, Y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    finally:
        # The error must come before any training step: nothing changed.
        assert int(model.optimizer.iterations.numpy()) == 0
        for old, new in zip(before, model.weights):
            np.testing.assert_array_equal(old, new.numpy())


def _whitening_adapt(data, **kwargs):
    keras_initdiag.Whitening(mode="zca").adapt(data, **kwargs)


# (id, call, exception type, argument named in the message, received value).
CASES = [
    # --- initializers ------------------------------------------------------
    ("he-gain-negative", lambda: keras_initdiag.He(gain=-1), ValueError, "gain", "-1"),
    ("he-gain-nan", lambda: keras_initdiag.He(gain=float("nan")), ValueError, "gain", "nan"),
    ("he-gain-str", lambda: keras_initdiag.He(gain="big"), TypeError, "gain", "'big'"),
    ("he-distribution", lambda: keras_initdiag.He(distribution="cauchy"), ValueError, "distribution", "'cauchy'"),
    ("he-negative-slope", lambda: keras_initdiag.He(negative_slope=-0.2), ValueError, "negative_slope", "-0.2"),
    ("he-depthwise-str", lambda: keras_initdiag.He(depthwise="yes"), TypeError, "depthwise", "'yes'"),
    ("he-seed-str", lambda: keras_initdiag.He(seed="abc"), TypeError, "seed", "'abc'"),
    ("xavier-gain-zero", lambda: keras_initdiag.Xavier(gain=0), ValueError, "gain", "0"),
    ("lecun-distribution", lambda: keras_initdiag.LeCun(distribution=3), ValueError, "distribution", "3"),
    ("smallrandom-scale", lambda: keras_initdiag.SmallRandom(scale=-0.1), ValueError, "scale", "-0.1"),
    ("smallrandom-distribution", lambda: keras_initdiag.SmallRandom(distribution="orthogonal"), ValueError, "distribution", "'orthogonal'"),
    ("orthogonal-gain-inf", lambda: keras_initdiag.Orthogonal(gain=float("inf")), ValueError, "gain", "inf"),
    ("orthogonal-rank-1", lambda: keras_initdiag.Orthogonal(seed=0)((5,)), ValueError, "shape", "(5,)"),
    ("deltaorthogonal-gain", lambda: keras_initdiag.DeltaOrthogonal(gain=-2.0), ValueError, "gain", "-2.0"),
    ("for-activation-unknown", lambda: keras_initdiag.for_activation("no_such_act"), ValueError, "activation", "'no_such_act'"),
    ("gain-not-activation", lambda: keras_initdiag.gain(42), TypeError, "activation", "42"),
    # --- Whitening ---------------------------------------------------------
    ("whitening-mode", lambda: keras_initdiag.Whitening(mode="pcaa"), ValueError, "mode", "'pcaa'"),
    ("whitening-epsilon-zero", lambda: keras_initdiag.Whitening(epsilon=0), ValueError, "epsilon", "0"),
    ("whitening-epsilon-negative", lambda: keras_initdiag.Whitening(epsilon=-1e-3), ValueError, "epsilon", "-0.001"),
    ("whitening-epsilon-str", lambda: keras_initdiag.Whitening(epsilon="1e-6"), ValueError, "epsilon", "'1e-6'"),
    ("whitening-axis-str", lambda: keras_initdiag.Whitening(axis="1"), TypeError, "axis", "'1'"),
    ("whitening-mean-without-matrix", lambda: keras_initdiag.Whitening(mean=[0.0, 0.0]), ValueError, "matrix", "matrix=None"),
    ("whitening-adapt-empty", lambda: _whitening_adapt(np.zeros((0, 3))), ValueError, "data", "data"),
    ("whitening-adapt-nan", lambda: _whitening_adapt(NAN_X), ValueError, "nan", "NaN"),
    ("whitening-adapt-str", lambda: _whitening_adapt("abc"), TypeError, "data", "'abc'"),
    ("whitening-adapt-batch-size", lambda: _whitening_adapt(X, batch_size=0), ValueError, "batch_size", "0"),
    # --- diagnose ----------------------------------------------------------
    ("diagnose-not-model", lambda: keras_initdiag.diagnose("model", X), TypeError, "model", "'model'"),
    ("diagnose-unbuilt", lambda: keras_initdiag.diagnose(_unbuilt_model(), X), ValueError, "model", "sequential"),
    ("diagnose-empty-x", lambda: keras_initdiag.diagnose(_model(), X[:0]), ValueError, "`x`", "(0, 6)"),
    ("diagnose-nan-x", lambda: keras_initdiag.diagnose(_model(), NAN_X), ValueError, "`x`", "NaN"),
    ("diagnose-nan-y", lambda: keras_initdiag.diagnose(_model(), X, np.full_like(Y, np.inf)), ValueError, "`y`", "inf"),
    ("diagnose-wrong-shape-x", lambda: keras_initdiag.diagnose(_model(), X[:, :4]), ValueError, "`x`", "(16, 4)"),
    ("diagnose-wrong-rank-x", lambda: keras_initdiag.diagnose(_model(), X[:, :, None]), ValueError, "`x`", "(16, 6, 1)"),
    ("diagnose-string-x", lambda: keras_initdiag.diagnose(_model(), np.array([["a"] * 6])), TypeError, "`x`", "<U1"),
    ("diagnose-dataset-x", lambda: keras_initdiag.diagnose(_model(), tf.data.Dataset.from_tensor_slices(X)), TypeError, "`x`", "Dataset"),
    ("diagnose-batch-mismatch", lambda: keras_initdiag.diagnose(_model(), X, Y[:8]), ValueError, "`y`", "[8, 16]"),
    ("diagnose-too-few-inputs", lambda: keras_initdiag.diagnose(_two_input_model(), X), ValueError, "`x`", "1 array(s)"),
    ("diagnose-dict-wrong-key", lambda: keras_initdiag.diagnose(_named_input_model(), {"b": X}), ValueError, "`x`", "(16, 6)"),
    ("diagnose-y-wrong-shape", lambda: keras_initdiag.diagnose(_model(), X, Y[:, :1].repeat(5, 1)), ValueError, "`y`", "(16, 5)"),
    ("diagnose-float64-overflow", lambda: keras_initdiag.diagnose(_model(), X.astype("float64") * 1e300), ValueError, "`x`", "float32"),
    ("diagnose-subclassed-wrong-shape", lambda: keras_initdiag.diagnose(_subclassed_model(), X[:, :4]), ValueError, "`x`", "(16, 4)"),
    ("diagnose-unknown-layer", lambda: keras_initdiag.diagnose(_model(), X, layers=["nope"]), ValueError, "layers", "'nope'"),
    ("diagnose-layers-str", lambda: keras_initdiag.diagnose(_model(), X, layers="dense_a"), TypeError, "layers", "'dense_a'"),
    ("diagnose-layers-empty", lambda: keras_initdiag.diagnose(_model(), X, layers=[]), ValueError, "layers", "[]"),
    ("diagnose-thresholds-dict", lambda: keras_initdiag.diagnose(_model(), X, thresholds={"dead": 0.5}), TypeError, "thresholds", "{'dead': 0.5}"),
    ("diagnose-unknown-loss", lambda: keras_initdiag.diagnose(_model(False), X, Y, loss="no_such_loss"), ValueError, "loss", "'no_such_loss'"),
    # --- Thresholds --------------------------------------------------------
    ("thresholds-negative", lambda: Thresholds(vanishing=-1e-3), ValueError, "vanishing", "-0.001"),
    ("thresholds-zero", lambda: Thresholds(exploding=0), ValueError, "exploding", "0"),
    ("thresholds-inf", lambda: Thresholds(exploding_absolute=float("inf")), ValueError, "exploding_absolute", "inf"),
    ("thresholds-bool", lambda: Thresholds(dead=True), TypeError, "dead", "True"),
    ("thresholds-str", lambda: Thresholds(symmetry="0.1"), TypeError, "symmetry", "'0.1'"),
    ("thresholds-fraction-above-1", lambda: Thresholds(saturation=1.5), ValueError, "saturation", "1.5"),
    ("thresholds-inconsistent", lambda: Thresholds(vanishing=10.0, exploding=5.0), ValueError, "vanishing", "10.0"),
    ("thresholds-exploding-below-1", lambda: Thresholds(exploding=0.5), ValueError, "exploding", "0.5"),
    ("thresholds-mismatch-tolerance", lambda: Thresholds(mismatch_tolerance=0.5), ValueError, "mismatch_tolerance", "0.5"),
    # --- InitDiagnostics: at construction ----------------------------------
    ("callback-update-freq-0", lambda: keras_initdiag.InitDiagnostics(update_freq=0), ValueError, "update_freq", "0"),
    ("callback-update-freq-batch", lambda: keras_initdiag.InitDiagnostics(update_freq="batch"), ValueError, "update_freq", "'batch'"),
    ("callback-update-freq-true", lambda: keras_initdiag.InitDiagnostics(update_freq=True), ValueError, "update_freq", "True"),
    ("callback-update-freq-float", lambda: keras_initdiag.InitDiagnostics(update_freq=2.5), ValueError, "update_freq", "2.5"),
    ("callback-on-flag", lambda: keras_initdiag.InitDiagnostics(on_flag="panic"), ValueError, "on_flag", "'panic'"),
    ("callback-thresholds", lambda: keras_initdiag.InitDiagnostics(thresholds=0.5), TypeError, "thresholds", "0.5"),
    ("callback-histograms", lambda: keras_initdiag.InitDiagnostics(histograms="yes"), TypeError, "histograms", "'yes'"),
    ("callback-depth-profile", lambda: keras_initdiag.InitDiagnostics(depth_profile=1), TypeError, "depth_profile", "1"),
    ("callback-verbose", lambda: keras_initdiag.InitDiagnostics(verbose=3), ValueError, "verbose", "3"),
    ("callback-budget-0", lambda: keras_initdiag.InitDiagnostics(budget=0), ValueError, "budget", "0"),
    ("callback-budget-float", lambda: keras_initdiag.InitDiagnostics(budget=480.0), TypeError, "budget", "480.0"),
    ("callback-risk-threshold-0", lambda: keras_initdiag.InitDiagnostics(risk_threshold=0), ValueError, "risk_threshold", "0"),
    ("callback-risk-threshold-above-1", lambda: keras_initdiag.InitDiagnostics(risk_threshold=1.5), ValueError, "risk_threshold", "1.5"),
    ("callback-risk-threshold-nan", lambda: keras_initdiag.InitDiagnostics(risk_threshold=float("nan")), ValueError, "risk_threshold", "nan"),
    ("callback-risk-threshold-str", lambda: keras_initdiag.InitDiagnostics(risk_threshold="0.5"), TypeError, "risk_threshold", "'0.5'"),
    ("callback-risk-threshold-bool", lambda: keras_initdiag.InitDiagnostics(risk_threshold=True), TypeError, "risk_threshold", "True"),
    ("callback-layers-str", lambda: keras_initdiag.InitDiagnostics(layers="dense_a"), TypeError, "layers", "'dense_a'"),
    ("callback-log-dir-empty", lambda: keras_initdiag.InitDiagnostics(log_dir=""), ValueError, "log_dir", "''"),
    ("callback-log-dir-int", lambda: keras_initdiag.InitDiagnostics(log_dir=3), ValueError, "log_dir", "3"),
    ("callback-probe-empty", lambda: keras_initdiag.InitDiagnostics(probe_data=X[:0]), ValueError, "probe_data", "(0, 6)"),
    ("callback-probe-nan", lambda: keras_initdiag.InitDiagnostics(probe_data=(NAN_X, Y)), ValueError, "probe_data", "NaN"),
    ("callback-probe-nan-y", lambda: keras_initdiag.InitDiagnostics(probe_data=(X, Y * np.nan)), ValueError, "probe_data", "NaN"),
    ("callback-probe-tuple-3", lambda: keras_initdiag.InitDiagnostics(probe_data=(X, Y, Y)), ValueError, "probe_data", "length 3"),
    ("callback-probe-dataset", lambda: keras_initdiag.InitDiagnostics(probe_data=tf.data.Dataset.from_tensor_slices(X)), TypeError, "probe_data", "Dataset"),
]  # fmt: skip


def _check(call, exc_type, name, received):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    error = info.value
    assert not isinstance(error, tf.errors.OpError), repr(error)
    assert type(error) is exc_type or isinstance(error, exc_type), repr(error)
    message = str(error)
    assert name.lower() in message.lower(), message
    assert received in message, message


@pytest.mark.parametrize(
    "call, exc_type, name, received",
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input(call, exc_type, name, received):
    _check(call, exc_type, name, received)


# --- InitDiagnostics: errors found at fit start, before any training step ---


FIT_CASES = [
    ("probe-wrong-shape", dict(probe_data=(X[:, :4], Y)), ValueError, "probe_data", "(16, 4)"),
    ("probe-wrong-y-batch", dict(probe_data=(X, Y[:4])), ValueError, "probe_data", "[4, 16]"),
    ("unknown-layer", dict(log_dir=None, probe_data=(X, Y), layers=["nope"]), ValueError, "layers", "'nope'"),
]  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, exc_type, name, received",
    [case[1:] for case in FIT_CASES],
    ids=[case[0] for case in FIT_CASES],
)
def test_bad_callback_input_at_fit_start(kwargs, exc_type, name, received, tmp_path):
    kwargs.setdefault("log_dir", str(tmp_path))
    _check(lambda: _fit_with(**kwargs), exc_type, name, received)


def test_probe_data_a_subclassed_model_rejects_fails_at_fit_start(tmp_path):
    model = _subclassed_model()
    model.compile("sgd", "mse")
    callback = keras_initdiag.InitDiagnostics(
        log_dir=str(tmp_path), probe_data=(X[:, :4], Y), verbose=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InitDiagnosticsWarning)  # "no graph"
        _check(
            lambda: model.fit(X, Y, epochs=1, verbose=0, callbacks=[callback]),
            ValueError,
            "probe_data",
            "(16, 4)",
        )
    assert int(model.optimizer.iterations.numpy()) == 0


def test_unwritable_log_dir_fails_at_train_begin(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    log_dir = str(blocker / "logs")
    _check(
        lambda: _fit_with(log_dir=log_dir, probe_data=(X, Y)),
        ValueError,
        "log_dir",
        repr(log_dir),
    )


# --- lsuv and the CLI ----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, exc_type, name, received",
    [
        (dict(tol=0.0), ValueError, "tol", "0.0"),
        (dict(tol=-0.1), ValueError, "tol", "-0.1"),
        (dict(max_iter=0), ValueError, "max_iter", "0"),
        (dict(x=X[:0]), ValueError, "x", "(0, 6)"),
        (dict(x=NAN_X), ValueError, "x", "NaN"),
        (dict(layers=["nope"]), ValueError, "layers", "'nope'"),
    ],
    ids=["tol-zero", "tol-negative", "max-iter-0", "empty-x", "nan-x", "layers"],
)
def test_lsuv_bad_input(kwargs, exc_type, name, received):
    model = _model()
    x = kwargs.pop("x", X)
    _check(lambda: lsuv(model, x, verbose=0, **kwargs), exc_type, name, received)


@pytest.mark.slow  # Each case starts Python and imports TensorFlow.
@pytest.mark.parametrize(
    "args, needles",
    [
        (["no-such-command"], ["no-such-command"]),
        (["report", "/no/such/dir/initdiag"], ["/no/such/dir/initdiag"]),
        (
            ["check", "/no/such/model.keras", "--data", "/no/x.npy"],
            ["/no/such/model.keras"],
        ),
    ],
    ids=[
        "unknown-command",
        "report-missing-dir",
        "check-missing-model",
    ],
)
def test_cli_bad_input(args, needles):
    result = subprocess.run(
        [sys.executable, "-m", "keras_initdiag", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode not in (0, 1), result  # 1 means "flags found".
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert "InvalidArgumentError" not in output, output
    for needle in needles:
        assert needle in output, output
