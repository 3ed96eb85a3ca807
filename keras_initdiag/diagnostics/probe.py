"""The one compiled function: forward, loss, gradients, reductions -> one vector.

`Probe` is built once per model (and tap selection). Its `tf.function` runs the
functional view in inference mode, computes the loss, the gradients with
respect to the tapped outputs and to the weights, reduces everything on the
device, and returns a single float32 vector; the host copies it once.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from keras_initdiag.diagnostics import reduce
from keras_initdiag.diagnostics.reduce import VECTOR_FIELDS as VECTOR_FIELDS
from keras_initdiag.diagnostics.reduce import f32
from keras_initdiag.diagnostics.taps import Tap, TapSet, walk

_NAN = float("nan")


def resolve_loss(model: keras.Model, loss):
    """A function `(y_true_list, y_pred_list) -> scalar`, or None without a loss.

    Uses `loss` when given, else the loss passed to `model.compile`. The
    compiled loss's metric trackers are never touched: the probe must not
    change the user's training logs.
    """
    spec = loss if loss is not None else getattr(model, "loss", None)
    if spec is None:
        return None
    n_outputs = len(model.outputs) if _has_graph(model) else 1
    if isinstance(spec, dict):
        names = list(getattr(model, "output_names", None) or [])
        missing = [name for name in spec if name not in names]
        if missing:
            raise ValueError(
                f"Argument `loss` names outputs {missing} that the model does not "
                f"have (outputs: {names}). Received: loss={spec!r}"
            )
        fns = [keras.losses.get(spec[name]) if name in spec else None for name in names]
    elif isinstance(spec, (list, tuple)):
        if len(spec) != n_outputs:
            raise ValueError(
                f"Argument `loss` must have one entry per model output ({n_outputs}). "
                f"Received: loss={spec!r}"
            )
        fns = [keras.losses.get(s) if s is not None else None for s in spec]
    else:
        fns = [_get_loss(spec)] * n_outputs

    def compute(y_true, y_pred):
        terms = [
            tf.cast(tf.reduce_mean(fn(t, tf.cast(p, tf.float32))), tf.float32)
            for fn, t, p in zip(fns, y_true, y_pred)
            if fn is not None
        ]
        return tf.add_n(terms)

    return compute


def _get_loss(spec):
    try:
        fn = keras.losses.get(spec)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"Argument `loss` must be a Keras loss name, a `keras.losses.Loss` or a "
            f"callable `(y_true, y_pred) -> loss`. Received: loss={spec!r}"
        ) from error
    if fn is None:
        raise ValueError(
            f"Argument `loss` is not a known loss. Received: loss={spec!r}"
        )
    return fn


def _has_graph(model) -> bool:
    try:
        return bool(model.outputs)
    except (AttributeError, ValueError):
        return False


class Probe:
    """The compiled diagnosis of one model.

    Args:
        tapset: The taps and functional view (`taps.build_taps`).
        loss: A function from `resolve_loss`, or None for a forward-only probe.
        histograms: Also return the raw tensors for histogram summaries.

    Example:
    >>> probe = Probe(build_taps(model), resolve_loss(model, None))
    >>> vector = probe(x, y)      # one float32 vector, one host copy later
    """

    def __init__(self, tapset: TapSet, loss=None, histograms: bool = False):
        self.tapset = tapset
        self.loss = loss
        self.histograms = histograms

        # A closure per probe: TensorFlow's "excessive retracing" warning counts
        # traces per Python function, and every model rightly traces its own.
        def run(x, y, full):
            return self._run(x, y, full)

        self._function = tf.function(run, reduce_retracing=True, autograph=False)
        self.traces = 0

    @property
    def width(self) -> int:
        """Length of the returned vector: one row per tap, plus the loss."""
        return len(self.tapset.taps) * len(VECTOR_FIELDS) + 1

    def __call__(self, x, y=None, full: bool = True):
        """Run the probe; returns the vector (and histogram tensors if asked).

        Args:
            x: Inputs.
            y: Targets, or None for forward statistics only.
            full: Also search for duplicate units and identical kernels (the
                costliest reductions; symmetry is set at initialization, so
                the callback asks for them at step 0 and once per epoch).
                A tensor argument: both settings share one trace.
        """
        return self._function(x, y, tf.constant(bool(full)))

    def _forward(self, x):
        tapset = self.tapset
        if tapset.view is not None:
            outs = tapset.view(x, training=False)
            outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            k = tapset.n_outputs
            return outs[:k], outs[k:]
        preds = tapset.model(x, training=False)
        return [], list(tf.nest.flatten(preds))

    def _run(self, x, y, full):
        self.traces += 1  # Python side effect: counts traces, not calls.
        taps = self.tapset.taps
        variables = [_tf_variable(w) for tap in taps for w in tap.weights]
        scale = _loss_scale(self.tapset.model)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(variables)
            tapped, preds = self._forward(x)
            tape.watch(tapped)
            loss = scaled_loss = None
            if self.loss is not None and y is not None:
                loss = self.loss(tf.nest.flatten(y), preds)
                scaled_loss = loss * scale if scale != 1.0 else loss
        if loss is not None:
            grads = tape.gradient(
                scaled_loss,
                tapped + variables,
                unconnected_gradients=tf.UnconnectedGradients.NONE,
            )
            if scale != 1.0:
                grads = [_unscale(g, scale) for g in grads]
            out_grads, weight_grads = grads[: len(tapped)], grads[len(tapped) :]
        else:
            out_grads, weight_grads = [None] * len(tapped), [None] * len(variables)
        table = reduce.Table(len(taps))
        outputs, gradients, kernels, hist = [], [], [], {}
        for tap in taps:
            output = out_grad = None
            if tap.output_index is not None:
                output = f32(tapped[tap.output_index])
                out_grad = f32(out_grads[tap.output_index])
            outputs.append(output)
            gradients.append(out_grad)
            kernels.append(f32(tap.main_weight))
            if self.histograms:
                hist.update(_histogram_tensors(tap, output, weight_grads, variables))
        reduce.output_stats(table, taps, outputs, full)
        reduce.gradient_stats(table, gradients)
        reduce.kernel_stats(table, taps, kernels, full)
        reduce.weight_stats(table, taps, weight_grads, gradients)
        loss_value = tf.constant(_NAN) if loss is None else tf.cast(loss, tf.float32)
        vector = tf.concat([table.vector(), [loss_value]], axis=0)
        return (vector, hist) if self.histograms else vector


#: Under float16 compute, the probe's loss is multiplied by this power of two
#: (exact in binary) and the gradients divided back in float32, so that small
#: back-propagated gradients do not underflow float16 (smallest subnormal
#: 6e-8). Gradients above 65504 / 2**10 = 64 per element would overflow; a
#: probe batch with the usual mean-reduced losses stays far below that.
FLOAT16_LOSS_SCALE = 2.0**10


def _loss_scale(model: keras.Model) -> float:
    """`FLOAT16_LOSS_SCALE` if any layer computes in float16, else 1."""
    layers = [model] + [layer for layer, _ in walk(model)]
    if any(getattr(layer, "compute_dtype", None) == "float16" for layer in layers):
        return FLOAT16_LOSS_SCALE
    return 1.0


def _unscale(gradient, scale: float):
    """A gradient of the scaled loss, cast to float32 and divided by `scale`."""
    if gradient is None:
        return None
    if isinstance(gradient, tf.IndexedSlices):
        values = tf.cast(gradient.values, tf.float32) / scale
        return tf.IndexedSlices(values, gradient.indices, gradient.dense_shape)
    return tf.cast(gradient, tf.float32) / scale


def _tf_variable(weight):
    """The `tf.Variable` behind a Keras variable (what a tape can watch)."""
    return getattr(weight, "value", weight)


def _histogram_tensors(tap: Tap, output, weight_grads, variables) -> dict:
    hist = {}
    if tap.main_weight is not None:
        hist[f"weights/{tap.name}"] = tf.cast(tap.main_weight, tf.float32)
    if output is not None:
        hist[f"activations/{tap.name}"] = output
    own = {id(_tf_variable(w)) for w in tap.weights}
    grads = [
        tf.reshape(tf.cast(g, tf.float32), [-1])
        for g, v in zip(weight_grads, variables)
        if g is not None and id(v) in own
    ]
    if grads:
        hist[f"gradients/{tap.name}"] = tf.concat(grads, 0)
    return hist


def decode(probe: Probe, vector: np.ndarray):
    """Split the host copy of the vector into per-layer stats and the loss.

    Returns:
        `(stats, signatures, loss)`: layer name -> {stat -> float}, layer name
        -> kernel signature (NaN without a kernel), and the probe loss.
    """
    vector = np.asarray(vector, dtype=np.float64)
    width = len(VECTOR_FIELDS)
    per_layer, signatures = {}, {}
    for i, tap in enumerate(probe.tapset.taps):
        row = vector[i * width : (i + 1) * width]
        values = {name: float(v) for name, v in zip(VECTOR_FIELDS, row)}
        signatures[tap.name] = values.pop("kernel_signature")
        per_layer[tap.name] = values
    loss = float(vector[-1]) if vector.size else math.nan
    return per_layer, signatures, loss
