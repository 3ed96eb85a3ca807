"""The dashboard plugin inside a real `tensorboard --logdir` on 127.0.0.1.

The data routes are compared with what was written: the reports of a real
`InitDiagnostics` fit and a synthetic run with the newer contract.
"""

import base64
import http.client
import json
import math
import os
import types
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from dashboard_fixtures import (
    LONG_LAYERS,
    LONG_STEPS,
    OUR_RUNS,
    SYNTHETIC_FLAGS,
    SYNTHETIC_KINDS,
    SYNTHETIC_LAYERS,
    VERDICT_FAIL,
    VERDICT_MODEL,
    VERDICT_OK,
    VERDICT_STEP0,
)
from dashboard_logs import HOSTILE_NAMES
from helpers import get_json

from keras_initdiag.diagnostics.report import STAT_NAMES
from tensorboard_plugin_initdiag import metadata, plugin
from tensorboard_plugin_initdiag.records import parse_reports

PREFIX = "/data/plugin/keras_initdiag"


def route(base, name, **params):
    query = urllib.parse.urlencode(params)
    return get_json(f"{base}{PREFIX}/{name}" + (f"?{query}" if query else ""))


def error(base, name, **params):
    """(HTTP status, body) of a request that must fail."""
    query = urllib.parse.urlencode(params)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{base}{PREFIX}/{name}?{query}", timeout=5)
    return info.value.code, info.value.read().decode("utf-8")


def heatmap(base, run, stat, **params):
    body = route(base, "heatmap", run=run, stat=stat, **params)
    values = np.frombuffer(base64.b64decode(body["values"]), dtype="<f4")
    return body, values.reshape(len(body["rows"]), len(body["steps"]))


def runs_by_name(base):
    return {run["run"]: run for run in route(base, "runs")["runs"]}


def test_plugin_is_listed_as_an_iframe_dashboard(dashboard_server):
    listing = get_json(f"{dashboard_server}/data/plugins_listing")
    entry = listing["keras_initdiag"]
    assert entry["enabled"] is True
    assert entry["tab_name"] == "initdiag"
    assert entry["loading_mechanism"] == {
        "type": "IFRAME",
        "module_path": f"{PREFIX}/static/index.js",
    }


def test_runs_lists_our_runs_with_layer_order_kinds_and_notes(
    dashboard_server, dashboard_logs
):
    body = route(dashboard_server, "runs")
    assert body["other_runs"] == ["other"]
    assert body["samples"] == {"reports": None, "scalars": 1000}
    runs = {run["run"]: run for run in body["runs"]}
    assert sorted(runs) == OUR_RUNS

    model = runs["model/initdiag"]
    last = dashboard_logs.model_reports[-1]
    assert model["layers"] == last.layers
    assert model["steps"] == [r.step for r in dashboard_logs.model_reports]
    kinds = {facts["name"]: facts["kind"] for facts in model["info"]}
    assert kinds["residual"] == "merge" and kinds["norm"] == "norm"
    assert kinds["dense_in"] == "layer"
    assert model["stats"][0] == "activation_variance"
    assert model["notes"] == []

    synthetic = runs["synthetic/initdiag"]
    assert synthetic["layers"] == SYNTHETIC_LAYERS
    kinds = {facts["name"]: facts["kind"] for facts in synthetic["info"]}
    assert {n: kinds[n] for n in SYNTHETIC_KINDS} == SYNTHETIC_KINDS
    assert synthetic["info"][1]["inputs"] == ["input_x"]
    merge = synthetic["info"][SYNTHETIC_LAYERS.index("add_3")]
    assert merge["inputs"] == ["stem", "norm"]
    assert {"predicted_activation_variance", "predicted_log_spread"} <= set(
        synthetic["stats"]
    )
    assert "loss" not in synthetic["stats"]

    (note,) = runs["legacy/initdiag"]["notes"]
    assert "older keras_initdiag" in note and "keras-initdiag report" in note


def test_heatmap_returns_every_number_the_callback_wrote(
    dashboard_server, dashboard_logs
):
    reports = dashboard_logs.model_reports
    run = runs_by_name(dashboard_server)["model/initdiag"]
    compared = 0
    assert "update_ratio" in run["stats"]
    for stat in run["stats"]:
        body, values = heatmap(dashboard_server, "model/initdiag", stat)
        if stat.startswith("update_ratio"):
            continue  # Only in the first updates' report; compared below.
        if stat.startswith("train_"):
            # The in-step series: a column for every one of the 8 steps
            # (their values against the callback's: test_train_gradients).
            assert body["steps"] == list(range(1, 9)), (stat, body["steps"])
            continue
        assert body["rows"] == [n for n in reports[-1].layers if n in body["rows"]]
        assert body["sampled"] is False and body["cap"] == 1000
        for report in reports:
            if report.step not in body["steps"]:
                # A step where the statistic was not measured at all (the
                # searches of a full diagnosis): no column.
                assert all(math.isnan(v) for v in report.stat(stat)), (stat, report)
                continue
            column = body["steps"].index(report.step)
            for layer in report.layers:
                expected = report.stats[layer].get(stat, math.nan)
                if layer not in body["rows"]:
                    assert math.isnan(expected), (stat, layer)
                    continue
                got = values[body["rows"].index(layer), column]
                if math.isnan(expected):
                    assert np.isnan(got), (stat, layer, report.step)
                else:
                    assert got == np.float32(expected), (stat, layer, report.step)
                    compared += 1
    assert set(run["stats"]) <= set(STAT_NAMES) | set(metadata.TRAIN_SERIES_TAGS)
    assert compared > 100
    body, _ = heatmap(dashboard_server, "model/initdiag", "activation_variance")
    # Step 3: the diagnosis after the first updates, with their ratios.
    assert body["steps"] == [0, 3, 4, 8]


def test_heatmap_update_ratio_is_what_the_callback_measured(
    dashboard_server, dashboard_logs
):
    ratios = dashboard_logs.model_update_ratios
    assert ratios, "the fit measured no update ratios"
    body, values = heatmap(dashboard_server, "model/initdiag", "update_ratio")
    (step,) = body["steps"]
    (report,) = [r for r in dashboard_logs.model_reports if r.step == step]
    assert report.stat("update_ratio") == [
        ratios.get(layer, math.nan) for layer in report.layers
    ] or all(
        (math.isnan(a) and math.isnan(b)) or a == b
        for a, b in zip(
            report.stat("update_ratio"),
            [ratios.get(layer, math.nan) for layer in report.layers],
        )
    )
    written = {layer: r for layer, r in ratios.items() if not math.isnan(r)}
    assert written and len(written) < len(ratios)  # Zero kernels: NaN, unwritten.
    assert sorted(body["rows"]) == sorted(written)
    for layer, ratio in written.items():
        got = values[body["rows"].index(layer), 0]
        assert got == np.float32(ratio), layer


def test_heatmap_points_keeps_evenly_spaced_columns(dashboard_server):
    whole, full = heatmap(dashboard_server, "long/initdiag", "activation_variance")
    body, values = heatmap(
        dashboard_server, "long/initdiag", "activation_variance", points=11
    )
    columns = len(whole["steps"])
    assert body["columns"] == columns and len(body["steps"]) == 11
    index = np.linspace(0, columns - 1, 11).round().astype(int)
    assert body["steps"] == [whole["steps"][i] for i in index]
    assert body["steps"][0] == 0 and body["steps"][-1] == LONG_STEPS - 1
    np.testing.assert_array_equal(values, full[:, index])


def test_profile_is_a_column_of_the_matrices(dashboard_server, dashboard_logs):
    first, _, second = dashboard_logs.model_reports[:3]
    body = route(dashboard_server, "profile", run="model/initdiag", step=0)
    assert body["step"] == 0
    assert body["layers"] == first.layers
    series = body["series"]["activation_variance"]
    assert series["step"] == 0
    np.testing.assert_array_equal(
        np.array(series["values"], dtype=np.float32),
        np.array(first.stat("activation_variance"), dtype=np.float32),
    )
    body = route(dashboard_server, "profile", run="model/initdiag", step=5)
    assert body["series"]["weight_variance"]["step"] == second.step == 4
    body = route(
        dashboard_server,
        "profile",
        run="synthetic/initdiag",
        step=10,
        stats="activation_variance,predicted_activation_variance,bogus",
    )
    assert set(body["series"]) == {
        "activation_variance",
        "predicted_activation_variance",
    }
    predicted = body["series"]["predicted_activation_variance"]["values"]
    np.testing.assert_allclose(predicted, 0.7 ** np.arange(len(predicted)), rtol=1e-6)


def test_flags_lists_every_flag_of_every_run(dashboard_server, dashboard_logs):
    flags = route(dashboard_server, "flags")["flags"]
    model = [
        (f["kind"], f["layer"], f["step"], f["message"])
        for f in flags
        if f["run"] == "model/initdiag"
    ]
    written = [
        (f.kind, f.layer, f.step, f.message)
        for report in dashboard_logs.model_reports
        for f in report.flags
    ]
    assert model == written
    assert {("dead", "dead"), ("symmetry", "dead")} <= {f[:2] for f in model}
    synthetic = [
        (f["kind"], f["layer"], f["step"])
        for f in flags
        if f["run"] == "synthetic/initdiag"
    ]
    assert synthetic == [
        (f.kind, f.layer, f.step) for step in (0, 20) for f in SYNTHETIC_FLAGS[step]
    ]
    assert [f["message"] for f in flags if f["run"] == "legacy/initdiag"] == [
        "legacy flag"
    ]


def test_runs_carry_the_latest_early_verdict_and_the_flags_still_pending(
    dashboard_server,
):
    runs = runs_by_name(dashboard_server)
    for name, written in (("verdict_ok", VERDICT_OK), ("verdict_fail", VERDICT_FAIL)):
        run = runs[f"{name}/initdiag"]
        assert run["verdict"] == {
            "step": 32,
            "start": 0,
            "failing": written.failing,
            "risk": written.risk,
            "threshold": written.threshold,
            "features": {
                k: (None if math.isnan(v) else v) for k, v in written.features.items()
            },
            "summary": written.summary,
            "confirmed": list(written.confirmed),
            "cleared": list(written.cleared),
        }
        assert run["num_pending"] == 0 and run["notes"] == []
    waiting = runs["verdict_wait/initdiag"]
    assert waiting["verdict"] is None and waiting["num_pending"] == 2
    # Logs without the early verdict: no verdict, nothing pending.
    for name in ("model/initdiag", "synthetic/initdiag", "legacy/initdiag"):
        assert runs[name]["verdict"] is None and runs[name]["num_pending"] == 0


def test_flags_say_pending_and_how_the_verdict_resolved_them(dashboard_server):
    flags = route(dashboard_server, "flags")["flags"]

    def of(run):
        return [
            (f["kind"], f["layer"], f["step"], f["pending"], f["resolved"])
            for f in flags
            if f["run"] == f"{run}/initdiag"
        ]

    step0 = [(f.kind, f.layer, f.step, f.pending) for f in VERDICT_STEP0]
    assert of("verdict_ok") == [(*f, "cleared" if f[3] else None) for f in step0]
    assert of("verdict_fail") == [
        *((*f, "confirmed" if f[3] else None) for f in step0),
        ("verdict", VERDICT_MODEL, 32, False, None),
    ]
    assert of("verdict_wait") == [(*f, None) for f in step0]
    assert all(
        f["pending"] is False and f["resolved"] is None
        for f in flags
        if not f["run"].startswith("verdict_")
    )


def test_text_tab_shows_only_the_flag_tables(dashboard_server):
    tags = get_json(f"{dashboard_server}/data/plugin/text/tags")
    assert tags["model/initdiag"] == ["flags"]
    assert tags["synthetic/initdiag"] == ["flags"]
    # Older logs keep their text records; nothing can change what they hold.
    assert "initdiag/report_json" in tags["legacy/initdiag"]


@pytest.mark.parametrize(
    "path",
    [
        "static/../plugin.py",
        "static/..%2fplugin.py",
        "static/%2e%2e/plugin.py",
        "static/%2E%2E%2Fplugin.py",
        "static/%252e%252e%252fplugin.py",
        "static/..\\plugin.py",
        "static/" + os.path.abspath(plugin.__file__),
        "static/%2F" + urllib.parse.quote(os.path.abspath(plugin.__file__)),
        "static//etc/passwd",
        "static/",
        "static/index.js/..",
        "static/../../../../../../etc/passwd",
    ],
)
def test_static_route_serves_nothing_outside_the_static_folder(dashboard_server, path):
    host, port = urllib.parse.urlsplit(dashboard_server).netloc.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    connection.request("GET", f"{PREFIX}/{path}")  # sent byte for byte
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert response.status == 404, (path, body[:200])
    assert b"class InitDiagPlugin" not in body and b"root:" not in body


def test_static_route_serves_the_page(dashboard_server):
    with urllib.request.urlopen(
        f"{dashboard_server}{PREFIX}/static/index.js", timeout=5
    ) as response:
        assert response.headers["Content-Type"].startswith("text/javascript")
        assert b"export async function render" in response.read()


def test_bad_arguments_get_clear_errors(dashboard_server):
    code, body = error(dashboard_server, "heatmap", run="nope", stat="x")
    assert code == 404 and "No InitDiagnostics run named 'nope'" in body
    assert "model/initdiag" in body
    code, body = error(dashboard_server, "heatmap", run="model/initdiag")
    assert code == 400 and "`stat` is required" in body
    code, body = error(dashboard_server, "heatmap", run="model/initdiag", stat="bogus")
    assert code == 404 and "no statistic 'bogus'" in body
    code, body = error(
        dashboard_server, "heatmap", run="model/initdiag", stat="loss", points=0
    )
    assert code == 400 and "`points`" in body
    code, body = error(dashboard_server, "profile", run="model/initdiag", step="abc")
    assert code == 400 and "`step` must be an integer" in body
    code, body = error(dashboard_server, "profile")
    assert code == 400 and "`run` is required" in body


# --- a long run: every flag survives TensorBoard's sampling -------------------


def test_every_flag_of_a_long_run_survives_sampling(dashboard_server):
    run = runs_by_name(dashboard_server)["long/initdiag"]
    assert run["steps"] == list(range(LONG_STEPS)) and run["notes"] == []
    flags = route(dashboard_server, "flags")["flags"]
    long_flags = [f for f in flags if f["run"] == "long/initdiag"]
    assert [f["step"] for f in long_flags] == list(range(LONG_STEPS))
    assert {f["kind"] for f in long_flags} == {"update_ratio"}


def test_rows_written_at_the_same_steps_keep_the_same_sample(dashboard_server):
    body, values = heatmap(dashboard_server, "long/initdiag", "activation_variance")
    assert body["rows"] == LONG_LAYERS
    assert body["kept"][:2] == [1000, 1000] and body["sampled"] is True
    kept_a, kept_b = (~np.isnan(values[i]) for i in (0, 1))
    np.testing.assert_array_equal(kept_a, kept_b)  # same sequence, same sample
    assert body["steps"][-1] == LONG_STEPS - 1 and kept_a[-1]  # last step kept
    gappy = np.array(body["steps"])[~np.isnan(values[2])]
    assert gappy.tolist() == list(range(0, LONG_STEPS, 2))  # 525 < 1000: all kept


def test_truncated_and_hostile_runs_are_described(dashboard_server):
    runs = runs_by_name(dashboard_server)
    (note,) = runs["truncated/initdiag"]["notes"]
    assert note.startswith("The diagnosis at step 2 is incomplete: 0 of 8")
    assert "truncated" in note
    assert runs["truncated/initdiag"]["steps"] == [0, 1, 2]
    assert runs["hostile/initdiag"]["layers"] == list(HOSTILE_NAMES)
    body, values = heatmap(dashboard_server, "hostile/initdiag", "activation_variance")
    assert body["rows"] == list(HOSTILE_NAMES) and values.shape == (4, 2)


def test_a_user_cap_on_report_records_is_said():
    context = types.SimpleNamespace(
        data_provider=None, sampling_hints={"keras_initdiag": 20}
    )
    dashboard = plugin.InitDiagPlugin(context)
    reports = parse_reports([(s, 0.0, json.dumps({"layers": []})) for s in range(20)])
    entry = dashboard._describe_run("r", "keras_initdiag", reports, 20, {})
    (note,) = entry["notes"]
    assert "kept 20 report records" in note and "flags of other" in note
    assert (
        dashboard._describe_run("r", "keras_initdiag", reports, 19, {})["notes"] == []
    )
