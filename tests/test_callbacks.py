"""`InitDiagnostics` inside `model.fit`: schedule, actions, events, bad input."""

import os
import time
import warnings

import keras
import numpy as np
import pytest
from helpers import TensorBoardServer, event_accumulator, poll_json, tensor_tags

import keras_initdiag
from keras_initdiag.callbacks import FlagError, InitDiagnosticsWarning

LOSS = "sparse_categorical_crossentropy"


def model_and_data(depth=3, width=16, kernel="he_normal", n=64):
    model = keras.Sequential(
        [keras.Input((8,))]
        + [
            keras.layers.Dense(width, activation="relu", kernel_initializer=kernel)
            for _ in range(depth)
        ]
        + [keras.layers.Dense(3, activation="softmax")]
    )
    model.compile("sgd", LOSS)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 8)).astype("float32")
    y = rng.integers(0, 3, n)
    return model, x, y


def fit(model, x, y, callback, **kwargs):
    kwargs.setdefault("epochs", 2)
    kwargs.setdefault("batch_size", 16)
    return model.fit(x, y, callbacks=[callback], verbose=0, **kwargs)


def test_epoch_schedule_starts_at_step_0_and_writes_events(tmp_path):
    model, x, y = model_and_data()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=str(tmp_path),
        probe_data=(x[:16], y[:16]),
        update_freq="epoch",
        verbose=0,
    )
    fit(model, x, y, callback)
    # 64 samples / 16 per batch = 4 steps per epoch; step 3 is the
    # diagnosis after the first updates (their ratios join it).
    assert [r.step for r in callback.reports] == [0, 3, 4, 8]
    accumulator = event_accumulator(str(tmp_path / "initdiag"))
    tags = tensor_tags(accumulator)
    assert "activation_variance/dense" in tags
    assert "activation_gradient_rms/dense_2" in tags
    steps = [e.step for e in accumulator.Tensors("activation_variance/dense")]
    assert steps == [0, 3, 4, 8]
    first = accumulator.Tensors("activation_variance/dense")[0]
    from tensorboard.util import tensor_util

    value = float(tensor_util.make_ndarray(first.tensor_proto))
    assert value == pytest.approx(
        callback.reports[0].stats["dense"]["activation_variance"], rel=1e-6
    )
    # Custom scalars layout, flags table; no image unless asked for.
    assert "flags" in tensor_tags(accumulator, "text")
    assert "custom_scalars__config__" in tags
    assert tensor_tags(accumulator, "images") == []


def test_step_0_is_before_any_update(tmp_path):
    model, x, y = model_and_data()
    before = keras_initdiag.diagnose(model, x[:16], y[:16])
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:16], y[:16]), verbose=0
    )
    fit(model, x, y, callback, epochs=1)

    def table(report):
        return np.array([list(report.stats[n].values()) for n in report.layers])

    np.testing.assert_array_equal(table(callback.reports[0]), table(before))
    assert not np.allclose(table(callback.reports[1]), table(before), equal_nan=True)


def test_int_update_freq_and_second_fit_continue_the_steps():
    model, x, y = model_and_data()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:16], y[:16]), update_freq=3, verbose=0
    )
    fit(model, x, y, callback)  # 8 steps; the final state is diagnosed too
    assert [r.step for r in callback.reports] == [0, 3, 6, 8]
    fit(model, x, y, callback)  # steps 9..16, resumed at step 8 (not repeated)
    steps = [r.step for r in callback.reports]
    assert steps == [0, 3, 6, 8, 9, 12, 15, 16]
    assert steps == sorted(set(steps))


class _Clock:
    """A fake `perf_counter`: each reading takes `per_call` seconds, and each
    training step `per_step` (advanced by `_Steps`, a callback)."""

    def __init__(self, per_call: float, per_step: float):
        self.t, self.per_call, self.per_step = 0.0, per_call, per_step

    def __call__(self) -> float:
        self.t += self.per_call
        return self.t


class _Steps(keras.callbacks.Callback):
    def __init__(self, clock: _Clock):
        super().__init__()
        self.clock = clock

    def on_train_batch_end(self, batch, logs=None):
        self.clock.t += self.clock.per_step


def test_auto_schedule_keeps_the_diagnoses_within_two_percent(monkeypatch, capsys):
    """Each diagnosis (and each clock reading) takes 10 ms, each step 50 ms.
    Step 3's diagnosis (the update ratios) is a one-off: not spent, but it
    times the next (10 ms), due once 10 ms is 2% of the time since step 0's
    diagnosis, 0.5 s: not at steps 4 and 8 (0.23 and 0.44 s), at 12 (0.65
    s); then, 10 ms spent, once 20 ms is: not at 16 (0.86 s), at 20 (1.07
    s), the fit's end. A note says why, once."""
    clock = _Clock(per_call=0.01, per_step=0.05)
    monkeypatch.setattr("keras_initdiag.callbacks.now", clock)
    model, x, y = model_and_data()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:16], y[:16]), verbose=1
    )
    assert callback.update_freq == "auto"
    model.fit(
        x, y, epochs=5, batch_size=16, verbose=0, callbacks=[_Steps(clock), callback]
    )
    assert [r.step for r in callback.reports] == [0, 3, 12, 20]
    assert callback.schedule.spent == pytest.approx(0.02)
    out = capsys.readouterr().out
    assert out.count("a diagnosis takes about 10 ms") == 1
    # A later fit starts and ends with a diagnosis, as with "epoch".
    model.fit(
        x, y, epochs=1, batch_size=16, verbose=0, callbacks=[_Steps(clock), callback]
    )
    assert [r.step for r in callback.reports][-1] == 24


def test_initial_epoch_is_respected():
    model, x, y = model_and_data()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:16], y[:16]), update_freq="epoch", verbose=0
    )
    fit(model, x, y, callback, epochs=3, initial_epoch=1)
    assert [r.step for r in callback.reports] == [0, 3, 4, 8]


def test_symmetry_warns_once_per_layer():
    model, x, y = model_and_data(kernel="zeros")
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:16], y[:16]), verbose=0
    )
    with pytest.warns(InitDiagnosticsWarning) as record:
        fit(model, x, y, callback)
    symmetry = [w for w in record if "[symmetry]" in str(w.message)]
    assert len(symmetry) == 3  # three hidden layers, once each across 3 diagnoses
    assert {f.kind for f in callback.flags} >= {"symmetry"}


def test_on_flag_stop_stops_training():
    model, x, y = model_and_data(kernel="zeros")
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:16], y[:16]), on_flag="stop", verbose=0
    )
    with pytest.warns(InitDiagnosticsWarning):
        history = fit(model, x, y, callback, epochs=5)
    assert len(history.history["loss"]) == 1  # stopped after the first epoch


def test_on_flag_raise_raises_before_training():
    model, x, y = model_and_data(kernel="zeros")
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:16], y[:16]), on_flag="raise", verbose=0
    )
    before = model.get_weights()
    with pytest.raises(FlagError) as info:
        fit(model, x, y, callback)
    assert any(f.kind == "symmetry" for f in info.value.flags)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_on_flag_ignore_is_silent_but_records():
    model, x, y = model_and_data(kernel="zeros")
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:16], y[:16]), on_flag="ignore", verbose=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(model, x, y, callback)
    assert callback.flags


def test_advisory_flags_never_stop():
    model, x, y = model_and_data(kernel="glorot_uniform")
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:16], y[:16]), on_flag="raise", verbose=0
    )
    with pytest.warns(InitDiagnosticsWarning, match="advisory"):
        fit(model, x, y, callback)
    assert {f.kind for f in callback.flags} == {"init_mismatch"}


def test_nan_mid_training_is_flagged_at_its_layer():
    model, x, y = model_and_data()

    class Poison(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                kernel = self.model.layers[1].kernel
                value = kernel.numpy()
                value[0, 0] = np.nan
                kernel.assign(value)

    callback = keras_initdiag.InitDiagnostics(
        log_dir=None,
        probe_data=(x[:16], y[:16]),
        update_freq=2,
        on_flag="stop",
        verbose=0,
    )
    with pytest.warns(InitDiagnosticsWarning, match="nonfinite"):
        model.fit(
            x, y, epochs=3, batch_size=16, verbose=0, callbacks=[Poison(), callback]
        )
    nonfinite = [f for f in callback.flags if f.kind == "nonfinite"]
    assert nonfinite[0].layer == model.layers[1].name
    assert nonfinite[0].step == 2
    assert model.stop_training


def test_failure_warns_once_and_training_goes_on(monkeypatch):
    model, x, y = model_and_data()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:16], y[:16]), update_freq="epoch", verbose=0
    )

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    fit(model, x, y, callback, epochs=1)  # builds the diagnoser
    monkeypatch.setattr(callback.diagnoser, "measure", broken)
    with pytest.warns(InitDiagnosticsWarning, match="boom") as record:
        history = fit(model, x, y, callback, epochs=3)
    assert len(history.history["loss"]) == 3
    assert len([w for w in record if "boom" in str(w.message)]) == 1


def test_verbose_prints_flags(capsys):
    model, x, y = model_and_data(kernel="zeros")
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:16], y[:16]), on_flag="ignore", verbose=1
    )
    fit(model, x, y, callback, epochs=1)
    out = capsys.readouterr().out
    assert "InitDiagnostics step 0" in out and "symmetry at dense" in out


def test_without_probe_data_uses_synthetic_inputs_and_warns():
    model, x, y = model_and_data()
    callback = keras_initdiag.InitDiagnostics(log_dir=None, verbose=0)
    with pytest.warns(InitDiagnosticsWarning, match="probe_data"):
        fit(model, x, y, callback, epochs=1)
    report = callback.reports[0]
    assert report.stats["dense"]["activation_variance"] > 0
    assert np.isnan(report.stats["dense"]["gradient_norm"])


def test_histograms(tmp_path):
    model, x, y = model_and_data()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=str(tmp_path), probe_data=(x[:16], y[:16]), histograms=True, verbose=0
    )
    fit(model, x, y, callback, epochs=1)
    tags = tensor_tags(event_accumulator(str(tmp_path / "initdiag")), "histograms")
    assert {"weights/dense", "activations/dense", "gradients/dense"} <= set(tags)


def test_unwritable_log_dir_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    model, x, y = model_and_data()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=str(blocker / "logs"), probe_data=(x[:16], y[:16]), verbose=0
    )
    before = model.get_weights()
    with pytest.raises(ValueError, match="log_dir") as info:
        fit(model, x, y, callback)
    assert str(blocker / "logs") in str(info.value)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_probe_data_that_does_not_fit_fails_before_training():
    model, x, y = model_and_data()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=np.zeros((4, 5), "float32"), verbose=0
    )
    with pytest.raises(ValueError, match=r"probe_data.*shape \(4, 5\)"):
        fit(model, x, y, callback)


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"update_freq": 0}, ValueError, "update_freq=0"),
        ({"update_freq": "batch"}, ValueError, "update_freq='batch'"),
        ({"update_freq": True}, ValueError, "update_freq=True"),
        ({"on_flag": "panic"}, ValueError, "on_flag='panic'"),
        ({"probe_data": np.zeros((0, 8))}, ValueError, "shape (0, 8)"),
        ({"probe_data": np.full((2, 8), np.inf)}, ValueError, "16 of its 16"),
        ({"probe_data": (1, 2, 3)}, ValueError, "length 3"),
        ({"histograms": "yes"}, TypeError, "histograms='yes'"),
        ({"verbose": 5}, ValueError, "verbose=5"),
        ({"layers": "dense"}, TypeError, "layers='dense'"),
        ({"thresholds": 0.5}, TypeError, "thresholds=0.5"),
        ({"log_dir": ""}, ValueError, "log_dir=''"),
    ],
)
def test_bad_arguments(kwargs, error, needle):
    with pytest.raises(error) as info:
        keras_initdiag.InitDiagnostics(**kwargs)
    assert needle in str(info.value)


def test_unknown_layer_fails_at_fit_start():
    model, x, y = model_and_data()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=x[:8], layers=["nope"], verbose=0
    )
    with pytest.raises(ValueError, match=r"\['nope'\]"):
        fit(model, x, y, callback)


def test_importable_from_callbacks_module():
    assert keras_initdiag.callbacks.InitDiagnostics is keras_initdiag.InitDiagnostics


@pytest.mark.slow
def test_tensorboard_server_serves_callback_logs(tmp_path):
    model, x, y = model_and_data()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=str(tmp_path / "logs"), probe_data=(x[:16], y[:16]), verbose=0
    )
    fit(model, x, y, callback, epochs=1)
    with TensorBoardServer(str(tmp_path / "logs"), str(tmp_path / "tb.log")) as url:
        body = poll_json(
            f"{url}/data/plugin/scalars/tags",
            lambda b: "initdiag" in (b or {}),
            deadline=time.monotonic() + 40,
        )
        assert body and "activation_variance/dense" in body["initdiag"]
        layout = poll_json(
            f"{url}/data/plugin/custom_scalars/layout",
            lambda b: bool(b),
            deadline=time.monotonic() + 20,
        )
        titles = [c["title"] for cat in layout["category"] for c in cat["chart"]]
        assert any("activation_variance" in t for t in titles)
    assert os.path.isdir(tmp_path / "logs" / "initdiag")


def test_depth_profile_image_at_step_0_and_at_the_end(tmp_path):
    model, x, y = model_and_data()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=str(tmp_path),
        probe_data=(x[:16], y[:16]),
        update_freq=1,
        verbose=0,
        on_flag="ignore",
        depth_profile=True,
    )
    fit(model, x, y, callback)  # 2 epochs of 4 steps: diagnoses at 0..8
    accumulator = event_accumulator(str(tmp_path / "initdiag"))
    steps = [e.step for e in accumulator.Tensors("depth_profile")]
    assert steps == [0, 8]  # before training, and the final state
    assert [e.step for e in accumulator.Tensors("activation_variance/dense")] == list(
        range(9)
    )


def test_diagnoser_is_public_and_traced_once_across_fits():
    model, x, y = model_and_data()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:16], y[:16]), update_freq=2, verbose=0
    )
    assert callback.diagnoser is None
    fit(model, x, y, callback)
    fit(model, x, y, callback)
    assert callback.diagnoser.probe.traces == 1


def test_int_schedule_ends_with_a_diagnosis_of_the_final_state():
    model, x, y = model_and_data()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:16], y[:16]), update_freq=3, verbose=0
    )
    fit(model, x, y, callback)  # 8 steps
    assert [r.step for r in callback.reports] == [0, 3, 6, 8]


def test_epoch_schedule_draws_the_image_at_step_0_and_the_last_epoch(tmp_path):
    model, x, y = model_and_data()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=str(tmp_path),
        probe_data=(x[:16], y[:16]),
        update_freq="epoch",
        verbose=0,
        depth_profile=True,
    )
    fit(model, x, y, callback, epochs=3)
    accumulator = event_accumulator(str(tmp_path / "initdiag"))
    assert [e.step for e in accumulator.Tensors("depth_profile")] == [0, 12]


def test_a_second_fit_does_not_redraw_the_same_image(tmp_path):
    model, x, y = model_and_data()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=str(tmp_path),
        probe_data=(x[:16], y[:16]),
        update_freq="epoch",
        verbose=0,
        depth_profile=True,
    )
    fit(model, x, y, callback, epochs=1)  # images at steps 0 and 4
    fit(model, x, y, callback, epochs=1)  # resumes at 4: only 8 is new
    accumulator = event_accumulator(str(tmp_path / "initdiag"))
    assert [e.step for e in accumulator.Tensors("depth_profile")] == [0, 4, 8]


def test_run_level_summaries_reach_every_logs_reader(tmp_path):
    import csv
    import math

    model, x, y = model_and_data()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:16], y[:16]), verbose=0
    )
    path = tmp_path / "log.csv"
    history = model.fit(
        x,
        y,
        batch_size=16,
        epochs=9,  # 4 steps each: the early verdict comes at step 32
        verbose=0,
        callbacks=[callback, keras.callbacks.CSVLogger(str(path))],
    )
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9
    last = callback.reports[-1]
    dead = max(v for v in last.stat("dead_fraction") if not math.isnan(v))
    assert float(rows[-1]["initdiag_max_dead_fraction"]) == pytest.approx(dead)
    assert float(rows[-1]["initdiag_flags"]) == len(last.flags)  # none advisory here
    assert history.history["initdiag_max_dead_fraction"][-1] == pytest.approx(dead)
    worst = float(rows[-1]["initdiag_worst_backward_scale"])
    assert 0 < worst < float("inf")
    risks = [float(row["initdiag_verdict_risk"]) for row in rows]
    assert all(math.isnan(r) for r in risks[:7])  # before step 32
    assert callback.verdict.step == 32
    assert risks[7] == risks[8] == pytest.approx(callback.verdict.risk)
