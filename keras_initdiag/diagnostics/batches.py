"""Probe batches: validate what users pass as `x`, `y` or `probe_data`.

Everything here is host-side checking and conversion that happens once per
batch, before the compiled probe sees it: numeric, non-empty, finite and
float32-representable arrays that fit the model's inputs, in the caller's
structure (an array, a list or a dict of them).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def as_batch(value, name: str) -> list[np.ndarray] | None:
    """Flatten `x` or `y` (array, tensor, list or dict of them) to float arrays."""
    if value is None:
        return None
    flat = tf.nest.flatten(value)
    arrays = []
    for item in flat:
        if isinstance(item, (tf.data.Dataset,)):
            raise TypeError(
                f"Argument `{name}` must be a batch of arrays, not a dataset. Take "
                "one batch first, e.g. `next(iter(dataset))`. "
                f"Received: {name}={item!r}"
            )
        try:
            array = np.asarray(item)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"Argument `{name}` must be numeric arrays. Received: {name}={item!r}"
            ) from error
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"Argument `{name}` must hold numbers, but has dtype {array.dtype}. "
                f"Received: {name}={_short(array)}"
            )
        if array.ndim == 0 or array.shape[0] == 0:
            raise ValueError(
                f"Argument `{name}` must be a non-empty batch (at least one sample "
                f"on axis 0). Received: {name} with shape {array.shape}"
            )
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
            raise ValueError(
                f"Argument `{name}` must be finite, but {bad} of its {array.size} "
                f"values are NaN or Inf. Received: {name}={_short(array)}"
            )
        if array.dtype.itemsize > 4 and np.any(np.abs(array) > _FLOAT32_MAX):
            # Diagnoses run in float32: these values would become Inf.
            raise ValueError(
                f"Argument `{name}` must fit in float32 (|value| <= {_FLOAT32_MAX:.3g})"
                f", but its largest magnitude is {np.max(np.abs(array)):.3g}. "
                f"Received: {name}={_short(array)}"
            )
        arrays.append(array)
    return arrays


def _short(array: np.ndarray) -> str:
    return np.array2string(np.asarray(array).ravel()[:4], threshold=4) + (
        f"... (shape {np.shape(array)})"
    )


def check_fits(model: keras.Model, x: list[np.ndarray], y) -> None:
    """Raise a ValueError naming `x` when it does not fit the model's inputs."""
    try:
        inputs = list(model.inputs)
    except (AttributeError, ValueError):
        inputs = []
    if inputs:
        if len(x) != len(inputs):
            raise ValueError(
                f"Argument `x` must have one array per model input ({len(inputs)}). "
                f"Received: {len(x)} array(s) with shapes {[a.shape for a in x]}"
            )
        for array, spec in zip(x, inputs):
            expected = tuple(spec.shape)
            fits = len(array.shape) == len(expected) and all(
                e is None or e == a for e, a in zip(expected[1:], array.shape[1:])
            )
            if not fits:
                raise ValueError(
                    f"Argument `x` does not fit model {model.name!r}: the model "
                    f"expects shape {expected}. Received: x with shape {array.shape}"
                )
    batch = {a.shape[0] for a in x}
    if y is not None:
        batch |= {a.shape[0] for a in y}
    if len(batch) > 1:
        raise ValueError(
            "Arguments `x` and `y` must have the same number of samples. Received "
            f"batch sizes {sorted(batch)}"
        )


def restructure(original, arrays, tensors: bool = False):
    """Rebuild the caller's structure with validated arrays (float32 floats).

    With `tensors=True` the arrays become `tf.constant`s (a fixed probe batch
    converted once, not at every diagnosis).
    """
    arrays = [a.astype(np.float32) if a.dtype.kind == "f" else a for a in arrays]
    if tensors:
        arrays = [tf.constant(a) for a in arrays]
    return tf.nest.pack_sequence_as(original, arrays)


def split_probe_data(probe_data):
    """`(x, y)` from the callback's `probe_data` (`x` or `(x, y)`), checked now."""
    if probe_data is None:
        return None, None
    if isinstance(probe_data, tf.data.Dataset):
        raise TypeError(
            "Argument `probe_data` must be `x` or `(x, y)` arrays, not a dataset. "
            "Take one batch first, e.g. `next(iter(dataset))`. "
            f"Received: probe_data={probe_data!r}"
        )
    if isinstance(probe_data, tuple):
        if len(probe_data) != 2:
            raise ValueError(
                "Argument `probe_data` must be `x` or a tuple `(x, y)`. Received: a "
                f"tuple of length {len(probe_data)}"
            )
        x, y = probe_data
    else:
        x, y = probe_data, None
    as_batch(x, "probe_data")  # Type, emptiness and finiteness, right away.
    as_batch(y, "probe_data")
    return x, y


def _batch_shape(batch: int, shape) -> list[int]:
    """A model input's shape for `batch` samples (unknown sizes: 8)."""
    return [batch] + [d if d is not None else 8 for d in shape[1:]]


def synthetic_inputs(model: keras.Model, tapset, batch: int = 32):
    """Inputs shaped like the model's, and a note saying what they are.

    Float inputs are standard normal. An integer input is drawn as token ids
    only when it feeds `Embedding` layers directly: uniform over the ids
    every one of them accepts (from 1 when one masks zero, so no sample is
    all padding). Any other integer input needs real data.

    Raises:
        ValueError: For a model without a known input shape (subclassed), or
            an integer input that does not feed an `Embedding`.
    """
    try:
        inputs = list(model.inputs)
    except (AttributeError, ValueError):
        inputs = []
    rng = np.random.default_rng(0)
    if not inputs or tapset.view is None:
        return _shaped_as_built(model, rng, batch)
    arrays, notes = [], []
    graph = tapset.graph
    readers = graph.consumers()
    input_nodes = [i for i, node in enumerate(graph.nodes) if node.kind == "input"]
    for position, spec in enumerate(inputs):
        shape = _batch_shape(batch, spec.shape)
        if keras.backend.is_float_dtype(spec.dtype):
            arrays.append(rng.standard_normal(shape).astype(np.float32))
            continue
        node = input_nodes[position] if position < len(input_nodes) else None
        users = [graph.nodes[i] for i in (readers[node] if node is not None else [])]
        tables = [u.op for u in users if isinstance(u.op, keras.layers.Embedding)]
        # Besides embeddings, only masks (`ids != 0`, not floats) may read it.
        others = [u for u in users if u.op not in tables and u.tensor is not None]
        name = graph.nodes[node].name if node is not None else f"input {position}"
        if not tables or others:
            raise ValueError(
                f"Argument `probe_data` is required for model {model.name!r}: its "
                f"integer input {name!r} does not feed an Embedding layer, so "
                "valid values cannot be drawn. Pass `probe_data=(x, y)` with a "
                "small batch of real data. Received: probe_data=None"
            )
        low = 1 if any(table.mask_zero for table in tables) else 0
        high = min(int(table.input_dim) for table in tables)
        arrays.append(rng.integers(low, high, size=shape).astype(str(spec.dtype)))
        notes.append(f"random token ids in [{low}, {high}) for input {name!r}")
    structure = arrays[0] if len(arrays) == 1 else arrays
    return structure, notes


def _shaped_as_built(model: keras.Model, rng, batch: int):
    """Standard-normal inputs in the structure a subclassed model was built on.

    `model.get_build_config()` records the input shapes `fit` built it with
    (a shape, or a dict or list of them).

    Raises:
        ValueError: The model was never built, so its input shape is unknown.
    """
    config = model.get_build_config() if model.built else None
    shapes = (config or {}).get("input_shape")
    if shapes is None:
        raise ValueError(
            f"Argument `probe_data` is required for model {model.name!r}, whose "
            "input shape is unknown (a subclassed model that is not built yet). "
            "Received: probe_data=None"
        )

    def is_shape(value):
        return isinstance(value, (list, tuple)) and all(
            d is None or isinstance(d, int) for d in value
        )

    def draw(shape):
        return rng.standard_normal(_batch_shape(batch, shape)).astype(np.float32)

    structure = (
        keras.tree.map_shape_structure(draw, shapes)
        if not is_shape(shapes)
        else draw(shapes)
    )
    return structure, [f"shaped as model {model.name!r} was built (subclassed)"]


def probe_inputs(model: keras.Model, tapset, x, y):
    """The callback's probe batch as tensors, checked once; and a note.

    With `x=None`, inputs are synthesized (`synthetic_inputs`) and the note
    says so, and that gradient statistics are skipped without targets.

    Returns:
        `((x, y), note)`: tensors in the caller's structure (`y` may be
        None) and a warning text, `""` when real data was given.

    Raises:
        ValueError: `probe_data` does not fit the model, or is required.
    """
    note = ""
    if x is None:
        x, made = synthetic_inputs(model, tapset)
        what = "standard-normal float inputs"
        if made:
            what += " and " + "; ".join(made)
        note = (
            f"no `probe_data` given, so {what} are used and gradient statistics "
            "are skipped. Pass `probe_data=(x, y)` with a small batch of real data."
        )
    xs = as_batch(x, "probe_data")
    ys = as_batch(y, "probe_data")
    try:
        check_fits(model, xs, ys)
    except ValueError as error:
        raise ValueError(
            f"Argument `probe_data` does not fit model {model.name!r}: {error}"
        ) from None
    inputs = (
        restructure(x, xs, tensors=True),
        None if y is None else restructure(y, ys, tensors=True),
    )
    return inputs, note
