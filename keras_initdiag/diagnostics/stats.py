"""Pure tensor reductions: every statistic the probe computes on the device.

Each function takes float32 tensors and returns a float32 scalar tensor. Units
are the last axis; every other axis (batch, space, time) is a sample axis.
"""

from __future__ import annotations

import tensorflow as tf

#: Outputs within this fraction of the half-range of a bounded activation from
#: either limit count as saturated (tanh: |a| > 0.99).
SATURATION_MARGIN = 0.01

#: Bounded activations and their limits.
BOUNDS: dict[str, tuple[float, float]] = {
    "tanh": (-1.0, 1.0),
    "sigmoid": (0.0, 1.0),
    "hard_sigmoid": (0.0, 1.0),
    "hard_tanh": (-1.0, 1.0),
    "softsign": (-1.0, 1.0),
}

# Two units count as identical when their random projections agree to this
# relative tolerance (three independent projections must all agree).
_DUPLICATE_RTOL = 1e-5
_PROJECTIONS = 3
NAN = float("nan")


def mean(x: tf.Tensor, axis=None) -> tf.Tensor:
    """Mean over `axis` (every element by default)."""
    return tf.reduce_mean(x, axis=axis)


def variance(x: tf.Tensor, axis=None, mean: tf.Tensor | None = None) -> tf.Tensor:
    """Population variance over `axis` (two-pass, not E[x^2]-E[x]^2).

    `mean`: the mean over `axis` when the caller has it (an int `axis`), so
    that it is not computed twice.
    """
    if mean is None:
        mean = tf.reduce_mean(x, axis=axis, keepdims=True)
    elif axis is not None:
        mean = tf.expand_dims(mean, axis)
    return tf.reduce_mean(tf.square(x - mean), axis=axis)


def rms(x: tf.Tensor, axis=None) -> tf.Tensor:
    """Root mean square over `axis`."""
    return tf.sqrt(tf.reduce_mean(tf.square(x), axis=axis))


def sum_of_squares(x: tf.Tensor, axis=None) -> tf.Tensor:
    """Sum of squares over `axis` (the squared L2 norm)."""
    return tf.reduce_sum(tf.square(x), axis=axis)


def ratio(numerator: tf.Tensor, denominator: tf.Tensor) -> tf.Tensor:
    """`numerator / denominator`, NaN where the denominator is zero."""
    safe = tf.where(denominator > 0, denominator, tf.ones_like(denominator))
    return tf.where(denominator > 0, numerator / safe, NAN)


def nonfinite_count(x: tf.Tensor, axis=None, total: tf.Tensor | None = None):
    """How many elements are NaN or +-Inf, over `axis`.

    A NaN or an infinity anywhere makes a sum over `axis` non-finite, so the
    elements are counted only when such a sum is not finite; otherwise the
    count is 0 at the price of one check (counting costs four passes over
    `x`). A sum that overflowed from finite elements is counted exactly too.

    Args:
        x: The tensor.
        axis: The axis counted over. Defaults to `None` (every element).
        total: A reduction over `axis` the caller already has and that is
            non-finite wherever an element is (a sum, a mean, a sum of
            squares). Defaults to `None` (the sum is taken here).

    Example:
    >>> float(nonfinite_count(tf.constant([1.0, float("nan"), float("inf")])))
    2.0
    """
    if total is None:
        total = tf.reduce_sum(x, axis=axis)

    def count():
        bad = tf.logical_not(tf.math.is_finite(x))
        return tf.reduce_sum(tf.cast(bad, tf.float32), axis=axis)

    return tf.cond(
        tf.reduce_all(tf.math.is_finite(total)),
        lambda: tf.zeros_like(total),
        count,
    )


def saturation_fraction(x: tf.Tensor, low, high, axis=None) -> tf.Tensor:
    """Fraction of outputs within `SATURATION_MARGIN` of a bounded range's limits.

    `low` and `high` broadcast against `x` (one pair per row when stacked).
    """
    margin = SATURATION_MARGIN * (high - low) / 2.0
    pinned = tf.logical_or(x <= low + margin, x >= high - margin)
    return tf.reduce_mean(tf.cast(pinned, tf.float32), axis=axis)


def units_view(x: tf.Tensor) -> tf.Tensor:
    """Reshape to (samples, units): the last axis is the unit axis."""
    return tf.reshape(x, [-1, tf.shape(x)[-1]])


def constant_units(columns: tf.Tensor) -> tf.Tensor:
    """Boolean (..., units): units whose value never changes over the samples.

    Args:
        columns: (..., samples, units).
    """
    high = tf.reduce_max(columns, axis=-2)
    low = tf.reduce_min(columns, axis=-2)
    # max |x| is max(high, -low): no third pass over the columns.
    return high - low <= 1e-6 * tf.maximum(high, -low)


def unit_fraction(mask: tf.Tensor) -> tf.Tensor:
    """Fraction of True units (the last axis) of a boolean mask, per row."""
    return tf.reduce_mean(tf.cast(mask, tf.float32), axis=-1)


def dead_fraction(columns: tf.Tensor) -> tf.Tensor:
    """Fraction of units that are zero or constant over the whole probe batch.

    Args:
        columns: (..., samples, units), e.g. `units_view` of a layer output.
    """
    return unit_fraction(constant_units(columns))


def duplicate_units(columns: tf.Tensor, candidates: tf.Tensor) -> tf.Tensor:
    """Boolean (groups, units): candidate columns equal to another candidate.

    Each column is reduced to `_PROJECTIONS` random projections (the same
    arithmetic for every column, so identical columns give identical values);
    columns are sorted by the first projection and compared with their
    neighbours on all of them (relative tolerance `_DUPLICATE_RTOL`). Cost:
    O(samples * units + units log units).

    Args:
        columns: (groups, samples, units): one layer, or several of one shape.
        candidates: (groups, units) boolean: which units may match.
    """
    n = tf.shape(columns)[1]
    projections = tf.random.stateless_normal([n, _PROJECTIONS], seed=[17, 5])
    # The ellipsis form measured ~40 ms less than "gnu,nk->gku" over
    # ResNet50's activations at 32 samples (benchmarks/probe_compare.py).
    keys = tf.einsum("...nu,nk->...ku", columns, projections)
    big = tf.reduce_max(tf.abs(keys), axis=[1, 2], keepdims=True) + 1.0
    units = tf.shape(keys)[2]
    # Non-candidates get distinct far-away keys so they never match.
    far = 4.0 * big * (1.0 + tf.cast(tf.range(units), keys.dtype))[None, None, :]
    keys = tf.where(candidates[:, None, :], keys, far)
    order = tf.argsort(keys[:, 0, :], axis=-1)
    ordered = tf.gather(keys, order, axis=2, batch_dims=1)
    tol = _DUPLICATE_RTOL * tf.reduce_max(tf.abs(ordered), axis=1)
    tol = tf.maximum(tol[:, :-1], tol[:, 1:])
    gaps = tf.abs(ordered[:, :, 1:] - ordered[:, :, :-1])
    same = tf.reduce_all(gaps <= tol[:, None, :], axis=1)
    pad = tf.zeros_like(same[:, :1])
    dup_ordered = tf.logical_or(
        tf.concat([same, pad], axis=1), tf.concat([pad, same], axis=1)
    )
    inverse = tf.argsort(order, axis=-1)
    return tf.gather(dup_ordered, inverse, axis=1, batch_dims=1)


def kernel_signature(kernels: tf.Tensor) -> tf.Tensor:
    """One scalar per row that identical kernels share: a fixed random projection.

    Args:
        kernels: (groups, elements): flattened kernels of one shape.
    """
    weights = tf.random.stateless_normal(tf.shape(kernels)[1:], seed=[29, 3])
    return tf.reduce_sum(kernels * weights[None, :], axis=1)
