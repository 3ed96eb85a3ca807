"""Designs the class name or the constant output misreads, on real models.

A wrapped layer is judged by what it does (a spectrally normalized Dense is
a layer with weights, not an output normalization). A preprocessing layer
inside the model sets its output scale by design.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_initdiag

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
RNG = np.random.default_rng(0)


def _kinds(report) -> set[str]:
    return {f.kind for f in report.flags if f.kind != "init_mismatch"}


def _spectral_stack(kernel, activation="relu", depth=30, width=64):
    layers = [keras.Input((width,))]
    for i in range(depth):
        dense = keras.layers.Dense(
            width, activation=activation, kernel_initializer=kernel()
        )
        layers.append(keras.layers.SpectralNormalization(dense, name=f"sn{i}"))
    layers.append(keras.layers.Dense(10, name="head"))
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.SGD(0.01), LOSS)
    x = RNG.standard_normal((64, width)).astype("float32")
    return model, x, RNG.integers(0, 10, 64)


def test_a_collapsing_spectrally_normalized_stack_is_flagged_vanishing():
    # Kernels drawn at 1e-2. Read as an output normalization, the stack got
    # no flag at all, although its signal falls to about 3e-18.
    model, x, y = _spectral_stack(lambda: keras.initializers.RandomNormal(0, 0.01))
    report = keras_initdiag.diagnose(model, x, y)
    (flag,) = [f for f in report.flags if f.kind == "vanishing"]
    assert flag.value < 1e-12 and flag.layer == "sn29"
    # A better initializer would not help: the advice says what would.
    assert "largest singular value" in flag.message
    assert "He initialization" not in flag.message
    assert "init_mismatch" not in [f.kind for f in report.flags]
    assert report.info["sn5"].kind == "layer"
    assert report.info["sn5"].activation == "relu"
    assert report.info["sn5"].initializer == "small_random"


def test_spectral_normalization_as_fit_runs_it_collapses_whatever_the_scale():
    # In training mode the kernel is divided by its estimated largest
    # singular value, so its scale no longer matters: a Gaussian 64x64
    # kernel keeps about 1/4 of E[x^2] per ReLU layer, He or not.
    model, x, y = _spectral_stack(keras.initializers.HeNormal)
    report = keras_initdiag.diagnose(model, x, y)
    (flag,) = [f for f in report.flags if f.kind == "vanishing"]
    assert flag.value < 1e-12
    # The same He stack as `predict` runs it (kernels as drawn) is healthy.
    report = keras_initdiag.diagnose(model, x, y, training=False)
    assert _kinds(report) == set(), [str(f) for f in report.flags]


def test_a_healthy_spectrally_normalized_stack_is_not_flagged():
    # An orthogonal kernel's singular values are all equal, so spectral
    # normalization makes it exactly orthogonal: a linear stack keeps E[x^2].
    model, x, y = _spectral_stack(keras.initializers.Orthogonal, activation=None)
    report = keras_initdiag.diagnose(model, x, y)
    assert _kinds(report) == set(), [str(f) for f in report.flags]
    m2 = report.stats["sn29"]["activation_variance"]
    assert m2 == pytest.approx(float(np.mean(x**2)), rel=0.1)


def test_rescaling_of_raw_pixels_starts_a_segment():
    # `Rescaling(1/255)` of 0..255 pixels divides E[x^2] by 65025 (about
    # 2.2e4 -> 0.33): by design, not depth. It read as "vanishing" 1.5e-5.
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    for _ in range(4):
        h = keras.layers.Conv2D(
            16, 3, padding="same", activation="relu", kernel_initializer="he_normal"
        )(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(10)(h))
    model.compile(keras.optimizers.SGD(0.01), LOSS)
    x = RNG.uniform(0, 255, (16, 8, 8, 3)).astype("float32")
    report = keras_initdiag.diagnose(model, x, RNG.integers(0, 10, 16))
    assert _kinds(report) == set(), [str(f) for f in report.flags]
    assert report.info["rescale"].kind == "preprocess"
    gain = report.stats["rescale"]["activation_gain"]
    assert gain == pytest.approx(1 / 255**2, rel=1e-4)


def _he_mlp(zero: str, depth: int = 6, width: int = 64):
    layers = [keras.Input((32,))]
    for i in range(depth):
        kernel = "zeros" if zero == "hidden" and i == depth // 2 else "he_normal"
        layers.append(
            keras.layers.Dense(
                width, activation="relu", kernel_initializer=kernel, name=f"h{i}"
            )
        )
    head = "zeros" if zero == "head" else "glorot_uniform"
    layers.append(keras.layers.Dense(10, kernel_initializer=head, name="head"))
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.SGD(0.01), LOSS)
    x = RNG.standard_normal((64, 32)).astype("float32")
    return model, x, RNG.integers(0, 10, 64)


def test_a_zero_initialized_head_is_judged_by_its_gradient():
    # Its outputs are all zero, yet its units differ by their targets and
    # its kernel gets a gradient at step 0: healthy. It read as "symmetry"
    # 100% and "dead" 100%.
    model, x, y = _he_mlp("head")
    report = keras_initdiag.diagnose(model, x, y)
    assert _kinds(report) == set(), [str(f) for f in report.flags]
    assert report.stats["head"]["kernel_gradient_norm"] > 0.1
    assert report.stats["head"]["activation_variance"] == 0.0
    # Softmax of zero logits: the loss is exactly ln(10).
    assert report.loss == pytest.approx(np.log(10), rel=1e-6)


def test_a_zero_hidden_layer_is_still_symmetric():
    model, x, y = _he_mlp("hidden")
    report = keras_initdiag.diagnose(model, x, y)
    flagged = {(f.kind, f.layer) for f in report.flags}
    assert ("symmetry", "h3") in flagged, [str(f) for f in report.flags]


def _squeeze_excite(bias=0.0, units=8, seed=4):
    """Conv features, globally pooled, into a narrow ReLU: a squeeze-and-excite."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 16))
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True)(h)
    squeeze = keras.layers.Conv2D(
        units, 1, bias_initializer=keras.initializers.Constant(bias), name="se"
    )(pooled)
    squeeze = keras.layers.ReLU(name="se_relu")(squeeze)
    gate = keras.layers.Conv2D(16, 1, activation="hard_sigmoid")(squeeze)
    h = keras.layers.Multiply()([h, gate])
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(10)(h))
    model.compile(keras.optimizers.SGD(0.01), LOSS)
    x = np.random.default_rng(seed).standard_normal((32, 8, 8, 16))
    return model, x.astype("float32"), np.arange(32) % 10


def test_a_pooled_input_kills_half_a_narrow_layer_by_luck_and_no_flag_says_dead():
    # After global pooling a unit's sign hardly varies over the batch: its
    # random weights set it, so each of the 8 units starts dead with a
    # chance near 1/2 (MobileNetV3Small's first squeeze-and-excite lost 6 of
    # 8 this way at one zoo seed, and trains).
    fractions = {}
    for seed in range(12):
        model, x, y = _squeeze_excite(seed=seed)
        report = keras_initdiag.diagnose(model, x, y)
        fractions[seed] = report.stats["se_relu"]["dead_fraction"]
        # No flag at all: not "dead", and not "vanishing" behind the
        # sigmoid gate (`signal.OFFSET_ACTIVATIONS`).
        assert _kinds(report) <= ({"dead"} if fractions[seed] == 1 else set()), seed
    # The test sees chance at work: some draws lose half the layer or more.
    assert max(fractions.values()) >= 0.5
    assert sum(f > 0 for f in fractions.values()) >= 6


def test_a_negative_bias_kills_the_layer_beyond_chance_and_is_flagged_dead():
    model, x, y = _squeeze_excite(bias=-5.0)
    report = keras_initdiag.diagnose(model, x, y)
    (flag,) = [f for f in report.flags if f.kind == "dead"]
    assert flag.layer == "se_relu" and flag.value == 1.0
