"""Gaussian moments of each node's element-wise activation, for the theory."""

from __future__ import annotations

from keras_initdiag import initializers
from keras_initdiag.diagnostics import layer_facts
from keras_initdiag.diagnostics.taps import TapSet


class ActivationMoments:
    """Gaussian moments of each node's element-wise activation, cached.

    The theory's `Moments` callable: for a node and a Gaussian input, the
    first, second and fourth moments of its activation's output, by
    quadrature on 2001 points (`initializers.gaussian_moments`). A ReLU,
    LeakyReLU, ELU or Activation layer is its own activation; a linear layer
    has the activation it fuses. Non-element-wise activations (softmax) have
    none.
    """

    _NOT_ELEMENTWISE = ("softmax", "log_softmax", "sparsemax", "glu")

    def __init__(self, tapset: TapSet):
        self._functions = {}
        for tap in tapset.taps:
            function = _activation_function(tap)
            if function is not None:
                self._functions[tap.name] = function
        self._cache: dict = {}

    def __call__(self, name: str, mean: float, variance: float):
        """`(E[phi], E[phi^2], E[phi^4])`, or None without an activation."""
        function = self._functions.get(name)
        if function is None:
            return None
        key = (name, float(f"{mean:.6g}"), float(f"{variance:.6g}"))
        if key not in self._cache:
            if len(self._cache) > 4096:
                self._cache.clear()
            try:
                self._cache[key] = initializers.gaussian_moments(
                    function, mean, variance, points=2001
                )
            except ValueError:
                self._cache[key] = None
        return self._cache[key]


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
