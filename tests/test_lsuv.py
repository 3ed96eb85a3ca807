"""LSUV: unit pre-activation variance per layer, orthonormal kernels, errors.

Pre-activations are recomputed here with NumPy from the weights, so the
tests check the property (variance 1 before the activation), not LSUV's own
measurement.
"""

import keras
import numpy as np
import pytest

import keras_initdiag
from keras_initdiag.lsuv import LSUVWarning


def _x(samples=256, features=16, seed=0):
    return (
        np.random.default_rng(seed).normal(size=(samples, features)).astype("float32")
    )


def _mlp(depth, width, activation, features=16, **kwargs):
    return keras.Sequential(
        [keras.Input((features,))]
        + [
            keras.layers.Dense(width, activation=activation, name=f"d{i}", **kwargs)
            for i in range(depth)
        ]
    )


def _preactivations(model, x, activation):
    """Per-layer pre-activation of a Dense MLP, computed with NumPy."""
    h, result = x.astype(np.float64), []
    for layer in model.layers:
        kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
        z = h @ kernel + bias
        result.append(z)
        h = activation(z)
    return result


def _kernels(model):
    return {layer.name: layer.kernel.numpy().copy() for layer in model.layers}


def test_relu_mlp_converges_in_one_iteration_per_layer():
    model = _mlp(8, 64, "relu")
    x = _x()
    result = keras_initdiag.lsuv(model, x, tol=1e-3, verbose=0)
    assert [r.name for r in result.layers] == [f"d{i}" for i in range(8)]
    assert all(r.iterations == 1 and r.converged for r in result.layers)
    for z, record in zip(
        _preactivations(model, x, lambda z: np.maximum(z, 0)), result.layers
    ):
        assert z.var() == pytest.approx(1.0, abs=1e-3)
        assert record.variance_after == pytest.approx(z.var(), rel=1e-4)


def test_tanh_targets_the_preactivation_and_leaves_biases():
    model = _mlp(
        6, 32, "tanh", bias_initializer=keras.initializers.RandomNormal(0, 0.3)
    )
    biases = {layer.name: layer.bias.numpy().copy() for layer in model.layers}
    x = _x()
    result = keras_initdiag.lsuv(model, x, tol=1e-3, max_iter=20, verbose=0)
    assert result.converged
    # Biases do not scale with the kernel, so more than one rescale is needed.
    assert max(r.iterations for r in result.layers) > 1
    for layer in model.layers:
        np.testing.assert_array_equal(layer.bias.numpy(), biases[layer.name])
    for z in _preactivations(model, x, np.tanh):
        assert z.var() == pytest.approx(1.0, abs=1e-3)
        assert np.tanh(z).var() < 0.8  # the tanh output is not what is set to 1


def test_conv_net_converges_with_orthonormal_kernels():
    inputs = keras.Input((10, 10, 3))
    h = keras.layers.Conv2D(16, 3, activation="relu", name="conv2d")(inputs)
    h = keras.layers.Reshape((64, 16))(h)
    h = keras.layers.Conv1D(8, 3, activation="relu", name="conv1d")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    outputs = keras.layers.Dense(4, name="head")(h)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(1).normal(size=(64, 10, 10, 3)).astype("float32")
    result = keras_initdiag.lsuv(model, x, tol=1e-3, verbose=0)
    assert [r.name for r in result.layers] == ["conv2d", "conv1d", "head"]
    assert result.converged and all(r.orthogonal for r in result.layers)
    assert result.skipped == [
        ("reshape", "no kernel (no weights)"),
        ("flatten", "no kernel (no weights)"),
    ]
    for name in ("conv2d", "conv1d", "head"):
        kernel = model.get_layer(name).kernel.numpy()
        flat = kernel.reshape(-1, kernel.shape[-1]) / result[name].scale
        assert flat.shape[0] >= flat.shape[1]  # fan_in >= out: orthonormal columns
        np.testing.assert_allclose(flat.T @ flat, np.eye(flat.shape[1]), atol=1e-5)
    features = keras.Model(inputs, [model.get_layer("conv1d").input])
    h = features(x).numpy()
    conv1d = model.get_layer("conv1d")
    conv1d.activation = keras.activations.linear
    assert np.var(conv1d(h).numpy()) == pytest.approx(1.0, abs=1e-3)


def test_wide_dense_gets_orthonormal_rows():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(32, name="wide")])
    result = keras_initdiag.lsuv(model, _x(features=4), verbose=0)
    flat = model.get_layer("wide").kernel.numpy() / result["wide"].scale
    np.testing.assert_allclose(flat @ flat.T, np.eye(4), atol=1e-5)


def test_depthwise_and_separable_are_rescaled():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 4)),
            keras.layers.DepthwiseConv2D(3, activation="relu", name="depthwise"),
            keras.layers.SeparableConv2D(8, 3, activation="relu", name="separable"),
        ]
    )
    x = np.random.default_rng(2).normal(size=(32, 8, 8, 4)).astype("float32")
    result = keras_initdiag.lsuv(model, x, tol=1e-3, verbose=0)
    assert result.converged
    assert [(r.name, r.orthogonal) for r in result.layers] == [
        ("depthwise", False),
        ("separable", True),
    ]
    pointwise = model.get_layer("separable").pointwise_kernel.numpy()
    flat = pointwise.reshape(-1, 8) / result["separable"].scale
    np.testing.assert_allclose(flat @ flat.T, np.eye(4), atol=1e-5)


def test_deep_glorot_relu_net_is_no_longer_vanishing():
    model = _mlp(50, 32, "relu", features=32)
    x = _x(features=32)
    # Tapping a few layers keeps the probe small; the signal still crosses all.
    tapped = ["d0", "d1", "d12", "d25", "d37", "d48"]
    before = keras_initdiag.diagnose(model, x, layers=tapped)
    assert "vanishing" in [flag.kind for flag in before.flags]
    result = keras_initdiag.lsuv(model, x, verbose=0)
    assert result.converged and len(result.layers) == 50
    after = keras_initdiag.diagnose(model, x, layers=tapped)
    assert "vanishing" not in [flag.kind for flag in after.flags]
    variances = [after.stats[name]["activation_variance"] for name in tapped]
    assert max(variances) / min(variances) < 10


def test_layers_restricts_and_leaves_the_others():
    model = _mlp(4, 16, "relu")
    kernels = _kernels(model)
    result = keras_initdiag.lsuv(model, _x(), layers=["d2"], verbose=0)
    assert [r.name for r in result.layers] == ["d2"]
    for name in ("d0", "d1", "d3"):
        np.testing.assert_array_equal(
            model.get_layer(name).kernel.numpy(), kernels[name]
        )
    assert not np.allclose(model.get_layer("d2").kernel.numpy(), kernels["d2"])


def test_without_orthogonal_only_the_scale_changes():
    model = _mlp(3, 16, "relu")
    kernels = _kernels(model)
    result = keras_initdiag.lsuv(model, _x(), orthogonal=False, verbose=0)
    for record in result.layers:
        assert not record.orthogonal
        np.testing.assert_allclose(
            model.get_layer(record.name).kernel.numpy(),
            kernels[record.name] * record.scale,
            rtol=1e-5,
        )


def test_seed_makes_the_orthonormal_kernels_reproducible():
    first, second = _mlp(2, 16, "relu"), _mlp(2, 16, "relu")
    keras_initdiag.lsuv(first, _x(), seed=7, verbose=0)
    keras_initdiag.lsuv(second, _x(), seed=7, verbose=0)
    for a, b in zip(first.layers, second.layers):
        np.testing.assert_allclose(a.kernel.numpy(), b.kernel.numpy(), rtol=1e-5)


def test_skipped_layers_are_listed_and_printed(capsys):
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(16, activation="relu", name="dense"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dropout(0.5, name="dropout"),
            keras.layers.Dense(4, name="out"),
        ]
    )
    gamma = model.get_layer("bn").gamma.numpy().copy()
    result = keras_initdiag.lsuv(model, _x())
    assert [r.name for r in result.layers] == ["dense", "out"]
    assert dict(result.skipped) == {
        "bn": "no kernel LSUV can rescale (its weights: ['beta', 'gamma', "
        "'moving_mean', 'moving_variance'])",
        "dropout": "no kernel (no weights)",
    }
    np.testing.assert_array_equal(model.get_layer("bn").gamma.numpy(), gamma)
    out = capsys.readouterr().out
    assert "var_before" in out and "dropout: no kernel" in out
    keras_initdiag.lsuv(model, _x(), tol=1e-4, verbose=2)
    out = capsys.readouterr().out
    assert "lsuv dense: iteration 1, variance 1" in out
    assert "lsuv out: iteration 1, variance 1" in out


def test_non_convergence_warns_and_is_recorded():
    model = _mlp(
        2, 16, "tanh", bias_initializer=keras.initializers.RandomNormal(0, 0.5)
    )
    with pytest.warns(LSUVWarning) as caught:
        result = keras_initdiag.lsuv(model, _x(), tol=1e-6, max_iter=1, verbose=0)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert "layer 'd0'" in messages[0] and "layer 'd1'" in messages[1]
    assert all(not r.converged and r.iterations == 1 for r in result.layers)
    assert not result.converged
    assert "NO" in result.table()


@pytest.mark.parametrize(
    "kernel, match",
    [
        ("zeros", "'dead'.*variance on `x` is 0.0.*constant"),
        (
            keras.initializers.Constant(1e30),
            "'dead'.*variance on `x` is inf.*not finite",
        ),
    ],
    ids=["zero", "overflow"],
)
def test_zero_or_inf_variance_names_the_layer_and_restores_the_weights(kernel, match):
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(16, activation="relu", name="fine"),
            keras.layers.Dense(16, kernel_initializer=kernel, name="dead"),
        ]
    )
    kernels = _kernels(model)
    with pytest.raises(ValueError, match=match):
        keras_initdiag.lsuv(model, _x(), orthogonal=False, verbose=0)
    for name, kernel in kernels.items():
        np.testing.assert_array_equal(model.get_layer(name).kernel.numpy(), kernel)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"x": np.zeros((0, 16), "float32")}, ValueError, "`x` must be a non-empty"),
        ({"x": np.full((4, 16), np.nan, "float32")}, ValueError, "`x` must be finite"),
        ({"x": np.zeros((4, 3), "float32")}, ValueError, "`x` does not fit"),
        ({"x": None}, ValueError, "x=None"),
        ({"tol": 0.0}, ValueError, "`tol`.*tol=0.0"),
        ({"tol": -1}, ValueError, "`tol`.*tol=-1"),
        ({"tol": float("nan")}, ValueError, "`tol`.*tol=nan"),
        ({"tol": "0.1"}, TypeError, "`tol`.*tol='0.1'"),
        ({"max_iter": 0}, ValueError, "`max_iter`.*max_iter=0"),
        ({"max_iter": 2.0}, TypeError, "`max_iter`.*max_iter=2.0"),
        ({"max_iter": True}, TypeError, "`max_iter`.*max_iter=True"),
        ({"verbose": 3}, ValueError, "`verbose`.*verbose=3"),
        ({"verbose": "loud"}, TypeError, "`verbose`.*verbose='loud'"),
        ({"orthogonal": "yes"}, TypeError, "`orthogonal`"),
        ({"seed": 1.5}, TypeError, "`seed`.*seed=1.5"),
        ({"layers": ["nope"]}, ValueError, "`layers`.*'nope'"),
        ({"model": "model"}, TypeError, "`model`"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    arguments = {"model": _mlp(1, 4, "relu"), "x": _x(8), **kwargs}
    with pytest.raises(error, match=match):
        keras_initdiag.lsuv(arguments.pop("model"), arguments.pop("x"), **arguments)


def test_no_eligible_layer():
    model = keras.Sequential(
        [keras.Input((16,)), keras.layers.Activation("relu", name="act")]
    )
    with pytest.raises(ValueError, match="no layer LSUV can initialize.*'act'"):
        keras_initdiag.lsuv(model, _x(), verbose=0)
    model = _mlp(1, 4, "relu")
    with pytest.raises(ValueError, match=r"layers=\[\]"):
        keras_initdiag.lsuv(model, _x(), layers=[], verbose=0)


@pytest.mark.parametrize(
    "layer, shape, orthogonal",
    [
        (keras.layers.Conv3D(4, 2, activation="relu"), (4, 4, 4, 2), True),
        (keras.layers.SeparableConv1D(4, 3, activation="relu"), (8, 3), True),
        (keras.layers.DepthwiseConv1D(3, activation="relu"), (8, 3), False),
        (keras.layers.Conv2DTranspose(4, 3, activation="relu"), (4, 4, 3), False),
        (
            keras.layers.EinsumDense("ab,bc->ac", output_shape=8, activation="relu"),
            (6,),
            False,
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, keras.Layer) else "",
)
def test_other_kernel_layers_reach_unit_preactivation(layer, shape, orthogonal):
    model = keras.Sequential([keras.Input(shape), layer])
    x = np.random.default_rng(3).normal(size=(16, *shape)).astype("float32")
    result = keras_initdiag.lsuv(model, x, tol=1e-3, verbose=0)
    assert result.converged and result.layers[0].orthogonal is orthogonal
    layer.activation = keras.activations.linear
    assert np.var(layer(x).numpy()) == pytest.approx(1.0, abs=1e-3)


def test_functional_model_with_two_inputs_and_a_nested_model():
    a, b = keras.Input((4,), name="a"), keras.Input((6,), name="b")
    h = keras.layers.Concatenate(name="concat")(
        [keras.layers.Dense(8, name="da")(a), keras.layers.Dense(8, name="db")(b)]
    )
    inner = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(8, name="inner_dense")], name="inner"
    )
    model = keras.Model([a, b], keras.layers.Dense(2, name="out")(inner(h)))
    inner_kernel = inner.layers[0].kernel.numpy().copy()
    xa, xb = _x(64, 4, seed=1), 5 * _x(64, 6, seed=2)
    result = keras_initdiag.lsuv(model, [xa, xb], tol=1e-3, verbose=0)
    # The nested model's layer is measured in the outer graph, so it is
    # rescaled like the others, under its nested name.
    assert [r.name for r in result.layers] == ["da", "db", "inner/inner_dense", "out"]
    assert result.converged
    assert result["db"].variance_before > 10 * result["da"].variance_before
    assert [name for name, _ in result.skipped] == ["concat"]
    assert not np.array_equal(inner.layers[0].kernel.numpy(), inner_kernel)


def test_lsuv_layers_get_no_initializer_advice_afterwards():
    model = keras.Sequential(
        [keras.Input((16,))]
        + [keras.layers.Dense(32, activation="relu") for _ in range(4)]
        + [keras.layers.Dense(3)]
    )
    x = np.random.default_rng(0).standard_normal((64, 16)).astype("float32")
    before = keras_initdiag.diagnose(model, x)
    assert any(f.kind == "init_mismatch" for f in before.flags)
    keras_initdiag.lsuv(model, x, verbose=0)
    after = keras_initdiag.diagnose(model, x)
    assert not any(f.kind == "init_mismatch" for f in after.flags)
    assert after.info[model.layers[0].name].initializer == "lsuv"
