"""A small CNN trained with `InitDiagnostics`: convolutions are diagnosed too.

The images are synthetic (no download): noisy horizontal or vertical bars.
The callback measures every Conv2D and Dense layer at step 0 and after each
epoch; the step-0 table and the flags are printed, the rest goes to
TensorBoard.

    python examples/small_cnn.py          # about 15 seconds
    python examples/small_cnn.py --quick  # a few seconds
    tensorboard --logdir logs/small_cnn
"""

import argparse

import keras
import numpy as np

import keras_initdiag


def make_images(samples, size=16, seed=0):
    """Noisy images with one horizontal (label 0) or vertical (label 1) bar."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=0.3, size=(samples, size, size, 1)).astype("float32")
    y = rng.integers(0, 2, samples).astype("int32")
    where = rng.integers(2, size - 2, samples)
    for i in range(samples):
        if y[i] == 0:
            x[i, where[i], :, 0] += 1.0
        else:
            x[i, :, where[i], 0] += 1.0
    return x, y


def build(size, filters=8):
    he = keras_initdiag.for_activation
    model = keras.Sequential(
        [
            keras.Input((size, size, 1)),
            keras.layers.Conv2D(
                filters, 3, activation="relu", kernel_initializer=he("relu", seed=1)
            ),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(
                2 * filters, 3, activation="relu", kernel_initializer=he("relu", seed=2)
            ),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(
                2, activation="softmax", kernel_initializer=he("softmax", seed=3)
            ),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main(samples=2048, size=16, epochs=3, log_dir="logs/small_cnn"):
    """Trains the CNN with the callback and returns it."""
    keras.utils.set_random_seed(0)
    x, y = make_images(samples, size)
    model = build(size)
    callback = keras_initdiag.InitDiagnostics(
        log_dir=log_dir, probe_data=(x[:128], y[:128]), on_flag="ignore", verbose=0
    )
    history = model.fit(
        x, y, epochs=epochs, batch_size=64, callbacks=[callback], verbose=0
    )
    print(callback.reports[0].table())
    print(f"\nAccuracy after {epochs} epoch(s): {history.history['accuracy'][-1]:.2f}")
    print(
        f"Diagnoses at steps {[r.step for r in callback.reports]}, "
        f"{len(callback.flags)} flag(s) in all"
    )
    print(f"Inspect the run: tensorboard --logdir {log_dir}")
    return callback


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small and fast")
    args = parser.parse_args()
    main(samples=256, size=12, epochs=1) if args.quick else main()
