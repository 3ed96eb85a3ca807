"""The callback's memory: bounded, and per-step norms kept as arrays.

Per-step norms used to be kept as `(step, {layer: norm})` Python tuples:
about 115 MB at the 10,000-record cap for 200 layers.
"""

from __future__ import annotations

import math

import numpy as np

from keras_initdiag.callbacks import history

LAYERS = [f"layer_{i}" for i in range(200)]


def _records(steps, layers=LAYERS, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.random((len(steps), len(layers)), dtype=np.float32)
    return [
        (int(step), dict(zip(layers, map(float, row))))
        for step, row in zip(steps, values)
    ]


def test_norms_at_the_cap_fit_in_ten_megabytes_and_read_back_as_added():
    norms = history.History().norms
    added = _records(range(1, history.RECENT_NORMS + 1))
    for start in range(0, len(added), 7):  # As the callback reads them.
        norms.extend(added[start : start + 7])
    assert norms.nbytes <= 10 * 2**20
    assert norms.nbytes >= history.RECENT_NORMS * len(LAYERS) * 4
    assert len(norms) == history.RECENT_NORMS
    assert list(norms) == added


def test_only_the_latest_records_are_kept():
    norms = history.NormHistory(capacity=5)
    added = _records(range(1, 13), layers=["a", "b"])
    norms.extend(added[:3])
    norms.extend(added[3:])
    assert len(norms) == 5
    assert list(norms) == added[-5:]
    assert norms[0] == added[7] and norms[-1] == added[-1]
    assert norms[1:3] == added[8:10]


def test_records_with_other_layers_keep_their_own_keys():
    # A recompile that froze a layer, then one that added a layer: each
    # record reads back with the layers it had, NaN norms included.
    norms = history.NormHistory(capacity=4)
    added = [
        (1, {"a": 1.0, "b": 2.0}),
        (2, {"a": math.nan, "b": 3.0}),
        (3, {"b": 4.0}),
        (4, {"b": 5.0, "c": 6.0}),
        (5, {"a": 7.0, "c": 0.5}),
    ]
    for record in added:
        norms.extend([record])
    read = list(norms)
    assert [step for step, _ in read] == [2, 3, 4, 5]
    assert list(read[0][1]) == ["a", "b"] and math.isnan(read[0][1]["a"])
    assert read[1:] == added[2:]
    assert all(type(v) is float for _, values in read for v in values.values())


def test_an_empty_history_reads_as_empty():
    norms = history.NormHistory()
    assert list(norms) == [] and len(norms) == 0 and norms.nbytes == 0
    norms.extend([])
    assert list(norms) == []
