"""Quickstart: watch a deep ReLU network's initialization while it trains.

Add `InitDiagnostics` to `fit`: it diagnoses every layer before the first
update (step 0), after each epoch (while that costs under 2% of training)
and at the end, flags problems by layer, and writes
everything to TensorBoard. Here the same MLP is trained twice: once with
Keras's default Glorot kernels, whose signal halves at every ReLU layer, and
once with `for_activation("relu")` (He), which keeps it steady. Both train
with SGD and momentum: with it, a signal 10,000 times too small at the last
layer stalls training, and the flag says so. (Adam rescales every step and
trains through far smaller signals; the threshold follows the optimizer.)

    python examples/quickstart.py          # about 30 seconds
    python examples/quickstart.py --quick  # a few seconds
    tensorboard --logdir logs/quickstart
"""

import argparse
import os

import keras
import numpy as np

import keras_initdiag


def make_data(samples, features=16, seed=0):
    """Two classes split by a random hyperplane through standard-normal inputs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, features)).astype("float32")
    y = (x @ rng.normal(size=features) > 0).astype("int32")
    return x, y


def build(depth, width, features, initializer=None):
    """A deep ReLU MLP; `initializer(i)` gives layer i's kernel initializer."""
    layers = [keras.Input((features,))]
    for i in range(depth):
        init = "glorot_uniform" if initializer is None else initializer(i)
        layers.append(keras.layers.Dense(width, "relu", kernel_initializer=init))
    layers.append(keras.layers.Dense(2, "softmax"))
    model = keras.Sequential(layers)
    model.compile(
        keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def main(samples=4096, depth=20, width=64, epochs=3, log_dir="logs/quickstart"):
    """Trains both models with the callback; returns {name: InitDiagnostics}."""
    keras.utils.set_random_seed(0)
    x, y = make_data(samples)
    recipes = {
        "glorot_default": None,
        "for_activation": lambda i: keras_initdiag.for_activation("relu", seed=i),
    }
    callbacks = {}
    for name, initializer in recipes.items():
        model = build(depth, width, x.shape[1], initializer)
        callback = keras_initdiag.InitDiagnostics(
            log_dir=os.path.join(log_dir, name),
            probe_data=(x[:256], y[:256]),  # A fixed batch, with labels.
            on_flag="ignore",  # Collect the flags; "warn" is the default.
            verbose=0,
        )
        history = model.fit(x, y, epochs=epochs, callbacks=[callback], verbose=0)
        callbacks[name] = callback
        kinds = sorted({flag.kind for flag in callback.reports[0].flags})
        print(
            f"{name}: accuracy {history.history['accuracy'][-1]:.2f}, "
            f"flags at step 0: {', '.join(kinds) or 'none'}"
        )
        for flag in callback.reports[0].flags:
            if flag.kind in ("vanishing", "exploding"):
                print(f"  {flag.message}")
    print(f"\nInspect the runs: tensorboard --logdir {log_dir}")
    return callbacks


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small and fast")
    args = parser.parse_args()
    if args.quick:
        main(samples=512, depth=16, width=64, epochs=1)
    else:
        main()
