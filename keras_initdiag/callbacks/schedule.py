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
#: The share of the training's wall time that `update_freq="auto"` lets its
#: periodic diagnoses take: issue 19's target for the
#: default callback (at most 1.02x a plain `fit`). A compiled diagnosis
#: costs 1.1-1.8 train steps on the benchmark's models, an eager one (the
#: first four) about ten times that (BENCHMARKS.md, "Overhead"), so epochs
#: of 157 steps end up each diagnosed and epochs of 32 steps every third.
AUTO_OVERHEAD = 0.02


@dataclasses.dataclass
class Schedule:
    """The diagnosis schedule of one model.

    - Step 0 (or the first step of every later `fit`) is always diagnosed.
    - `update_freq="epoch"`: after every epoch. An int `n`: at the first
      batch end at or after every multiple of `n` (with `steps_per_execution`
      the batch ends come every few steps), and once more at the end of
      training.
    - `update_freq="auto"`: as `"epoch"`, but an epoch end is due only when
      the time the periodic diagnoses took (`spent`: those at epoch ends and
      at the start and end of later fits), plus what the next is expected
      to take, is at most `AUTO_OVERHEAD` of the wall time since the
      model's first diagnosis ended. The start and the end of each `fit`
      are always diagnosed, as are the one-offs, which are not counted: the
      model's first diagnosis, the update ratios' and the verdict's, and
      the probe's compile.
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
        update_freq: `"auto"`, `"epoch"` or a positive int (batches).

    Example:
    >>> schedule = Schedule(update_freq=10)
    >>> schedule.begin_fit()
    >>> schedule.due_at_batch(0)
    True
    >>> auto = Schedule("auto")
    >>> auto.diagnosed(0, image=False, seconds=0.5, now=100.0)  # builds the probe
    >>> auto.diagnosed(157, image=False, seconds=0.05, now=101.0)
    >>> auto.due_at_epoch_end(now=102.0), auto.due_at_epoch_end(now=106.0)
    (False, True)
    """

    update_freq: str | int = "epoch"
    costs: dict = dataclasses.field(default_factory=dict)
    since: float | None = None
    spent: float = 0.0
    paced: bool = False
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
        self.costs, self.since, self.spent = {}, None, 0.0
        self.paced = False

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
        return not isinstance(self.update_freq, str)

    def affordable(self, now: float | None) -> bool:
        """Whether the next periodic diagnosis is due (`now`: the clock).

        Always but with `"auto"`, where what the periodic diagnoses took,
        with the next one, must stay within `AUTO_OVERHEAD` of the time
        since the model's first (an unknown cost: due, to measure it).
        """
        cost = self.cost
        if self.update_freq != "auto" or None in (now, cost, self.since):
            return True
        return self.spent + cost <= AUTO_OVERHEAD * (now - self.since)

    @property
    def cost(self) -> float | None:
        """What the next diagnosis is expected to take, in seconds (or None).

        The wall time of the latest timed diagnosis of the kind due next
        (full or light: the searches cost several times the rest), or of
        the other kind when none of it was timed.
        """
        return self.costs.get(self.full_due, self.costs.get(not self.full_due))

    def due_at_batch(self, step: int) -> bool:
        """With an int `update_freq`, whether to diagnose at this batch end."""
        if not self.per_batch:
            return False
        if self.last_step is None:
            return True
        last = max(self.last_step, 0)
        return self._take(step // self.update_freq > last // self.update_freq, step)

    def due_at_epoch_end(self, now: float | None = None) -> bool:
        """Whether this epoch end is due (`now`: a `time.perf_counter()`).

        With `update_freq="epoch"` every one is; with `"auto"`, those that
        keep the periodic diagnoses within `AUTO_OVERHEAD` (`affordable`).
        """
        return self._take(not self.per_batch and self.affordable(now))

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

    def pacing_note(self) -> str | None:
        """Once per model, after `"auto"` first passed an epoch end: why."""
        if self.paced or self.cost is None:
            return None
        self.paced = True
        return (
            f"InitDiagnostics: a diagnosis takes about {1e3 * self.cost:.0f} ms; "
            f"to keep them under {AUTO_OVERHEAD:.0%} of training it diagnoses "
            'only the epoch ends that allow (update_freq="epoch": every epoch).'
        )

    def diagnosed(
        self,
        step: int,
        image: bool,
        seconds: float | None = None,
        now: float | None = None,
        compiled: bool = False,
        one_off: bool = False,
    ) -> None:
        """Record a diagnosis at `step` (and whether its image was drawn).

        `seconds`: its wall time; `now`: when it ended; `compiled`: whether
        it compiled the probe; `one_off`: whether it is no periodic one (the
        update ratios', the verdict's). `"auto"` paces the next by them: the
        model's first diagnosis (which built the probe) starts the account;
        each later one but a compiling one is what the next of its kind
        (full or light) is expected to take, and is spent unless a one-off;
        a compiling one makes the eager runs' times stale.
        """
        if now is not None and seconds is not None:
            if self.since is None:
                self.since = now
            elif compiled:
                self.costs.clear()
            else:
                self.costs[self.full_due] = seconds
                self.spent += 0.0 if one_off else seconds
        self.last_step = step
        self.full_due = False
        self.failures = self.skip = 0
        if image:
            self.image_step = step
        self.image_due = False
