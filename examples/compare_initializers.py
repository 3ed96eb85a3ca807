"""Compare initializers on one deep network with `diagnose()`, before training.

A single compiled pass per model measures how the activation variance and the
back-propagated gradient change from the first layer to the last. The ratio
last/first is about `f ** depth` for a per-layer factor `f`: 1 is healthy,
tiny means the signal vanishes, huge means it explodes.

    python examples/compare_initializers.py          # about 30 seconds
    python examples/compare_initializers.py --quick  # a few seconds
"""

import argparse

import keras
import numpy as np

import keras_initdiag

# (activation, initializer name, factory taking a per-layer seed)
CASES = (
    ("relu", "SmallRandom(0.01)", lambda s: keras_initdiag.SmallRandom(0.01, seed=s)),
    ("relu", "SmallRandom(1.0)", lambda s: keras_initdiag.SmallRandom(1.0, seed=s)),
    ("relu", "Xavier", lambda s: keras_initdiag.Xavier(seed=s)),
    ("relu", "He", lambda s: keras_initdiag.He(seed=s)),
    (
        "relu",
        "Orthogonal(gain=sqrt 2)",
        lambda s: keras_initdiag.Orthogonal(2**0.5, seed=s),
    ),
    ("tanh", "Xavier", lambda s: keras_initdiag.Xavier(seed=s)),
    ("tanh", "SmallRandom(1.0)", lambda s: keras_initdiag.SmallRandom(1.0, seed=s)),
    ("selu", "LeCun", lambda s: keras_initdiag.LeCun(seed=s)),
)


def build(activation, factory, depth, width, features):
    layers = [keras.Input((features,))]
    layers += [
        keras.layers.Dense(width, activation, kernel_initializer=factory(i))
        for i in range(depth)
    ]
    layers.append(keras.layers.Dense(1))
    return keras.Sequential(layers)


def main(depth=30, width=64, samples=256, cases=CASES):
    """Diagnoses each case; returns {(activation, name): DiagnosticReport}."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, width)).astype("float32")
    y = rng.normal(size=(samples, 1)).astype("float32")
    reports = {}
    print(f"{depth} layers of {width} units, diagnosed on {samples} samples\n")
    print(f"{'activation':<10} {'initializer':<24} {'signal last/first':>18}  flags")
    for activation, name, factory in cases:
        model = build(activation, factory, depth, width, x.shape[1])
        report = keras_initdiag.diagnose(model, x, y, loss="mse")
        variance = [v for v in report.stat("activation_variance")[:-1]]
        ratio = variance[-1] / variance[0] if variance[0] > 0 else float("nan")
        kinds = sorted({flag.kind for flag in report.flags})
        print(f"{activation:<10} {name:<24} {ratio:>18.3g}  {', '.join(kinds) or '-'}")
        reports[(activation, name)] = report
    return reports


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small and fast")
    args = parser.parse_args()
    main(depth=8, width=32, samples=64) if args.quick else main()
