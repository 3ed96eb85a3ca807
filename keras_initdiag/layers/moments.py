"""Streaming float64 statistics: count, mean and co-moment (pure numpy).

The co-moment of `n` rows is `M = sum_i (x_i - mean)(x_i - mean)^T`, so the
(population) covariance is `M / n`. Two summaries merge exactly with the
pairwise update of Chan, Golub and LeVeque: no `E[x^2] - E[x]^2`, which loses
every significant digit when the mean is large compared to the spread.

Reference:
    - [Chan, Golub & LeVeque, 1979](
        https://doi.org/10.1007/978-3-642-51461-6_3), "Updating formulae and a
        pairwise algorithm for computing sample variances".
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Moments:
    """Count, mean and co-moment of a set of feature vectors, in float64.

    Args:
        count: Number of rows summarized. A float, so that very large counts
            merge without integer overflow.
        mean: Mean row, shape `(d,)`.
        comoment: Sum of outer products of the centered rows, shape `(d, d)`.

    Example:
    ```python
    import numpy as np
    from keras_initdiag.layers import moments

    m = moments.from_batch(np.random.normal(size=(100, 3)))
    cov = moments.covariance(m)
    ```
    """

    count: float
    mean: np.ndarray
    comoment: np.ndarray

    @property
    def features(self) -> int:
        """Number of features `d`."""
        return int(self.mean.shape[0])


def empty(features: int) -> Moments:
    """Returns the summary of zero rows with `features` features.

    Args:
        features: Number of features `d`.

    Returns:
        A `Moments` with count 0, a zero mean and a zero co-moment.

    Example:
    ```python
    from keras_initdiag.layers import moments

    m = moments.empty(4)  # the start of a streaming accumulation
    ```
    """
    return Moments(0.0, np.zeros(features), np.zeros((features, features)))


def from_batch(rows: np.ndarray) -> Moments:
    """Summarizes a batch of rows in float64 (two-pass: mean, then centered).

    Args:
        rows: Array of shape `(n, d)`, one row per sample.

    Returns:
        The `Moments` of the rows.

    Example:
    ```python
    import numpy as np
    from keras_initdiag.layers import moments

    m = moments.from_batch(np.ones((8, 2)))  # count 8, zero co-moment
    ```
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(
            f"Argument `rows` must have shape (n, d). Received: shape={rows.shape}"
        )
    n, d = rows.shape
    if n == 0:
        return empty(d)
    mean = rows.mean(axis=0)
    centered = rows - mean
    return Moments(float(n), mean, centered.T @ centered)


def merge(a: Moments, b: Moments) -> Moments:
    """Merges two summaries exactly (Chan et al. pairwise update).

    Args:
        a: Summary of the first set of rows.
        b: Summary of the second set of rows, with the same number of features.

    Returns:
        The summary of the union of both sets of rows.

    Example:
    ```python
    import numpy as np
    from keras_initdiag.layers import moments

    x = np.random.normal(size=(100, 3))
    total = moments.merge(moments.from_batch(x[:50]), moments.from_batch(x[50:]))
    # total equals moments.from_batch(x) up to rounding
    ```
    """
    if a.features != b.features:
        raise ValueError(
            "Cannot merge statistics of different feature sizes. "
            f"Received: {a.features} and {b.features} features"
        )
    if b.count == 0:
        return a
    if a.count == 0:
        return b
    count = a.count + b.count
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.count / count)
    comoment = (
        a.comoment + b.comoment + np.outer(delta, delta) * (a.count * b.count / count)
    )
    return Moments(count, mean, comoment)


def covariance(m: Moments) -> np.ndarray:
    """Returns the population covariance `comoment / count` (symmetrized).

    Args:
        m: A summary with a positive count.

    Returns:
        The `(d, d)` covariance matrix in float64.

    Example:
    ```python
    import numpy as np
    from keras_initdiag.layers import moments

    x = np.random.normal(size=(100, 3))
    cov = moments.covariance(moments.from_batch(x))  # == np.cov(x.T, ddof=0)
    ```
    """
    if m.count <= 0:
        raise ValueError("Cannot compute a covariance from zero rows.")
    cov = m.comoment / m.count
    return 0.5 * (cov + cov.T)
