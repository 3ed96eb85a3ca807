"""What the numbers should be: predictions against measurements and closed forms.

At step 0 the measured activation variance lies within the predicted band
at every node, `|log(measured / predicted)| <= log(1.15) + 3 * spread`; a
layer's gain matches one-layer theory; the finite-width spread matches
Hanin & Rolnick's `Var(log ||z||^2) ~ 5 * sum(1 / n_l)` over fresh
initializations.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from helpers import load_script

import keras_initdiag

RNG = np.random.default_rng(0)


def mlp(kernel, activation="relu", depth=30, width=256, d_in=32):
    return keras.Sequential(
        [keras.Input((d_in,))]
        + [
            keras.layers.Dense(width, activation=activation, kernel_initializer=kernel)
            for _ in range(depth)
        ]
    )


def conv_stack(depth=10, filters=16):
    return keras.Sequential(
        [keras.Input((8, 8, 3))]
        + [
            keras.layers.Conv2D(
                filters,
                3,
                padding="same",
                activation="relu",
                kernel_initializer="he_normal",
            )
            for _ in range(depth)
        ]
    )


def within_band(report):
    """Every node with a prediction lies in its band; returns how many."""
    checked = 0
    for node in report.layers:
        stats = report.stats[node]
        predicted = stats["predicted_activation_variance"]
        if not math.isfinite(predicted):
            continue
        spread = stats["predicted_log_spread"]
        measured = stats["activation_variance"]
        tolerance = math.log(1.15) + 3 * spread
        assert abs(math.log(measured / predicted)) <= tolerance, (
            node,
            measured,
            predicted,
            spread,
        )
        checked += 1
    return checked


@pytest.mark.parametrize(
    "kernel",
    ["he_normal", "glorot_normal", "lecun_normal"],
)
def test_relu_mlp_30x256_within_the_band(kernel):
    x = RNG.standard_normal((128, 32)).astype("float32")
    report = keras_initdiag.diagnose(mlp(kernel), x)
    assert within_band(report) == 31  # the input and every layer


def test_tanh_mlp_within_the_band():
    x = RNG.standard_normal((128, 32)).astype("float32")
    report = keras_initdiag.diagnose(mlp("glorot_normal", "tanh", depth=20), x)
    assert within_band(report) == 21


def test_conv_stack_within_the_band_padding_included():
    x = RNG.standard_normal((64, 8, 8, 3)).astype("float32")
    report = keras_initdiag.diagnose(conv_stack(), x)
    assert within_band(report) == 11
    # A 3x3 'same' convolution on 8x8 maps sums over 2.75 x 2.75 taps on
    # average: its effective fan-in, which the prediction needs.
    first = report.layers[1]
    assert report.info[first].fan_in == pytest.approx(3 * 2.75**2)


@pytest.mark.slow
def test_conv_bn_relu_resnet_within_the_band():
    zoo = load_script("benchmarks/zoo.py")
    entry = next(e for e in zoo.HEALTHY if e.name == "conv_resnet20")
    x, y = zoo.batch(entry)
    report = keras_initdiag.diagnose(entry.build(), x, y)
    assert report.training
    assert within_band(report) >= 140


def test_one_layer_gain_matches_theory():
    x = RNG.standard_normal((256, 256)).astype("float32")
    he = keras_initdiag.diagnose(mlp("he_normal", depth=8, d_in=256), x)
    glorot = keras_initdiag.diagnose(mlp("glorot_normal", depth=8, d_in=256), x)
    for node in he.layers[2:]:  # equal widths: 256 -> 256
        assert he.stats[node]["activation_gain"] == pytest.approx(1.0, rel=0.15)
    for node in glorot.layers[2:]:
        assert glorot.stats[node]["activation_gain"] == pytest.approx(0.5, rel=0.15)


def test_hanin_rolnick_spread_over_fresh_initializations():
    # Var(log ||z||^2) of one fixed input over 200 He initializations of a
    # depth-32, width-64 ReLU MLP, against the formula the package reports.
    depth, width, trials = 32, 64, 200
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, width))
    logs = []
    for _ in range(trials):
        h = x
        for _ in range(depth):
            w = rng.standard_normal((width, width)) * math.sqrt(2.0 / width)
            h = np.maximum(h @ w, 0.0)
        logs.append(math.log(float(np.sum(h * h))))
    measured = float(np.var(logs))
    model = mlp("he_normal", depth=depth, width=width, d_in=width)
    report = keras_initdiag.diagnose(model, x.astype("float32"))
    spread = report.stats[report.layers[-1]]["predicted_log_spread"]
    # Hanin & Rolnick's leading order, 5 * sum(1 / n_l), plus the next
    # orders (6% at width 64).
    assert spread**2 == pytest.approx(5 * depth / width, rel=0.08)
    assert measured == pytest.approx(5 * depth / width, rel=0.25)
    assert measured == pytest.approx(spread**2, rel=0.25)


@pytest.mark.parametrize(
    "activation, gain2, expected",
    [("tanh", 1.0, 0.41), ("tanh", 4.0, 0.0072), ("sigmoid", 16.0, 0.0145)],
)
def test_bounded_activations_pass_on_only_part_of_the_spread(
    activation, gain2, expected
):
    # A saturating tanh or a sigmoid gate squashes each example's scale:
    # Var(log ||h||^2) stays far below the ReLU sum 5 * depth / width = 2.5
    # (which the old prediction, about 1.0 here, treated like a linear sum).
    # Simulated over 300 fresh initializations; `expected` is that value.
    depth, width, trials = 32, 64, 300
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, width))
    phi = np.tanh if activation == "tanh" else (lambda z: 1 / (1 + np.exp(-z)))
    logs = []
    for _ in range(trials):
        h = x
        for _ in range(depth):
            w = rng.standard_normal((width, width)) * math.sqrt(gain2 / width)
            h = phi(h @ w)
        logs.append(math.log(float(np.sum(h * h))))
    measured = float(np.var(logs))
    assert measured == pytest.approx(expected, rel=0.05)
    kernel = keras.initializers.VarianceScaling(gain2, "fan_in", "untruncated_normal")
    model = mlp(kernel, activation, depth=depth, width=width, d_in=width)
    report = keras_initdiag.diagnose(model, x.astype("float32"))
    spread = report.stats[report.layers[-1]]["predicted_log_spread"]
    assert spread**2 == pytest.approx(measured, rel=0.15)


def test_dropout_and_batch_norm_predictions():
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(128, use_bias=False, kernel_initializer="he_normal"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Dropout(0.25),
            keras.layers.Dense(128, activation="relu", kernel_initializer="he_normal"),
        ]
    )
    x = RNG.standard_normal((512, 64)).astype("float32")
    report = keras_initdiag.diagnose(model, x)
    within_band(report)
    bn, relu, drop = report.layers[2:5]
    # Training mode: unit variance, then relu(N(0, 1)): Var = 1/2 - 1/(2 pi).
    assert report.stats[bn]["predicted_activation_variance"] == pytest.approx(
        1.0 / (1.0 + model.layers[1].epsilon), rel=1e-3
    )
    assert report.stats[relu]["predicted_activation_variance"] == pytest.approx(
        0.5 - 0.5 / math.pi, rel=1e-3
    )
    # Dropout 0.25 in training mode: E[x^2] / 0.75.
    second = 0.5 / 0.75
    mean = 1.0 / math.sqrt(2.0 * math.pi)
    assert report.stats[drop]["predicted_activation_variance"] == pytest.approx(
        second - mean**2, rel=1e-3
    )


def test_no_theory_is_nan_and_the_measurement_carries_on():
    inputs = keras.Input((6, 8))
    h = keras.layers.LSTM(16, return_sequences=True, name="lstm")(inputs)
    h = keras.layers.Dense(16, activation="relu", name="after")(h)
    model = keras.Model(inputs, h)
    x = RNG.standard_normal((64, 6, 8)).astype("float32")
    report = keras_initdiag.diagnose(model, x)
    assert math.isnan(report.stats["lstm"]["predicted_activation_variance"])
    assert math.isfinite(report.stats["after"]["predicted_activation_variance"])
    within_band(report)


def _biased_bn_model():
    """A Dense with bias 3 (ReLU), a plain Dense, a BN with gamma 5 and beta 2."""
    return keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(
                64,
                activation="relu",
                kernel_initializer=keras.initializers.HeNormal(seed=1),
                bias_initializer=keras.initializers.Constant(3.0),
                name="biased",
            ),
            keras.layers.Dense(
                64, kernel_initializer=keras.initializers.HeNormal(seed=2), name="pre"
            ),
            keras.layers.BatchNormalization(
                gamma_initializer=keras.initializers.Constant(5.0),
                beta_initializer=keras.initializers.Constant(2.0),
                name="bn",
            ),
        ]
    )


def _relu_of_gaussian(mean, variance):
    """`(E[relu(z)], E[relu(z)^2])` for `z ~ N(mean, variance)`, closed form."""
    sd = math.sqrt(variance)
    ratio = mean / sd
    cdf = 0.5 * (1.0 + math.erf(ratio / math.sqrt(2.0)))
    pdf = math.exp(-0.5 * ratio * ratio) / math.sqrt(2.0 * math.pi)
    first = mean * cdf + sd * pdf
    second = (mean * mean + variance) * cdf + mean * sd * pdf
    return first, second


def test_biases_and_batch_norm_gamma_beta_enter_the_prediction():
    model = _biased_bn_model()
    x = RNG.standard_normal((512, 16)).astype("float32")
    report = keras_initdiag.diagnose(model, x)
    stats, info = report.stats, report.info
    inputs = stats[report.layers[0]]
    moment = inputs["activation_variance"] + inputs["activation_mean"] ** 2
    # A constant bias of 3 moves each pre-activation's mean, not its spread:
    # z ~ N(3, fan_in * Var(W) * E[x^2]), then ReLU.
    spread = info["biased"].fan_in * stats["biased"]["weight_variance"] * moment
    first, second = _relu_of_gaussian(3.0, spread)
    predicted = stats["biased"]["predicted_activation_variance"]
    assert predicted == pytest.approx(second - first * first, rel=1e-4)
    assert stats["biased"]["activation_variance"] == pytest.approx(predicted, rel=0.1)
    # Training-mode BN: 5 * z_hat + 2 per unit, so mean 2 and variance
    # 25 * v / (v + eps), v the variance it normalizes.
    v = stats["pre"]["predicted_activation_variance"]
    closed_form = 25.0 * v / (v + info["bn"].epsilon)
    assert stats["bn"]["predicted_activation_variance"] == pytest.approx(
        closed_form, rel=1e-6
    )
    assert stats["bn"]["activation_variance"] == pytest.approx(closed_form, rel=0.01)


def test_check_without_data_predicts_biases_gamma_and_beta():
    from keras_initdiag.diagnostics.predicted import predicted_report

    report = predicted_report(_biased_bn_model())
    bn = report.stats["bn"]
    assert bn["activation_mean"] == pytest.approx(2.0, rel=1e-6)
    assert bn["activation_variance"] == pytest.approx(25.0, rel=1e-3)
    assert report.stats["biased"]["activation_mean"] > 3.0  # relu(N(3, s))
