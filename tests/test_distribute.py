"""Distribution and compiled multi-step execution.

`tf.distribute.MirroredStrategy` needs its logical devices configured before
TensorFlow initializes, so it runs in a fresh Python process. The schedule
with `steps_per_execution > 1` runs in process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_initdiag
from keras_initdiag.tensorboard import read_reports

RNG = np.random.default_rng(0)
X = RNG.standard_normal((64, 6)).astype("float32")
Y = RNG.standard_normal((64, 2)).astype("float32")

MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras
    import keras_initdiag
    from keras_initdiag.tensorboard import read_reports

    log_dir = sys.argv[1]
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6)).astype("float32")
    y = rng.standard_normal((64, 2)).astype("float32")

    def build():
        return keras.Sequential(
            [keras.Input((6,))]
            + [
                keras.layers.Dense(
                    16, activation="relu", kernel_initializer="he_normal",
                    name=f"hidden_{i}",
                )
                for i in range(3)
            ]
            + [keras.layers.Dense(2, name="head")]
        )

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = build()
        model.compile("sgd", "mse")
    initial = model.get_weights()
    callback = keras_initdiag.InitDiagnostics(
        log_dir=log_dir,
        probe_data=(x[:32], y[:32]),
        update_freq=2,
        verbose=0,
        batch_gradients=True,
    )
    optimizer = model.optimizer
    model.fit(
        x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback], shuffle=False
    )

    single = build()
    single.set_weights(initial)
    single.compile("sgd", "mse")
    expected = keras_initdiag.diagnose(single, x[:32], y[:32])
    twin = keras_initdiag.InitDiagnostics(
        log_dir=None, probe_data=(x[:32], y[:32]), verbose=0, batch_gradients=True
    )
    single.fit(
        x, y, batch_size=16, epochs=1, verbose=0, callbacks=[twin], shuffle=False
    )
    run_dir = os.path.join(log_dir, "initdiag")
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "steps": [r.step for r in callback.reports],
        "first": callback.reports[0].stats,
        "expected": expected.stats,
        "read_steps": [r.step for r in read_reports(run_dir)],
        "event_files": sorted(os.listdir(run_dir)),
        "norms": callback.batch_gradient_norms,
        "single_norms": twin.batch_gradient_norms,
        "stats": callback.step_statistics,
        "single_stats": twin.step_statistics,
        "optimizer_restored": model.optimizer is optimizer,
    }))
    """
)


def _run_script(script: str, *args: str, timeout: int = 300) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_mirrored_strategy_two_cpus(tmp_path):
    out = _run_script(MIRRORED_SCRIPT, str(tmp_path))
    assert out["replicas"] == 2
    assert out["steps"] == [0, 2, 3, 4]  # 3: after the first updates
    # Written once per diagnosis, one event file, every step readable.
    assert out["read_steps"] == [0, 2, 3, 4]
    assert len([f for f in out["event_files"] if "tfevents" in f]) == 1
    # Per-step gradient norms: of the gradient summed over the replicas, the
    # one applied, so equal to the single-device run's; the model keeps its
    # own optimizer.
    assert out["optimizer_restored"]
    assert [s for s, _ in out["norms"]] == [1, 2, 3, 4]
    for (_, mirrored), (_, single) in zip(out["norms"], out["single_norms"]):
        for layer, value in single.items():
            assert mirrored[layer] == pytest.approx(value, rel=1e-4), layer
    # The other in-step statistics too: weight norms, relative updates,
    # update norms, rate, and the loss of the whole batch (each replica's
    # tracker holds its half).
    for name in ("weight_norm", "update_ratio", "update_norm", "learning_rate", "loss"):
        mirrored, single = out["stats"][name], out["single_stats"][name]
        assert [s for s, _ in mirrored] == [s for s, _ in single] == [1, 2, 3, 4]
        for (_, got), (_, want) in zip(mirrored, single):
            for layer, value in want.items():
                assert got[layer] == pytest.approx(value, rel=1e-4), (name, layer)
    # Step 0 under the strategy equals the single-device diagnosis.
    for layer, stats in out["expected"].items():
        got = out["first"][layer]
        for name, value in stats.items():
            if value is None or (isinstance(value, float) and np.isnan(value)):
                assert got[name] is None or np.isnan(got[name]), (layer, name)
            else:
                assert got[name] == pytest.approx(value, rel=1e-4, abs=1e-7), (
                    layer,
                    name,
                )


@pytest.mark.parametrize("steps_per_execution, update_freq", [(2, 4), (4, 4)])
def test_steps_per_execution_schedule(tmp_path, steps_per_execution, update_freq):
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, kernel_initializer="he_normal")]
        + [keras.layers.Dense(2)]
    )
    model.compile("sgd", "mse", steps_per_execution=steps_per_execution)
    callback = keras_initdiag.InitDiagnostics(
        log_dir=str(tmp_path),
        probe_data=(X[:16], Y[:16]),
        update_freq=update_freq,
        verbose=0,
    )
    # 8 batches per epoch, 2 epochs: global steps 1..16.
    model.fit(X, Y, batch_size=8, epochs=2, verbose=0, callbacks=[callback])
    # The first updates are measured at 3 batch ends: step 3 x steps_per_execution.
    expected = sorted({*range(0, 17, update_freq), 3 * steps_per_execution})
    assert [r.step for r in callback.reports] == expected
    assert [r.step for r in read_reports(tmp_path / "initdiag")] == expected
