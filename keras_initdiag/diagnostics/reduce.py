"""Reductions of one probe, stacked per shape group into one vector.

Layers of one shape are reduced together (one stacked tensor per statistic
and shape), and the vector is assembled with one static gather per
statistic, so the probe's graph grows with the number of distinct layer
shapes rather than with depth. Everything here runs inside the probe's
`tf.function`; the statistics themselves are the pure functions of `stats`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_initdiag.diagnostics import stats
from keras_initdiag.diagnostics.report import STAT_NAMES
from keras_initdiag.diagnostics.taps import Tap

#: Values computed per tap, in vector order: the public statistics, then the
#: kernel signature used to spot identical kernels in different layers.
VECTOR_FIELDS: tuple[str, ...] = STAT_NAMES + ("kernel_signature",)
_NAN = float("nan")


class Table:
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
        """Record `values[j]` as statistic `field` of tap `indices[j]`."""
        self.parts[field].append((list(indices), tf.reshape(values, [-1])))

    def vector(self) -> tf.Tensor:
        """Tap-major rows of every statistic; NaN where none was recorded."""
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


def f32(tensor):
    """`tensor` cast to float32 (None stays None)."""
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


def output_stats(table: Table, taps: list[Tap], outputs: list, full) -> None:
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


def gradient_stats(table: Table, gradients: list) -> None:
    """RMS of the back-propagated gradient at each tapped output."""
    for _, indices in _groups(gradients).items():
        flat = tf.reshape(_stacked(gradients, indices), [len(indices), -1])
        table.put("activation_gradient_rms", indices, stats.rms(flat, axis=1))


def kernel_stats(table: Table, taps: list[Tap], kernels: list, full) -> None:
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


def weight_stats(table: Table, taps: list[Tap], weight_grads, gradients) -> None:
    """Per-layer weight and gradient norms, from per-variable reductions.

    Variables of one shape are reduced stacked; a static (taps x variables)
    0/1 matrix then sums them per layer in one matmul.
    """
    weights = [f32(w) for tap in taps for w in tap.weights]
    grads = [f32(g) for g in weight_grads]
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


def _kernel_has_shared_inputs(tap: Tap) -> bool:
    """Units whose incoming weights are comparable: all see the same inputs."""
    weight = tap.main_weight
    if weight is None or len(weight.shape) < 2:
        return False
    path = getattr(weight, "path", "") or getattr(weight, "name", "")
    return "depthwise" not in path
