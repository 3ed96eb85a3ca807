import numpy as np
import pytest

from keras_initdiag.layers import moments


def _data(n=500, d=5, offset=1e4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * np.arange(1, d + 1) + offset


def test_from_batch_matches_numpy():
    x = _data()
    m = moments.from_batch(x)
    assert m.count == len(x)
    np.testing.assert_allclose(m.mean, x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(moments.covariance(m), np.cov(x.T, ddof=0), rtol=1e-10)


@pytest.mark.parametrize("sizes", [(1, 499), (250, 250), (7, 13, 480), (0, 500)])
def test_merge_equals_one_shot(sizes):
    x = _data()
    parts = np.split(x, np.cumsum(sizes)[:-1])
    total = moments.empty(x.shape[1])
    for part in parts:
        total = moments.merge(total, moments.from_batch(part))
    one_shot = moments.from_batch(x)
    assert total.count == one_shot.count
    np.testing.assert_allclose(total.mean, one_shot.mean, rtol=1e-12)
    np.testing.assert_allclose(total.comoment, one_shot.comoment, rtol=1e-10)


def test_merge_is_stable_for_large_offsets():
    # Naive E[x^2] - E[x]^2 loses all digits at an offset of 1e8 (float64).
    x = _data(n=1000, d=2, offset=1e8, seed=1)
    total = moments.empty(2)
    for row in x:
        total = moments.merge(total, moments.from_batch(row[None]))
    centered = x - x.mean(axis=0)
    exact = centered.T @ centered / len(x)
    np.testing.assert_allclose(moments.covariance(total), exact, rtol=1e-8, atol=1e-7)
    naive = x.T @ x / len(x) - np.outer(x.mean(axis=0), x.mean(axis=0))
    assert np.abs(naive - exact).max() > 1e-2  # what the merge avoids


def test_merge_rejects_different_feature_sizes():
    with pytest.raises(ValueError, match="different feature sizes"):
        moments.merge(moments.empty(2), moments.empty(3))


def test_bad_arguments():
    with pytest.raises(ValueError, match="shape"):
        moments.from_batch(np.zeros(3))
    with pytest.raises(ValueError, match="zero rows"):
        moments.covariance(moments.empty(2))
    assert moments.from_batch(np.zeros((0, 2))).count == 0
