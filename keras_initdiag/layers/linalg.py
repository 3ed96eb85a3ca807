"""Whitening linear algebra in float64 numpy: matrices and condition numbers.

Also the checks of an explicit `mean` and `matrix`, and the float64 tolerance
below which a variance counts as zero.
"""

from __future__ import annotations

import math

import numpy as np

_EPS64 = float(np.finfo(np.float64).eps)


def zero_tolerance(variances: np.ndarray) -> float:
    """The variance below which a direction is zero up to float64 rounding.

    `d * eps64 * largest variance`, NumPy's `matrix_rank` tolerance: the
    rounding error of a float64 eigendecomposition. A constant feature, or an
    exact linear dependence between features, has variance at most this.

    Args:
        variances: The `d` variances (or eigenvalues) of one covariance.

    Returns:
        The tolerance, a float `>= 0`.

    Example:
    ```python
    import numpy as np
    from keras_initdiag.layers.linalg import zero_tolerance

    zero_tolerance(np.array([4.0, 1.0, 0.0]))  # 3 * 2.2e-16 * 4 = 2.7e-15
    ```
    """
    largest = float(np.max(variances, initial=0.0))
    return len(variances) * _EPS64 * max(largest, 0.0)


def check_explicit(mean, matrix) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Validates an explicit `mean` `(d,)` and invertible `matrix` `(d, d)`.

    Args:
        mean: Centering vector, array-like, or `None`.
        matrix: Whitening matrix applied as `(x - mean) @ matrix`, or `None`.

    Returns:
        Float64 copies, or `(None, None)` when neither is given.

    Raises:
        ValueError: If only one is given, the shapes disagree, a value is not
            finite or `matrix` is singular.
    """
    if mean is None and matrix is None:
        return None, None
    if mean is None or matrix is None:
        raise ValueError(
            "Arguments `mean` and `matrix` must be given together. Received: "
            f"mean={mean!r}, matrix={matrix!r}"
        )
    mean = np.asarray(mean, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    d = mean.shape[0] if mean.ndim == 1 else -1
    if mean.ndim != 1 or matrix.shape != (d, d):
        raise ValueError(
            "Argument `mean` must have shape (d,) and `matrix` shape (d, d). "
            f"Received: mean.shape={mean.shape}, matrix.shape={matrix.shape}"
        )
    if not (np.isfinite(mean).all() and np.isfinite(matrix).all()):
        raise ValueError("Arguments `mean` and `matrix` must be finite.")
    if np.linalg.matrix_rank(matrix) < d:
        raise ValueError(
            "Argument `matrix` must be invertible (a whitening matrix is). "
            f"Received: matrix={matrix.tolist()}"
        )
    return mean, matrix


def _scales(variances: np.ndarray, reference: float, floor: float) -> np.ndarray:
    """`1/sqrt(variance)`, or `1/sqrt(reference)` where variance <= `floor`."""
    degenerate = variances <= floor
    fallback = 1.0 / math.sqrt(reference) if reference > 0 else 1.0
    safe = np.where(degenerate, 1.0, variances)
    return np.where(degenerate, fallback, 1.0 / np.sqrt(safe))


def whitening_matrices(
    cov: np.ndarray, mode: str, epsilon: float
) -> tuple[np.ndarray, np.ndarray]:
    """Computes the whitening matrix `W` and its inverse from a covariance.

    Rows are samples: `y = (x - mean) @ W` whitens and `x = y @ W_inv + mean`
    colors back. Variances are compared with the mean variance
    `trace(cov) / d`; see `Whitening` for the meaning of `epsilon`. Whatever
    `epsilon`, an eigenvector whose variance is zero up to float64 rounding
    (see `zero_tolerance`) is degenerate too, so it is never amplified (the
    diagonal of `"standardize"` is exact: a constant feature has variance 0).

    Args:
        cov: Symmetric `(d, d)` covariance in float64.
        mode: One of `"standardize"`, `"pca"`, `"zca"`.
        epsilon: Relative variance at or below which a direction is degenerate.

    Returns:
        `(W, W_inv)`, both `(d, d)` float64.

    Example:
    ```python
    import numpy as np
    from keras_initdiag.layers.linalg import whitening_matrices

    x = np.random.normal(size=(100, 3)) @ np.array([[1, 0, 0], [1, 1, 0], [0, 0, 9]])
    w, w_inv = whitening_matrices(np.cov(x.T, ddof=0), "zca", 1e-10)
    # np.cov(((x - x.mean(0)) @ w).T, ddof=0) is the identity
    ```
    """
    d = cov.shape[0]
    reference = max(float(np.trace(cov)) / d, 0.0)
    if mode == "standardize":
        scale = _scales(np.diag(cov), reference, epsilon * reference)
        return np.diag(scale), np.diag(1.0 / scale)
    eigvals, eigvecs = np.linalg.eigh(cov)
    eigvals, eigvecs = eigvals[::-1], eigvecs[:, ::-1]  # largest variance first
    # Deterministic signs: the largest component of each axis is positive.
    pivots = eigvecs[np.argmax(np.abs(eigvecs), axis=0), np.arange(d)]
    eigvecs = eigvecs * np.where(pivots < 0, -1.0, 1.0)
    floor = max(epsilon * reference, zero_tolerance(eigvals))
    scale = _scales(eigvals, reference, floor)
    matrix, inverse = eigvecs * scale, (eigvecs / scale).T
    if mode == "zca":
        matrix, inverse = matrix @ eigvecs.T, eigvecs @ inverse
    return matrix, inverse


def _spread(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and eigenvectors of `cov` whose variance is not zero."""
    eigvals, eigvecs = np.linalg.eigh(0.5 * (cov + cov.T))
    kept = eigvals > zero_tolerance(eigvals)
    return eigvals[kept], eigvecs[:, kept]


def _ratio(variances: np.ndarray) -> float:
    return float(variances.max() / variances.min()) if variances.size else math.nan


def condition_number(cov: np.ndarray) -> float:
    """Largest over smallest variance over all directions with spread.

    Every direction counts, however small its variance, except those whose
    variance is zero up to float64 rounding (constant features, exact linear
    dependences; see `zero_tolerance`): they carry no spread to compare.

    Args:
        cov: Symmetric `(d, d)` covariance.

    Returns:
        The condition number (1.0 is round), or NaN if no direction has spread.

    Example:
    ```python
    import numpy as np
    from keras_initdiag.layers.linalg import condition_number

    condition_number(np.diag([100.0, 1.0, 0.0]))  # 100.0: the constant is left out
    ```
    """
    return _ratio(_spread(cov)[0])


def output_condition_number(cov: np.ndarray, matrix: np.ndarray) -> float:
    """The condition number of `y = (x - mean) @ matrix` for `x` of covariance `cov`.

    That is `condition_number(matrix.T @ cov @ matrix)` for an invertible
    `matrix`, computed without forming the product: the output covariance is
    `G @ G.T` with `G = matrix.T @ V @ sqrt(L)` (`cov = V L V^T` over the
    directions with spread), so its variances are the squared singular values
    of `G`. Directions of zero input variance (zero output variance) are left
    out exactly, and an ill-conditioned `cov` loses no accuracy to rounding.

    Args:
        cov: Symmetric `(d, d)` covariance of the inputs.
        matrix: `(d, d)` invertible matrix applied to the centered inputs.

    Returns:
        The condition number of the output, or NaN if no direction has spread.

    Example:
    ```python
    import numpy as np
    from keras_initdiag.layers.linalg import output_condition_number

    output_condition_number(np.diag([4.0, 1.0]), np.diag([0.5, 1.0]))  # 1.0
    ```
    """
    eigvals, eigvecs = _spread(cov)
    factor = matrix.T @ (eigvecs * np.sqrt(eigvals))
    return _ratio(np.linalg.svd(factor, compute_uv=False) ** 2)
