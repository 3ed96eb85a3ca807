"""A model using every custom initializer and `Whitening`, saved as `.keras`
and loaded in a fresh Python process with `safe_mode=True`."""

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

LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    import keras_initdiag  # Registers every class; no other call needed.

    path, x_path, out_path = sys.argv[1:]
    model = keras.saving.load_model(path, safe_mode=True)
    np.save(out_path, model.predict(np.load(x_path), verbose=0))
    inits = {}
    for layer in model.layers:
        for attr in ("kernel_initializer", "depthwise_initializer"):
            init = getattr(layer, attr, None)
            if init is not None:
                inits[layer.name] = keras.saving.serialize_keras_object(init)
    print(json.dumps(inits))
    """
)


def _model(x_train: np.ndarray) -> keras.Model:
    whitening = keras_initdiag.Whitening(mode="zca", name="whiten")
    whitening.adapt(x_train)
    inits = {
        "conv": keras_initdiag.DeltaOrthogonal(gain=2**0.5, seed=1),
        "small": keras_initdiag.SmallRandom(scale=0.05, distribution="uniform", seed=2),
        "xavier": keras_initdiag.Xavier(distribution="uniform", seed=3),
        "he": keras_initdiag.He(negative_slope=0.1, seed=4),
        "lecun": keras_initdiag.LeCun(gain=1.5, seed=5),
        "ortho": keras_initdiag.Orthogonal(gain=0.5, seed=6),
        "he_ortho": keras_initdiag.He(distribution="orthogonal", seed=7),
    }
    inputs = keras.Input((10, 4))
    h = whitening(inputs)
    h = keras.layers.Conv1D(
        6, 3, activation="relu", kernel_initializer=inits["conv"], name="conv"
    )(h)
    h = keras.layers.Flatten()(h)
    for name in ("small", "xavier", "he", "lecun", "ortho", "he_ortho"):
        h = keras.layers.Dense(
            8, activation="tanh", kernel_initializer=inits[name], name=name
        )(h)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(h))


@pytest.mark.slow
def test_every_custom_class_round_trips_in_a_fresh_process(tmp_path):
    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((4, 4))
    x_train = (rng.standard_normal((200, 10, 4)) @ mixing + 3.0).astype("float32")
    model = _model(x_train)
    model.compile("adam", "mse")
    x = x_train[:16]
    expected = model.predict(x, verbose=0)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    result = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, path, str(tmp_path / "x.npy"),
         str(tmp_path / "out.npy")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)
    inits = json.loads(result.stdout.strip().splitlines()[-1])
    for layer in ("conv", "small", "xavier", "he", "lecun", "ortho", "he_ortho"):
        original = keras.saving.serialize_keras_object(
            model.get_layer(layer).kernel_initializer
        )
        assert inits[layer] == json.loads(json.dumps(original)), layer
    assert inits["conv"]["class_name"] == "DeltaOrthogonal"
    assert inits["he"]["config"]["negative_slope"] == pytest.approx(0.1)
