"""The activation rule: which initializer and gain suit an activation.

`activation_name`, `recommended_families`, `gain` and `for_activation` turn
the rule of thumb "He for ReLU, Xavier for tanh, LeCun for SELU, a measured
gain otherwise" into code, from one table, so the diagnostics flag a
mismatch by the same rule that `for_activation` applies.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable

import keras
import numpy as np

from keras_initdiag import _checks
from keras_initdiag.initializers.numpy_activations import numpy_function
from keras_initdiag.initializers.variance import He, LeCun, Xavier

#: Points of the quadrature grid (odd, for Simpson's rule; 0 is a node).
_GRID = 20001

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


def _evaluate(activation, points: np.ndarray) -> np.ndarray:
    """`activation` on the points, as float64 (ValueError if it cannot).

    Evaluated in float64 where the activation accepts it (very small or very
    large scales lose their precision in float32), else in float32.
    """
    function = _as_function(activation)
    try:
        try:
            values = function(keras.ops.convert_to_tensor(points, dtype="float64"))
        except Exception:  # noqa: BLE001 - float32-only activations.
            values = function(keras.ops.convert_to_tensor(points, dtype="float32"))
        values = np.asarray(keras.ops.convert_to_numpy(values), dtype="float64")
    except Exception as error:
        raise ValueError(
            "Argument `activation` must map a float32 tensor to a tensor of "
            f"the same shape. Received: activation={activation!r}, which "
            f"raised {type(error).__name__}: {error}"
        ) from error
    if values.shape != points.shape:
        raise ValueError(
            "Argument `activation` must be element-wise (same output shape "
            f"as its input). Received: activation={activation!r}, mapping "
            f"shape {points.shape} to {values.shape}"
        )
    return values


def gaussian_moments(
    activation, mean: float = 0.0, variance: float = 1.0, points: int = _GRID
):
    """`(E[phi(z)], E[phi(z)^2], E[phi(z)^4])` for `z ~ N(mean, variance)`.

    Composite Simpson quadrature on a fine grid (`_GRID` points over
    +-10 standard deviations): accurate to about 1e-7 for smooth activations
    and for kinks alike. (Gauss-Hermite quadrature, exact for smooth
    functions, loses about three digits at a kink: with 100 nodes it puts
    ReLU's variance gain at 1.7162 instead of 1.712859.) Keras's built-in
    activations run as their NumPy twins (`numpy_activations`), without a
    TensorFlow op; any other callable runs once through Keras on the grid.

    Args:
        activation: A Keras activation name, function or callable.
        mean: Mean of the Gaussian input. Defaults to `0.0`.
        variance: Variance of the Gaussian input (>= 0). Defaults to `1.0`.
        points: Points of the grid (odd). Defaults to 20001; 2001 is still
            accurate to about 1e-5 (the theory's predictions use that).

    Returns:
        The first, second and fourth moments of `phi(z)`.

    Example:
    ```python
    keras_initdiag.initializers.gaussian_moments("relu")  # (0.399, 0.5, 1.5)
    ```
    """
    function = numpy_function(activation)
    if function is None:
        function = functools.partial(_evaluate, activation)
    return moments_of(function, mean, variance, points)


def moments_of(
    function: Callable[[np.ndarray], np.ndarray],
    mean: float,
    variance: float,
    points: int = _GRID,
) -> tuple[float, float, float]:
    """`gaussian_moments` of a NumPy function of one float64 array.

    Args:
        function: The element-wise function, in NumPy.
        mean: Mean of the Gaussian input.
        variance: Variance of the Gaussian input (>= 0).
        points: Points of the Simpson grid (odd). Defaults to 20001.

    Returns:
        The first, second and fourth moments of `function(z)`.

    Example:
    >>> moments_of(np.tanh, 0.0, 1.0, points=2001)  # (0.0, 0.394, 0.236)
    """
    nodes, weights = _simpson_normal(points)
    # Overflow (an exponential far out) gives inf, as TensorFlow did, silently.
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        values = function(mean + math.sqrt(max(variance, 0.0)) * nodes)
        squared = values * values
        return (
            float(weights @ values),
            float(weights @ squared),
            float(weights @ (squared * squared)),
        )


def _preserved(activation, preserve: str = "second_moment") -> float:
    """`E[phi(z)**2]` or `Var[phi(z)]`, `z ~ N(0, 1)`, by quadrature.

    Raises:
        ValueError: It is not finite and positive (the gain would not be).
    """
    first, second, _ = gaussian_moments(activation)
    if preserve == "second_moment":
        value, what = second, "second moment E[phi(z)^2]"
    else:
        value, what = second - first * first, "variance Var[phi(z)]"
    if not math.isfinite(value) or value <= 1e-12:
        raise ValueError(
            f"Argument `activation` must have a finite, non-zero {what} under "
            f"z ~ N(0, 1). Received: activation={activation!r} with "
            f"{what.split()[-1]}={value}"
        )
    return value


@functools.lru_cache(maxsize=4)
def _simpson_normal(points: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes over [-10, 10] and Simpson weights times the normal density."""
    points = points + 1 - points % 2  # odd
    nodes = np.linspace(-10.0, 10.0, points)
    step = nodes[1] - nodes[0]
    simpson = np.ones(points)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    density = np.exp(-0.5 * nodes * nodes) / math.sqrt(2.0 * math.pi)
    return nodes, simpson * step / 3.0 * density


#: What `gain(..., preserve=)` keeps from layer to layer.
PRESERVE = ("second_moment", "variance")


def gain(activation, preserve: str | None = None) -> float:
    """Standard-deviation gain that keeps the forward signal's scale.

    With the default `preserve=None`, the rule of thumb (as before):

    - ReLU family: `sqrt(2 / (1 + a**2))` with `a` the leak (0 for `relu`,
      `relu6` and `elu`; the partial's or Keras's default, 0.2, for
      `leaky_relu`). He et al. used this gain for ELU too.
    - Squashing (tanh, sigmoid, ...), `selu`, `linear`, `softmax`: `1.0`;
      these are used with Xavier (squashing) or LeCun (SELU) as they are.
    - Anything else, custom callables included: `1 / sqrt(E[phi(z)**2])`,
      `z ~ N(0, 1)`, measured by quadrature (`gaussian_moments`), so a fan_in
      initializer with this gain keeps `E[y**2]` of the next layer at 1.

    With `preserve`, an exact convention for any activation, computed by the
    package's own quadrature (`gaussian_moments`), never a copied constant:

    - `"second_moment"`: `1 / sqrt(E[phi(z)^2])`, so that
      `fan_in * Var(W) * gain^2` keeps `E[y^2]` from layer to layer (mean
      field, He et al.): `sqrt(2)` for ReLU.
    - `"variance"`: `1 / sqrt(Var[phi(z)])`, the NF-ResNet convention (Brock
      et al. 2021), which keeps `Var(y)`: 1.712859 for ReLU, 1.592537 for
      tanh.

    Args:
        activation: A Keras activation name, function or callable.
        preserve: `None`, `"second_moment"` or `"variance"`. Defaults to
            `None` (the rule of thumb above).

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
    keras_initdiag.initializers.gain("relu", preserve="variance")  # 1.712859
    ```

    Reference:

    - [He et al., 2015](https://arxiv.org/abs/1502.01852)
    - [Brock, De & Smith, 2021](https://arxiv.org/abs/2101.08692)
    """
    name = activation_name(activation)
    if preserve is not None:
        preserve = _checks.choice("preserve", preserve, PRESERVE)
        return 1.0 / math.sqrt(_preserved(activation, preserve))
    if name == "leaky_relu":
        return math.sqrt(2.0 / (1.0 + _negative_slope(activation) ** 2))
    if name in _RELU_FAMILY:
        return math.sqrt(2.0)
    if name in _RULES or name in _NOT_ELEMENTWISE:
        return 1.0
    return 1.0 / math.sqrt(_preserved(activation))


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
