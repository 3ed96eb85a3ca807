"""`diagnose()`: the default thresholds on the eight reference scenarios."""

import math

import keras
import numpy as np
import pytest
from helpers import compiled

import keras_initdiag

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def mlp(depth, width, activation, kernel="glorot_uniform", bias="zeros", d_in=32):
    layers = [keras.Input((d_in,))]
    for i in range(depth):
        layers.append(
            keras.layers.Dense(
                width,
                activation=activation,
                kernel_initializer=kernel() if callable(kernel) else kernel,
                bias_initializer=bias,
                name=f"dense_{i}",
            )
        )
    layers.append(keras.layers.Dense(4, name="head"))
    return keras.Sequential(layers)


def batch(d_in=32, n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d_in)).astype("float32"), rng.integers(0, 4, n)


def kinds(report, advisory=False):
    return {f.kind for f in report.flags if advisory or f.kind != "init_mismatch"}


@pytest.mark.slow
def test_1_glorot_relu_30_layers_vanishes():
    x, y = batch()
    report = keras_initdiag.diagnose(mlp(30, 256, "relu"), x, y, loss=LOSS)
    assert "vanishing" in kinds(report)
    assert "exploding" not in kinds(report)
    vanishing = next(f for f in report.flags if f.kind == "vanishing")
    # Glorot with ReLU halves the second moment per layer: 0.5 ** 29 ~ 2e-9.
    assert 1e-11 < vanishing.value < 1e-7
    assert "He" in vanishing.message
    assert "init_mismatch" in kinds(report, advisory=True)


@pytest.mark.slow
def test_2_he_relu_30_layers_is_healthy():
    x, y = batch()
    report = keras_initdiag.diagnose(mlp(30, 256, "relu", "he_normal"), x, y, loss=LOSS)
    assert kinds(report, advisory=True) == set()
    variances = report.stat("activation_variance")[:-1]
    assert max(variances) / min(variances) < 20


@pytest.mark.slow
def test_3_zero_kernels_are_symmetric():
    x, y = batch()
    report = keras_initdiag.diagnose(mlp(30, 256, "relu", "zeros"), x, y, loss=LOSS)
    symmetric = {f.layer for f in report.flags if f.kind == "symmetry"}
    assert {f"dense_{i}" for i in range(30)} <= symmetric
    assert report.stats["dense_5"]["duplicate_unit_fraction"] == 1.0


@pytest.mark.slow
def test_4_large_random_kernels_explode():
    x, y = batch()
    model = mlp(30, 256, "relu", lambda: keras.initializers.RandomNormal(stddev=1.0))
    report = keras_initdiag.diagnose(model, x, y, loss=LOSS)
    assert kinds(report) & {"exploding", "nonfinite"}
    assert "vanishing" not in kinds(report)


def test_5_tanh_glorot_has_only_advisory_flags():
    x, y = batch()
    report = keras_initdiag.diagnose(mlp(10, 128, "tanh"), x, y, loss=LOSS)
    assert kinds(report) == set()


def test_6_negative_biases_kill_relu_units():
    x, y = batch()
    model = mlp(4, 32, "relu", "he_normal", bias=keras.initializers.Constant(-50.0))
    report = keras_initdiag.diagnose(model, x, y, loss=LOSS)
    dead = [f.layer for f in report.flags if f.kind == "dead"]
    assert dead[0] == "dense_0"
    assert report.stats["dense_0"]["dead_fraction"] == 1.0


def test_7_large_sigmoid_weights_saturate():
    x, y = batch()
    model = mlp(4, 32, "sigmoid", lambda: keras.initializers.RandomNormal(stddev=5.0))
    report = keras_initdiag.diagnose(model, x, y, loss=LOSS)
    saturated = {f.layer for f in report.flags if f.kind == "saturation"}
    assert "dense_0" in saturated
    assert report.stats["dense_0"]["saturation_fraction"] > 0.5


def test_8_nan_in_a_kernel_is_named_first():
    x, y = batch()
    model = mlp(5, 16, "relu", "he_normal")
    kernel = model.get_layer("dense_2").kernel
    value = kernel.numpy()
    value[3, 4] = np.nan
    kernel.assign(value)
    report = keras_initdiag.diagnose(model, x, y, loss=LOSS)
    nonfinite = [f for f in report.flags if f.kind == "nonfinite"]
    assert [f.layer for f in nonfinite] == ["dense_2"]
    assert report.flags[0].kind == "nonfinite"


def test_statistics_match_numpy_on_a_small_net():
    x, y = batch(d_in=6, n=16)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(5, activation="tanh", name="a"),
            keras.layers.Dense(4, name="b"),
        ]
    )
    logits_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    report = keras_initdiag.diagnose(model, x, y, loss=logits_loss)
    w_a, b_a = model.get_layer("a").get_weights()
    w_b, b_b = model.get_layer("b").get_weights()
    h = np.tanh(x @ w_a + b_a)
    logits = h @ w_b + b_b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(16), y]))
    d_logits = (p - np.eye(4)[y]) / 16
    d_h = d_logits @ w_b.T
    d_wb = h.T @ d_logits
    a = report.stats["a"]
    assert report.loss == pytest.approx(loss, rel=1e-5)
    assert a["activation_variance"] == pytest.approx(h.var(), rel=1e-5)
    assert a["activation_mean"] == pytest.approx(h.mean(), rel=1e-5, abs=1e-7)
    assert a["activation_gradient_rms"] == pytest.approx(
        np.sqrt((d_h**2).mean()), rel=1e-4
    )
    assert a["weight_variance"] == pytest.approx(w_a.var(), rel=1e-5)
    grad_b = np.sqrt((d_wb**2).sum() + (d_logits.sum(0) ** 2).sum())
    assert report.stats["b"]["gradient_norm"] == pytest.approx(grad_b, rel=1e-4)
    weight_norm = np.sqrt((w_b**2).sum() + (b_b**2).sum())
    assert report.stats["b"]["gradient_to_weight_ratio"] == pytest.approx(
        grad_b / weight_norm, rel=1e-4
    )
    assert np.isnan(report.stats["b"]["saturation_fraction"])  # linear: n/a


def test_forward_only_without_targets_and_uncompiled():
    x, _ = batch()
    report = keras_initdiag.diagnose(mlp(3, 16, "relu", "he_normal"), x)
    assert np.isnan(report.loss)
    assert np.isnan(report.stats["dense_0"]["gradient_norm"])
    assert report.stats["dense_0"]["activation_variance"] > 0


def test_uses_the_compiled_loss_and_leaves_weights_and_metrics_alone():
    x, y = batch()
    model = mlp(3, 16, "relu", "he_normal")
    model.compile("adam", LOSS, metrics=["accuracy"])
    before = [v.numpy().copy() for v in model.variables]
    report = keras_initdiag.diagnose(model, x, y)
    assert np.isfinite(report.loss)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.variables))


def test_repeated_diagnoses_do_not_retrace():
    x, y = batch()
    model = mlp(3, 16, "relu", "he_normal")
    diagnoser = compiled(keras_initdiag.diagnostics.engine.Diagnoser(model, loss=LOSS))
    for _ in range(3):
        diagnoser.measure(x, y)
    assert diagnoser.probe.traces == 1


def test_identical_kernels_from_a_shared_unseeded_instance():
    x, y = batch()
    shared = keras.initializers.HeNormal()
    model = mlp(3, 32, "relu", lambda: shared, d_in=32)
    report = keras_initdiag.diagnose(model, x, y, loss=LOSS)
    shared_flags = [f for f in report.flags if f.kind == "identical_kernels"]
    assert [f.layer for f in shared_flags] == ["dense_1", "dense_2"]
    assert all("same kernel as layer 'dense_0'" in f.message for f in shared_flags)


def test_residual_branch_zero_init_is_not_flagged():
    x, y = batch()
    inp = keras.Input((32,))
    h = keras.layers.Dense(32, activation="relu", kernel_initializer="he_normal")(inp)
    for i in range(4):
        branch = keras.layers.Dense(
            32, activation="relu", kernel_initializer="he_normal"
        )(h)
        branch = keras.layers.Dense(32, kernel_initializer="zeros", name=f"zero_{i}")(
            branch
        )
        h = keras.layers.Add()([h, branch])
    model = keras.Model(inp, keras.layers.Dense(4)(h))
    report = keras_initdiag.diagnose(model, x, y, loss=LOSS)
    assert kinds(report) == set(), [str(f) for f in report.flags]


def test_layers_argument_restricts_taps():
    x, y = batch()
    report = keras_initdiag.diagnose(
        mlp(3, 16, "relu"), x, y, loss=LOSS, layers=["dense_1", "head"]
    )
    assert report.layers == ["dense_1", "head"]


def test_table_lists_layers_and_flags():
    x, y = batch()
    report = keras_initdiag.diagnose(mlp(3, 16, "relu", "zeros"), x, y, loss=LOSS)
    table = report.table()
    assert "dense_2" in table and "[symmetry]" in table and "act_var" in table


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"model": "not a model"}, TypeError, "model='not a model'"),
        ({"x": np.zeros((0, 32), "float32")}, ValueError, "shape (0, 32)"),
        ({"x": np.full((4, 32), np.nan, "float32")}, ValueError, "128 of its 128"),
        ({"x": np.zeros((4, 7), "float32")}, ValueError, "shape (4, 7)"),
        ({"x": np.array([["a"] * 32])}, TypeError, "dtype <U1"),
        ({"layers": ["nope"]}, ValueError, "['nope']"),
        ({"layers": "dense_0"}, TypeError, "layers='dense_0'"),
        ({"thresholds": {"dead": 0.5}}, TypeError, "thresholds={'dead': 0.5}"),
        ({"loss": "not_a_loss"}, ValueError, "loss='not_a_loss'"),
        ({"y": np.zeros(3)}, ValueError, "batch sizes [3, 8]"),
    ],
)
def test_bad_input_names_argument_and_value(kwargs, error, needle):
    x, y = batch(n=8)
    args = {"model": mlp(2, 8, "relu"), "x": x, "y": y, "loss": LOSS}
    args.update(kwargs)
    model = args.pop("model")
    with pytest.raises(error) as info:
        keras_initdiag.diagnose(model, **args)
    assert needle in str(info.value)


def test_unbuilt_model_is_a_clear_error():
    model = keras.Sequential([keras.layers.Dense(4)])
    with pytest.raises(ValueError, match="never built"):
        keras_initdiag.diagnose(model, np.zeros((2, 3), "float32"))


def test_loaded_sequential_model_gives_the_same_statistics(tmp_path):
    # A loaded Sequential model is built twice; its layers' first call is not
    # on the path to the output, so taps must follow the model's own chain.
    x, y = batch()
    model = mlp(3, 16, "relu", "he_normal")
    model.compile("sgd", LOSS)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    original = keras_initdiag.diagnose(model, x, y)
    reloaded = keras_initdiag.diagnose(loaded, x, y)
    for name, layer in zip(original.layers, reloaded.layers):
        np.testing.assert_allclose(
            list(original.stats[name].values()),
            list(reloaded.stats[layer].values()),
            rtol=1e-6,
        )
    assert np.isfinite(reloaded.stats[reloaded.layers[0]]["activation_gradient_rms"])


def test_light_diagnosis_skips_duplicate_searches_in_the_same_trace():
    x, y = batch()
    model = mlp(3, 16, "relu", "zeros")
    diagnoser = compiled(keras_initdiag.diagnostics.engine.Diagnoser(model, loss=LOSS))
    full = diagnoser.measure(x, y)
    light = diagnoser.measure(x, y, searches=False)
    assert full.stats["dense_1"]["duplicate_unit_fraction"] == 1.0
    assert np.isnan(light.stats["dense_1"]["duplicate_unit_fraction"])
    assert light.stats["dense_1"]["dead_fraction"] == 1.0
    assert "symmetry" not in {f.kind for f in light.flags}
    assert diagnoser.probe.traces == 1


def test_nonfinite_counts_are_exact_when_present():
    x, y = batch()
    model = mlp(2, 8, "relu", "he_normal")
    kernel = model.get_layer("dense_0").kernel
    value = kernel.numpy()
    value[0, :3] = [np.nan, np.inf, -np.inf]
    kernel.assign(value)
    report = keras_initdiag.diagnose(model, x, y, loss=LOSS)
    assert report.stats["dense_0"]["nonfinite_weights"] == 3.0
    assert report.stats["dense_1"]["nonfinite_weights"] == 0.0
    assert report.stats["dense_0"]["nonfinite_activations"] > 0


@pytest.mark.parametrize("kind", ["normalization", "whitening"])
def test_normalized_elongated_inputs_are_not_a_gradient_explosion(kind):
    # Raw features with scales 1e-2..1e2: rescaling them per direction changes
    # E[x^2]·E||dL/dx||^2 by orders of magnitude, but no weight sits before
    # that layer, so nothing is trained by it; the He stack after it is healthy.
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((512, 16)) @ rng.standard_normal((16, 16))
    x = (latent * np.logspace(-2, 2, 16)).astype("float32")
    y = rng.integers(0, 4, 512)
    if kind == "whitening":
        first = keras_initdiag.Whitening(mode="zca")
    else:
        first = keras.layers.Normalization()
    first.adapt(x)
    layers = [keras.Input((x.shape[1],)), first]
    for _ in range(12):
        layers.append(
            keras.layers.Dense(64, activation="relu", kernel_initializer="he_normal")
        )
    model = keras.Sequential(layers + [keras.layers.Dense(4)])
    report = keras_initdiag.diagnose(model, x[:128], y[:128], loss=LOSS)
    assert kinds(report) == set(), [str(f) for f in report.flags]
    # Without the rule, the input's step alone would read as an explosion.
    energy = keras_initdiag.diagnostics.signal.backward(report).scale
    assert (
        math.exp(energy["input"] - energy[first.name]) > 1e3
        or math.exp(energy[first.name] - energy["input"]) > 1e3
    )
