"""Reading `adapt()` data: arrays, tensors, datasets or batches to float64 rows.

`iter_batches` turns any supported input into a stream of batches,
`to_rows` checks one batch (numeric, finite, a fixed feature size) and
flattens it to `(n, d)` float64 rows along the feature axis, and
`resolve_axis` checks that axis.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def _first(element):
    """The `x` of an `(x, y)` or `(x, y, sample_weight)` element."""
    return element[0] if isinstance(element, tuple) else element


def iter_batches(data, batch_size, built_rank):
    """Yields the batches of any supported `adapt()` input, unconverted."""
    if isinstance(data, (str, bytes)):
        raise TypeError(f"Argument `data` must be numeric. Received: data={data!r}")
    if isinstance(data, (list, tuple)) and not any(hasattr(e, "shape") for e in data):
        data = np.asarray(data)  # plain nested lists of numbers: one array
    if isinstance(data, np.ndarray) or tf.is_tensor(data):
        if len(data.shape) == 0:
            return iter([data])  # rejected with a clear axis error
        n = int(data.shape[0])
        step = batch_size or max(n, 1)
        return (data[i : i + step] for i in range(0, n, step))
    if batch_size is not None and not isinstance(data, tf.data.Dataset):
        raise ValueError(
            "Argument `batch_size` only applies to arrays, tensors and unbatched "
            f"datasets. Received: batch_size={batch_size} with data of type "
            f"{type(data).__name__}, which is already batched."
        )
    if isinstance(data, tf.data.Dataset):
        rank = _first(data.element_spec).shape.rank
        if rank == 1 or (built_rank is not None and rank == built_rank - 1):
            data = data.batch(batch_size or 256)
        elif batch_size is not None:
            raise ValueError(
                "Argument `batch_size` must be None for a batched dataset. "
                f"Received: batch_size={batch_size}"
            )
        return (_first(e) for e in data)
    if isinstance(data, keras.utils.PyDataset):
        return (_first(data[i]) for i in range(len(data)))
    if hasattr(data, "__iter__"):
        return (_first(e) for e in data)
    raise TypeError(
        "Argument `data` must be a numpy array, a tensor, a `tf.data.Dataset`, "
        f"a `keras.utils.PyDataset` or an iterable of batches. Received: "
        f"data of type {type(data).__name__}"
    )


def _check_finite(array, index, offset, axis):
    """Raises a ValueError that says how many values are NaN/Inf, and where."""
    if array.dtype.kind != "f":
        return
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"Argument `data` contains {int(bad.sum())} non-finite value(s) (NaN "
            f"or Inf) in batch {index}. The first is at sample {offset + first[0]} "
            f"(counting from the start of `data`), feature {first[axis]} "
            f"(index {first} in a batch of shape {array.shape}). Drop or impute "
            "them before calling `adapt()`."
        )


def to_rows(batch, index, offset, axis, features):
    """Validates one batch; returns float64 rows `(n, d)` and the batch array."""
    try:
        array = np.asarray(batch)
    except (TypeError, ValueError) as e:
        raise TypeError(f"Argument `data` must be numeric. Batch {index}: {e}") from e
    if array.dtype.kind not in "biuf":
        raise TypeError(
            "Argument `data` must be numeric. Received: batch "
            f"{index} with dtype={array.dtype}"
        )
    axis = resolve_axis(axis, array.ndim, f"data of shape {array.shape}")
    if features is not None and array.shape[axis] != features:
        raise ValueError(
            f"The feature size along axis {axis} must stay {features}. Received: "
            f"batch {index} of `data` with shape {array.shape}"
        )
    _check_finite(array, index, offset, axis)
    rows = np.moveaxis(array, axis, -1).reshape(-1, array.shape[axis])
    return rows.astype(np.float64), array


def resolve_axis(axis, ndim, what):
    """Returns `axis` as a non-negative index; it must not be the batch axis."""
    if ndim < 2 or not -ndim <= axis < ndim or axis % ndim == 0:
        raise ValueError(
            "Argument `axis` must index a feature axis (not the batch axis 0) of "
            f"inputs of rank >= 2. Received: axis={axis} for {what}"
        )
    return axis % ndim
