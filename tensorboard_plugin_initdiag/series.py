"""Scalar series to layer x step matrices, the shape every view draws from.

TensorBoard samples each tag on its own (see the module docstring of
`plugin.py`), so the matrix's columns are the union of the steps its rows
kept, and a row without a value at a column holds NaN there (a gap).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np


@dataclasses.dataclass
class Matrix:
    """One statistic of one run: nodes (rows) x steps (columns).

    Args:
        rows: Node names, in forward order.
        steps: The union of the rows' steps, sorted (int64).
        values: float32 array of shape `(len(rows), len(steps))`; NaN where a
            row has no value at that step.
        kept: For each row, how many points TensorBoard kept.
    """

    rows: list[str]
    steps: np.ndarray
    values: np.ndarray
    kept: list[int]


def order_nodes(nodes: Iterable[str], layers: Sequence[str]) -> list[str]:
    """Nodes in forward order: those in `layers` first, in its order, then the rest.

    Args:
        nodes: The nodes that have data.
        layers: The forward order from the report records (may be empty).

    Returns:
        The nodes, ordered; the ones `layers` does not name are sorted by name.

    Example:
    >>> order_nodes({"b", "z", "a"}, ["b", "a"])
    ['b', 'a', 'z']
    """
    nodes = set(nodes)
    known = [name for name in layers if name in nodes]
    return known + sorted(nodes.difference(known))


def build_matrix(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]], layers: Sequence[str]
) -> Matrix:
    """Align per-node series on the union of their steps.

    Args:
        series: Node -> `(steps, values)` arrays of equal length, steps
            increasing (as the data provider returns them).
        layers: The forward order of the nodes (see `order_nodes`).

    Returns:
        A `Matrix`.

    Example:
    >>> a = (np.array([0, 5]), np.array([1.0, 2.0]))
    >>> m = build_matrix({"a": a, "b": (np.array([5]), np.array([3.0]))}, ["a", "b"])
    >>> m.steps.tolist(), m.values[1].tolist()
    ([0, 5], [nan, 3.0])
    """
    rows = order_nodes(series, layers)
    columns = [np.asarray(series[row][0], dtype=np.int64) for row in rows]
    steps = np.unique(np.concatenate(columns)) if columns else np.zeros(0, np.int64)
    values = np.full((len(rows), len(steps)), np.nan, dtype=np.float32)
    for i, (row, row_steps) in enumerate(zip(rows, columns)):
        if len(row_steps):
            where = np.searchsorted(steps, row_steps)
            values[i, where] = np.asarray(series[row][1], dtype=np.float32)
    return Matrix(rows, steps, values, [len(c) for c in columns])


def points_to_arrays(points) -> tuple[np.ndarray, np.ndarray]:
    """`(steps, values)` arrays of a sequence of `provider.ScalarDatum`."""
    count = len(points)
    steps = np.fromiter((p.step for p in points), np.int64, count)
    values = np.fromiter((p.value for p in points), np.float64, count)
    return steps, values


def select_columns(matrix: Matrix, count: int) -> Matrix:
    """At most `count` columns, evenly spaced, the first and the last included.

    Every row keeps the same columns, so the rows stay aligned. This is how a
    heatmap is reduced to about one column per pixel.

    Args:
        matrix: A `Matrix`.
        count: The most columns to keep (at least 2).

    Returns:
        `matrix` itself when it has at most `count` columns, else a `Matrix`
        with the chosen columns (same rows and `kept`).

    Example:
    >>> steps = np.arange(10)
    >>> m = Matrix(["a"], steps, np.zeros((1, 10), np.float32), [10])
    >>> select_columns(m, 4).steps.tolist()
    [0, 3, 6, 9]
    """
    columns = len(matrix.steps)
    if columns <= count:
        return matrix
    index = np.linspace(0, columns - 1, max(2, count)).round().astype(int)
    index = np.unique(index)
    steps, values = matrix.steps[index], matrix.values[:, index]
    return Matrix(matrix.rows, steps, values, matrix.kept)


def column_at(matrix: Matrix, step: int) -> tuple[int | None, np.ndarray]:
    """The column of the latest step at or before `step` (the first if none is).

    Args:
        matrix: A `Matrix`.
        step: The step asked for.

    Returns:
        `(the step used, the values of that column)`, or `(None, empty)` for
        an empty matrix.
    """
    if not len(matrix.steps):
        return None, np.zeros(0, np.float32)
    index = int(np.searchsorted(matrix.steps, step, side="right")) - 1
    index = max(index, 0)
    return int(matrix.steps[index]), matrix.values[:, index]
