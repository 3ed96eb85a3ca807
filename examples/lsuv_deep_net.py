"""Rescue a deep ReLU net whose signal vanishes, with LSUV.

A deep ReLU MLP started from small random weights (the classic N(0, 0.01**2)
baseline) loses its signal layer by layer: `diagnose` flags it as vanishing.
`lsuv` replaces each kernel by an orthonormal one and rescales it until the
layer's pre-activation variance on a batch is 1; `diagnose` then finds the
signal stable with depth.

    python examples/lsuv_deep_net.py          # about 10 seconds
    python examples/lsuv_deep_net.py --quick  # about 3 seconds
"""

import argparse

import keras
import numpy as np

import keras_initdiag


def build(depth, width, features):
    """A ReLU MLP with a fresh small-random initializer per layer."""
    hidden = [
        keras.layers.Dense(
            width,
            activation="relu",
            kernel_initializer=keras_initdiag.SmallRandom(scale=0.01),
        )
        for _ in range(depth)
    ]
    return keras.Sequential([keras.Input((features,)), *hidden, keras.layers.Dense(10)])


def kinds(report):
    """The flag kinds of a report, in order, without repeats."""
    return list(dict.fromkeys(flag.kind for flag in report.flags))


def main(depth=30, width=64, samples=256):
    """Diagnoses, runs LSUV, diagnoses again; returns what it prints."""
    keras.utils.set_random_seed(0)
    features = 32
    x = np.random.default_rng(0).normal(size=(samples, features)).astype("float32")
    model = build(depth, width, features)

    before = keras_initdiag.diagnose(model, x)
    print(f"flags before LSUV: {kinds(before) or 'none'}")
    result = keras_initdiag.lsuv(model, x, tol=0.05, seed=0, verbose=0)
    print(result.table())
    after = keras_initdiag.diagnose(model, x)
    print(f"flags after LSUV:  {kinds(after) or 'none'}")

    def depth_ratio(report):
        variances = [
            report.stats[name]["activation_variance"] for name in report.layers
        ]
        return variances[-2] / variances[0]  # last hidden layer / first

    print(
        "activation variance, last hidden layer / first: "
        f"{depth_ratio(before):.3g} before, {depth_ratio(after):.3g} after"
    )
    return {
        "flags_before": kinds(before),
        "flags_after": kinds(after),
        "ratio_before": depth_ratio(before),
        "ratio_after": depth_ratio(after),
        "result": result,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller net")
    args = parser.parse_args()
    main(**({"depth": 12, "width": 32} if args.quick else {}))
