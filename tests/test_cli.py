"""The `keras-initdiag` command line: report, check, exit codes, bad input."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_initdiag
from keras_initdiag.cli import main

WIDTH = 16


def _mlp(init, name):
    layers = [keras.Input((8,))]
    layers += [
        keras.layers.Dense(WIDTH, "relu", kernel_initializer=init(i), name=f"d{i}")
        for i in range(4)
    ]
    layers.append(keras.layers.Dense(3, "softmax", name="out"))
    model = keras.Sequential(layers, name=name)
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def _he(i):
    return keras_initdiag.He(seed=i)


def _zeros(i):
    return "zeros"


def _data(n=64):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 8)).astype("float32"), rng.integers(0, 3, n)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """Two short runs written by InitDiagnostics: a healthy one and all-zeros."""
    root = tmp_path_factory.mktemp("logs")
    x, y = _data()
    for name, init in (("he", _he), ("zeros", _zeros)):
        keras.utils.set_random_seed(0)
        callback = keras_initdiag.InitDiagnostics(
            log_dir=str(root / name), probe_data=(x, y), on_flag="ignore", verbose=0
        )
        _mlp(init, name).fit(
            x, y, epochs=1, batch_size=32, callbacks=[callback], verbose=0
        )
    return root


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A healthy and an all-zeros model saved as .keras, and data files."""
    root = tmp_path_factory.mktemp("models")
    x, y = _data()
    _mlp(_he, "he").save(root / "he.keras")
    _mlp(_zeros, "zeros").save(root / "zeros.keras")
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", y)
    np.savez(root / "xy.npz", x=x, y=y)
    return root


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code, err):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("keras-initdiag: error:")
    assert "Traceback" not in err


# -- report -------------------------------------------------------------------


def test_report_text_shows_flags_and_first_and_last_tables(logdir, capsys):
    code, out, _ = _run(capsys, "report", logdir)
    assert code == 0
    assert "== he" in out and "== zeros" in out
    assert out.count("Diagnosis at step 0") == 2
    assert "Diagnosis at step 2" in out  # The last diagnosis (after 2 batches).
    zeros_part = out.split("== zeros")[1]
    assert "symmetry" in zeros_part
    assert "symmetry" not in out.split("== zeros")[0]


def test_report_json_parses(logdir, capsys):
    code, out, _ = _run(capsys, "report", logdir, "--format", "json")
    assert code == 0
    payload = json.loads(out)
    runs = {run["name"]: run for run in payload["runs"]}
    assert set(runs) == {
        os.path.join("he", "initdiag"),
        os.path.join("zeros", "initdiag"),
    }
    zeros = runs[os.path.join("zeros", "initdiag")]
    assert zeros["steps"] == [0, 2]
    assert {"symmetry", "dead"} <= {f["kind"] for f in zeros["flags"]}
    first = zeros["diagnoses"][0]
    assert first["step"] == 0
    assert first["layers"]["d1"]["duplicate_unit_fraction"] == 1.0
    assert payload["skipped"] == []


def test_report_csv_has_header_and_rows(logdir, capsys):
    code, out, _ = _run(capsys, "report", logdir, "--format", "csv")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "run,step,record,layer,name,value,threshold,message"
    assert any(",flag,d0,symmetry," in line for line in lines)
    assert any(",stat,d0,activation_variance," in line for line in lines)


def test_report_csv_neutralizes_formulas_but_keeps_negative_numbers(tmp_path, capsys):
    import csv

    from keras_initdiag.diagnostics.report import DiagnosticReport, Flag, LayerInfo
    from keras_initdiag.tensorboard import DiagnosticsWriter

    link, at = '=HYPERLINK("http://evil.example","x")', "@SUM(A1:A9)"
    stats = {link: {"activation_mean": -0.5}, at: {"activation_mean": -2.0}}
    flag = Flag("dead", link, 0, -1.5, 0.5, "-2+3 units are dead")
    info = {name: LayerInfo(name, class_name="Dense") for name in stats}
    report = DiagnosticReport(0, list(stats), stats, [flag], info, loss=-1.0)
    with DiagnosticsWriter(tmp_path / "+run", depth_profile=False) as writer:
        writer.write(report)
    code, out, _ = _run(capsys, "report", tmp_path, "--format", "csv")
    assert code == 0
    rows = list(csv.reader(out.splitlines()))[1:]
    texts = [row[i] for row in rows for i in (0, 3, 4, 7)]
    assert not any(cell[:1] in ("=", "+", "-", "@", "\t", "\r") for cell in texts)
    flag_row = next(row for row in rows if row[2] == "flag")
    assert flag_row[0] == "'" + os.path.join("+run", "initdiag")
    assert flag_row[3] == "'" + link
    assert flag_row[5:8] == ["-1.5", "0.5", "'-2+3 units are dead"]
    loss_row = next(row for row in rows if row[2] == "loss")
    assert loss_row[5] == "-1.0"
    stat_rows = {row[3]: row[5] for row in rows if row[2] == "stat"}
    assert stat_rows["'" + link] == "-0.5" and stat_rows["'" + at] == "-2.0"


def test_report_markdown_has_tables(logdir, capsys):
    code, out, _ = _run(capsys, "report", logdir, "--format", "markdown")
    assert code == 0
    assert "## he/initdiag" in out
    assert "| layer | activation_variance |" in out
    assert "| 0 | symmetry | d0 |" in out


@pytest.mark.parametrize(
    "kinds, expected",
    [("vanishing,exploding", 0), ("symmetry", 1), ("vanishing,dead", 1), ("any", 1)],
)
def test_report_fail_on_exit_codes(logdir, capsys, kinds, expected):
    code, _, _ = _run(capsys, "report", logdir, "--fail-on", kinds)
    assert code == expected


def test_report_fail_on_healthy_run_only_is_zero(logdir, capsys):
    code, _, _ = _run(capsys, "report", logdir / "he", "--fail-on", "any")
    assert code == 0


def test_report_unknown_kind_is_a_usage_error(logdir, capsys):
    code, _, err = _run(capsys, "report", logdir, "--fail-on", "vanishing,bogus")
    _assert_one_line_error(code, err)
    assert "bogus" in err


def test_report_skips_corrupt_and_truncated_files(logdir, tmp_path, capsys):
    copy = tmp_path / "logs"
    shutil.copytree(logdir, copy)
    (event,) = (copy / "he" / "initdiag").glob("*tfevents*")
    data = event.read_bytes()
    event.write_bytes(data[: len(data) - 50])  # Truncated in the last record.
    garbage = copy / "broken" / "initdiag"
    garbage.mkdir(parents=True)
    (garbage / "events.out.tfevents.1.host").write_bytes(b"\x00garbage" * 20)
    code, out, err = _run(capsys, "report", copy, "--format", "json")
    assert code == 0
    assert "Traceback" not in err
    payload = json.loads(out)
    skipped = {
        os.path.basename(os.path.dirname(os.path.dirname(p["path"])))
        for p in payload["skipped"]
    }
    assert skipped == {"he", "broken"}
    assert "warning: skipped" in err
    names = [run["name"] for run in payload["runs"]]
    assert os.path.join("zeros", "initdiag") in names


def test_report_reads_only_runs_with_reports_not_tensorboard_runs_beside(
    logdir, tmp_path, capsys
):
    copy = tmp_path / "logs"
    shutil.copytree(logdir, copy)
    x, y = _data()
    plain = keras.callbacks.TensorBoard(log_dir=str(copy / "plain"))
    _mlp(_he, "plain").fit(x, y, epochs=8, callbacks=[plain], verbose=0)
    (event,) = (copy / "plain" / "train").glob("*tfevents*")
    # A large foreign run ends, here, in bytes no loader can read: reading it
    # to its end would report it as corrupt.
    with open(event, "ab") as f:
        f.write(b"\x00garbage" * 1000)
    code, out, err = _run(capsys, "report", copy, "--format", "json")
    assert code == 0
    payload = json.loads(out)
    assert payload["skipped"] == [] and "warning" not in err
    assert sorted(run["name"] for run in payload["runs"]) == [
        os.path.join("he", "initdiag"),
        os.path.join("zeros", "initdiag"),
    ]


def test_report_reads_a_log_dir_on_another_file_system(capsys):
    from keras_initdiag.diagnostics.report import DiagnosticReport, LayerInfo
    from keras_initdiag.tensorboard import DiagnosticsWriter

    root = "ram://report_cli_logs"  # TensorFlow's in-memory file system.
    stats = {"d0": {"activation_variance": 2.0}}
    info = {"d0": LayerInfo("d0", class_name="Dense")}
    report = DiagnosticReport(0, ["d0"], stats, [], info, loss=1.0)
    with DiagnosticsWriter(root + "/run", depth_profile=False) as writer:
        writer.write(report)
    code, out, err = _run(capsys, "report", root, "--format", "json")
    assert code == 0, err
    (run,) = json.loads(out)["runs"]
    assert run["name"] == "run/initdiag"
    assert run["path"] == root + "/run/initdiag"
    assert run["diagnoses"][0]["layers"]["d0"]["activation_variance"] == 2.0


@pytest.mark.parametrize("what", ["missing", "empty"])
def test_report_without_runs_is_an_input_error(tmp_path, capsys, what):
    path = tmp_path / "nothing" if what == "missing" else tmp_path
    code, _, err = _run(capsys, "report", path)
    _assert_one_line_error(code, err)


# -- check --------------------------------------------------------------------


def _grad_norm(out, layer="d0"):
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("layer "))
    row = next(line for line in lines if line.startswith(f"{layer} "))
    return row.split()[header.split().index("grad_norm")]


def test_check_healthy_model_exits_zero(saved, capsys):
    code, out, _ = _run(
        capsys,
        "check",
        saved / "he.keras",
        "--data",
        saved / "x.npy",
        "--labels",
        saved / "y.npy",
        "--loss",
        "sparse_categorical_crossentropy",
    )
    assert code == 0, out
    assert "Diagnosis at step 0" in out and "No flags." in out
    assert _grad_norm(out) != "-"  # Labels given: gradient statistics measured.


def test_check_zeros_model_exits_one(saved, capsys):
    code, out, _ = _run(
        capsys, "check", saved / "zeros.keras", "--data", saved / "xy.npz"
    )
    assert code == 1
    assert "symmetry" in out
    assert _grad_norm(out, "out") != "-"  # The npz's `y` and the compiled loss.


# -- bad input ----------------------------------------------------------------


def test_bad_inputs_are_one_line_errors(saved, tmp_path, capsys):
    not_a_model = tmp_path / "fake.keras"
    not_a_model.write_text("this is not a zip file")
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((4, 5), "float32"))
    unreadable = tmp_path / "bad.npy"
    unreadable.write_bytes(b"not numpy")
    model, data = saved / "he.keras", saved / "x.npy"
    cases = {
        "unknown subcommand": ["bogus"],
        "no subcommand": [],
        "unknown option": ["report", saved, "--colour"],
        "bad format": ["report", saved, "--format", "xml"],
        "bad epochs": ["demo", "--epochs", "0"],
        "bad regime": ["demo", "--regimes", "he,magic"],
        "unwritable logdir": ["demo", "--quick", "--logdir", data],
        "missing model": ["check", tmp_path / "missing.keras", "--data", data],
        "not a model": ["check", not_a_model, "--data", data],
        "missing data": ["check", model, "--data", tmp_path / "missing.npy"],
        "pickled data": ["check", model, "--data", pickled],
        "unreadable data": ["check", model, "--data", unreadable],
        "data does not fit": ["check", model, "--data", wrong],
        "labels do not fit": ["check", model, "--data", data, "--labels", wrong],
        "unknown loss": ["check", model, "--data", data, "--loss", "nonsense_loss"],
    }
    for label, argv in cases.items():
        code, _, err = _run(capsys, *argv)
        assert code == 2, label
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("keras-initdiag: error:"), (
            label,
            err,
        )


def test_debug_shows_the_traceback(saved, tmp_path, capsys):
    fake = tmp_path / "fake.keras"
    fake.write_text("not a model")
    code, _, err = _run(capsys, "--debug", "check", fake, "--data", saved / "x.npy")
    assert code == 2
    assert "Traceback" in err


def test_version_and_help(capsys):
    code, out, _ = _run(capsys, "--version")
    assert code == 0 and keras_initdiag.__version__ in out
    code, out, _ = _run(capsys, "--help")
    assert code == 0
    for word in ("demo", "report", "check", "exit codes:", "0  success", "2  usage"):
        assert word in out
    code, out, _ = _run(capsys, "report", "--help")
    assert code == 0 and "--fail-on KINDS" in out and "LOGDIR" in out


def test_python_dash_m_runs_the_cli(logdir):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_initdiag",
            "report",
            str(logdir),
            "--fail-on",
            "symmetry",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert process.returncode == 1, process.stderr
    assert "== zeros" in process.stdout


@pytest.mark.parametrize("how", ["command", "python -m"])
def test_errors_are_one_line_without_tensorflow_start_up_notes(tmp_path, how):
    # No TF_CPP_MIN_LOG_LEVEL from the caller: the command quiets it itself.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if how == "command":
        command = [os.path.join(os.path.dirname(sys.executable), "keras-initdiag")]
    else:
        command = [sys.executable, "-m", "keras_initdiag"]
    process = subprocess.run(
        command + ["report", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert process.returncode == 2
    assert process.stderr.splitlines() == [
        f"keras-initdiag: error: log directory not found: {tmp_path / 'missing'}"
    ]
    # --debug keeps TensorFlow's own notes (and tracebacks).
    debug = subprocess.run(
        command + ["--debug", "report", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert debug.returncode == 2 and len(debug.stderr.splitlines()) > 1


def _deep(name, initializer, depth=32, width=16):
    model = keras.Sequential(
        [keras.Input((8,))]
        + [
            keras.layers.Dense(width, activation="relu", kernel_initializer=initializer)
            for _ in range(depth)
        ]
        + [keras.layers.Dense(3)],
        name=name,
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def test_check_without_data_prints_the_prediction(saved, capsys):
    code, out, _ = _run(capsys, "check", saved / "he.keras")
    assert code == 0
    assert "Predicted from the architecture" in out
    assert "pred_var" in out and "pred_spread" in out and "No flags." in out


@pytest.mark.parametrize(
    "initializer, kind",
    [
        ("glorot_normal", "vanishing"),
        ("he_normal", "finite_width"),
        ("zeros", "symmetry"),
    ],
)
def test_check_without_data_flags_predicted_problems(
    tmp_path, capsys, initializer, kind
):
    path = tmp_path / "deep.keras"
    _deep("deep", initializer).save(path)
    code, out, _ = _run(capsys, "check", path)
    assert code == 1
    assert f"[{kind}]" in out


@pytest.mark.parametrize(
    ("run", "kinds", "code"),
    [
        # A pending flag fails the gate only once the verdict confirmed it.
        ("verdict_ok", "dead,vanishing", 0),
        ("verdict_fail", "dead,vanishing", 1),
        ("verdict_wait", "dead,vanishing", 0),
        # A flag that did not wait counts at once; a failing verdict too.
        ("verdict_ok", "initial_loss", 1),
        ("verdict_ok", "verdict", 0),
        ("verdict_fail", "verdict", 1),
    ],
)
def test_fail_on_follows_the_early_verdict(tmp_path, capsys, run, kinds, code):
    from dashboard_fixtures import write_verdict_runs

    write_verdict_runs(str(tmp_path))
    got, out, _ = _run(capsys, "report", tmp_path / run, "--fail-on", kinds)
    assert got == code
    if run != "verdict_wait":
        assert "Early verdict at step 32" in out


def test_report_formats_carry_the_verdict(tmp_path, capsys):
    from dashboard_fixtures import write_verdict_runs

    write_verdict_runs(str(tmp_path))
    _, out, _ = _run(capsys, "report", tmp_path / "verdict_fail", "--format", "json")
    [run] = json.loads(out)["runs"]
    [verdict] = run["verdicts"]
    assert verdict["failing"] and verdict["risk"] == 0.91
    assert verdict["confirmed"] == ["dead at d1", "vanishing at d2"]
    assert sorted(f["pending"] for f in run["flags"]) == [False, False, True, True]
    _, out, _ = _run(capsys, "report", tmp_path / "verdict_ok", "--format", "csv")
    import csv

    rows = list(csv.reader(out.splitlines()))
    [verdict_row] = [r for r in rows if r[2] == "verdict"]
    assert verdict_row[4:6] == ["training", "0.03"]
    assert any(r[4] == "dead (pending)" for r in rows if r[2] == "flag")
    _, out, _ = _run(capsys, "report", tmp_path / "verdict_ok", "--format", "markdown")
    assert "| dead" in out and "pending" in out.split("| dead", 1)[1].split("|")[0]
    assert "Early verdict at step 32: training" in out
