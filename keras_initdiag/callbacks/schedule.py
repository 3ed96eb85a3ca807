"""When the callback diagnoses, which diagnoses are full, when images are drawn.

Pure Python on global step numbers (no TensorFlow), so the schedule is tested
with literal numbers. The step is the optimizer's iteration count, which
keeps counting across `fit` calls.
"""

from __future__ import annotations

import dataclasses


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

    def reset(self) -> None:
        """Forget everything (the callback moved to another model)."""
        self.last_step = None
        self.image_step = None
        self.full_due = self.image_due = True

    def begin_fit(self) -> None:
        """A `fit` starts: its first diagnosis is full and drawn."""
        self.full_due = self.image_due = True

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
        return step // self.update_freq > last // self.update_freq

    def due_at_epoch_end(self) -> bool:
        """With `update_freq="epoch"`, every epoch end is due."""
        return self.update_freq == "epoch"

    def image_wanted(self, step: int) -> bool:
        """Whether to draw the depth profile for a diagnosis at `step`."""
        return self.image_due and self.image_step != step

    def diagnosed(self, step: int, image: bool) -> None:
        """Record a diagnosis at `step` (and whether its image was drawn)."""
        self.last_step = step
        self.full_due = False
        if image:
            self.image_step = step
        self.image_due = False
