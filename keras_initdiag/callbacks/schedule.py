"""When the callback diagnoses, which diagnoses are full, when images are drawn.

Pure Python on global step numbers (no TensorFlow), so the schedule is tested
with literal numbers. The step is the optimizer's iteration count, which
keeps counting across `fit` calls.
"""

from __future__ import annotations

import dataclasses

#: Consecutive failed diagnoses after which the schedule backs off: the
#: next attempt waits 2, then 4, 8, ... due points.
BACKOFF_AFTER = 3


@dataclasses.dataclass
class Schedule:
    """The diagnosis schedule of one model.

    - Step 0 (or the first step of every later `fit`) is always diagnosed.
    - `update_freq="epoch"`: after every epoch. An int `n`: at the first
      batch end at or after every multiple of `n` (with `steps_per_execution`
      the batch ends come every few steps), and once more at the end of
      training.
    - A diagnosis is *full* (duplicate-unit and identical-kernel searches)
      at the start of each `fit` and at the first diagnosis of each epoch.
    - The depth-profile image is drawn at the first diagnosis of each `fit`
      and at the end of training, once per step.
    - A failed diagnosis counts as an attempt (the next is due at the next
      due point, not at the next batch); after `BACKOFF_AFTER` failures in a
      row, attempts wait twice as many due points each time.
    - A step whose flags stopped or raised is diagnosed again by the next
      `fit` (the usual retry: fix the weights in place, fit again).

    Args:
        update_freq: `"epoch"` or a positive int (batches).

    Example:
    >>> schedule = Schedule(update_freq=10)
    >>> schedule.begin_fit()
    >>> schedule.due_at_batch(0)
    True
    """

    update_freq: str | int = "epoch"
    last_step: int | None = None
    full_due: bool = True
    image_due: bool = True
    image_step: int | None = None
    failures: int = 0
    skip: int = 0
    redo_step: int | None = None

    def reset(self) -> None:
        """Forget everything (the callback moved to another model)."""
        self.last_step = self.image_step = self.redo_step = None
        self.full_due = self.image_due = True
        self.failures = self.skip = 0

    def begin_fit(self) -> None:
        """A `fit` starts: its first diagnosis is full and drawn."""
        self.full_due = self.image_due = True
        if self.redo_step is not None and self.redo_step == self.last_step:
            self.last_step = None  # Diagnose the stopped step again.
        self.redo_step = None

    def stopped(self, step: int) -> None:
        """Flags at `step` stopped training: the next `fit` diagnoses it again."""
        self.redo_step = step

    def failed(self, step: int) -> None:
        """A diagnosis at `step` failed: it counts as an attempt; back off."""
        self.last_step = step
        self.failures += 1
        if self.failures >= BACKOFF_AFTER:
            self.skip = 2 ** (self.failures - BACKOFF_AFTER + 1) - 1

    def end_epoch(self) -> None:
        """An epoch ended: the next diagnosis is full."""
        self.full_due = True

    def end_fit(self) -> None:
        """Training ends: the final diagnosis (or the last one) is drawn."""
        self.image_due = True

    def done(self, step: int) -> bool:
        """Whether `step` was already diagnosed (e.g. a resumed `fit`)."""
        return step == self.last_step

    @property
    def per_batch(self) -> bool:
        """Whether batch ends can be due (an int `update_freq`)."""
        return self.update_freq != "epoch"

    def due_at_batch(self, step: int) -> bool:
        """With an int `update_freq`, whether to diagnose at this batch end."""
        if self.update_freq == "epoch":
            return False
        if self.last_step is None:
            return True
        last = max(self.last_step, 0)
        return self._take(step // self.update_freq > last // self.update_freq, step)

    def due_at_epoch_end(self) -> bool:
        """With `update_freq="epoch"`, every epoch end is due."""
        return self._take(self.update_freq == "epoch")

    def _take(self, due: bool, step: int | None = None) -> bool:
        """`due`, unless a back-off passes over this due point."""
        if due and self.skip:
            self.skip -= 1
            if step is not None:
                self.last_step = step
            return False
        return due

    def image_wanted(self, step: int) -> bool:
        """Whether to draw the depth profile for a diagnosis at `step`."""
        return self.image_due and self.image_step != step

    def diagnosed(self, step: int, image: bool) -> None:
        """Record a diagnosis at `step` (and whether its image was drawn)."""
        self.last_step = step
        self.full_due = False
        self.failures = self.skip = 0
        if image:
            self.image_step = step
        self.image_due = False
