"""The rescaling loop: divide a kernel until its pre-activation variance is 1.

The pre-activation is recomputed from the layer's measured input with the
layer's own linear operation and bias, so the layer itself is never called
and never changed; only its kernel variable is assigned.
"""

from __future__ import annotations

import math

import keras

_L = keras.layers


def fit_layer(tap, kernel, linear, inputs, tol, max_iter, verbose) -> dict:
    """Rescale one kernel until its pre-activation variance is 1 +/- tol."""
    variance = before = _preactivation_variance(tap.layer, linear, inputs)
    scale, iterations = 1.0, 0
    while abs(variance - 1.0) >= tol and iterations < max_iter:
        factor = 1.0 / math.sqrt(variance)
        kernel.assign(kernel * keras.ops.cast(factor, kernel.dtype))
        scale *= factor
        iterations += 1
        variance = _preactivation_variance(tap.layer, linear, inputs)
        if verbose >= 2:
            print(f"lsuv {tap.name}: iteration {iterations}, variance {variance:.6g}")
    return {
        "name": tap.name,
        "class_name": type(tap.layer).__name__,
        "iterations": iterations,
        "variance_before": before,
        "variance_after": variance,
        "scale": scale,
        "converged": abs(variance - 1.0) < tol,
    }


def _with_bias(layer, outputs):
    """Add a layer's bias along its channel axis (as the layer itself does)."""
    bias = getattr(layer, "bias", None)
    if bias is None or not getattr(layer, "use_bias", True):
        return outputs
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        shape = (1, -1) + (1,) * (len(outputs.shape) - 2)
        return outputs + keras.ops.reshape(bias, shape)
    return outputs + keras.ops.cast(bias, outputs.dtype)


def _preactivation_variance(layer, linear, inputs) -> float:
    """Variance of the layer's output before its activation, on `inputs`."""
    kernel = getattr(layer, "pointwise_kernel", None)
    if kernel is None or not isinstance(
        layer, (_L.SeparableConv1D, _L.SeparableConv2D)
    ):
        kernel = layer.kernel
    x = keras.ops.cast(inputs, kernel.dtype)
    outputs = _with_bias(layer, linear(layer, x, kernel))
    variance = float(keras.ops.var(keras.ops.cast(outputs, "float32")))
    if variance == 0.0 or not math.isfinite(variance):
        why = (
            "its output is constant over `x` (a zero kernel, or an input that is "
            "constant because earlier units are dead or `x` does not vary)"
            if variance == 0.0
            else "its output is not finite (the earlier layers overflow)"
        )
        raise ValueError(
            f"LSUV cannot rescale layer {layer.name!r}: its pre-activation "
            f"variance on `x` is {variance}, because {why}. Check this layer and "
            "the ones before it, pass a more varied `x`, or leave the layer out "
            "with `layers=`."
        )
    return variance
