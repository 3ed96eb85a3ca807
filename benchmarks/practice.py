"""The fourth held-out grid: networks trained as practitioners train them.

The first three held-out grids (`heldout.py`) train at a fixed learning rate
for 160 steps, and judge "trained" by the loss at step 160. Users train with
a learning-rate schedule: a warmup from 0, then a decay. This grid scores
the package as it ships, under such a schedule and over a longer budget, on
networks nothing was ever chosen on:

- the held-out grid's archs, widths, peak rates, activations, inits and
  optimizers (`heldout.ordered`), with their own seed and task (`FOURTH`);
- the rate: `keras.optimizers.schedules.CosineDecay(0.0, BUDGET - WARMUP,
  warmup_target=peak, warmup_steps=WARMUP)`, a linear warmup from 0 over
  the first tenth of the budget, then a cosine decay to 0 (the usual
  transformer recipe, and issue 17's);
- the budget: `BUDGET` steps (30 epochs), three times the other grids';
  the outcome is `trainability.failed` at its end;
- the callback attached as a user attaches it: `InitDiagnostics` with its
  default schedule (`update_freq="epoch"`), probing the first 128 training
  samples, `on_flag="ignore"` so that every run trains to the end, and
  every flag recorded with whether `on_flag` would act on it (`midfit.py`'s
  `FlagLog`), with the live early verdict.

Each record also holds what `verdict.py` scores offline, from the step the
callback's watch starts (`early.warm_start`: half-way up the warmup): the
step-0 flags (the callback's first diagnosis), each step's loss and rate,
and every layer's relative update (`heldout.StepRecorder`, unsampled).

Usage:
    python benchmarks/practice.py train --shard 0/2   # and 1/2; resumable
    python benchmarks/practice.py judge               # results/practice_judge.md
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import pathlib
import sys
import time
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))  # the sibling scripts, also when imported

import heldout  # noqa: E402
import keras  # noqa: E402
import midfit  # noqa: E402
import numpy as np  # noqa: E402
import trainability as tr  # noqa: E402
import verdict as scoring  # noqa: E402

from keras_initdiag.diagnostics import verdict as vd  # noqa: E402

OUT = tr.RESULTS / "practice_runs.jsonl"
JUDGE = tr.RESULTS / "practice_judge.md"
#: Seed, task and depths of the fourth grid (6 archs x 2 depths x 2
#: activations x 2 optimizers x 7 inits = 336 networks).
FOURTH = {"seed": 4, "task_seed": 4, "depths": (8, 18)}
#: Optimizer steps per network: 30 epochs of 16 batches.
BUDGET = 480
#: Steps of linear warmup from a rate of 0: a tenth of the budget.
WARMUP = 48


@dataclasses.dataclass(frozen=True)
class ScheduledConfig(heldout.HeldoutConfig):
    """A held-out config trained under a warmup and cosine decay."""

    @property
    def key(self) -> str:
        """E.g. ``mlp-d8-relu-he-adam-s4-w128-lr0.333-t4-cos480``."""
        return f"{super().key}-cos{BUDGET}"

    def rate(self):
        """The schedule: warmup from 0 to the peak rate, then cosine to 0."""
        return keras.optimizers.schedules.CosineDecay(
            0.0,
            BUDGET - WARMUP,
            warmup_target=self.learning_rate,
            warmup_steps=WARMUP,
        )


def grid() -> list[ScheduledConfig]:
    """The fourth grid, in the held-out grids' run order."""
    return [ScheduledConfig(**dataclasses.asdict(c)) for c in heldout.ordered(**FOURTH)]


def measure_one(config: ScheduledConfig, task, cache) -> dict:
    """Train one network with the callback attached; the JSON-able record."""
    x, y = task.inputs(config.arch)[: tr.PROBE], task.y[: tr.PROBE]
    diagnostics, log = midfit.attach(x, y, update_freq="epoch")
    recorder = heldout.StepRecorder(start=None)
    run = tr.train(
        config, task, BUDGET, cache=cache, callbacks=[diagnostics, log, recorder]
    )
    encode = tr._finite_or_string
    first = [
        f
        for f in log.flags
        if f.step == 0 and f.kind not in ("update_ratio", "verdict")
    ]
    run.update(
        failed=tr.failed(heldout.decoded(run)),
        learning_rate=config.learning_rate,
        warmup=WARMUP,
        watch_start=recorder.first,
        step0_flags=[heldout.flag_record(f) for f in first],
        step_losses=[encode(v) for v in recorder.losses],
        step_learning_rates=recorder.learning_rates,
        update_ratios={
            name: [encode(v) for v in ratios]
            for name, ratios in recorder.update_ratios.items()
        },
        **log.record(),
    )
    return run


def train(configs: Sequence[ScheduledConfig], out: pathlib.Path = OUT) -> int:
    """Train the configs not yet in `out`, in order; how many."""
    done = {r.get("key") for r in tr.load_runs(out)}
    todo = [c for c in configs if c.key not in done]
    print(f"{len(configs)} configs, {len(todo)} to train", flush=True)
    task = tr.make_task(n=tr.N_TRAIN, seed=FOURTH["task_seed"])
    cache = tr.ModelCache(steps_per_execution=1)
    for i, config in enumerate(todo, 1):
        start = time.perf_counter()
        record = measure_one(config, task, cache)
        record["seconds"] = round(time.perf_counter() - start, 3)
        tr.append_run(out, record)
        acted = sorted({f["kind"] for f in record["flags"] if f["acted"]})
        risk = (record["verdict"] or {}).get("risk")
        print(
            f"[{i}/{len(todo)}] {config.key:52s} "
            f"{tr._fmt(tr.final_loss(heldout.decoded(record)))} "
            f"{'FAILED' if record['failed'] else 'trained'} risk {risk} "
            f"acted {acted} ({record['seconds']:.0f} s)",
            flush=True,
        )
    return len(todo)


def judge(path: pathlib.Path = OUT, out: pathlib.Path = JUDGE) -> list[str]:
    """Score the shipped package on the grid; print and write `out`."""
    records = scoring.load(path)
    baseline_model, baseline_cut, _, _ = scoring.fitted(
        scoring.training(), scoring.BASELINE_STEPS, scoring.LOSS_FEATURES
    )
    offline = dict(zip((r["key"] for r in records), scoring.module_scores(records)))
    starts = sorted({r["watch_start"] for r in records})
    lines = [
        "# The fourth held-out grid: warmup, cosine decay, a 480-step budget "
        "(`benchmarks/practice.py judge`)",
        "",
        f"{len(records)} networks; outcome after {BUDGET} steps; the watch "
        f"starts at step {starts} (half-way up the {WARMUP}-step warmup). "
        f"Verdict as shipped (threshold {vd.RISK_THRESHOLD:.3g}); the loss-only "
        f"baseline over the {scoring.BASELINE_STEPS} steps from the same start, "
        f"fitted on the training grids (threshold {baseline_cut:.3g}).",
        "",
        *scoring.table(
            "Fourth held-out grid (never used to fit or to choose anything)",
            records,
            baseline_model,
            baseline_cut,
        ),
        *midfit.judge_heldout_lines(
            records,
            offline,
            grid="practice",
            setting=f"{len(records)} networks, each trained once with "
            '`InitDiagnostics()` attached (default `update_freq="epoch"`, '
            f"every 16 steps): {sum(not r['failed'] for r in records)} trained, "
            f"{sum(bool(r['failed']) for r in records)} failed.",
        ),
        "",
        *_by_budget(records),
        "",
        *_misses(records),
    ]
    print("\n".join(lines))
    out.write_text("\n".join(lines) + "\n")
    return lines


#: Epochs at whose end `_by_budget` reads the outcome (16 steps each).
BUDGET_EPOCHS = (6, 10, 20, 30)


def failed_by(record: dict, epoch: int) -> bool:
    """Whether the run had not trained by the end of `epoch` (1-based).

    Read from the mean training loss of that epoch (`loss_curve`), against
    `trainability.FAIL_FRACTION` of chance; a run stopped before it (a
    non-finite loss) failed.
    """
    curve = [tr._from_json_number(v) for v in record["loss_curve"]]
    if record["nonfinite"] or len(curve) < epoch:
        return True
    loss = curve[epoch - 1]
    return not math.isfinite(loss) or loss > tr.FAIL_FRACTION * record["entropy"]


def _by_budget(records: list[dict]) -> list[str]:
    """What `on_flag` acts on, scored against the outcome at shorter budgets."""
    acted = np.asarray([midfit.acted_on(r) for r in records])
    lines = [
        "What `on_flag` acts on (any step), against the outcome at the end of "
        "each budget (the mean training loss of that epoch against half the "
        "chance loss; the calibration grids' budget is 160 steps):",
        "",
        "| budget (steps) | failed | TP | FP | FN | precision | recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for epoch in BUDGET_EPOCHS:
        y = np.asarray([failed_by(r, epoch) for r in records])
        tp, fp = int((acted & y).sum()), int((acted & ~y).sum())
        fn = int((~acted & y).sum())
        lines.append(
            f"| {16 * epoch} | {int(y.sum())} | {tp} | {fp} | {fn} "
            f"| {tp / max(tp + fp, 1):.3f} | {tp / max(tp + fn, 1):.3f} |"
        )
    return lines


def _misses(records: list[dict]) -> list[str]:
    """Every failed run nothing acted on, and how far its loss got."""
    lines = ["Failed runs nothing acted on (final loss / chance, live risk):", ""]
    for r in records:
        if r["failed"] and not midfit.acted_on(r):
            ratio = tr.final_loss(r) / r["entropy"]
            risk = (r["verdict"] or {}).get("risk", math.nan)
            lines.append(f"- {r['key']}: {ratio:.2f}, risk {float(risk):.2f}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `train` and `judge` (see the module)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train_cmd = commands.add_parser("train", help="train the grid (resumable)")
    train_cmd.add_argument(
        "--shard", default="0/1", help="i/n: every n-th group of 7 inits, from i"
    )
    train_cmd.add_argument("--only", nargs="+", metavar="SUBSTRING")
    train_cmd.add_argument("--out", type=pathlib.Path, default=OUT)
    commands.add_parser("judge", help=judge.__doc__)
    args = parser.parse_args(argv)
    if args.command == "judge":
        judge()
        return 0
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    index, count = (int(v) for v in args.shard.split("/"))
    configs = [c for i, c in enumerate(grid()) if (i // 7) % count == index]
    train(tr.select(configs, args.only), args.out)
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
