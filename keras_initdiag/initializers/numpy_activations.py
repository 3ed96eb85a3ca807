"""Keras's element-wise activations as NumPy functions, for host-side math.

The theory needs each node's activation on a few thousand quadrature points
at every diagnosis. Through Keras that is a dozen eager TensorFlow ops per
call; these are the same functions in float64 NumPy (agreeing with Keras's
float64 results to round-off), found by identity for Keras's functions, by
class for its activation layers. Any other callable is evaluated once
through Keras on a fixed grid and interpolated (`interpolated`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import keras
import numpy as np

#: SELU's constants, as Keras (and TensorFlow) define them.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
#: The interpolation grid of other callables: `sinh`-spaced, from about
#: 1.5e-4 apart around 0 to 1e6 at the ends; linear beyond (`interpolated`).
_GRID_POINTS = 200_001
_GRID_END = 1e6


def _sigmoid(x):
    small = np.exp(-np.abs(x))  # Never overflows.
    return np.where(x >= 0, 1.0, small) / (1.0 + small)


def _softplus(x):
    return np.logaddexp(0.0, x)


#: `erf` is tabulated on `[0, _ERF_END]` every `1 / _ERF_STEPS` and read by
#: linear interpolation (error below 2e-9; `1 - erf(6)` is 2e-17).
_ERF_END, _ERF_STEPS = 6.0, 10_000


@functools.cache
def _erf_table() -> np.ndarray:
    x = np.linspace(0.0, _ERF_END, int(_ERF_END * _ERF_STEPS) + 1)
    return np.frompyfunc(math.erf, 1, 1)(x).astype(np.float64)


def _erf(x):
    """`erf` of an array (NumPy has none), odd, by table."""
    table = _erf_table()
    scaled = np.minimum(np.abs(x), _ERF_END) * _ERF_STEPS
    index = np.minimum(scaled.astype(np.intp), len(table) - 2)
    low = table[index]
    return np.sign(x) * (low + (scaled - index) * (table[index + 1] - low))


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):  # noqa: D103
    y = np.where(x > threshold, x, 0.0) if threshold != 0 else np.maximum(x, 0.0)
    if max_value is not None:
        y = np.minimum(y, max_value)
    if negative_slope != 0:
        y = y - negative_slope * np.maximum(threshold - x, 0.0)
    return y


def elu(x, alpha=1.0):  # noqa: D103
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def celu(x, alpha=1.0):  # noqa: D103
    return np.maximum(x, 0.0) + alpha * np.expm1(np.minimum(x, 0.0) / alpha)


def gelu(x, approximate=False):  # noqa: D103
    if approximate:
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
        return 0.5 * x * (1.0 + np.tanh(inner))
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def hard_sigmoid(x):  # noqa: D103
    return np.clip(x + 3.0, 0.0, 6.0) / 6.0


#: Keras's function name -> its NumPy twin (same keyword arguments).
_TWINS: dict[str, Callable] = {
    "relu": relu,
    "leaky_relu": lambda x, negative_slope=0.2: np.where(x >= 0, x, negative_slope * x),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "elu": elu,
    "selu": lambda x: _SELU_SCALE * elu(x, _SELU_ALPHA),
    "celu": celu,
    "gelu": gelu,
    "silu": lambda x: x * _sigmoid(x),
    "mish": lambda x: x * np.tanh(_softplus(x)),
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "softplus": _softplus,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "hard_sigmoid": hard_sigmoid,
    "hard_silu": lambda x: x * hard_sigmoid(x),
    "hard_tanh": lambda x: np.clip(x, -1.0, 1.0),
    "linear": lambda x: x,
    "exponential": np.exp,
    "log_sigmoid": lambda x: -_softplus(-x),
    "tanh_shrink": lambda x: x - np.tanh(x),
    "squareplus": lambda x, b=4: (x + np.sqrt(x * x + b)) / 2.0,
    "soft_shrink": lambda x, threshold=0.5: (
        np.sign(x) * np.maximum(np.abs(x) - threshold, 0.0)
    ),
    "hard_shrink": lambda x, threshold=0.5: np.where(np.abs(x) > threshold, x, 0.0),
    "sparse_plus": lambda x: np.where(
        x <= -1, 0.0, np.where(x >= 1, x, 0.25 * (x + 1.0) ** 2)
    ),
    "sparse_sigmoid": lambda x: np.clip(0.5 * (x + 1.0), 0.0, 1.0),
}


@functools.cache
def _keras_functions() -> dict[int, str]:
    """`id` of each Keras activation function -> its name (aliases too)."""
    found = {}
    for name in _TWINS:
        function = getattr(keras.activations, name, None)
        if function is not None:
            found[id(function)] = name
    for alias in ("swish", "hard_swish"):
        function = getattr(keras.activations, alias, None)
        if function is not None and id(function) not in found:
            found[id(function)] = {"swish": "silu", "hard_swish": "hard_silu"}[alias]
    return found


def numpy_function(activation) -> Callable[[np.ndarray], np.ndarray] | None:
    """The NumPy twin of a Keras activation, or None when it has none.

    Args:
        activation: A Keras activation name or function (a
            `functools.partial` of one keeps its keywords), `None` (linear),
            or an `Activation`, `ReLU`, `LeakyReLU` or `ELU` layer.

    Returns:
        A float64 NumPy function of one array, or None for any other
        callable (see `interpolated`).

    Example:
    >>> relu6 = numpy_function(keras.layers.ReLU(max_value=6.0))
    >>> relu6(np.array([-1.0, 3.0, 9.0]))
    array([0., 3., 6.])
    """
    if activation is None or isinstance(activation, str):
        try:
            activation = keras.activations.get(activation)
        except (ValueError, TypeError):
            return None
    layers = keras.layers
    if isinstance(activation, layers.ReLU):
        return functools.partial(
            relu,
            negative_slope=float(activation.negative_slope),
            max_value=activation.max_value,
            threshold=float(activation.threshold),
        )
    if isinstance(activation, layers.LeakyReLU):
        slope = float(activation.negative_slope)
        return functools.partial(_TWINS["leaky_relu"], negative_slope=slope)
    if isinstance(activation, layers.ELU):
        return functools.partial(elu, alpha=float(activation.alpha))
    if isinstance(activation, layers.Activation):
        return numpy_function(activation.activation)
    keywords = {}
    while isinstance(activation, functools.partial) and not activation.args:
        keywords = {**activation.keywords, **keywords}
        activation = activation.func
    name = _keras_functions().get(id(activation))
    if name is None:
        return None
    twin = functools.partial(_TWINS[name], **keywords) if keywords else _TWINS[name]
    try:
        twin(np.zeros(1))
    except TypeError:  # A keyword this twin does not know.
        return None
    return twin


def interpolated(function: Callable) -> Callable[[np.ndarray], np.ndarray]:
    """Any element-wise callable, evaluated once through Keras, interpolated.

    The callable runs once on a fixed grid of `_GRID_POINTS` values
    (`sinh`-spaced: about 1.5e-4 apart near 0, wider far out, up to
    `+-_GRID_END`), in float64 where it accepts it, else float32. The
    returned function interpolates linearly (`np.interp`) and extends the
    end slopes beyond the grid. Error: about `h^2 / 8 * |phi''|` for a grid
    step `h`, below 3e-9 near 0 for a unit curvature.

    Args:
        function: An element-wise callable of a tensor.

    Returns:
        A float64 NumPy function of one array.

    Raises:
        ValueError: The callable fails on a float tensor or is not
            element-wise.

    Example:
    >>> phi = interpolated(lambda x: x * keras.ops.sigmoid(2.0 * x))
    >>> phi(np.array([0.0, 1.0]))  # about [0.0, 0.8808]
    """
    from keras_initdiag.initializers.activations import _evaluate

    u = np.linspace(-math.asinh(_GRID_END), math.asinh(_GRID_END), _GRID_POINTS)
    grid = np.sinh(u)
    values = _evaluate(function, grid)
    low = (values[1] - values[0]) / (grid[1] - grid[0])
    high = (values[-1] - values[-2]) / (grid[-1] - grid[-2])

    def phi(x: np.ndarray) -> np.ndarray:
        inside = np.interp(x, grid, values)
        below = values[0] + low * (x - grid[0])
        above = values[-1] + high * (x - grid[-1])
        return np.where(x < grid[0], below, np.where(x > grid[-1], above, inside))

    return phi
