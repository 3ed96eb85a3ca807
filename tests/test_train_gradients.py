"""Per-batch gradient norms from the real train step (`batch_gradients=True`)."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import event_accumulator, tensor_tags, tensor_values

import keras_initdiag
from keras_initdiag.diagnostics import step_stats
from tensorboard_plugin_initdiag import metadata


class CountingDense(keras.layers.Dense):
    """A Dense layer that counts how often its forward pass runs in training."""

    def build(self, input_shape):
        super().build(input_shape)
        self.calls = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="calls"
        )

    def call(self, inputs, training=None):
        if training:
            self.calls.assign_add(1.0)
        return super().call(inputs)


def model_and_data(first=keras.layers.Dense, dtype_policy=None):
    model = keras.Sequential(
        [keras.Input((8,)), first(16, activation="relu", name="first")]
        + [keras.layers.Dense(16, activation="relu") for _ in range(2)]
        + [keras.layers.Dense(3, name="head")]
    )
    model.compile(
        keras.optimizers.SGD(0.0),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8)).astype("float32")
    return model, x, rng.integers(0, 3, 64)


def recording_callback(probe_data, log_dir=None):
    """A quiet `InitDiagnostics` that records every batch's gradient norms."""
    return keras_initdiag.InitDiagnostics(
        log_dir=log_dir,
        probe_data=probe_data,
        batch_gradients=True,
        on_flag="ignore",
        verbose=0,
    )


def direct_norms(model, x, y):
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True))
    grads = dict(
        zip(
            [id(w) for w in model.trainable_weights],
            tape.gradient(loss, model.trainable_weights),
        )
    )
    return {
        layer.name: float(
            np.sqrt(
                sum(np.sum(grads[id(w)].numpy() ** 2) for w in layer.trainable_weights)
            )
        )
        for layer in model.layers
    }


def test_norms_equal_the_gradients_of_each_batch(tmp_path):
    model, x, y = model_and_data()
    callback = recording_callback((x[:16], y[:16]), log_dir=str(tmp_path))
    model.fit(
        x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, callbacks=[callback]
    )
    steps = [step for step, _ in callback.batch_gradient_norms]
    assert steps == list(range(1, 9))
    # The learning rate is 0, so batch k's gradient is computable directly.
    for k, (_, norms) in enumerate(callback.batch_gradient_norms[:4]):
        expected = direct_norms(
            model, x[16 * k : 16 * (k + 1)], y[16 * k : 16 * (k + 1)]
        )
        for name, value in norms.items():
            assert value == pytest.approx(expected[name], rel=1e-4)
    accumulator = event_accumulator(str(tmp_path / "initdiag"))
    tags = tensor_tags(accumulator)
    for prefix in metadata.TRAIN_SERIES_TAGS:
        assert f"{prefix}/first" in tags and f"{prefix}/head" in tags, prefix
    # Every step is in the event files, with the value the callback holds:
    # the weight norms and the losses (learning rate 0: every batch's loss
    # is the first epoch's again).
    held = callback.step_statistics
    for tag, column, name in (
        ("train_weight_norm/head", "weight_norm", "head"),
        (metadata.TRAIN_LOSS_TAG, "loss", ""),
    ):
        written = dict(
            (step, float(np.asarray(value)))
            for step, value in tensor_values(accumulator, tag)
        )
        assert sorted(written) == list(range(1, 9)), tag
        assert written == pytest.approx({s: v[name] for s, v in held[column]}, rel=1e-6)
    losses = [v[""] for _, v in held["loss"]]
    np.testing.assert_allclose(losses[4:], losses[:4], rtol=1e-6)
    assert len(set(losses[:4])) == 4


def test_no_extra_forward_pass():
    counts = []
    for batch_gradients in (False, True):
        keras.utils.set_random_seed(0)
        model, x, y = model_and_data(first=CountingDense)
        callback = keras_initdiag.InitDiagnostics(
            log_dir=None,
            probe_data=(x[:16], y[:16]),
            batch_gradients=batch_gradients,
            verbose=0,
            on_flag="ignore",
        )
        model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[callback])
        counts.append(float(model.get_layer("first").calls.numpy()))
    assert counts == [4.0, 4.0]


def test_mixed_precision_norms_are_unscaled():
    results = []
    for policy in ("float32", "mixed_float16"):
        keras.mixed_precision.set_global_policy(policy)
        try:
            keras.utils.set_random_seed(0)
            model, x, y = model_and_data()
            model.compile(keras.optimizers.SGD(0.05), model.loss)  # loss-scaled
            callback = recording_callback((x[:16], y[:16]))
            model.fit(
                x,
                y,
                epochs=1,
                batch_size=16,
                shuffle=False,
                verbose=0,
                callbacks=[callback],
            )
            stats = callback.step_statistics
            results.append(
                [
                    callback.batch_gradient_norms[0][1],
                    stats["weight_norm"][0][1],
                    stats["update_ratio"][0][1],
                    stats["update_norm"][0][1],
                    stats["loss"][0][1],
                ]
            )
        finally:
            keras.mixed_precision.set_global_policy("float32")
    # The mixed run's gradients were loss-scaled (and unscaled by the recorder).
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    for float32, mixed in zip(*results):
        assert len(float32) == len(mixed) in (1, 4)  # 1: the loss
        np.testing.assert_allclose(
            list(mixed.values()), list(float32.values()), rtol=0.05
        )


def test_bad_batch_gradients_argument():
    with pytest.raises(TypeError, match="batch_gradients='yes'"):
        keras_initdiag.InitDiagnostics(batch_gradients="yes")


def test_every_step_is_recorded_with_steps_per_execution():
    model, x, y = model_and_data()
    model.compile(
        keras.optimizers.SGD(0.0),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=3,
    )
    callback = recording_callback((x[:16], y[:16]))
    model.fit(
        x, y, epochs=2, batch_size=8, shuffle=False, verbose=0, callbacks=[callback]
    )
    assert [step for step, _ in callback.batch_gradient_norms] == list(range(1, 17))
    for k, (_, norms) in enumerate(callback.batch_gradient_norms[:8]):
        expected = direct_norms(model, x[8 * k : 8 * (k + 1)], y[8 * k : 8 * (k + 1)])
        assert norms["first"] == pytest.approx(expected["first"], rel=1e-4)


@pytest.mark.parametrize("jit", [False, True])
def test_embedding_norms_sum_repeated_rows(jit):
    """Under XLA too (`step_stats.rows_summed`)."""
    tokens = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(10, 4, name="embed")(tokens)
    h = keras.layers.GlobalAveragePooling1D()(h)
    model = keras.Model(tokens, keras.layers.Dense(3, name="head")(h))
    model.compile(
        keras.optimizers.SGD(0.0),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, size=(16, 6))  # few ids: rows repeat many times
    y = rng.integers(0, 3, 16)
    callback = recording_callback((x, y))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[callback])
    ((_, norms),) = callback.batch_gradient_norms
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True))
    table = model.get_layer("embed").embeddings
    dense = tf.convert_to_tensor(tape.gradient(loss, table))
    assert norms["embed"] == pytest.approx(float(tf.norm(dense)), rel=1e-5)


def test_the_tap_delegates_to_the_users_optimizer():
    model, x, y = model_and_data()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    optimizer = model.optimizer
    seen = {}

    class Probe(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            # Outside the step, other callbacks see the user's optimizer.
            seen["same"] = self.model.optimizer is optimizer
            self.model.optimizer.learning_rate = 5e-4  # a schedule's move

    callback = recording_callback((x[:16], y[:16]))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[callback, Probe()])
    assert seen["same"]
    assert int(np.asarray(optimizer.iterations)) == 4
    recording = callback.binding.recorder.recording
    assert recording.inner_optimizer is optimizer
    assert [v.path for v in recording.variables] == [
        v.path for v in optimizer.variables
    ]
    assert int(np.asarray(recording.iterations)) == 4
    assert model.optimizer is optimizer
    assert float(np.asarray(optimizer.learning_rate)) == pytest.approx(5e-4)


def test_a_checkpoint_saved_during_fit_keeps_the_optimizer_state(tmp_path):
    model, x, y = model_and_data()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    path = str(tmp_path / "mid.keras")
    checkpoint = keras.callbacks.ModelCheckpoint(path, save_freq=2)
    callback = recording_callback((x[:16], y[:16]))
    model.fit(
        x, y, epochs=1, batch_size=16, verbose=0, callbacks=[callback, checkpoint]
    )
    loaded = keras.saving.load_model(path)
    assert type(loaded.optimizer).__name__ == "Adam"
    assert int(np.asarray(loaded.optimizer.iterations)) == 4
    for mine, theirs in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), rtol=1e-6)


def test_norms_are_float32_on_the_device_and_right_for_tiny_gradients():
    # Squares of 1e-25 underflow float32: the scaled norm does not.
    tiny = tf.fill([64, 16], tf.constant(1e-25, tf.float32))
    norm = step_stats.gradient_norm(tiny)
    assert norm.dtype == tf.float32
    assert float(norm) == pytest.approx(1e-25 * 32.0, rel=1e-6)  # sqrt(1024)
    huge = tf.fill([4], tf.constant(1e30, tf.float32))
    assert float(step_stats.gradient_norm(huge)) == pytest.approx(2e30, rel=1e-6)
    # The recorder keeps no float64 on the device (TPUs have none).
    model, x, y = model_and_data()
    callback = recording_callback((x[:16], y[:16]))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[callback])
    assert callback.binding.recorder._buffer.dtype == tf.float32
    norms = dict(callback.batch_gradient_norms[0][1])
    assert all(v > 0 for v in norms.values())


@pytest.mark.parametrize(
    "steps_per_execution, jit", [(1, False), (4, False), (1, True), (4, True)]
)
def test_in_step_statistics_equal_a_separate_computation(steps_per_execution, jit):
    """Weight norms, relative updates, update norms, learning rates and
    losses from inside the compiled step against the same steps taken one
    by one on a twin; also compiled with XLA (`jit_compile=True`, Keras's
    default wherever there is an accelerator), which has no kernel for
    `reduce_euclidean_norm`. Two epochs: the loss tracker's reset between
    them starts the second epoch's first loss afresh."""
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, 4, 0.5)
    model, x, y = model_and_data()
    initial = model.get_weights()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(
        keras.optimizers.SGD(schedule),
        loss,
        steps_per_execution=steps_per_execution,
        jit_compile=jit,
    )
    callback = recording_callback((x[:16], y[:16]))
    model.fit(
        x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, callbacks=[callback]
    )
    twin, _, _ = model_and_data()
    twin.set_weights(initial)
    twin.compile(keras.optimizers.SGD(schedule), loss)
    # The twin's layers by the recorded model's names (auto names differ).
    kernels = {
        ours.name: theirs.kernel for ours, theirs in zip(model.layers, twin.layers)
    }
    expected = {"weight_norm": [], "update_ratio": [], "update_norm": []}
    losses = []
    for step in range(8):
        k = step % 4
        batch = x[16 * k : 16 * (k + 1)], y[16 * k : 16 * (k + 1)]
        before = {n: np.asarray(v) for n, v in kernels.items()}
        losses.append(float(loss(batch[1], twin(batch[0], training=True))))
        twin.train_on_batch(*batch)
        after = {n: np.asarray(v) for n, v in kernels.items()}
        expected["weight_norm"].append({n: np.linalg.norm(a) for n, a in after.items()})
        expected["update_norm"].append(
            {n: np.linalg.norm(after[n] - before[n]) for n in after}
        )
        expected["update_ratio"].append(
            {
                n: expected["update_norm"][-1][n] / np.linalg.norm(before[n])
                for n in after
            }
        )
    got = callback.step_statistics
    for name in ("weight_norm", "update_ratio", "update_norm"):
        assert [s for s, _ in got[name]] == list(range(1, 9))
        for (_, values), want in zip(got[name], expected[name]):
            for layer, value in want.items():
                assert values[layer] == pytest.approx(value, rel=1e-5), (name, layer)
    rates = [values[""] for _, values in got["learning_rate"]]
    np.testing.assert_allclose(rates, [float(schedule(s)) for s in range(8)], rtol=1e-6)
    assert [s for s, _ in got["loss"]] == list(range(1, 9))
    np.testing.assert_allclose([v[""] for _, v in got["loss"]], losses, rtol=1e-5)
    # The same steps' gradient norms as before.
    assert [s for s, _ in callback.batch_gradient_norms] == list(range(1, 9))


def test_the_buffer_is_copied_every_32_steps_not_every_batch():
    from keras_initdiag.diagnostics import train_grads

    model, x, y = model_and_data()
    callback = recording_callback((x[:16], y[:16]))
    reads = []

    class Count(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            reads.append(callback.binding.recorder.calls_since_read)

    xs, ys = np.concatenate([x] * 5), np.concatenate([y] * 5)  # 80 steps a epoch
    model.fit(
        xs,
        ys,
        epochs=1,
        batch_size=4,
        shuffle=False,
        verbose=0,
        callbacks=[callback, Count()],
    )
    # The counter runs to COPY_EVERY - 1 between copies, then starts again.
    assert max(reads) == train_grads.COPY_EVERY - 1
    assert reads[train_grads.COPY_EVERY - 1] == 0
    assert [s for s, _ in callback.batch_gradient_norms] == list(range(1, 81))


def test_the_in_step_path_and_the_update_tracker_sample_the_same_entries():
    """One `step_stats.sample_picks` for both: their relative updates agree."""
    from keras_initdiag.callbacks.updates import UpdateTracker
    from keras_initdiag.diagnostics.taps import build_taps
    from keras_initdiag.diagnostics.train_grads import GradientRecorder

    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(256), keras.layers.Dense(8)]
    )
    model.compile("sgd", "mse")
    taps = build_taps(model).taps
    tracker = UpdateTracker(taps, model.optimizer)
    recorder = GradientRecorder(model, taps)
    for (_, weight), mine in zip(tracker.layers, tracker.sampler.picks):
        _, picks = recorder._main[id(weight)]
        if mine is None:
            assert picks is None
        else:
            assert picks[0] == 16 and len(picks[1]) == 256  # 64 x 256: runs
            np.testing.assert_array_equal(mine[1], picks[1])


def test_combined_norms_are_exact_across_float32s_range():
    """A layer's norm from its weights' norms, all layers in a few ops."""
    from keras_initdiag.diagnostics.step_stats import combined_norms

    parts = tf.constant([3.0, 4.0, 1.0, 1e-30, 1e-30, 3e30, 4e30])
    owners = [0, 0, 1, 2, 2, 3, 3]
    got = combined_norms(parts, owners, 5).numpy()
    # Plain squares would give 0 for group 2 (underflow) and inf for group 3.
    np.testing.assert_allclose(got[:4], [5.0, 1.0, 2**0.5 * 1e-30, 5e30], rtol=1e-6)
    assert got[4] == 0.0  # a group with no part


def test_sampled_runs_are_the_picked_entries():
    """`sampled` returns runs `[RUN * i, RUN * (i + 1))` of the flat weight."""
    from keras_initdiag.diagnostics.step_stats import RUN, sample_picks, sampled

    value = np.arange(300 * 70, dtype="float32").reshape(300, 70)
    weight = keras.Variable(value)
    table = keras.Variable(value)
    (run, picks), (single, entries) = sample_picks([weight, table], sparse=[0, 1])
    assert run == RUN and len(picks) == 4096 // RUN == len(set(picks))
    assert picks.max() < value.size // RUN
    expected = np.concatenate([value.ravel()[RUN * i : RUN * (i + 1)] for i in picks])
    np.testing.assert_array_equal(sampled(weight, (run, picks)).numpy(), expected)
    # An embedding table's sample: 4,096 single entries.
    assert single == 1 and len(entries) == 4096 == len(set(entries))
    np.testing.assert_array_equal(
        sampled(table, (single, entries)).numpy(), value.ravel()[entries]
    )


def test_an_embedding_tables_sampled_update_sees_the_rows_a_step_moved():
    """SGD moves only the looked-up rows of a 50,000-row table. Sampled in
    runs (256 rows), the sample saw no moved row on each of 6 seeds tried (a
    ratio of exactly 0: "did not move"); entry by entry it is within a
    factor of 3 of the whole table's on all 6."""
    from keras_initdiag.callbacks.updates import UpdateTracker
    from keras_initdiag.diagnostics.taps import build_taps

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,), dtype="int32"),
            keras.layers.Embedding(50_000, 64, name="embed"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(4),
        ]
    )
    model.compile(keras.optimizers.SGD(0.5), "mse")
    rng = np.random.default_rng(0)
    x = rng.zipf(1.3, size=(32, 8)).clip(max=49_999).astype("int32")
    y = rng.normal(size=(32, 4)).astype("float32")
    tracker = UpdateTracker(build_taps(model).taps, model.optimizer, steps=1)
    table = model.get_layer("embed").embeddings
    before = np.asarray(table.value).copy()
    tracker.start(0)
    model.train_on_batch(x, y)
    measured = tracker.after_batch(1)["update_ratio"]["embed"]
    after = np.asarray(table.value)
    whole = np.linalg.norm(after - before) / np.linalg.norm(before)
    assert int((np.abs(after - before).sum(1) > 0).sum()) < 500  # under 1% moved
    assert whole / 4 < measured < whole * 4


def _failing_record(self, grads, variables, before=None):
    raise RuntimeError("no kernel for this op")


def test_a_recording_step_that_fails_warns_once_and_training_goes_on(monkeypatch):
    """A diagnostics failure must not end the user's run: when the recording
    step cannot be built but the model's own step runs, the recorder gives
    up with one warning, the fit trains every step, and the early watch
    samples the weights itself."""
    from keras_initdiag.diagnostics import recording, train_grads

    def run(batch_gradients: bool):
        keras.utils.set_random_seed(3)
        model, x, y = model_and_data()
        model.compile(
            keras.optimizers.SGD(0.01),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        callback = recording_callback((x[:16], y[:16]))
        callback.batch_gradients = batch_gradients
        for epochs in (10, 1):
            model.fit(
                x,
                y,
                epochs=epochs,
                batch_size=16,
                verbose=0,
                shuffle=False,
                callbacks=[callback],
            )
        return model, callback

    monkeypatch.setattr(train_grads.GradientRecorder, "record", _failing_record)
    with pytest.warns(keras_initdiag.InitDiagnosticsWarning) as caught:
        model, callback = run(batch_gradients=True)
    messages = [str(w.message) for w in caught if "batch_gradients" in str(w.message)]
    assert len(messages) == 1 and "no kernel for this op" in messages[0]
    assert int(model.optimizer.iterations.numpy()) == 44  # every step trained
    assert callback.batch_gradient_norms == []
    assert not isinstance(model.train_function, recording.RecordingTrainFunction)
    # The verdict still comes, from the host-side samples: that of the same
    # run without the recorder (its watch samples on the device), but for
    # the watch starting one step later (the step whose recording failed).
    _, plain = run(batch_gradients=False)
    got, want = callback.verdict, plain.verdict
    assert got is not None and want is not None
    assert (got.start, got.step) == (want.start + 1, want.step + 1)
    for name in ("log_trust", "log_slowest", "level", "progress"):
        # Updates of adjacent steps, the same losses but one: close, finite.
        assert got.features[name] == pytest.approx(want.features[name], abs=0.05)
    assert got.risk == pytest.approx(want.risk, abs=0.05)


def test_a_bad_label_in_the_first_batch_is_the_users_error():
    """A step that ran and failed on its data is not blamed on the recorder:
    the error propagates as it would without the callback."""
    model, x, y = model_and_data()
    y = y.copy()
    y[0] = 7  # three classes
    callback = recording_callback((x[16:32], y[16:32]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(tf.errors.InvalidArgumentError, match="label"):
            model.fit(
                x,
                y,
                epochs=1,
                batch_size=16,
                shuffle=False,  # the bad label in the first batch
                verbose=0,
                callbacks=[callback],
            )
    assert not any("batch_gradients" in str(w.message) for w in caught)


def test_only_build_failures_are_the_recordings():
    from keras_initdiag.diagnostics import recording

    xla = tf.errors.InvalidArgumentError(
        None,
        None,
        "Graph execution error:\n\nDetected at node EuclideanNorm defined at\n"
        "<stack traces unavailable>\nDetected unsupported operations when "
        "trying to compile graph on XLA_CPU_JIT: EuclideanNorm",
    )
    data = tf.errors.InvalidArgumentError(
        None, None, "Graph execution error:\n\nReceived a label value of 7"
    )
    assert recording.unbuildable(xla) and not recording.unbuildable(data)
    assert recording.unbuildable(TypeError("while tracing"))
    reason = recording.reason_of(xla)
    assert reason.startswith("InvalidArgumentError: Detected unsupported operations")


def test_a_sampled_weights_update_norm_estimates_the_whole():
    """A kernel of 65,536 entries is sampled at 4,096 (`sample_scale` 4):
    its update norm, the sampled one scaled, is within a few percent of the
    whole update's, taken on a twin (SGD: the update is the gradient times
    the rate; its rows alike, as `step_stats.RUN` states)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((256,)),
            keras.layers.Dense(256, activation="relu", name="wide"),
            keras.layers.Dense(3, name="head"),
        ]
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(keras.optimizers.SGD(0.1), loss)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 256)).astype("float32")
    y = rng.integers(0, 3, 64)
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    twin.compile(keras.optimizers.SGD(0.1), loss)
    before = np.asarray(twin.layers[0].kernel)
    twin.train_on_batch(x, y)
    whole = np.linalg.norm(np.asarray(twin.layers[0].kernel) - before)
    callback = recording_callback((x[:16], y[:16]))
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[callback])
    ((_, got),) = callback.step_statistics["update_norm"]
    assert got["wide"] == pytest.approx(whole, rel=0.05)
    assert got["head"] > 0  # 768 entries: sampled whole, as the test above


def test_sample_scale_closed_form():
    weights = [np.zeros((256, 256)), np.zeros((10, 10)), np.zeros((5000, 8))]
    picks = step_stats.sample_picks(weights, sparse=[False, False, True])
    np.testing.assert_allclose(
        step_stats.sample_scale(weights, picks), [4.0, 1.0, np.sqrt(40000 / 4096)]
    )


def test_a_second_fit_with_larger_batches_starts_its_losses_afresh():
    """Keras resets its loss tracker at each epoch: a later fit's first
    step (batch 32, after an epoch of one batch of 8) is its own loss."""
    model, x, y = model_and_data()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    callback = recording_callback((x[:16], y[:16]))
    model.fit(x[:8], y[:8], batch_size=8, verbose=0, callbacks=[callback])
    model.fit(x[:32], y[:32], batch_size=32, verbose=0, callbacks=[callback])
    (_, first), (_, second) = callback.step_statistics["loss"]
    # Learning rate 0: the losses are the model's on each batch.
    assert first[""] == pytest.approx(float(loss(y[:8], model(x[:8]))), rel=1e-5)
    assert second[""] == pytest.approx(float(loss(y[:32], model(x[:32]))), rel=1e-5)


def test_a_custom_train_step_records_no_loss_rather_than_a_shifted_one():
    """Keras's guide updates its loss tracker after the optimizer applies:
    the recorder would read the step before's. It records NaN instead; the
    other statistics are recorded as for any model."""

    class Custom(keras.Sequential):
        def __init__(self, layers):
            super().__init__(layers)
            self.loss_tracker = keras.metrics.Mean(name="loss")

        @property
        def metrics(self):
            return [self.loss_tracker]

        def train_step(self, data):
            x, y = data
            with tf.GradientTape() as tape:
                loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply(grads, self.trainable_variables)
            self.loss_tracker.update_state(loss)  # after the update
            return {"loss": self.loss_tracker.result()}

    _, x, y = model_and_data()
    custom = Custom(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3, name="head"),
        ]
    )
    custom.compile(
        keras.optimizers.SGD(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    callback = recording_callback((x[:16], y[:16]))
    custom.fit(x, y, batch_size=16, verbose=0, callbacks=[callback])
    stats = callback.step_statistics
    assert [s for s, _ in stats["loss"]] == [1, 2, 3, 4]
    assert all(np.isnan(v[""]) for _, v in stats["loss"])
    assert all(v["head"] > 0 for _, v in stats["update_norm"])
