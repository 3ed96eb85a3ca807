"""What one training step is reduced to: norms and weight samples, on the device.

Shared by the two places that look at real training steps: the in-step path
(`train_grads.GradientRecorder`, inside the compiled step) and the host-side
`callbacks.updates.UpdateTracker` (the first steps' update ratios, and the
early watch without the in-step path). Both sample the same entries of each
main weight (`sample_picks`), so their relative updates agree.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

#: Entries of each main weight whose update is measured (a fixed random
#: sample; all of them up to this many).
SAMPLE = 4096
#: The sample is made of runs of this many consecutive entries (256 random
#: runs, fixed per weight): one row gather, ~5 us a 256 x 256 kernel against
#: ~15 us for 4,096 single entries. For a dense update whose rows are alike
#: the sampled ratio is within ~3% of the whole (95% of draws, simulated on a
#: 256 x 256 kernel); rows that differ widely (a first layer on pixels with a
#: log-normal spread of scales, sigma 1.5) widen it to ~30% median, ~65% at
#: the 95th percentile (single entries: 11% and 33%): a tenth of a decade, on
#: quantities judged by their order of magnitude.
RUN = 16
#: Plain float32 norms inside these bounds are exact enough: no square of an
#: entry underflowed or overflowed on the way (float32 holds 1e-38 to 3e38).
PLAIN_RANGE = (1e-15, 1e15)


def users_optimizer(optimizer):
    """The optimizer that applies the updates, loss scaling seen through.

    Example:
    >>> users_optimizer(keras.optimizers.LossScaleOptimizer(sgd)) is sgd
    True
    """
    inner = getattr(optimizer, "inner_optimizer", None)
    return optimizer if inner is None else users_optimizer(inner)


def sample_picks(
    weights, sample: int = SAMPLE, sparse=None
) -> list[tuple[int, np.ndarray] | None]:
    """For each weight, its sampled runs: `(run length, sorted run indices)`.

    Run `i` of length `n` is the flat entries `[n * i, n * (i + 1))`. Runs of
    `RUN` entries, or single entries for a weight marked `sparse` (an
    embedding table: a step moves only the rows it looked up, and a few
    runs would touch only a few rows, often none that moved) or a `sample`
    too small for runs. None (every entry) for a weight of at most `sample`
    entries. The same weights always get the same picks (one seeded
    generator, in order).

    Args:
        weights: The weights (anything with a `shape`).
        sample: Entries sampled per weight.
        sparse: Per weight, whether its updates touch only some rows.

    Example:
    >>> [p is None for p in sample_picks([small_kernel, big_kernel])]
    [True, False]
    """
    rng = np.random.default_rng(0)
    sparse = [False] * len(weights) if sparse is None else sparse
    picks = []
    for weight, rows in zip(weights, sparse):
        size = math.prod(weight.shape)
        if size <= sample:
            picks.append(None)
            continue
        run = 1 if rows or sample < RUN or sample % RUN else RUN
        count = sample // run
        picks.append((run, np.sort(rng.choice(size // run, count, replace=False))))
    return picks


def sample_scale(weights, picks) -> np.ndarray:
    """Per weight, `sqrt(entries / sampled entries)`: 1 if sampled whole.

    A sampled norm times it estimates the whole weight's: the sum of
    squares over runs drawn uniformly is, in expectation, the sampled
    fraction of the whole sum (exact for a weight of at most `SAMPLE`
    entries; for an embedding table, whose steps move a few rows, the
    estimate is right on average and scattered step by step).

    Example:
    >>> sample_scale([np.zeros((8, 8))], [None])
    array([1.])
    """
    return np.asarray(
        [
            1.0
            if pick is None
            else math.sqrt(math.prod(w.shape) / (pick[0] * len(pick[1])))
            for w, pick in zip(weights, picks)
        ]
    )


def main_weights(taps, sample: int = SAMPLE) -> list[tuple]:
    """`(tap, main weight, picks)` of each tap with a trainable main weight.

    The picks are `sample_picks`'s, embedding tables marked sparse: the
    in-step path and `UpdateTracker` both take them from here.
    """
    found = [
        tap
        for tap in taps
        if tap.main_variable is not None and tap.main_variable.trainable
    ]
    weights = [tap.main_variable for tap in found]
    sparse = [isinstance(tap.layer, keras.layers.Embedding) for tap in found]
    return list(zip(found, weights, sample_picks(weights, sample, sparse)))


def sampled(variable, picks) -> tf.Tensor:
    """The picked runs of `variable`'s current value, flat, in float32."""
    flat = tf.reshape(variable.value, [-1])
    if picks is not None:
        run, indices = picks
        runs = math.prod(variable.shape) // run
        rows = tf.reshape(flat[: runs * run], [runs, run])
        flat = tf.reshape(tf.gather(rows, indices), [-1])
    return tf.cast(flat, tf.float32)


def samples(weights, picks) -> tf.Tensor:
    """The sampled entries of each weight, one zero-padded row each.

    `[weights, width]` in float32: a zero pad adds nothing to a norm, so one
    reduction over the rows gives every weight's numbers at once.
    """
    rows = [sampled(weight, pick) for weight, pick in zip(weights, picks)]
    width = max(row.shape[0] for row in rows)
    return tf.stack(
        [
            row if row.shape[0] == width else tf.pad(row, [[0, width - row.shape[0]]])
            for row in rows
        ]
    )


def euclidean(values: tf.Tensor, axis=None, xla: bool = False) -> tf.Tensor:
    """The plain Euclidean norm in one kernel, or as XLA can compile it.

    Inside the user's train step, which Keras compiles with XLA by default
    wherever there is an accelerator (`jit_compile="auto"`),
    `tf.math.reduce_euclidean_norm` has no kernel: with `xla` it is
    `sqrt(sum(v^2))`, three ops that XLA fuses. Without XLA the one kernel
    is ~20% faster (42 norms of a 20 x 256 MLP's weights: 0.52 ms against
    0.64 ms on 2 CPU cores).

    Example:
    >>> float(euclidean(tf.constant([3.0, 4.0]), xla=True))
    5.0
    """
    if xla:
        return tf.sqrt(tf.reduce_sum(tf.square(values), axis))
    return tf.math.reduce_euclidean_norm(values, axis)


def moved(after: tf.Tensor, before: tf.Tensor, xla: bool = False) -> tf.Tensor:
    """Per row, `[||after - before||, ||before||]`: `[weights, 2]`.

    The relative update is their ratio (NaN for a weight of all zeros).
    `xla`: as `euclidean`.
    """
    return tf.stack([euclidean(after - before, 1, xla), euclidean(before, 1, xla)], 1)


class Sampler:
    """Samples weights and measures their relative updates, compiled once.

    The host-side path (`callbacks.updates.UpdateTracker`) measures after
    each batch of the first steps; eagerly that is ~130 small ops for a
    20-layer MLP (7 ms, most of a 9 ms train step), compiled it is one call
    (0.8 ms). Traced at its first `update`, for the weights' lifetime.

    Args:
        weights: The weights to sample.
        picks: Their `sample_picks`.

    Example:
    >>> sampler = Sampler(weights, sample_picks(weights))
    >>> before = sampler.sample()
    >>> norms, now = sampler.update(before)   # [weights, 2], after a step
    """

    def __init__(self, weights, picks):
        self.weights, self.picks = list(weights), list(picks)
        self._update = None

    def sample(self) -> tf.Tensor:
        """The sampled entries now, `[weights, width]` (`samples`)."""
        return samples(self.weights, self.picks)

    def update(self, before: tf.Tensor) -> tuple[np.ndarray, tf.Tensor]:
        """`moved(now, before)` as float64 (one host copy), and `now`."""
        if self._update is None:
            self._update = tf.function(self._step)
        norms, now = self._update(before)
        return norms.numpy().astype(np.float64), now

    def _step(self, before):
        now = self.sample()
        return moved(now, before), now


def scaled_norm(values: tf.Tensor) -> tf.Tensor:
    """The Euclidean norm in float32, without overflow or underflow.

    Divided by its largest magnitude first, `max * sqrt(sum((v / max)^2))`:
    a norm anywhere in float32's range comes out right (a gradient of 1e-25
    per entry too, whose squares float32 cannot hold), on devices without
    float64 (TPUs) as on any other.
    """
    largest = tf.reduce_max(tf.abs(values))
    safe = tf.where(largest > 0, largest, tf.ones_like(largest))
    return safe * tf.sqrt(tf.reduce_sum(tf.square(values / safe)))


def norms(tensors: list, xla: bool = False) -> tf.Tensor:
    """The float32 norm of each tensor, one vector: scaled only if it must be.

    One plain reduction per tensor, then one check for the whole step: only
    if a norm left `PLAIN_RANGE` (or is 0 for a nonzero tensor that
    underflowed) are they all computed again as `scaled_norm`. The scaled
    form is ~9 ops a tensor; a step of 42 weights saved ~300 small ops.
    `xla`: the plain norms as XLA can compile them (`euclidean`).
    """
    plain = tf.stack([euclidean(t, xla=xla) for t in tensors])
    low, high = PLAIN_RANGE
    fine = tf.reduce_all((plain >= low) & (plain <= high))
    return tf.cond(
        fine,
        lambda: plain,
        lambda: tf.stack([scaled_norm(t) for t in tensors]),
    )


def combined_norms(parts: tf.Tensor, owners, groups: int) -> tf.Tensor:
    """The norm of each group from its parts' norms, `sqrt(sum(part^2))`.

    All groups at once, each scaled by its largest part first (as
    `scaled_norm`), so that no square underflows or overflows: a constant
    number of ops whatever the number of groups. A group with no part is 0.

    Args:
        parts: The parts' norms, a float32 vector.
        owners: The group of each part (ints in `[0, groups)`).
        groups: How many groups.

    Example:
    >>> combined_norms(tf.constant([3.0, 4.0, 1.0]), [0, 0, 1], 2).numpy()
    array([5., 1.], dtype=float32)
    """
    owners = tf.constant(owners, tf.int32)
    largest = tf.math.unsorted_segment_max(parts, owners, groups)
    safe = tf.where(largest > 0, largest, tf.ones_like(largest))
    ratios = parts / tf.gather(safe, owners)
    return safe * tf.sqrt(
        tf.math.unsorted_segment_sum(tf.square(ratios), owners, groups)
    )


def gradient_norm(gradient, unscale=None) -> tf.Tensor:
    """The norm of a gradient, in float32 (IndexedSlices summed by row first).

    `unscale` (a loss scaling's `1 / scale`) multiplies the gradient first.
    """
    if isinstance(gradient, tf.IndexedSlices):
        gradient = rows_summed(gradient)
    gradient = tf.cast(gradient, tf.float32)
    if unscale is not None:
        gradient = gradient * unscale
    return scaled_norm(gradient)


def rows_summed(slices: tf.IndexedSlices) -> tf.Tensor:
    """An embedding gradient's slices summed per distinct row.

    One slice per lookup, rows repeated: the true gradient's non-zero rows
    (its norm and values) are their sums per index, without materializing
    the whole table. Shared by the in-step path and the probe's backward
    pass (`backward`); XLA compiles it.

    Example:
    >>> g = tf.IndexedSlices(tf.ones([3, 2]), tf.constant([4, 1, 4]), [5, 2])
    >>> rows_summed(g).numpy().tolist()
    [[2.0, 2.0], [1.0, 1.0]]
    """
    rows, position = tf.unique(slices.indices)
    return tf.math.unsorted_segment_sum(slices.values, position, tf.size(rows))
