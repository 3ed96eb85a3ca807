"""The sink's buffers are bounded: per-step series are written as they fill.

The series buffer used to grow until the epoch's end: an epoch of a million
steps with `batch_gradients=True` held a million records in memory.
"""

from __future__ import annotations

import keras
import numpy as np
from helpers import event_accumulator, tensor_values

from keras_initdiag.callbacks import sink as sink_lib
from keras_initdiag.tensorboard.events import TRAIN_GRADIENT_TAG


def test_series_are_written_every_n_records_without_an_epoch_end(tmp_path):
    sink = sink_lib.Sink(tmp_path)
    limit = sink_lib.SERIES_RECORDS
    for step in range(1, limit):
        sink.add_series([(step, {"dense": step / 8, "head": -step / 4})])
    assert len(sink._series) == limit - 1
    sink.add_series([(limit, {"dense": limit / 8, "head": -limit / 4})])
    assert sink._series == []
    # Read back while the sink is still open: no flush, close or epoch end.
    accumulator = event_accumulator(str(tmp_path / "initdiag"))
    dense = tensor_values(accumulator, f"{TRAIN_GRADIENT_TAG}/dense")
    head = tensor_values(accumulator, f"{TRAIN_GRADIENT_TAG}/head")
    steps = list(range(1, limit + 1))
    assert [s for s, _ in dense] == steps and [s for s, _ in head] == steps
    np.testing.assert_array_equal([float(v) for _, v in dense], np.divide(steps, 8))
    np.testing.assert_array_equal([float(v) for _, v in head], np.divide(steps, -4))
    sink.close()


def test_without_a_log_dir_nothing_is_buffered():
    sink = sink_lib.Sink(None)
    sink.add_series([(1, {"dense": 1.0})])
    assert sink._series == []


def test_is_writer_says_whether_this_process_writes_for_the_model(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert sink_lib.Sink(tmp_path).is_writer(model) is True
    assert sink_lib.Sink(None).is_writer(model) is False
