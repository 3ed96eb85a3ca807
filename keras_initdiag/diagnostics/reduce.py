"""Reductions of one probe into one vector.

Tensors of one shape are reduced stacked (`groups`): stacking copies each
tensor once, which costs more than the op overhead it saves on large
tensors, warm; but a graph that reduces them one by one compiles several
times slower (`STACK_BELOW`, off by default). The vector is
assembled with one static gather per field. Nothing is sliced per layer:
per-layer sums of per-variable values are one matrix-vector product with a
static 0/1 matrix, and what needs a per-layer choice (the duplicate-unit
fraction, by weights or by outputs) is combined on the host. The searches
for duplicate units and identical kernels are built inside one branch each,
taken only on a full diagnosis. Activations may have an unknown batch size
(the probe is traced once for every batch size): tensors whose only unknown
dimension is the batch may still be stacked, the others are reduced one by
one. Everything here runs inside the probe's `tf.function`; the statistics
themselves are the pure functions of `stats`.
"""

from __future__ import annotations

import math

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


#: Compiled, a tensor with at least this many entries per sample (a weight:
#: 32 times as many) is reduced alone; smaller ones are stacked with the
#: others of their shape. Reducing large tensors alone is faster warm (a
#: full diagnosis at 32 samples: ResNet50 394 -> 357 ms with 256 here) but
#: its graph compiles far slower (ResNet50 9.5 -> 30.8 s, a conv ResNet-20
#: 3.8 -> 21.3 s, for 171 against 168 ms warm): the first compiled
#: diagnosis stalls `fit` that long, which ~600 diagnoses would pay back. So
#: every tensor is stacked by default (as eagerly); a finite value is kept
#: for what it measures (`benchmarks/probe_compare.py`).
STACK_BELOW = math.inf


def groups(tensors: list, batch: bool = True, stack: bool | None = None) -> list:
    """`(key, indices)` of the tensors reduced together, by static shape.

    Stacked, tensors of one static shape form a group, keyed by that shape.
    With `batch=True` (activations and their gradients) the first dimension
    may be unknown: it is the batch, shared by every activation of a probe.
    Any other unknown dimension (an embedding gradient's rows, a sequence
    length) makes a group of one, keyed `("single", i)`. Not stacked, a
    tensor is a group of one, keyed by its shape.

    Args:
        tensors: The tensors (None entries are skipped).
        batch: Whether the first dimension is the batch. Defaults to `True`.
        stack: Stack every tensor with the others of its shape. Defaults to
            `None`: stack when executing eagerly (each op costs ~50x more),
            else only tensors smaller than `STACK_BELOW` entries per sample.
    """
    eager = tf.executing_eagerly() if stack is None else stack
    found: dict = {}
    for i, t in enumerate(tensors):
        if t is None:
            continue
        shape = tuple(t.shape)
        known = shape[1:] if batch else shape
        if None in known:
            found[("single", i)] = (("single", i), [i])
            continue
        size = int(np.prod(known)) if batch else int(np.prod(known)) // 32
        if eager or stack is None and size < STACK_BELOW:
            found.setdefault(shape, (shape, []))[1].append(i)
        else:
            found[i] = (shape, [i])
    return list(found.values())


def _stacked(tensors: list, indices: list[int]) -> tf.Tensor:
    """`tensors[indices]` stacked on a new first axis (no copy for one)."""
    if len(indices) == 1:
        return tf.expand_dims(tensors[indices[0]], 0)
    return tf.stack([tensors[i] for i in indices])


def _flat_rows(tensors: list, indices: list[int]) -> tf.Tensor:
    return tf.reshape(_stacked(tensors, indices), [len(indices), -1])


def output_stats(table: Table, taps: list[Tap], outputs: list, searches) -> None:
    """Moments, size, non-finite counts, dead, saturated and duplicate units."""
    constant = {}  # tap index -> its units' "constant over the batch" mask
    for _, indices in groups(outputs):
        stacked = _stacked(outputs, indices)
        flat = tf.reshape(stacked, [len(indices), -1])
        mean = stats.mean(flat, axis=1)
        table.put("activation_mean", indices, mean)
        table.put("activation_variance", indices, stats.variance(flat, 1, mean))
        bad = stats.nonfinite_count(flat, 1, mean)
        table.put("nonfinite_activations", indices, bad)
        per_sample = tf.size(outputs[indices[0]]) // tf.shape(outputs[indices[0]])[0]
        size = tf.fill([len(indices)], tf.cast(per_sample, tf.float32))
        table.put("size", indices, size)
        _saturation(table, taps, indices, flat)
        if len(outputs[indices[0]].shape) < 2:
            continue
        columns = tf.reshape(stacked, [len(indices), -1, tf.shape(stacked)[-1]])
        mask = stats.constant_units(columns)
        table.put("dead_fraction", indices, stats.unit_fraction(mask))
        constant.update((i, mask[j]) for j, i in enumerate(indices))
    tensors = [outputs[i] for i in constant]
    found = _searched(tensors, [tf.logical_not(m) for m in constant.values()], searches)
    table.put("duplicate_output_fraction", list(constant), found)


def _searched(columns: list, candidates: list, searches, batch: bool = True):
    """Fraction of duplicate units in each of `columns` (the last axis).

    Inside one branch taken only when `searches` (a bool tensor) is true,
    else NaN: `stats.duplicate_units` on each group of
    `groups(columns, batch)` (large tensors alone: their projections read
    them once, without a stacked copy). A single unit duplicates nothing.
    """
    if not columns:
        return None

    def search():
        parts, order = [], []
        for _, members in groups(columns, batch=batch):
            order += members
            if columns[members[0]].shape[-1] == 1:
                parts.append(tf.zeros([len(members)]))
                continue
            stacked = _stacked(columns, members)
            units = tf.shape(stacked)[-1]
            found = stats.duplicate_units(
                tf.reshape(stacked, [len(members), -1, units]),
                tf.stack([candidates[k] for k in members]),
            )
            parts.append(stats.unit_fraction(found))
        return tf.gather(tf.concat(parts, 0), np.argsort(order))

    return tf.cond(searches, search, lambda: tf.fill([len(columns)], _NAN))


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
    for _, indices in groups(gradients):
        flat = _flat_rows(gradients, indices)
        rms = stats.rms(flat, axis=1)
        table.put("activation_gradient_rms", indices, rms)
        without = [j for j, i in enumerate(indices) if not taps[i].trainable_weights]
        if without:
            counts = tf.gather(stats.nonfinite_count(flat, 1, rms), without)
            table.put("nonfinite_gradients", [indices[j] for j in without], counts)


class _Reduced:
    """Per-variable sums, sums of squares and non-finite counts, in group order."""

    def __init__(self, tensors: list, on_group=None):
        self.position: dict[int, int] = {}
        sums, squares, bad = [], [], []
        for key, members in groups(tensors, batch=False):
            flat = _flat_rows(tensors, members)
            sums.append(tf.reduce_sum(flat, axis=1))
            squares.append(stats.sum_of_squares(flat, 1))
            bad.append(stats.nonfinite_count(flat, 1, sums[-1]))
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
            rows = flat if len(chosen) == len(members) else tf.gather(flat, chosen)
            tap_indices = [main[members[j]] for j in chosen]
            table.put("weight_variance", tap_indices, stats.variance(rows, axis=1))

    weights = _Reduced(values, main_weights)
    _weight_searches(table, taps, values, main, searches)
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


def _weight_searches(table, taps, values, main: dict, searches) -> None:
    """Signatures (stacked by shape) and duplicate units of the main weights.

    Everything is built inside the search's branches: a light diagnosis
    (`searches` false) neither stacks the kernels nor draws the signature's
    projection.
    """
    for _, members in groups(values, batch=False, stack=True):
        chosen = [k for k in members if k in main]
        if not chosen:
            continue
        tap_indices = [main[k] for k in chosen]
        signature = tf.cond(
            searches,
            lambda chosen=chosen: stats.kernel_signature(_flat_rows(values, chosen)),
            lambda chosen=chosen: tf.fill([len(chosen)], _NAN),
        )
        table.put("kernel_signature", tap_indices, signature)
    shared = [
        k
        for k in sorted(main)
        if _has_shared_inputs(taps[main[k]]) and values[k].shape[-1] is not None
    ]
    kernels = [values[k] for k in shared]
    candidates = [tf.ones([c.shape[-1]], tf.bool) for c in kernels]
    found = _searched(kernels, candidates, searches, batch=False)
    table.put("duplicate_weight_fraction", [main[k] for k in shared], found)


def _has_shared_inputs(tap: Tap) -> bool:
    """Units whose incoming weights are comparable: all see the same inputs."""
    weight = tap.main_variable
    return weight is not None and len(weight.shape) >= 2 and not tap.info.depthwise
