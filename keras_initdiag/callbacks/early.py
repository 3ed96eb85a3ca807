"""The callback's side of the early verdict: watch the first steps, then judge.

`EarlyWatch` starts at the first step whose learning rate is at least
`verdict.WARM_FRACTION` of the schedule's peak (step 0 without a warmup),
and for `verdict.WATCH_STEPS` steps keeps each step's learning rate and
per-layer relative update (`UpdateTracker.measure`: one host copy of a few
numbers per layer and batch), and each step's training loss (from the
running mean Keras puts in `logs`) for `verdict.loss_steps(budget)` steps:
64 for a training of 320 steps or more, whose last 32 copy nothing from the
device. With `steps_per_execution > 1` a batch end closes several steps;
each of them gets the chunk's mean loss and update per step.

Until the verdict, the step-0 flags that the training grids found uncertain
(`pending.waits`: their kind in the network's family, and how far past the
threshold they lie) are held as pending: shown and logged, not acted on.
The verdict confirms or clears them.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from keras_initdiag.callbacks.updates import LearningRate, UpdateTracker
from keras_initdiag.diagnostics import judgement
from keras_initdiag.diagnostics import verdict as vd
from keras_initdiag.diagnostics.pending import family, waits
from keras_initdiag.diagnostics.report import DiagnosticReport, Flag, Verdict
from keras_initdiag.diagnostics.rules import is_advisory
from keras_initdiag.diagnostics.taps import Tap

#: How far ahead the start of the watch is looked for, in steps.
HORIZON = 10_000_000


def warm_start(rate: LearningRate, step: int, fraction: float = vd.WARM_FRACTION):
    """The first step from `step` on whose rate is `fraction` of the peak.

    The schedule is read at geometrically spaced steps, then the first
    bracket that reaches the level is bisected (a warmup rises monotonically).

    Example:
    >>> import keras
    >>> warmup = keras.optimizers.schedules.CosineDecay(
    ...     0.0, 10_000, warmup_target=1e-3, warmup_steps=1_000)
    >>> warm_start(LearningRate(keras.optimizers.Adam(warmup)), 0)
    500
    """
    level = fraction * rate.peak(step)
    if rate.schedule is None or rate.at([step])[0] >= level:
        return step
    ahead = np.unique(np.geomspace(1, HORIZON, 120).astype(np.int64)) + step
    values = rate.at(ahead)
    reached = np.flatnonzero(values >= level)
    if not reached.size:
        return step
    i = int(reached[0])
    low, high = (int(ahead[i - 1]) if i else step), int(ahead[i])
    while high - low > 1:
        middle = (low + high) // 2
        if rate.at([middle])[0] >= level:
            high = middle
        else:
            low = middle
    return high


def fit_budget(params, start: int, epoch: int) -> int | None:
    """A `fit`'s budget: its start step plus its epochs' steps from `epoch`.

    Args:
        params: The callback's `params` (`epochs`, `steps` per epoch).
        start: The optimizer step the fit starts at.
        epoch: The fit's first epoch (`fit(initial_epoch=...)`).

    Returns:
        The step at which the fit will end, or None when Keras does not know
        the steps per epoch (a dataset of unknown length).

    Example:
    >>> fit_budget({"epochs": 5, "steps": 32}, start=64, epoch=2)
    160
    """
    params = params or {}
    epochs, steps = params.get("epochs"), params.get("steps")
    if isinstance(epochs, int) and isinstance(steps, int) and steps > 0:
        return start + max(epochs - epoch, 0) * steps
    return None


class EarlyWatch:
    """Watches the first steps of training and gives the early verdict.

    Args:
        taps: The taps (their layers' main weights are watched).
        optimizer: The model's optimizer (its schedule is read, not changed).
        step: The step at which the fit starts.
        steps: Steps whose updates are watched. Defaults to
            `verdict.WATCH_STEPS`. The loss is watched for
            `verdict.loss_steps(budget)` steps, at least these.
        threshold: The risk at which the verdict calls the run failing.
            Defaults to `None`: `verdict.RISK_THRESHOLD`.

    Example:
    >>> watch = EarlyWatch(taps, model.optimizer, step=0)
    >>> watch.batch_begin(0)
    >>> verdict = watch.batch_end(1, batch=0, logs={"loss": 1.2})  # None until done
    """

    def __init__(
        self,
        taps: list[Tap],
        optimizer,
        step: int,
        steps: int = vd.WATCH_STEPS,
        threshold: float | None = None,
    ):
        self.tracker = UpdateTracker(taps, optimizer, steps=steps, max_steps=steps)
        self.steps = steps
        self.threshold = threshold
        self.start = warm_start(self.tracker.rate, step)
        self.names = [name for name, _ in self.tracker.layers]
        # Per watched step (1-based: the step an update completes): its loss,
        # learning rate and per-layer relative updates.
        self._losses: dict[int, float] = {}
        self._rates: dict[int, float] = {}
        self._ratios: dict[int, np.ndarray] = {}
        self.in_step = False  # updates from the in-step path, not sampled here
        self._last = None  # the step of the last batch end seen while watching
        self.chance_loss = math.nan
        self.step0: list[str] = []
        self.pending: list[Flag] = []
        self.first: int | None = None  # the step of the first report held
        self.from_zero: list[str] = []  # main weights all zero at that step
        self.verdict: Verdict | None = None
        self.judged: vd.EarlySteps | None = None  # what the verdict read
        self.budget: int | None = None  # steps of the whole training, if known
        # (steps into the epoch, running mean of its loss) at the last batch end
        self._seen = (0, None)

    @property
    def done(self) -> bool:
        """Whether the verdict was given."""
        return self.verdict is not None

    def hold(self, report: DiagnosticReport, thresholds=None) -> list[Flag]:
        """The report's flags, the uncertain ones marked pending (`waits`).

        `thresholds`: the `Thresholds` the flags were judged with (None: the
        defaults); `self.budget`, the training's, lets more kinds wait
        (`pending.bands`). The first report also gives the chance level and
        the step-0 flags.
        """
        if self.done:
            return report.flags
        kind_of_net = family(report)
        flags = [
            dataclasses.replace(f, pending=True)
            if not is_advisory(f)
            and waits(
                f.kind, f.value, f.threshold, kind_of_net, thresholds, self.budget
            )
            else f
            for f in report.flags
        ]
        if self.first is None:
            self.first = report.step
            self.chance_loss = report.chance_loss
            self.step0 = [f.kind for f in flags if not is_advisory(f)]
            self.from_zero = [
                name
                for name in self.names
                if report.stats.get(name, {}).get("weight_variance") == 0.0
            ]
        # Each held (kind, layer) once, as first seen: a long warmup with
        # update_freq=1 must not grow this list.
        held = {(f.kind, f.layer) for f in self.pending}
        self.pending += [
            f for f in flags if f.pending and (f.kind, f.layer) not in held
        ]
        return flags

    @property
    def window(self) -> range:
        """The steps whose updates are watched (each the step it completes)."""
        return range(self.start + 1, self.start + self.steps + 1)

    @property
    def loss_window(self) -> range:
        """The steps whose loss is watched (the budget's `loss_steps`)."""
        steps = max(self.steps, vd.loss_steps(self.budget))
        return range(self.start + 1, self.start + steps + 1)

    @property
    def measuring(self) -> bool:
        """Whether the watch still needs updates (started, window not full)."""
        return self.started and not all(s in self._ratios for s in self.window)

    @property
    def started(self) -> bool:
        """Whether the watch is under way (started, no verdict yet)."""
        return not self.done and self._last is not None

    @property
    def losses(self) -> list[float]:
        """The watched steps' losses so far, in order."""
        return [self._losses[s] for s in self.loss_window if s in self._losses]

    @property
    def ratios(self) -> list[np.ndarray]:
        """The watched steps' per-layer relative updates so far, in order."""
        return [self._ratios[s] for s in self.window if s in self._ratios]

    @property
    def needs_begin(self) -> bool:
        """Whether `batch_begin` has work to do.

        To start the watch, or to sample the weights again in a new `fit`
        while it still needs updates (the host path: the samples end with
        each fit).
        """
        if self.done:
            return False
        if self._last is None:
            return True
        return not self.in_step and not self.tracker.active and self.measuring

    def resume(self, step: int) -> None:
        """A new `fit` begins at `step`: start over if steps went by unseen.

        Steps since the last batch end watched that the watch did not see (a
        `fit` without this callback, restored weights) leave its window
        forever incomplete, and it would sample the weights at every batch
        for the rest of training; it starts over from `step` instead.
        """
        if self.done or self._last is None or step == self._last:
            return
        self.tracker.stop()
        self.start = warm_start(self.tracker.rate, step)
        self._losses.clear()
        self._rates.clear()
        self._ratios.clear()
        self._last = None

    def batch_begin(self, step: int) -> None:
        """Start at the first watched step (sampling the weights if needed)."""
        if self.done or step < self.start:
            return
        if self._last is None or self.measuring:
            if not self.in_step and not self.tracker.active:
                self.tracker.start(step)
                self._last = step
        if self._last is None:
            self._last = step

    def batch_end(self, step: int, batch: int, logs) -> Verdict | None:
        """Record the steps this batch end closed; the verdict when complete.

        A non-finite loss ends the watch at once: the verdict needs no more.
        """
        count, mean = batch + 1, _loss(logs)
        before, self._seen = self._seen, (count, mean)
        if count <= before[0]:  # a new epoch: Keras's running mean restarted
            before = (0, None)
        if not self.started or step <= self._last:
            return None
        closed = range(self._last + 1, step + 1)
        self._last = step
        loss = mean
        if mean is not None and before[1] is not None and count > before[0]:
            # Keras logs the epoch's running mean: the closed steps' mean.
            loss = (count * mean - before[0] * before[1]) / (count - before[0])
        if loss is not None:
            self._losses.update(dict.fromkeys(closed, loss))
        if not self.in_step:
            measured = self.tracker.measure(step)
            if measured is not None:
                ratios, rate, _ = measured
                self._ratios.update(dict.fromkeys(closed, ratios))
                self._rates.update(dict.fromkeys(closed, rate))
                if not self.measuring:  # the rest of the watch reads the loss
                    self.tracker.stop()
        if loss is not None and not math.isfinite(loss):
            return self._judge(step)
        return self._complete(step)

    def add_steps(self, read: dict) -> None:
        """Take the in-step path's records (`GradientRecorder.read`).

        Exact per step, also under `steps_per_execution > 1`. The next
        `batch_end` (which adds those steps' loss) gives the verdict.
        """
        if not self.started:
            return
        watched = set(self.window)
        for at, values in read.get("update_ratio", ()):
            if at in watched:
                self._ratios[at] = np.array(
                    [values.get(n, math.nan) for n in self.names], dtype=np.float64
                )
        for at, values in read.get("learning_rate", ()):
            if at in watched:
                self._rates[at] = values[""]

    def _complete(self, step: int) -> Verdict | None:
        """The verdict once every watched step has its updates (and loss)."""
        if self.measuring:
            return None
        if self._losses and not all(s in self._losses for s in self.loss_window):
            return None
        return self._judge(step)

    def _judge(self, step: int) -> Verdict:
        self.tracker.stop()
        steps = [s for s in self.window if s in self._ratios]
        ratios = np.asarray([self._ratios[s] for s in steps]).reshape(
            len(steps), len(self.names)
        )
        early = vd.EarlySteps(
            losses=self.losses,
            learning_rates=[self._rates.get(s, math.nan) for s in steps],
            update_ratios={name: ratios[:, i] for i, name in enumerate(self.names)},
            chance_loss=self.chance_loss,
            step0_flags=self.step0,
            step0_pending=[f.kind for f in self.pending if f.step == self.first],
            from_zero=self.from_zero,
            budget=self.budget,
        )
        self.judged = early
        self.verdict = judgement.judge(
            early, step, self.start, self.pending, self.threshold
        )
        return self.verdict


def _loss(logs) -> float | None:
    """The running mean loss in `logs`; None when `fit` logs no loss."""
    value = (logs or {}).get("loss")
    if value is None:
        return None
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return None
