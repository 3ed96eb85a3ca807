"""A zoo of published, trainable architectures at small sizes.

Every entry is a model people actually train, built with its published
initializers (`weights=None` for `keras.applications`), small enough for a
CPU test: `keras.applications` ResNet50, MobileNetV2, MobileNetV3Small,
EfficientNetB0 (its squeeze-and-excite gates) and ConvNeXtTiny (LayerScale
1e-6) at 32x32, a 20-block conv-BN-ReLU ResNet, a Fixup ResNet (no normalization; each
branch's last convolution and the classifier zero-initialized), a He MLP with
a zero-initialized head (the muP readout), a post-LN Transformer encoder
written with `h + a`, LSTM and GRU text models with `mask_zero=True`, and a
model with integer ids and float features as inputs. At step 0 none of them
has a problem the diagnostics should flag. `tests/test_zoo.py` checks
exactly that; `benchmarks/overhead.py` times one diagnosis of each against
one train step.

Each model gets the inputs its documentation asks for. The
`keras.applications` models get pixels uniform in 0..255, as read from each
model's docstring:
- ResNet50: `keras.applications.resnet.preprocess_input` applied outside
  the model (RGB to BGR, each channel centred on the ImageNet mean, not
  scaled: about -124..152);
- MobileNetV2: `keras.applications.mobilenet_v2.preprocess_input` applied
  outside (scaled to -1..1);
- MobileNetV3Small: the raw 0..255 pixels (its `Rescaling` to -1..1 is
  inside the model);
- EfficientNetB0: the raw 0..255 pixels (its `Rescaling` and
  `Normalization` layers are inside the model);
- ConvNeXtTiny: the raw 0..255 pixels (its `Normalization` is inside).
The hand-built image models get standard-normal images (they have no
documented range: they stand for data already standardized), the text
models token ids with padding.

Failing models sit beside them: a 50-layer plain Dense-BN-ReLU network,
whose back-propagated gradient grows by about sqrt(pi / (pi - 1)) per layer
(Yang et al., ICLR 2019), the same 20-block ResNet without its
normalization layers, whose residual stream doubles its variance per block,
and a He MLP whose hidden layer (not the head) is all zeros.
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


def _pixels(size: int, module: str = "", classes: int = 10):
    """Pixels uniform in 0..255, preprocessed as the model's documentation asks.

    Args:
        size: Height and width.
        module: The `keras.applications` module whose `preprocess_input` the
            model expects applied outside it; `""` for models that take the
            raw pixels (their preprocessing is inside). Defaults to `""`.
        classes: Number of classes of the targets. Defaults to `10`.
    """

    def data(rng, n):
        x = rng.uniform(0.0, 255.0, (n, size, size, 3)).astype("float32")
        if module:
            preprocess = getattr(keras.applications, module).preprocess_input
            x = np.asarray(preprocess(x), dtype="float32")
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


def fixup_resnet(blocks: int = 8, width: int = 16) -> keras.Model:
    """A Fixup ResNet (Zhang et al., ICLR 2019), without normalization.

    Each branch's first convolution is He-initialized and scaled by
    `blocks ** -1/2` (Fixup's `L^(-1/(2m-2))` for two layers per branch),
    its last convolution and the classifier are zero-initialized, so every
    block starts as the identity. (Fixup's scalar biases and multipliers,
    initialized to 0 and 1, are left out: they do not change step 0.)
    """
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(
        width, 3, padding="same", activation="relu", kernel_initializer="he_normal"
    )(inputs)
    for _ in range(blocks):
        # One initializer per layer: a shared unseeded one draws the same kernel.
        first = keras.initializers.VarianceScaling(2.0 / blocks, "fan_in", "normal")
        r = keras.layers.Conv2D(
            width, 3, padding="same", activation="relu", kernel_initializer=first
        )(h)
        r = keras.layers.Conv2D(width, 3, padding="same", kernel_initializer="zeros")(r)
        h = keras.layers.ReLU()(h + r)
    h = keras.layers.GlobalAveragePooling2D()(h)
    head = keras.layers.Dense(10, kernel_initializer="zeros")(h)
    return _compile(keras.Model(inputs, head, name="fixup_resnet"))


def zero_head_mlp(depth: int = 8, width: int = 64, zero: str = "head"):
    """A He ReLU MLP with one zero-initialized layer.

    Args:
        depth: Hidden layers. Defaults to `8`.
        width: Their width. Defaults to `64`.
        zero: `"head"`: the classifier starts at zero (the muP readout,
            "zero-init the last layer"), healthy: its kernel gets a gradient
            at step 0. `"hidden"`: the middle hidden layer starts at zero,
            its units interchangeable (symmetry).
    """
    layers = [keras.Input((32,))]
    for i in range(depth):
        kernel = "zeros" if zero == "hidden" and i == depth // 2 else "he_normal"
        layers.append(
            keras.layers.Dense(width, activation="relu", kernel_initializer=kernel)
        )
    head = "zeros" if zero == "head" else "glorot_uniform"
    layers.append(keras.layers.Dense(10, kernel_initializer=head))
    return _compile(keras.Sequential(layers, name=f"zero_{zero}_mlp"))


def ids_and_features(vocab: int = 1000, length: int = 8, n_features: int = 16):
    """A recommender-style model: integer ids and float features as inputs."""
    ids = keras.Input((length,), dtype="int32", name="ids")
    features = keras.Input((n_features,), name="features")
    e = keras.layers.Embedding(vocab, 32)(ids)
    e = keras.layers.GlobalAveragePooling1D()(e)
    f = keras.layers.Dense(32, activation="relu", kernel_initializer="he_normal")(
        features
    )
    h = keras.layers.Concatenate()([e, f])
    h = keras.layers.Dense(64, activation="relu", kernel_initializer="he_normal")(h)
    model = keras.Model(
        [ids, features], keras.layers.Dense(10)(h), name="ids_and_features"
    )
    return _compile(model)


def _ids_and_features_data(vocab: int = 1000, length: int = 8, n_features: int = 16):
    def data(rng, n):
        ids = rng.integers(0, vocab, size=(n, length)).astype("int32")
        features = rng.standard_normal((n, n_features)).astype("float32")
        return [ids, features], rng.integers(0, 10, n)

    return data


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
    Entry("resnet50", application("ResNet50"), _pixels(32, "resnet")),
    Entry("mobilenet_v2", application("MobileNetV2"), _pixels(32, "mobilenet_v2")),
    Entry("mobilenet_v3_small", application("MobileNetV3Small"), _pixels(32)),
    Entry("efficientnet_b0", application("EfficientNetB0"), _pixels(32)),
    Entry("convnext_tiny", application("ConvNeXtTiny"), _pixels(32)),
    Entry("conv_resnet20", conv_resnet, _images(16)),
    Entry("fixup_resnet8", fixup_resnet, _images(16)),
    Entry("zero_head_mlp", zero_head_mlp, _vectors()),
    Entry("transformer_post_ln", transformer, _tokens(16, 100)),
    Entry("lstm_text", lambda: recurrent("LSTM"), _tokens(20, 200)),
    Entry("gru_text", lambda: recurrent("GRU"), _tokens(20, 200)),
    Entry("ids_and_features", ids_and_features, _ids_and_features_data()),
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
    (
        Entry("zero_hidden_mlp", lambda: zero_head_mlp(zero="hidden"), _vectors()),
        "symmetry",
    ),
)


def batch(entry: Entry, n: int = 32, seed: int = 0):
    """A batch of `n` samples for `entry`, generated with a fixed seed."""
    return entry.data(np.random.default_rng(seed), n)
