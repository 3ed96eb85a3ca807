"""Tests of the TensorBoard writer and reader, checked with TensorBoard's reader."""

import logging
import math
import os
import sys
import time
import urllib.parse

import numpy as np
import pytest
from helpers import (
    TensorBoardServer,
    event_accumulator,
    poll_json,
    record_ends,
    tensor_tags,
    tensor_values,
)
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalar_metadata

from keras_initdiag import tensorboard as tb
from keras_initdiag.diagnostics.report import (
    STAT_NAMES,
    DiagnosticReport,
    Flag,
    LayerInfo,
)

ODD = "blöck_" + "长" * 40 + "|*_<b>&`"  # unicode, long, markdown/HTML specials


def make_report(step=0, scale=1.0, flags=True):
    layers = ["dense", ODD, "out"]
    stats = {
        "dense": {
            "activation_variance": 1.0 * scale,
            "activation_gradient_rms": 0.25,
            "weight_variance": 0.02,
            "dead_fraction": 0.0,
        },
        ODD: {
            "activation_variance": 0.125 * scale,
            "activation_gradient_rms": 0.5,
            "weight_variance": math.nan,  # does not apply: skipped
            "dead_fraction": 1.0,
        },
        "out": {
            "activation_variance": 3e-7 * scale,
            "activation_gradient_rms": 1.5,
            "weight_variance": 0.001,
            "dead_fraction": math.nan,
        },
    }
    info = {
        "dense": LayerInfo("dense", "Dense", "relu", "he", (4, 8)),
        ODD: LayerInfo(ODD, "Dense", "relu", "glorot", (8, 8), recommended=("he",)),
        "out": LayerInfo("out", "Dense", "", "glorot", (8, 1), is_output=True),
    }
    flag_list = [
        Flag(
            "dead", ODD, step, 1.0, 0.5, "All units | dead <script>x</script>\nTry He."
        ),
        Flag("exploding", "out", step, math.inf, 1e3, "*bold* `code` & _it_"),
    ]
    return DiagnosticReport(step, layers, stats, flag_list if flags else [], info, 0.75)


def written_scalars(report):
    return {
        f"{stat}/{layer}": value
        for layer in report.layers
        for stat, value in report.stats[layer].items()
        if not math.isnan(value)
    }


def test_constructing_the_writer_touches_no_disk(tmp_path):
    log_dir = tmp_path / "logs"
    writer = tb.DiagnosticsWriter(log_dir)
    writer.flush()
    writer.close()
    assert not log_dir.exists()


def test_check_writable_creates_the_run_directory(tmp_path):
    writer = tb.DiagnosticsWriter(tmp_path / "logs", subdir="diag")
    writer.check_writable()
    assert os.listdir(tmp_path / "logs" / "diag") == []


def test_check_writable_under_a_regular_file_raises_naming_log_dir(tmp_path):
    regular = tmp_path / "file.txt"
    regular.write_text("not a directory")
    log_dir = str(regular / "logs")
    with pytest.raises(ValueError, match="log_dir") as error:
        tb.DiagnosticsWriter(log_dir).check_writable()
    assert log_dir in str(error.value)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root can write to read-only directories",
)
def test_check_writable_read_only_directory_raises(tmp_path):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        with pytest.raises(ValueError, match="ro"):
            tb.DiagnosticsWriter(read_only).check_writable()
    finally:
        read_only.chmod(0o755)


def test_invalid_log_dir_raises():
    with pytest.raises(ValueError, match="log_dir=None"):
        tb.DiagnosticsWriter(None)


def test_scalars_tags_steps_and_values(tmp_path):
    reports = [make_report(0), make_report(10, scale=2.0)]
    with tb.DiagnosticsWriter(tmp_path, depth_profile=False) as writer:
        for report in reports:
            writer.write(report)
    acc = event_accumulator(str(tmp_path / "initdiag"))
    expected = written_scalars(reports[0])
    assert f"weight_variance/{ODD}" not in expected  # NaN was skipped
    assert set(tensor_tags(acc, "scalars")) == set(expected) | {"loss/probe"}
    for tag in expected:
        steps, values = zip(*tensor_values(acc, tag), strict=True)
        assert steps == (0, 10)
        want = [written_scalars(r)[tag] for r in reports]
        np.testing.assert_allclose(values, want, rtol=1e-6)
    assert tensor_values(acc, "loss/probe")[0][1] == pytest.approx(0.75)


def test_custom_scalar_layout_written_exactly_once(tmp_path):
    writer = tb.DiagnosticsWriter(tmp_path, depth_profile=False)
    writer.write(make_report(0))
    writer.write(make_report(1))
    writer.close()
    writer.write(make_report(2))  # reopened after close: a second event file
    writer.close()
    acc = event_accumulator(str(tmp_path / "initdiag"))
    events = tensor_values(acc, custom_scalar_metadata.CONFIG_SUMMARY_TAG)
    assert len(events) == 1
    layout = layout_pb2.Layout.FromString(events[0][1].item())
    (category,) = layout.category
    assert category.title == "keras_initdiag"
    charts = {chart.title: list(chart.multiline.tag) for chart in category.chart}
    for stat in STAT_NAMES:
        assert charts[stat] == [f"^{stat}/"]


def test_flag_table_is_escaped_markdown(tmp_path):
    with tb.DiagnosticsWriter(tmp_path, depth_profile=False) as writer:
        writer.write(make_report(0))
        writer.write(make_report(1, flags=False))
    acc = event_accumulator(str(tmp_path / "initdiag"))
    assert "flags" in tensor_tags(acc, "text")
    (_, first), (_, second) = tensor_values(acc, "flags")
    table = first.item().decode("utf-8")
    assert second.item().decode("utf-8") == "No flags"
    assert "<script>" not in table and "&lt;script&gt;" in table
    assert "\\|" in table and "\\*bold\\*" in table and "&amp;" in table
    assert "长" * 40 in table

    # Rendered the way TensorBoard's text plugin renders it: 5 cells a row.
    from tensorboard import plugin_util

    html = plugin_util.markdown_to_safe_html(table)
    assert html.count("<tr>") == 3
    assert html.count("<td>") == 10
    assert "<script>" not in html and "<em>" not in html and "<strong>" not in html


def test_histograms_and_depth_profile_image(tmp_path):
    histograms = {
        "weights/dense": np.linspace(-1.0, 1.0, 64),
        f"activations/{ODD}": np.ones((4, 8), np.float32),
    }
    with tb.DiagnosticsWriter(tmp_path) as writer:
        writer.write(make_report(3), histograms=histograms)
    acc = event_accumulator(str(tmp_path / "initdiag"))
    assert tensor_tags(acc, "histograms") == sorted(histograms)
    assert tensor_tags(acc, "images") == ["depth_profile"]
    ((step, image),) = tensor_values(acc, "depth_profile")
    assert step == 3
    width, height, png = image  # image summaries store [width, height, png...]
    assert int(width) > 100 and int(height) > 100 and png.startswith(b"\x89PNG")


def test_depth_profile_can_be_turned_off(tmp_path):
    with tb.DiagnosticsWriter(tmp_path, depth_profile=False) as writer:
        writer.write(make_report(0))
    acc = event_accumulator(str(tmp_path / "initdiag"))
    assert tensor_tags(acc, "images") == []


def test_without_matplotlib_scalars_still_written_and_one_message(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    monkeypatch.setattr(tb.writer, "_missing_matplotlib_reported", False)
    with caplog.at_level(logging.WARNING, logger="keras_initdiag"):
        for run in ("a", "b"):
            with tb.DiagnosticsWriter(tmp_path / run) as writer:
                writer.write(make_report(0))
                writer.write(make_report(1))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "keras_initdiag[plots]" in messages[0]
    acc = event_accumulator(str(tmp_path / "b" / "initdiag"))
    assert tensor_tags(acc, "images") == []
    assert set(tensor_tags(acc, "scalars")) >= set(written_scalars(make_report(0)))


def assert_same_report(got, want):
    assert got.step == want.step
    assert got.layers == want.layers
    assert got.info == want.info
    assert got.flags == want.flags
    assert got.loss == pytest.approx(want.loss, nan_ok=True)
    for layer in want.layers:
        expected = {k: v for k, v in want.stats[layer].items() if not math.isnan(v)}
        assert got.stats[layer] == pytest.approx(expected, rel=1e-6)


def test_read_reports_round_trip(tmp_path):
    reports = [make_report(5, scale=4.0), make_report(0), make_report(9, flags=False)]
    reports[2].loss = math.nan
    histograms = {"weights/dense": np.arange(6.0), f"activations/{ODD}": [2.0]}
    with tb.DiagnosticsWriter(tmp_path) as writer:  # images, histograms ignored
        for report in reports:
            writer.write(report, histograms=histograms)
    problems = []
    got = tb.read_reports(tmp_path / "initdiag", problems)
    assert problems == []
    assert [r.step for r in got] == [0, 5, 9]
    for report in got:
        assert_same_report(report, next(r for r in reports if r.step == report.step))
    assert math.isinf(got[0].flags[1].value)  # non-finite values survive JSON
    assert got[0].info[ODD].recommended == ("he",)


def test_rewritten_step_latest_wins(tmp_path):
    writer = tb.DiagnosticsWriter(tmp_path, depth_profile=False)
    writer.write(make_report(0))
    writer.close()
    time.sleep(0.01)
    writer.write(make_report(0, scale=8.0))
    writer.close()
    (report,) = tb.read_reports(tmp_path / "initdiag", [])
    assert report.stats["dense"]["activation_variance"] == pytest.approx(8.0)


def test_truncated_and_garbage_files_are_reported_and_skipped(tmp_path):
    run_dir = tmp_path / "initdiag"
    with tb.DiagnosticsWriter(tmp_path, depth_profile=False) as writer:
        writer.write(make_report(0))
        writer.write(make_report(7))
    (path,) = [run_dir / name for name in os.listdir(run_dir)]
    data = path.read_bytes()
    path.unlink()
    truncated = run_dir / "events.out.tfevents.1.host.truncated"
    truncated.write_bytes(data[:-5])  # the last record (step 7) is cut short
    garbage = run_dir / "events.out.tfevents.2.host.garbage"
    garbage.write_bytes(bytes(range(256)) * 3)

    problems = []
    reports = tb.read_reports(run_dir, problems)
    assert [r.step for r in reports] == [0, 7]  # records before the cut are kept
    by_path = dict(problems)
    assert set(by_path) == {str(truncated), str(garbage)}
    assert "truncated" in by_path[str(truncated)]
    assert "corrupt" in by_path[str(garbage)]


def test_report_cut_inside_its_statistics_is_skipped(tmp_path, caplog):
    run_dir = tmp_path / "initdiag"
    with tb.DiagnosticsWriter(tmp_path, depth_profile=False) as writer:
        writer.write(make_report(0))
        writer.write(make_report(7))
    (path,) = [str(run_dir / name) for name in os.listdir(run_dir)]
    ends = record_ends(path)
    # The statistics of one diagnosis travel in one record; cut the file in
    # the middle of step 7's, after its report JSON.
    scalar_ends = [
        end
        for end, event in ends
        if event.step == 7 and event.summary.value[0].tag.startswith("activation_")
    ]
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: scalar_ends[0] - 20])

    with caplog.at_level(logging.WARNING, logger="keras_initdiag"):
        reports = tb.read_reports(run_dir)  # problems=None: logged
    assert [r.step for r in reports] == [0]
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "step 7" in messages and "0 of" in messages and "statistics" in messages
    assert "truncated" in messages


def test_reader_rejects_a_missing_directory(tmp_path):
    with pytest.raises(ValueError, match="run_dir="):
        tb.read_reports(tmp_path / "nope")
    with pytest.raises(ValueError, match="logdir="):
        tb.find_runs(tmp_path / "nope")


def test_find_runs_finds_only_our_runs(tmp_path):
    import tensorflow as tf

    for run in ("relu_he", "deep/tanh_small"):
        with tb.DiagnosticsWriter(tmp_path / run, depth_profile=False) as writer:
            writer.write(make_report(0))
    other = tf.summary.create_file_writer(str(tmp_path / "relu_he" / "train"))
    with other.as_default(step=0):
        tf.summary.scalar("epoch_loss", 1.0)
    other.close()
    (tmp_path / "empty").mkdir()
    assert tb.find_runs(tmp_path) == [
        str(tmp_path / "deep" / "tanh_small" / "initdiag"),
        str(tmp_path / "relu_he" / "initdiag"),
    ]


@pytest.mark.slow
def test_tensorboard_server_serves_our_tags(tmp_path):
    logdir = tmp_path / "logs"
    with tb.DiagnosticsWriter(logdir, depth_profile=False) as writer:
        writer.write(make_report(0))
        writer.write(make_report(4))
    deadline = time.monotonic() + 40
    with TensorBoardServer(str(logdir), str(tmp_path / "tb.log")) as url:
        tags = poll_json(
            f"{url}/data/plugin/scalars/tags",
            lambda body: "activation_variance/dense" in body.get("initdiag", {}),
            deadline,
        )
        assert tags is not None, (tmp_path / "tb.log").read_text()
        assert set(tags["initdiag"]) == set(written_scalars(make_report(0))) | {
            "loss/probe"
        }
        layout = poll_json(
            f"{url}/data/plugin/custom_scalars/layout",
            lambda body: bool(body.get("category")),
            deadline,
        )
        assert layout["category"][0]["title"] == "keras_initdiag"
        query = urllib.parse.urlencode(
            {"run": "initdiag", "tag": f"dead_fraction/{ODD}"}
        )
        points = poll_json(f"{url}/data/plugin/scalars/scalars?{query}", bool, deadline)
        assert [(p[1], p[2]) for p in points] == [(0, 1.0), (4, 1.0)]


def test_repeated_writes_read_back_exactly(tmp_path):
    # Scalars are written as one Summary protobuf per diagnosis; the records
    # must read back like tf.summary.scalar's, across a close and reopen.
    writer = tb.DiagnosticsWriter(str(tmp_path), depth_profile=False)
    reports = [make_report(step=s, scale=1.0 + s) for s in range(5)]
    for i, report in enumerate(reports):
        writer.write(report)
        if i == 2:
            writer.close()  # a later fit reopens the writer
    writer.close()
    back = tb.read_reports(str(tmp_path / "initdiag"))
    assert [r.step for r in back] == [0, 1, 2, 3, 4]
    for original, restored in zip(reports, back):
        for layer in original.layers:
            for stat, value in original.stats[layer].items():
                if math.isnan(value):
                    assert stat not in restored.stats[layer]
                else:
                    assert restored.stats[layer][stat] == pytest.approx(value, rel=1e-6)
