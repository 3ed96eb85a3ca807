"""Real-world robustness of `InitDiagnostics` and `diagnose`.

Interrupted and resumed training, NaN injected mid-training (with every
`on_flag` action and alongside `keras.callbacks.TerminateOnNaN`), hostile
layer names, and a large model diagnosed with O(layers) host traffic.
"""

from __future__ import annotations

import dataclasses
import warnings

import keras
import numpy as np
import pytest
from helpers import compiled, event_accumulator, tensor_values

import keras_initdiag
from keras_initdiag.callbacks import FlagError, InitDiagnosticsWarning
from keras_initdiag.diagnostics import engine
from keras_initdiag.diagnostics.reduce import DEVICE_FIELDS as VECTOR_FIELDS
from keras_initdiag.diagnostics.report import Flag
from keras_initdiag.tensorboard import DiagnosticsWriter, escape_markdown, read_reports

RNG = np.random.default_rng(0)
X = RNG.standard_normal((64, 6)).astype("float32")
Y = RNG.standard_normal((64, 2)).astype("float32")


def _model(names=("hidden_0", "hidden_1", "head")) -> keras.Model:
    *hidden, head = names
    model = keras.Sequential(
        [keras.Input((6,))]
        + [
            keras.layers.Dense(
                16, activation="relu", kernel_initializer="he_normal", name=name
            )
            for name in hidden
        ]
        + [keras.layers.Dense(2, name=head)]
    )
    model.compile("sgd", "mse")
    return model


def _callback(log_dir, **kwargs):
    kwargs.setdefault("update_freq", 2)
    kwargs.setdefault("verbose", 0)
    return keras_initdiag.InitDiagnostics(
        log_dir=None if log_dir is None else str(log_dir),
        probe_data=(X[:16], Y[:16]),
        **kwargs,
    )


class _RaiseAt(keras.callbacks.Callback):
    """Raises at a given batch of a given epoch (a crash elsewhere in fit)."""

    def __init__(self, batch: int, epoch: int = 0):
        super().__init__()
        self.batch, self.epoch, self.current = batch, epoch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise RuntimeError("boom from another callback")


class _PoisonAt(keras.callbacks.Callback):
    """Writes Inf into one layer's kernel at the end of a given batch.

    Inf, not NaN: some CPU kernels compute relu(NaN) = 0, which would stop
    the poison at the next ReLU; relu(inf) = inf reaches the loss.
    """

    def __init__(self, layer: str, batch: int):
        super().__init__()
        self.layer, self.batch = layer, batch

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.batch:
            kernel = self.model.get_layer(self.layer).kernel
            value = kernel.numpy()
            value[0, 0] = np.inf
            kernel.assign(value)


# --- interruption and resumption ------------------------------------------------


def test_crash_mid_epoch_leaves_readable_events_and_resume_continues(tmp_path):
    model = _model()
    callback = _callback(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        model.fit(
            X,
            Y,
            batch_size=8,
            epochs=2,
            verbose=0,
            callbacks=[callback, _RaiseAt(batch=4, epoch=0)],
        )
    run_dir = tmp_path / "initdiag"
    # Steps 0, 2, 3 (the first updates), 4 were written and flushed although
    # on_train_end never ran.
    assert [r.step for r in read_reports(run_dir)] == [0, 2, 3, 4]
    # Resume: the numbering continues from the optimizer's 5 steps.
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    steps = [r.step for r in read_reports(run_dir)]
    assert steps == [0, 2, 3, 4, 5, 6, 8, 10, 12, 13]  # 13: the final state
    assert steps == sorted(set(steps))
    # Each step was written exactly once across both event files.
    written = [
        s for s, _ in tensor_values(event_accumulator(str(run_dir)), "loss/probe")
    ]
    assert sorted(written) == steps


def test_resume_with_initial_epoch(tmp_path):
    model = _model()
    callback = _callback(tmp_path, update_freq="epoch")
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
    model.fit(
        X, Y, batch_size=16, epochs=3, initial_epoch=1, verbose=0, callbacks=[callback]
    )
    assert [r.step for r in callback.reports] == [0, 3, 4, 8, 12]
    assert [r.step for r in read_reports(tmp_path / "initdiag")] == [0, 3, 4, 8, 12]


# --- NaN injected mid-training --------------------------------------------------


def _nonfinite(flags):
    return [f for f in flags if f.kind == "nonfinite"]


def test_nan_raise_names_the_layer_and_is_written(tmp_path):
    model = _model()
    callback = _callback(tmp_path, on_flag="raise")
    with pytest.raises(FlagError) as info:
        model.fit(
            X,
            Y,
            batch_size=8,
            epochs=1,
            verbose=0,
            callbacks=[_PoisonAt("hidden_1", batch=3), callback],
        )
    flags = _nonfinite(info.value.flags)
    assert flags and flags[0].layer == "hidden_1" and flags[0].step == 4
    assert "hidden_1" in str(info.value)
    assert int(np.asarray(model.optimizer.iterations)) == 4
    (last,) = [r for r in read_reports(tmp_path / "initdiag") if r.step == 4]
    assert _nonfinite(last.flags)[0].layer == "hidden_1"


def test_nan_stop_stops_training():
    model = _model()
    callback = _callback(None, on_flag="stop")
    with pytest.warns(InitDiagnosticsWarning) as caught:
        model.fit(
            X,
            Y,
            batch_size=8,
            epochs=3,
            verbose=0,
            callbacks=[_PoisonAt("hidden_0", batch=0), callback],
        )
    messages = [str(w.message) for w in caught]
    assert any("hidden_0" in m for m in messages)
    # The early verdict needs no more steps once the loss is not finite.
    assert any("[verdict]" in m and "NaN or Inf" in m for m in messages)
    assert _nonfinite(callback.flags)[0].layer == "hidden_0"
    assert int(np.asarray(model.optimizer.iterations)) == 2  # Stopped at step 2.


def test_alongside_terminate_on_nan(tmp_path):
    model = _model()
    callback = _callback(tmp_path, update_freq=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(
            X,
            Y,
            batch_size=8,
            epochs=2,
            verbose=0,
            callbacks=[
                _PoisonAt("hidden_1", batch=1),
                keras.callbacks.TerminateOnNaN(),
                callback,
            ],
        )
    # TerminateOnNaN stopped at the first NaN loss (batch 2, step 3).
    assert int(np.asarray(model.optimizer.iterations)) == 3
    flags = _nonfinite(callback.flags)
    assert flags[0].layer == "hidden_1" and flags[0].step == 2
    ours = [w for w in caught if issubclass(w.category, InitDiagnosticsWarning)]
    assert any("hidden_1" in str(w.message) for w in ours)
    assert not any("failed" in str(w.message) for w in ours)
    # on_train_end ran: the events are complete and readable.
    assert [r.step for r in read_reports(tmp_path / "initdiag")] == [0, 1, 2, 3]


# --- hostile layer names ----------------------------------------------------------

# The most hostile name TensorFlow accepts as a scope name (Keras forbids `/`):
# markdown emphasis and an HTML `>` (TensorFlow rejects a backslash too).
TF_HOSTILE = "bold__x__>em_y_.z-"
# Names only the writer can meet (TensorFlow cannot run layers named so):
# HTML, table pipes, newlines, unicode, and a very long name.
WRITER_HOSTILE = [
    "a|b*<script>alert(1)<script>[x](y)#`h`&amp;\nnext",
    "schicht_Ébène_层_слой_🙂",
    "x" * 300,
]


def _flags_table(run_dir) -> str:
    texts = [v for _, v in tensor_values(event_accumulator(str(run_dir)), "flags")]
    return "\n".join(t.item().decode("utf-8") for t in texts)


def test_hostile_layer_name_is_escaped_in_flags(tmp_path):
    model = _model(names=(TF_HOSTILE, "hidden_1", "head"))
    # Identical incoming weights in the hostile layer: a flag that names it.
    layer = model.get_layer(TF_HOSTILE)
    layer.kernel.assign(np.full(layer.kernel.shape, 0.1, "float32"))
    callback = _callback(tmp_path, update_freq="epoch", on_flag="ignore")
    model.fit(X, Y, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
    assert any(f.layer == TF_HOSTILE for f in callback.flags)
    table = _flags_table(tmp_path / "initdiag")
    assert escape_markdown(TF_HOSTILE) in table
    assert "bold\\_\\_x\\_\\_&gt;em" in table
    assert TF_HOSTILE not in table
    assert TF_HOSTILE in read_reports(tmp_path / "initdiag")[0].layers


@pytest.mark.parametrize("name", WRITER_HOSTILE, ids=["html", "unicode", "long"])
def test_any_layer_name_logs_and_is_escaped(tmp_path, name):
    model = _model()
    report = keras_initdiag.diagnose(model, X[:16], Y[:16])
    rename = {"hidden_1": name}
    renamed = dataclasses.replace(
        report,
        layers=[rename.get(n, n) for n in report.layers],
        stats={rename.get(n, n): v for n, v in report.stats.items()},
        info={
            rename.get(n, n): dataclasses.replace(v, name=rename.get(n, n))
            for n, v in report.info.items()
        },
        flags=[Flag("dead", name, 0, 1.0, 0.5, f"Layer {name!r} is dead.")],
    )
    with DiagnosticsWriter(str(tmp_path)) as writer:
        writer.write(renamed)
    (back,) = read_reports(tmp_path / "initdiag")
    assert name in back.layers
    assert back.stats[name]["activation_variance"] == pytest.approx(
        report.stats["hidden_1"]["activation_variance"]
    )
    assert back.flags[0].layer == name
    table = _flags_table(tmp_path / "initdiag")
    assert escape_markdown(name) in table
    assert "<script>" not in table
    assert len(table.splitlines()) == 3  # Header, rule, one row: no broken rows.


# --- scale ------------------------------------------------------------------


@pytest.mark.slow
def test_large_model_host_traffic_is_o_layers():
    depth, width = 150, 256  # 150 * 256 * 257 ~ 9.9 million parameters
    model = keras.Sequential(
        [keras.Input((width,))]
        + [
            keras.layers.Dense(width, activation="tanh", name=f"d{i}")
            for i in range(depth - 1)
        ]
        + [keras.layers.Dense(2, name="head")]
    )
    model.compile("sgd", "mse")
    assert model.count_params() > 9_500_000
    x = RNG.standard_normal((16, width)).astype("float32")
    y = RNG.standard_normal((16, 2)).astype("float32")
    diagnoser = compiled(engine.Diagnoser(model))
    vector = diagnoser.probe(x, y)
    # One flat vector: a fixed number of floats per node (the input and
    # every layer), plus the loss.
    assert vector.shape == ((depth + 1) * len(VECTOR_FIELDS) + 1,)
    report = diagnoser.measure(x, y)
    assert not diagnoser.last_histograms
    assert len(report.layers) == depth + 1
    assert np.isfinite(report.stats["d0"]["gradient_norm"])
    assert diagnoser.probe.traces == 1
