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
- the callback attached as a user attaches it: `InitDiagnostics` with a
  diagnosis at every epoch end (`update_freq="epoch"`, the default until
  `"auto"`, which passes over some epoch ends on short epochs: every grid
  is recorded alike), probing the first 128 training
  samples, `on_flag="ignore"` so that every run trains to the end, and
  every flag recorded with whether `on_flag` would act on it (`midfit.py`'s
  `FlagLog`), with the live early verdict.

Each record also holds what `verdict.py` scores offline, from the step the
callback's watch starts (`early.warm_start`: half-way up the warmup): the
step-0 flags (the callback's first diagnosis), each step's loss and rate,
and every layer's relative update (`heldout.StepRecorder`, unsampled).

The fifth and sixth held-out grids (`--grid fifth|sixth`: 800 and 640
steps, one depth, their own seed and task) are trained the same way; they
score the budget-aware verdict and step-0 kinds, offline from the records
(`judge`). `practice_judge.md` is the fourth grid's score as it shipped
then (commit 3b07728); the fourth grid is fitted on since.

Usage:
    python benchmarks/practice.py train --shard 0/2   # and 1/2; resumable
    python benchmarks/practice.py train --grid sixth --shard 0/2   # and 1/2
    python benchmarks/practice.py judge --grid sixth  # results/sixth_judge.md
"""

from __future__ import annotations

import argparse
import dataclasses
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
#: The later held-out grids: name -> (seed and task, depth, budget in
#: steps), 168 networks each, the warmup a tenth of the budget.
#: - fifth: 800 steps (50 epochs), a budget no verdict was fitted at;
#:   recorded to score the budget-aware verdict fitted on the others.
#: - sixth: recorded after the fifth was read, to score what changed after
#:   it (budget-aware step-0 kinds).
#: - seventh: recorded before the verdict's second look was fitted (on the
#:   grids read before) and read only after.
#: - eighth: recorded before any verdict change of the ninth session was
#:   chosen, to be read only to score it.
#: - ninth: recorded at the end of the ninth session and left unread; read
#:   once to score `log_pace` (tenth session).
#: - tenth: recorded at the start of the tenth session, before the ninth was
#:   read, to score whatever changes after it; read once to score the
#:   seventh fit (eleventh session).
#: - eleventh: recorded in the eleventh session with the seventh fit
#:   installed, after the tenth was read, to score the next change; read
#:   once to score the eighth fit (twelfth session).
#: - twelfth: recorded in the twelfth session with the eighth fit
#:   installed, after the eleventh was read, to score the next change; read
#:   once to score the ninth fit (thirteenth session).
#: - thirteenth: recorded in the thirteenth session with the ninth fit
#:   installed, after the twelfth was read, to score the next change (two
#:   runs' outcomes were seen in a log tail while it was recorded: the
#:   ReLU He and orthogonal MLPs under SGD at 3x, 32 wide); read once to
#:   score the tenth fit (fourteenth session).
#: - fourteenth: recorded in the fourteenth session with the tenth fit
#:   installed, after the thirteenth was read, to score the next change;
#:   read once to score the eleventh fit (fourteenth session).
#: - fifteenth: recorded in the fourteenth session with the eleventh fit
#:   installed, after the fourteenth was read, to score the next change;
#:   read once to score the twelfth fit (`log_settling`, fifteenth session;
#:   withdrawn).
#: - sixteenth: recorded in the fifteenth session with the twelfth fit
#:   installed, after the fifteenth was read, to score the next change; read
#:   once to score the thirteenth fit (fifteenth session).
#: - seventeenth: recorded in the fifteenth session with the thirteenth fit
#:   installed, after the sixteenth was read, to score the next change; read
#:   once to score the fourteenth fit (sixteenth session).
#: - eighteenth: recorded in the sixteenth session with the thirteenth fit
#:   installed, before the seventeenth was read, to score the change after
#:   the one the seventeenth scores; read once to score the fifteenth fit
#:   (the residual step-0 family, sixteenth session).
#: - nineteenth: recorded in the sixteenth session with the fifteenth fit
#:   installed, after the eighteenth was read, to score the next change;
#:   read once to score the sixteenth fit (seventeenth session); fitted on
#:   since the seventeenth fit (eighteenth session).
#: - twentieth: recorded in the seventeenth session with the fifteenth fit
#:   installed, before the nineteenth was read, to score the change after
#:   the one the nineteenth scores; read once to score the seventeenth fit
#:   (eighteenth session).
#: - twenty-first: recorded in the eighteenth session with the sixteenth
#:   fit installed, before the twentieth was read, to score the change
#:   after the one the twentieth scores (a shorter budget than any since
#:   the fourth grid's 480 steps); read once to score the seventeenth fit a
#:   second time (nineteenth session: no fit changed).
#: - twenty-second: recorded in the nineteenth session with the
#:   seventeenth fit installed, before the twenty-first was read, to score
#:   the next change (two runs' outcomes were seen in a log tail).
LATER = {
    "fifth": (5, 12, 800),
    "sixth": (6, 10, 640),
    "seventh": (7, 14, 560),
    "eighth": (8, 16, 720),
    "ninth": (9, 20, 560),
    "tenth": (10, 18, 640),
    "eleventh": (11, 22, 608),
    "twelfth": (12, 12, 704),
    "thirteenth": (13, 20, 672),
    "fourteenth": (14, 24, 576),
    "fifteenth": (15, 26, 528),
    "sixteenth": (16, 16, 624),
    "seventeenth": (17, 18, 592),
    "eighteenth": (18, 14, 656),
    "nineteenth": (19, 12, 544),
    "twentieth": (20, 10, 608),
    "twenty-first": (21, 12, 512),
    "twenty-second": (22, 16, 576),
}
#: Each grid's configs, budget, warmup and records.
GRIDS = {
    "practice": (FOURTH, BUDGET, WARMUP, OUT),
    **{
        name: (
            {"seed": seed, "task_seed": seed, "depths": (depth,)},
            budget,
            budget // 10,
            tr.RESULTS / f"{name}_runs.jsonl",
        )
        for name, (seed, depth, budget) in LATER.items()
    },
}


@dataclasses.dataclass(frozen=True)
class ScheduledConfig(heldout.HeldoutConfig):
    """A held-out config trained under a warmup and cosine decay."""

    budget: int = BUDGET
    warmup: int = WARMUP

    @property
    def key(self) -> str:
        """E.g. ``mlp-d8-relu-he-adam-s4-w128-lr0.333-t4-cos480``."""
        return f"{super().key}-cos{self.budget}"

    def rate(self):
        """The schedule: warmup from 0 to the peak rate, then cosine to 0."""
        return keras.optimizers.schedules.CosineDecay(
            0.0,
            self.budget - self.warmup,
            warmup_target=self.learning_rate,
            warmup_steps=self.warmup,
        )


def grid(name: str = "practice") -> list[ScheduledConfig]:
    """The grid `name` (`GRIDS`), in the held-out grids' run order."""
    configs, budget, warmup, _ = GRIDS[name]
    return [
        ScheduledConfig(**dataclasses.asdict(c), budget=budget, warmup=warmup)
        for c in heldout.ordered(**configs)
    ]


def measure_one(config: ScheduledConfig, task, cache) -> dict:
    """Train one network with the callback attached; the JSON-able record."""
    x, y = task.inputs(config.arch)[: tr.PROBE], task.y[: tr.PROBE]
    diagnostics, log = midfit.attach(x, y, update_freq="epoch")
    recorder = heldout.StepRecorder(start=None)
    run = tr.train(
        config, task, config.budget, cache=cache, callbacks=[diagnostics, log, recorder]
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
        warmup=config.warmup,
        budget=config.budget,
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
    (task_seed,) = {c.task_seed for c in configs} or {FOURTH["task_seed"]}
    task = tr.make_task(n=tr.N_TRAIN, seed=task_seed)
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


#: How each later grid was used, in its judgement's title: unseen, unless
#: said otherwise here.
USE = {
    "fifth": "scored the first budget-aware fit, at commit 0132600; read "
    "before the step-0 kinds learnt the budget; fitted on since the seventh fit",
    "sixth": "read before `log_recover` and `log_pace` were chosen; fitted on "
    "since the seventh fit",
    "seventh": "read before `log_pace` was chosen; fitted on since the seventh fit",
    "eighth": "read before `log_pace` was chosen; fitted on since the seventh fit",
    "ninth": "read once to score `log_pace`; fitted on since the seventh fit",
    "tenth": "read once to score the seventh fit (four runs' outcomes were "
    "seen in a log while it was recorded); fitted on since the eighth fit",
    "eleventh": "read once to score the eighth fit (three runs' outcomes "
    "were seen in a log while it was recorded); fitted on since the ninth fit",
    "twelfth": "read once to score the ninth fit; fitted on since the tenth fit",
    "thirteenth": "read once to score the tenth fit (two runs' outcomes "
    "were seen in a log while it was recorded); fitted on since the eleventh fit",
    "fourteenth": "read once to score the eleventh fit; fitted on since the "
    "twelfth fit",
    "fifteenth": "read once to score the twelfth fit; fitted on since the "
    "thirteenth fit",
    "sixteenth": "read once to score the thirteenth fit; fitted on since the "
    "fourteenth fit",
    "seventeenth": "read once to score the fourteenth fit; fitted on since the "
    "fifteenth fit",
    "eighteenth": "read once to score the fifteenth fit (three runs' outcomes "
    "were seen in a log while it was recorded); fitted on since the sixteenth fit",
    "nineteenth": "read once to score the sixteenth fit; fitted on since the "
    "seventeenth fit",
    "twentieth": "never fitted on; read once to score the seventeenth fit (one "
    "run's outcome, a zero-initialized MLP's, was seen in a log while it was "
    "recorded)",
    "twenty-first": "never fitted on; read once to score the seventeenth fit "
    "a second time (three runs' outcomes, ReLU MLPs under SGD at 3x, 32 wide, "
    "were seen in a log while it was recorded)",
    "twenty-second": "never used to fit or to choose anything (two runs' "
    "outcomes, ReLU BatchNorm MLPs under SGD at a third, 128 wide, He and "
    "orthogonal, training, were seen in a log while it was recorded)",
}
#: Per grid: the judgement's file, its title, and the epochs (of
#: `trainability.EPOCH_STEPS` steps)
#: at whose end `_by_budget` reads the outcome. `practice_judge.md` scored
#: the verdict as shipped before the budget-aware fit (commit 3b07728's
#: `judge`); the fourth grid is fitted on since, and `verdict.py score`
#: scores it in-sample.
JUDGES = {
    name: (
        tr.RESULTS / f"{name}_judge.md",
        f"{name.capitalize()} held-out grid "
        f"({USE.get(name, 'never used to fit or to choose anything')})",
        (6, 10, 20, 30, budget // tr.EPOCH_STEPS),
    )
    for name, (_, _, budget) in LATER.items()
}


def judge(name: str = "fifth") -> list[str]:
    """Score the package on the grid `name`; print and write its file.

    The verdict is the installed module's, from the recorded steps (offline:
    on the fourth grid it agreed with the live one on every run, largest
    difference 0.033), judged for the grid's budget. What `on_flag` acts on
    is a step-0 flag that does not wait, or a failing verdict.
    """
    _, budget, warmup, path = GRIDS[name]
    out, title, epochs = JUDGES[name]
    records = scoring.load(path)
    baseline_model, baseline_cut = scoring.baseline()
    risks, certain, acted = scoring.acted_on(records)
    starts = sorted({r["watch_start"] for r in records})
    lines = [
        f"# {title.split(' (')[0]}: warmup, cosine decay, a {budget}-step budget "
        f"(`benchmarks/practice.py judge --grid {name}`)",
        "",
        f"{len(records)} networks; outcome after {budget} steps; the watch "
        f"starts at step {starts} (half-way up the {warmup}-step warmup). "
        f"The installed verdict (threshold {vd.RISK_THRESHOLD:.3g}), judged "
        f"for {budget} steps; the loss-only baseline over the "
        f"{scoring.BASELINE_STEPS} steps from the same start, fitted as the "
        f"verdict (threshold {baseline_cut:.3g}).",
        "",
        *scoring.table(title, records, baseline_model, baseline_cut),
        *_midfit(records, certain, acted),
        "",
        *_by_budget(records, acted, epochs),
        "",
        *_misses(records, acted, risks),
    ]
    print("\n".join(lines))
    out.write_text("\n".join(lines) + "\n")
    return lines


def _midfit(records: list[dict], certain, acted) -> list[str]:
    """Trained runs `on_flag` acts on after step 0: by the verdict (offline),
    or by a flag of a later diagnosis (live; the verdict's own left out)."""
    trained = np.asarray([not r["failed"] for r in records])
    by_verdict = trained & acted & ~certain
    later = [
        r["key"]
        for r, ok in zip(records, trained)
        if ok
        and any(
            f["acted"] and f["step"] > 0 and f["kind"] != "verdict" for f in r["flags"]
        )
    ]
    keys = [r["key"] for r, hit in zip(records, by_verdict) if hit]
    return [
        "## Mid-fit flags on runs that trained",
        "",
        f"{int(trained.sum())} runs trained. Acted on after step 0 by a failing "
        f"verdict: **{len(keys)}**; by a later diagnosis's flag: "
        f"**{len(later)}**.",
        "",
        *(f"- verdict: {k}" for k in keys),
        *(f"- later flag: {k}" for k in later),
    ]


def _by_budget(records: list[dict], acted, epochs) -> list[str]:
    """What `on_flag` acts on, scored against the outcome at shorter budgets."""
    lines = [
        "What `on_flag` acts on (any step), against the outcome at the end of "
        "each budget (the mean training loss of that epoch against half the "
        "chance loss; the verdict is judged for the grid's whole budget):",
        "",
        "| budget (steps) | failed | TP | FP | FN | precision | recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for epoch in epochs:
        y = np.asarray([tr.failed_by(r, epoch) for r in records])
        tp, fp = int((acted & y).sum()), int((acted & ~y).sum())
        fn = int((~acted & y).sum())
        lines.append(
            f"| {tr.EPOCH_STEPS * epoch} | {int(y.sum())} | {tp} | {fp} | {fn} "
            f"| {tp / max(tp + fp, 1):.3f} | {tp / max(tp + fn, 1):.3f} |"
        )
    return lines


def _misses(records: list[dict], acted, risks) -> list[str]:
    """Every failed run nothing acted on, and every trained one acted on."""
    lines = ["Failed runs nothing acted on (final loss / chance, risk):", ""]
    for r, hit, risk in zip(records, acted, risks):
        if r["failed"] and not hit:
            ratio = tr.final_loss(r) / r["entropy"]
            lines.append(f"- {r['key']}: {ratio:.2f}, risk {risk:.2f}")
    lines += ["", "Trained runs acted on (final loss / chance, risk):", ""]
    for r, hit, risk in zip(records, acted, risks):
        if not r["failed"] and hit:
            ratio = tr.final_loss(r) / r["entropy"]
            lines.append(f"- {r['key']}: {ratio:.2f}, risk {risk:.2f}")
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
    train_cmd.add_argument("--grid", choices=tuple(GRIDS), default="practice")
    train_cmd.add_argument("--out", type=pathlib.Path, help="default: the grid's")
    judge_cmd = commands.add_parser("judge", help="score the grid")
    judge_cmd.add_argument("--grid", choices=tuple(JUDGES), default="fifth")
    args = parser.parse_args(argv)
    if args.command == "judge":
        judge(args.grid)
        return 0
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    index, count = (int(v) for v in args.shard.split("/"))
    configs = [c for i, c in enumerate(grid(args.grid)) if (i // 7) % count == index]
    train(tr.select(configs, args.only), args.out or GRIDS[args.grid][3])
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
