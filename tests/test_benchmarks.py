"""Keeps `benchmarks/overhead.py` working: a tiny run, no timing assertions."""

import json

import pytest
from helpers import load_script


@pytest.mark.slow
def test_quick_run_writes_every_configuration(tmp_path, capsys):
    overhead = load_script("benchmarks/overhead.py")
    output = tmp_path / "quick.json"
    overhead.main(["--quick", "--name", "quick", "--output", str(output)])
    results = json.loads(output.read_text())

    (fit,) = results["fit"]
    assert set(fit["configs"]) == set(overhead.FIT_CONFIGS)
    assert "initdiag_batch_gradients" in fit["configs"]
    # Every timed batch recorded its gradient norms (warm-up 2 + timed 3).
    batch_grads = fit["configs"]["initdiag_batch_gradients"]
    assert batch_grads["batch_gradient_records"] == 2 + fit["epoch_group"]["steps"]
    for config, row in fit["configs"].items():
        assert row["fit_seconds"]["n"] == 1
        assert row["ratio_to_plain"]["median"] > 0
        if config.startswith("initdiag"):
            # At most one trace of the diagnosis function per model, across
            # every fit (a few per-epoch diagnoses run eagerly, untraced).
            assert row["traces"] <= 1, config
            # Read back from the event files: every fit wrote reports.
            events = row["events_written"]
            assert events["reports"] >= row["fits"], config
            assert events["depth_profile_images"] == 0, config  # Off by default.

    assert fit["configs"]["initdiag_freq1"]["traces"] == 1

    (diagnosis,) = results["diagnosis"]
    assert diagnosis["traces"] == 1
    assert diagnosis["tapped_layers"] == 4  # The input, two hidden layers, the head.
    for key in (
        "diagnosis_seconds",
        "train_step_seconds",
        "eager_reference_seconds",
        "write_seconds",
        "write_no_image_seconds",
        "diagnosis_light_seconds",
        "write_light_seconds",
    ):
        assert diagnosis[key]["median"] > 0, key
    assert diagnosis["light_ratio_to_train_step"]["median"] > 0
    small = diagnosis["small_probe"]
    assert small["samples"] == 4 and small["traces"] == 1
    assert small["light_ratio_to_train_step"]["median"] > 0
    assert diagnosis["diagnosis_small_seconds"]["n"] == 2
    zoo = {row["model"]: row for row in results["zoo"]}
    assert set(zoo) == {"lstm_text", "plain_bn50"}
    for row in zoo.values():
        assert row["traces"] == 1
        assert row["eager_diagnosis_seconds"]["n"] == 3
        assert row["compiled_ratio_to_train_step"] > 0
    assert results["machine"]["tensorflow"]
    out = capsys.readouterr().out
    assert "| initdiag_freq1 |" in out
    assert "| initdiag_batch_gradients |" in out


def test_probe_compare_times_one_checkout(capsys):
    """`benchmarks/probe_compare.py` on this checkout: one line per model,
    with the step, the full and the light diagnosis and the compile (no
    timing assertions);
    a checkout other than the imported package is refused."""
    from helpers import ROOT

    compare = load_script("benchmarks/probe_compare.py")
    compare.main(str(ROOT), ["zero_head_mlp"], 1)
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("zero_head_mlp") and "full" in line and "light" in line
    assert "| compile " in line and line.endswith(" s")
    with pytest.raises(RuntimeError, match="not from /nowhere"):
        compare.main("/nowhere", ["zero_head_mlp"], 1)


@pytest.mark.slow
def test_pacing_times_the_callbacks_hooks_for_both_schedules(tmp_path, capsys):
    """`benchmarks/pacing.py --quick`: no timing assertions; each fit with
    `"epoch"` diagnoses every epoch end, one with `"auto"` a subset of them
    that keeps the start and the end of the fit."""
    pacing = load_script("benchmarks/pacing.py")
    output = tmp_path / "pacing.json"
    rows = pacing.main(["--quick", "--output", str(output)])
    assert json.loads(output.read_text())["runs"] == rows
    assert [(r["model"], r["update_freq"]) for r in rows] == [
        ("mlp3", "epoch"),
        ("mlp3", "auto"),
        ("cnn2_bn", "epoch"),
        ("cnn2_bn", "auto"),
    ]
    for epoch, auto in zip(rows[::2], rows[1::2]):
        steps = epoch["steps_per_epoch"]  # 64 samples, 16 a batch
        assert steps == 4
        ends = [steps * (e + 1) for e in range(epoch["epochs"])]
        assert set(ends) <= set(epoch["diagnosed_steps"])
        assert set(auto["diagnosed_steps"]) <= set(epoch["diagnosed_steps"])
        assert auto["diagnosed_steps"][0] == 0 and auto["diagnosed_steps"][-1] == 12
        for row in (epoch, auto):
            assert 0 < row["share"] < 1
            assert row["hook_seconds"]["on_train_begin"] > 0
    assert "| mlp3 | 4 x 3 | auto |" in capsys.readouterr().out


def test_scaling_measures_each_model_of_the_sweep(tmp_path):
    """`scaling.py --quick`: a row per model, the models as asked (their
    parameters in closed form: 64 features in, 10 classes out), every time
    positive."""
    scaling = load_script("benchmarks/scaling.py")
    rows = scaling.main(["--quick", "--output", str(tmp_path / "s.json")])
    assert [(r["depth"], r["width"]) for r in rows] == list(scaling.QUICK)
    for r in rows:
        d, w = r["depth"], r["width"]
        assert r["params"] == 64 * w + w + (d - 1) * (w * w + w) + w * 10 + 10
        assert r["tapped"] >= d + 1
        assert min(r["step_ms"], r["full_ms"], r["light_ms"]) > 0
        assert r["full_ratio"] == r["full_ms"] / r["step_ms"]
    assert json.loads((tmp_path / "s.json").read_text())["models"] == rows
