"""The demo's regimes: the data, the MLP under each initialization, its training.

`make_data` builds the synthetic task, `build_model` the 20-layer ReLU MLP
with one regime's initializer (or whitened inputs), and `run_regime` trains
it with `InitDiagnostics` writing to `<logdir>/<regime>/initdiag`, returning
what the run produced as a `RegimeResult`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import keras
import numpy as np

from keras_initdiag import initializers as inits
from keras_initdiag.callbacks import InitDiagnostics
from keras_initdiag.diagnostics.report import DiagnosticReport, Flag
from keras_initdiag.diagnostics.verdict import EarlySteps
from keras_initdiag.layers import Whitening
from keras_initdiag.lsuv import lsuv

#: Every regime, in the order the demo runs them.
REGIMES: tuple[str, ...] = (
    "zeros",
    "small_random",
    "large_random",
    "xavier",
    "lecun",
    "he",
    "for_activation",
    "lsuv",
    "he_whitening",
)

#: What each regime initializes with, as the table shows it.
DESCRIPTIONS = {
    "zeros": "all weights zero",
    "small_random": "N(0, 0.01^2)",
    "large_random": "N(0, 1)",
    "xavier": "Xavier/Glorot",
    "lecun": "LeCun",
    "he": "He (Kaiming)",
    "for_activation": "for_activation('relu')",
    "lsuv": "orthogonal + LSUV rescale",
    "he_whitening": "He, ZCA-whitened inputs",
}


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo run.

    Args:
        depth: Number of hidden ReLU layers. Defaults to `20`.
        width: Units per hidden layer. Defaults to `64`.
        samples: Training samples. Defaults to `2048`.
        epochs: Training epochs per regime. Defaults to `3`.
        batch_size: Training batch size. Defaults to `64`.
        features: Input features. Defaults to `16`.
        classes: Output classes. Defaults to `4`.
        probe_samples: Size of the diagnostics probe batch. Defaults to `128`.
        learning_rate: SGD learning rate. Defaults to `0.01`.
        momentum: SGD momentum. Defaults to `0.9`.
        seed: Seed of the data and of every initializer. Defaults to `0`.
    """

    depth: int = 20
    width: int = 64
    samples: int = 2048
    epochs: int = 3
    batch_size: int = 64
    features: int = 16
    classes: int = 4
    probe_samples: int = 128
    learning_rate: float = 0.01
    momentum: float = 0.9
    seed: int = 0


#: The sizes `--quick` uses: finishes in seconds.
QUICK = DemoConfig(
    depth=4, width=16, samples=256, epochs=1, batch_size=64, probe_samples=64
)


@dataclasses.dataclass
class RegimeResult:
    """What one regime's run produced.

    Args:
        regime: The regime name (one of `REGIMES`).
        run_dir: The directory holding its TensorBoard events.
        reports: The diagnostic reports, step 0 first.
        losses: Training loss per epoch.
        loss: Final training loss (NaN when training diverged).
        accuracy: Final training accuracy.
        seconds: Wall time of the regime (build, init, fit).
        early_steps: What the early verdict read (`verdict.EarlySteps`:
            each watched step's loss, rate and relative updates), or None
            without a verdict. `benchmarks/demo_fit.py` records it, so a
            refit of the verdict can be judged on the demo's own steps.
    """

    regime: str
    run_dir: str = ""
    reports: list[DiagnosticReport] = dataclasses.field(default_factory=list)
    losses: list[float] = dataclasses.field(default_factory=list)
    loss: float = math.nan
    accuracy: float = math.nan
    seconds: float = 0.0
    early_steps: EarlySteps | None = None

    @property
    def initial_flags(self) -> list[Flag]:
        """Flags of the step-0 diagnosis."""
        return list(self.reports[0].flags) if self.reports else []

    @property
    def verdict(self):
        """The early verdict given during the run, or None."""
        return next((r.verdict for r in self.reports if r.verdict), None)

    @property
    def later_flags(self) -> list[Flag]:
        """Flags of every diagnosis after step 0."""
        return [flag for report in self.reports[1:] for flag in report.flags]


def make_data(
    samples: int, features: int = 16, classes: int = 4, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Elongated, correlated classification data, generated with a fixed seed.

    Independent Gaussian features decide the class (a random linear rule);
    the inputs mix them with pairwise correlation 0.9, scale them by factors
    spanning 10x (mean square about 1) and shift them, so the input
    covariance spans three orders of magnitude and the class depends on its
    smallest directions.

    Args:
        samples: Number of samples.
        features: Number of features. Defaults to `16`.
        classes: Number of classes. Defaults to `4`.
        seed: NumPy seed. Defaults to `0`.

    Returns:
        `(x, y)`: float32 inputs `(samples, features)` and int32 labels.
    """
    rng = np.random.default_rng(seed)
    correlation = np.full((features, features), 0.9) + 0.1 * np.eye(features)
    independent = rng.normal(size=(samples, features))
    latent = independent @ np.linalg.cholesky(correlation).T
    logits = independent @ rng.normal(size=(features, classes))
    y = np.argmax(logits, axis=1).astype("int32")
    scales = np.logspace(-0.5, 0.5, features)
    scales /= np.sqrt(np.mean(scales**2))  # E[x^2] about 1: no scale at all
    x = latent * scales + rng.uniform(-0.5, 0.5, size=features) * scales
    return x.astype("float32"), y


def _initializer(regime: str, seed: int):
    """A fresh kernel initializer of `regime` (each layer gets its own seed)."""
    if regime == "zeros":
        return keras.initializers.Zeros()
    if regime == "small_random":
        return inits.SmallRandom(scale=0.01, seed=seed)
    if regime == "large_random":
        return inits.SmallRandom(scale=1.0, seed=seed)
    if regime == "xavier":
        return inits.Xavier(seed=seed)
    if regime == "lecun":
        return inits.LeCun(seed=seed)
    if regime == "for_activation":
        return inits.for_activation("relu", seed=seed)
    if regime == "lsuv":
        return inits.Orthogonal(seed=seed)
    return inits.He(seed=seed)


def build_model(
    regime: str, config: DemoConfig, whitening: keras.layers.Layer | None = None
) -> keras.Model:
    """The demo MLP: `depth` ReLU layers of `width` units and a softmax output.

    Args:
        regime: Picks the kernel initializer (one of `REGIMES`).
        config: The sizes.
        whitening: An adapted input layer to put first. Defaults to `None`.

    Returns:
        A compiled `keras.Sequential` model.
    """
    layers = [keras.Input((config.features,))]
    if whitening is not None:
        layers.append(whitening)
    for i in range(config.depth):
        init = _initializer(regime, config.seed * 1000 + i)
        layers.append(
            keras.layers.Dense(
                config.width, "relu", kernel_initializer=init, name=f"dense_{i + 1}"
            )
        )
    init = _initializer(regime, config.seed * 1000 + config.depth)
    if regime == "for_activation":
        init = inits.for_activation("softmax", seed=config.seed * 1000 + config.depth)
    layers.append(
        keras.layers.Dense(
            config.classes, "softmax", kernel_initializer=init, name="output"
        )
    )
    model = keras.Sequential(layers, name=f"demo_{regime}")
    model.compile(
        optimizer=keras.optimizers.SGD(config.learning_rate, config.momentum),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def make_whitening(x: np.ndarray) -> Whitening:
    """A ZCA `Whitening` layer adapted on `x`.

    The demo's input covariance spans about three orders of magnitude
    (eigenvalues 0.004 to 15); the layer's default relative variance floor
    (`epsilon=1e-10`) whitens every direction of it.

    Args:
        x: The training inputs.

    Returns:
        The adapted layer.
    """
    whitening = Whitening(mode="zca", name="whitening")
    whitening.adapt(x)
    return whitening


def run_regime(
    regime: str, x: np.ndarray, y: np.ndarray, config: DemoConfig, logdir: str
) -> RegimeResult:
    """Build, initialize and train the MLP under one regime.

    Args:
        regime: One of `REGIMES`.
        x: Training inputs.
        y: Training labels.
        config: The sizes.
        logdir: The demo's log directory; events go to
            `<logdir>/<regime>/initdiag`.

    Returns:
        A `RegimeResult`.
    """
    result = RegimeResult(regime, run_dir=os.path.join(logdir, regime, "initdiag"))
    start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    probe = (x[: config.probe_samples], y[: config.probe_samples])
    whitening = make_whitening(x) if regime == "he_whitening" else None
    model = build_model(regime, config, whitening)
    if regime == "lsuv":
        lsuv(model, probe[0], verbose=0)
    callback = InitDiagnostics(
        log_dir=os.path.join(logdir, regime),
        probe_data=probe,
        on_flag="ignore",
        verbose=0,
        depth_profile=True,
    )
    history = model.fit(
        x,
        y,
        batch_size=config.batch_size,
        epochs=config.epochs,
        callbacks=[callback],
        verbose=0,
    )
    result.reports = list(callback.reports)
    result.losses = [float(v) for v in history.history["loss"]]
    result.loss = result.losses[-1]
    result.accuracy = float(history.history["accuracy"][-1])
    result.early_steps = callback.early_steps
    result.seconds = time.perf_counter() - start
    return result
