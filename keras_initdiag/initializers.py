"""Weight initializers: the classic catalogue and an activation-aware chooser.

`SmallRandom` is the historical baseline. `Xavier`, `He` and `LeCun` are the
variance-scaling families; they delegate the sampling to
`keras.initializers.VarianceScaling` and `keras.initializers.Orthogonal`.
`Orthogonal` and `DeltaOrthogonal` give (semi-)orthogonal kernels.

`gain`, `for_activation`, `activation_name`, `initializer_family` and
`recommended_families` turn the rule of thumb "He for ReLU, Xavier for tanh,
LeCun for SELU, a measured gain otherwise" into code, from one table, so the
diagnostics flag a mismatch by the same rule that `for_activation` applies.

Every class is registered with Keras at import time under the package name
`keras_initdiag`, so `"keras_initdiag>He"` works as a layer argument and
`.keras` files load with `safe_mode=True`.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import random as python_random
from collections.abc import Callable

import keras
import numpy as np

_PACKAGE = "keras_initdiag"
_DISTRIBUTIONS = ("normal", "truncated_normal", "uniform", "orthogonal")
# Our distribution names -> `keras.initializers.VarianceScaling` names.
_KERAS_DISTRIBUTION = {
    "normal": "untruncated_normal",
    "truncated_normal": "truncated_normal",
    "uniform": "uniform",
}
_QUADRATURE_NODES = 100
# Stddev at or below which a fixed-scale random initializer counts as "small".
SMALL_STDDEV = 0.02

# The rule of thumb, one table. Activations missing here get a gain measured
# numerically (fan_in, `LeCun(gain=g)`) and no family recommendation.
_RELU_FAMILY = ("relu", "relu6", "leaky_relu", "elu")
_SQUASHING = ("tanh", "sigmoid", "hard_sigmoid", "hard_tanh", "softsign")
_RULES: dict[str, tuple[str, ...]] = {
    **{name: ("he",) for name in _RELU_FAMILY},
    **{name: ("xavier", "lecun") for name in _SQUASHING},
    "selu": ("lecun",),
}
# Not element-wise: treated as logits, gain 1, no rule.
_NOT_ELEMENTWISE = ("linear", "softmax", "log_softmax", "sparsemax", "glu")


def _register(cls):
    return keras.saving.register_keras_serializable(package=_PACKAGE)(cls)


# --------------------------------------------------------------------------
# Argument checks (Keras-style messages: what must hold, what was received).
# --------------------------------------------------------------------------


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Argument `{name}` must be a positive finite float. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"Argument `{name}` must be a positive finite float. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def _check_non_negative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Argument `{name}` must be a non-negative finite float. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"Argument `{name}` must be a non-negative finite float. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def _check_choice(name: str, value, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ValueError(
            f"Argument `{name}` must be one of {list(allowed)}. "
            f"Received: {name}={value!r}"
        )
    return value.lower()


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"Argument `{name}` must be a bool. Received: {name}={value!r}")
    return bool(value)


def _resolve_seed(seed):
    """Returns the seed to draw with: an int, or the user's SeedGenerator.

    Like Keras, `None` draws an int at construction (from Python's `random`,
    which `keras.utils.set_random_seed` seeds), so an unseeded instance
    repeats its values while two unseeded instances differ.
    """
    if isinstance(seed, dict):
        seed = keras.saving.deserialize_keras_object(seed)
    if seed is None:
        return python_random.randint(1, int(1e9))
    if isinstance(seed, keras.random.SeedGenerator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            "Argument `seed` must be None, an int or a "
            "`keras.random.SeedGenerator`. "
            f"Received: seed={seed!r} of type {type(seed).__name__}"
        )
    return int(seed)


class _SeededInitializer(keras.initializers.Initializer):
    """Seed handling shared by every initializer here (mirrors Keras)."""

    def __init__(self, seed=None):
        self._seed = _resolve_seed(seed)
        self.seed = seed

    def get_config(self):
        """Returns the constructor arguments as a JSON-serializable dict."""
        return {"seed": keras.saving.serialize_keras_object(self.seed)}


# --------------------------------------------------------------------------
# Small random baseline.
# --------------------------------------------------------------------------


@_register
class SmallRandom(_SeededInitializer):
    """Small random weights: the classic baseline before variance scaling.

    Draws from `N(0, scale**2)` (`distribution="normal"`) or from
    `U(-scale, scale)` (`distribution="uniform"`), whatever the layer size.
    Deep networks started this way see their signal shrink layer by layer;
    it is here as the reference point the other families improve on.

    Args:
        scale: Standard deviation (normal) or half-width (uniform). Defaults
            to `0.01`.
        distribution: `"normal"` or `"uniform"`. Defaults to `"normal"`.
        seed: An int, `None` or a `keras.random.SeedGenerator`. An int or
            `None` gives the same values on every call (`None` draws a seed
            at construction). Defaults to `None`.

    Example:
    ```python
    init = keras_initdiag.initializers.SmallRandom(scale=0.01, seed=0)
    layer = keras.layers.Dense(8, kernel_initializer=init)
    ```

    Reference:

    - [Glorot & Bengio, 2010](http://proceedings.mlr.press/v9/glorot10a.html)
    """

    def __init__(self, scale=0.01, distribution="normal", seed=None):
        self.scale = _check_positive("scale", scale)
        self.distribution = _check_choice(
            "distribution", distribution, ("normal", "uniform")
        )
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        """Returns a tensor of `shape` and `dtype` (default floatx)."""
        if self.distribution == "uniform":
            return keras.random.uniform(
                shape, -self.scale, self.scale, dtype=dtype, seed=self._seed
            )
        return keras.random.normal(
            shape, stddev=self.scale, dtype=dtype, seed=self._seed
        )

    def get_config(self):
        """Returns the constructor arguments as a JSON-serializable dict."""
        base_config = super().get_config()
        config = {"scale": self.scale, "distribution": self.distribution}
        return {**base_config, **config}


# --------------------------------------------------------------------------
# Variance-scaling families.
# --------------------------------------------------------------------------


def _depthwise_fans(shape) -> tuple[int, int]:
    """Fans of a depthwise kernel `(*spatial, channels, multiplier)`.

    Each output sees only its own channel, so the channel axis is left out
    of fan_in; fan_out is what one input reaches: spatial * multiplier.
    """
    if len(shape) < 3:
        raise ValueError(
            "With `depthwise=True` the kernel must have rank >= 3, "
            "`(*spatial, channels, multiplier)`. "
            f"Received: shape={tuple(shape)}"
        )
    receptive = math.prod(shape[:-2])
    return receptive, receptive * shape[-1]


class _VarianceFamily(_SeededInitializer):
    """Weights with variance `gain**2 * base_scale / fan` (fan from `mode`)."""

    mode = "fan_in"

    def __init__(self, distribution="normal", gain=1.0, seed=None, depthwise=False):
        self.distribution = _check_choice("distribution", distribution, _DISTRIBUTIONS)
        self.gain = _check_positive("gain", gain)
        self.depthwise = _check_bool("depthwise", depthwise)
        super().__init__(seed=seed)

    def _base_scale(self) -> float:
        return 1.0

    def variance(self, shape) -> float:
        """Target per-element variance of a kernel of this `shape`.

        Args:
            shape: The kernel shape.

        Returns:
            `gain**2 * base_scale / fan`, with the fan picked by the family's
            mode (fan_in, or fan_avg for `Xavier`) and computed as Keras does,
            except with `depthwise=True`.

        Example:
        ```python
        keras_initdiag.initializers.He().variance((100, 10))  # 0.02
        ```
        """
        shape = tuple(shape)
        if self.depthwise:
            fan_in, fan_out = _depthwise_fans(shape)
        else:
            # Same fans as Keras's VarianceScaling, for reporting only.
            fan_in, fan_out = _keras_fans(shape)
        fan = fan_in if self.mode == "fan_in" else (fan_in + fan_out) / 2.0
        return self.gain**2 * self._base_scale() / max(1.0, fan)

    def __call__(self, shape, dtype=None):
        """Returns a tensor of `shape` and `dtype` (default floatx)."""
        shape = tuple(shape)
        if self.distribution == "orthogonal":
            if len(shape) < 2:
                raise ValueError(
                    "The `orthogonal` distribution needs a kernel of rank >= 2. "
                    f"Received: shape={shape}"
                )
            # A (semi-)orthogonal (rows, cols) matrix has per-element mean
            # square 1 / max(rows, cols); rescale it to the target variance.
            rows, cols = math.prod(shape[:-1]), shape[-1]
            factor = math.sqrt(self.variance(shape) * max(rows, cols))
            ortho = keras.initializers.Orthogonal(gain=factor, seed=self._seed)
            return ortho(shape, dtype=dtype)
        if self.depthwise:
            # Keras's fans over-count a depthwise kernel by `channels`: fold
            # our own variance into `scale` and draw a (1, n) view (fan_in 1),
            # so Keras still does the sampling and truncation correction.
            initializer = keras.initializers.VarianceScaling(
                scale=self.variance(shape),
                mode="fan_in",
                distribution=_KERAS_DISTRIBUTION[self.distribution],
                seed=self._seed,
            )
            flat = initializer((1, math.prod(shape)), dtype=dtype)
            return keras.ops.reshape(flat, shape)
        initializer = keras.initializers.VarianceScaling(
            scale=self.gain**2 * self._base_scale(),
            mode=self.mode,
            distribution=_KERAS_DISTRIBUTION[self.distribution],
            seed=self._seed,
        )
        return initializer(shape, dtype=dtype)

    def get_config(self):
        """Returns the constructor arguments as a JSON-serializable dict."""
        base_config = super().get_config()
        config = {
            "distribution": self.distribution,
            "gain": self.gain,
            "depthwise": self.depthwise,
        }
        return {**base_config, **config}


def _keras_fans(shape) -> tuple[int, int]:
    """The fans Keras's `VarianceScaling` uses (no `input_axes`)."""
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


@_register
class Xavier(_VarianceFamily):
    """Xavier (Glorot) initializer: variance `gain**2 / fan_avg`.

    `fan_avg = (fan_in + fan_out) / 2`. Keeps both the forward signal and
    the back-propagated gradient near unit variance for tanh and sigmoid
    networks, and for linear layers.

    Args:
        distribution: One of `"normal"` (untruncated), `"truncated_normal"`
            (cut at two standard deviations, with the standard deviation
            corrected so the variance is still the target, as Keras's
            `VarianceScaling` does), `"uniform"` or `"orthogonal"` (an
            orthogonal matrix over the `(prod(shape[:-1]), shape[-1])` view,
            scaled to the target per-element variance). Defaults to
            `"normal"`.
        gain: Extra factor on the standard deviation (the variance is
            multiplied by `gain**2`). Defaults to `1.0`.
        seed: An int, `None` or a `keras.random.SeedGenerator`. An int or
            `None` gives the same values on every call (`None` draws a seed
            at construction). Defaults to `None`.
        depthwise: Leave the channel axis out of the fans, for
            `DepthwiseConv*D` kernels `(*spatial, channels, multiplier)`;
            Keras's fans over-count those by `channels`. Defaults to `False`.

    Example:
    ```python
    init = keras_initdiag.initializers.Xavier(distribution="uniform", seed=0)
    layer = keras.layers.Dense(8, activation="tanh", kernel_initializer=init)
    ```

    Reference:

    - [Glorot & Bengio, 2010](http://proceedings.mlr.press/v9/glorot10a.html)
    """

    mode = "fan_avg"


@_register
class LeCun(_VarianceFamily):
    """LeCun initializer: variance `gain**2 / fan_in`.

    The variance-preserving choice for SELU (self-normalizing networks) and,
    with a measured `gain`, for any activation (see `for_activation`).

    Args:
        distribution: One of `"normal"` (untruncated), `"truncated_normal"`
            (cut at two standard deviations, with the standard deviation
            corrected so the variance is still the target, as Keras's
            `VarianceScaling` does), `"uniform"` or `"orthogonal"` (an
            orthogonal matrix over the `(prod(shape[:-1]), shape[-1])` view,
            scaled to the target per-element variance). Defaults to
            `"normal"`.
        gain: Extra factor on the standard deviation (the variance is
            multiplied by `gain**2`). Defaults to `1.0`.
        seed: An int, `None` or a `keras.random.SeedGenerator`. An int or
            `None` gives the same values on every call (`None` draws a seed
            at construction). Defaults to `None`.
        depthwise: Leave the channel axis out of the fans, for
            `DepthwiseConv*D` kernels `(*spatial, channels, multiplier)`;
            Keras's fans over-count those by `channels`. Defaults to `False`.

    Example:
    ```python
    init = keras_initdiag.initializers.LeCun(seed=0)
    layer = keras.layers.Dense(8, activation="selu", kernel_initializer=init)
    ```

    Reference:

    - [LeCun et al., 1998](http://yann.lecun.com/exdb/publis/pdf/lecun-98b.pdf)
    - [Klambauer et al., 2017](https://arxiv.org/abs/1706.02515)
    """


@_register
class He(_VarianceFamily):
    """He (Kaiming) initializer: variance `gain**2 * 2 / ((1 + a**2) fan_in)`.

    `a` is `negative_slope`: 0 for ReLU, the leak for leaky ReLU (Keras 3's
    `leaky_relu` default is 0.2). Keeps the forward signal at constant
    variance through ReLU layers, which zero half of their input.

    Args:
        distribution: One of `"normal"` (untruncated), `"truncated_normal"`
            (cut at two standard deviations, with the standard deviation
            corrected so the variance is still the target, as Keras's
            `VarianceScaling` does), `"uniform"` or `"orthogonal"` (an
            orthogonal matrix over the `(prod(shape[:-1]), shape[-1])` view,
            scaled to the target per-element variance). Defaults to
            `"normal"`.
        gain: Extra factor on the standard deviation (the variance is
            multiplied by `gain**2`). Defaults to `1.0`.
        seed: An int, `None` or a `keras.random.SeedGenerator`. An int or
            `None` gives the same values on every call (`None` draws a seed
            at construction). Defaults to `None`.
        depthwise: Leave the channel axis out of the fans, for
            `DepthwiseConv*D` kernels `(*spatial, channels, multiplier)`;
            Keras's fans over-count those by `channels`. Defaults to `False`.
        negative_slope: Slope `a` of the leaky ReLU for negative inputs.
            Defaults to `0.0`.

    Example:
    ```python
    init = keras_initdiag.initializers.He(negative_slope=0.2, seed=0)
    layer = keras.layers.Dense(8, activation="leaky_relu", kernel_initializer=init)
    ```

    Reference:

    - [He et al., 2015](https://arxiv.org/abs/1502.01852)
    """

    def __init__(
        self,
        distribution="normal",
        gain=1.0,
        seed=None,
        depthwise=False,
        negative_slope=0.0,
    ):
        self.negative_slope = _check_non_negative("negative_slope", negative_slope)
        super().__init__(
            distribution=distribution, gain=gain, seed=seed, depthwise=depthwise
        )

    def _base_scale(self) -> float:
        return 2.0 / (1.0 + self.negative_slope**2)

    def get_config(self):
        """Returns the constructor arguments as a JSON-serializable dict."""
        base_config = super().get_config()
        config = {"negative_slope": self.negative_slope}
        return {**base_config, **config}


# --------------------------------------------------------------------------
# Orthogonal kernels.
# --------------------------------------------------------------------------


@_register
class Orthogonal(_SeededInitializer):
    """(Semi-)orthogonal kernel times `gain`, for any rank >= 2.

    The kernel is viewed as a `(prod(shape[:-1]), shape[-1])` matrix `W`
    with orthonormal columns (`W^T W = gain**2 I`) when it has at least as
    many rows as columns, and orthonormal rows otherwise. Wraps
    `keras.initializers.Orthogonal`.

    Args:
        gain: Factor on the orthogonal matrix. Defaults to `1.0`.
        seed: An int, `None` or a `keras.random.SeedGenerator`. An int or
            `None` gives the same values on every call (`None` draws a seed
            at construction). Defaults to `None`.

    Example:
    ```python
    init = keras_initdiag.initializers.Orthogonal(gain=2**0.5, seed=0)
    layer = keras.layers.Dense(8, activation="relu", kernel_initializer=init)
    ```

    Reference:

    - [Saxe et al., 2014](https://arxiv.org/abs/1312.6120)
    """

    def __init__(self, gain=1.0, seed=None):
        self.gain = _check_positive("gain", gain)
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        """Returns a tensor of `shape` and `dtype` (default floatx)."""
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError(
                "`Orthogonal` needs a kernel of rank >= 2. "
                f"Received: shape={shape} of rank {len(shape)}"
            )
        ortho = keras.initializers.Orthogonal(gain=self.gain, seed=self._seed)
        return ortho(shape, dtype=dtype)

    def get_config(self):
        """Returns the constructor arguments as a JSON-serializable dict."""
        base_config = super().get_config()
        return {**base_config, "gain": self.gain}


def centre_tap(shape) -> tuple[int, ...]:
    """Index of the spatial tap that `DeltaOrthogonal` fills.

    It is `(k - 1) // 2` along each spatial axis: the middle for odd `k`, and
    for even `k` the lower of the two middle taps, which is the tap Keras's
    `padding="same"` aligns with the output position (TensorFlow pads the
    extra element after), so the convolution does not shift its input.

    Args:
        shape: A 3-, 4- or 5-D kernel shape `(*spatial, in, out)`.

    Returns:
        A tuple of spatial indices.

    Example:
    ```python
    keras_initdiag.initializers.centre_tap((3, 4, 8, 8))  # (1, 1)
    ```
    """
    return tuple((k - 1) // 2 for k in tuple(shape)[:-2])


@_register
class DeltaOrthogonal(_SeededInitializer):
    """Delta-orthogonal convolution kernel: orthogonal centre tap, zeros elsewhere.

    For a 1-, 2- or 3-D convolution kernel `(*spatial, in, out)`, the tap at
    `centre_tap(shape)` holds an `(in, out)` matrix with orthonormal rows
    times `gain`, and every other tap is exactly zero. At initialization the
    convolution is then a norm-preserving channel map, which lets very deep
    plain CNNs train (dynamical isometry). Needs `in <= out`.

    Args:
        gain: Factor on the orthogonal block. Defaults to `1.0`.
        seed: An int, `None` or a `keras.random.SeedGenerator`. An int or
            `None` gives the same values on every call (`None` draws a seed
            at construction). Defaults to `None`.

    Example:
    ```python
    init = keras_initdiag.initializers.DeltaOrthogonal(seed=0)
    layer = keras.layers.Conv2D(16, 3, padding="same", kernel_initializer=init)
    ```

    Reference:

    - [Xiao et al., 2018](https://arxiv.org/abs/1806.05393)
    """

    def __init__(self, gain=1.0, seed=None):
        self.gain = _check_positive("gain", gain)
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        """Returns a tensor of `shape` and `dtype` (default floatx)."""
        shape = tuple(shape)
        if len(shape) not in (3, 4, 5):
            raise ValueError(
                "`DeltaOrthogonal` needs a 3-, 4- or 5-D convolution kernel "
                f"`(*spatial, in, out)`. Received: shape={shape}"
            )
        n_in, n_out = shape[-2], shape[-1]
        if n_in > n_out:
            raise ValueError(
                "`DeltaOrthogonal` needs in_channels <= out_channels "
                "(an orthogonal map cannot shrink the channel count). "
                f"Received: shape={shape}"
            )
        ortho = keras.initializers.Orthogonal(gain=self.gain, seed=self._seed)
        block = ortho((n_in, n_out), dtype=dtype)
        mask = np.zeros(shape[:-2] + (1, 1), dtype="float32")
        mask[centre_tap(shape)] = 1.0
        mask = keras.ops.convert_to_tensor(mask, dtype=block.dtype)
        return mask * block

    def get_config(self):
        """Returns the constructor arguments as a JSON-serializable dict."""
        base_config = super().get_config()
        return {**base_config, "gain": self.gain}


# --------------------------------------------------------------------------
# Activation-aware rule.
# --------------------------------------------------------------------------


def _unwrap(activation):
    """Returns `(function, keywords)` for plain and `functools.partial` ones."""
    keywords = {}
    while isinstance(activation, functools.partial):
        keywords = {**activation.keywords, **keywords}
        activation = activation.func
    return activation, keywords


def activation_name(activation) -> str:
    """Canonical lower-case name of an activation.

    Args:
        activation: A Keras activation name (`"relu"`, `"swish"`, ...), a
            `keras.activations` function, `None` (linear), or any callable
            (a `functools.partial` is named after its function).

    Returns:
        Keras's name for built-ins (aliases resolved, so `"swish"` gives
        `"silu"`), otherwise the callable's `__name__` (or its class name).

    Raises:
        ValueError: For an unknown activation name.
        TypeError: For anything that is neither a string nor callable.

    Example:
    ```python
    keras_initdiag.initializers.activation_name(keras.activations.relu)  # "relu"
    ```
    """
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        try:
            function = keras.activations.get(activation)
        except (ValueError, TypeError) as error:
            raise ValueError(
                "Argument `activation` must be a Keras activation name such "
                'as "relu", "leaky_relu", "tanh", "sigmoid", "selu", "gelu", '
                '"silu", "linear" or "softmax", or a callable. '
                f"Received: activation={activation!r}"
            ) from error
        return function.__name__.lower()
    if not callable(activation):
        raise TypeError(
            "Argument `activation` must be a string or a callable. "
            f"Received: activation={activation!r} of type "
            f"{type(activation).__name__}"
        )
    function, _ = _unwrap(activation)
    name = getattr(function, "__name__", None) or type(function).__name__
    return name.lower()


def _negative_slope(activation) -> float:
    """Leak of a `leaky_relu` activation, Keras's default when not given."""
    if isinstance(activation, str):
        activation = keras.activations.get(activation)
    function, keywords = _unwrap(activation)
    if "negative_slope" in keywords:
        return float(keywords["negative_slope"])
    if hasattr(function, "negative_slope"):  # e.g. a LeakyReLU layer
        return float(function.negative_slope)
    parameter = inspect.signature(function).parameters.get("negative_slope")
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return 0.2
    return float(parameter.default)


def recommended_families(activation) -> tuple[str, ...]:
    """Initializer families that suit `activation`, by the rule of thumb.

    - ReLU family (`relu`, `relu6`, `leaky_relu`, `elu`): `("he",)`.
    - Squashing (`tanh`, `sigmoid`, `hard_sigmoid`, `hard_tanh`,
      `softsign`): `("xavier", "lecun")`; `for_activation` picks Xavier.
    - `selu`: `("lecun",)`.
    - Everything else, including `linear`, `softmax`, GELU, SiLU and custom
      callables: `()`, meaning no family rule applies (any fan_in family
      with the right gain fits), so no mismatch should be flagged.

    This is the table `for_activation` uses.

    Args:
        activation: A Keras activation name, function or callable.

    Returns:
        A tuple of family names as returned by `initializer_family`.

    Example:
    ```python
    keras_initdiag.initializers.recommended_families("tanh")  # ("xavier", "lecun")
    ```
    """
    return _RULES.get(activation_name(activation), ())


def _as_function(activation) -> Callable:
    if activation is None or isinstance(activation, str):
        return keras.activations.get(activation)
    return activation


def _second_moment(activation) -> float:
    """`E[phi(z)**2]`, `z ~ N(0, 1)`, by Gauss-Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(_QUADRATURE_NODES)
    weights = weights / math.sqrt(2.0 * math.pi)
    function = _as_function(activation)
    try:
        values = function(keras.ops.convert_to_tensor(nodes, dtype="float32"))
        values = np.asarray(keras.ops.convert_to_numpy(values), dtype="float64")
    except Exception as error:
        raise ValueError(
            "Argument `activation` must map a float32 tensor to a tensor of "
            f"the same shape. Received: activation={activation!r}, which "
            f"raised {type(error).__name__}: {error}"
        ) from error
    if values.shape != nodes.shape:
        raise ValueError(
            "Argument `activation` must be element-wise (same output shape "
            f"as its input). Received: activation={activation!r}, mapping "
            f"shape {nodes.shape} to {values.shape}"
        )
    moment = float(np.sum(weights * values**2))
    if not math.isfinite(moment) or moment <= 1e-12:
        raise ValueError(
            "Argument `activation` must have a finite, non-zero second "
            f"moment E[phi(z)^2] under z ~ N(0, 1). Received: "
            f"activation={activation!r} with E[phi(z)^2]={moment}"
        )
    return moment


def gain(activation) -> float:
    """Standard-deviation gain that keeps the forward signal's scale.

    - ReLU family: `sqrt(2 / (1 + a**2))` with `a` the leak (0 for `relu`,
      `relu6` and `elu`; the partial's or Keras's default, 0.2, for
      `leaky_relu`). He et al. used this gain for ELU too.
    - Squashing (tanh, sigmoid, ...), `selu`, `linear`, `softmax`: `1.0`;
      these are used with Xavier (squashing) or LeCun (SELU) as they are.
    - Anything else, custom callables included: `1 / sqrt(E[phi(z)**2])`,
      `z ~ N(0, 1)`, measured by Gauss-Hermite quadrature, so a fan_in
      initializer with this gain keeps `E[y**2]` of the next layer at 1.

    Args:
        activation: A Keras activation name, function or callable.

    Returns:
        The gain, a positive float.

    Raises:
        ValueError: For an unknown name, or a callable that fails on a
            tensor, is not element-wise, or has a zero or non-finite second
            moment.
        TypeError: For anything that is neither a string nor callable.

    Example:
    ```python
    keras_initdiag.initializers.gain("relu")  # 1.4142...
    keras_initdiag.initializers.gain("gelu")  # measured, about 1.53
    ```
    """
    name = activation_name(activation)
    if name == "leaky_relu":
        return math.sqrt(2.0 / (1.0 + _negative_slope(activation) ** 2))
    if name in _RELU_FAMILY:
        return math.sqrt(2.0)
    if name in _RULES or name in _NOT_ELEMENTWISE:
        return 1.0
    return 1.0 / math.sqrt(_second_moment(activation))


def for_activation(activation, distribution="normal", seed=None):
    """The initializer the rule of thumb picks for `activation`.

    `He` for the ReLU family (with the leak of a `leaky_relu`), `Xavier` for
    squashing activations (tanh, sigmoid, ...), `LeCun` for SELU, and
    `LeCun(gain=gain(activation))` for everything else (gain 1 for linear
    and softmax). Same table as `recommended_families`.

    Args:
        activation: A Keras activation name, function or callable.
        distribution: `"normal"`, `"truncated_normal"`, `"uniform"` or
            `"orthogonal"`. Defaults to `"normal"`.
        seed: An int, `None` or a `keras.random.SeedGenerator`. Defaults to
            `None`.

    Returns:
        An `He`, `Xavier` or `LeCun` instance.

    Raises:
        ValueError: As `gain`, or for an unknown `distribution`.
        TypeError: As `gain`, or for a bad `seed` type.

    Example:
    ```python
    init = keras_initdiag.initializers.for_activation("gelu", seed=0)
    layer = keras.layers.Dense(8, activation="gelu", kernel_initializer=init)
    ```
    """
    families = recommended_families(activation)
    name = activation_name(activation)
    if families == ("he",):
        slope = _negative_slope(activation) if name == "leaky_relu" else 0.0
        return He(distribution=distribution, seed=seed, negative_slope=slope)
    if families and families[0] == "xavier":
        return Xavier(distribution=distribution, seed=seed)
    return LeCun(distribution=distribution, gain=gain(activation), seed=seed)


# --------------------------------------------------------------------------
# Classifying initializers.
# --------------------------------------------------------------------------

_OUR_FAMILIES = (
    (He, "he"),
    (Xavier, "xavier"),
    (LeCun, "lecun"),
    (SmallRandom, "small_random"),
    (DeltaOrthogonal, "delta_orthogonal"),
    (Orthogonal, "orthogonal"),
)


# `Identity` is a (semi-)orthogonal matrix times `gain`; look it up by name
# so an older Keras 3 without it still imports.
_KERAS_ORTHOGONAL = tuple(
    getattr(keras.initializers, name)
    for name in ("Orthogonal", "Identity")
    if hasattr(keras.initializers, name)
)


def _variance_scaling_family(scale: float, mode: str) -> str:
    for target, target_mode, family in (
        (2.0, "fan_in", "he"),
        (1.0, "fan_avg", "xavier"),
        (1.0, "fan_in", "lecun"),
    ):
        if mode == target_mode and math.isclose(scale, target, rel_tol=1e-6):
            return family
    return "unknown"


def _fixed_scale_family(stddev: float) -> str:
    return "small_random" if abs(stddev) <= SMALL_STDDEV else "random"


def initializer_family(initializer) -> str:
    """Classify an initializer into the family the rule of thumb talks about.

    Returns one of `"he"`, `"xavier"`, `"lecun"`, `"orthogonal"`,
    `"delta_orthogonal"`, `"constant"` (`Zeros`, `Ones`, `Constant`),
    `"small_random"` (`SmallRandom`, or `RandomNormal`, `TruncatedNormal`,
    `RandomUniform` with a standard deviation of at most `SMALL_STDDEV`),
    `"random"` (those with a larger one) or `"unknown"`. Keras's
    `VarianceScaling` (and so Glorot*, He*, Lecun*) is classified from
    `(scale, mode)`: `(2, fan_in)` is He, `(1, fan_avg)` Xavier,
    `(1, fan_in)` LeCun, anything else unknown. Keras's `Identity` counts as
    orthogonal. Our `He`, `Xavier` and `LeCun` keep their family whatever
    their gain or distribution.

    Args:
        initializer: An initializer object, class, config dict or name
            (e.g. `"he_normal"` or `"keras_initdiag>He"`).

    Returns:
        The family name.

    Example:
    ```python
    keras_initdiag.initializers.initializer_family("glorot_uniform")  # "xavier"
    ```
    """
    if isinstance(initializer, (str, dict, type)):
        try:
            initializer = keras.initializers.get(initializer)
        except (ValueError, TypeError):
            return "unknown"
    for cls, family in _OUR_FAMILIES:
        if isinstance(initializer, cls):
            return family
    inits = keras.initializers
    if isinstance(initializer, (inits.Zeros, inits.Ones, inits.Constant)):
        return "constant"
    if isinstance(initializer, _KERAS_ORTHOGONAL):
        return "orthogonal"
    if isinstance(initializer, inits.VarianceScaling):
        return _variance_scaling_family(initializer.scale, initializer.mode)
    if isinstance(initializer, (inits.RandomNormal, inits.TruncatedNormal)):
        return _fixed_scale_family(float(initializer.stddev))
    if isinstance(initializer, inits.RandomUniform):
        width = float(initializer.maxval) - float(initializer.minval)
        return _fixed_scale_family(width / math.sqrt(12.0))
    return "unknown"
