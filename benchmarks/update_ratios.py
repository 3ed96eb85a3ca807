"""Do the first updates tell which networks will train? Calibrates `update_ratio`.

`InitDiagnostics` measures each layer's update-to-weight ratio over the first
training steps (`callbacks/updates.py`): `||W_after - W_before|| /
||W_before||` per step, the median of the first 3 steps, from the weights the
optimizer wrote. This script measures exactly that, with the callback itself,
on every network of the trainability grid (`trainability.py`): each network
is rebuilt with its initial weights (checked against the training record's
SHA-256) and trained for 3 steps on the grid's own first batches, with its
own optimizer, `InitDiagnostics(log_dir=None)` attached. The ratios are then
set against the grid's outcomes (did the network train in 160 steps?).

The question it answers: where a step-0 measurement cannot see a problem (a
BatchNorm net is invariant to its kernels' scale, so a kernel 100x too small
looks healthy at step 0, yet every update is 100x too large relative to it),
do the first updates show it, and at which thresholds?

Usage:
    python benchmarks/update_ratios.py measure          # ~20 min, resumable
    python benchmarks/update_ratios.py judge
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys
import time
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import keras_initdiag  # noqa: E402
from keras_initdiag.diagnostics import rules  # noqa: E402

HERE = pathlib.Path(__file__).parent
OUT = HERE / "results" / "update_ratios.jsonl"
#: Training steps the callback measures (`callbacks.updates.STEPS`) plus one.
STEPS = 4


sys.path.insert(0, str(HERE))  # the sibling scripts, also when imported
import trainability as tr  # noqa: E402


def measure(runs_path: pathlib.Path, out: pathlib.Path, only=None) -> int:
    """Measure the first updates of every grid network; append JSON lines."""
    runs = tr.load_runs(runs_path)
    done = {r["key"] for r in tr.load_runs(out)} if out.exists() else set()
    todo = [
        r
        for r in runs
        if r["key"] not in done and (not only or any(s in r["key"] for s in only))
    ]
    print(f"{len(runs)} runs, {len(todo)} to measure", flush=True)
    task = tr.make_task(n=tr.N_TRAIN, seed=tr.TASK_SEED)
    cache = tr.ModelCache(steps_per_execution=1)
    for i, run in enumerate(todo, 1):
        config = tr.RunConfig.from_record(run)
        start = time.perf_counter()
        model = cache.get(config)
        if tr.weights_digest(model) != run["init_weights_sha256"]:
            raise RuntimeError(f"{config.key}: initial weights differ from training")
        x = task.inputs(config.arch)
        callback = keras_initdiag.InitDiagnostics(
            log_dir=None,
            probe_data=(x[: tr.PROBE], task.y[: tr.PROBE]),
            on_flag="ignore",
            verbose=0,
        )
        data = tr._dataset(task, config.arch, tr.BATCH_SIZE, config.seed)
        model.fit(
            data.take(STEPS), epochs=1, shuffle=False, verbose=0, callbacks=[callback]
        )
        ratios = {k: tr._finite_or_string(v) for k, v in callback.update_ratios.items()}
        tr.append_run(out, {"key": config.key, "update_ratios": ratios})
        print(
            f"[{i}/{len(todo)}] {config.key:36s} ({time.perf_counter() - start:.1f} s)",
            flush=True,
        )
    return len(todo)


def _extremes(record: dict) -> tuple[float, float]:
    """The smallest and the largest finite ratio of a network's layers."""
    values = [tr._from_json_number(v) for v in record["update_ratios"].values()]
    finite = [v for v in values if math.isfinite(v) and v > 0]
    return (min(finite), max(finite)) if finite else (math.nan, math.nan)


def judge(runs_path: pathlib.Path, reports_path: pathlib.Path, out: pathlib.Path):
    """Print how the update ratios separate trained from failed networks."""
    runs = {r["key"]: r for r in tr.load_runs(runs_path)}
    reports = {r["key"]: tr.report_from_record(r) for r in tr.load_runs(reports_path)}
    measured = {r["key"]: r for r in tr.load_runs(out)}
    if not reports:
        print(
            f"No step-0 reports at {reports_path}: run `python "
            "benchmarks/trainability.py diagnose` first; until then the "
            "step-0 columns count no flags."
        )
    rows = []
    for key, record in measured.items():
        run, report = runs[key], reports.get(key)
        step0 = bool(report is not None and tr.serious_flags(report))
        low, high = _extremes(record)
        rows.append((key, tr.failed(run), step0, low, high))
    print(f"{len(rows)} networks measured")
    print()
    print("| group | n | median of the smallest ratio | median of the largest |")
    print("|---|---|---|---|")
    for name, keep in (
        ("trained", lambda r: not r[1]),
        ("failed", lambda r: r[1]),
        ("failed, no step-0 flag", lambda r: r[1] and not r[2]),
        ("trained, no step-0 flag", lambda r: not r[1] and not r[2]),
    ):
        chosen = [r for r in rows if keep(r)]
        lows = [r[3] for r in chosen if math.isfinite(r[3])]
        highs = [r[4] for r in chosen if math.isfinite(r[4])]
        print(
            f"| {name} | {len(chosen)} | {np.median(lows):.2e} | "
            f"{np.median(highs):.2e} |"
        )
    print()
    print(
        "| update_ratio_low | update_ratio_high | flagged & failed | "
        "flagged, trained | with step-0 flags: precision | recall |"
    )
    print("|---|---|---|---|---|---|")
    defaults = rules.Thresholds()
    for low_t, high_t in (
        (defaults.update_ratio_low, defaults.update_ratio_high),
        (1e-6, 1.0),
        (1e-5, 1.0),
        (1e-5, 0.5),
        (1e-6, 0.3),
        (1e-4, 1.0),
    ):
        hits = [r for r in rows if r[3] < low_t or r[4] > high_t]
        tp = sum(r[1] for r in hits)
        union = [r for r in rows if r[2] or r[3] < low_t or r[4] > high_t]
        utp = sum(r[1] for r in union)
        failed = sum(r[1] for r in rows)
        print(
            f"| {low_t:g} | {high_t:g} | {tp} | {len(hits) - tp} | "
            f"{utp / max(len(union), 1):.3f} | {utp / max(failed, 1):.3f} |"
        )
    print()
    for key, failed_, step0, low, high in sorted(rows, key=lambda r: r[4]):
        if failed_ and not step0:
            print(f"missed at step 0: {key} ratios {low:.2e} .. {high:.2e}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `measure` and `judge` (see the module)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    measure_cmd = commands.add_parser("measure", help="3 steps per grid network")
    measure_cmd.add_argument("--only", nargs="+", metavar="SUBSTRING")
    commands.add_parser("judge", help="the ratios against the outcomes")
    for command in commands.choices.values():
        command.add_argument("--runs", type=pathlib.Path, default=tr.DEFAULT_OUT)
        command.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args(argv)
    if args.command == "measure":
        measure(args.runs, args.out, args.only)
    else:
        judge(args.runs, tr.DEFAULT_REPORTS, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
