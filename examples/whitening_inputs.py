"""Whiten elongated, correlated inputs before a linear model.

Adapt `Whitening` on the training inputs, then fit. The condition number says
how elongated the inputs are (1.0 is round); plain SGD zig-zags on elongated
inputs and converges in a few steps on whitened ones.

    python examples/whitening_inputs.py          # about 10 seconds
    python examples/whitening_inputs.py --quick  # about 3 seconds
"""

import argparse

import keras
import numpy as np

import keras_initdiag


def make_data(samples, features=8, condition=1e3, seed=0):
    """Correlated Gaussian inputs with offsets and a noisy linear target."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(features, features)))
    cov = (basis * np.logspace(0, -np.log10(condition), features)) @ basis.T
    x = rng.multivariate_normal(np.linspace(-5, 5, features), cov, size=samples)
    y = x @ rng.normal(size=features) + 2.0 + 0.01 * rng.normal(size=samples)
    return x.astype("float32"), y.astype("float32")


def fit(x, y, epochs, whitening=None):
    """Fits a linear model with full-batch SGD; returns the final MSE."""
    layers = [whitening] if whitening is not None else []
    model = keras.Sequential([keras.Input(x.shape[1:]), *layers, keras.layers.Dense(1)])
    # The largest stable step is set by the most elongated direction.
    inputs = whitening(x).numpy() if whitening is not None else x
    design = np.c_[inputs, np.ones(len(inputs))]
    largest = np.linalg.eigvalsh(design.T @ design / len(design)).max()
    model.compile(keras.optimizers.SGD(0.5 / largest), "mse")
    history = model.fit(x, y, batch_size=len(x), epochs=epochs, verbose=0)
    return history.history["loss"][-1]


def main(samples=2000, epochs=30):
    """Runs the comparison and returns the numbers it prints."""
    keras.utils.set_random_seed(0)
    x, y = make_data(samples)
    whitening = keras_initdiag.Whitening(mode="zca")
    whitening.adapt(x)
    results = {
        "condition_number": whitening.condition_number,
        "whitened_condition_number": whitening.whitened_condition_number,
        "loss_raw": fit(x, y, epochs),
        "loss_whitened": fit(x, y, epochs, whitening),
    }
    print(f"condition number before: {results['condition_number']:.1f}")
    print(f"condition number after:  {results['whitened_condition_number']:.3f}")
    print(f"MSE after {epochs} SGD steps, raw:      {results['loss_raw']:.4g}")
    print(f"MSE after {epochs} SGD steps, whitened: {results['loss_whitened']:.4g}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small and fast")
    args = parser.parse_args()
    main(samples=256, epochs=10) if args.quick else main()
