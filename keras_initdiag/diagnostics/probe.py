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

from keras_initdiag.diagnostics import stats
from keras_initdiag.diagnostics.report import STAT_NAMES
from keras_initdiag.diagnostics.taps import Tap, TapSet

#: Values computed per tap, in vector order: the public statistics, then the
#: kernel signature used to spot identical kernels in different layers.
VECTOR_FIELDS: tuple[str, ...] = STAT_NAMES + ("kernel_signature",)
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
        self._function = tf.function(self._run, reduce_retracing=True, autograph=False)
        self.traces = 0

    @property
    def width(self) -> int:
        """Length of the returned vector: one row per tap, plus the loss."""
        return len(self.tapset.taps) * len(VECTOR_FIELDS) + 1

    def __call__(self, x, y=None):
        """Run the probe; returns the vector (and histogram tensors if asked)."""
        return self._function(x, y)

    def _forward(self, x):
        tapset = self.tapset
        if tapset.view is not None:
            outs = tapset.view(x, training=False)
            outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            k = tapset.n_outputs
            return outs[:k], outs[k:]
        preds = tapset.model(x, training=False)
        return [], list(tf.nest.flatten(preds))

    def _run(self, x, y):
        self.traces += 1  # Python side effect: counts traces, not calls.
        taps = self.tapset.taps
        variables = [_tf_variable(w) for tap in taps for w in tap.weights]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(variables)
            tapped, preds = self._forward(x)
            tape.watch(tapped)
            loss = None
            if self.loss is not None and y is not None:
                loss = self.loss(tf.nest.flatten(y), preds)
        if loss is not None:
            grads = tape.gradient(
                loss,
                tapped + variables,
                unconnected_gradients=tf.UnconnectedGradients.NONE,
            )
            out_grads, weight_grads = grads[: len(tapped)], grads[len(tapped) :]
        else:
            out_grads, weight_grads = [None] * len(tapped), [None] * len(variables)
        rows, hist, start = [], {}, 0
        outputs, kernels = [], []
        for tap in taps:
            n = len(tap.weights)
            output = out_grad = None
            if tap.output_index is not None:
                output = tf.cast(tapped[tap.output_index], tf.float32)
                g = out_grads[tap.output_index]
                out_grad = None if g is None else tf.cast(g, tf.float32)
            w_grads = [
                tf.cast(g, tf.float32)
                for g in weight_grads[start : start + n]
                if g is not None
            ]
            start += n
            rows.append(self._scalars(tap, output, out_grad, w_grads))
            outputs.append(
                output if output is not None and output.shape.rank >= 2 else None
            )
            kernels.append(
                tf.cast(tap.main_weight, tf.float32)
                if _kernel_has_shared_inputs(tap)
                else None
            )
            if self.histograms:
                hist.update(_histogram_tensors(tap, output, w_grads))
        _unit_fractions(rows, outputs, kernels)
        table = tf.stack(
            [
                tf.stack([tf.cast(row[f], tf.float32) for f in VECTOR_FIELDS])
                for row in rows
            ]
        )
        loss_value = tf.constant(_NAN) if loss is None else tf.cast(loss, tf.float32)
        vector = tf.concat([tf.reshape(table, [-1]), [loss_value]], axis=0)
        return (vector, hist) if self.histograms else vector

    def _scalars(self, tap: Tap, output, out_grad, w_grads) -> dict:
        """The per-tap statistics that are single reductions."""
        weights = [tf.cast(w, tf.float32) for w in tap.weights]
        kernel = (
            None if tap.main_weight is None else tf.cast(tap.main_weight, tf.float32)
        )
        values = dict.fromkeys(VECTOR_FIELDS, tf.constant(_NAN))
        if output is not None:
            values["activation_mean"] = stats.mean(output)
            values["activation_variance"] = stats.variance(output)
            values["nonfinite_activations"] = stats.nonfinite_count([output])
            bounds = stats.BOUNDS.get(tap.info.activation)
            if bounds is not None:
                values["saturation_fraction"] = stats.saturation_fraction(
                    output, *bounds
                )
        if out_grad is not None:
            values["activation_gradient_rms"] = stats.rms(out_grad)
        if weights:
            values["nonfinite_weights"] = stats.nonfinite_count(weights)
        if kernel is not None:
            values["weight_variance"] = stats.variance(kernel)
            values["kernel_signature"] = stats.kernel_signature(kernel)
        if w_grads:
            norm = stats.global_norm(w_grads)
            values["gradient_norm"] = norm
            values["gradient_to_weight_ratio"] = stats.ratio(
                norm, stats.global_norm(weights)
            )
            values["nonfinite_gradients"] = stats.nonfinite_count(w_grads)
        elif out_grad is not None:
            values["nonfinite_gradients"] = stats.nonfinite_count([out_grad])
        return values


def _groups(tensors: list) -> dict:
    """Indices of tensors with one static shape: they are reduced stacked."""
    groups: dict = {}
    for i, t in enumerate(tensors):
        if t is None:
            continue
        shape = tuple(t.shape)
        key = shape if None not in shape else ("single", i)
        groups.setdefault(key, []).append(i)
    return groups


def _unit_fractions(rows: list[dict], outputs: list, kernels: list) -> None:
    """Dead and duplicate unit fractions, one stacked reduction per shape group.

    Layers of one shape (the usual case in deep nets) share one set of ops, so
    the graph grows with the number of distinct shapes, not with depth.
    """
    out_dup, kernel_dup = {}, {}
    for indices in _groups(outputs).values():
        columns = tf.stack([stats.units_view(outputs[i]) for i in indices])
        dead = stats.dead_fraction(columns)
        dup = _duplicates(stats.duplicate_output_units, columns, outputs[indices[0]])
        for j, i in enumerate(indices):
            rows[i]["dead_fraction"] = dead[j]
            out_dup[i] = dup[j]
    for indices in _groups(kernels).values():
        columns = tf.stack([stats.units_view(kernels[i]) for i in indices])
        dup = _duplicates(stats.duplicate_weight_units, columns, kernels[indices[0]])
        for j, i in enumerate(indices):
            kernel_dup[i] = dup[j]
    for i, row in enumerate(rows):
        masks = [m for m in (kernel_dup.get(i), out_dup.get(i)) if m is not None]
        if len(masks) == 2 and masks[0].shape[0] != masks[1].shape[0]:
            masks = masks[1:]  # Unit counts differ: trust the outputs.
        if masks:
            unit_mask = tf.logical_or(*masks) if len(masks) == 2 else masks[0]
            row["duplicate_unit_fraction"] = tf.reduce_mean(
                tf.cast(unit_mask, tf.float32)
            )


def _duplicates(reduction, columns: tf.Tensor, example: tf.Tensor) -> tf.Tensor:
    """`reduction(columns)`, or no duplicates when a layer has a single unit.

    One unit cannot duplicate another (and the sort-and-compare reduction
    needs two), e.g. a `Dense(1)` regression head.
    """
    units = example.shape[-1]
    if units is not None and units < 2:
        return tf.zeros([tf.shape(columns)[0], units], tf.bool)
    return reduction(columns)


def _tf_variable(weight):
    """The `tf.Variable` behind a Keras variable (what a tape can watch)."""
    return getattr(weight, "value", weight)


def _kernel_has_shared_inputs(tap: Tap) -> bool:
    """Units whose incoming weights are comparable: all see the same inputs."""
    weight = tap.main_weight
    if weight is None or len(weight.shape) < 2:
        return False
    path = getattr(weight, "path", "") or getattr(weight, "name", "")
    return "depthwise" not in path


def _histogram_tensors(tap: Tap, output, w_grads) -> dict:
    hist = {}
    if tap.main_weight is not None:
        hist[f"weights/{tap.name}"] = tf.cast(tap.main_weight, tf.float32)
    if output is not None:
        hist[f"activations/{tap.name}"] = output
    if w_grads:
        hist[f"gradients/{tap.name}"] = tf.concat(
            [tf.reshape(g, [-1]) for g in w_grads], 0
        )
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
