"""Facts about one layer call that the rules and signal-propagation theory need.

What a layer does, judged by its class (`isinstance` against the public
Keras classes, never a class name) and through its wrappers (`unwrapped`):
whether it normalizes (`NORMALIZATION_LAYERS`) or preprocesses
(`PREPROCESSING_LAYERS`). How the theory carries a
node's second moment through it (`propagation`), a convolution's effective
fan-in (its border outputs sum over fewer inputs), a normalization layer's
epsilon, a dropout layer's rate, and the bias and scale variables whose
second moments enter the prediction. Read once per model, from the layer's
configuration and static shapes.
"""

from __future__ import annotations

import math

import keras

from keras_initdiag import _fans
from keras_initdiag.layers.whitening import Whitening

_L = keras.layers


def _classes(*names: str) -> tuple[type, ...]:
    """The public `keras.layers` classes of these names this Keras has."""
    return tuple(getattr(_L, name) for name in names if hasattr(_L, name))


#: Layers that normalize what they see (per batch, sample or group): their
#: output scale is set by design, and they change how gradients compound.
NORMALIZATION_LAYERS: tuple[type, ...] = _classes(
    "BatchNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "UnitNormalization",
    "RMSNormalization",
)
#: Preprocessing layers (in the model, e.g. a `keras.applications` model's
#: `Rescaling` and `Normalization` of 0-255 pixels): their output scale is
#: set by design (a fixed rescaling, statistics adapted from data, an image
#: operation, a spectrogram, an encoding), so, like a model input, they
#: start a segment of the signal's path.
PREPROCESSING_LAYERS: tuple[type, ...] = _classes(
    "Rescaling",
    "Normalization",
    "Resizing",
    "CenterCrop",
    "RandomCrop",
    "RandomFlip",
    "RandomRotation",
    "RandomTranslation",
    "RandomZoom",
    "RandomShear",
    "RandomPerspective",
    "RandomElasticTransform",
    "RandomErasing",
    "RandomContrast",
    "RandomBrightness",
    "RandomColorDegeneration",
    "RandomColorJitter",
    "RandomGaussianBlur",
    "RandomGrayscale",
    "RandomHue",
    "RandomInvert",
    "RandomPosterization",
    "RandomSaturation",
    "RandomSharpness",
    "AugMix",
    "AutoContrast",
    "CutMix",
    "Equalization",
    "ContrastLimitedAdaptiveHistogramEqualization",
    "MixUp",
    "RandAugment",
    "Solarization",
    "MelSpectrogram",
    "STFTSpectrogram",
    "CategoryEncoding",
    "Pipeline",
) + (Whitening,)


def unwrapped(layer):
    """The layer that does the work inside wrappers.

    A `keras.layers.Wrapper` (`SpectralNormalization`, `TimeDistributed`)
    is judged by the layer it wraps, a `Bidirectional` by its forward layer
    (both directions are built alike); any other layer is itself.
    """
    while True:
        if isinstance(layer, _L.Bidirectional):
            layer = layer.forward_layer
        elif isinstance(layer, _L.Wrapper):
            layer = layer.layer
        else:
            return layer


def is_normalization(layer) -> bool:
    """Whether a layer (or the layer it wraps) normalizes what it sees."""
    return isinstance(unwrapped(layer), NORMALIZATION_LAYERS)


def normalizes_kernel(layer) -> bool:
    """Whether a layer divides its kernel by its spectral norm when training."""
    return isinstance(layer, _classes("SpectralNormalization"))


#: Pooling layers: each output reduces a window (or the whole map) of its
#: input. Averaging k inputs divides the gradient energy `E[x^2] E||dL/dx||^2`
#: by about k (a global pooling of a 32 x 32 map by ~1024) by construction,
#: which is no law of depth.
REDUCTION_LAYERS: tuple[type, ...] = _classes(
    *(
        f"{kind}Pooling{dims}D"
        for kind in ("GlobalAverage", "GlobalMax", "Average", "Max")
        for dims in (1, 2, 3)
    )
)


def is_reduction(layer) -> bool:
    """Whether a layer (or the layer it wraps) is a pooling layer."""
    return isinstance(unwrapped(layer), REDUCTION_LAYERS)


def is_preprocessing(layer) -> bool:
    """Whether a layer (or the layer it wraps) is a preprocessing layer."""
    return isinstance(unwrapped(layer), PREPROCESSING_LAYERS)


#: How the theory passes a node, by layer class (see `theory.py`).
_PROPAGATION: tuple[tuple[tuple, str], ...] = (
    ((_L.BatchNormalization,), "batch_norm"),
    ((_L.LayerNormalization, _L.GroupNormalization), "layer_norm"),
    (
        tuple(getattr(_L, name) for name in ("RMSNormalization",) if hasattr(_L, name)),
        "rms_norm",
    ),
    (
        (_L.Dropout, _L.SpatialDropout1D, _L.SpatialDropout2D, _L.SpatialDropout3D),
        "dropout",
    ),
    ((_L.GaussianDropout,), "dropout"),
    ((_L.Embedding,), "embedding"),
    ((_L.Activation, _L.ReLU, _L.LeakyReLU, _L.ELU), "activation"),
    (
        (
            _L.Dense,
            _L.EinsumDense,
            _L.Conv1D,
            _L.Conv2D,
            _L.Conv3D,
            _L.DepthwiseConv1D,
            _L.DepthwiseConv2D,
            _L.Conv1DTranspose,
            _L.Conv2DTranspose,
            _L.Conv3DTranspose,
        ),
        "linear",
    ),
    (
        (_L.Flatten, _L.Reshape, _L.Permute, _L.Identity, _L.InputLayer),
        "identity",
    ),
)
_CONVOLUTIONS = (
    _L.Conv1D,
    _L.Conv2D,
    _L.Conv3D,
    _L.DepthwiseConv1D,
    _L.DepthwiseConv2D,
)


def propagation(op, kind: str) -> str:
    """How the theory passes this node (`""`: no theory applies).

    Merges and inputs are passed by their kind; layers by their class:
    `"linear"` (a weighted linear map, then its activation), `"activation"`,
    `"batch_norm"`, `"layer_norm"`, `"rms_norm"`, `"dropout"`,
    `"embedding"`, `"identity"`. A wrapper passes as the layer it wraps,
    except `SpectralNormalization`, which divides the kernel by its largest
    singular value (no mean-field map of the kernel as drawn describes it).
    """
    if kind in ("input", "merge"):
        return kind
    if isinstance(op, _classes("SpectralNormalization")):
        return ""
    op = unwrapped(op)
    for classes, name in _PROPAGATION:
        if classes and isinstance(op, classes):
            if name == "activation" and _is_softmax(op):
                return ""
            return name
    return ""


def _is_softmax(layer) -> bool:
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") in ("softmax", "log_softmax")


def effective_fan_in(layer, fan_in: float, input_tensor) -> float:
    """A convolution's fan-in averaged over its outputs, borders included.

    Args:
        layer: The layer.
        fan_in: Its nominal forward fan-in (`_fans.forward_fans`).
        input_tensor: Its symbolic input (for the spatial lengths).

    Returns:
        `fan_in` scaled by the mean fraction of kernel taps that land inside
        the input along each spatial axis; `fan_in` for other layers or
        unknown lengths.
    """
    layer = unwrapped(layer)
    if not isinstance(layer, _CONVOLUTIONS) or input_tensor is None:
        return float(fan_in)
    shape = tuple(input_tensor.shape)
    channels_first = getattr(layer, "data_format", "") == "channels_first"
    spatial = shape[2:] if channels_first else shape[1:-1]
    kernel = tuple(layer.kernel_size)
    if len(spatial) != len(kernel) or None in spatial:
        return float(fan_in)
    strides = tuple(layer.strides)
    dilation = tuple(getattr(layer, "dilation_rate", (1,) * len(kernel)))
    factor = 1.0
    for length, k, s, d in zip(spatial, kernel, strides, dilation):
        factor *= _fans.valid_taps(length, k, s, d, layer.padding) / k
    return float(fan_in) * factor


def units(tensor) -> int:
    """Width of the last axis (the units), 0 when unknown."""
    if tensor is None or not tensor.shape or tensor.shape[-1] is None:
        return 0
    return int(tensor.shape[-1])


def epsilon(layer) -> float:
    """A normalization layer's epsilon (0 for other layers)."""
    value = getattr(unwrapped(layer), "epsilon", 0.0)
    return float(value) if isinstance(value, (int, float)) else 0.0


def rate(layer) -> float:
    """A dropout layer's rate (0 for other layers)."""
    value = getattr(unwrapped(layer), "rate", 0.0)
    if isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value < 1:
        return float(value)
    return 0.0


def bias_and_scale(layer) -> tuple:
    """The variables added (bias, beta) and multiplied (gamma, scale) last."""
    if layer is None or isinstance(layer, keras.Model):
        return None, None
    layer = unwrapped(layer)
    bias = getattr(layer, "bias", None)
    if bias is None:
        bias = getattr(layer, "beta", None)
    scale = getattr(layer, "gamma", None)
    if scale is None:
        scale = getattr(layer, "scale", None)
    variables = [v if isinstance(v, keras.Variable) else None for v in (bias, scale)]
    return tuple(variables)
