"""Tests for keras_initdiag.initializers: statistics against closed forms."""

import functools
import inspect
import math

import keras
import numpy as np
import pytest
from helpers import config_round_trip, save_and_reload

import keras_initdiag
from keras_initdiag import initializers as ki

FAMILIES = (ki.He, ki.Xavier, ki.LeCun)
DISTRIBUTIONS = ("normal", "truncated_normal", "uniform", "orthogonal")
TRUNC_CORRECTION = 0.87962566103423978  # stddev of N(0, 1) cut at +-2
# numpy >= 2 renamed trapz (and deprecates the old name).
trapezoid = getattr(np, "trapezoid", None) or np.trapz
_FREE_MEMORY = (
    "free_memory" in inspect.signature(keras.backend.clear_session).parameters
)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Overrides conftest's fixture: same seeds and fresh session, without the
    `gc.collect()` of `clear_session(free_memory=True)` (0.2-0.4 s per call,
    which made this file of ~200 cheap tests take 80 s)."""
    kwargs = {"free_memory": False} if _FREE_MEMORY else {}
    keras.backend.clear_session(**kwargs)
    keras.utils.set_random_seed(1234)
    yield
    keras.backend.clear_session(**kwargs)


def draw(initializer, shape):
    return keras.ops.convert_to_numpy(initializer(shape)).astype("float64")


def expected_variance(cls, fan_in, fan_out, gain=1.0, negative_slope=0.0):
    """Closed forms, written out independently of the package."""
    if cls is ki.He:
        return gain**2 * 2.0 / (1.0 + negative_slope**2) / fan_in
    if cls is ki.Xavier:
        return gain**2 * 2.0 / (fan_in + fan_out)
    return gain**2 / fan_in


# ---------------------------------------------------------------- variance


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
@pytest.mark.parametrize("cls", FAMILIES, ids=lambda c: c.__name__)
def test_sample_variance_matches_formula(cls, distribution):
    # Non-square, so fan_in, fan_out and fan_avg all differ.
    shape, kwargs = (1000, 600), {"gain": 1.3, "seed": 7}
    if cls is ki.He:
        kwargs["negative_slope"] = 0.3
    w = draw(cls(distribution=distribution, **kwargs), shape)
    target = expected_variance(
        cls, 1000, 600, gain=1.3, negative_slope=kwargs.get("negative_slope", 0.0)
    )
    assert abs(w.mean()) < 0.01 * math.sqrt(target)
    assert w.var() == pytest.approx(target, rel=0.02)
    # The shape of the distribution, not only its variance.
    kurtosis = np.mean(w**4) / np.mean(w**2) ** 2
    assert kurtosis == pytest.approx(KURTOSIS[distribution], abs=0.05)


def _truncated_kurtosis():
    z = np.linspace(-2.0, 2.0, 100_001)
    density = np.exp(-0.5 * z**2)
    return (
        trapezoid(z**4 * density, z)
        * trapezoid(density, z)
        / (trapezoid(z**2 * density, z) ** 2)
    )


# Kurtosis E[w^4] / E[w^2]^2: 3 for a Gaussian (orthogonal entries are close
# to Gaussian), 9/5 for a uniform, about 2.37 when cut at two stddevs.
KURTOSIS = {
    "normal": 3.0,
    "orthogonal": 3.0,
    "uniform": 1.8,
    "truncated_normal": _truncated_kurtosis(),
}


def test_he_default_is_relu_gain_on_conv_kernel():
    w = draw(ki.He(seed=3), (3, 3, 128, 256))
    assert w.var() == pytest.approx(2.0 / (9 * 128), rel=0.02)


@pytest.mark.parametrize("cls", FAMILIES, ids=lambda c: c.__name__)
def test_truncated_normal_is_cut_at_two_corrected_stddevs(cls):
    w = draw(cls(distribution="truncated_normal", seed=1), (1000, 1000))
    stddev = math.sqrt(expected_variance(cls, 1000, 1000)) / TRUNC_CORRECTION
    assert np.abs(w).max() <= 2.0 * stddev * (1 + 1e-6)
    assert np.abs(w).max() > 1.95 * stddev
    # Without the correction the variance would be 0.774 of the target.
    assert w.var() == pytest.approx(expected_variance(cls, 1000, 1000), rel=0.02)


@pytest.mark.parametrize("cls", FAMILIES, ids=lambda c: c.__name__)
def test_uniform_bounds(cls):
    w = draw(cls(distribution="uniform", gain=0.5, seed=1), (1000, 1000))
    limit = math.sqrt(3.0 * expected_variance(cls, 1000, 1000, gain=0.5))
    assert np.abs(w).max() <= limit * (1 + 1e-6)
    assert np.abs(w).max() > 0.999 * limit


def test_small_random_scale_and_bounds():
    normal = draw(ki.SmallRandom(scale=0.02, seed=1), (1000, 1000))
    assert normal.std() == pytest.approx(0.02, rel=0.01)
    uniform = draw(
        ki.SmallRandom(scale=0.02, distribution="uniform", seed=1), (1000, 1000)
    )
    assert np.abs(uniform).max() <= 0.02
    assert uniform.std() == pytest.approx(0.02 / math.sqrt(3.0), rel=0.01)
    default = draw(ki.SmallRandom(seed=1), (500, 500))
    assert default.std() == pytest.approx(0.01, rel=0.02)


# ------------------------------------------------------------ orthogonality


def assert_scaled_orthogonal(w2d, scale_sq, atol=1e-5):
    rows, cols = w2d.shape
    gram = w2d.T @ w2d if rows >= cols else w2d @ w2d.T
    np.testing.assert_allclose(gram, scale_sq * np.eye(min(rows, cols)), atol=atol)


@pytest.mark.parametrize("shape", [(50, 20), (20, 50), (3, 3, 8, 16), (16, 16)])
@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_orthogonal_gram_is_gain_squared_identity(shape, gain):
    w = keras.ops.convert_to_numpy(ki.Orthogonal(gain=gain, seed=5)(shape))
    assert w.dtype == np.float32
    assert_scaled_orthogonal(w.reshape(-1, shape[-1]), gain**2, atol=1e-5 * gain**2)


@pytest.mark.parametrize("cls", FAMILIES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (3, 3, 4, 16)])
def test_orthogonal_distribution_is_scaled_to_family_variance(cls, shape):
    w = keras.ops.convert_to_numpy(
        cls(distribution="orthogonal", gain=1.5, seed=2)(shape)
    )
    rows, cols = math.prod(shape[:-1]), shape[-1]
    receptive = math.prod(shape[:-2])
    target = expected_variance(cls, shape[-2] * receptive, cols * receptive, gain=1.5)
    # Per-element mean square is exactly the target, and the matrix is
    # orthogonal up to that scale.
    assert float(np.mean(w.astype("float64") ** 2)) == pytest.approx(target, rel=1e-5)
    assert_scaled_orthogonal(
        w.reshape(rows, cols), target * max(rows, cols), atol=1e-5 * target * rows
    )


# ---------------------------------------------------------- delta-orthogonal


@pytest.mark.parametrize(
    "shape, centre",
    [
        ((3, 8, 8), (1,)),
        ((3, 3, 4, 8), (1, 1)),
        ((3, 3, 3, 4, 4), (1, 1, 1)),
        ((4, 2, 4, 8), (1, 0)),  # even sizes: (k - 1) // 2
    ],
)
def test_delta_orthogonal_structure(shape, centre):
    gain = 1.7
    w = keras.ops.convert_to_numpy(ki.DeltaOrthogonal(gain=gain, seed=4)(shape))
    assert w.shape == shape
    assert ki.centre_tap(shape) == centre
    block = w[centre]
    np.testing.assert_allclose(
        block @ block.T, gain**2 * np.eye(shape[-2]), atol=1e-5 * gain**2
    )
    rest = w.copy()
    rest[centre] = 0.0
    assert np.count_nonzero(rest) == 0


def test_delta_orthogonal_even_kernel_does_not_shift_with_same_padding():
    init = ki.DeltaOrthogonal(seed=0)
    layer = keras.layers.Conv1D(
        8, 4, padding="same", use_bias=False, kernel_initializer=init
    )
    x = np.random.default_rng(0).normal(size=(1, 10, 8)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    np.testing.assert_allclose(y, x @ kernel[ki.centre_tap(kernel.shape)], atol=1e-5)
    # Norm-preserving per position, since the block is square orthogonal.
    np.testing.assert_allclose(
        np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5
    )


# ------------------------------------------------------------------ depthwise


def test_depthwise_he_fan_in_leaves_out_channels():
    init = ki.He(depthwise=True, seed=0)
    assert init.variance((3, 3, 64, 2)) == pytest.approx(2.0 / 9.0)
    # Keras's fans would give 2 / (9 * 64): 64 times smaller.
    assert draw(init, (3, 3, 64, 2)).var() == pytest.approx(2.0 / 9.0, rel=0.1)
    assert draw(init, (3, 3, 4096, 8)).var() == pytest.approx(2.0 / 9.0, rel=0.02)


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_depthwise_xavier_uses_depthwise_fan_avg(distribution):
    init = ki.Xavier(distribution=distribution, depthwise=True, seed=0)
    # fan_in = 9, fan_out = 9 * multiplier = 72.
    target = 2.0 / (9 + 72)
    w = draw(init, (3, 3, 2048, 8))
    assert w.shape == (3, 3, 2048, 8)
    assert w.var() == pytest.approx(target, rel=0.02)


def test_depthwise_in_a_depthwise_conv_layer():
    layer = keras.layers.DepthwiseConv2D(
        3, depth_multiplier=2, depthwise_initializer=ki.LeCun(depthwise=True, seed=1)
    )
    layer.build((None, 8, 8, 512))
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    assert kernel.shape == (3, 3, 512, 2)
    assert kernel.var() == pytest.approx(1.0 / 9.0, rel=0.05)


# ---------------------------------------------------------------------- gains


@pytest.mark.parametrize(
    "activation, gain_sq",
    [
        ("relu", 2.0),
        ("relu6", 2.0),
        ("elu", 2.0),
        ("leaky_relu", 2.0 / (1.0 + 0.2**2)),
        (keras.activations.leaky_relu, 2.0 / (1.0 + 0.2**2)),
        (
            functools.partial(keras.activations.leaky_relu, negative_slope=0.1),
            2.0 / 1.01,
        ),
        ("linear", 1.0),
        (None, 1.0),
        ("selu", 1.0),
        ("tanh", 1.0),
        ("sigmoid", 1.0),
        ("softmax", 1.0),
    ],
)
def test_gain_rule_table(activation, gain_sq):
    assert ki.gain(activation) ** 2 == pytest.approx(gain_sq, abs=1e-12)


@pytest.mark.parametrize(
    "activation, gain_sq",
    [
        (lambda x: keras.activations.relu(x), 2.0),
        (lambda x: keras.activations.selu(x), 1.0),
        (lambda x: keras.activations.leaky_relu(x, negative_slope=0.3), 2.0 / 1.09),
        (lambda x: x, 1.0),
        (lambda x: 2 * x, 0.25),
        (lambda x: keras.ops.tanh(x) * 0 + 3.0 * keras.ops.sign(x), 1.0 / 9.0),
    ],
)
def test_numeric_gain_matches_closed_forms(activation, gain_sq):
    # Lambdas are not in the table, so these go through the quadrature.
    assert ki.gain(activation) ** 2 == pytest.approx(gain_sq, rel=1e-3)


def test_numeric_gain_for_gelu_matches_direct_integration():
    z = np.linspace(-12.0, 12.0, 200_001)
    phi = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))
    second_moment = trapezoid((z * cdf) ** 2 * phi, z)
    assert ki.gain("gelu") ** 2 == pytest.approx(1.0 / second_moment, rel=1e-4)
    # A custom callable is measured the same way.
    assert ki.gain(keras.activations.gelu) == pytest.approx(ki.gain("gelu"))


@pytest.mark.parametrize("name", ["silu", "swish", "mish", "softplus", "gelu"])
def test_numeric_gain_preserves_second_moment(name):
    g = ki.gain(name)
    z = np.random.default_rng(0).normal(size=400_000).astype("float32")
    y = keras.ops.convert_to_numpy(keras.activations.get(name)(z))
    assert (g**2) * np.mean(y.astype("float64") ** 2) == pytest.approx(1.0, rel=0.01)


# -------------------------------------------------- the rule, one source


@pytest.mark.parametrize(
    "activation, name",
    [
        ("relu", "relu"),
        ("swish", "silu"),
        (keras.activations.leaky_relu, "leaky_relu"),
        (
            functools.partial(keras.activations.leaky_relu, negative_slope=0.1),
            "leaky_relu",
        ),
        (None, "linear"),
        ("softmax", "softmax"),
        (keras.activations.gelu, "gelu"),
    ],
)
def test_activation_name(activation, name):
    assert ki.activation_name(activation) == name


def test_activation_name_of_custom_callable():
    def My_Act(x):  # noqa: N802
        return x

    assert ki.activation_name(My_Act) == "my_act"


@pytest.mark.parametrize(
    "activation, families",
    [
        ("relu", ("he",)),
        ("relu6", ("he",)),
        ("leaky_relu", ("he",)),
        ("elu", ("he",)),
        ("tanh", ("xavier", "lecun")),
        ("sigmoid", ("xavier", "lecun")),
        ("selu", ("lecun",)),
        ("linear", ()),
        ("softmax", ()),
        ("gelu", ()),
        (lambda x: 2 * x, ()),
    ],
)
def test_recommended_families(activation, families):
    assert ki.recommended_families(activation) == families


@pytest.mark.parametrize(
    "activation, cls, kwargs",
    [
        ("relu", ki.He, {"negative_slope": 0.0, "gain": 1.0}),
        ("leaky_relu", ki.He, {"negative_slope": 0.2}),
        (
            functools.partial(keras.activations.leaky_relu, negative_slope=0.1),
            ki.He,
            {"negative_slope": 0.1},
        ),
        ("tanh", ki.Xavier, {"gain": 1.0}),
        ("sigmoid", ki.Xavier, {"gain": 1.0}),
        ("selu", ki.LeCun, {"gain": 1.0}),
        ("linear", ki.LeCun, {"gain": 1.0}),
    ],
)
def test_for_activation_picks_by_the_table(activation, cls, kwargs):
    init = ki.for_activation(activation, distribution="uniform", seed=3)
    assert type(init) is cls
    assert init.distribution == "uniform"
    assert init.seed == 3
    for key, value in kwargs.items():
        assert getattr(init, key) == pytest.approx(value)


@pytest.mark.parametrize("activation", ["gelu", "silu", "mish", "softplus"])
def test_for_activation_measured_gain(activation):
    init = ki.for_activation(activation)
    assert type(init) is ki.LeCun
    assert init.gain == pytest.approx(ki.gain(activation))
    assert init.gain > 1.0


@pytest.mark.parametrize(
    "activation",
    ["relu", "relu6", "leaky_relu", "elu", "tanh", "sigmoid", "selu", "gelu", "linear"],
)
def test_for_activation_agrees_with_recommended_families(activation):
    families = ki.recommended_families(activation)
    family = ki.initializer_family(ki.for_activation(activation))
    assert not families or family == families[0]


@pytest.mark.parametrize(
    "initializer, family",
    [
        (ki.He(distribution="orthogonal"), "he"),
        (ki.Xavier(), "xavier"),
        (ki.LeCun(gain=1.5), "lecun"),
        (ki.SmallRandom(scale=0.5), "small_random"),
        (ki.Orthogonal(), "orthogonal"),
        (ki.DeltaOrthogonal(), "delta_orthogonal"),
        ("keras_initdiag>He", "he"),
        (keras.initializers.GlorotUniform(), "xavier"),
        (keras.initializers.GlorotNormal(), "xavier"),
        (keras.initializers.HeNormal(), "he"),
        (keras.initializers.HeUniform(), "he"),
        (keras.initializers.LecunNormal(), "lecun"),
        (keras.initializers.LecunUniform(), "lecun"),
        (keras.initializers.VarianceScaling(2.0, "fan_in"), "he"),
        (keras.initializers.VarianceScaling(1.0, "fan_avg", "uniform"), "xavier"),
        (keras.initializers.VarianceScaling(1.0, "fan_in"), "lecun"),
        (keras.initializers.VarianceScaling(1.0, "fan_out"), "unknown"),
        (keras.initializers.Orthogonal(), "orthogonal"),
        (keras.initializers.Zeros(), "constant"),
        (keras.initializers.Ones(), "constant"),
        (keras.initializers.Constant(0.3), "constant"),
        (keras.initializers.RandomNormal(stddev=0.01), "small_random"),
        (keras.initializers.TruncatedNormal(stddev=0.01), "small_random"),
        (keras.initializers.RandomUniform(-0.01, 0.01), "small_random"),
        (keras.initializers.RandomNormal(stddev=0.5), "random"),
        (keras.initializers.RandomUniform(), "random"),  # stddev 0.029
        ("glorot_uniform", "xavier"),
        ("he_normal", "he"),
        ("zeros", "constant"),
        (keras.initializers.HeNormal, "he"),
        ("no_such_initializer", "unknown"),
        (lambda shape, dtype=None: keras.ops.ones(shape), "unknown"),
    ],
)
def test_initializer_family(initializer, family):
    assert ki.initializer_family(initializer) == family


# -------------------------------------------------------------------- seeding

ALL_CLASSES = (
    ki.SmallRandom,
    ki.Xavier,
    ki.He,
    ki.LeCun,
    ki.Orthogonal,
    ki.DeltaOrthogonal,
)
SMALL_SHAPE = (3, 4, 8)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_int_seed_repeats_and_different_seeds_differ(cls):
    a, b, c = cls(seed=11), cls(seed=11), cls(seed=12)
    first = draw(a, SMALL_SHAPE)
    np.testing.assert_array_equal(first, draw(a, SMALL_SHAPE))
    np.testing.assert_array_equal(first, draw(b, SMALL_SHAPE))
    assert not np.array_equal(first, draw(c, SMALL_SHAPE))


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_unseeded_instance_repeats_but_instances_differ(cls):
    a, b = cls(), cls()
    first = draw(a, SMALL_SHAPE)
    np.testing.assert_array_equal(first, draw(a, SMALL_SHAPE))
    assert not np.array_equal(first, draw(b, SMALL_SHAPE))


def test_seed_generator_advances_like_keras():
    init = ki.He(seed=keras.random.SeedGenerator(5))
    assert not np.array_equal(draw(init, (4, 4)), draw(init, (4, 4)))


def test_for_activation_passes_seed():
    np.testing.assert_array_equal(
        draw(ki.for_activation("gelu", seed=9), (6, 6)),
        draw(ki.for_activation("gelu", seed=9), (6, 6)),
    )


# ------------------------------------------------------------ serialization

CONFIGURED = [
    ki.SmallRandom(scale=0.05, distribution="uniform", seed=1),
    ki.Xavier(distribution="truncated_normal", gain=1.5, seed=2, depthwise=True),
    ki.He(distribution="orthogonal", gain=0.9, seed=3, negative_slope=0.2),
    ki.LeCun(distribution="uniform", gain=1.2, seed=4),
    ki.Orthogonal(gain=2.0, seed=5),
    ki.DeltaOrthogonal(gain=1.1, seed=6),
    ki.He(),
]


@pytest.mark.parametrize("init", CONFIGURED, ids=lambda i: type(i).__name__)
def test_config_round_trip(init):
    restored = config_round_trip(init)
    assert type(restored) is type(init)
    assert restored.get_config() == init.get_config()
    assert type(init).from_config(init.get_config()).get_config() == init.get_config()
    if init.seed is not None:
        np.testing.assert_array_equal(
            draw(restored, SMALL_SHAPE), draw(init, SMALL_SHAPE)
        )


@pytest.mark.parametrize(
    "name", ["SmallRandom", "Xavier", "He", "LeCun", "Orthogonal", "DeltaOrthogonal"]
)
def test_string_lookup_in_a_layer(name):
    layer = keras.layers.Conv1D(8, 3, kernel_initializer=f"keras_initdiag>{name}")
    layer.build((None, 5, 4))
    assert type(layer.kernel_initializer) is getattr(keras_initdiag, name)
    if name != "DeltaOrthogonal":
        dense = keras.layers.Dense(8, kernel_initializer=f"keras_initdiag>{name}")
        dense.build((None, 4))
        assert type(dense.kernel_initializer) is getattr(keras_initdiag, name)


def test_save_and_reload_keras_file(tmp_path):
    inits = {
        "conv": ki.DeltaOrthogonal(gain=1.2, seed=3),
        "depthwise": ki.He(depthwise=True, seed=4),
        "dense_he": ki.He(negative_slope=0.2, distribution="uniform", seed=5),
        "dense_small": ki.SmallRandom(seed=6),
        "dense_lecun": ki.LeCun(distribution="orthogonal", gain=1.3),
        "dense_xavier": ki.Xavier(distribution="truncated_normal", seed=7),
        "dense_ortho": ki.Orthogonal(gain=0.5, seed=8),
    }
    model = keras.Sequential(
        [
            keras.Input((6, 4)),
            keras.layers.Conv1D(
                8, 3, padding="same", name="conv", kernel_initializer=inits["conv"]
            ),
            keras.layers.DepthwiseConv1D(
                3, name="depthwise", depthwise_initializer=inits["depthwise"]
            ),
            keras.layers.Flatten(),
            keras.layers.Dense(
                8, name="dense_he", kernel_initializer=inits["dense_he"]
            ),
            keras.layers.Dense(
                8, name="dense_small", kernel_initializer=inits["dense_small"]
            ),
            keras.layers.Dense(
                8, name="dense_lecun", kernel_initializer=inits["dense_lecun"]
            ),
            keras.layers.Dense(
                8, name="dense_xavier", kernel_initializer=inits["dense_xavier"]
            ),
            keras.layers.Dense(
                4, name="dense_ortho", kernel_initializer=inits["dense_ortho"]
            ),
        ]
    )
    reloaded = save_and_reload(model, str(tmp_path))
    for before, after in zip(model.get_weights(), reloaded.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
    for name, init in inits.items():
        layer = reloaded.get_layer(name)
        restored = (
            getattr(layer, "depthwise_initializer", None) or layer.kernel_initializer
        )
        assert type(restored) is type(init)
        assert restored.get_config() == init.get_config()


# ---------------------------------------------------------------- bad input


def assert_names(error, argument, received):
    message = str(error.value)
    assert f"`{argument}`" in message, message
    assert f"{argument}={received!r}" in message, message


@pytest.mark.parametrize(
    "make, error, argument, received",
    [
        (
            lambda: ki.He(distribution="gaussian"),
            ValueError,
            "distribution",
            "gaussian",
        ),
        (lambda: ki.Xavier(distribution=3), ValueError, "distribution", 3),
        (
            lambda: ki.SmallRandom(distribution="orthogonal"),
            ValueError,
            "distribution",
            "orthogonal",
        ),
        (lambda: ki.He(gain=-1), ValueError, "gain", -1),
        (lambda: ki.LeCun(gain=0.0), ValueError, "gain", 0.0),
        (lambda: ki.Xavier(gain=float("inf")), ValueError, "gain", float("inf")),
        (lambda: ki.He(gain=float("nan")), ValueError, "gain", float("nan")),
        (lambda: ki.He(gain="2"), TypeError, "gain", "2"),
        (lambda: ki.He(gain=True), TypeError, "gain", True),
        (lambda: ki.Orthogonal(gain=-2.0), ValueError, "gain", -2.0),
        (lambda: ki.DeltaOrthogonal(gain=None), TypeError, "gain", None),
        (lambda: ki.He(negative_slope=-0.1), ValueError, "negative_slope", -0.1),
        (lambda: ki.He(negative_slope="a"), TypeError, "negative_slope", "a"),
        (lambda: ki.SmallRandom(scale=0), ValueError, "scale", 0),
        (lambda: ki.SmallRandom(scale=-0.01), ValueError, "scale", -0.01),
        (lambda: ki.He(depthwise="yes"), TypeError, "depthwise", "yes"),
        (lambda: ki.He(seed="abc"), TypeError, "seed", "abc"),
        (lambda: ki.Orthogonal(seed=1.5), TypeError, "seed", 1.5),
        (lambda: ki.SmallRandom(seed=True), TypeError, "seed", True),
        (
            lambda: ki.for_activation("relu", distribution="bad"),
            ValueError,
            "distribution",
            "bad",
        ),
        (lambda: ki.for_activation("relu", seed=[1]), TypeError, "seed", [1]),
        (
            lambda: ki.for_activation("nonexistent"),
            ValueError,
            "activation",
            "nonexistent",
        ),
        (lambda: ki.gain(42), TypeError, "activation", 42),
        (lambda: ki.recommended_families("nope"), ValueError, "activation", "nope"),
    ],
)
def test_bad_constructor_arguments(make, error, argument, received):
    with pytest.raises(error) as info:
        make()
    if isinstance(received, float) and math.isnan(received):
        assert "gain=nan" in str(info.value)
    else:
        assert_names(info, argument, received)


def test_unknown_activation_lists_valid_names():
    with pytest.raises(ValueError, match='"relu".*"tanh"'):
        ki.for_activation("relux")


@pytest.mark.parametrize(
    "activation, fragment",
    [
        (lambda x: x.no_such_method(), "AttributeError"),
        (lambda x: x * float("nan"), "finite"),
        (lambda x: 0.0 * x, "non-zero"),
        (lambda x: keras.ops.sum(x), "element-wise"),
    ],
)
def test_bad_callable_activation(activation, fragment):
    with pytest.raises(ValueError, match=fragment) as info:
        ki.for_activation(activation)
    assert "`activation`" in str(info.value)
    assert "activation=<function" in str(info.value)


@pytest.mark.parametrize(
    "init, shape",
    [
        (ki.DeltaOrthogonal(), (8, 8)),
        (ki.DeltaOrthogonal(), (3, 3, 3, 3, 4, 4)),
        (ki.DeltaOrthogonal(), (3, 16, 8)),  # in > out
        (ki.Orthogonal(), (5,)),
        (ki.He(distribution="orthogonal"), (5,)),
        (ki.He(depthwise=True), (8, 8)),
        (ki.Xavier(depthwise=True, distribution="orthogonal"), (8, 8)),
    ],
)
def test_bad_shapes(init, shape):
    with pytest.raises(ValueError) as info:
        init(shape)
    assert f"shape={shape}" in str(info.value)


def test_package_re_exports():
    for name in (
        "SmallRandom",
        "Xavier",
        "He",
        "LeCun",
        "Orthogonal",
        "DeltaOrthogonal",
        "gain",
        "for_activation",
    ):
        assert getattr(keras_initdiag, name) is getattr(ki, name)


# --- gain conventions (preserve=) --------------------------------------------


@pytest.mark.parametrize(
    "activation, expected",
    [
        # Closed forms: E[relu(z)^2] = 1/2; Var[relu(z)] = 1/2 - 1/(2 pi);
        # E[z^2] = Var[z] = 1 for the identity.
        ("relu", ("second_moment", math.sqrt(2.0))),
        ("relu", ("variance", 1.0 / math.sqrt(0.5 - 0.5 / math.pi))),
        ("linear", ("second_moment", 1.0)),
        ("linear", ("variance", 1.0)),
    ],
)
def test_gain_conventions_match_closed_forms(activation, expected):
    preserve, value = expected
    got = keras_initdiag.gain(activation, preserve=preserve)
    assert got == pytest.approx(value, abs=1e-6)


def test_nf_resnet_gains_to_six_digits():
    # Brock et al. (2021) list 1.7139 and 1.5848 (Monte Carlo); the exact
    # values from quadrature:
    assert keras_initdiag.gain("relu", preserve="variance") == pytest.approx(
        1.712859, abs=5e-7
    )
    assert keras_initdiag.gain("tanh", preserve="variance") == pytest.approx(
        1.592537, abs=5e-7
    )


def test_default_gain_convention_is_unchanged():
    assert keras_initdiag.gain("relu") == pytest.approx(math.sqrt(2.0))
    assert keras_initdiag.gain("tanh") == 1.0
    # "second_moment" differs for squashing activations (Xavier assumes 1).
    assert keras_initdiag.gain("tanh", preserve="second_moment") > 1.5


def test_gaussian_moments_closed_forms():
    first, second, fourth = ki.gaussian_moments("relu", 0.0, 4.0)
    assert first == pytest.approx(2.0 / math.sqrt(2.0 * math.pi), rel=1e-6)
    assert second == pytest.approx(2.0, rel=1e-6)
    assert fourth == pytest.approx(0.5 * 3 * 16.0, rel=1e-3)  # kink: ~1e-4
    mean, second, _ = ki.gaussian_moments("linear", 1.5, 0.25)
    assert (mean, second) == (pytest.approx(1.5), pytest.approx(1.5**2 + 0.25))


@pytest.mark.parametrize("preserve", ["mean", "", 2])
def test_bad_preserve(preserve):
    with pytest.raises(ValueError, match=r"`preserve` must be one of"):
        keras_initdiag.gain("relu", preserve=preserve)
