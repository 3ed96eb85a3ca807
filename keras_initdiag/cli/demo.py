"""The `keras-initdiag demo`: one deep ReLU MLP under every initialization regime.

The task is synthetic and built in code with a fixed seed (nothing is
downloaded): classification from features that are strongly correlated
(0.9) and whose scales span a factor of 10, an elongated input
distribution. The same 20-layer MLP is trained under each regime with SGD
and momentum, the setting of He et al. (2015), where a signal that vanishes
with depth stalls training; `InitDiagnostics` writes TensorBoard events to
`<logdir>/<regime>/initdiag`. The demo prints a comparison table, writes a
summary PNG (when matplotlib is installed), and says how to open the runs in
TensorBoard's initdiag dashboard. What it shows (tested): every regime
flagged at step 0 ends at the chance level or diverges, every unflagged one
trains, and whitening the inputs trains fastest.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import TextIO

import keras
import numpy as np

from keras_initdiag import initializers as inits
from keras_initdiag.callbacks import ADVISORY, InitDiagnostics
from keras_initdiag.diagnostics.report import DiagnosticReport, Flag, format_table
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

_DESCRIPTIONS = {
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
    """

    regime: str
    run_dir: str = ""
    reports: list[DiagnosticReport] = dataclasses.field(default_factory=list)
    losses: list[float] = dataclasses.field(default_factory=list)
    loss: float = math.nan
    accuracy: float = math.nan
    seconds: float = 0.0

    @property
    def initial_flags(self) -> list[Flag]:
        """Flags of the step-0 diagnosis."""
        return list(self.reports[0].flags) if self.reports else []

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
    result.seconds = time.perf_counter() - start
    return result


def flag_summary(flags: Sequence[Flag]) -> str:
    """Distinct flag kinds with counts, advisory ones marked `*`; `-` if none."""
    counts: dict[str, int] = {}
    for flag in flags:
        counts[flag.kind] = counts.get(flag.kind, 0) + 1
    if not counts:
        return "-"
    return ", ".join(
        f"{kind}{'*' if kind in ADVISORY else ''}" + (f" x{n}" if n > 1 else "")
        for kind, n in counts.items()
    )


def comparison_table(results: Sequence[RegimeResult]) -> str:
    """The regimes side by side as a fixed-width text table.

    Args:
        results: One `RegimeResult` per regime.

    Returns:
        The table; `*` marks advisory flags.
    """
    headers = [
        "regime",
        "init",
        "flags at step 0",
        "flags later",
        "loss",
        "acc",
        "time",
    ]
    rows = []
    for r in results:
        rows.append(
            [
                r.regime,
                _DESCRIPTIONS[r.regime],
                flag_summary(r.initial_flags),
                flag_summary(r.later_flags),
                f"{r.loss:.3g}" if math.isfinite(r.loss) else "nan",
                f"{r.accuracy:.2f}",
                f"{r.seconds:.1f}s",
            ]
        )
    table = format_table(headers, rows)
    return table + "\n* advisory flag (a suggestion, not a defect)"


def write_summary_png(results: Sequence[RegimeResult], path: str) -> bool:
    """Write the depth profiles at step 0 and the loss curves as a PNG.

    Args:
        results: The regime results.
        path: Where to write the PNG.

    Returns:
        `True` when written, `False` when matplotlib is not installed.
    """
    from keras_initdiag import plots

    ran = [r for r in results if r.reports]
    try:
        fig = plots.summary_figure(
            {r.regime: r.reports for r in ran}, {r.regime: r.losses for r in ran}
        )
    except ImportError:
        return False
    # The loss panel is the last one; a diverged regime's loss (1e7 or more)
    # would flatten every other curve on a linear axis.
    fig.axes[-1].set_yscale("log")
    with open(path, "wb") as f:
        f.write(plots.figure_to_png(fig, dpi=60))
    return True


def run_demo(
    logdir: str = "runs/demo",
    config: DemoConfig | None = None,
    regimes: Sequence[str] | None = None,
    out: TextIO | None = None,
) -> list[RegimeResult]:
    """Train the demo MLP under every regime and print the comparison.

    Args:
        logdir: Where the TensorBoard runs and `summary.png` go. Defaults to
            `"runs/demo"`.
        config: The sizes. Defaults to `DemoConfig()`.
        regimes: Which regimes to run, in order. Defaults to `REGIMES`.
        out: Stream for the progress and the table. Defaults to `sys.stdout`.

    Returns:
        One `RegimeResult` per regime.

    Raises:
        ValueError: For an unknown regime name or an unwritable `logdir`.

    Example:
    >>> from keras_initdiag.cli import demo
    >>> results = demo.run_demo("runs/demo", demo.QUICK, regimes=["zeros", "he"])
    """
    out = out or sys.stdout
    config = config or DemoConfig()
    regimes = list(REGIMES if regimes is None else regimes)
    unknown = [r for r in regimes if r not in REGIMES]
    if unknown or not regimes:
        raise ValueError(
            f"Argument `regimes` must name regimes from {list(REGIMES)}. "
            f"Received: regimes={regimes!r}"
        )
    try:
        os.makedirs(logdir, exist_ok=True)
    except OSError as e:
        raise ValueError(f"Cannot create the log directory {logdir!r}: {e}") from e
    earlier = [r for r in regimes if os.path.isdir(os.path.join(logdir, r, "initdiag"))]
    if earlier:
        print(
            f"Note: {logdir} already holds runs of {', '.join(earlier)}; their new "
            "events are added next to the old ones (the latest write of a step "
            "wins). Use a fresh --logdir for a clean comparison.",
            file=out,
        )
    x, y = make_data(config.samples, config.features, config.classes, config.seed)
    print(
        f"Demo: {config.depth} ReLU layers x {config.width} units, {config.samples} "
        f"samples of {config.features} correlated features (scales spanning 10x), "
        f"{config.classes} classes, SGD with momentum, {config.epochs} epoch(s) "
        "per regime.",
        file=out,
        flush=True,
    )
    results = []
    for i, regime in enumerate(regimes, start=1):
        tag = f"[{i}/{len(regimes)}] {regime:<15}"
        print(f"{tag} started ({_DESCRIPTIONS[regime]})", file=out, flush=True)
        result = run_regime(regime, x, y, config, logdir)
        results.append(result)
        print(
            f"{tag} done in {result.seconds:.1f}s: loss {result.loss:.3g}, "
            f"accuracy {result.accuracy:.2f}, step-0 flags: "
            f"{flag_summary(result.initial_flags)}",
            file=out,
            flush=True,
        )
    print("", file=out)
    print(comparison_table(results), file=out)
    png = os.path.join(logdir, "summary.png")
    if write_summary_png(results, png):
        print(f"\nSummary figure: {png}", file=out)
    else:
        print("\nSummary figure skipped: matplotlib is not installed.", file=out)
    print(
        'Dashboard: the "initdiag" tab of TensorBoard '
        "(http://localhost:6006/#keras_initdiag) shows every layer at every step "
        "as a heatmap, the signal propagation plot at any step and every flag.",
        file=out,
    )
    print(f"Explore the runs with:\n  tensorboard --logdir {logdir}", file=out)
    return results
