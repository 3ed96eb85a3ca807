"""The first real updates of training, against the weights they change.

A layer whose update per step is a millionth of its weights hardly learns; one
whose update is as large as its weights is unstable. The gradient does not
tell (Adam's update is not proportional to it): the weights before and after
do. `UpdateTracker` keeps, for each layer's main weight, a fixed random sample
of at most `SAMPLE` of its entries (`step_stats.main_weights`: 256 runs of 16
consecutive entries, single entries of an embedding table; the same at every
step), and after each of the first few training batches reduces `||W_now -
W_before|| / ||W_before||` over that sample for every layer at once (one op,
one host copy per batch). Memory stays bounded: `SAMPLE` floats per layer,
never a copy of the weights. How close the sampled ratio is to the whole
one: `step_stats.RUN`.

The learning rate each step used is read through the optimizer's public API
(its schedule, from `get_config()`, evaluated at those steps), and so is the
largest learning rate the schedule reaches later (its peak, e.g. the end of a
warmup). A layer's `update_ratio` is the median of its first steps' ratios
(3 steps; more during a warmup whose first updates are too small to measure,
up to `MAX_STEPS`);
`update_ratio_at_peak_lr` is the median ratio per unit learning rate times
that peak: what the updates become when the warmup is over. Only steps whose
learning rate is the peak, or whose updates are well above float32
resolution (`RESOLUTION`), are used for it: a warmup's first updates can be
so small that they round to nothing, which is no frozen layer. It is NaN
when no step is usable (e.g. a learning rate of exactly 0 so far), and
then the layer is not judged as too slow yet.
"""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_initdiag.diagnostics.step_stats import (
    SAMPLE,
    Sampler,
    main_weights,
    users_optimizer,
)
from keras_initdiag.diagnostics.taps import Tap

#: Training batches (after step 0) whose updates are measured, at least...
STEPS = 3
#: ... and at most: a warmup's first updates may be too small to measure;
#: measuring goes on until every layer has a usable step, or this many.
MAX_STEPS = 64
#: Relative updates below this are not used to extrapolate to the peak
#: learning rate: ten float32 epsilons, where rounding starts to eat them.
RESOLUTION = 10 * float(np.finfo(np.float32).eps)
#: How far ahead the schedule's peak is looked for, in steps.
HORIZON = 10_000_000


def _schedule(optimizer):
    """The optimizer's learning-rate schedule, or None for a fixed rate."""
    config = users_optimizer(optimizer).get_config().get("learning_rate")
    if isinstance(config, dict):
        return keras.optimizers.schedules.deserialize(config)
    return None


class LearningRate:
    """The learning rate an optimizer applies at any step.

    Read through its public API: the schedule from `get_config()` (resolved
    once, here), or the fixed rate.

    Args:
        optimizer: A Keras optimizer (loss scaling is seen through).

    Example:
    >>> LearningRate(keras.optimizers.SGD(0.1)).at(np.arange(3))
    array([0.1, 0.1, 0.1])
    """

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.schedule = _schedule(optimizer)

    def at(self, steps) -> np.ndarray:
        """The learning rate at each of `steps` (0-based)."""
        steps = np.asarray(steps, dtype=np.int64)
        if self.schedule is None:
            rate = float(np.asarray(self.optimizer.learning_rate))
            return np.full(steps.shape, rate)
        # Schedules take one step at a time (some branch with `ops.cond`).
        return np.array([float(np.asarray(self.schedule(int(s)))) for s in steps])

    def peak(self, start: int) -> float:
        """The largest learning rate from `start` on (`HORIZON` steps ahead).

        Example:
        >>> LearningRate(keras.optimizers.SGD(0.1)).peak(0)
        0.1
        """
        ahead = np.unique(np.geomspace(1, HORIZON, 120).astype(np.int64))
        return float(np.max(self.at(np.concatenate([[0], ahead]) + start)))


class UpdateTracker:
    """Measures each layer's update-to-weight ratio over the first steps.

    Args:
        taps: The taps; those whose layer has a trainable main weight are
            measured.
        optimizer: The optimizer that applies the updates (its learning
            rate is read, never changed).
        steps: How many batch ends to measure. Defaults to `STEPS`.
        sample: Entries sampled per weight. Defaults to `SAMPLE`.
        max_steps: Batch ends measured at most. Defaults to `MAX_STEPS`.
        sampler: A `step_stats.Sampler` of the same weights to share (one
            compiled function for every tracker of a model). Defaults to a
            new one.

    Example:
    >>> tracker = UpdateTracker(taps, model.optimizer)
    >>> tracker.start(step=0)
    >>> result = tracker.after_batch(step=1)   # None until `steps` batches
    """

    def __init__(
        self,
        taps: list[Tap],
        optimizer,
        steps: int = STEPS,
        sample: int = SAMPLE,
        max_steps: int = MAX_STEPS,
        sampler: Sampler | None = None,
    ):
        # The in-step path's entries too (`step_stats.main_weights`).
        mains = main_weights(taps, sample)
        self.layers = [(tap.name, weight) for tap, weight, _ in mains]
        self.sampler = sampler or Sampler(
            [weight for _, weight, _ in mains], [picks for *_, picks in mains]
        )
        self.rate = LearningRate(optimizer)
        self.steps = steps
        self.max_steps = max(max_steps, steps)
        self._peak = math.nan
        self._before: tf.Tensor | None = None  # [layers, width]
        self._step = 0
        self._ratios: list[np.ndarray] = []
        self._rates: list[float] = []
        self._from_zero: np.ndarray | None = None  # weights all zero at start

    @property
    def step(self) -> int:
        """The step of the latest sample of the weights."""
        return self._step

    @property
    def active(self) -> bool:
        """Whether updates are still being measured."""
        return self._before is not None

    def start(self, step: int) -> None:
        """Sample the weights as they are before the first update."""
        if not self.layers:
            return
        self._before = self.sampler.sample()
        self._step = step
        self._ratios, self._rates = [], []
        self._from_zero = None
        self._peak = self.rate.peak(step)

    def stop(self) -> None:
        """Drop the samples (the measurement is over or abandoned)."""
        self._before = None

    def after_batch(self, step: int) -> dict[str, dict[str, float]] | None:
        """Measure the updates since the last call; the result when done.

        Returns:
            None until `steps` batch ends were measured, then
            `{"update_ratio": {layer: ratio}, "update_ratio_at_peak_lr":
            {layer: ratio}}`.
        """
        if self.measure(step) is None:
            return None
        if len(self._ratios) < self.steps:
            return None
        ratios, usable = self._usable()
        if len(self._ratios) < self.max_steps and not usable.any(axis=0).all():
            return None
        self.stop()
        return self._result(ratios, usable)

    def measure(self, step: int) -> tuple[np.ndarray, float, int] | None:
        """Each layer's relative update per step since the last measurement.

        Returns:
            None when nothing was measured (not started, or no step since),
            else `(ratios, rate, taken)`: the ratio per layer divided by the
            `taken` steps since the last measurement (NaN for a weight that
            was all zero), and their mean learning rate.
        """
        if self._before is None or step <= self._step:
            return None
        norms, now = self.sampler.update(self._before)  # one compiled call
        taken = step - self._step
        rate = float(np.mean(self.rate.at(np.arange(self._step, step))))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = norms[:, 0] / norms[:, 1] / taken
        if self._from_zero is None:
            self._from_zero = norms[:, 1] == 0
        self._ratios.append(ratios)
        self._rates.append(rate)
        self._before, self._step = now, step
        return ratios, rate, taken

    def _usable(self) -> tuple[np.ndarray, np.ndarray]:
        """The ratios `[steps, layers]` and which tell the rate at the peak.

        A step tells the ratio per unit learning rate when its learning rate
        is the peak itself, or when its update is well above float32
        resolution (smaller ones round to fewer digits, or to nothing, and
        would read as a frozen layer). A layer whose weights are all zero
        has no ratio and needs none.
        """
        ratios = np.stack(self._ratios)
        rates = np.asarray(self._rates)[:, None]
        usable = (rates > 0) & (
            (rates >= self._peak * (1 - 1e-6)) | (ratios >= RESOLUTION)
        )
        return ratios, usable | np.isnan(ratios)

    def _result(self, ratios: np.ndarray, usable: np.ndarray) -> dict:
        rates = np.asarray(self._rates)[:, None]
        peak = self._peak
        usable = usable & np.isfinite(ratios)
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            per_rate = np.where(usable, ratios / rates, np.nan)
            # A column without a usable step is all NaN: no peak for it.
            warnings.simplefilter("ignore", RuntimeWarning)
            at_peak = np.nanmedian(per_rate, axis=0) * peak
        # Steps at a learning rate of exactly 0 (a warmup's first) say
        # nothing about the updates' size; the median leaves them out.
        moving = rates[:, 0] > 0
        median = np.median(ratios[moving] if moving.any() else ratios, axis=0)
        # A weight that starts at zero (a Fixup or muP head, a zero branch
        # end) grows from nothing: its relative update is about 1/k at step
        # k by construction, so it has no ratio to judge.
        median = np.where(self._from_zero, np.nan, median)
        at_peak = np.where(self._from_zero, np.nan, at_peak)
        names = [name for name, _ in self.layers]
        return {
            "update_ratio": dict(zip(names, map(_finite, median))),
            "update_ratio_at_peak_lr": dict(zip(names, map(_finite, at_peak))),
        }


def _finite(value) -> float:
    value = float(value)
    return value if math.isfinite(value) else math.nan
