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

`run_demo` drives it: `regimes` builds and trains each model, `output`
renders the comparison table and the PNG.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

from keras_initdiag.callbacks import ADVISORY as ADVISORY
from keras_initdiag.cli.demo.output import comparison_table as comparison_table
from keras_initdiag.cli.demo.output import flag_summary as flag_summary
from keras_initdiag.cli.demo.output import write_summary_png as write_summary_png
from keras_initdiag.cli.demo.regimes import DESCRIPTIONS
from keras_initdiag.cli.demo.regimes import QUICK as QUICK
from keras_initdiag.cli.demo.regimes import REGIMES as REGIMES
from keras_initdiag.cli.demo.regimes import DemoConfig as DemoConfig
from keras_initdiag.cli.demo.regimes import RegimeResult as RegimeResult
from keras_initdiag.cli.demo.regimes import build_model as build_model
from keras_initdiag.cli.demo.regimes import make_data as make_data
from keras_initdiag.cli.demo.regimes import make_whitening as make_whitening
from keras_initdiag.cli.demo.regimes import run_regime as run_regime
from keras_initdiag.layers import Whitening as Whitening


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
        print(f"{tag} started ({DESCRIPTIONS[regime]})", file=out, flush=True)
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
