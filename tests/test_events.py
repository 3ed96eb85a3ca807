"""Reading diagnoses back: every report survives the per-step series beside it.

The per-step gradient norms of `batch_gradients=True` share steps with the
reports; they must not be counted as a report's statistics, or every report
after step 0 is dropped as incomplete and `--fail-on` misses its flags.
"""

from __future__ import annotations

import json

import keras
import numpy as np

import keras_initdiag
from keras_initdiag.cli import main
from keras_initdiag.diagnostics.report import DiagnosticReport, Flag, LayerInfo
from keras_initdiag.tensorboard import DiagnosticsWriter, read_reports
from keras_initdiag.tensorboard.codec import report_to_json

RNG = np.random.default_rng(0)
X = RNG.standard_normal((64, 6)).astype("float32")
Y = RNG.standard_normal((64, 2)).astype("float32")


def test_batch_gradients_run_reads_back_every_report(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="relu", kernel_initializer="he_normal"),
            keras.layers.Dense(2),
        ]
    )
    model.compile("sgd", "mse")
    callback = keras_initdiag.InitDiagnostics(
        log_dir=str(tmp_path),
        probe_data=(X[:16], Y[:16]),
        update_freq=2,
        batch_gradients=True,
        verbose=0,
    )
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    problems = []
    reports = read_reports(tmp_path / "initdiag", problems)
    assert problems == []
    assert [r.step for r in reports] == [0, 2, 3, 4, 6, 8]  # 3: first updates
    for report in reports:
        kept = next(r for r in callback.reports if r.step == report.step)
        for layer, stats in kept.stats.items():
            written = {k: np.float32(v) for k, v in stats.items() if not np.isnan(v)}
            assert report.stats[layer] == written, layer


def _report(step, flags=()):
    info = {"dense": LayerInfo("dense", class_name="Dense", weight_shape=(6, 8))}
    stats = {"dense": {"activation_variance": 1.0 / (step + 1), "gradient_norm": 0.5}}
    return DiagnosticReport(step, ["dense"], stats, list(flags), info, loss=1.0)


def test_a_later_flag_fails_the_cli_gate_next_to_per_step_norms(tmp_path, capsys):
    writer = DiagnosticsWriter(tmp_path, depth_profile=False)
    writer.write(_report(0))
    writer.write_series(
        "train_gradient_norm", [(step, {"dense": 0.1 * step}) for step in range(1, 5)]
    )
    flag = Flag("symmetry", "dense", 4, 0.5, 0.1, "Units are duplicates.")
    advice = Flag("vanishing", "dense", 4, 1e-5, 1e-3, "The signal vanishes.")
    writer.write(_report(4, [flag, advice]))
    writer.close()
    problems = []
    reports = read_reports(tmp_path / "initdiag", problems)
    assert problems == [] and [r.step for r in reports] == [0, 4]
    assert reports[1].flags == [flag, advice]
    assert reports[1].stats["dense"]["activation_variance"] == np.float32(0.2)
    assert main(["report", str(tmp_path), "--fail-on", "symmetry"]) == 1
    assert main(["report", str(tmp_path), "--fail-on", "dead"]) == 0
    # After step 0, vanishing is advice: it does not fail the gate.
    assert main(["report", str(tmp_path), "--fail-on", "vanishing"]) == 0
    capsys.readouterr()


def _write_raw_report(run_dir, step, value):
    """A report record of any payload, as a foreign or damaged writer makes it."""
    import tensorflow as tf

    from tensorboard_plugin_initdiag import metadata

    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        tf.summary.write(
            metadata.REPORT_TAG,
            value,
            step=step,
            metadata=metadata.create_report_metadata(),
        )
    writer.close()


def test_malformed_report_records_are_skipped_not_a_traceback(tmp_path, capsys):
    writer = DiagnosticsWriter(tmp_path, depth_profile=False)
    writer.write(_report(0))
    writer.close()
    run = tmp_path / "initdiag"
    good = json.loads(report_to_json(_report(0), num_scalars=2))
    _write_raw_report(run, 1, json.dumps(dict(good, info=[])))
    _write_raw_report(run, 2, json.dumps(dict(good, flags={"kind": "dead"})))
    _write_raw_report(run, 3, json.dumps([1, 2]))
    _write_raw_report(run, 4, 2.5)  # A float tensor where the JSON text belongs.
    _write_raw_report(run, 5, b"\xff\xfe not utf-8")
    problems = []
    reports = read_reports(run, problems)
    assert [r.step for r in reports] == [0]
    reasons = sorted(p.reason for p in problems)
    assert len(reasons) == 5 and all("skipped" in r for r in reasons), reasons
    assert [r.split(":")[0] for r in reasons] == [f"step {s}" for s in range(1, 6)]
    for fail_on in ("any", "dead"):
        code = main(["report", str(tmp_path), "--fail-on", fail_on, "--format", "json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "Traceback" not in err
        assert err.count("warning: skipped") == 5
        assert len(json.loads(out)["skipped"]) == 5
