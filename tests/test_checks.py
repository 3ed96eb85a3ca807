"""The start-of-training sanity checks, each both ways.

initial_loss (a confidently wrong classifier), no_gradient (a layer the loss
does not reach), finite_width (a deep narrow stack) and update_ratio (a layer
whose first real updates hardly move it).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

import keras_initdiag

RNG = np.random.default_rng(0)


def _kinds(report):
    return {f.kind for f in report.flags}


def _classifier(head_initializer):
    return keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(64, activation="relu", kernel_initializer="he_normal"),
            keras.layers.Dense(10, kernel_initializer=head_initializer, name="logits"),
        ]
    )


def test_initial_loss_flags_logits_of_standard_deviation_30():
    x = RNG.standard_normal((256, 20)).astype("float32")
    y = RNG.integers(0, 10, 256)
    # He features have E[h^2] ~ 1 per unit over 64 units: N(0, s^2) head
    # weights give logits of standard deviation ~ s * 8.
    model = _classifier(keras.initializers.RandomNormal(stddev=30 / 8, seed=1))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    report = keras_initdiag.diagnose(model, x, y, loss=loss)
    assert np.std(np.asarray(model(x))) == pytest.approx(30, rel=0.2)
    (flag,) = [f for f in report.flags if f.kind == "initial_loss"]
    assert flag.layer == "logits" and flag.value == pytest.approx(report.loss)
    assert report.chance_loss == pytest.approx(math.log(10))
    assert "confidently wrong" in flag.message and "'logits'" in flag.message


def test_initial_loss_is_quiet_at_the_chance_level():
    x = RNG.standard_normal((256, 20)).astype("float32")
    y = RNG.integers(0, 10, 256)
    model = _classifier("zeros")
    model.compile("sgd", "sparse_categorical_crossentropy")
    report = keras_initdiag.diagnose(model, x, y)
    assert report.loss == pytest.approx(math.log(10), rel=1e-5)
    assert "initial_loss" not in _kinds(report)


def test_no_gradient_flags_a_branch_cut_by_stop_gradient():
    inputs = keras.Input((6,))
    cut = keras.layers.Dense(8, activation="relu", name="cut")(inputs)
    kept = keras.layers.Dense(8, activation="relu", name="kept")(inputs)
    merged = keras.layers.Concatenate()([keras.ops.stop_gradient(cut), kept])
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(merged))
    x = RNG.standard_normal((32, 6)).astype("float32")
    y = RNG.standard_normal((32, 1)).astype("float32")
    report = keras_initdiag.diagnose(model, x, y, loss="mse")
    flags = [f for f in report.flags if f.kind == "no_gradient"]
    assert [f.layer for f in flags] == ["cut"]
    assert "stop_gradient" in flags[0].message


def test_zero_gradients_by_design_or_from_dead_units_are_not_no_gradient():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(
                8, activation="relu", bias_initializer="ones", name="first"
            ),
            # Negative bias and zero kernel: every unit dead.
            keras.layers.Dense(
                8,
                activation="relu",
                kernel_initializer="zeros",
                bias_initializer=keras.initializers.Constant(-1.0),
                name="dead",
            ),
            keras.layers.Dense(1, kernel_initializer="zeros", name="head"),
        ]
    )
    x = RNG.standard_normal((32, 6)).astype("float32")
    y = RNG.standard_normal((32, 1)).astype("float32")
    report = keras_initdiag.diagnose(model, x, y, loss="mse")
    assert report.stats["first"]["gradient_norm"] == 0.0
    assert "no_gradient" not in _kinds(report)
    assert "dead" in _kinds(report)


def test_finite_width_flags_a_deep_narrow_relu_stack_only():
    def stack(depth, width):
        return keras.Sequential(
            [keras.Input((width,))]
            + [
                keras.layers.Dense(
                    width, activation="relu", kernel_initializer="he_normal"
                )
                for _ in range(depth)
            ]
        )

    narrow = keras_initdiag.diagnose(
        stack(50, 16), RNG.standard_normal((64, 16)).astype("float32")
    )
    (flag,) = [f for f in narrow.flags if f.kind == "finite_width"]
    assert flag.value == pytest.approx(5 * 50 / 16, rel=0.25)
    assert "Hanin" in flag.message
    wide = keras_initdiag.diagnose(
        stack(20, 256), RNG.standard_normal((64, 256)).astype("float32")
    )
    assert "finite_width" not in _kinds(wide)


class _Scaled(keras.layers.Dense):
    """A Dense layer whose kernel is used times 1e-6: its own learning rate,
    in effect, is 1e-12 times the optimizer's under SGD."""

    def call(self, inputs):
        return self.activation(keras.ops.matmul(inputs, self.kernel * 1e-6) + self.bias)


def _fit_with_updates(model):
    model.compile(keras.optimizers.SGD(0.05), "mse")
    x = RNG.standard_normal((64, 8)).astype("float32")
    y = RNG.standard_normal((64, 1)).astype("float32")
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:16], y[:16]), verbose=0, on_flag="ignore"
    )
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    return callback


def test_update_ratio_flags_a_layer_that_hardly_moves():
    model = keras.Sequential(
        [
            keras.Input((8,)),
            # First, so no other layer sits behind its tiny effective kernel.
            _Scaled(16, activation="relu", kernel_initializer="he_normal", name="slow"),
            keras.layers.Dense(16, activation="relu", kernel_initializer="he_normal"),
            keras.layers.Dense(1, name="head"),
        ]
    )
    callback = _fit_with_updates(model)
    flags = [f for f in callback.flags if f.kind == "update_ratio"]
    assert [f.layer for f in flags] == ["slow"]
    assert flags[0].value < 1e-6 and flags[0].step == 3
    assert "hardly moves" in flags[0].message
    others = [r for name, r in callback.update_ratios.items() if name != "slow"]
    assert all(1e-5 < r < 1 for r in others), callback.update_ratios


def test_update_ratio_is_quiet_on_a_healthy_run():
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu", kernel_initializer="he_normal"),
            keras.layers.Dense(1),
        ]
    )
    callback = _fit_with_updates(model)
    assert callback.update_ratios and not [
        f for f in callback.flags if f.kind == "update_ratio"
    ]


def test_update_ratio_flags_updates_near_the_weights_own_size():
    # Calibrated: grid networks that trained stayed at or below 0.38 per
    # step, every one at 0.9 or above failed.
    flags = keras_initdiag.diagnostics.rules.update_ratio_flags(
        3, {"unstable": 0.9, "fine": 0.38, "quiet": 1.3e-5}, keras_initdiag.Thresholds()
    )
    assert [(f.layer, f.threshold) for f in flags] == [("unstable", 0.5)]
    assert "unstable" in flags[0].message


def test_update_ratio_names_a_layer_that_did_not_move_at_all():
    thresholds = keras_initdiag.Thresholds()
    flags = keras_initdiag.diagnostics.rules.update_ratio_flags(
        3, {"frozen": 0.0, "zero_weights": math.nan, "fine": 1e-3}, thresholds
    )
    assert [(f.layer, f.value) for f in flags] == [("frozen", 0.0)]
    assert "it did not move" in flags[0].message


def _healthy_mlp(width=64, depth=4):
    return keras.Sequential(
        [keras.Input((8,))]
        + [
            keras.layers.Dense(width, activation="relu", kernel_initializer="he_normal")
            for _ in range(depth)
        ]
        + [keras.layers.Dense(1, name="head")]
    )


def test_a_warmup_from_zero_is_not_a_frozen_layer_and_does_not_stop_training(
    capsys,
):
    # The usual transformer recipe: a linear warmup from 0 to 1e-3 over 10,000
    # steps. The first updates are ~1e-7 of the weights by design.
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=100_000, warmup_target=1e-3, warmup_steps=10_000
    )
    model = _healthy_mlp()
    model.compile(keras.optimizers.Adam(schedule), "mse")
    x = RNG.standard_normal((64, 8)).astype("float32")
    y = RNG.standard_normal((64, 1)).astype("float32")
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:16], y[:16]), on_flag="stop", verbose=1
    )
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[callback])
    assert len(history.history["loss"]) == 3  # not stopped
    assert "update_ratio" not in {f.kind for f in callback.flags}
    # The first updates (~1e-7 x 1/rms(W)) are too small for float32 to
    # measure well: measuring goes on until they are not.
    (report,) = [
        r for r in callback.reports if not np.isnan(r.stat("update_ratio")).all()
    ]
    assert 3 < report.step <= 64
    name = report.layers[1]
    kernel = model.get_layer(name).kernel
    rms = float(np.sqrt(np.mean(np.square(np.asarray(kernel.value)))))
    # Adam moves every entry by about lr (exactly lr at its first step, ~0.7
    # lr after): the ratio at the 1e-3 peak is about 1e-3 / rms(W).
    peak = report.stats[name]["update_ratio_at_peak_lr"]
    assert 0.4 < peak / (1e-3 / rms) < 1.1, peak
    assert report.stats[name]["update_ratio"] < 1e-5  # frozen, at a fixed rate
    assert "stopping training" not in capsys.readouterr().out


def _too_slow_even_at_the_peak():
    """A warmup to 1e-8 under SGD: every update stays ~1e-8 of the weights,
    some round to nothing. Step 2 runs at the peak rate itself."""
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=1000, warmup_target=1e-8, warmup_steps=2
    )
    model = _healthy_mlp(width=16, depth=2)
    model.compile(keras.optimizers.SGD(schedule), "mse")
    x = RNG.standard_normal((64, 8)).astype("float32")
    y = RNG.standard_normal((64, 1)).astype("float32")
    return model, x, y


def test_a_rate_too_small_even_at_its_peak_stops_training_and_says_why(capsys):
    model, x, y = _too_slow_even_at_the_peak()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:16], y[:16]), on_flag="stop", verbose=1
    )
    with pytest.warns(keras_initdiag.InitDiagnosticsWarning, match="update_ratio"):
        history = model.fit(
            x, y, batch_size=8, epochs=3, verbose=0, callbacks=[callback]
        )
    assert len(history.history["loss"]) == 1  # stopped in the first epoch
    flags = [f for f in callback.flags if f.kind == "update_ratio"]
    assert flags and {f.step for f in flags} == {3}
    assert all(f.value < 1e-6 for f in flags)
    assert any("even at the schedule's peak learning rate" in f.message for f in flags)
    out = capsys.readouterr().out
    assert 'stopping training at step 3 (on_flag="stop")' in out
    assert f"[update_ratio] {flags[0].layer}" in out


def test_sampled_update_ratio_equals_the_whole_weights_ratio():
    from keras_initdiag.callbacks.updates import UpdateTracker

    model = _healthy_mlp(width=256, depth=2)  # 256 x 256 = 65,536 entries
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    x = RNG.standard_normal((64, 8)).astype("float32")
    y = RNG.standard_normal((64, 1)).astype("float32")
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:8], y[:8]), verbose=0
    )
    model.fit(x[:8], y[:8], epochs=1, verbose=0, callbacks=[callback])
    taps = callback.diagnoser.tapset.taps
    tracker = UpdateTracker(taps, model.optimizer, steps=1)
    kernel = model.layers[1].kernel
    before = np.asarray(kernel.value).copy()
    step = int(np.asarray(model.optimizer.iterations))
    tracker.start(step)
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    measured = tracker.after_batch(step + 1)["update_ratio"][model.layers[1].name]
    whole = np.linalg.norm(np.asarray(kernel.value) - before) / np.linalg.norm(before)
    # A 4,096-entry sample of 65,536: within a few percent of the whole.
    assert measured == pytest.approx(whole, rel=0.05)
    assert measured > 0


def test_update_ratio_flags_reach_the_event_files_and_report_fail_on(tmp_path, capsys):
    from keras_initdiag.cli import main
    from keras_initdiag.tensorboard import read_reports

    model, x, y = _too_slow_even_at_the_peak()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=str(tmp_path), probe_data=(x[:16], y[:16]), on_flag="ignore", verbose=0
    )
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    (report,) = [r for r in read_reports(tmp_path / "initdiag") if r.step == 3]
    assert {f.kind for f in report.flags} == {"update_ratio"}
    ratios = report.stat("update_ratio")
    assert ratios == pytest.approx(
        [callback.update_ratios.get(n, float("nan")) for n in report.layers],
        nan_ok=True,
    )
    capsys.readouterr()
    assert main(["report", str(tmp_path), "--fail-on", "update_ratio"]) == 1
    assert main(["report", str(tmp_path), "--fail-on", "vanishing"]) == 0


def test_a_kernel_read_only_by_batch_norm_is_not_unstable_for_a_large_step():
    # Scale-invariant: a large relative step grows its norm and lowers its
    # own effective rate (ResNet50's conv1 under its warmup: 1.01, then 0.14).
    from keras_initdiag.diagnostics.report import DiagnosticReport, LayerInfo
    from keras_initdiag.diagnostics.rules.checks import report_update_ratio_flags

    layers = ["input", "conv", "bn", "dense"]
    info = {
        "input": LayerInfo(name="input", kind="input"),
        "conv": LayerInfo(name="conv", kind="layer", inputs=("input",)),
        "bn": LayerInfo(name="bn", kind="norm", inputs=("conv",)),
        "dense": LayerInfo(name="dense", kind="layer", inputs=("bn",)),
    }
    stats = {n: {} for n in layers}
    stats["conv"] = {"update_ratio": 1.01, "update_ratio_at_peak_lr": 2.0}
    stats["dense"] = {"update_ratio": 0.9, "update_ratio_at_peak_lr": 1.8}
    report = DiagnosticReport(step=3, layers=layers, stats=stats, info=info)
    flags = report_update_ratio_flags(report, keras_initdiag.Thresholds())
    assert [(f.layer, f.value) for f in flags] == [("dense", 0.9)]
    # Too slow is still judged for it, at the peak rate.
    stats["conv"] = {"update_ratio": 1e-9, "update_ratio_at_peak_lr": 1e-8}
    flags = report_update_ratio_flags(report, keras_initdiag.Thresholds())
    assert ("conv", 1e-8) in [(f.layer, f.value) for f in flags]


def test_a_zero_initialized_head_has_no_update_ratio_to_judge():
    # Fixup's recipe under a warmup: the head grows from nothing, so each
    # early update is about its whole size (1.21 at step 7 stopped the fit).
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu", kernel_initializer="he_normal"),
            keras.layers.Dense(4, kernel_initializer="zeros", name="head"),
        ]
    )
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=100, warmup_target=0.05, warmup_steps=5
    )
    model.compile(
        keras.optimizers.SGD(schedule, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = RNG.standard_normal((64, 8)).astype("float32")
    y = RNG.integers(0, 4, 64)
    callback = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:16], y[:16]), on_flag="raise", verbose=0
    )
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[callback])
    assert math.isnan(callback.update_ratios["head"])
    assert 0 < callback.update_ratios[model.layers[0].name] < 0.5
    assert not [f for f in callback.flags if f.kind == "update_ratio"]


def test_the_tracker_gives_no_ratio_for_a_weight_that_started_at_zero():
    from keras_initdiag.callbacks.updates import UpdateTracker
    from keras_initdiag.diagnostics.step_stats import Sampler

    head = keras.Variable(np.zeros((4, 3), "float32"))
    body = keras.Variable(np.ones((4, 3), "float32"))
    tracker = UpdateTracker([], keras.optimizers.SGD(0.1))
    tracker.layers = [("head", head), ("body", body)]
    tracker.sampler = Sampler([head, body], [None, None])
    tracker.start(0)
    for step in (1, 2, 3):
        head.assign(head.value + 0.1)  # grows from nothing: 1/k per step
        body.assign(body.value + 0.01)
        result = tracker.after_batch(step)
    assert math.isnan(result["update_ratio"]["head"])
    assert math.isnan(result["update_ratio_at_peak_lr"]["head"])
    assert result["update_ratio"]["body"] == pytest.approx(0.01 / 1.01, rel=1e-5)


def test_the_update_tracker_keeps_a_bounded_sample_not_the_weights():
    from keras_initdiag.callbacks.updates import SAMPLE, UpdateTracker

    model = _healthy_mlp(width=256, depth=3)  # two 65,536-entry kernels
    model.compile(keras.optimizers.SGD(0.01), "mse")
    taps = keras_initdiag.diagnostics.oneshot.cached_diagnoser(model).tapset.taps
    tracker = UpdateTracker(taps, model.optimizer)
    tracker.start(0)
    kept = int(np.prod(tracker._before.shape))
    assert kept <= SAMPLE * len(tracker.layers)
    whole = sum(int(np.prod(w.shape)) for _, w in tracker.layers)
    assert whole > 3 * kept  # a copy of the weights would be all of them
