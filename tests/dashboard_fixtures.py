"""Session fixtures of the dashboard tests: one log dir, one TensorBoard.

The log dir holds a run written by a real `InitDiagnostics` fit, a synthetic
run with the newer contract (node kinds, nested and shared node names,
predictions, new flag kinds), a run in the older report format, a long run
(more diagnoses than TensorBoard samples by default), a run with hostile node
names and messages, a truncated run and a run without any InitDiagnostics
data, and three runs of the early verdict (a healthy verdict that clears
its pending flags, a failing one that confirms them, and pending flags still
waiting for one). One TensorBoard serves them all, to keep the tests quick.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import pytest
from dashboard_logs import (
    HOSTILE_NAMES,
    legacy_format,
    truncate_last_scalars,
    write_run,
)
from helpers import TensorBoardServer, get_json

from keras_initdiag import Flag
from keras_initdiag.diagnostics.judgement import verdict_flags
from keras_initdiag.diagnostics.report import Verdict

SYNTHETIC_LAYERS = [
    "input_x",
    "stem",
    "outer/inner",
    "outer/inner@2",
    "split#1",
    "norm",
    "add_3",
    "head",
]
SYNTHETIC_KINDS = {
    "input_x": "input",
    "norm": "norm",
    "add_3": "merge",
    "split#1": "op",
}
SYNTHETIC_INPUTS = {"add_3": ("stem", "norm")}  # a residual merge
SYNTHETIC_FLAGS = {
    0: [
        Flag("identical_kernels", "outer/inner@2", 0, 1.0, 0.5, "shared initializer"),
        Flag("initial_loss", "head", 0, 9.0, 2.0, "loss far above log(classes)"),
    ],
    20: [Flag("vanishing", "add_3", 20, 1e-4, 1e-3, "signal vanishes")],
}


LONG_STEPS = 1050  # > the 1000 scalars, > 100 (Rust) and 10 (Python) tensors
LONG_LAYERS = ["a", "b", "gappy"]
HOSTILE_MESSAGE = '<img src=x onerror="window.__pwned=3"> & "quotes" \u2014 ok'
OUR_RUNS = [
    "hostile/initdiag",
    "legacy/initdiag",
    "long/initdiag",
    "model/initdiag",
    "synthetic/initdiag",
    "truncated/initdiag",
    "verdict_fail/initdiag",
    "verdict_ok/initdiag",
    "verdict_wait/initdiag",
]
VERDICT_LAYERS = ["d1", "d2", "head"]
VERDICT_MODEL = "mlp"
#: Step-0 flags of the verdict runs: two held for the verdict, one not.
VERDICT_STEP0 = [
    Flag("dead", "d1", 0, 0.6, 0.5, "d1 is dead", pending=True),
    Flag("vanishing", "d2", 0, 1e-4, 1e-3, "d2 vanishes", pending=True),
    Flag("initial_loss", "head", 0, 9.0, 2.0, "loss far above log(classes)"),
]
VERDICT_OK = Verdict(
    step=32,
    start=0,
    failing=False,
    risk=0.03,
    threshold=0.67,
    features={"progress": -0.4, "log_trust": float("nan")},
    summary="Over 32 steps the training loss went from 1.1 to 0.62 (-44%).",
    cleared=("dead at d1", "vanishing at d2"),
)
VERDICT_FAIL = Verdict(
    step=32,
    start=0,
    failing=True,
    risk=0.91,
    threshold=0.67,
    features={"progress": 0.0},
    summary="Over 32 steps the training loss went from 1.1 to 1.1 (+0%).",
    confirmed=("dead at d1", "vanishing at d2"),
)


@dataclasses.dataclass
class DashboardLogs:
    """The shared log dir and what was written to it."""

    logdir: str
    model_reports: list
    model_update_ratios: dict


def fit_model_run(log_dir: str):
    """Fit a small residual net with a dead zero layer.

    Returns:
        The callback's reports and its `update_ratios` (written at the step
        of the first updates, which is not a diagnosis step).
    """
    import keras

    import keras_initdiag

    inputs = keras.Input((8,))
    h = keras.layers.Dense(16, activation="relu", name="dense_in")(inputs)
    branch = keras.layers.Dense(
        16, activation="relu", kernel_initializer="zeros", name="branch"
    )(h)
    merged = keras.layers.Add(name="residual")([h, branch])
    normed = keras.layers.BatchNormalization(name="norm")(merged)
    dead = keras.layers.Dense(
        8, activation="relu", kernel_initializer="zeros", name="dead"
    )(normed)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(dead)
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (np.arange(64) % 3).astype("int32")
    callback = keras_initdiag.InitDiagnostics(
        log_dir=log_dir,
        probe_data=(x[:32], y[:32]),
        update_freq="epoch",  # a column per epoch, however short
        on_flag="ignore",
        verbose=0,
        batch_gradients=True,  # the in-step series, one value per step
    )
    model.fit(x, y, batch_size=16, epochs=2, callbacks=[callback], verbose=0)
    return list(callback.reports), dict(callback.update_ratios)


def write_verdict_runs(logdir: str) -> None:
    """The three runs of the early verdict; the failing one with its flag."""
    for name, verdict in (("verdict_ok", VERDICT_OK), ("verdict_fail", VERDICT_FAIL)):
        write_run(
            os.path.join(logdir, name, "initdiag"),
            VERDICT_LAYERS,
            report_steps=[0, verdict.step],
            flags={0: VERDICT_STEP0, 32: verdict_flags(verdict, VERDICT_MODEL)},
            verdicts={verdict.step: verdict},
        )
    write_run(
        os.path.join(logdir, "verdict_wait", "initdiag"),
        VERDICT_LAYERS,
        report_steps=[0, 8],
        flags={0: VERDICT_STEP0},
    )


def write_other_run(run_dir: str) -> None:
    """A run with an ordinary Keras-style scalar and nothing of ours."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(run_dir)
    with writer.as_default():
        for step in range(3):
            tf.summary.scalar("epoch_loss", 1.0 / (step + 1), step=step)
    writer.close()


@pytest.fixture(scope="session")
def dashboard_logs(tmp_path_factory) -> DashboardLogs:
    logdir = str(tmp_path_factory.mktemp("dashboard") / "logs")
    reports, update_ratios = fit_model_run(os.path.join(logdir, "model"))
    write_run(
        os.path.join(logdir, "synthetic", "initdiag"),
        SYNTHETIC_LAYERS,
        report_steps=[0, 10, 20],
        kinds=SYNTHETIC_KINDS,
        flags=SYNTHETIC_FLAGS,
        predicted=True,
        inputs=SYNTHETIC_INPUTS,
    )
    with legacy_format():
        write_run(
            os.path.join(logdir, "legacy", "initdiag"),
            ["a", "b"],
            report_steps=[0, 5],
            flags={0: [Flag("dead", "a", 0, 1.0, 0.5, "legacy flag")]},
        )
    write_other_run(os.path.join(logdir, "other"))
    write_run(
        os.path.join(logdir, "long", "initdiag"),
        LONG_LAYERS,
        report_steps=range(LONG_STEPS),
        flags={
            step: [Flag("update_ratio", "b", step, 0.6, 0.5, f"flag {step}")]
            for step in range(LONG_STEPS)
        },
        gaps=("gappy",),
    )
    hostile = list(HOSTILE_NAMES)
    write_run(
        os.path.join(logdir, "hostile", "initdiag"),
        hostile,
        report_steps=[0, 1],
        kinds={hostile[1]: "norm", hostile[2]: "merge"},
        flags={0: [Flag("dead", hostile[0], 0, 1.0, 0.5, HOSTILE_MESSAGE)]},
    )
    write_verdict_runs(logdir)
    truncated = os.path.join(logdir, "truncated", "initdiag")
    write_run(truncated, ["a", "b"], report_steps=[0, 1, 2])
    truncate_last_scalars(truncated)
    return DashboardLogs(logdir, reports, update_ratios)


def wait_for_runs(base: str, ready, timeout: float = 60.0) -> dict:
    """Poll the plugin's `runs` route until `ready(body)`; return the body."""
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        try:
            body = get_json(f"{base}/data/plugin/keras_initdiag/runs")
            if ready(body):
                return body
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"TensorBoard did not load the runs in time: {body}")


def all_loaded(body) -> bool:
    """Every run of the shared log dir is listed, the long one complete."""
    runs = {run["run"]: run for run in body["runs"]}
    return (
        sorted(runs) == OUR_RUNS
        and len(runs["long/initdiag"]["steps"]) == LONG_STEPS
        and not runs["model/initdiag"]["notes"]
    )


@pytest.fixture(scope="session")
def dashboard_server(dashboard_logs, tmp_path_factory):
    """TensorBoard (Python loader) on the shared log dir; yields its base URL."""
    log = str(tmp_path_factory.mktemp("tensorboard") / "tensorboard.log")
    with TensorBoardServer(dashboard_logs.logdir, log) as base:
        wait_for_runs(base, all_loaded)
        yield base
