"""Reductions of one probe, stacked per shape group into one vector.

Tensors of one shape are reduced together (one stacked tensor per shape and
statistic) and the vector is assembled with one static gather per field, so
the probe's graph grows with the number of distinct shapes rather than with
depth. Nothing is sliced per layer: per-layer sums of per-variable values
are one matrix-vector product with a static 0/1 matrix, and what needs a
per-layer choice (the duplicate-unit fraction, by weights or by outputs) is
combined on the host. Activations may have an unknown batch size (the probe
is traced once for every batch size): tensors whose only unknown dimension
is the batch are still stacked, the others are reduced one by one.
Everything here runs inside the probe's `tf.function`; the statistics
themselves are the pure functions of `stats`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_initdiag.diagnostics import stats
from keras_initdiag.diagnostics.report import WEIGHT_AND_UNIT_STATS
from keras_initdiag.diagnostics.taps import Tap

#: Values computed on the device per tap, in vector order. Most are public
#: statistics (`report.STAT_NAMES`). The others are facts the engine turns
#: into statistics or layer facts: `kernel_signature` (a projection that
#: identical kernels share), `size` (output elements per sample), and the
#: fractions of units duplicating another by their incoming weights and by
#: their outputs (the public `duplicate_unit_fraction` is the larger one),
#: and the mean and mean square of the bias and the mean square of the scale
#: each layer applies last (for the theory's predictions).
DEVICE_FIELDS: tuple[str, ...] = (
    "activation_mean",
    "activation_variance",
    "activation_gradient_rms",
    *WEIGHT_AND_UNIT_STATS,
    "duplicate_weight_fraction",
    "duplicate_output_fraction",
    "nonfinite_activations",
    "nonfinite_weights",
    "nonfinite_gradients",
    "kernel_signature",
    "size",
    "bias_mean",
    "bias_second_moment",
    "scale_second_moment",
)
_NAN = float("nan")


class Table:
    """Collects per-tap values computed in stacked groups; emits one vector."""

    def __init__(self, n_taps: int):
        self.n_taps = n_taps
        self.parts: dict[str, list] = {field: [] for field in DEVICE_FIELDS}

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


def output_stats(table: Table, taps: list[Tap], outputs: list, searches) -> None:
    """Moments, size, non-finite counts, dead, saturated and duplicate units."""
    for indices in groups(outputs).values():
        stacked = tf.stack([outputs[i] for i in indices])
        flat = tf.reshape(stacked, [len(indices), -1])
        table.put("activation_mean", indices, stats.mean(flat, axis=1))
        table.put("activation_variance", indices, stats.variance(flat, axis=1))
        table.put("nonfinite_activations", indices, stats.nonfinite_count(flat, 1))
        per_sample = tf.size(outputs[indices[0]]) // tf.shape(outputs[indices[0]])[0]
        size = tf.fill([len(indices)], tf.cast(per_sample, tf.float32))
        table.put("size", indices, size)
        _saturation(table, taps, indices, flat)
        if len(outputs[indices[0]].shape) < 2:
            continue
        units = outputs[indices[0]].shape[-1]
        columns = tf.reshape(stacked, [len(indices), -1, tf.shape(stacked)[-1]])
        table.put("dead_fraction", indices, stats.dead_fraction(columns))
        found = duplicates(stats.duplicate_output_units, columns, units, searches)
        table.put("duplicate_output_fraction", indices, _fraction(found, searches))


def _fraction(mask: tf.Tensor, searches) -> tf.Tensor:
    """Per-row fraction of True units; NaN when the search did not run."""
    return tf.where(searches, tf.reduce_mean(tf.cast(mask, tf.float32), axis=1), _NAN)


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


def gradient_stats(table: Table, taps: list[Tap], gradients: list) -> None:
    """RMS of the back-propagated gradient at each output.

    Its non-finite count is the tap's `nonfinite_gradients` when the tap has
    no weights (`weight_stats` counts the weights' gradients otherwise).
    """
    for indices in groups(gradients).values():
        flat = _flat_rows(gradients, indices)
        table.put("activation_gradient_rms", indices, stats.rms(flat, axis=1))
        without = [j for j, i in enumerate(indices) if not taps[i].trainable_weights]
        if without:
            counts = stats.nonfinite_count(tf.gather(flat, without), 1)
            table.put("nonfinite_gradients", [indices[j] for j in without], counts)


class _Reduced:
    """Per-variable sums, sums of squares and non-finite counts, in group order."""

    def __init__(self, tensors: list, on_group=None):
        self.position: dict[int, int] = {}
        sums, squares, bad = [], [], []
        for key, members in groups(tensors, batch=False).items():
            flat = _flat_rows(tensors, members)
            sums.append(tf.reduce_sum(flat, axis=1))
            squares.append(stats.sum_of_squares(flat, 1))
            bad.append(stats.nonfinite_count(flat, 1))
            for member in members:
                self.position[member] = len(self.position)
            if on_group is not None:
                on_group(key, members, flat)
        self.sums = tf.concat(sums, 0) if sums else None
        self.squares = tf.concat(squares, 0) if squares else None
        self.bad = tf.concat(bad, 0) if bad else None

    def per_tap(self, owners: list[list[int]]) -> tuple[list[int], tuple]:
        """Taps owning any reduced variable, and their sums (one matmul each)."""
        members = np.zeros((len(owners), len(self.position)), np.float32)
        for t, ks in enumerate(owners):
            for k in ks:
                if k in self.position:
                    members[t, self.position[k]] = 1.0
        rows = [t for t in range(len(owners)) if members[t].any()]
        if not rows:
            return [], (None, None)
        matrix = tf.constant(members[rows])
        return rows, (
            tf.linalg.matvec(matrix, self.squares),
            tf.linalg.matvec(matrix, self.bad),
        )


def weight_stats(table: Table, taps: list[Tap], variables, values, grads, searches):
    """Per-tap weight and gradient statistics from one pass over the variables.

    Every variable is reduced once, stacked with the others of its shape: sum
    of squares and non-finite count of its value and of its gradient, and,
    for the taps' main weights, the variance, the signature and the
    duplicate-unit search.

    Args:
        table: The table to fill.
        taps: The taps.
        variables: The distinct variables the taps use (main and trainable).
        values: Their values, float32 tensors (the probe's stateless copies).
        grads: Their gradients (float32 tensors, or None without one).
        searches: Whether to run the signature and duplicate searches.
    """
    if not variables:
        return
    index = {id(v): k for k, v in enumerate(variables)}
    main = {
        index[id(tap.main_variable)]: t
        for t, tap in enumerate(taps)
        if tap.main_variable is not None
    }

    def main_weights(key, members, flat):
        chosen = [j for j, k in enumerate(members) if k in main]
        if chosen:
            tap_indices = [main[members[j]] for j in chosen]
            _main_weight_stats(
                table, taps, tap_indices, tf.gather(flat, chosen), key, searches
            )

    weights = _Reduced(values, main_weights)
    _bias_and_scale(table, taps, index, weights)
    gradients = _Reduced(grads)
    owners = [[index[id(w)] for w in tap.trainable_weights] for tap in taps]
    rows, (w_sq, w_bad) = weights.per_tap(owners)
    table.put("nonfinite_weights", rows, w_bad)
    with_grads, (g_sq, g_bad) = gradients.per_tap(owners)
    if with_grads:
        norm = tf.sqrt(g_sq)
        table.put("gradient_norm", with_grads, norm)
        weight_sq = tf.gather(w_sq, [rows.index(t) for t in with_grads])
        table.put(
            "gradient_to_weight_ratio",
            with_grads,
            stats.ratio(norm, tf.sqrt(weight_sq)),
        )
        table.put("nonfinite_gradients", with_grads, g_bad)
    kernels = [
        (t, gradients.position[k]) for k, t in main.items() if k in gradients.position
    ]
    if kernels:
        picked = tf.gather(gradients.squares, [p for _, p in kernels])
        table.put("kernel_gradient_norm", [t for t, _ in kernels], tf.sqrt(picked))


def _bias_and_scale(table: Table, taps: list[Tap], index: dict, weights) -> None:
    """Mean and mean square of each tap's bias, mean square of its scale.

    Read from the per-variable sums of `weights` (a `_Reduced` of the
    variables' values), so no variable is reduced twice.
    """
    for attr, fields in (
        ("bias", (("bias_mean", "sums"), ("bias_second_moment", "squares"))),
        ("scale", (("scale_second_moment", "squares"),)),
    ):
        found = [
            (t, weights.position[index[id(getattr(tap, attr))]], getattr(tap, attr))
            for t, tap in enumerate(taps)
            if getattr(tap, attr) is not None and id(getattr(tap, attr)) in index
        ]
        if not found:
            continue
        sizes = tf.constant([float(max(np.prod(v.shape), 1)) for _, _, v in found])
        rows = [p for _, p, _ in found]
        for field, totals in fields:
            picked = tf.gather(getattr(weights, totals), rows)
            table.put(field, [t for t, _, _ in found], picked / sizes)


def _main_weight_stats(table, taps, tap_indices, rows, key, searches) -> None:
    """Variance, signature and duplicate units of the main weights in a group."""
    table.put("weight_variance", tap_indices, stats.variance(rows, axis=1))
    signature = tf.where(searches, stats.kernel_signature(rows), _NAN)
    table.put("kernel_signature", tap_indices, signature)
    shape = key if key[0] != "single" else None
    shared = [j for j, t in enumerate(tap_indices) if _has_shared_inputs(taps[t])]
    if shared and shape is not None and len(shape) >= 2:
        columns = tf.reshape(tf.gather(rows, shared), [len(shared), -1, shape[-1]])
        found = duplicates(stats.duplicate_weight_units, columns, shape[-1], searches)
        table.put(
            "duplicate_weight_fraction",
            [tap_indices[j] for j in shared],
            _fraction(found, searches),
        )


def duplicates(reduction, columns: tf.Tensor, units, searches) -> tf.Tensor:
    """`reduction(columns)` when `searches` is true; none for a single unit.

    One unit cannot duplicate another (and the sort-and-compare reduction
    needs two), e.g. a `Dense(1)` regression head. When `searches` (a bool
    tensor) is false, the search is skipped on the device (and the fraction
    reported as NaN).
    """
    none = tf.zeros([tf.shape(columns)[0], tf.shape(columns)[2]], tf.bool)
    if units is not None and units < 2:
        return none
    return tf.cond(searches, lambda: reduction(columns), lambda: none)


def _has_shared_inputs(tap: Tap) -> bool:
    """Units whose incoming weights are comparable: all see the same inputs."""
    weight = tap.main_variable
    return weight is not None and len(weight.shape) >= 2 and not tap.info.depthwise
