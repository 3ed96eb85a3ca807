import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import config_round_trip, save_and_reload

import keras_initdiag
from keras_initdiag.layers import Whitening, linalg
from keras_initdiag.layers.whitening import MODES

D = 16


def _correlated(n, seed, d=D, cond=1e4):
    """Gaussian rows with a random rotation, condition number `cond`, offsets."""
    basis, _ = np.linalg.qr(np.random.default_rng(99).normal(size=(d, d)))
    cov = (basis * np.logspace(0, -np.log10(cond), d)) @ basis.T
    rng = np.random.default_rng(seed)
    return rng.multivariate_normal(np.arange(d) * 3.0, cov, size=n).astype("float32")


@pytest.fixture(scope="module")
def x():
    return _correlated(4000, seed=0)


def _cov(y):
    return np.cov(np.asarray(y, np.float64).reshape(-1, np.shape(y)[-1]).T, ddof=0)


def _adapted(data, **kwargs):
    layer = Whitening(**kwargs)
    layer.adapt(data)
    return layer


# --- Whitening properties -------------------------------------------------


def test_output_covariance_is_identity_on_adapt_data(x):
    for mode in ["zca", "pca"]:
        layer = _adapted(x, mode=mode)
        assert layer.condition_number == pytest.approx(1e4, rel=0.2)
        # Of the float32 matrix: rounding (6e-8) times sqrt(1e4), a few times.
        assert layer.whitened_condition_number == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(_cov(layer(x)), np.eye(D), atol=2e-6)  # float32
        exact = _adapted(x, mode=mode, dtype="float64")
        assert exact.whitened_condition_number == pytest.approx(1.0, abs=1e-9)
        np.testing.assert_allclose(
            _cov(exact(x.astype("float64"))), np.eye(D), atol=1e-9
        )


def test_output_covariance_is_identity_on_fresh_data(x):
    for mode in ["zca", "pca"]:
        fresh = _correlated(4000, seed=1)
        cov = _cov(_adapted(x, mode=mode)(fresh))
        # Sampling error of a covariance entry is about 1/sqrt(4000) = 0.016 here.
        np.testing.assert_allclose(cov, np.eye(D), atol=0.08)
        np.testing.assert_allclose(np.diag(cov), np.ones(D), atol=0.08)


def test_zca_matrix_is_symmetric_positive_definite(x):
    matrix = _adapted(x).adapted_matrix.numpy()
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-6 * np.abs(matrix).max())
    assert np.linalg.eigvalsh(matrix).min() > 0


def test_pca_and_zca_differ_by_a_rotation(x):
    zca = _adapted(x, mode="zca", dtype="float64")
    pca = _adapted(x, mode="pca", dtype="float64")
    rotation = np.linalg.solve(pca.adapted_matrix.numpy(), zca.adapted_matrix.numpy())
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(D), atol=1e-8)
    x64 = x.astype("float64")
    np.testing.assert_allclose(pca(x64).numpy() @ rotation, zca(x64), atol=1e-8)
    # PCA components come largest variance first, with deterministic signs.
    again = _adapted(x[::-1], mode="pca", dtype="float64")
    np.testing.assert_allclose(again(x64), pca(x64), atol=1e-8)


def test_standardize_scales_features_but_keeps_correlation(x):
    layer = _adapted(x, mode="standardize")
    y = layer(x).numpy()
    np.testing.assert_allclose(y.mean(axis=0), np.zeros(D), atol=1e-5)
    np.testing.assert_allclose(y.std(axis=0), np.ones(D), atol=1e-5)
    matrix = layer.adapted_matrix.numpy()
    np.testing.assert_array_equal(matrix, np.diag(np.diag(matrix)))
    assert layer.whitened_condition_number > 10  # correlation remains


def test_epsilon_is_relative_to_the_data_scale(x):
    x64 = x.astype("float64")
    reference = _adapted(x64, dtype="float64")(x64).numpy()
    for unit in (1e-6, 1e6):
        scaled = _adapted(x64 * unit, dtype="float64")
        np.testing.assert_allclose(scaled(x64 * unit), reference, atol=1e-6)
        assert scaled.condition_number == pytest.approx(1e4, rel=0.2)


def test_constant_feature_stays_bounded(x):
    # Also with a floor below float64 rounding: zero variance is never amplified.
    for mode, epsilon in itertools.product(MODES, [1e-10, 1e-30]):
        data = x[:, :4].copy()
        data[:, 2] = 7.0
        layer = _adapted(data, mode=mode, epsilon=epsilon)
        probe = data[:2].copy()
        probe[:, 2] += 1.0  # a deviation never seen during adapt
        assert np.abs(layer(probe).numpy()).max() < 50
        # keras.layers.Normalization would give about 1e7 here.
        others = _adapted(data[:, [0, 1, 3]], mode=mode)  # the constant is left out
        assert layer.condition_number == pytest.approx(others.condition_number)
        assert layer.whitened_condition_number == pytest.approx(
            others.whitened_condition_number, rel=1e-4
        )


def _scaled_correlated(n, seed):
    """8 features on scales 1e-2..1e2, correlated: covariance spread ~1e10."""
    rotation, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(8, 8)))
    latent = np.random.default_rng(seed).normal(size=(n, 8)) * np.logspace(0, -2, 8)
    return ((latent @ rotation.T) * np.logspace(-2, 2, 8)).astype("float32")


def test_default_epsilon_whitens_features_on_scales_1e_minus_2_to_1e2():
    x = _scaled_correlated(2000, seed=0)
    variances = np.linalg.eigvalsh(_cov(x))
    assert variances.max() / variances.min() > 1e10  # the old 1e-6 floored some
    assert variances.min() < 1e-6 * variances.mean()
    for mode in ["zca", "pca"]:
        layer = _adapted(x, mode=mode)
        # float64 eigenvalue error: 2e-16 of the largest, 1e-5 of the smallest.
        assert layer.condition_number == pytest.approx(
            variances.max() / variances.min(), rel=1e-4
        )
        # float32 rounding (6e-8) amplified by up to sqrt(4e10) = 2e5.
        assert layer.whitened_condition_number == pytest.approx(1.0, abs=1e-2)
        np.testing.assert_allclose(_cov(layer(x)), np.eye(8), atol=1e-2)
        # float64 eigenvectors: 2e-16 times the spread 4e10, about 1e-5.
        exact = _adapted(x.astype("float64"), mode=mode, dtype="float64")
        assert exact.whitened_condition_number == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(
            _cov(exact(x.astype("float64"))), np.eye(8), atol=1e-4
        )


def test_whitened_condition_number_counts_floored_directions():
    x = _scaled_correlated(2000, seed=0).astype("float64")
    variances = np.linalg.eigvalsh(_cov(x))
    # The old default, and a floor at 1% of the mean variance: real directions.
    for mode, epsilon in itertools.product(["zca", "pca"], [1e-6, 1e-2]):
        floored = variances[variances <= epsilon * variances.mean()]
        assert 0 < len(floored) < 8
        layer = _adapted(x, mode=mode, epsilon=epsilon, dtype="float64")
        output = np.linalg.eigvalsh(_cov(layer(x)))
        # Whitened directions have variance 1, floored ones variance / mean.
        expected = variances.mean() / floored.min()  # relative error 1e-5
        assert output.max() / output.min() == pytest.approx(expected, rel=1e-4)
        assert layer.whitened_condition_number == pytest.approx(expected, rel=1e-4)
        assert layer.whitened_condition_number > 1e3
        inverse = _adapted(x, mode=mode, epsilon=epsilon, invert=True)
        assert inverse.whitened_condition_number == pytest.approx(expected, rel=1e-3)


def test_condition_numbers_leave_out_only_zero_variance():
    assert linalg.condition_number(np.diag([100.0, 1.0, 0.0])) == 100.0
    assert linalg.condition_number(np.diag([1.0, 1e-14])) == pytest.approx(1e14)
    # A zero-variance direction is left out exactly, however much it is scaled.
    cov, matrix = np.diag([4.0, 1.0, 0.0]), np.diag([0.5, 1.0, 1e9])
    assert linalg.output_condition_number(cov, matrix) == pytest.approx(1.0)
    assert linalg.output_condition_number(cov, np.eye(3)) == pytest.approx(4.0)
    assert np.isnan(linalg.output_condition_number(np.zeros((2, 2)), np.eye(2)))


def test_all_constant_data_is_only_centered():
    layer = _adapted(np.full((10, 3), 5.0, "float32"))
    np.testing.assert_allclose(layer(np.full((1, 3), 6.0)), np.ones((1, 3)))
    assert np.isnan(layer.condition_number)


def test_invert_round_trip(x):
    for mode in ["standardize", "pca", "zca"]:
        forward = _adapted(x, mode=mode)
        backward = _adapted(x, mode=mode, invert=True)
        np.testing.assert_allclose(backward(forward(x)), x, atol=2e-3, rtol=1e-5)


# --- adapt: streaming and sources ---------------------------------------------


def test_streaming_adapt_matches_float64_numpy(x):
    data = x.astype("float64") + 1e3
    layer = Whitening()
    layer.adapt([data[i : i + 7] for i in range(0, len(data), 7)])
    assert layer.adapted_count.numpy() == len(data)
    np.testing.assert_allclose(layer.adapted_mean.numpy(), data.mean(0), rtol=1e-12)
    cov = layer.adapted_comoment.numpy() / len(data)
    np.testing.assert_allclose(cov, np.cov(data.T, ddof=0), rtol=1e-10, atol=1e-16)


def test_reset_false_continues_and_reset_true_restarts(x):
    whole = _adapted(x)
    halves = _adapted(x[:1500])
    halves.adapt(x[1500:], reset=False)
    for a, b in zip(whole.get_weights(), halves.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    restarted = _adapted(x[:1500])
    restarted.adapt(x[1500:])
    np.testing.assert_allclose(
        restarted.adapted_mean.numpy(), _adapted(x[1500:]).adapted_mean.numpy()
    )


class _Batches(keras.utils.PyDataset):
    def __init__(self, data):
        super().__init__()
        self.data = data

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return self.data[i * 25 : (i + 1) * 25], np.zeros(25)


def _sources(data):
    ds = tf.data.Dataset.from_tensor_slices
    return {
        "tensor": tf.constant(data),
        "array_batch_size": (data, {"batch_size": 30}),
        "batched_dataset": ds(data).batch(16),
        "unbatched_dataset": ds(data),
        "xy_dataset": ds((data, np.zeros(len(data)))).batch(32),
        "generator": (data[i : i + 10] for i in range(0, len(data), 10)),
        "py_dataset": _Batches(data),
        "nested_list": data.tolist(),
    }


def test_adapt_accepts_every_source(x):
    data = x[:100]
    for source, value in _sources(data).items():
        value, kwargs = value if isinstance(value, tuple) else (value, {})
        layer = Whitening()
        layer.adapt(value, **kwargs)
        mean, comoment = layer.adapted_mean.numpy(), layer.adapted_comoment.numpy()
        np.testing.assert_allclose(mean, data.mean(0), rtol=1e-6, err_msg=source)
        np.testing.assert_allclose(
            comoment / 100, _cov(data), rtol=1e-5, atol=1e-9, err_msg=source
        )


def test_adapt_steps_limits_the_batches(x):
    layer = Whitening()
    layer.adapt(tf.data.Dataset.from_tensor_slices(x).batch(100).repeat(), steps=3)
    assert layer.adapted_count.numpy() == 300


# --- Rank, dtype and models ---------------------------------------------------


@pytest.mark.parametrize("axis", [-1, 1])
def test_images_whiten_the_channel_axis(axis):
    rng = np.random.default_rng(3)
    mixing = np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.5, 2.0, 30.0]])
    images = (rng.normal(size=(40, 6, 6, 3)) @ mixing).astype("float32")
    if axis == 1:
        images = np.moveaxis(images, -1, 1)
    layer = _adapted(images, axis=axis)
    y = np.moveaxis(layer(images).numpy(), axis, -1)
    assert y.shape[-1] == 3
    np.testing.assert_allclose(_cov(y), np.eye(3), atol=1e-5)


def test_mixed_precision(x):
    reference = _adapted(x)(x[:50]).numpy()
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = _adapted(x)
        assert layer.adapted_matrix.dtype == "float32"
        inputs = keras.Input((D,))
        model = keras.Model(inputs, keras.layers.Dense(1)(layer(inputs)))
        y = layer(x[:50])
        assert y.dtype == "float16"
        np.testing.assert_allclose(y.numpy(), reference, atol=1e-2, rtol=1e-2)
        assert model.predict(x[:8], verbose=0).shape == (8, 1)
    finally:
        keras.mixed_precision.set_global_policy(policy)


def test_sequential_functional_and_tf_data(x):
    layer = Whitening()
    sequential = keras.Sequential([keras.Input((D,)), layer])  # built before adapt
    layer.adapt(x)
    inputs = keras.Input((D,))
    functional = keras.Model(inputs, layer(inputs))
    expected = layer(x[:64]).numpy()
    # predict() may compile with XLA: same math, float32 rounding may differ.
    tol = {"atol": 1e-5, "rtol": 1e-5}
    np.testing.assert_allclose(sequential.predict(x[:64], verbose=0), expected, **tol)
    np.testing.assert_allclose(functional.predict(x[:64], verbose=0), expected, **tol)
    dataset = tf.data.Dataset.from_tensor_slices(x[:64]).batch(16).map(layer)
    np.testing.assert_allclose(
        np.concatenate(list(dataset.as_numpy_iterator())), expected
    )


# --- Serialization ------------------------------------------------------------


def test_keras_file_round_trip_reproduces_outputs(x, tmp_path):
    inputs = keras.Input((D,))
    hidden = Whitening(mode="pca", epsilon=1e-5, name="white")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    model.get_layer("white").adapt(x)
    reloaded = save_and_reload(model, str(tmp_path))
    layer = reloaded.get_layer("white")
    assert (layer.mode, layer.epsilon) == ("pca", 1e-5)
    np.testing.assert_array_equal(
        reloaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    assert layer.condition_number == model.get_layer("white").condition_number


def test_from_config_before_weights(x):
    layer = _adapted(x, mode="zca", invert=True)
    clone = config_round_trip(layer)  # built from its build config, no weights
    assert isinstance(clone, Whitening) and clone.invert and clone.built
    with pytest.raises(ValueError, match="not adapted"):
        clone(x[:2])
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x[:50]), layer(x[:50]))
    bare = Whitening.from_config(layer.get_config())
    bare.build_from_config(layer.get_build_config())
    bare.set_weights(layer.get_weights())
    np.testing.assert_array_equal(bare(x[:50]), layer(x[:50]))


def test_registered_name():
    assert keras.saving.get_registered_object("keras_initdiag>Whitening") is Whitening
    assert keras_initdiag.Whitening is Whitening


def test_explicit_mean_and_matrix_need_no_adapt():
    mean, matrix = [1.0, 2.0], [[2.0, 0.0], [1.0, 4.0]]
    layer = Whitening(mean=mean, matrix=matrix)
    inputs = np.array([[2.0, 3.0]], "float32")
    np.testing.assert_allclose(layer(inputs), (inputs - mean) @ np.array(matrix))
    inverse = config_round_trip(Whitening(mean=mean, matrix=matrix, invert=True))
    np.testing.assert_allclose(inverse(layer(inputs)), inputs, rtol=1e-6)
    with pytest.raises(ValueError, match="explicit `mean` and `matrix`"):
        layer.adapt(inputs)
    with pytest.raises(ValueError, match="adapt"):
        layer.condition_number  # noqa: B018


# --- Bad input ----------------------------------------------------------------


BAD_ARGUMENTS = [
    ({"mode": "whiten"}, ValueError, "`mode` must be one of .* mode='whiten'"),
    (
        {"epsilon": 0},
        ValueError,
        "`epsilon` must be a positive float. Received: epsilon=0",
    ),
    ({"epsilon": -1.0}, ValueError, "epsilon=-1.0"),
    ({"epsilon": float("nan")}, ValueError, "epsilon=nan"),
    ({"epsilon": "1e-3"}, ValueError, "epsilon='1e-3'"),
    ({"axis": 0}, ValueError, "batch axis.*axis=0"),
    ({"axis": 1.5}, TypeError, "`axis` must be an int. Received: axis=1.5"),
    ({"mean": [0.0]}, ValueError, "`mean` and `matrix` must be given together"),
    (
        {"mean": [0.0], "matrix": [[1.0, 0.0]]},
        ValueError,
        "matrix.shape=\\(1, 2\\)",
    ),
    ({"mean": [0.0, 0.0], "matrix": np.ones((2, 2))}, ValueError, "invertible"),
]


def test_bad_constructor_arguments():
    for kwargs, error, match in BAD_ARGUMENTS:
        with pytest.raises(error, match=match):
            Whitening(**kwargs)


def test_use_before_adapt_raises(x):
    layer = Whitening()
    with pytest.raises(ValueError, match="not adapted. Call `adapt"):
        layer(x)
    with pytest.raises(ValueError, match="adapt"):
        layer.condition_number  # noqa: B018


def test_bad_adapt_data():
    cases = [
        (np.zeros((0, 4)), ValueError, "`data` is empty"),
        ([], ValueError, "`data` is empty"),
        (tf.data.Dataset.from_tensor_slices(np.zeros((0, 4))), ValueError, "empty"),
        (np.array([["a", "b"]]), TypeError, "must be numeric.*dtype=<U1"),
        (tf.constant([["a", "b"]]), TypeError, "must be numeric.*dtype=object"),
        ("abc", TypeError, "must be numeric"),
        (42, TypeError, "Received: data of type int"),
        (np.zeros(5), ValueError, "axis=-1 for data of shape \\(5,\\)"),
        ([np.zeros((3, 4)), np.zeros((3, 5))], ValueError, "must stay 4.*batch 1"),
    ]
    for data, error, match in cases:
        with pytest.raises(error, match=match):
            Whitening().adapt(data)


def test_nan_in_adapt_data_says_how_many_and_where(x):
    data = x[:100].copy()
    data[37, 5] = np.nan
    data[60, 1] = np.inf
    layer = Whitening()
    with pytest.raises(
        ValueError,
        match="2 non-finite .*batch 1.*sample 47.*feature 5.*index \\(37, 5\\)",
    ):
        layer.adapt([x[:10], data])
    assert not layer.built  # a failed adapt leaves no state behind
    layer.adapt(x[:, :8])
    assert layer.adapted_matrix.shape == (8, 8)


def test_bad_sizes_and_arguments(x):
    layer = _adapted(x)
    with pytest.raises(
        ValueError, match="adapted on 16 features along axis -1.*shape \\(2, 8\\)"
    ):
        layer(x[:2, :8])
    with pytest.raises(ValueError, match="must stay 16"):
        layer.adapt(x[:, :8])
    with pytest.raises(ValueError, match="`batch_size` must be a positive int.*=0"):
        layer.adapt(x, batch_size=0)
    with pytest.raises(ValueError, match="`steps` must be a positive int.*=-1"):
        layer.adapt(x, steps=-1)
    with pytest.raises(ValueError, match="`batch_size` only applies"):
        layer.adapt([x], batch_size=8)
    with pytest.raises(ValueError, match="axis=3"):
        Whitening(axis=3).adapt(x)


# --- The point of the layer ---------------------------------------------------


def _fit_loss(x, y, layers, learning_rate):
    model = keras.Sequential(
        [
            keras.Input((x.shape[1],)),
            *layers,
            keras.layers.Dense(1, kernel_initializer="zeros"),
        ]
    )
    model.compile(keras.optimizers.SGD(learning_rate), "mse")
    history = model.fit(x, y, batch_size=len(x), epochs=15, shuffle=False, verbose=0)
    return history.history["loss"][-1]


def test_whitening_speeds_up_sgd_on_elongated_inputs():
    x = _correlated(256, seed=5, d=4, cond=1e3)
    y = x @ np.array([1.0, -2.0, 0.5, 3.0], "float32") + 1.0
    # Full-batch gradient descent at a safe step for each (half the largest stable).
    second_moment = np.c_[x, np.ones(len(x))].T @ np.c_[x, np.ones(len(x))] / len(x)
    raw = _fit_loss(x, y, [], 0.5 / np.linalg.eigvalsh(second_moment).max())
    whitened = _fit_loss(x, y, [_adapted(x)], 0.5)
    assert np.isfinite(raw) and whitened < 1e-3 * raw
