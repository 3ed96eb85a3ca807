"""A zoo of published, trainable architectures at small sizes.

Every entry is a model people actually train, built with its published
initializers (`weights=None` for `keras.applications`), small enough for a
CPU test: `keras.applications` ResNet50, MobileNetV2, EfficientNetB0 (its
squeeze-and-excite gates) and ConvNeXtTiny (LayerScale 1e-6) at 32x32, a
20-block conv-BN-ReLU ResNet, a post-LN Transformer encoder written with
`h + a`, and LSTM and GRU text models with `mask_zero=True`. At step 0 none
of them has a problem the diagnostics should flag. `tests/test_zoo.py` checks
exactly that; `benchmarks/overhead.py` times one diagnosis of each against
one train step.

Two failing models sit beside them: a 50-layer plain Dense-BN-ReLU network,
whose back-propagated gradient grows by about sqrt(pi / (pi - 1)) per layer
(Yang et al., ICLR 2019), and the same 20-block ResNet without its
normalization layers, whose residual stream doubles its variance per block.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import numpy as np


@dataclasses.dataclass(frozen=True)
class Entry:
    """One model of the zoo.

    Args:
        name: Short name.
        build: `() -> keras.Model`, compiled with a loss.
        data: `(rng, n) -> (x, y)`, a batch of `n` samples.
    """

    name: str
    build: Callable[[], keras.Model]
    data: Callable


def _images(size: int, classes: int = 10):
    def data(rng, n):
        x = rng.standard_normal((n, size, size, 3)).astype("float32")
        return x, rng.integers(0, classes, n)

    return data


def _tokens(length: int, vocab: int, classes: int = 10, pad: int = 3):
    def data(rng, n):
        x = rng.integers(1, vocab, size=(n, length)).astype("int32")
        x[:, length - pad :] = 0  # padding, masked
        return x, rng.integers(0, classes, n)

    return data


def _compile(model: keras.Model, from_logits: bool = True) -> keras.Model:
    model.compile(
        keras.optimizers.SGD(0.01, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
    )
    return model


def application(name: str, size: int = 32) -> Callable[[], keras.Model]:
    """`keras.applications.<name>(weights=None)` at `size` x `size`, 10 classes.

    Args:
        name: The application's class name, e.g. `"ResNet50"`.
        size: Input height and width. Defaults to `32`.

    Returns:
        A builder of the compiled model (softmax outputs).
    """

    def build() -> keras.Model:
        model = getattr(keras.applications, name)(
            weights=None, input_shape=(size, size, 3), classes=10
        )
        return _compile(model, from_logits=False)

    return build


def conv_resnet(blocks: int = 20, width: int = 16, normalize: bool = True):
    """A conv-BN-ReLU ResNet (He et al. 2016), He-initialized kernels.

    Args:
        blocks: Residual blocks of two 3x3 convolutions. Defaults to `20`.
        width: Channels. Defaults to `16`.
        normalize: BatchNormalization after every convolution. Defaults to
            `True`; without it the stream's variance doubles per block.
    """

    def conv(h):
        h = keras.layers.Conv2D(
            width,
            3,
            padding="same",
            use_bias=not normalize,
            kernel_initializer="he_normal",
        )(h)
        return keras.layers.BatchNormalization()(h) if normalize else h

    inputs = keras.Input((16, 16, 3))
    h = keras.layers.ReLU()(conv(inputs))
    for _ in range(blocks):
        r = conv(keras.layers.ReLU()(conv(h)))
        h = keras.layers.ReLU()(h + r)
    h = keras.layers.GlobalAveragePooling2D()(h)
    name = "conv_resnet" if normalize else "conv_resnet_unnormalized"
    return _compile(keras.Model(inputs, keras.layers.Dense(10)(h), name=name))


def transformer(blocks: int = 4, dim: int = 64, heads: int = 4, length: int = 16):
    """A post-LN Transformer encoder (Vaswani et al. 2017), residuals as `h + a`."""
    tokens = keras.Input((length,), dtype="int32")
    h = keras.layers.Embedding(100, dim)(tokens)
    for _ in range(blocks):
        a = keras.layers.MultiHeadAttention(heads, dim // heads)(h, h)
        h = keras.layers.LayerNormalization()(h + a)
        f = keras.layers.Dense(4 * dim, activation="relu")(h)
        f = keras.layers.Dense(dim)(f)
        h = keras.layers.LayerNormalization()(h + f)
    h = keras.layers.GlobalAveragePooling1D()(h)
    return _compile(keras.Model(tokens, keras.layers.Dense(10)(h), name="transformer"))


def recurrent(kind: str = "LSTM", length: int = 20, vocab: int = 200):
    """A two-layer LSTM or GRU text classifier with `mask_zero=True`."""
    tokens = keras.Input((length,), dtype="int32")
    h = keras.layers.Embedding(vocab, 32, mask_zero=True)(tokens)
    h = getattr(keras.layers, kind)(32, return_sequences=True)(h)
    h = getattr(keras.layers, kind)(32)(h)
    model = keras.Model(tokens, keras.layers.Dense(10)(h), name=kind.lower())
    return _compile(model)


def plain_bn(depth: int = 50, width: int = 64) -> keras.Model:
    """A plain Dense-BN-ReLU stack without skips: gradients explode (Yang)."""
    layers = [keras.Input((32,))]
    for _ in range(depth):
        layers += [
            keras.layers.Dense(width, use_bias=False, kernel_initializer="he_normal"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
        ]
    layers.append(keras.layers.Dense(10))
    return _compile(keras.Sequential(layers, name="plain_bn"))


def _vectors(n_features: int = 32, classes: int = 10):
    def data(rng, n):
        x = rng.standard_normal((n, n_features)).astype("float32")
        return x, rng.integers(0, classes, n)

    return data


#: Published architectures: no non-advisory flag at step 0.
HEALTHY: tuple[Entry, ...] = (
    Entry("resnet50", application("ResNet50"), _images(32)),
    Entry("mobilenet_v2", application("MobileNetV2"), _images(32)),
    Entry("efficientnet_b0", application("EfficientNetB0"), _images(32)),
    Entry("convnext_tiny", application("ConvNeXtTiny"), _images(32)),
    Entry("conv_resnet20", conv_resnet, _images(16)),
    Entry("transformer_post_ln", transformer, _tokens(16, 100)),
    Entry("lstm_text", lambda: recurrent("LSTM"), _tokens(20, 200)),
    Entry("gru_text", lambda: recurrent("GRU"), _tokens(20, 200)),
)
#: Known failures and the flag kind each must get.
FAILING: tuple[tuple[Entry, str], ...] = (
    (Entry("plain_bn50", plain_bn, _vectors()), "exploding"),
    (
        Entry(
            "conv_resnet20_unnormalized",
            lambda: conv_resnet(normalize=False),
            _images(16),
        ),
        "exploding",
    ),
)


def batch(entry: Entry, n: int = 32, seed: int = 0):
    """A batch of `n` samples for `entry`, generated with a fixed seed."""
    return entry.data(np.random.default_rng(seed), n)
