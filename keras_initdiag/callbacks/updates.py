"""The first real updates of training, against the weights they change.

A layer whose update per step is a millionth of its weights hardly learns; one
whose update is as large as its weights is unstable. The gradient does not
tell (Adam's update is not proportional to it): the weights before and after
do. `UpdateTracker` keeps a device copy of each layer's main weight at the
start of training and, after each of the first few training batches, reduces
`||W_now - W_before|| / ||W_before||` for every layer to one vector (one
host copy per batch), per step. The median over those first steps is the
layer's `update_ratio`.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from keras_initdiag.diagnostics.taps import Tap

#: Training batches (after step 0) whose updates are measured.
STEPS = 3


class UpdateTracker:
    """Measures each layer's update-to-weight ratio over the first steps.

    Args:
        taps: The taps; those whose layer has a trainable main weight are
            measured.
        steps: How many batch ends to measure. Defaults to `STEPS`.

    Example:
    >>> tracker = UpdateTracker(taps)
    >>> tracker.start(step=0)
    >>> ratios = tracker.after_batch(step=1)   # None until `steps` batches
    """

    def __init__(self, taps: list[Tap], steps: int = STEPS):
        self.layers = [
            (tap.name, tap.main_weight)
            for tap in taps
            if tap.main_weight is not None and tap.main_weight.trainable
        ]
        self.steps = steps
        self._before: list | None = None
        self._step = 0
        self._ratios: list[np.ndarray] = []

    @property
    def active(self) -> bool:
        """Whether updates are still being measured."""
        return self._before is not None

    def start(self, step: int) -> None:
        """Copy the weights as they are before the first update."""
        if not self.layers:
            return
        self._before = [tf.identity(weight.value) for _, weight in self.layers]
        self._step = step
        self._ratios = []

    def stop(self) -> None:
        """Drop the copies (the measurement is over or abandoned)."""
        self._before = None

    def after_batch(self, step: int) -> dict[str, float] | None:
        """Measure the updates since the last call; the ratios when done."""
        if self._before is None or step <= self._step:
            return None
        now = [tf.identity(weight.value) for _, weight in self.layers]
        pairs = [
            tf.stack(
                [tf.norm(tf.cast(n - b, tf.float32)), tf.norm(tf.cast(b, tf.float32))]
            )
            for n, b in zip(now, self._before)
        ]
        norms = tf.stack(pairs).numpy().astype(np.float64)  # one host copy
        with np.errstate(divide="ignore", invalid="ignore"):
            per_step = norms[:, 0] / norms[:, 1] / (step - self._step)
        self._ratios.append(per_step)
        self._before, self._step = now, step
        if len(self._ratios) < self.steps:
            return None
        self.stop()
        median = np.median(np.stack(self._ratios), axis=0)
        return {
            name: float(value) if math.isfinite(value) else math.nan
            for (name, _), value in zip(self.layers, median)
        }
