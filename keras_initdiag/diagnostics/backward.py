"""The probe's backward pass: float32 gradients, loss-scaled under float16.

Gradients are taken in float32 whatever the compute dtype. Under float16
compute, small back-propagated gradients would underflow, so the loss is
first scaled by a power of two and the gradients are divided back; scales
that overflow fall back to smaller ones, as Keras's `LossScaleOptimizer`
does. An embedding's sparse gradient becomes one dense row per distinct id.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_initdiag.diagnostics.reduce import f32
from keras_initdiag.diagnostics.step_stats import rows_summed

#: Under float16 compute, the probe first scales its loss by this power of
#: two (exact in binary) and divides the gradients back in float32, so that
#: small back-propagated gradients do not underflow float16 (smallest
#: subnormal 6e-8). When that overflows, it tries the unscaled loss, then
#: `1 / FLOAT16_LOSS_SCALE`: only gradients that overflow at every scale
#: are reported as non-finite, as Keras's `LossScaleOptimizer` would skip
#: them at every scale too.
FLOAT16_LOSS_SCALE = 2.0**10


def loss_scale(model: keras.Model) -> float:
    """`FLOAT16_LOSS_SCALE` when any layer computes in float16, else 1."""
    policy = getattr(model, "dtype_policy", None)
    layers = [model] + list(model.layers)
    dtypes = {getattr(layer, "compute_dtype", None) for layer in layers}
    float16 = "float16" in dtypes or getattr(policy, "compute_dtype", None) == "float16"
    return FLOAT16_LOSS_SCALE if float16 else 1.0


def _dense(gradient):
    """A gradient as one tensor (an `IndexedSlices`: `rows_summed`)."""
    if isinstance(gradient, tf.IndexedSlices):
        return rows_summed(gradient)
    return gradient


def gradients(tape, loss, sources: list, scale: float) -> list:
    """Gradients of `loss` in float32, loss-scaled under float16 compute.

    Which sources are connected to the loss is static, so every attempt has
    the same `None` positions; a retry runs only when the previous attempt
    overflowed (inside a `tf.cond` branch).
    """
    unconnected = tf.UnconnectedGradients.NONE

    def attempt(factor) -> list:
        # The seed of the backward pass is `factor` (the loss's own gradient):
        # the same as differentiating `loss * factor`, recorded or not.
        seed = tf.constant(factor, loss.dtype)
        grads = tape.gradient(
            loss, sources, output_gradients=seed, unconnected_gradients=unconnected
        )
        grads = [None if g is None else f32(_dense(g)) for g in grads]
        return (
            grads
            if factor == 1.0
            else [None if g is None else g / factor for g in grads]
        )

    result = attempt(scale)
    if scale == 1.0:
        return result
    connected = [g is not None for g in result]
    present = [g for g in result if g is not None]
    for factor in (1.0, 1.0 / scale):
        if not present:
            break
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in present])
        present = tf.cond(
            finite,
            lambda kept=present: kept,
            lambda f=factor: [g for g in attempt(f) if g is not None],
        )
    it = iter(present)
    return [next(it) if c else None for c in connected]
