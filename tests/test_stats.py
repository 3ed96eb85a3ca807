"""Statistics against closed forms on literal tensors."""

import numpy as np
import pytest
import tensorflow as tf

from keras_initdiag.diagnostics import stats


def test_moments_match_numpy():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(64, 10)).astype("float32")
    assert float(stats.mean(tf.constant(x))) == pytest.approx(x.mean(), rel=1e-6)
    assert float(stats.variance(tf.constant(x))) == pytest.approx(x.var(), rel=1e-5)
    assert float(stats.rms(tf.constant(x))) == pytest.approx(
        np.sqrt((x**2).mean()), rel=1e-6
    )


def test_variance_is_two_pass_for_large_offsets():
    # E[x^2] - E[x]^2 loses everything here in float32; two-pass keeps it.
    x = tf.constant(1e4 + np.array([-1.0, 1.0] * 50, dtype="float32"))
    assert float(stats.variance(x)) == pytest.approx(1.0, rel=1e-3)


def test_row_reductions_and_ratio():
    x = tf.constant([[3.0, 4.0], [1.0, 1.0]])
    assert stats.sum_of_squares(x, axis=1).numpy().tolist() == [25.0, 2.0]
    assert stats.variance(x, axis=1).numpy().tolist() == [0.25, 0.0]
    mean = stats.mean(x, axis=1)
    assert stats.variance(x, 1, mean).numpy().tolist() == [0.25, 0.0]
    assert float(stats.ratio(tf.constant(1.0), tf.constant(4.0))) == 0.25
    assert np.isnan(float(stats.ratio(tf.constant(1.0), tf.constant(0.0))))


def test_nonfinite_count():
    x = tf.constant([1.0, np.nan, np.inf, -np.inf, 0.0])
    assert float(stats.nonfinite_count(x)) == 3.0


@pytest.mark.parametrize("given", ["none", "sum", "mean", "sum_of_squares"])
def test_nonfinite_count_per_row_is_exact_with_or_without_a_total(given):
    """Counted only where a total is not finite, yet exact: rows with NaN and
    infinities (which cancel to NaN in a sum), a finite row whose sum and
    squares overflow float32 (counted, 0), and a clean row."""
    rows = np.array(
        [
            [1.0, np.nan, 2.0, np.inf],
            [np.inf, -np.inf, 1.0, 1.0],
            [3e38, 3e38, 3e38, 1.0],
            [1.0, -2.0, 3.0, 0.5],
        ],
        dtype="float32",
    )
    x = tf.constant(rows)
    total = {
        "none": None,
        "sum": tf.reduce_sum(x, 1),
        "mean": tf.reduce_mean(x, 1),
        "sum_of_squares": stats.sum_of_squares(x, 1),
    }[given]
    counts = stats.nonfinite_count(x, 1, total).numpy()
    np.testing.assert_array_equal(counts, (~np.isfinite(rows)).sum(axis=1))
    np.testing.assert_array_equal(counts, [2, 2, 0, 0])
    # Inside a compiled function too (the probe's), where the count is a branch.
    compiled = tf.function(lambda t: stats.nonfinite_count(t, 1), autograph=False)
    np.testing.assert_array_equal(compiled(x).numpy(), [2, 2, 0, 0])


def test_dead_fraction_counts_constant_units():
    x = np.random.default_rng(1).normal(size=(32, 8)).astype("float32")
    x[:, 0] = 0.0  # dead ReLU unit
    x[:, 1] = 0.7  # constant unit
    x[:, 2] = np.maximum(x[:, 2], 0)  # alive ReLU unit
    assert float(stats.dead_fraction(tf.constant(x[None]))[0]) == pytest.approx(2 / 8)
    # A constant negative unit is dead too: max |x| is read as max(max, -min).
    x[:, 3] = -0.3
    assert float(stats.dead_fraction(tf.constant(x[None]))[0]) == pytest.approx(3 / 8)
    x[:5, 3] = -0.3 + 1e-4  # no longer constant
    assert float(stats.dead_fraction(tf.constant(x[None]))[0]) == pytest.approx(2 / 8)


def test_saturation_fraction():
    x = tf.constant([-0.995, -0.5, 0.0, 0.5, 0.991, 1.0])
    assert float(stats.saturation_fraction(x, -1.0, 1.0)) == pytest.approx(3 / 6)
    rows = tf.constant([[-0.995, 0.0], [0.001, 0.5]])
    low, high = tf.constant([[-1.0], [0.0]]), tf.constant([[1.0], [1.0]])
    fractions = stats.saturation_fraction(rows, low, high, axis=1)
    assert fractions.numpy().tolist() == [0.5, 0.5]
    s = tf.constant([0.001, 0.5, 0.999, 0.2])
    assert float(stats.saturation_fraction(s, 0.0, 1.0)) == pytest.approx(2 / 4)


def _by_weights(kernels):
    """Units with the same incoming weights, as the probe searches them."""
    return stats.duplicate_units(kernels, tf.ones_like(kernels[:, 0, :], tf.bool))


def _by_outputs(columns):
    """Non-constant units with the same outputs, as the probe searches them."""
    candidates = tf.logical_not(stats.constant_units(columns))
    return stats.duplicate_units(columns, candidates)


def test_duplicate_weight_units_finds_exact_copies_only():
    w = np.random.default_rng(2).normal(size=(50, 6)).astype("float32")
    w[:, 4] = w[:, 1]
    w[:, 5] = w[:, 1]
    mask = _by_weights(tf.constant(w[None]))[0].numpy()
    assert mask.tolist() == [False, True, False, False, True, True]
    w[0, 5] += 1e-2  # A small but real difference is not a duplicate.
    mask = _by_weights(tf.constant(w[None]))[0].numpy()
    assert mask.tolist() == [False, True, False, False, True, False]


def test_duplicate_output_units_ignore_constant_units():
    x = np.random.default_rng(3).normal(size=(40, 5)).astype("float32")
    x[:, 3] = x[:, 0]
    x[:, 1] = 0.0
    x[:, 2] = 0.0  # Two dead units are identical but left to the dead rule.
    mask = _by_outputs(tf.constant(x[None]))[0].numpy()
    assert mask.tolist() == [True, False, False, True, False]


def test_all_zero_kernel_is_fully_duplicate():
    mask = _by_weights(tf.zeros([2, 16, 8]))
    assert mask.numpy().all()


def test_random_kernels_have_no_duplicates():
    w = tf.random.stateless_normal([3, 256, 512], seed=[1, 2])
    assert not _by_weights(w).numpy().any()


def test_kernel_signature_equal_for_equal_kernels():
    w = tf.random.stateless_normal([1, 32], seed=[0, 1])
    rows = tf.concat([w, w, w * 1.01], axis=0)
    a, b, c = stats.kernel_signature(rows).numpy()
    assert a == b and a != c
