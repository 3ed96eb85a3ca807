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
from keras_initdiag.diagnostics.taps import Tap, TapSet, walk

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
        table = _Table(len(taps))
        outputs, gradients, kernels, hist = [], [], [], {}
        for tap in taps:
            output = out_grad = None
            if tap.output_index is not None:
                output = _f32(tapped[tap.output_index])
                out_grad = _f32(out_grads[tap.output_index])
            outputs.append(output)
            gradients.append(out_grad)
            kernels.append(_f32(tap.main_weight))
            if self.histograms:
                hist.update(_histogram_tensors(tap, output, weight_grads, variables))
        _output_stats(table, taps, outputs, full)
        _gradient_stats(table, gradients)
        _kernel_stats(table, taps, kernels, full)
        _weight_stats(table, taps, weight_grads, gradients)
        loss_value = tf.constant(_NAN) if loss is None else tf.cast(loss, tf.float32)
        vector = tf.concat([table.vector(), [loss_value]], axis=0)
        return (vector, hist) if self.histograms else vector


class _Table:
    """Collects per-tap values computed in stacked groups; emits one vector.

    Each statistic is filled from a few stacked tensors (one per shape group)
    and assembled with one static gather, so the graph grows with the number
    of distinct layer shapes rather than with depth.
    """

    def __init__(self, n_taps: int):
        self.n_taps = n_taps
        self.parts = {field: [] for field in VECTOR_FIELDS}
        # Tap index -> boolean unit mask of outputs equal to another unit's.
        self.output_duplicates: dict[int, tf.Tensor] = {}

    def put(self, field: str, indices: list[int], values: tf.Tensor) -> None:
        self.parts[field].append((list(indices), tf.reshape(values, [-1])))

    def vector(self) -> tf.Tensor:
        columns = []
        for field in VECTOR_FIELDS:
            where = np.full(self.n_taps, -1)
            tensors, offset = [], 0
            for indices, values in self.parts[field]:
                where[indices] = offset + np.arange(len(indices))
                offset += len(indices)
                tensors.append(values)
            where[where < 0] = offset  # The NaN appended below.
            pool = tf.concat(tensors + [tf.constant([_NAN])], axis=0)
            columns.append(tf.gather(pool, where))
        return tf.reshape(tf.stack(columns, axis=1), [-1])  # tap-major rows


def _f32(tensor):
    return None if tensor is None else tf.cast(tensor, tf.float32)


def _groups(tensors: list, key=lambda i, t: ()) -> dict:
    """Indices of tensors with one static shape (and key): reduced stacked."""
    groups: dict = {}
    for i, t in enumerate(tensors):
        if t is None:
            continue
        shape = tuple(t.shape)
        group = (shape, key(i, t)) if None not in shape else ("single", i)
        groups.setdefault(group, []).append(i)
    return groups


def _stacked(tensors: list, indices: list[int]) -> tf.Tensor:
    return tf.stack([tensors[i] for i in indices])


def _output_stats(table: _Table, taps: list[Tap], outputs: list, full) -> None:
    """Activation moments, non-finite counts, dead, saturated, duplicate units."""
    for (shape, _), indices in _groups(outputs).items():
        stacked = _stacked(outputs, indices)
        flat = tf.reshape(stacked, [len(indices), -1])
        table.put("activation_mean", indices, stats.mean(flat, axis=1))
        variance = stats.variance(flat, axis=1)
        table.put("activation_variance", indices, variance)
        table.put("nonfinite_activations", indices, _nonfinite(flat, variance))
        bounded = [
            (j, stats.BOUNDS[taps[i].info.activation])
            for j, i in enumerate(indices)
            if taps[i].info.activation in stats.BOUNDS
        ]
        if bounded:
            rows = tf.gather(flat, [j for j, _ in bounded])
            low = tf.constant([[b[0]] for _, b in bounded], tf.float32)
            high = tf.constant([[b[1]] for _, b in bounded], tf.float32)
            table.put(
                "saturation_fraction",
                [indices[j] for j, _ in bounded],
                stats.saturation_fraction(rows, low, high, axis=1),
            )
        if shape == "single" or len(shape) < 2:
            continue
        columns = tf.reshape(stacked, [len(indices), -1, shape[-1]])
        table.put("dead_fraction", indices, stats.dead_fraction(columns))
        duplicates = _duplicates(stats.duplicate_output_units, columns, shape[-1], full)
        for j, i in enumerate(indices):
            table.output_duplicates[i] = duplicates[j]


def _gradient_stats(table: _Table, gradients: list) -> None:
    """RMS of the back-propagated gradient at each tapped output."""
    for _, indices in _groups(gradients).items():
        flat = tf.reshape(_stacked(gradients, indices), [len(indices), -1])
        table.put("activation_gradient_rms", indices, stats.rms(flat, axis=1))


def _kernel_stats(table: _Table, taps: list[Tap], kernels: list, full) -> None:
    """Weight variance, kernel signature, duplicate units by incoming weights."""
    duplicates = {}
    for (shape, _), indices in _groups(kernels).items():
        stacked = _stacked(kernels, indices)
        flat = tf.reshape(stacked, [len(indices), -1])
        table.put("weight_variance", indices, stats.variance(flat, axis=1))
        signature = tf.cond(
            full,
            lambda flat=flat: stats.kernel_signature(flat),
            lambda flat=flat: tf.fill([tf.shape(flat)[0]], _NAN),
        )
        table.put("kernel_signature", indices, signature)
        shared = [i for i in indices if _kernel_has_shared_inputs(taps[i])]
        if shared and shape != "single":
            columns = tf.reshape(
                _stacked(kernels, shared), [len(shared), -1, shape[-1]]
            )
            mask = _duplicates(stats.duplicate_weight_units, columns, shape[-1], full)
            duplicates.update({i: mask[j] for j, i in enumerate(shared)})
    outputs = table.output_duplicates
    for i in sorted(set(duplicates) | set(outputs)):
        masks = [m for m in (duplicates.get(i), outputs.get(i)) if m is not None]
        if len(masks) == 2 and masks[0].shape[0] != masks[1].shape[0]:
            masks = masks[1:]  # Unit counts differ: trust the outputs.
        mask = tf.logical_or(*masks) if len(masks) == 2 else masks[0]
        fraction = tf.reduce_mean(tf.cast(mask, tf.float32))
        table.put("duplicate_unit_fraction", [i], tf.where(full, fraction, _NAN))


def _weight_stats(table: _Table, taps: list[Tap], weight_grads, gradients) -> None:
    """Per-layer weight and gradient norms, from per-variable reductions.

    Variables of one shape are reduced stacked; a static (taps x variables)
    0/1 matrix then sums them per layer in one matmul.
    """
    weights = [_f32(w) for tap in taps for w in tap.weights]
    grads = [_f32(g) for g in weight_grads]
    owner = [t for t, tap in enumerate(taps) for _ in tap.weights]
    if not weights:
        return
    per_var = {}
    for name, tensors in (("w", weights), ("g", grads)):
        squares = [None] * len(tensors)
        bad = [None] * len(tensors)
        for _, indices in _groups(tensors).items():
            flat = tf.reshape(_stacked(tensors, indices), [len(indices), -1])
            sq = stats.sum_of_squares(flat, 1)
            nf = _nonfinite(flat, sq)
            for j, i in enumerate(indices):
                squares[i], bad[i] = sq[j], nf[j]
        per_var[name] = (squares, bad)

    def per_tap(values, present):
        members = np.zeros((len(taps), len(values)), np.float32)
        for v, t in enumerate(owner):
            members[t, v] = 1.0 if present[v] else 0.0
        stacked = tf.stack([v if v is not None else 0.0 for v in values])
        return tf.linalg.matvec(tf.constant(members), stacked), members.sum(1) > 0

    w_sq, w_has = per_tap(per_var["w"][0], [True] * len(weights))
    w_bad, _ = per_tap(per_var["w"][1], [True] * len(weights))
    g_present = [g is not None for g in grads]
    g_sq, g_has = per_tap(per_var["g"][0], g_present)
    g_bad, _ = per_tap(per_var["g"][1], g_present)
    with_weights = [t for t in range(len(taps)) if w_has[t]]
    with_grads = [t for t in range(len(taps)) if g_has[t]]
    table.put("nonfinite_weights", with_weights, tf.gather(w_bad, with_weights))
    if with_grads:
        norm = tf.sqrt(tf.gather(g_sq, with_grads))
        table.put("gradient_norm", with_grads, norm)
        ratio = stats.ratio(norm, tf.sqrt(tf.gather(w_sq, with_grads)))
        table.put("gradient_to_weight_ratio", with_grads, ratio)
        table.put("nonfinite_gradients", with_grads, tf.gather(g_bad, with_grads))
    # Layers without weight gradients: count non-finite output gradients.
    rest = [t for t in range(len(taps)) if t not in set(with_grads)]
    for _, indices in _groups([gradients[t] for t in rest]).items():
        taps_here = [rest[i] for i in indices]
        flat = tf.reshape(
            tf.stack([gradients[t] for t in taps_here]), [len(taps_here), -1]
        )
        table.put("nonfinite_gradients", taps_here, stats.nonfinite_count(flat, 1))


#: Under float16 compute, the probe's loss is multiplied by this power of two
#: (exact in binary) and the gradients divided back in float32, so that small
#: back-propagated gradients do not underflow float16 (smallest subnormal
#: 6e-8). Gradients above 65504 / 2**10 = 64 per element would overflow; a
#: probe batch with the usual mean-reduced losses stays far below that.
FLOAT16_LOSS_SCALE = 2.0**10


def _duplicates(reduction, columns: tf.Tensor, units, full) -> tf.Tensor:
    """`reduction(columns)` when `full`; no duplicates for a single unit.

    One unit cannot duplicate another (and the sort-and-compare reduction
    needs two), e.g. a `Dense(1)` regression head. Without `full` the search
    is skipped on the device (and the fraction reported as NaN).
    """
    none = tf.zeros([tf.shape(columns)[0], tf.shape(columns)[2]], tf.bool)
    if units is not None and units < 2:
        return none
    return tf.cond(full, lambda: reduction(columns), lambda: none)


def _nonfinite(flat: tf.Tensor, check: tf.Tensor) -> tf.Tensor:
    """Per-row non-finite counts, computed only when they can be non-zero.

    `check` is a reduction of the rows (their variance or sum of squares): it
    is finite whenever every value is, so the full scan runs only otherwise.
    """
    return tf.cond(
        tf.reduce_all(tf.math.is_finite(check)),
        lambda: tf.zeros([tf.shape(flat)[0]], tf.float32),
        lambda: stats.nonfinite_count(flat, 1),
    )


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


def _kernel_has_shared_inputs(tap: Tap) -> bool:
    """Units whose incoming weights are comparable: all see the same inputs."""
    weight = tap.main_weight
    if weight is None or len(weight.shape) < 2:
        return False
    path = getattr(weight, "path", "") or getattr(weight, "name", "")
    return "depthwise" not in path


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
