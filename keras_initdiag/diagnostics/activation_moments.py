"""Gaussian moments of each node's element-wise activation, for the theory.

NumPy only on the host: each node's activation is resolved once, when the
diagnoser is built, into a NumPy function (Keras's built-ins by their NumPy
twins; any other callable evaluated once through Keras on a fixed grid and
interpolated), and each prediction is NumPy quadrature of it.
"""

from __future__ import annotations

from keras_initdiag.diagnostics import layer_facts
from keras_initdiag.diagnostics.taps import TapSet
from keras_initdiag.initializers.activations import moments_of
from keras_initdiag.initializers.numpy_activations import interpolated, numpy_function

#: Points of the theory's quadrature grid (Simpson's rule over +-10 sigma):
#: moments to about 1e-5, in about 20 microseconds per call.
POINTS = 2001


class ActivationMoments:
    """Gaussian moments of each node's element-wise activation.

    The theory's `Moments` callable: for a node and a Gaussian input, the
    first, second and fourth moments of its activation's output, by
    quadrature on `POINTS` points (`initializers.moments_of`). A ReLU,
    LeakyReLU, ELU or Activation layer is its own activation; a linear layer
    has the activation it fuses. Non-element-wise activations (softmax) have
    none.

    Args:
        tapset: The taps whose activations are resolved (once, here).

    Example:
    >>> moments = ActivationMoments(diagnoser.tapset)
    >>> moments("dense", 0.0, 2.0)   # (E[phi], E[phi^2], E[phi^4]), or None
    """

    _NOT_ELEMENTWISE = ("softmax", "log_softmax", "sparsemax", "glu")

    def __init__(self, tapset: TapSet):
        self._functions = {}
        resolved = {}  # One NumPy function per activation object.
        for tap in tapset.taps:
            activation = _activation_function(tap)
            if activation is None:
                continue
            key = id(activation)
            if key not in resolved:
                resolved[key] = _as_numpy(activation)
            if resolved[key] is not None:
                self._functions[tap.name] = resolved[key]

    def __call__(self, name: str, mean: float, variance: float):
        """`(E[phi], E[phi^2], E[phi^4])`, or None without an activation."""
        function = self._functions.get(name)
        if function is None:
            return None
        return moments_of(function, mean, variance, POINTS)


def _as_numpy(activation):
    """The NumPy twin of a Keras activation, or an interpolation of it."""
    function = numpy_function(activation)
    if function is not None:
        return function
    try:
        return interpolated(activation)
    except ValueError:  # Not element-wise, or fails on a float tensor.
        return None


def _activation_function(tap):
    """The element-wise function a tap's layer (or the layer it wraps) applies last."""
    layer = layer_facts.unwrapped(tap.layer)
    if layer is None or tap.info.activation in ActivationMoments._NOT_ELEMENTWISE:
        return None
    if tap.info.propagation == "activation":
        return layer  # ReLU(max_value=...), LeakyReLU(...): the layer itself.
    if tap.info.propagation == "linear":
        activation = getattr(layer, "activation", None)
        name = tap.info.activation
        return None if activation is None or name in ("", "linear") else activation
    return None
