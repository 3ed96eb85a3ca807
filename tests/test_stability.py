"""Textbook-healthy networks are judged the same on every random draw.

A verdict that flips between flagged and clean with the seed is no verdict.
Each network here is drawn with 10 seeds and must get no serious flag on any.
"""

import keras
import numpy as np
import pytest

import keras_initdiag
from keras_initdiag.diagnostics.rules import is_advisory

SEEDS = range(10)
RNG = np.random.default_rng(0)


def _serious(model, x, y):
    report = keras_initdiag.diagnose(model, x, y)
    return [(f.kind, f.layer, f.value) for f in report.flags if not is_advisory(f)]


def _conv30(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((32, 32, 3))]
        + [
            keras.layers.Conv2D(
                64, 3, padding="same", activation="relu", kernel_initializer="he_normal"
            )
            for _ in range(30)
        ]
        + [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]
    )
    model.compile(
        keras.optimizers.SGD(0.01, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _mlp20(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((32,))]
        + [
            keras.layers.Dense(256, activation="relu", kernel_initializer="he_normal")
            for _ in range(20)
        ]
        + [keras.layers.Dense(10)]
    )
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


@pytest.mark.slow
def test_a_30_layer_he_relu_conv_net_with_global_pooling_is_clean_on_every_seed():
    # Before global pooling ended the backward chain, 9 of 12 seeds got
    # "vanishing" 3e-4..8e-4 from the pooling's 1/1024 alone.
    x = RNG.standard_normal((16, 32, 32, 3)).astype("float32")
    y = RNG.integers(0, 10, 16)
    flagged = {seed: _serious(_conv30(seed), x, y) for seed in SEEDS}
    assert not any(flagged.values()), flagged


@pytest.mark.slow
def test_a_20_by_256_he_mlp_is_clean_on_every_seed():
    x = RNG.standard_normal((128, 32)).astype("float32")
    y = RNG.integers(0, 10, 128)
    flagged = {seed: _serious(_mlp20(seed), x, y) for seed in SEEDS}
    assert not any(flagged.values()), flagged
