"""`tf.distribute.MultiWorkerMirroredStrategy`: two worker processes on loopback.

Keras 3.15's `model.fit` does not run under MultiWorkerMirroredStrategy at all
(keras-team/keras#20585), with or without this callback; on TF 2.21 each
worker fails in the first train step with

    ValueError: Attempt to convert a value (PerReplica:{
      0: <tf.Tensor: shape=(8, 6), dtype=float32, numpy=...>
    }) with an unsupported type
    (<class 'tensorflow.python.distribute.values.PerReplica'>) to a Tensor.

So each worker drives `InitDiagnostics` through its public callback hooks in
a custom training loop, in the order `fit` calls them, around a distributed
train step (`strategy.run`, `tf.GradientTape`, `optimizer.apply_gradients`
inside a `tf.function`). Each worker logs to its own directory, so the test
can check that only the chief (worker 0) writes events, once per diagnosis,
and that its step-0 statistics equal a single-process `diagnose`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from helpers import free_port

from keras_initdiag.tensorboard import ReadProblem, find_runs, read_reports

EPOCHS, BATCHES, UPDATE_FREQ = 2, 3, 2
TIMEOUT = 120

WORKER_SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    import numpy as np
    import tensorflow as tf
    import keras
    import keras_initdiag

    log_dir, out_path = sys.argv[1], sys.argv[2]
    epochs, batches, update_freq = (int(a) for a in sys.argv[3:6])
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    global_batch = 16

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((global_batch * batches, 6)).astype("float32")
    y = rng.standard_normal((global_batch * batches, 2)).astype("float32")
    probe = (x[:32], y[:32])

    def build():
        return keras.Sequential(
            [
                keras.Input((6,)),
                keras.layers.Dense(
                    16, activation="relu", kernel_initializer="he_normal",
                    name="hidden",
                ),
                keras.layers.Dense(8, activation="tanh", name="hidden_2"),
                keras.layers.Dense(2, name="head"),
            ]
        )

    with strategy.scope():
        model = build()
        model.compile(keras.optimizers.SGD(0.01), "mse")
    initial = model.get_weights()

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .batch(global_batch)
        .with_options(options)
    )
    dist_dataset = strategy.experimental_distribute_dataset(dataset)

    def replica_step(xb, yb):
        with tf.GradientTape() as tape:
            pred = model(xb, training=True)
            per_example = tf.reduce_mean(tf.square(pred - yb), axis=-1)
            loss = tf.nn.compute_average_loss(
                per_example, global_batch_size=global_batch
            )
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def train_step(batch):
        losses = strategy.run(replica_step, args=batch)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    callback = keras_initdiag.InitDiagnostics(
        log_dir=log_dir, probe_data=probe, update_freq=update_freq, verbose=0
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callback.set_model(model)
        callback.on_train_begin()
        for epoch in range(epochs):
            callback.on_epoch_begin(epoch)
            for b, batch in enumerate(dist_dataset):
                callback.on_train_batch_begin(b)
                loss = float(train_step(batch))
                callback.on_train_batch_end(b, {"loss": loss})
            callback.on_epoch_end(epoch, {"loss": loss})
        callback.on_train_end()

    out = {
        "task": json.loads(__import__("os").environ["TF_CONFIG"])["task"]["index"],
        "replicas": strategy.num_replicas_in_sync,
        "iterations": int(model.optimizer.iterations.numpy()),
        "steps": [r.step for r in callback.reports],
        "first": callback.reports[0].stats if callback.reports else None,
        "warnings": [str(w.message) for w in caught],
        "final_weights": [w.tolist() for w in model.get_weights()],
    }
    if strategy.extended.should_checkpoint:
        single = build()
        single.set_weights(initial)
        single.compile(keras.optimizers.SGD(0.01), "mse")
        out["expected"] = keras_initdiag.diagnose(single, *probe).stats
    with open(out_path, "w") as f:
        json.dump(out, f)
    """
)


def _event_files(directory) -> list[str]:
    return sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(directory)
        for name in names
        if "tfevents" in name
    )


def _assert_close(got: float | None, want: float | None, where) -> None:
    if want is None or np.isnan(want):
        assert got is None or np.isnan(got), where
    else:
        assert got == pytest.approx(want, rel=1e-5, abs=1e-7), where


@pytest.mark.slow
def test_multi_worker_mirrored_two_workers(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    ports = [free_port(), free_port()]
    while ports[1] == ports[0]:
        ports[1] = free_port()
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes, logs = [], []
    try:
        for index in range(2):
            env = {
                **os.environ,
                "TF_CONFIG": json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": index}}
                ),
                "TF_CPP_MIN_LOG_LEVEL": "3",
                "CUDA_VISIBLE_DEVICES": "",
                "PYTHONWARNINGS": "ignore",
            }
            log = open(tmp_path / f"worker_{index}.log", "wb")  # noqa: SIM115
            logs.append(log)
            command = [
                sys.executable,
                str(script),
                str(tmp_path / f"logs_{index}"),
                str(tmp_path / f"out_{index}.json"),
                str(EPOCHS),
                str(BATCHES),
                str(UPDATE_FREQ),
            ]
            processes.append(
                subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            )
        deadline = time.monotonic() + TIMEOUT
        for process in processes:
            process.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        for log in logs:
            log.close()

    for index, process in enumerate(processes):
        output = (tmp_path / f"worker_{index}.log").read_text(errors="replace")
        assert process.returncode == 0, f"worker {index}:\n{output[-4000:]}"
    chief, other = (
        json.loads((tmp_path / f"out_{i}.json").read_text()) for i in range(2)
    )

    # Training completed in sync on both workers.
    total = EPOCHS * BATCHES
    # Plus step 3: the diagnosis after the first updates, with their ratios.
    expected_steps = sorted({*range(0, total + 1, UPDATE_FREQ), 3})
    for out in (chief, other):
        assert out["replicas"] == 2
        assert out["iterations"] == total
        assert out["steps"] == expected_steps
        assert not [w for w in out["warnings"] if "failed" in w], out["warnings"]
    for a, b in zip(chief["final_weights"], other["final_weights"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)

    # Only the chief writes: one run, one event file, every step once.
    chief_dir = tmp_path / "logs_0"
    run_dir = chief_dir / "initdiag"
    assert find_runs(chief_dir) == [str(run_dir)]
    assert len(_event_files(chief_dir)) == 1
    problems: list[ReadProblem] = []
    reports = read_reports(run_dir, problems)
    assert problems == []
    assert [r.step for r in reports] == expected_steps
    assert _event_files(tmp_path / "logs_1") == []

    # Step 0 under the strategy equals the single-process diagnosis, both as
    # computed and as read back from the events.
    assert set(chief["first"]) == set(chief["expected"])
    for layer, stats in chief["expected"].items():
        for name, value in stats.items():
            _assert_close(chief["first"][layer][name], value, (layer, name))
            if value is not None and not np.isnan(value):
                _assert_close(
                    reports[0].stats[layer][name], value, ("events", layer, name)
                )
