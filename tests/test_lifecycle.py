"""The callback over a whole training life: rebinding, staleness, exits, memory.

Each test here pins a defect the callback used to have: a second model kept
the first one's step bookkeeping, recompiling or freezing was not picked up,
an exception out of `fit` left the event file open and the optimizer
replaced, every diagnosis was kept in memory, and any internal error on the
first diagnosis was blamed on `probe_data`.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import keras_initdiag
from keras_initdiag.callbacks import FlagError, InitDiagnosticsWarning, history
from keras_initdiag.diagnostics import engine
from keras_initdiag.tensorboard import read_reports

RNG = np.random.default_rng(0)
X = RNG.standard_normal((64, 6)).astype("float32")
Y = RNG.standard_normal((64, 2)).astype("float32")


def _model(name="model", width=16):
    model = keras.Sequential(
        [keras.Input((6,))]
        + [
            keras.layers.Dense(
                width, activation="relu", kernel_initializer="he_normal", name=f"h{i}"
            )
            for i in range(2)
        ]
        + [keras.layers.Dense(2, name="head")],
        name=name,
    )
    model.compile("sgd", "mse")
    return model


def _callback(log_dir=None, **kwargs):
    kwargs.setdefault("verbose", 0)
    return keras_initdiag.InitDiagnostics(
        log_dir=None if log_dir is None else str(log_dir),
        probe_data=(X[:16], Y[:16]),
        **kwargs,
    )


def _fit(model, callback, epochs=1, **kwargs):
    model.fit(
        X, Y, batch_size=16, epochs=epochs, verbose=0, callbacks=[callback], **kwargs
    )


def test_a_second_model_gets_its_own_step_zero_and_input_check():
    callback = _callback(update_freq=2)
    first = _model("first")
    _fit(first, callback, epochs=2)  # steps 0..8; 3: after the first updates
    assert [r.step for r in callback.reports] == [0, 2, 3, 4, 6, 8]
    second = _model("second")
    with pytest.warns(InitDiagnosticsWarning, match="moved to model 'second'"):
        _fit(second, callback)
    # The new model is diagnosed from its own step 0, with its own probe
    # and its own history.
    assert callback.diagnoser.model is second
    assert [r.step for r in callback.reports] == [0, 2, 3, 4]
    # And its input check runs: a model the probe data does not fit is
    # refused before the first step.
    narrow = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    narrow.compile("sgd", "mse")
    with pytest.raises(ValueError, match="probe_data"):
        with pytest.warns(InitDiagnosticsWarning, match="moved"):
            narrow.fit(X[:, :5], Y, epochs=1, verbose=0, callbacks=[callback])
    assert int(np.asarray(narrow.optimizer.iterations)) == 0


def _zero_hidden_model(name):
    model = keras.Sequential(
        [keras.Input((6,))]
        + [keras.layers.Dense(16, activation="relu", kernel_initializer="zeros")]
        + [keras.layers.Dense(2, name="head")],
        name=name,
    )
    model.compile("sgd", "mse")
    return model


def test_a_callback_reused_on_another_model_warns_again_and_writes_its_own_run(
    tmp_path,
):
    callback = _callback(tmp_path, on_flag="warn")
    first, second = _zero_hidden_model("first"), _zero_hidden_model("second")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(first, callback)
    assert any("[symmetry]" in str(w.message) for w in caught)
    # The second model is trained to the first's last step without the
    # callback: the callback must still diagnose it there.
    second.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(second, callback)
    messages = [str(w.message) for w in caught]
    assert any("moved to model 'second'" in m for m in messages)
    # The same defect at the same layer name is news for the new model.
    assert any("[symmetry]" in m for m in messages), messages
    mine = [r.step for r in read_reports(tmp_path / "initdiag")]
    theirs = [r.step for r in read_reports(tmp_path / "initdiag_second")]
    assert mine == [0, 3, 4] and theirs[0] == 4 and theirs[-1] == 8


def test_freeze_unfreeze_and_recompile_are_picked_up():
    model = _model()
    callback = _callback()
    model.get_layer("h0").trainable = False
    model.compile("sgd", "mse")
    _fit(model, callback)
    frozen = callback.reports[0]
    assert np.isnan(frozen.stats["h0"]["gradient_norm"])
    assert np.isfinite(frozen.stats["h1"]["gradient_norm"])
    model.get_layer("h0").trainable = True
    model.compile("sgd", "mae")
    _fit(model, callback)
    later = callback.reports[-1]
    assert np.isfinite(later.stats["h0"]["gradient_norm"])
    # The probe's loss is the new compiled loss (mean absolute error).
    predictions = model(X[:16])
    expected = float(np.mean(np.abs(Y[:16] - np.asarray(predictions))))
    assert later.loss == pytest.approx(expected, rel=1e-5)


def test_diagnose_picks_up_recompile_and_freezing():
    model = _model()
    first = keras_initdiag.diagnose(model, X[:16], Y[:16])
    model.compile("sgd", "mae")
    second = keras_initdiag.diagnose(model, X[:16], Y[:16])
    mae = float(np.mean(np.abs(Y[:16] - np.asarray(model(X[:16])))))
    assert second.loss == pytest.approx(mae, rel=1e-5) and first.loss != second.loss
    model.get_layer("h1").trainable = False
    frozen = keras_initdiag.diagnose(model, X[:16], Y[:16])
    assert np.isnan(frozen.stats["h1"]["gradient_norm"])
    model.get_layer("h1").trainable = True
    thawed = keras_initdiag.diagnose(model, X[:16], Y[:16])
    assert np.isfinite(thawed.stats["h1"]["gradient_norm"])


def test_flag_error_shuts_down_before_it_propagates(tmp_path):
    model = keras.Sequential(
        [keras.Input((6,))]
        + [
            keras.layers.Dense(16, activation="relu", kernel_initializer="zeros")
            for _ in range(2)
        ]
        + [keras.layers.Dense(2)]
    )
    model.compile("sgd", "mse")
    optimizer = model.optimizer
    callback = _callback(tmp_path, on_flag="raise", batch_gradients=True)
    with pytest.raises(FlagError):
        _fit(model, callback)
    # The model has its own optimizer back, and the event file is complete
    # and closed: it reads back without a problem.
    assert model.optimizer is optimizer
    problems = []
    reports = read_reports(tmp_path / "initdiag", problems)
    assert problems == [] and [r.step for r in reports] == [0]
    assert callback.sink.writer._writer is None  # closed


def test_optimizer_is_exactly_the_users_after_fit():
    model = _model()
    optimizer = model.optimizer
    callback = _callback(batch_gradients=True)
    _fit(model, callback)
    assert model.optimizer is optimizer
    # A later fit without the callback trains with that optimizer alone.
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    assert model.optimizer is optimizer
    assert int(np.asarray(optimizer.iterations)) == 8


def test_an_internal_failure_warns_once_and_training_goes_on(monkeypatch):
    model = _model()
    callback = _callback(update_freq=1)

    def broken(*args, **kwargs):
        raise ValueError("an error inside the diagnostics")

    monkeypatch.setattr(engine.probe_lib, "decode", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(model, callback)
    failures = [
        w
        for w in caught
        if issubclass(w.category, InitDiagnosticsWarning) and "failed" in str(w.message)
    ]
    assert len(failures) == 1 and "inside the diagnostics" in str(failures[0].message)
    assert int(np.asarray(model.optimizer.iterations)) == 4


def test_a_probe_batch_the_model_rejects_is_the_users_error():
    # Targets of the wrong width: only the loss can tell.
    model = keras.Sequential([keras.Input((None, 6)), keras.layers.LSTM(4)])
    model.compile("sgd", "mse")
    bad = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(X[:16, None, :], X[:16, :3]), verbose=0
    )
    y4 = np.concatenate([Y, Y], axis=1)
    with pytest.raises(ValueError, match="probe_data") as info:
        model.fit(X[:, None, :], y4, epochs=1, verbose=0, callbacks=[bad])
    assert "shapes" in str(info.value)
    assert int(np.asarray(model.optimizer.iterations)) == 0


def test_memory_stays_bounded_over_a_long_run(monkeypatch):
    monkeypatch.setattr(history, "RECENT_REPORTS", 20)
    model = _model(width=4)
    callback = _callback(
        update_freq=1, histograms=True, batch_gradients=True, on_flag="ignore"
    )
    x = np.repeat(X, 4, axis=0)
    y = np.repeat(Y, 4, axis=0)
    model.fit(x, y, batch_size=1, epochs=1, verbose=0, callbacks=[callback])
    steps = [r.step for r in callback.reports]
    assert len(steps) <= 1 + 20 + history.FLAGGED_REPORTS
    assert steps[0] == 0 and steps[-1] == 256
    assert steps[-20:] == list(range(237, 257))
    # Raw tensors for histograms are not kept after they were written.
    assert callback.diagnoser.last_histograms == {}
    assert len(callback.batch_gradient_norms) == 256


def test_flags_are_counted_not_piled_up():
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, kernel_initializer="zeros")]
        + [keras.layers.Dense(2, kernel_initializer="zeros")]
    )
    model.compile("sgd", "mse")
    callback = _callback(update_freq=1, on_flag="ignore")
    _fit(model, callback, epochs=3)
    # Duplicate units are searched at the first diagnosis of each epoch.
    symmetry = callback.history.flag_counts[("symmetry", model.layers[0].name)]
    assert symmetry.count == 3
    assert symmetry.first.step == 0 and symmetry.last.step == 9
    first = model.layers[0].name
    kept = [f.step for f in callback.flags if f.kind == "symmetry" and f.layer == first]
    assert kept == [0, 9]
    assert len(callback.flags) <= 2 * len(callback.history.flag_counts)


def test_default_log_dir_is_logs_initdiag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = _model()
    callback = keras_initdiag.InitDiagnostics(probe_data=(X[:16], Y[:16]), verbose=0)
    _fit(model, callback)
    assert [r.step for r in read_reports(tmp_path / "logs" / "initdiag")] == [0, 3, 4]
    assert not (tmp_path / "logs" / "initdiag" / "initdiag").exists()


def test_images_are_drawn_off_the_training_thread_and_all_written(
    tmp_path, monkeypatch
):
    pytest.importorskip("matplotlib")
    import threading

    from keras_initdiag.callbacks import sink

    drawn_on, trained_on = [], set()
    draw = sink.depth_profile_png

    def recording_draw(report):
        drawn_on.append(threading.current_thread())
        return draw(report)

    # The sink's own drawing function, wrapped to record where it runs.
    monkeypatch.setattr(sink, "depth_profile_png", recording_draw)
    training = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda *_, **__: trained_on.add(threading.current_thread())
    )
    model = _model()
    callback = _callback(tmp_path, depth_profile=True)
    model.fit(X, Y, batch_size=16, epochs=2, verbose=0, callbacks=[callback, training])
    # Step 0 and the end of training, each once, and never on the thread
    # that runs the training steps.
    assert callback.sink.images == 2
    assert len(drawn_on) == 2 and len(trained_on) == 1
    assert not trained_on & set(drawn_on)
    assert all(t.name.startswith("initdiag-image") for t in drawn_on)
    from helpers import event_accumulator, tensor_tags, tensor_values

    accumulator = event_accumulator(str(tmp_path / "initdiag"))
    assert tensor_tags(accumulator, "images") == ["depth_profile"]
    steps = [step for step, _ in tensor_values(accumulator, "depth_profile")]
    assert steps == [0, 8]
    (_, value) = tensor_values(accumulator, "depth_profile")[0]
    assert value[2][:4] == b"\x89PNG" and int(value[0]) > 100


class _Interrupt(keras.callbacks.Callback):
    """Another callback that raises at one batch hook (Ctrl-C, its own bug)."""

    def __init__(self, hook, batch, error=KeyboardInterrupt):
        super().__init__()
        self.hook, self.batch, self.error = hook, batch, error

    def on_train_batch_begin(self, batch, logs=None):
        if self.hook == "begin" and batch == self.batch:
            raise self.error("interrupted")

    def on_train_batch_end(self, batch, logs=None):
        if self.hook == "end" and batch == self.batch:
            raise self.error("interrupted")


@pytest.mark.parametrize(
    "hook, batch, first", [("end", 1, False), ("begin", 1, True), ("end", 0, True)]
)
def test_the_users_optimizer_is_back_after_a_foreign_exception(hook, batch, first):
    model = _model()
    optimizer = model.optimizer
    callback = _callback(batch_gradients=True, on_flag="ignore")
    other = _Interrupt(hook, batch)
    order = [other, callback] if first else [callback, other]
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=order)
    assert model.optimizer is optimizer
    # A later fit without the callback trains with the user's optimizer and
    # its own train function: the recording one gives way at its first call.
    before = len(callback.binding.recorder.read()) if callback.binding.recorder else 0
    steps = int(np.asarray(optimizer.iterations))
    model.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    assert model.optimizer is optimizer
    assert int(np.asarray(optimizer.iterations)) == steps + 4
    assert type(model.train_function).__name__ != "RecordingTrainFunction"
    assert before >= 0 and not callback.binding.recorder.read()  # nothing recorded
    # And the callback, used again, records every step of its next fit.
    _fit(model, callback)
    assert [s for s, _ in callback.batch_gradient_norms][-4:] == [
        steps + 5,
        steps + 6,
        steps + 7,
        steps + 8,
    ]
    assert model.optimizer is optimizer


def test_recording_is_traced_once_across_fits():
    model = _model()
    callback = _callback(batch_gradients=True, on_flag="ignore")
    own = model.make_train_function() or model.train_function
    _fit(model, callback)
    _fit(model, callback)
    assert callback.binding.recorder.traces == 1
    # Between and after fits the model has its very own train function.
    assert model.train_function is own
    steps = [s for s, _ in callback.batch_gradient_norms]
    assert steps == list(range(1, 9))


def test_a_failing_diagnosis_backs_off_instead_of_running_at_every_batch(
    monkeypatch,
):
    model = _model()
    callback = _callback(update_freq=1)
    calls = []

    def broken(*args, **kwargs):
        calls.append(int(np.asarray(model.optimizer.iterations)))
        raise ValueError("an error inside the diagnostics")

    monkeypatch.setattr(engine.probe_lib, "decode", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(
            np.tile(X, (7, 1)),
            np.tile(Y, (7, 1)),
            batch_size=16,
            epochs=1,
            verbose=0,
            callbacks=[callback],
        )  # 28 steps
    assert int(np.asarray(model.optimizer.iterations)) == 28
    # Steps 0, 1, 2 and the update measurement's own attempt at 3: four
    # failures in a row, so the next waits 4 due points (7), then 8 (15),
    # then 16 (past the end). Before: an attempt at every one of 29 batch ends.
    assert calls == [0, 1, 2, 3, 7, 15]
    failures = [w for w in caught if "failed" in str(w.message)]
    assert len(failures) == 1


def test_a_retry_after_flag_error_diagnoses_step_zero_again():
    model = keras.Sequential(
        [keras.Input((6,))]
        + [keras.layers.Dense(16, activation="relu", kernel_initializer="zeros")]
        + [keras.layers.Dense(2, name="head")]
    )
    model.compile("sgd", "mse")
    callback = _callback(on_flag="raise")
    with pytest.raises(FlagError):
        _fit(model, callback)
    assert int(np.asarray(model.optimizer.iterations)) == 0
    # The usual fix: new weights in place, the same callback, fit again.
    dense = model.layers[0]
    dense.kernel.assign(keras.initializers.HeNormal(seed=0)(dense.kernel.shape))
    _fit(model, callback)
    zero = [r for r in callback.reports if r.step == 0]
    assert zero and not [f for f in zero[-1].flags if f.kind == "symmetry"]
    assert int(np.asarray(model.optimizer.iterations)) == 4


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="subclassed")
        self.hidden = keras.layers.Dense(16, activation="relu", name="hidden")
        self.head = keras.layers.Dense(2, name="head")

    def call(self, x):
        return self.head(self.hidden(x))


def test_a_subclassed_model_without_probe_data_trains_with_weight_statistics():
    model = _Subclassed()
    model.compile("sgd", "mse")
    callback = keras_initdiag.InitDiagnostics(log_dir=None, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, Y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
    assert int(np.asarray(model.optimizer.iterations)) == 4
    messages = " ".join(str(w.message) for w in caught)
    # Keras builds it at its first step; then it is probed on inputs shaped
    # as it was built.
    assert "diagnostics start after that step" in messages
    assert "shaped as model 'subclassed' was built" in messages
    assert callback.reports[0].step == 1
    kernel = np.asarray(model.hidden.kernel.value)
    last = callback.reports[-1]
    assert last.stats["hidden"]["weight_variance"] == pytest.approx(
        float(np.var(kernel)), rel=1e-4
    )


class _KillUnits(keras.callbacks.Callback):
    """Silences every ReLU of layer h1 after the first epoch (a bias of -1e3):
    a mid-fit "dead" that, on the calibration grid, never predicted failure."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            self.model.get_layer("h1").bias.assign(np.full((16,), -1e3, "float32"))


def test_dead_after_step_0_is_advice_and_does_not_stop_or_raise(capsys):
    model = _model()
    callback = _callback(on_flag="raise", verbose=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(
            X,
            Y,
            batch_size=16,
            epochs=3,
            verbose=0,
            callbacks=[_KillUnits(), callback],
        )  # no FlagError
    assert int(np.asarray(model.optimizer.iterations)) == 12
    dead = [f for f in callback.flags if f.kind == "dead"]
    assert dead and all(f.step > 0 for f in dead)
    assert any(
        "advisory" in str(w.message) and "[dead]" in str(w.message) for w in caught
    )
    assert "dead at" not in capsys.readouterr().out  # not printed as a problem
