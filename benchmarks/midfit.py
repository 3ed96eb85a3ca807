"""Do flags raised during training predict failure? Calibrates the mid-fit flags.

The thresholds of `InitDiagnostics` were chosen at step 0 (`trainability.py`),
but it diagnoses through the whole fit. This script trains grid networks
again exactly as the grid does (`trainability.train`: same initial weights,
160 steps, batches in the same order) with `InitDiagnostics(update_freq=16)`
attached, probing the first 128 training samples, and records every flag of
every diagnosis (steps 0, 16, ..., 160; `update_ratio` after the first
updates) with the outcome (`trainability.failed`), checked against the
committed grid record. `judge` counts, per kind, the runs that trained and
failed with it after step 0, and how many of those step 0 already flagged.

As in the grid, `steps_per_execution=8`: the callback sees every 8th batch
end, so the first-update ratios are means over steps 0-8, 8-16 and 16-24.
TensorFlow runs on one thread here; the grid ran on several, and a deep net
near the 0.69-nat line can end on the other side of it (the callback changes
nothing: three runs retrained without it ended at the same loss). One traced
model serves a group (`ModelCache`), so every layer reports the group's first
initializer (zeros): `init_mismatch`, advisory, cannot fire.

Published-healthy fits (`healthy`, `CASES`): the overhead benchmark's 20 x 256
He ReLU MLP (`overhead.mlp`), batch 128, diagnosed at every step.

The held-out grid (`--grid heldout`): its 504 networks trained again as
`heldout.py` trains them (task seed 1, one step per execution), scored as
the package acts: the flags `on_flag` acts on after step 0 (with the live
early verdict), and the calibration runs' in-sample candidate, backward
`vanishing` at 3e-4 after step 0, out of sample. The committed records
(`results/midfit_heldout_runs.jsonl`) were measured with the verdict's first
fit (commit c726dfa, calibration grid only), and so was the judge's
comparison of the live verdict with the recorded steps; re-judged with a
later fit, that comparison compares two fits. The third held-out grid
(`--grid heldout3`, task seed 3) is measured the same way with the
verdict's third fit (`results/midfit_heldout3_runs.jsonl`).

Usage:
    python benchmarks/midfit.py measure --minutes 50    # resumable
    python benchmarks/midfit.py measure --grid heldout --shard 0/2  # and 1/2
    python benchmarks/midfit.py judge --grid heldout
    python benchmarks/midfit.py measure --grid heldout3 --shard 0/2  # and 1/2
    python benchmarks/midfit.py judge --grid heldout3
    python benchmarks/midfit.py healthy
    python benchmarks/midfit.py judge
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import itertools
import math
import os
import pathlib
import sys
import time
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))  # the sibling scripts, also when imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import trainability as tr  # noqa: E402

import keras_initdiag  # noqa: E402
from keras_initdiag.diagnostics import verdict as vd  # noqa: E402
from keras_initdiag.diagnostics.judgement import verdict_flags  # noqa: E402
from keras_initdiag.diagnostics.rules import (  # noqa: E402
    ADVISORY,
    FLAG_KINDS,
    Thresholds,
    is_advisory,
)

OUT = tr.RESULTS / "midfit_runs.jsonl"
JUDGE = tr.RESULTS / "midfit_judge.md"
#: The held-out grid's networks (`heldout.py`), trained again diagnosed.
HELDOUT_OUT = tr.RESULTS / "midfit_heldout_runs.jsonl"
HELDOUT_JUDGE = tr.RESULTS / "midfit_heldout_judge.md"
#: The third held-out grid's (`heldout.py train --grid heldout3`).
HELDOUT3_OUT = tr.RESULTS / "midfit_heldout3_runs.jsonl"
HELDOUT3_JUDGE = tr.RESULTS / "midfit_heldout3_judge.md"
#: The mid-fit backward-vanishing threshold the calibration runs suggested
#: (in-sample, 9 runs); scored on the held-out grid, never acted on.
CANDIDATE_BACKWARD_VANISHING = 3e-4
UPDATE_FREQ = 16
#: The subset measured, cheapest first: (arch, depth) blocks of the grid,
#: each with both activations, all 7 inits and both optimizers.
PLAN = (("mlp", 6), ("mlp", 16), ("mlp_bn", 6), ("mlp_bn", 16), ("cnn", 6))
PLAN += (("cnn", 16), ("mlp", 32), ("cnn_bn", 6), ("cnn_bn", 16), ("mlp_bn", 32))
PLAN += (("cnn", 32), ("mlp", 2), ("mlp_bn", 2), ("cnn", 2), ("cnn_bn", 2))


def plan() -> list[tr.RunConfig]:
    """The configs of `PLAN`, in its order."""
    return [c for arch, depth in PLAN for c in tr.grid(archs=(arch,), depths=(depth,))]


class FlagLog(keras.callbacks.Callback):
    """Every diagnosis of the `InitDiagnostics` placed before it in `fit`.

    Reads the callback's latest report after each of its hooks, so no report
    is lost to the history's bound; the `update_ratio` flags (counted, never
    in a report) are read at the end.
    """

    def __init__(self, diagnostics: keras_initdiag.InitDiagnostics):
        super().__init__()
        self.diagnostics = diagnostics
        self.losses: dict[int, float] = {}
        self.flags: list = []

    def _read(self, *args, **kwargs):
        report = self.diagnostics.history.last
        if report is not None and report.step not in self.losses:
            self.losses[report.step] = report.loss
            self.flags += report.flags

    on_train_begin = on_train_batch_end = _read

    def on_train_end(self, logs=None):
        self._read()
        self.flags += [f for f in self.diagnostics.flags if f.kind == "update_ratio"]
        verdict = self.diagnostics.verdict
        if verdict is not None and not any(f.kind == "verdict" for f in self.flags):
            self.flags += verdict_flags(verdict, self.model.name)

    def record(self) -> dict:
        """The diagnosed steps, the probe loss at each, every flag (with
        whether `on_flag` would act on it) and the early verdict."""
        steps = sorted(self.losses)
        verdict = self.diagnostics.verdict
        return {
            "diagnosed": steps,
            "probe_loss": [tr._finite_or_string(self.losses[s]) for s in steps],
            "flags": [
                {"kind": f.kind, "layer": f.layer, "step": f.step}
                | {"value": tr._finite_or_string(f.value)}
                | {"threshold": tr._finite_or_string(f.threshold)}
                | {"acted": not is_advisory(f) and not f.pending}
                for f in sorted(self.flags, key=lambda f: f.step)
            ],
            "verdict": None
            if verdict is None
            else {
                "step": verdict.step,
                "risk": tr._finite_or_string(verdict.risk),
                "failing": verdict.failing,
            },
        }


def attach(x, y, update_freq: int) -> tuple[keras_initdiag.InitDiagnostics, FlagLog]:
    """A quiet `InitDiagnostics` on the probe `(x, y)` and its `FlagLog`."""
    diagnostics = keras_initdiag.InitDiagnostics(
        log_dir=None,
        probe_data=(x, y),
        update_freq=update_freq,
        on_flag="ignore",
        verbose=0,
    )
    return diagnostics, FlagLog(diagnostics)


#: The fields of a grid record that `trainability.failed` reads, kept as is.
OUTCOME = ("entropy", "final_loss", "final_loss_batch_stats", "nonfinite")


def measure_one(
    config, task, grid_run, cache, steps=tr.STEPS, batch_size=tr.BATCH_SIZE
):
    """Train `config` as the grid does, diagnosed; the JSON-able record."""
    x = task.inputs(config.arch)
    diagnostics, log = attach(x[: tr.PROBE], task.y[: tr.PROBE], UPDATE_FREQ)
    run = tr.train(config, task, steps, batch_size, cache, callbacks=[diagnostics, log])
    fields = ("key", *(f.name for f in dataclasses.fields(type(config))), *OUTCOME)
    record = {k: run[k] for k in fields}
    record["failed"] = tr.failed({k: tr._from_json_number(run[k]) for k in OUTCOME})
    if grid_run is not None:
        same = run["init_weights_sha256"] == grid_run["init_weights_sha256"]
        record["grid_failed"] = tr.failed(grid_run)
        record["grid_final_loss"] = tr._finite_or_string(tr.final_loss(grid_run))
        record["agrees"] = same and record["failed"] == record["grid_failed"]
    record.update(log.record(), steps_done=run["steps_done"], seconds=run["seconds"])
    return record


def measure(
    out=OUT,
    configs=None,
    minutes=math.inf,
    grid_path=tr.DEFAULT_OUT,
    task_seed=tr.TASK_SEED,
    steps_per_execution=8,
):
    """Measure `configs` (the plan) not in `out` until `minutes` pass; how many.

    The held-out grid (`heldout`) trains as `heldout.py` did: its own task
    seed, one step per execution (the callback sees every batch end, so the
    early verdict is given live).
    """
    configs = plan() if configs is None else configs
    done = {r["key"] for r in tr.load_runs(out)}
    grid_runs = {r["key"]: r for r in tr.load_runs(grid_path)}
    todo = [c for c in configs if c.key not in done]
    print(f"{len(configs)} configs, {len(todo)} to measure", flush=True)
    task = tr.make_task(n=tr.N_TRAIN, seed=task_seed)
    cache = tr.ModelCache(steps_per_execution=steps_per_execution)
    deadline = time.monotonic() + 60 * minutes
    for i, config in enumerate(todo, 1):
        if time.monotonic() > deadline:
            print(f"time budget spent: {len(todo) - i + 1} left", flush=True)
            return i - 1
        record = measure_one(config, task, grid_runs.get(config.key), cache)
        tr.append_run(out, record)
        kinds = sorted({f["kind"] for f in record["flags"] if f["step"] > 0})
        print(
            f"[{i}/{len(todo)}] {config.key:34s} failed={record['failed']} "
            f"agrees={record.get('agrees')} mid-fit {kinds} "
            f"({record['seconds']:.0f} s)",
            flush=True,
        )
    return len(todo)


# -- published-healthy fits -----------------------------------------------------


#: The published-healthy fits: labels (random, or a random linear teacher's),
#: features, Adam's learning rate, samples, epochs. The third is the overhead
#: benchmark's own setting (one epoch of 120 steps), where issue 17 saw "dead".
CASES = {
    "random_labels": ("random", 32, 1e-3, 2048, 8),
    "learnable": ("teacher", 32, 1e-3, 2048, 8),
    "overhead_setting": ("random", 64, 1e-4, 128 * 120, 1),
}


def healthy(out=OUT, cases=tuple(CASES), seeds=(1,), depth=20, width=256):
    """The 20 x 256 He ReLU MLP (`overhead.mlp`), batch 128, every step."""
    import overhead

    done = {r["key"] for r in tr.load_runs(out)}
    for name, seed in itertools.product(cases, seeds):
        labels, features, lr, samples, epochs = CASES[name]
        key = f"healthy-mlp{depth}x{width}-{name}-s{seed}"
        if key in done:
            continue
        start = time.perf_counter()
        x, y = overhead.data(
            "mlp", samples, argparse.Namespace(features=features, classes=10)
        )
        if labels == "teacher":
            y = np.argmax(x @ np.random.default_rng(1).normal(size=(features, 10)), 1)
        keras.utils.set_random_seed(seed)
        model = overhead.mlp(depth, width, features, 10)
        model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy")
        diagnostics, log = attach(x[: tr.PROBE], y[: tr.PROBE], update_freq=1)
        model.fit(
            x, y, batch_size=128, epochs=epochs, verbose=0, callbacks=[diagnostics, log]
        )
        final = float(model.evaluate(x, y, batch_size=512, verbose=0))
        freq = np.bincount(y)[np.bincount(y) > 0] / len(y)
        record = {"key": key, "case": name, "seed": seed, "final_loss": final}
        record["entropy"] = float(-(freq * np.log(freq)).sum())
        record.update(log.record(), seconds=round(time.perf_counter() - start, 1))
        tr.append_run(out, record)
        kinds = collections.Counter(f["kind"] for f in record["flags"] if f["step"] > 0)
        print(f"{key}: loss {final:.3f}, mid-fit {dict(kinds)}", flush=True)


# -- judging ------------------------------------------------------------------


def _kinds(record: dict, after_zero: bool) -> set[str]:
    """The flag kinds of a record, after step 0 or at step 0."""
    return {f["kind"] for f in record["flags"] if (f["step"] > 0) == after_zero}


def flagged_at_zero(record: dict) -> bool:
    """Whether step 0 already raised a non-advisory flag."""
    return bool(_kinds(record, after_zero=False) - set(ADVISORY))


def count(records: list[dict]) -> dict:
    """Per kind fired after step 0: runs trained / failed with it, and step 0's.

    Returns `{kind: [trained, trained flagged at step 0, failed, failed
    flagged at step 0]}` over the grid records (those with an `arch`).
    """
    table = collections.defaultdict(lambda: [0, 0, 0, 0])
    for record in records:
        if "arch" not in record:
            continue
        column = 2 * bool(record["failed"])
        for kind in _kinds(record, after_zero=True):
            table[kind][column] += 1
            table[kind][column + 1] += flagged_at_zero(record)
    order = {kind: i for i, kind in enumerate(FLAG_KINDS)}
    return {k: table[k] for k in sorted(table, key=lambda k: order.get(k, len(order)))}


def per_step(records: list[dict]) -> dict:
    """`{step: {kind: [trained, failed]}}`: runs with the kind at that step."""
    steps = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0]))
    for record in records:
        if "arch" not in record:
            continue
        seen = {(f["step"], f["kind"]) for f in record["flags"] if f["step"] > 0}
        for step, kind in seen:
            steps[step][kind][bool(record["failed"])] += 1
    return {step: dict(steps[step]) for step in sorted(steps)}


def judge_lines(records: list[dict]) -> list[str]:
    """The judge's report, as Markdown lines."""
    grid = [r for r in records if "arch" in r]
    trained = [r for r in grid if not r["failed"]]
    blocks = collections.Counter(f"{r['arch']}-d{r['depth']}" for r in grid)
    lines = [
        "# Mid-fit flags against the outcomes (`benchmarks/midfit.py judge`)",
        "",
        f"{len(grid)} grid runs ({', '.join(f'{k}: {n}' for k, n in blocks.items())}):"
        f" {len(trained)} trained, {len(grid) - len(trained)} failed.",
    ]
    same = sum(r.get("agrees") is True for r in grid)
    disagree = [r["key"] for r in grid if r.get("agrees") is False]
    lines.append(
        f"Outcome as in the committed grid record: {same}; "
        f"differs: {len(disagree)} {disagree or ''}"
    )
    alarms = [r for r in trained if _kinds(r, True) - set(ADVISORY)]
    new = [r for r in alarms if not flagged_at_zero(r)]
    missed = [r for r in grid if r["failed"] and not flagged_at_zero(r)]
    caught = [r for r in missed if _kinds(r, True) - set(ADVISORY)]
    lines += [
        "",
        f"**Non-advisory flags after step 0 on runs that trained: {len(alarms)} of "
        f"{len(trained)}** ({len(new)} of them quiet at step 0). Failed runs "
        f"quiet at step 0: {len(missed)}, of which flagged after it: {len(caught)}"
        f" {[r['key'] for r in caught] or ''}.",
        "",
        "| kind after step 0 | trained | of which flagged at step 0 | failed | "
        "of which flagged at step 0 |",
        "|---|---|---|---|---|",
    ]
    for kind, row in count(grid).items():
        label = f"{kind} (advisory)" if kind in ADVISORY else kind
        lines.append(f"| {label} | {' | '.join(str(n) for n in row)} |")
    table = per_step(grid)
    kinds = list(count(grid))
    lines += ["", "Runs with the kind at each step (trained / failed):", ""]
    lines += [f"| step | {' | '.join(kinds)} |", "|---|" + "---|" * len(kinds)]
    for step, row in table.items():
        cells = [("{}/{}".format(*row[k]) if k in row else "") for k in kinds]
        lines.append(f"| {step} | {' | '.join(cells)} |")
    lines += ["", "Runs that trained, with non-advisory flags after step 0:", ""]
    for r in alarms:
        later = [f for f in r["flags"] if f["step"] > 0]
        first = {f["kind"]: f for f in reversed(later) if f["kind"] not in ADVISORY}
        where = ", ".join(
            f"{k} at {f['layer']} from step {f['step']} ({f['value']:.3g} vs "
            f"{f['threshold']:.3g})"
            for k, f in first.items()
        )
        zero = "flagged at step 0" if flagged_at_zero(r) else "quiet at step 0"
        lines.append(f"- {r['key']} (loss {tr.final_loss(r):.3f}, {zero}): {where}")
    lines += _healthy_lines([r for r in records if "case" in r])
    return lines


def _healthy_lines(records: list[dict]) -> list[str]:
    """What fired during the published-healthy fits."""
    lines = ["", "Published-healthy fits (20 x 256 He ReLU MLP), every step:", ""]
    for r in records:
        by_kind = collections.defaultdict(list)
        for f in r["flags"]:
            if f["step"] > 0:
                by_kind[f["kind"]].append((f["step"], f["layer"]))
        fired = "; ".join(
            f"{k} at {len({s for s, _ in v})} diagnoses (steps {v[0][0]}-{v[-1][0]}"
            f", {', '.join(sorted({layer for _, layer in v}))})"
            for k, v in by_kind.items()
        )
        lines.append(
            f"- {r['case']} {CASES[r['case']]} seed {r['seed']}: loss "
            f"{r['final_loss']:.3f} (label entropy "
            f"{r['entropy']:.3f}), {len(r['diagnosed'])} diagnoses; after step 0: "
            f"{fired or 'nothing'}"
        )
    return lines


def acted_on(record: dict) -> bool:
    """Whether `on_flag` would act on any of the run's flags, at any step."""
    return any(f.get("acted") for f in record["flags"])


def judge_heldout_lines(
    records: list[dict],
    offline: dict | None = None,
    grid: str = "heldout",
) -> list[str]:
    """The held-out mid-fit report: what `on_flag` acts on after step 0.

    `offline`: `{key: risk}` from the held-out grid's recorded steps, to
    compare the live verdict with (`offline_risks`). `grid`: its name.
    """
    trained = [r for r in records if not r["failed"]]
    failed = [r for r in records if r["failed"]]
    same = sum(r.get("agrees") is True for r in records)
    differs = [r["key"] for r in records if r.get("agrees") is False]

    def acted_later(r):
        return [f for f in r["flags"] if f["step"] > 0 and f.get("acted")]

    alarms = [r for r in trained if acted_later(r)]
    stopped = [r for r in trained if acted_on(r)]
    caught = [r for r in failed if acted_on(r)]
    setting = (
        f"{len(records)} held-out networks trained again as `heldout.py` "
        f"trains them, with `InitDiagnostics(update_freq={UPDATE_FREQ})`: "
        f"{len(trained)} trained, {len(failed)} failed. Outcome as in "
        f"`{HELDOUT_GRIDS[grid][1].name}`: {same}; differs: {len(differs)} "
        f"{differs or ''}"
    )
    lines = [
        f"# Mid-fit flags on the held-out grid (`benchmarks/midfit.py judge "
        f"--grid {grid}`)",
        "",
        setting,
        "",
        f"**Flags `on_flag` acts on after step 0, on runs that trained: "
        f"{len(alarms)} of {len(trained)}** (every rule as the package ships "
        "it: advisory kinds and pending flags excluded, the failing verdict "
        f"included). At any step, step 0 too: {len(stopped)} of {len(trained)} "
        f"trained runs and {len(caught)} of {len(failed)} failed ones have a "
        'flag acted on (what `on_flag="stop"` would stop).',
        "",
        "| kind after step 0 | acted on, trained | acted on, failed | advice, "
        "trained | advice, failed |",
        "|---|---|---|---|---|",
    ]
    table = collections.defaultdict(lambda: [0, 0, 0, 0])
    for r in records:
        seen = {(f["kind"], bool(f.get("acted"))) for f in r["flags"] if f["step"] > 0}
        for kind, acted in seen:
            table[kind][(0 if acted else 2) + bool(r["failed"])] += 1
    order = {kind: i for i, kind in enumerate(FLAG_KINDS)}
    for kind in sorted(table, key=lambda k: order.get(k, len(order))):
        lines.append(f"| {kind} | {' | '.join(str(n) for n in table[kind])} |")
    lines += ["", "Trained runs with a flag acted on after step 0:", ""]
    for r in alarms:
        where = ", ".join(
            f"{f['kind']} at {f['layer']} step {f['step']} ({f['value']:.3g} vs "
            f"{f['threshold']:.3g})"
            for f in acted_later(r)[:3]
        )
        lines.append(f"- {r['key']} (loss {tr.final_loss(r):.3f}): {where}")
    # The in-sample candidate: backward vanishing after step 0 at 3e-4.
    backward = Thresholds().gradient_vanishing

    def candidate(r):
        return any(
            f["step"] > 0
            and f["kind"] == "vanishing"
            and f["threshold"] == backward
            and f["value"] <= CANDIDATE_BACKWARD_VANISHING
            for f in r["flags"]
        )

    quiet = [r for r in failed if not acted_on(r)]
    lines += [
        "",
        f"Candidate (chosen in-sample on the calibration runs): backward "
        f"`vanishing` after step 0 at <= {CANDIDATE_BACKWARD_VANISHING:g} acts. "
        f"Here it would fire on {sum(map(candidate, trained))} trained and "
        f"{sum(map(candidate, failed))} failed runs; of the {len(quiet)} failed "
        f"runs nothing acted on, it would catch {sum(map(candidate, quiet))}.",
    ]
    judged = [r for r in records if r.get("verdict")]
    failing = [r for r in judged if r["verdict"]["failing"]]
    lines += [
        "",
        f"The live verdict (the callback's own, in `fit`): given on "
        f"{len(judged)} runs; failing on {sum(r['failed'] for r in failing)} "
        f"failed and {sum(not r['failed'] for r in failing)} trained runs.",
    ]
    if offline:
        pairs = [
            (float(r["verdict"]["risk"]), offline[r["key"]])
            for r in judged
            if r["key"] in offline
        ]
        live, recorded = (np.asarray(v) for v in zip(*pairs))
        cut = vd.RISK_THRESHOLD
        lines.append(
            f"Against the risk `verdict.py score` computes from the held-out "
            f"grid's recorded steps ({len(pairs)} runs): median |difference| "
            f"{np.median(np.abs(live - recorded)):.3g}, largest "
            f"{np.max(np.abs(live - recorded)):.3g}; the same side of the "
            f"threshold on {int(((live >= cut) == (recorded >= cut)).sum())}."
        )
    return lines


def offline_risks(path=None) -> dict:
    """`{key: risk}`: the verdict from a held-out grid's recorded steps."""
    import verdict as scoring

    records = scoring.load(path or scoring.HELDOUT)
    return dict(zip((r["key"] for r in records), scoring.module_scores(records)))


def _heldout_grids() -> dict:
    """`{name: (configs, grid records, task seed, out, judge)}`."""
    import heldout

    return {
        "heldout": (
            heldout.ordered,
            heldout.OUT,
            heldout.TASK_SEED,
            HELDOUT_OUT,
            HELDOUT_JUDGE,
        ),
        "heldout3": (
            heldout.third,
            heldout.THIRD_OUT,
            heldout.THIRD["task_seed"],
            HELDOUT3_OUT,
            HELDOUT3_JUDGE,
        ),
    }


HELDOUT_GRIDS = _heldout_grids()


def judge(path=OUT, out=JUDGE, lines_of=None) -> list[str]:
    """Print the judge's report (`judge_lines`) and write it to `out`."""
    lines = (lines_of or judge_lines)(tr.load_runs(path))
    print("\n".join(lines))
    if out is not None:
        out.write_text("\n".join(lines) + "\n")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `measure`, `healthy` and `judge` (see the module)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    measure_cmd = commands.add_parser("measure", help="the plan's grid runs")
    measure_cmd.add_argument("--only", nargs="+", metavar="SUBSTRING")
    measure_cmd.add_argument("--minutes", type=float, default=math.inf)
    measure_cmd.add_argument(
        "--grid", choices=("calibration", *HELDOUT_GRIDS), default="calibration"
    )
    measure_cmd.add_argument(
        "--shard", default="0/1", help="i/n: every n-th group of 7 inits, from i"
    )
    healthy_cmd = commands.add_parser("healthy", help="published-healthy MLP fits")
    healthy_cmd.add_argument("--cases", nargs="+", default=list(CASES))
    healthy_cmd.add_argument("--seeds", nargs="+", type=int, default=[1])
    judge_cmd = commands.add_parser("judge", help="the flags against the outcomes")
    judge_cmd.add_argument(
        "--grid", choices=("calibration", *HELDOUT_GRIDS), default="calibration"
    )
    args = parser.parse_args(argv)
    # One core each: the machine is shared. Before TensorFlow runs anything.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    held_out = HELDOUT_GRIDS.get(getattr(args, "grid", None))
    if args.command == "measure" and held_out:
        ordered, grid_path, task_seed, out, _ = held_out
        index, count_ = (int(v) for v in args.shard.split("/"))
        configs = [c for i, c in enumerate(ordered()) if (i // 7) % count_ == index]
        measure(
            out,
            tr.select(configs, args.only),
            args.minutes,
            grid_path,
            task_seed,
            steps_per_execution=1,
        )
    elif args.command == "measure":
        measure(configs=tr.select(plan(), args.only), minutes=args.minutes)
    elif args.command == "healthy":
        healthy(cases=args.cases, seeds=args.seeds)
    elif held_out:
        _, grid_path, _, out, judged = held_out
        risks = offline_risks(grid_path)
        judge(out, judged, lambda r: judge_heldout_lines(r, risks, args.grid))
    else:
        judge()
    return 0


if __name__ == "__main__":
    sys.exit(main())
