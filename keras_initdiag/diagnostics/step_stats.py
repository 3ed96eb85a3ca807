"""What one training step is reduced to: norms and weight samples, on the device.

Shared by the two places that look at real training steps: the in-step path
(`train_grads.GradientRecorder`, inside the compiled step) and the host-side
`callbacks.updates.UpdateTracker` (the first steps' update ratios, and the
early watch without the in-step path). Both sample the same entries of each
main weight (`sample_picks`), so their relative updates agree.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

#: Entries of each main weight whose update is measured (a fixed random
#: sample; all of them up to this many). For a dense update the sampled ratio
#: estimates the whole one within a few percent.
SAMPLE = 4096
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


def sample_picks(weights, sample: int = SAMPLE) -> list[np.ndarray | None]:
    """For each weight, the sorted flat indices of its sampled entries.

    None (every entry) for a weight of at most `sample` entries. The same
    weights always get the same picks (one seeded generator, in order).

    Example:
    >>> [p is None for p in sample_picks([small_kernel, big_kernel])]
    [True, False]
    """
    rng = np.random.default_rng(0)
    picks = []
    for weight in weights:
        size = math.prod(weight.shape)
        picks.append(
            None if size <= sample else np.sort(rng.choice(size, sample, replace=False))
        )
    return picks


def sampled(variable, picks) -> tf.Tensor:
    """The picked entries of `variable`'s current value, flat, in float32."""
    flat = tf.reshape(variable.value, [-1])
    flat = flat if picks is None else tf.gather(flat, picks)
    return tf.cast(flat, tf.float32)


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


def norms(tensors: list) -> list:
    """The float32 norm of each tensor: plain, scaled only where it must be.

    One plain reduction per tensor, then one check for the whole step: only
    if a norm left `PLAIN_RANGE` (or is 0 for a nonzero tensor that
    underflowed) are they all computed again as `scaled_norm`. The scaled
    form is ~9 ops a tensor; a step of 42 weights saved ~300 small ops.
    """
    if not tensors:
        return []
    plain = tf.stack([tf.math.reduce_euclidean_norm(t) for t in tensors])
    low, high = PLAIN_RANGE
    fine = tf.reduce_all((plain >= low) & (plain <= high))
    result = tf.cond(
        fine,
        lambda: plain,
        lambda: tf.stack([scaled_norm(t) for t in tensors]),
    )
    return tf.unstack(result)


def gradient_norm(gradient, unscale=None) -> tf.Tensor:
    """The norm of a gradient, in float32 (IndexedSlices summed by row first).

    `unscale` (a loss scaling's `1 / scale`) multiplies the gradient first.
    """
    if isinstance(gradient, tf.IndexedSlices):
        rows, position = tf.unique(gradient.indices)
        gradient = tf.math.unsorted_segment_sum(
            gradient.values, position, tf.size(rows)
        )
    gradient = tf.cast(gradient, tf.float32)
    if unscale is not None:
        gradient = gradient * unscale
    return scaled_norm(gradient)
