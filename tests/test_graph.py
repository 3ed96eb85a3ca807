"""The graph the diagnosis follows: every call, every merge, every input.

Taps come from the outer graph: a functional backbone used as a layer, every
call of a shared layer, every output of a multi-output layer and op-level
merges (`h + r`, `keras.ops.add`) are all measured, under distinct names.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

import keras_initdiag
from keras_initdiag import _fans
from keras_initdiag.diagnostics.graph import trace
from keras_initdiag.diagnostics.taps import build_taps

RNG = np.random.default_rng(0)


def _finite(report, node, *names):
    for name in names:
        assert math.isfinite(report.stats[node][name]), (node, name)


def test_functional_backbone_used_as_a_layer_is_measured_inside():
    inner_in = keras.Input((8,), name="inner_in")
    h = keras.layers.Dense(8, activation="relu", name="b1")(inner_in)
    h = keras.layers.BatchNormalization(name="bn")(h)
    backbone = keras.Model(inner_in, keras.layers.Dense(8, name="b2")(h), name="bb")
    inputs = keras.Input((8,), name="x")
    # The transfer-learning idiom: the backbone called with training=False.
    features = backbone(inputs, training=False)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(features))
    x = RNG.standard_normal((32, 8)).astype("float32")
    y = RNG.standard_normal((32, 2)).astype("float32")
    report = keras_initdiag.diagnose(model, x, y, loss="mse")
    assert report.layers == ["x", "bb/b1", "bb/bn", "bb/b2", "head"]
    for node in report.layers[1:]:
        _finite(report, node, "activation_variance", "activation_gradient_rms")
    assert report.info["bb/b1"].inputs == ("x",)
    assert report.info["head"].inputs == ("bb/b2",)
    assert report.info["bb/bn"].kind == "norm"
    assert report.skipped == []


def test_keras_application_backbone_as_a_layer():
    backbone = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), include_top=False, pooling="avg"
    )
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(backbone(inputs)))
    x = RNG.standard_normal((8, 32, 32, 3)).astype("float32")
    report = keras_initdiag.diagnose(model, x)
    inside = [n for n in report.layers if n.startswith(backbone.name + "/")]
    assert len(inside) > 100 and report.skipped == []
    assert all(report.info[n].tapped_output for n in inside)


def test_every_call_of_a_shared_layer_is_a_node():
    shared = keras.layers.Dense(6, activation="tanh", name="shared")
    inputs = keras.Input((6,), name="x")
    h = shared(shared(shared(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(h))
    x = RNG.standard_normal((16, 6)).astype("float32")
    y = RNG.standard_normal((16, 2)).astype("float32")
    report = keras_initdiag.diagnose(model, x, y, loss="mse")
    assert report.layers == ["x", "shared", "shared@2", "shared@3", "head"]
    assert report.info["shared@3"].inputs == ("shared@2",)
    assert report.info["shared@2"].shared_with == "shared"
    # Weights are the layer's: reported once, at its first call.
    _finite(report, "shared", "weight_variance", "gradient_norm")
    assert math.isnan(report.stats["shared@2"]["weight_variance"])
    for node in ("shared", "shared@2", "shared@3"):
        _finite(report, node, "activation_variance", "activation_gradient_rms")
    # Each call sees a different input, so the outputs differ.
    variances = [report.stats[n]["activation_variance"] for n in report.layers[1:4]]
    assert len(set(variances)) == 3


def test_every_output_of_a_multi_output_layer_is_a_node():
    inputs = keras.Input((5, 3), name="x")
    sequence, hidden, cell = keras.layers.LSTM(
        4, return_sequences=True, return_state=True, name="lstm"
    )(inputs)
    merged = keras.layers.Concatenate(name="cat")(
        [keras.layers.Flatten()(sequence), hidden, cell]
    )
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(merged))
    x = RNG.standard_normal((16, 5, 3)).astype("float32")
    y = RNG.standard_normal((16, 1)).astype("float32")
    report = keras_initdiag.diagnose(model, x, y, loss="mse")
    for node in ("lstm", "lstm#1", "lstm#2"):
        _finite(report, node, "activation_variance", "activation_gradient_rms")
    assert report.info["cat"].merge == "concat"
    assert report.info["cat"].inputs == ("flatten", "lstm#1", "lstm#2")


def test_op_level_merges_are_nodes_and_recognized():
    inputs = keras.Input((8,), name="x")
    a = keras.layers.Dense(8, name="a")(inputs)
    b = keras.layers.Dense(8, name="b")(inputs)
    h = a + b
    h = keras.ops.add(h, inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(h))
    graph = trace(model)
    merges = [n for n in graph.nodes if n.kind == "merge"]
    assert [n.merge for n in merges] == ["sum", "sum"]
    x = RNG.standard_normal((16, 8)).astype("float32")
    report = keras_initdiag.diagnose(model, x)
    first, second = (n.name for n in merges)
    assert report.info[first].inputs == ("a", "b")
    assert report.info[second].inputs == (first, "x")
    # The merge's gain is against its dominant input, the stream.
    m2 = {
        n: report.stats[n]["activation_variance"]
        + report.stats[n]["activation_mean"] ** 2
        for n in report.layers
    }
    gain = report.stats[second]["activation_gain"]
    assert gain == pytest.approx(m2[second] / max(m2[first], m2["x"]), rel=1e-5)


def test_tapping_does_not_add_nodes_to_the_users_layers_again_and_again():
    model = keras.Sequential(
        [keras.Input((6,))] + [keras.layers.Dense(6, name=f"d{i}") for i in range(3)]
    )
    model.compile("sgd", "mse")
    x = RNG.standard_normal((16, 6)).astype("float32")
    y = RNG.standard_normal((16, 6)).astype("float32")
    keras_initdiag.diagnose(model, x, y)
    counts = [len(layer._inbound_nodes) for layer in model.layers]
    for loss in ("mse", "mae", keras.losses.Huber()):
        keras_initdiag.diagnose(model, x, y, loss=loss)
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x, y), verbose=0
    )
    for _ in range(2):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert [len(layer._inbound_nodes) for layer in model.layers] == counts


def test_model_inputs_are_nodes_that_get_gradients():
    inputs = keras.Input((6,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(inputs))
    x = RNG.standard_normal((16, 6)).astype("float32")
    y = RNG.standard_normal((16, 2)).astype("float32")
    report = keras_initdiag.diagnose(model, x, y, loss="mse")
    assert report.info["x"].kind == "input"
    assert report.stats["x"]["activation_variance"] == pytest.approx(
        float(np.var(x)), rel=1e-5
    )
    # d(mean squared error)/dx = 2/(N*2) * (pred - y) W^T, per element.
    kernel = model.get_layer("head").kernel.numpy()
    bias = model.get_layer("head").bias.numpy()
    grad = 2.0 / y.size * ((x @ kernel + bias) - y) @ kernel.T
    rms = float(np.sqrt(np.mean(grad**2)))
    assert report.stats["x"]["activation_gradient_rms"] == pytest.approx(rms, rel=1e-4)


def test_depthwise_kernels_are_recognized_by_class_with_their_family():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 4)),
            keras.layers.DepthwiseConv2D(
                3,
                depthwise_initializer=keras_initdiag.He(depthwise=True),
                activation="relu",
                name="dw",
            ),
        ]
    )
    tap = {t.name: t for t in build_taps(model).taps}["dw"]
    assert tap.info.depthwise and tap.info.initializer == "he"
    assert (tap.info.fan_in, tap.info.fan_out) == (9, 9)


@pytest.mark.parametrize(
    "layer, shape, fans",
    [
        (keras.layers.Dense(5), (None, 3), (3, 5)),
        (keras.layers.Conv2D(8, 3), (None, 6, 6, 2), (18, 72)),
        # A transposed kernel is (*k, out, in); stride 2 halves the taps.
        (keras.layers.Conv2DTranspose(8, 4, strides=2), (None, 6, 6, 2), (8, 128)),
        (keras.layers.Embedding(50, 7), (None, 3), (1, 7)),
        (
            keras.layers.EinsumDense("abc,cde->abde", output_shape=(None, 4, 16)),
            (None, 5, 32),
            (32, 64),
        ),
    ],
)
def test_forward_fans_of_each_layout(layer, shape, fans):
    layer.build(shape)
    model = keras.Sequential(
        [
            keras.Input(
                shape[1:],
                dtype="int32"
                if isinstance(layer, keras.layers.Embedding)
                else "float32",
            ),
            layer,
        ]
    )
    (tap,) = [t for t in build_taps(model).taps if t.layer is layer]
    assert (tap.info.fan_in, tap.info.fan_out) == fans


def test_multi_head_attention_fans_come_from_its_value_projection():
    inputs = keras.Input((4, 32), name="x")
    attention = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8, name="mha")
    model = keras.Model(inputs, attention(inputs, inputs))
    (tap,) = [t for t in build_taps(model).taps if t.name == "mha"]
    # Value kernel (32, 4, 8): sums over the 32 model dimensions.
    assert tap.info.weight_shape == (32, 4, 8)
    assert (tap.info.fan_in, tap.info.fan_out) == (32, 32)
    # Keras's shape-only fans, which an initializer sees, differ.
    assert _fans.compute_fans((32, 4, 8)) == (128, 256)
