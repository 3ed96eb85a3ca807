"""Every kind of model a user brings: the diagnosis runs and touches nothing.

Subclassed, nested, shared-layer, multi-input/multi-output, recurrent,
embedding, BatchNormalization and Dropout models. Statistics are finite where
they apply, the probe runs in training mode (as `fit` does) or, when asked,
in inference mode, and every variable (weights, BatchNorm moving statistics,
random state, optimizer and metric variables) is bit-identical before and
after a diagnosis.
"""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np
import pytest

import keras_initdiag
from keras_initdiag.callbacks import InitDiagnosticsWarning

RNG = np.random.default_rng(0)
X = RNG.standard_normal((16, 6)).astype("float32")
Y = RNG.standard_normal((16, 2)).astype("float32")


def _all_variables(model: keras.Model) -> list:
    variables = list(model.variables)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        variables += list(optimizer.variables)
    for metric in model.metrics:
        variables += list(metric.variables)
    return variables


def _snapshot(model: keras.Model) -> list[np.ndarray]:
    return [np.array(v.numpy(), copy=True) for v in _all_variables(model)]


def _assert_untouched(model: keras.Model, before: list[np.ndarray]) -> None:
    """Every variable that existed is bit-identical.

    A compiled model that was never fit may gain the loss trackers `fit`
    would create (a multi-output model's per-output means): they start at
    zero, as `fit` starts them.
    """
    variables = _all_variables(model)
    after = _snapshot(model)
    for variable, old, new in zip(variables, before, after):
        np.testing.assert_array_equal(old, new, err_msg=variable.path)
    for variable, new in zip(variables[len(before) :], after[len(before) :]):
        assert "loss" in variable.path and not np.any(new), variable.path


def _finite(report, layer: str, names: tuple[str, ...]) -> None:
    for name in names:
        value = report.stats[layer][name]
        assert math.isfinite(value), (layer, name, value)


def _sequential_reference(model: keras.Sequential, x, y, name: str) -> dict:
    """One layer's statistics computed directly: its layers called one by one.

    The loss is the compiled `"mse"`; `tf.GradientTape` gives the gradient at
    the layer's output and at its weights.
    """
    import tensorflow as tf

    layer = model.get_layer(name)
    with tf.GradientTape(persistent=True) as tape:
        h = tf.convert_to_tensor(x)
        for current in model.layers:
            h = current(h, training=True)
            if current is layer:
                out = h
        loss = tf.reduce_mean(tf.square(h - y))
    out_grad = tape.gradient(loss, out)
    weight_grads = tape.gradient(loss, layer.trainable_variables)
    del tape
    dense = [tf.convert_to_tensor(g).numpy().astype(np.float64) for g in weight_grads]
    out = out.numpy().astype(np.float64)
    return {
        "activation_mean": out.mean(),
        "activation_variance": out.var(),
        "activation_gradient_rms": np.sqrt(np.mean(out_grad.numpy() ** 2)),
        "gradient_norm": np.sqrt(sum(np.sum(g * g) for g in dense)),
        "loss": float(loss),
    }


def _diagnose_untouched(model, x, y, **kwargs):
    """Diagnose twice; nothing changes, and fixed seeds make it repeatable."""
    before = _snapshot(model)
    first = keras_initdiag.diagnose(model, x, y, **kwargs)
    second = keras_initdiag.diagnose(model, x, y, **kwargs)
    _assert_untouched(model, before)
    for layer in first.layers:
        np.testing.assert_array_equal(
            list(first.stats[layer].values()), list(second.stats[layer].values())
        )
    assert math.isfinite(first.loss)
    return first


# --- subclassed ---------------------------------------------------------------


class SubclassedNet(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(8, activation="relu", name="hidden")
        self.out = keras.layers.Dense(2, name="out")

    def call(self, x):
        return self.out(self.hidden(x))


def _subclassed() -> keras.Model:
    model = SubclassedNet()
    model(X)
    model.compile("sgd", "mse")
    return model


def test_subclassed_weight_and_gradient_stats_only():
    model = _subclassed()
    report = _diagnose_untouched(model, X, Y)
    assert report.layers == ["hidden", "out"]
    for layer in report.layers:
        _finite(report, layer, ("weight_variance", "gradient_norm"))
        assert math.isnan(report.stats[layer]["activation_variance"])
        assert math.isnan(report.stats[layer]["activation_gradient_rms"])


def test_subclassed_callback_warns_once(tmp_path):
    model = _subclassed()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=str(tmp_path), probe_data=(X, Y), verbose=0
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[callback])
    ours = [w for w in caught if issubclass(w.category, InitDiagnosticsWarning)]
    graph = [w for w in ours if "functional graph" in str(w.message)]
    assert len(graph) == 1, [str(w.message) for w in ours]
    assert "subclassed" in str(graph[0].message)
    assert not [w for w in ours if "failed" in str(w.message)]
    assert [r.step for r in callback.reports] == [0, 2, 3, 4]  # 3: first updates
    _finite(callback.reports[-1], "hidden", ("weight_variance", "gradient_norm"))


# --- nested, shared, multi-input / multi-output --------------------------------


def test_nested_model_as_layer():
    inner = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(8, activation="tanh", name="inner_a"),
            keras.layers.Dense(8, activation="tanh", name="inner_b"),
        ],
        name="block",
    )
    inputs = keras.Input((6,))
    h = keras.layers.Dense(8, activation="tanh", name="stem")(inputs)
    outputs = keras.layers.Dense(2, name="head")(inner(h))
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse")
    report = _diagnose_untouched(model, X, Y)
    # The nested model's layers are measured in the outer graph, by path.
    assert report.info[report.layers[0]].kind == "input"
    assert report.layers[1:] == ["stem", "block/inner_a", "block/inner_b", "head"]
    for layer in report.layers[1:]:
        _finite(report, layer, ("activation_variance", "activation_gradient_rms"))
        _finite(report, layer, ("weight_variance", "gradient_norm"))
    assert report.info["block/inner_a"].inputs == ("stem",)
    assert report.skipped == []


def test_shared_layer():
    import tensorflow as tf

    shared = keras.layers.Dense(6, activation="tanh", name="shared")
    inputs = keras.Input((6,))
    h = shared(shared(inputs))
    head = keras.layers.Dense(2, name="head")
    model = keras.Model(inputs, head(h))
    model.compile("sgd", "mse")
    report = _diagnose_untouched(model, X, Y)
    assert report.layers.count("shared") == 1
    # The kernel's gradient sums both uses: one variable per use, then add.
    kernel, bias = (tf.constant(v.numpy()) for v in (shared.kernel, shared.bias))
    first, second = tf.Variable(kernel), tf.Variable(kernel)
    with tf.GradientTape() as tape:
        h1 = tf.tanh(X @ first + bias)
        h2 = tf.tanh(h1 @ second + bias)
        loss = tf.reduce_mean(tf.square(head(h2) - Y))
    by_use = [g.numpy() for g in tape.gradient(loss, [first, second])]
    both = np.linalg.norm(by_use[0] + by_use[1])
    measured = report.stats["shared"]["kernel_gradient_norm"]
    assert measured == pytest.approx(both, rel=1e-5)
    for one_use in by_use:
        assert abs(np.linalg.norm(one_use) - both) > 0.05 * both
    assert report.loss == pytest.approx(float(loss), rel=1e-6)


@pytest.mark.parametrize("loss_form", ["list", "dict"])
def test_multi_input_multi_output(loss_form):
    a = keras.Input((6,), name="a")
    b = keras.Input((3,), name="b")
    h = keras.layers.Dense(8, activation="relu", name="trunk")(
        keras.layers.Concatenate(name="concat")([a, b])
    )
    out_1 = keras.layers.Dense(2, name="out_1")(h)
    out_2 = keras.layers.Dense(1, activation="sigmoid", name="out_2")(h)
    model = keras.Model([a, b], [out_1, out_2])
    losses = ["mse", "binary_crossentropy"]
    if loss_form == "dict":
        losses = dict(zip(["out_1", "out_2"], losses))
    model.compile("adam", losses, metrics=[["mae"], ["accuracy"]])
    xb = RNG.standard_normal((16, 3)).astype("float32")
    y2 = (RNG.random((16, 1)) > 0.5).astype("float32")
    model.fit([X, xb], [Y, y2], batch_size=8, verbose=0)  # optimizer + metric state
    report = _diagnose_untouched(model, [X, xb], [Y, y2])
    for layer in ("trunk", "out_1", "out_2"):
        _finite(report, layer, ("activation_variance", "gradient_norm"))
    # A one-unit head has no duplicates (and must not crash the reduction).
    assert report.stats["out_2"]["duplicate_unit_fraction"] == 0.0
    expected = keras.losses.MeanSquaredError()(Y, model([X, xb])[0])
    expected += keras.losses.BinaryCrossentropy()(y2, model([X, xb])[1])
    assert report.loss == pytest.approx(float(expected), rel=1e-5)


# --- recurrent, embedding, normalization, dropout ------------------------------


_REFERENCE_STATS = (
    "activation_mean",
    "activation_variance",
    "activation_gradient_rms",
    "gradient_norm",
)


def _matches_reference(report, model, x, name) -> None:
    expected = _sequential_reference(model, x, Y, name)
    for stat in _REFERENCE_STATS:
        measured = report.stats[name][stat]
        assert measured == pytest.approx(expected[stat], rel=1e-4), (name, stat)
    assert report.loss == pytest.approx(expected["loss"], rel=1e-6)


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_recurrent(cell):
    layer = getattr(keras.layers, cell)
    model = keras.Sequential(
        [
            keras.Input((5, 4)),
            layer(8, return_sequences=True, name="rnn_1"),
            layer(8, name="rnn_2"),
            keras.layers.Dense(2, name="head"),
        ]
    )
    model.compile("sgd", "mse")
    x = RNG.standard_normal((16, 5, 4)).astype("float32")
    report = _diagnose_untouched(model, x, Y)
    for name in ("rnn_1", "rnn_2"):
        _matches_reference(report, model, x, name)
        # The main weight is the input kernel (cell.kernel).
        kernel = model.get_layer(name).cell.kernel.numpy()
        assert report.stats[name]["weight_variance"] == pytest.approx(
            np.var(kernel, dtype=np.float64), rel=1e-5
        )
        assert report.info[name].weight_shape == kernel.shape
        assert report.info[name].activation == "tanh"
        # tanh outputs of a fresh cell are small: none is near +-1.
        assert report.stats[name]["saturation_fraction"] == 0.0


def test_embedding():
    model = keras.Sequential(
        [
            keras.Input((5,), dtype="int32"),
            keras.layers.Embedding(20, 8, name="embed"),
            keras.layers.GlobalAveragePooling1D(name="pool"),
            keras.layers.Dense(2, name="head"),
        ]
    )
    model.compile("sgd", "mse")
    x = RNG.integers(0, 20, size=(16, 5)).astype("int32")
    assert len(np.unique(x)) < x.size  # Repeated ids: their gradients add up.
    report = _diagnose_untouched(model, x, Y)
    _matches_reference(report, model, x, "embed")
    table = model.get_layer("embed").embeddings.numpy()
    assert report.stats["embed"]["weight_variance"] == pytest.approx(
        np.var(table, dtype=np.float64), rel=1e-5
    )
    assert report.info["embed"].weight_shape == (20, 8)


def test_batchnorm_dropout_training_mode_and_untouched():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, name="dense_1"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Activation("relu", name="act"),
            keras.layers.Dropout(0.5, name="drop"),
            keras.layers.Dense(2, name="head"),
        ]
    )
    model.compile("adam", "mse", metrics=["mae"])
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0)
    bn = model.get_layer("bn")
    moving = bn.moving_mean.numpy().copy()
    report = _diagnose_untouched(model, X, Y)
    np.testing.assert_array_equal(moving, bn.moving_mean.numpy())
    # Training mode: BatchNorm normalizes with the batch's own statistics
    # (gamma 1, beta 0 right after a fit of one epoch are close to that) ...
    dense_out = keras.Model(model.inputs[0], model.get_layer("dense_1").output)(X)
    z = np.asarray(dense_out)
    expected = (z - z.mean(0)) / np.sqrt(z.var(0) + bn.epsilon)
    expected = expected * bn.gamma.numpy() + bn.beta.numpy()
    assert report.stats["bn"]["activation_variance"] == pytest.approx(
        float(np.var(expected)), rel=1e-4
    )

    # ... and dropout is on: kept units are scaled by 1 / (1 - rate), so the
    # second moment doubles (about: 256 Bernoulli draws).
    def second_moment(name):
        stats = report.stats[name]
        return stats["activation_variance"] + stats["activation_mean"] ** 2

    assert 1.6 < second_moment("drop") / second_moment("act") < 2.4
    for layer in ("dense_1", "bn", "head"):
        _finite(report, layer, ("activation_variance", "gradient_norm"))
    # Inference mode on request: moving statistics, dropout off.
    inference = _diagnose_untouched(model, X, Y, training=False)
    bn_out = keras.Model(model.inputs[0], bn.output)(X, training=False)
    assert inference.stats["bn"]["activation_variance"] == pytest.approx(
        float(np.var(bn_out)), rel=1e-5
    )
    assert inference.stats["drop"]["activation_variance"] == pytest.approx(
        inference.stats["act"]["activation_variance"], rel=1e-6
    )
