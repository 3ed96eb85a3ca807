"""Whitening linear algebra in float64 numpy: matrices and condition numbers."""

from __future__ import annotations

import math

import numpy as np


def _scales(variances: np.ndarray, reference: float, epsilon: float) -> np.ndarray:
    """`1/sqrt(variance)`, or `1/sqrt(reference)` where variance is degenerate."""
    degenerate = variances <= epsilon * reference
    fallback = 1.0 / math.sqrt(reference) if reference > 0 else 1.0
    safe = np.where(degenerate, 1.0, variances)
    return np.where(degenerate, fallback, 1.0 / np.sqrt(safe))


def whitening_matrices(
    cov: np.ndarray, mode: str, epsilon: float
) -> tuple[np.ndarray, np.ndarray]:
    """Computes the whitening matrix `W` and its inverse from a covariance.

    Rows are samples: `y = (x - mean) @ W` whitens and `x = y @ W_inv + mean`
    colors back. Variances are compared with the mean variance
    `trace(cov) / d`; see `Whitening` for the meaning of `epsilon`.

    Args:
        cov: Symmetric `(d, d)` covariance in float64.
        mode: One of `"standardize"`, `"pca"`, `"zca"`.
        epsilon: Relative variance below which a direction is degenerate.

    Returns:
        `(W, W_inv)`, both `(d, d)` float64.

    Example:
    ```python
    import numpy as np
    from keras_initdiag.layers.linalg import whitening_matrices

    x = np.random.normal(size=(100, 3)) @ np.array([[1, 0, 0], [1, 1, 0], [0, 0, 9]])
    w, w_inv = whitening_matrices(np.cov(x.T, ddof=0), "zca", 1e-6)
    # np.cov(((x - x.mean(0)) @ w).T, ddof=0) is the identity
    ```
    """
    d = cov.shape[0]
    reference = max(float(np.trace(cov)) / d, 0.0)
    if mode == "standardize":
        scale = _scales(np.diag(cov), reference, epsilon)
        return np.diag(scale), np.diag(1.0 / scale)
    eigvals, eigvecs = np.linalg.eigh(cov)
    eigvals, eigvecs = eigvals[::-1], eigvecs[:, ::-1]  # largest variance first
    # Deterministic signs: the largest component of each axis is positive.
    pivots = eigvecs[np.argmax(np.abs(eigvecs), axis=0), np.arange(d)]
    eigvecs = eigvecs * np.where(pivots < 0, -1.0, 1.0)
    scale = _scales(eigvals, reference, epsilon)
    matrix, inverse = eigvecs * scale, (eigvecs / scale).T
    if mode == "zca":
        matrix, inverse = matrix @ eigvecs.T, eigvecs @ inverse
    return matrix, inverse


def condition_number(cov: np.ndarray, epsilon: float) -> float:
    """Largest over smallest variance among the non-degenerate directions.

    Args:
        cov: Symmetric `(d, d)` covariance.
        epsilon: Directions with variance at most `epsilon` times the mean
            variance are left out (they carry no spread to compare).

    Returns:
        The condition number (1.0 is round), or NaN if no direction has spread.

    Example:
    ```python
    import numpy as np
    from keras_initdiag.layers.linalg import condition_number

    condition_number(np.diag([100.0, 1.0]), 1e-6)  # 100.0
    ```
    """
    eigvals = np.linalg.eigvalsh(0.5 * (cov + cov.T))
    kept = eigvals[eigvals > epsilon * max(float(eigvals.mean()), 0.0)]
    if kept.size == 0:
        return float("nan")
    return float(kept.max() / kept.min())
