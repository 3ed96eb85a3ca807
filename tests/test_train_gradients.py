"""Per-batch gradient norms from the real train step (`batch_gradients=True`)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import event_accumulator, tensor_tags

import keras_initdiag


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
    callback = keras_initdiag.InitDiagnostics(
        log_dir=str(tmp_path),
        probe_data=(x[:16], y[:16]),
        batch_gradients=True,
        on_flag="ignore",
        verbose=0,
    )
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
    tags = tensor_tags(event_accumulator(str(tmp_path / "initdiag")))
    assert "train_gradient_norm/first" in tags and "train_gradient_norm/head" in tags


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
            callback = keras_initdiag.InitDiagnostics(
                log_dir=None,
                probe_data=(x[:16], y[:16]),
                batch_gradients=True,
                on_flag="ignore",
                verbose=0,
            )
            model.fit(
                x,
                y,
                epochs=1,
                batch_size=16,
                shuffle=False,
                verbose=0,
                callbacks=[callback],
            )
            results.append(callback.batch_gradient_norms[0][1])
        finally:
            keras.mixed_precision.set_global_policy("float32")
    float32, mixed = (list(norms.values()) for norms in results)
    assert len(float32) == len(mixed) == 4
    np.testing.assert_allclose(mixed, float32, rtol=0.05)


def test_bad_batch_gradients_argument():
    with pytest.raises(TypeError, match="batch_gradients='yes'"):
        keras_initdiag.InitDiagnostics(batch_gradients="yes")
