"""The dashboard's pure parts: tags, report records, matrices, static files.

Also the report record's new format: the writer gives it the dashboard's
plugin metadata (hidden from the Text tab), and the reader still reads the
older text-summary format.
"""

import json
import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from dashboard_logs import legacy_format, make_report, write_run
from helpers import event_accumulator, tensor_tags
from tensorboard.compat.proto import summary_pb2

from keras_initdiag import Flag
from keras_initdiag.cli import main as cli_main
from keras_initdiag.diagnostics.report import STAT_NAMES
from keras_initdiag.tensorboard import (
    DiagnosticsWriter,
    events,
    find_runs,
    read_reports,
)
from tensorboard_plugin_initdiag import loader, metadata, plugin, static_files
from tensorboard_plugin_initdiag.records import (
    json_number,
    node_kind,
    parse_reports,
    parse_verdict,
)
from tensorboard_plugin_initdiag.series import build_matrix, column_at, order_nodes


@pytest.mark.parametrize(
    "tag, expected",
    [
        ("activation_variance/dense", ("activation_variance", "dense")),
        ("activation_variance/outer/inner", ("activation_variance", "outer/inner")),
        ("gradient_norm/shared@2", ("gradient_norm", "shared@2")),
        ("activation_variance/split#1", ("activation_variance", "split#1")),
        ("x/<script>'\"", ("x", "<script>'\"")),
        ("no_slash", None),
        ("/leading", None),
        ("trailing/", None),
    ],
)
def test_split_tag_splits_at_the_first_slash(tag, expected):
    assert metadata.split_tag(tag) == expected


def test_node_kind_uses_the_recorded_kind_then_the_class():
    assert node_kind({"kind": "merge", "class_name": "Dense"}) == "merge"
    assert node_kind({"kind": "something_new"}) == "something_new"
    assert node_kind({"class_name": "BatchNormalization"}) == "norm"
    assert node_kind({"class_name": "LayerNormalization"}) == "norm"
    assert node_kind({"class_name": "Add"}) == "merge"
    assert node_kind({"class_name": "Concatenate"}) == "merge"
    assert node_kind({"class_name": "InputLayer"}) == "input"
    assert node_kind({"class_name": "Dense"}) == "layer"
    # A wrapper that normalizes the kernel of the layer it wraps, not its output.
    assert node_kind({"class_name": "SpectralNormalization"}) == "layer"
    assert node_kind({}) == "layer"


def test_json_number_keeps_json_standard():
    assert json_number(1.5) == 1.5
    assert json_number(float("nan")) is None
    assert json_number(float("inf")) == "inf"
    assert json_number("-inf") == "-inf"
    assert json_number("bogus") is None
    assert json_number(None) is None


def record(step, layers, flags=(), info=None, num_scalars=0, **extra):
    payload = {
        "format": 1,
        "step": step,
        "layers": layers,
        "info": info
        or {name: {"name": name, "class_name": "Dense"} for name in layers},
        "loss": 1.0,
        "flags": list(flags),
        "num_scalars": num_scalars,
        **extra,
    }
    return json.dumps(payload)


def flag(kind, layer, step, value=1.0, message="m"):
    return {
        "kind": kind,
        "layer": layer,
        "step": step,
        "value": value,
        "threshold": 0.5,
        "message": message,
    }


def test_parse_reports_keeps_every_flag_and_the_latest_write_of_a_step():
    records = [
        (5, 2.0, record(5, ["a", "b"], [flag("dead", "b", 5)], num_scalars=4)),
        (0, 1.0, record(0, ["a", "b"], [flag("old", "a", 0)])),
        (0, 3.0, record(0, ["a", "b"], [flag("brand_new_kind", "a", 0, "inf")])),
        (7, 4.0, b"{not json"),
        (8, 5.0, json.dumps(["not", "a", "report"])),
    ]
    reports = parse_reports(records)
    assert reports.steps == [0, 5]
    assert [(f["kind"], f["step"]) for f in reports.flags] == [
        ("brand_new_kind", 0),
        ("dead", 5),
    ]
    assert reports.flags[0]["value"] == "inf"  # non-finite survives JSON
    assert reports.expected == {0: 0, 5: 4}
    assert reports.layers == ["a", "b"]
    assert len(reports.problems) == 2
    assert all("unreadable report record" in p for p in reports.problems)


def test_parse_reports_reads_new_fields_and_tolerates_missing_ones():
    info = {
        "x": {"name": "x", "kind": "input", "inputs": []},
        "add": {"name": "add", "class_name": "Add", "inputs": ["x", "y"]},
        "odd": "not a dict",
    }
    reports = parse_reports([(0, 1.0, record(0, ["x", "add", "odd"], info=info))])
    assert [reports.info[n]["kind"] for n in ["x", "add", "odd"]] == [
        "input",
        "merge",
        "layer",
    ]
    assert reports.info["add"]["inputs"] == ["x", "y"]
    assert reports.info["odd"] == {"inputs": [], "kind": "layer", "name": "odd"}
    older = json.dumps({"step": 3, "layers": ["a"]})  # no flags, info, count
    reports = parse_reports([(3, 1.0, older)])
    assert reports.steps == [3] and reports.flags == [] and reports.expected == {}


def verdict(step=32, failing=False, risk=0.03, **extra):
    return {
        "step": step,
        "start": 0,
        "failing": failing,
        "risk": risk,
        "threshold": 0.67,
        "features": {"progress": -0.4, "log_trust": "nan"},
        "summary": "trains",
        "confirmed": [],
        "cleared": [],
        **extra,
    }


def test_parse_reports_reads_pending_flags_and_old_flags_as_not_pending():
    pending = {**flag("dead", "a", 0), "pending": True}
    odd = {**flag("vanishing", "b", 0), "pending": "yes"}  # not true: not pending
    reports = parse_reports([(0, 1.0, record(0, ["a", "b"], [pending, odd]))])
    assert [(f["kind"], f["pending"]) for f in reports.flags] == [
        ("dead", True),
        ("vanishing", False),
    ]
    assert reports.verdicts == []
    assert all(f["resolved"] is None for f in reports.flags)  # no verdict yet
    older = parse_reports([(0, 1.0, record(0, ["a"], [flag("dead", "a", 0)]))])
    assert older.flags[0]["pending"] is False and older.verdicts == []


def test_a_verdict_clears_or_confirms_the_pending_flags_it_names():
    held = [
        {**flag("dead", "a", 0), "pending": True},
        {**flag("vanishing", "b", 0), "pending": True},
        flag("initial_loss", "b", 0),  # never held
    ]
    cleared = verdict(cleared=["dead at a", "vanishing at b"])
    records = [
        (0, 1.0, record(0, ["a", "b"], held)),
        (32, 2.0, record(32, ["a", "b"], verdict=cleared)),
    ]
    reports = parse_reports(records)
    assert reports.problems == []
    (got,) = reports.verdicts
    assert got == {**cleared, "features": {"progress": -0.4, "log_trust": None}}
    assert [f["resolved"] for f in reports.flags] == ["cleared", "cleared", None]

    failing = verdict(failing=True, risk="nan", confirmed=["dead at a"])
    fail_flag = flag("verdict", "model", 32)
    records[1] = (32, 2.0, record(32, ["a", "b"], [fail_flag], verdict=failing))
    reports = parse_reports(records)
    assert reports.verdicts[0]["failing"] is True
    assert reports.verdicts[0]["risk"] is None  # NaN, as json_number gives it
    # The one it did not name stays pending; the verdict's own flag is not held.
    assert [f["resolved"] for f in reports.flags] == ["confirmed", None, None, None]
    assert reports.flags[-1]["kind"] == "verdict"


def test_a_verdict_resolves_only_flags_held_before_it():
    records = [
        (0, 1.0, record(0, ["a"], [{**flag("dead", "a", 0), "pending": True}])),
        (8, 1.5, record(8, ["a"], verdict=verdict(step=8, cleared=["dead at a"]))),
        (9, 2.0, record(9, ["a"], [{**flag("dead", "a", 9), "pending": True}])),
    ]
    reports = parse_reports(records)
    assert [f["resolved"] for f in reports.flags] == ["cleared", None]


@pytest.mark.parametrize(
    "bad",
    [
        [],
        "likely to fail",
        {"step": 32},
        verdict(failing="no"),
        verdict(failing=1),
        verdict(step="32"),
        verdict(step=True),
        verdict(start=-1),
        verdict(risk="high"),
        verdict(risk=None),
        verdict(threshold=[0.5]),
        verdict(summary=None),
        verdict(features=[1.0]),
        verdict(features={"progress": "fast"}),
        verdict(cleared="dead at a"),
        verdict(confirmed=[1, 2]),
    ],
)
def test_a_malformed_verdict_is_skipped_and_said_the_record_kept(bad):
    held = {**flag("dead", "a", 0), "pending": True}
    records = [
        (0, 1.0, record(0, ["a"], [held])),
        (32, 2.0, record(32, ["a"], [flag("dead", "a", 32)], verdict=bad)),
    ]
    reports = parse_reports(records)
    assert reports.steps == [0, 32] and reports.verdicts == []
    assert [f["step"] for f in reports.flags] == [0, 32]
    assert reports.flags[0]["resolved"] is None  # still pending
    (problem,) = reports.problems
    assert problem.startswith("step 32: early verdict skipped (verdict")
    with pytest.raises(ValueError):
        parse_verdict(bad)


def test_verdicts_and_pending_flags_reach_the_runs_entry():
    context = types.SimpleNamespace(data_provider=None, sampling_hints=None)
    dashboard = plugin.InitDiagPlugin(context)
    held = [
        {**flag("dead", "a", 0), "pending": True},
        {**flag("vanishing", "a", 0), "pending": True},
    ]
    first = (0, 1.0, record(0, ["a"], held))
    waiting = parse_reports([first])
    entry = dashboard._describe_run("r", "keras_initdiag", waiting, 1, {})
    assert entry["verdict"] is None and entry["num_pending"] == 2
    late = verdict(step=40, risk=0.2)
    records = [
        first,
        (32, 2.0, record(32, ["a"], verdict=verdict(cleared=["dead at a"]))),
        (40, 3.0, record(40, ["a"], verdict=late)),
    ]
    entry = dashboard._describe_run(
        "r", "keras_initdiag", parse_reports(records), 3, {}
    )
    assert entry["verdict"]["step"] == 40 and entry["verdict"]["risk"] == 0.2
    assert entry["num_pending"] == 1  # "vanishing at a" was not named
    assert json.loads(json.dumps(entry)) == entry  # standard JSON


def test_order_nodes_forward_order_first_then_the_rest_by_name():
    assert order_nodes({"z", "b", "a", "m"}, ["m", "a", "missing"]) == [
        "m",
        "a",
        "b",
        "z",
    ]


def test_build_matrix_aligns_rows_on_the_union_of_steps_with_gaps():
    series = {
        "second": (np.array([0, 10, 20]), np.array([1.0, 2.0, 3.0])),
        "first": (np.array([0, 20]), np.array([0.5, np.inf])),
        "extra": (np.array([], np.int64), np.array([])),
    }
    matrix = build_matrix(series, ["first", "second"])
    assert matrix.rows == ["first", "second", "extra"]
    assert matrix.steps.tolist() == [0, 10, 20]
    np.testing.assert_array_equal(
        matrix.values,
        np.array(
            [[0.5, np.nan, np.inf], [1.0, 2.0, 3.0], [np.nan] * 3], dtype=np.float32
        ),
    )
    assert matrix.kept == [2, 3, 0]
    assert column_at(matrix, 0)[0] == 0
    assert column_at(matrix, 15)[0] == 10
    assert column_at(matrix, -5)[0] == 0  # before the first: the first
    used, column = column_at(matrix, 10**9)
    assert used == 20 and column.tolist()[1] == 3.0
    empty = build_matrix({}, [])
    assert column_at(empty, 0)[0] is None


def test_static_files_are_an_allowlist_of_the_static_folder():
    names = set(static_files.STATIC_FILES)
    assert {"index.js", "heatmap.js", "profile.js", "flags.js", "style.css"} <= names
    contents, content_type = static_files.static_file("index.js")
    assert b"export async function render" in contents
    assert content_type == "text/javascript"
    plugin_py = os.path.join(os.path.dirname(plugin.__file__), "plugin.py")
    for name in (
        "../plugin.py",
        "..",
        "../static/index.js",
        "./index.js",
        "static/index.js",
        plugin_py,
        "/etc/passwd",
        "index.js/",
        "index.js\x00.css",
        "INDEX.JS",
        "",
    ):
        assert static_files.static_file(name) is None, name


def test_report_metadata_names_the_plugin_and_the_tensor_class():
    md = metadata.create_report_metadata()
    assert md.plugin_data.plugin_name == metadata.PLUGIN_NAME == "keras_initdiag"
    assert md.data_class == summary_pb2.DATA_CLASS_TENSOR
    assert json.loads(md.plugin_data.content) == {"version": 1}


def test_loader_keeps_every_report_record_unless_the_user_chose():
    flags = types.SimpleNamespace(samples_per_plugin={})
    loader.InitDiagLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {"keras_initdiag": 0}
    flags = types.SimpleNamespace(samples_per_plugin={"keras_initdiag": 50})
    loader.InitDiagLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {"keras_initdiag": 50}
    context = types.SimpleNamespace(data_provider=None)
    assert loader.InitDiagLoader().load(context) is None


def test_plugin_constants_match_the_package():
    assert events.REPORT_TAG == metadata.REPORT_TAG
    assert events.LOSS_TAG == metadata.LOSS_TAG
    assert events.TRAIN_GRADIENT_TAG == metadata.TRAIN_GRADIENT_TAG
    assert events.TRAIN_SERIES_TAGS == metadata.TRAIN_SERIES_TAGS
    assert set(STAT_NAMES) | set(metadata.TRAIN_SERIES_TAGS) <= set(plugin.STAT_ORDER)


def test_the_event_contract_is_defined_only_in_the_plugins_metadata():
    import ast
    import pathlib

    import keras_initdiag

    contract = {
        metadata.REPORT_TAG,
        metadata.LOSS_TAG,
        metadata.TRAIN_GRADIENT_TAG,
    }
    package = pathlib.Path(keras_initdiag.__file__).parent
    copies = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            value = getattr(node, "value", None)
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and (
                isinstance(value, ast.Constant) and value.value in contract
            ):
                copies.append(f"{path.relative_to(package)}:{node.lineno}")
    assert copies == [], "import these tags from tensorboard_plugin_initdiag.metadata"


def test_loading_the_plugin_imports_neither_tensorflow_nor_keras():
    code = (
        "import sys, tensorboard_plugin_initdiag.plugin;"
        "print(sorted(m for m in ('tensorflow', 'keras', 'keras_initdiag')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# --- the report record's format -----------------------------------------------


def test_report_record_has_the_plugin_metadata_and_is_not_text(tmp_path):
    with DiagnosticsWriter(tmp_path, depth_profile=False) as writer:
        writer.write(make_report(0, ["a", "b"]))
        writer.write(make_report(3, ["a", "b"]))
    acc = event_accumulator(str(tmp_path / "initdiag"))
    assert tensor_tags(acc, "keras_initdiag") == ["initdiag/report_json"]
    assert tensor_tags(acc, "text") == ["flags"]
    md = acc.SummaryMetadata("initdiag/report_json")
    assert md.data_class == summary_pb2.DATA_CLASS_TENSOR
    texts = [e.tensor_proto.string_val[0] for e in acc.Tensors("initdiag/report_json")]
    assert [json.loads(t)["step"] for t in texts] == [0, 3]
    reports = read_reports(tmp_path / "initdiag")
    assert [r.step for r in reports] == [0, 3]
    assert reports[1].stats["b"]["activation_variance"] == pytest.approx(0.7 * 1.003)


def test_reader_and_cli_read_the_new_and_the_older_format(tmp_path, capsys):
    flags = {0: [Flag("dead", "a", 0, 1.0, 0.5, "m")]}
    write_run(tmp_path / "new" / "initdiag", ["a", "b"], [0, 4], flags=flags)
    with legacy_format():
        write_run(tmp_path / "old" / "initdiag", ["a", "b"], [0, 4], flags=flags)
    old_acc = event_accumulator(str(tmp_path / "old" / "initdiag"))
    assert "initdiag/report_json" in tensor_tags(old_acc, "text")
    assert find_runs(tmp_path) == [
        str(tmp_path / "new" / "initdiag"),
        str(tmp_path / "old" / "initdiag"),
    ]
    for name in ("new", "old"):
        problems = []
        reports = read_reports(tmp_path / name / "initdiag", problems)
        assert problems == []
        assert [r.step for r in reports] == [0, 4]
        assert [f.kind for f in reports[0].flags] == ["dead"]
        assert not math.isnan(reports[1].stats["a"]["activation_variance"])
    assert cli_main(["report", str(tmp_path), "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [len(run["flags"]) for run in payload["runs"]] == [1, 1]


def test_tensorboard_finds_the_plugin_through_its_entry_point():
    from importlib.metadata import entry_points

    found = entry_points(group="tensorboard_plugins")
    (entry,) = [e for e in found if e.name == metadata.PLUGIN_NAME]
    assert entry.load() is loader.InitDiagLoader


class TextOnlyProvider:
    """A data provider holding report records only in the older text format."""

    def __init__(self, runs):
        self.runs = runs

    def list_tensors(self, ctx, *, experiment_id, plugin_name, run_tag_filter=None):
        assert plugin_name == "text"
        assert set(run_tag_filter.tags) == {"initdiag/report_json"}
        return {run: {"initdiag/report_json": None} for run in self.runs}


def test_older_logs_activate_the_plugin_through_is_active():
    def make(runs):
        context = types.SimpleNamespace(
            data_provider=TextOnlyProvider(runs), sampling_hints=None
        )
        return plugin.InitDiagPlugin(context)

    assert make(["old/initdiag"]).is_active() is True
    assert make([]).is_active() is False
    assert make([]).data_plugin_names() == ("keras_initdiag",)
