"""Where the in-step statistics' time goes: one model, four variants, one process.

The 20 x 256 ReLU MLP of `overhead.py` (Adam 1e-4, batch 128), each variant
its own model with the same weights, their 40-step epochs interleaved
(`--rounds` of them) so that machine noise hits all alike:

- `plain`: `fit` alone;
- `gradient_norms`: the recording optimizer with the per-layer gradient
  norms only;
- `no_sample`: also each layer's main weight norm, no relative update;
- `full`: every in-step statistic (`batch_gradients=True`'s path).

Prints ms per step, the best and the median epoch of each, and the best
epoch's process CPU time per step (both cores). This machine's epochs are
bimodal (8.9 or 16.3 ms per step whatever runs), so the best epoch is the
comparable number; the CPU time is steadier (what the extra ops cost,
whether or not they overlap the step's own work).

With `--jit` every variant is compiled with XLA (`jit_compile=True`), as
Keras compiles by default wherever there is an accelerator: the in-step
reductions then fuse into the step instead of running as ops of their own.

Usage:
    python benchmarks/instep_profile.py --rounds 6
    python benchmarks/instep_profile.py --rounds 6 --jit
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_initdiag.diagnostics import train_grads  # noqa: E402
from keras_initdiag.diagnostics.taps import build_taps  # noqa: E402

VARIANTS = ("plain", "gradient_norms", "no_sample", "full")
STEPS = 40
BATCH = 128


def mlp(depth: int = 20, width: int = 256, jit: bool = False) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((64,))]
        + [
            keras.layers.Dense(width, "relu", kernel_initializer="he_normal")
            for _ in range(depth)
        ]
        + [keras.layers.Dense(10)]
    )
    model.compile(
        keras.optimizers.Adam(1e-4),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )
    return model


class Arm(keras.callbacks.Callback):
    """Arms the recorder before each batch and copies its buffer when due."""

    def __init__(self, recorder):
        super().__init__()
        self.recorder = recorder

    def on_train_batch_begin(self, batch, logs=None):
        if self.recorder is not None:
            self.recorder.armed = True

    def on_train_batch_end(self, batch, logs=None):
        if self.recorder is not None and self.recorder.due:
            self.recorder.read()


def setup(variant: str, jit: bool = False, depth: int = 20, width: int = 256):
    model = mlp(depth, width, jit=jit)
    recorder = None
    if variant != "plain":
        recorder = train_grads.GradientRecorder(model, build_taps(model).taps)
        if variant == "gradient_norms":
            recorder._main = {}  # no weight statistics
        elif variant == "no_sample":
            recorder.before = lambda variables: {"rate": tf.constant(0.0)}
        recorder.attach()
    return model, Arm(recorder)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--jit",
        action="store_true",
        help="compile with XLA (jit_compile=True; Keras's default where there "
        "is an accelerator, off on CPU-only machines)",
    )
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * STEPS, 64)).astype("float32")
    y = rng.integers(0, 10, BATCH * STEPS)
    runs = {v: (*setup(v, args.jit), []) for v in VARIANTS}
    for model, arm, _ in runs.values():  # trace and warm up
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[arm])
    for _ in range(args.rounds):
        for model, arm, times in runs.values():
            start, cpu = time.perf_counter(), time.process_time()
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[arm])
            times.append(
                (
                    (time.perf_counter() - start) / STEPS * 1e3,
                    (time.process_time() - cpu) / STEPS * 1e3,
                )
            )
    result = {
        v: (
            min(w for w, _ in t),
            float(np.median([w for w, _ in t])),
            min(c for _, c in t),
        )
        for v, (_, _, t) in runs.items()
    }
    for variant, (best, median, cpu) in result.items():
        print(
            f"{variant:15s} best {best:.2f} ms/step, median {median:.2f}, "
            f"best CPU {cpu:.2f} ms/step (both cores)"
        )
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
