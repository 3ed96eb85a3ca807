"""Reductions of one probe, stacked per shape group into one vector.

Tensors of one shape are reduced together (one stacked tensor per shape and
statistic) and the vector is assembled with one static gather per field, so
the probe's graph grows with the number of distinct shapes rather than with
depth. Activations may have an unknown batch size (the probe is traced once
for every batch size): tensors whose only unknown dimension is the batch are
still stacked, the others are reduced one by one. Everything here runs inside
the probe's `tf.function`; the statistics themselves are the pure functions
of `stats`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_initdiag.diagnostics import stats
from keras_initdiag.diagnostics.taps import Tap

#: Values computed on the device per tap, in vector order. The public ones are
#: statistics of `report.STAT_NAMES`; `kernel_signature` (a projection of the
#: main weight that identical kernels share) and `size` (output elements per
#: sample) are facts the engine moves into the report's layer info.
DEVICE_FIELDS: tuple[str, ...] = (
    "activation_mean",
    "activation_variance",
    "activation_gradient_rms",
    "weight_variance",
    "gradient_norm",
    "kernel_gradient_norm",
    "gradient_to_weight_ratio",
    "dead_fraction",
    "saturation_fraction",
    "duplicate_unit_fraction",
    "nonfinite_activations",
    "nonfinite_weights",
    "nonfinite_gradients",
    "kernel_signature",
    "size",
)
_NAN = float("nan")


class Table:
    """Collects per-tap values computed in stacked groups; emits one vector."""

    def __init__(self, n_taps: int):
        self.n_taps = n_taps
        self.parts: dict[str, list] = {field: [] for field in DEVICE_FIELDS}
        # Tap index -> boolean unit mask of units equal to another unit.
        self.output_duplicates: dict[int, tf.Tensor] = {}
        self.weight_duplicates: dict[int, tf.Tensor] = {}
        # Tap indices of one gradient group -> their non-finite counts.
        self.output_gradient_nonfinite: dict[tuple[int, ...], tf.Tensor] = {}
        self.taps_with_weight_gradients: set[int] = set()

    def put(self, field: str, indices: list[int], values: tf.Tensor) -> None:
        """Record `values[j]` as field `field` of tap `indices[j]`."""
        if indices:
            self.parts[field].append((list(indices), tf.reshape(values, [-1])))

    def vector(self) -> tf.Tensor:
        """Tap-major rows of every field; NaN where none was recorded."""
        columns = []
        for field in DEVICE_FIELDS:
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


def groups(tensors: list, batch: bool = True) -> dict:
    """Indices of tensors that can be reduced stacked, by static shape.

    Tensors of one static shape form a group. With `batch=True` (activations
    and their gradients) the first dimension may be unknown: it is the batch,
    shared by every activation of a probe. Any other unknown dimension (an
    embedding gradient's rows, a sequence length) makes a group of one.
    """
    found: dict = {}
    for i, t in enumerate(tensors):
        if t is None:
            continue
        shape = tuple(t.shape)
        known = shape[1:] if batch else shape
        key = shape if None not in known else ("single", i)
        found.setdefault(key, []).append(i)
    return found


def _flat_rows(tensors: list, indices: list[int]) -> tf.Tensor:
    return tf.reshape(tf.stack([tensors[i] for i in indices]), [len(indices), -1])


def output_stats(table: Table, taps: list[Tap], outputs: list, full) -> None:
    """Moments, size, non-finite counts, dead, saturated and duplicate units."""
    for indices in groups(outputs).values():
        stacked = tf.stack([outputs[i] for i in indices])
        flat = tf.reshape(stacked, [len(indices), -1])
        table.put("activation_mean", indices, stats.mean(flat, axis=1))
        variance = stats.variance(flat, axis=1)
        table.put("activation_variance", indices, variance)
        table.put("nonfinite_activations", indices, nonfinite(flat, variance))
        per_sample = tf.size(outputs[indices[0]]) // tf.shape(outputs[indices[0]])[0]
        size = tf.fill([len(indices)], tf.cast(per_sample, tf.float32))
        table.put("size", indices, size)
        _saturation(table, taps, indices, flat)
        if len(outputs[indices[0]].shape) < 2:
            continue
        units = outputs[indices[0]].shape[-1]
        columns = tf.reshape(stacked, [len(indices), -1, tf.shape(stacked)[-1]])
        table.put("dead_fraction", indices, stats.dead_fraction(columns))
        found = duplicates(stats.duplicate_output_units, columns, units, full)
        for j, i in enumerate(indices):
            table.output_duplicates[i] = found[j]


def _saturation(table: Table, taps: list[Tap], indices: list[int], flat) -> None:
    bounded = [
        (j, stats.BOUNDS[taps[i].info.activation])
        for j, i in enumerate(indices)
        if taps[i].info.activation in stats.BOUNDS
    ]
    if not bounded:
        return
    rows = tf.gather(flat, [j for j, _ in bounded])
    low = tf.constant([[b[0]] for _, b in bounded], tf.float32)
    high = tf.constant([[b[1]] for _, b in bounded], tf.float32)
    table.put(
        "saturation_fraction",
        [indices[j] for j, _ in bounded],
        stats.saturation_fraction(rows, low, high, axis=1),
    )


def gradient_stats(table: Table, gradients: list) -> None:
    """RMS and non-finite count of the back-propagated gradient at each output."""
    for _, indices in groups(gradients).items():
        flat = _flat_rows(gradients, indices)
        rms = stats.rms(flat, axis=1)
        table.put("activation_gradient_rms", indices, rms)
        table.output_gradient_nonfinite[tuple(indices)] = nonfinite(flat, rms)


def weight_stats(table: Table, taps: list[Tap], variables, values, grads, full):
    """Per-tap weight and gradient statistics from one pass over the variables.

    Every variable is reduced once, stacked with the others of its shape: sum
    of squares and non-finite count of its value and of its gradient, and,
    for the taps' main weights, the variance, the signature and the
    duplicate-unit search. A static (taps x variables) 0/1 matrix then sums
    the squares per tap in one matmul.

    Args:
        table: The table to fill.
        taps: The taps.
        variables: The distinct variables the taps use (main and trainable).
        values: Their values, float32 tensors (the probe's stateless copies).
        grads: Their gradients (float32 tensors, or None without one).
        full: Whether to run the signature and duplicate searches.
    """
    if not variables:
        _output_gradient_nonfinite(table, taps)
        return
    index = {id(v): k for k, v in enumerate(variables)}
    main = {
        index[id(tap.main_weight)]: t
        for t, tap in enumerate(taps)
        if tap.main_weight is not None
    }
    n = len(variables)
    squares, bad = [None] * n, [None] * n
    g_squares, g_bad = [None] * n, [None] * n
    for key, members in groups(values, batch=False).items():
        flat = _flat_rows(values, members)
        sq = stats.sum_of_squares(flat, 1)
        nf = nonfinite(flat, sq)
        for j, k in enumerate(members):
            squares[k], bad[k] = sq[j], nf[j]
        chosen = [k for k in members if k in main]
        _main_weight_stats(table, taps, chosen, main, flat, members, key, full)
    for members in groups(grads, batch=False).values():
        flat = _flat_rows(grads, members)
        sq = stats.sum_of_squares(flat, 1)
        nf = nonfinite(flat, sq)
        for j, k in enumerate(members):
            g_squares[k], g_bad[k] = sq[j], nf[j]
    owners = [[index[id(w)] for w in tap.weights] for tap in taps]
    _per_tap(table, taps, owners, squares, bad, g_squares, g_bad)
    with_kernel_grad = [(t, k) for k, t in main.items() if g_squares[k] is not None]
    if with_kernel_grad:
        norms = tf.sqrt(tf.stack([g_squares[k] for _, k in with_kernel_grad]))
        table.put("kernel_gradient_norm", [t for t, _ in with_kernel_grad], norms)


def _main_weight_stats(table, taps, chosen, main, flat, members, key, full):
    """Variance, signature and duplicate units of the main weights in a group."""
    if not chosen:
        return
    rows = tf.gather(flat, [members.index(k) for k in chosen])
    tap_indices = [main[k] for k in chosen]
    table.put("weight_variance", tap_indices, stats.variance(rows, axis=1))
    signature = tf.cond(
        full,
        lambda: stats.kernel_signature(rows),
        lambda: tf.fill([len(chosen)], _NAN),
    )
    table.put("kernel_signature", tap_indices, signature)
    shape = key if key[0] != "single" else None
    shared = [j for j, k in enumerate(chosen) if _has_shared_inputs(taps[main[k]])]
    if shared and shape is not None and len(shape) >= 2:
        columns = tf.reshape(tf.gather(rows, shared), [len(shared), -1, shape[-1]])
        found = duplicates(stats.duplicate_weight_units, columns, shape[-1], full)
        for j, s in enumerate(shared):
            table.weight_duplicates[tap_indices[s]] = found[j]


def _per_tap(table, taps, owners, squares, bad, g_squares, g_bad) -> None:
    """Sum per-variable squares and non-finite counts per tap (one matmul each)."""
    n_vars = len(squares)

    def summed(values):
        members = np.zeros((len(taps), n_vars), np.float32)
        for t, ks in enumerate(owners):
            for k in ks:
                members[t, k] = 1.0 if values[k] is not None else 0.0
        stacked = tf.stack([v if v is not None else tf.zeros([]) for v in values])
        return tf.linalg.matvec(tf.constant(members), stacked), members.sum(1) > 0

    w_sq, w_has = summed(squares)
    w_bad, _ = summed(bad)
    g_sq, g_has = summed(g_squares)
    g_nf, _ = summed(g_bad)
    with_weights = [t for t in range(len(taps)) if w_has[t]]
    with_grads = [t for t in range(len(taps)) if g_has[t]]
    table.put("nonfinite_weights", with_weights, tf.gather(w_bad, with_weights))
    if with_grads:
        norm = tf.sqrt(tf.gather(g_sq, with_grads))
        table.put("gradient_norm", with_grads, norm)
        ratio = stats.ratio(norm, tf.sqrt(tf.gather(w_sq, with_grads)))
        table.put("gradient_to_weight_ratio", with_grads, ratio)
        table.put("nonfinite_gradients", with_grads, tf.gather(g_nf, with_grads))
    table.taps_with_weight_gradients = set(with_grads)
    _output_gradient_nonfinite(table, taps)


def _output_gradient_nonfinite(table: Table, taps: list[Tap]) -> None:
    """Taps without weight gradients: count non-finite output gradients."""
    skip = table.taps_with_weight_gradients
    for indices, counts in table.output_gradient_nonfinite.items():
        keep = [j for j, t in enumerate(indices) if t not in skip]
        if keep:
            table.put(
                "nonfinite_gradients",
                [indices[j] for j in keep],
                tf.gather(counts, keep),
            )


def duplicate_fractions(table: Table, full) -> None:
    """Fraction of units duplicating another, by weights or by outputs."""
    weights, outputs = table.weight_duplicates, table.output_duplicates
    for t in sorted(set(weights) | set(outputs)):
        masks = [m for m in (weights.get(t), outputs.get(t)) if m is not None]
        if len(masks) == 2 and masks[0].shape[0] != masks[1].shape[0]:
            masks = masks[1:]  # Unit counts differ: trust the outputs.
        mask = tf.logical_or(*masks) if len(masks) == 2 else masks[0]
        fraction = tf.reduce_mean(tf.cast(mask, tf.float32))
        table.put("duplicate_unit_fraction", [t], tf.where(full, fraction, _NAN))


def duplicates(reduction, columns: tf.Tensor, units, full) -> tf.Tensor:
    """`reduction(columns)` when `full`; no duplicates for a single unit.

    One unit cannot duplicate another (and the sort-and-compare reduction
    needs two), e.g. a `Dense(1)` regression head. Without `full` the search
    is skipped on the device (and the fraction reported as NaN).
    """
    none = tf.zeros([tf.shape(columns)[0], tf.shape(columns)[2]], tf.bool)
    if units is not None and units < 2:
        return none
    return tf.cond(full, lambda: reduction(columns), lambda: none)


def nonfinite(flat: tf.Tensor, check: tf.Tensor) -> tf.Tensor:
    """Per-row non-finite counts, computed only when they can be non-zero.

    `check` is a reduction of the rows (their variance or sum of squares): it
    is finite whenever every value is, so the full scan runs only otherwise.
    """
    return tf.cond(
        tf.reduce_all(tf.math.is_finite(check)),
        lambda: tf.zeros([tf.shape(flat)[0]], tf.float32),
        lambda: stats.nonfinite_count(flat, 1),
    )


def _has_shared_inputs(tap: Tap) -> bool:
    """Units whose incoming weights are comparable: all see the same inputs."""
    weight = tap.main_weight
    return weight is not None and len(weight.shape) >= 2 and not tap.info.depthwise
