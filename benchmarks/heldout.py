"""The held-out grid: networks no threshold was chosen on, with per-step records.

Every default threshold comes from the calibration grid
(`benchmarks/trainability.py`), so its precision and recall there are
in-sample. This grid scores them, and the early verdict built from the first
steps, on networks that differ in everything the calibration fixed:

- seed (weights, batch order): 1, not 0;
- task: `make_task(seed=1)`, not 0: another rank-2 teacher (projections,
  angle), other image maps, other samples;
- width and learning rate: narrow (32 units, 8 filters) at 3x the rate, or
  wide (128 units, 32 filters) at 1/3 of it, not 64 units / 16 filters at
  SGD 0.01 (momentum 0.9) / Adam 1e-3;
- depths 4, 12, 28, not 2, 6, 16, 32, 50;
- archs: the calibration's four and the residual `resmlp`, `resmlp_bn`.

Unchanged, so that outcomes mean the same: 1024 samples, batch 64, 160 steps,
ReLU and tanh, the seven kernel inits, the outcome (`trainability.failed`:
non-finite, or a final training loss above half the label entropy). The
residual archs (`trainability.RESIDUAL_ARCHS`) have a stem layer to the width
and `depth / 2` blocks h <- act(h + f(h)), f = layer, act, layer (each layer
-> BatchNormalization in `resmlp_bn`): the post-activation ResNet block.
Conv nets get 8 and 32 filters (0.5x and 2x, like the units) because 128
filters would make a 28-layer conv net cost ~16x the calibration's.

Width and rate go together, because a narrow net at 1/3 of the rate is not
learnable in 160 steps even when healthy (`check`, depth 2, He ReLU, task
seed 1): 32 units / 8 filters at 1/3 ended at 0.44-0.81 nats with SGD (3
of the 6 archs above 0.69) and 0.98-1.26 with Adam (all 6; Adam moves each
weight by about the rate, so a narrow layer's function moves less per
step). Healthy depth-2 nets (He ReLU, Glorot tanh) of the two pairs kept end
at 0.04-0.28 (narrow, 3x) and 0.15-0.48 (wide, 1/3; median of all 48:
0.20), under half the entropy (0.69) on every arch and optimizer.

Grid: 6 archs x 3 depths x 2 activations x 2 optimizers x 7 inits = 504
networks. The (width, rate) pair alternates with depth, activation, arch
and optimizer (the parity of their indices' sum): each (arch, depth,
activation) has one pair under SGD and the other under Adam. A group (all
but the init) shares one traced model (`trainability.ModelCache`) and trains
all seven inits in a row.

Order (`ordered`): six rounds of twelve groups; each round has every arch
with both optimizers (SGD and Adam alternating from one arch to the next;
an arch's two optimizers in different cells), and the (depth, activation)
cell rotates by one per round, so the first 84 runs already cover every arch
x optimizer x init at two or three depths; the rest refine.

Each record is the calibration's (`trainability.train`) plus what the early
verdict needs:
- `step0_flags`: `diagnose()` on the fresh network (first 128 samples) before
  training: kind, layer, value, threshold, `serious` (a `trainability.SERIOUS`
  kind) and `advisory` (`rules.is_advisory`); None, with `step0_error`, if
  the diagnosis raised;
- `step_losses`: the training loss of each of the first `LOSS_STEPS` steps,
  recovered from the running means Keras logs (`step_losses`);
- `step_learning_rates`: the optimizer's `learning_rate` before each of them;
- `update_ratios`: per layer, `||W_after - W_before|| / ||W_before||` of the
  main kernel at each of the first `UPDATE_STEPS` steps, from the weights the
  optimizer wrote (`UpdateTracker`, unsampled); NaN for an all-zero kernel.
`fit` runs one step per call (`steps_per_execution=1`) so that every batch
end is seen.

Usage:
    python benchmarks/heldout.py train --minutes 70    # resumable
    python benchmarks/heldout.py train --grid heldout2 --shard 0/2  # and 1/2
    python benchmarks/heldout.py train --grid heldout3 --shard 0/2  # and 1/2
    python benchmarks/heldout.py train --only resmlp_bn-d4 --minutes 5
    python benchmarks/heldout.py check                  # depth-2 learnability
    python benchmarks/heldout.py summary                # runs and outcomes so far
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import os
import pathlib
import statistics
import sys
import time
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from keras_initdiag.callbacks.early import warm_start  # noqa: E402
from keras_initdiag.callbacks.updates import LearningRate, UpdateTracker  # noqa: E402
from keras_initdiag.diagnostics import rules  # noqa: E402
from keras_initdiag.diagnostics.taps import build_taps  # noqa: E402

HERE = pathlib.Path(__file__).parent


sys.path.insert(0, str(HERE))  # the sibling scripts, also when imported
import trainability as tr  # noqa: E402

OUT = HERE / "results" / "heldout_runs.jsonl"
#: The calibration grid's first steps (`calibration`).
CALIBRATION_OUT = HERE / "results" / "early_calibration_runs.jsonl"
#: Steps trained per calibration network: the recorded ones, whole epochs.
CALIBRATION_STEPS = 64
SEED = 1
TASK_SEED = 1
ARCHS = ("mlp", "mlp_bn", "cnn", "cnn_bn", "resmlp", "resmlp_bn")
DEPTHS = (4, 12, 28)
#: (narrow, wide): half and twice the calibration's 64 units / 16 filters.
MLP_WIDTHS = (32, 128)
CNN_WIDTHS = (8, 32)
#: The learning-rate factor of each width (narrow, wide), see the docstring.
LR_SCALES = (3.0, 1 / 3)
#: Steps whose training loss and learning rate are recorded.
LOSS_STEPS = 64
#: Steps whose per-layer relative updates are recorded.
UPDATE_STEPS = 32
#: The second held-out grid (`train --grid heldout2`): once the early verdict
#: was refitted on the calibration grid and this module's first grid, it is
#: scored here. Its own seed, task and depths; the same archs, widths, rates,
#: activations, inits and optimizers (336 networks).
SECOND = {"seed": 2, "task_seed": 2, "depths": (8, 20)}
SECOND_OUT = HERE / "results" / "heldout2_runs.jsonl"
#: The third held-out grid (`train --grid heldout3`): the second grid was read
#: while the verdict's thresholds were reconsidered (per family), so the
#: changed verdict is scored here. Its own seed, task and depths again.
THIRD = {"seed": 3, "task_seed": 3, "depths": (10, 24)}
THIRD_OUT = HERE / "results" / "heldout3_runs.jsonl"


@dataclasses.dataclass(frozen=True)
class HeldoutConfig(tr.RunConfig):
    """A calibration config with its own width, learning rate and task."""

    seed: int = SEED
    width: int = MLP_WIDTHS[0]
    lr_scale: float = 1.0
    task_seed: int = TASK_SEED

    allowed_archs = tr.ARCHS + tr.RESIDUAL_ARCHS

    def __post_init__(self):
        super().__post_init__()
        if self.width < 1 or not self.lr_scale > 0:
            raise ValueError(
                f"width and lr_scale must be positive, got {self.width}, "
                f"{self.lr_scale}"
            )

    @property
    def key(self) -> str:
        """E.g. ``resmlp_bn-d12-relu-he-adam-s1-w128-lr3-t1``."""
        return f"{super().key}-w{self.width}-lr{self.lr_scale:.3g}-t{self.task_seed}"

    @property
    def graph_key(self) -> tuple:
        return (*super().graph_key, self.width, self.lr_scale)

    @property
    def units(self) -> int:
        return self.width

    @property
    def learning_rate(self) -> float:
        return tr.LEARNING_RATES[self.optimizer] * self.lr_scale


def calibration() -> list[HeldoutConfig]:
    """The calibration grid (`trainability.grid`) as configs of this module.

    Same networks, seed, task, width and rate as `trainability_runs.jsonl`;
    `train --grid calibration` records their first steps (`CALIBRATION_STEPS`)
    and takes each outcome from that file (`with_calibration_outcome`), so
    that the early verdict can be calibrated on them.
    """
    return [
        HeldoutConfig(
            *dataclasses.astuple(c),
            width=tr.CNN_FILTERS if tr.is_conv(c.arch) else tr.MLP_WIDTH,
            lr_scale=1.0,
            task_seed=tr.TASK_SEED,
        )
        for c in tr.grid()
    ]


def with_calibration_outcome(record: dict, calibration: dict) -> dict:
    """`record` (a truncated run) with the outcome of its calibration run.

    The two runs start from the same weights (checked by their digests) and
    see the same batches, so the first steps are the calibration run's own.
    """
    key = record["key"].rsplit("-w", 1)[0]
    full = calibration.get(key)
    if full is None or full["init_weights_sha256"] != record["init_weights_sha256"]:
        raise RuntimeError(f"{record['key']}: no calibration run with its weights")
    encode = tr._finite_or_string
    record.update(
        calibration_key=key,
        failed=tr.failed(full),
        final_loss=encode(full["final_loss"]),
        final_over_entropy=encode(full["final_over_entropy"]),
        nonfinite=full["nonfinite"],
        outcome_steps=full["steps"],
    )
    return record


def _cells(depths: Sequence[int] = DEPTHS) -> list[tuple[int, str]]:
    """The (depth, activation) cells; consecutive ones differ in both.

    With an even number of depths the activation also shifts once per pass
    over the depths, so that every (depth, activation) pair comes once.
    """
    n = len(depths)
    shift = (lambda k: k // n) if n % 2 == 0 else (lambda k: 0)
    return [(depths[k % n], tr.ACTIVATIONS[(k + shift(k)) % 2]) for k in range(2 * n)]


def group(
    arch: str,
    optimizer: str,
    depth: int,
    activation: str,
    seed: int = SEED,
    task_seed: int = TASK_SEED,
    depths: Sequence[int] = DEPTHS,
) -> list:
    """The seven configs (one per init) of one cell; its width and rate."""
    f = ARCHS.index(arch)
    d, a = depths.index(depth), tr.ACTIVATIONS.index(activation)
    pair = (d + a + f + tr.OPTIMIZERS.index(optimizer)) % 2
    width = (CNN_WIDTHS if tr.is_conv(arch) else MLP_WIDTHS)[pair]
    lr_scale = LR_SCALES[pair]
    return [
        HeldoutConfig(
            arch, depth, activation, init, optimizer, seed, width, lr_scale, task_seed
        )
        for init in tr.INITS
    ]


def ordered(
    seed: int = SEED, task_seed: int = TASK_SEED, depths: Sequence[int] = DEPTHS
) -> list[HeldoutConfig]:
    """The whole grid in run order (module docstring): rounds of groups."""
    cells = _cells(depths)
    configs = []
    for round_ in range(len(cells)):
        for flip in range(2):
            for f, arch in enumerate(ARCHS):
                # An arch's two optimizers: another depth and activation.
                cell = cells[(f + round_ + flip) % len(cells)]
                optimizer = tr.OPTIMIZERS[(f + flip) % 2]
                configs += group(arch, optimizer, *cell, seed, task_seed, depths)
    return configs


def second() -> list[HeldoutConfig]:
    """The second held-out grid (`SECOND`), in run order."""
    return ordered(**SECOND)


def third() -> list[HeldoutConfig]:
    """The third held-out grid (`THIRD`), in run order."""
    return ordered(**THIRD)


# -- per-step records ----------------------------------------------------------


def step_losses(running_means: Sequence[float]) -> list[float]:
    """Each step's loss from the running means of one epoch.

    Keras logs, at each batch end, the mean loss of the epoch so far; with
    equal batches m_k = (l_1 + ... + l_k) / k, so l_k = k m_k - (k - 1) m_(k-1).

    Example:
    >>> step_losses([2.0, 1.5, 1.0])
    [2.0, 1.0, 0.0]
    """
    losses, previous = [], 0.0
    for k, mean in enumerate(running_means, 1):
        losses.append(k * float(mean) - (k - 1) * previous)
        previous = float(mean)
    return losses


class StepRecorder(keras.callbacks.Callback):
    """Per-step training loss, learning rate and relative updates.

    Needs one step per batch end (`steps_per_execution=1`). The updates are
    measured by `UpdateTracker` over every entry of each main kernel.

    Args:
        loss_steps: Steps whose loss and learning rate are kept. Defaults to
            `LOSS_STEPS`.
        update_steps: Steps whose updates are measured. Defaults to
            `UPDATE_STEPS`.
        start: The first recorded step, or None for where the callback's
            early watch starts (`early.warm_start`: past half a warmup).
            Defaults to 0.
    """

    def __init__(
        self,
        loss_steps: int = LOSS_STEPS,
        update_steps: int = UPDATE_STEPS,
        start: int | None = 0,
    ):
        super().__init__()
        self.loss_steps = loss_steps
        self.update_steps = update_steps
        self.start = start
        self._taps_model, self._taps = None, None

    def on_train_begin(self, logs=None):
        if self._taps_model is not self.model:
            self._taps_model, self._taps = self.model, build_taps(self.model).taps
        self._tracker = UpdateTracker(
            self._taps, self.model.optimizer, steps=1, sample=2**62, max_steps=1
        )
        self.losses, self.learning_rates = [], []
        self.update_ratios = {name: [] for name, _ in self._tracker.layers}
        self._means = []
        self.first = self.start
        if self.first is None:
            rate = LearningRate(self.model.optimizer)
            self.first = warm_start(rate, self._step())

    def _step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def on_epoch_begin(self, epoch, logs=None):
        self._means = []

    def on_train_batch_begin(self, batch, logs=None):
        step = self._step() - self.first
        if 0 <= step < self.loss_steps:
            rate = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            self.learning_rates.append(float(rate))
        if 0 <= step < self.update_steps:
            self._tracker.start(step + self.first)

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        result = self._tracker.after_batch(step) if self._tracker.active else None
        if result is not None:
            for name, ratio in result["update_ratio"].items():
                self.update_ratios[name].append(ratio)
        self._means.append(float(logs["loss"]))
        if 0 < step - self.first <= self.loss_steps:
            self.losses.append(step_losses(self._means)[-1])


# -- one run -------------------------------------------------------------------


def step0_flags(model: keras.Model, arch: str, task) -> list[dict]:
    """`diagnose()`'s flags for `model` before training, as JSON-able dicts.

    The probe batch is the first `trainability.PROBE` training samples, as
    in the calibration grid's diagnoses.
    """
    import keras_initdiag

    x = task.inputs(arch)[: tr.PROBE]
    report = keras_initdiag.diagnose(model, x, task.y[: tr.PROBE])
    return [flag_record(flag) for flag in report.flags]


def flag_record(flag) -> dict:
    """A step-0 flag as the grid records keep it (JSON-able)."""
    return {
        "kind": flag.kind,
        "layer": flag.layer,
        "value": tr._finite_or_string(flag.value),
        "threshold": tr._finite_or_string(flag.threshold),
        "serious": flag.kind in tr.SERIOUS,
        "advisory": rules.is_advisory(flag),
    }


def run(
    config: HeldoutConfig,
    task,
    cache,
    recorder: StepRecorder,
    steps: int = tr.STEPS,
    batch_size: int = tr.BATCH_SIZE,
) -> dict:
    """Train one network; the calibration's record plus the per-step ones.

    The step-0 diagnosis reads the config's own fresh model (its layers carry
    its initializers); training runs on the cache's traced one, from the same
    weights.
    """
    if task.seed != config.task_seed:
        raise ValueError(f"{config.key} needs task seed {config.task_seed}")
    start = time.perf_counter()
    model = cache.get(config)
    try:
        flags, error = step0_flags(cache.fresh, config.arch, task), None
    except Exception as e:  # Recorded: one network must not end the grid.
        flags, error = None, f"{type(e).__name__}: {e}"
    diagnose_seconds = time.perf_counter() - start
    record = tr.train(
        config, task, steps, batch_size, cache=cache, callbacks=[recorder]
    )
    if recorder.model is not model:
        raise RuntimeError(f"{config.key}: the cache trained another model")
    encode = tr._finite_or_string
    record.update(
        failed=tr.failed(decoded(record)),
        learning_rate=config.learning_rate,
        step0_flags=flags,
        step0_error=error,
        step0_seconds=round(diagnose_seconds, 3),
        step_losses=[encode(v) for v in recorder.losses],
        step_learning_rates=recorder.learning_rates,
        update_ratios={
            name: [encode(v) for v in ratios]
            for name, ratios in recorder.update_ratios.items()
        },
        train_seconds=record["seconds"],
        seconds=round(time.perf_counter() - start, 3),
    )
    return record


def decoded(record: dict) -> dict:
    """`record` with its "NaN"/"Infinity" strings as floats (as `load_runs`)."""
    return {k: tr._from_json_number(v) for k, v in record.items()}


def _estimate(config: HeldoutConfig, seconds: dict) -> float:
    """Seconds the run will likely take, from this session's runs so far."""
    same = seconds.get((config.arch, config.depth, config.width))
    if same:
        return max(same)
    deeper = [max(v) for (a, d, _), v in seconds.items() if d >= config.depth]
    return max(deeper, default=60.0)


def run_grid(
    configs: Sequence[HeldoutConfig],
    out: pathlib.Path,
    minutes: float = math.inf,
    n: int = tr.N_TRAIN,
    steps: int = tr.STEPS,
    batch_size: int = tr.BATCH_SIZE,
) -> int:
    """Train the configs not yet in `out`, in order, within `minutes`; the count.

    Stops before a run that would likely end after the budget (its estimate
    is the slowest run of its arch, depth and width so far).
    """
    done = {r.get("key") for r in tr.load_runs(out)}
    todo = [c for c in configs if c.key not in done]
    print(
        f"{len(configs)} configs, {len(configs) - len(todo)} already in {out}, "
        f"{len(todo)} to train, {minutes} minutes",
        flush=True,
    )
    deadline = time.monotonic() + 60 * minutes
    task = tr.make_task(n=n, seed=configs[0].task_seed if configs else TASK_SEED)
    calibration = (
        {r["key"]: r for r in tr.load_runs(tr.DEFAULT_OUT)}
        if task.seed == tr.TASK_SEED
        else None
    )
    cache = tr.ModelCache(steps_per_execution=1)
    recorder = StepRecorder()
    seconds: dict = {}
    for i, config in enumerate(todo, 1):
        left = deadline - time.monotonic()
        if left < _estimate(config, seconds):
            print(f"budget: stopping with {left:.0f} s left", flush=True)
            return i - 1
        record = run(config, task, cache, recorder, steps, batch_size)
        if calibration is not None:
            record = with_calibration_outcome(record, calibration)
        tr.append_run(out, record)
        seconds.setdefault((config.arch, config.depth, config.width), []).append(
            record["seconds"]
        )
        flags = sorted({f["kind"] for f in record["step0_flags"] or () if f["serious"]})
        print(
            f"[{i}/{len(todo)}] {config.key:48s} {tr._fmt(record['initial_loss'])}"
            f" -> {tr._fmt(tr.final_loss(decoded(record)))} "
            f"{'FAILED' if record['failed'] else 'trained'} {flags}"
            f" ({record['seconds']:.1f} s)",
            flush=True,
        )
    return len(todo)


def check(steps: int = tr.STEPS) -> list[tuple[str, float]]:
    """Healthy depth-2 nets of every arch and (width, rate) on the held-out task.

    Prints and returns (key, final loss); learnable means well under half
    the label entropy.
    """
    task = tr.make_task(n=tr.N_TRAIN, seed=TASK_SEED)
    print(f"task seed {TASK_SEED}: entropy {task.entropy:.3f}, {task.class_counts}")
    results = []
    healthy = (("relu", "he"), ("tanh", "xavier"))
    for arch, optimizer, pair, (activation, init) in itertools.product(
        ARCHS, tr.OPTIMIZERS, range(2), healthy
    ):
        width = (CNN_WIDTHS if tr.is_conv(arch) else MLP_WIDTHS)[pair]
        config = HeldoutConfig(
            arch, 2, activation, init, optimizer, SEED, width, LR_SCALES[pair]
        )
        record = tr.train(config, task, steps, cache=tr.ModelCache(1))
        loss = tr.final_loss(record)
        results.append((config.key, loss))
        print(f"{config.key:48s} {loss:.3f} ({record['seconds']:.1f} s)", flush=True)
    losses = [loss for _, loss in results]
    print(f"median {statistics.median(losses):.3f}, worst {max(losses):.3f}")
    return results


def summary(out: pathlib.Path = OUT) -> dict:
    """Print and return, per arch and optimizer: runs, failed, seconds per run."""
    rows: dict = {}
    for record in tr.load_runs(out):
        for name in (record["arch"], f"{record['arch']} {record['optimizer']}"):
            row = rows.setdefault(name, {"n": 0, "failed": 0, "seconds": []})
            row["n"] += 1
            row["failed"] += tr.failed(record)
            row["seconds"].append(record["seconds"])
    total = len(ordered())
    print(f"{sum(r['n'] for k, r in rows.items() if ' ' not in k)} of {total} runs")
    print("| networks | runs | trained | failed | median s | max s |")
    print("|---|---|---|---|---|---|")
    for name, row in sorted(rows.items()):
        print(
            f"| {name} | {row['n']} | {row['n'] - row['failed']} | {row['failed']} "
            f"| {statistics.median(row['seconds']):.1f} | {max(row['seconds']):.1f} |"
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``train``, ``check`` and ``summary`` (see the module)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train_cmd = commands.add_parser("train", help="train the grid (resumable)")
    train_cmd.add_argument("--minutes", type=float, default=math.inf)
    train_cmd.add_argument("--only", nargs="+", metavar="SUBSTRING")
    train_cmd.add_argument("--out", type=pathlib.Path)
    train_cmd.add_argument(
        "--grid",
        choices=("heldout", "heldout2", "heldout3", "calibration"),
        default="heldout",
    )
    train_cmd.add_argument(
        "--shard", default="0/1", help="i/n: every n-th group of 7 inits, from i"
    )
    for command in (train_cmd, commands.add_parser("check", help=check.__doc__)):
        command.add_argument(
            "--threads", type=int, default=1, help="TensorFlow threads (intra, inter)"
        )
    commands.add_parser("summary", help=summary.__doc__)
    args = parser.parse_args(argv)
    if args.command == "summary":
        summary()
        return 0
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    if args.command == "check":
        check()
        return 0
    if args.grid == "calibration":
        configs, out, steps = calibration(), CALIBRATION_OUT, CALIBRATION_STEPS
    elif args.grid == "heldout2":
        configs, out, steps = second(), SECOND_OUT, tr.STEPS
    elif args.grid == "heldout3":
        configs, out, steps = third(), THIRD_OUT, tr.STEPS
    else:
        configs, out, steps = ordered(), OUT, tr.STEPS
    index, count = (int(v) for v in args.shard.split("/"))
    configs = [c for i, c in enumerate(configs) if (i // 7) % count == index]
    run_grid(tr.select(configs, args.only), args.out or out, args.minutes, steps=steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
