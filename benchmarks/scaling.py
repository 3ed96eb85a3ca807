"""How the diagnostics' cost grows with depth and width (issue 19).

ReLU MLPs as in `overhead.py` (He kernels, Adam 1e-4, batch 128, 64
features, 10 classes): a depth sweep at width 256 and a width sweep at
depth 20. Per model, in one process, warm:

- the train step (`train_on_batch`, median of `--reps`) and one compiled
  diagnosis, full and light (`Diagnoser.measure` on the same batch of 128,
  medians, interleaved with the step): their ratio to the step;
- the in-step path (`batch_gradients=True`'s recorder): 40-step epochs
  with and without it on twin models, interleaved over `--rounds`; the
  best epoch's wall and process CPU time per step (both cores), and their
  difference.

Writes `results/scaling.json` and prints a markdown table.

Usage:
    python benchmarks/scaling.py
    python benchmarks/scaling.py --quick     # two tiny models (the test)
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
import instep_profile as instep  # noqa: E402
from overhead import timed  # noqa: E402

from keras_initdiag.diagnostics.engine import Diagnoser  # noqa: E402

OUT = HERE / "results" / "scaling.json"
#: (depth, width) of the published run: depth at width 256, width at depth 20.
MODELS = ((10, 256), (20, 256), (40, 256), (80, 256), (20, 64), (20, 1024))
QUICK = ((2, 16), (4, 16))


def measure(depth: int, width: int, reps: int, rounds: int) -> dict:
    """One model's row (see the module docstring)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(instep.BATCH * instep.STEPS, 64)).astype("float32")
    y = rng.integers(0, 10, instep.BATCH * instep.STEPS)
    xb, yb = x[: instep.BATCH], y[: instep.BATCH]
    model = instep.mlp(depth, width)
    diagnoser = Diagnoser(model, loss="sparse_categorical_crossentropy")
    while diagnoser.probe.traces == 0:  # the eager calls, then the compile
        diagnoser.measure(xb, yb, validate=False)
    model.train_on_batch(xb, yb)
    tasks = {
        "step": lambda: model.train_on_batch(xb, yb),
        "full": lambda: diagnoser.measure(xb, yb, validate=False),
        "light": lambda: diagnoser.measure(xb, yb, validate=False, searches=False),
    }
    times = {key: [] for key in tasks}
    for _ in range(reps):
        for key, task in tasks.items():
            times[key].append(timed(task) * 1e3)
    medians = {key: float(np.median(v)) for key, v in times.items()}
    runs = {v: instep.setup(v, width=width, depth=depth) for v in ("plain", "full")}
    epochs = {v: [] for v in runs}
    for _ in range(rounds + 1):  # the first round traces and warms up
        for variant, (net, arm) in runs.items():
            start, cpu = time.perf_counter(), time.process_time()
            net.fit(x, y, batch_size=instep.BATCH, epochs=1, verbose=0, callbacks=[arm])
            epochs[variant].append(
                (
                    (time.perf_counter() - start) / instep.STEPS * 1e3,
                    (time.process_time() - cpu) / instep.STEPS * 1e3,
                )
            )
    best = {v: tuple(min(c) for c in zip(*e[1:])) for v, e in epochs.items()}
    return {
        "depth": depth,
        "width": width,
        "params": int(model.count_params()),
        "tapped": len(diagnoser.tapset.taps),
        "step_ms": medians["step"],
        "full_ms": medians["full"],
        "light_ms": medians["light"],
        "full_ratio": medians["full"] / medians["step"],
        "light_ratio": medians["light"] / medians["step"],
        "fit_ms_per_step": best["plain"][0],
        "instep_ms_per_step": best["full"][0],
        "instep_wall_ratio": best["full"][0] / best["plain"][0],
        "instep_extra_cpu_ms": best["full"][1] - best["plain"][1],
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| depth x width | params | train step ms | full diagnosis ms (/ step) "
        "| light ms (/ step) | fit ms/step | in-step ms/step (wall ratio) "
        "| in-step extra CPU ms/step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['depth']} x {r['width']} | {r['params']:,} | {r['step_ms']:.1f} "
            f"| {r['full_ms']:.1f} ({r['full_ratio']:.2f}x) "
            f"| {r['light_ms']:.1f} ({r['light_ratio']:.2f}x) "
            f"| {r['fit_ms_per_step']:.2f} "
            f"| {r['instep_ms_per_step']:.2f} ({r['instep_wall_ratio']:.2f}x) "
            f"| {r['instep_extra_cpu_ms']:+.2f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two tiny models")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--output", default=None, help=f"default {OUT}")
    args = parser.parse_args(argv)
    models, reps, rounds = MODELS, args.reps, args.rounds
    if args.quick:
        models, reps, rounds = QUICK, 2, 1
    rows = [measure(d, w, reps, rounds) for d, w in models]
    print(markdown(rows))
    if args.output or not args.quick:
        out = pathlib.Path(args.output or OUT)
        out.write_text(json.dumps({"models": rows}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
