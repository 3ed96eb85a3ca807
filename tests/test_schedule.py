"""`Schedule` on literal step numbers: each method, no TensorFlow involved.

The callback's own use of the schedule (which hook asks what) is covered by
the callback tests; here every answer is checked against the rule the
schedule's docstring states.
"""

import pytest

from keras_initdiag.callbacks.schedule import AUTO_OVERHEAD, Schedule


def test_a_fresh_schedule_diagnoses_its_first_batch_end_full_and_drawn():
    schedule = Schedule(3)
    assert schedule.due_at_batch(7)
    assert schedule.full_due and schedule.image_wanted(7)
    assert not schedule.done(0)


@pytest.mark.parametrize(
    "last, due, not_due",
    [
        (0, [3, 4, 10], [1, 2]),  # The first multiple of 3 after step 0.
        (3, [6, 7], [4, 5]),
        (4, [6, 8], [5]),  # steps_per_execution=4: batch ends at 4, 8, 12.
        (6, [9], [7, 8]),
    ],
)
def test_an_int_schedule_is_due_once_a_multiple_of_n_is_crossed(last, due, not_due):
    schedule = Schedule(3)
    schedule.diagnosed(last, image=False)
    assert [schedule.due_at_batch(step) for step in due] == [True] * len(due)
    assert [schedule.due_at_batch(step) for step in not_due] == [False] * len(not_due)


def test_an_epoch_schedule_is_due_at_epoch_ends_only():
    schedule = Schedule("epoch")
    assert not schedule.per_batch
    assert schedule.due_at_epoch_end()
    assert not schedule.due_at_batch(0) and not schedule.due_at_batch(100)
    every_5 = Schedule(5)
    assert every_5.per_batch and not every_5.due_at_epoch_end()


def test_an_auto_schedule_keeps_its_periodic_diagnoses_within_two_percent():
    schedule = Schedule("auto")
    assert not schedule.per_batch and not schedule.due_at_batch(10)
    # The model's first diagnosis (it built the probe) starts the account.
    schedule.diagnosed(0, image=False, seconds=0.5, now=100.0)
    assert schedule.spent == 0.0 and schedule.cost is None
    assert schedule.due_at_epoch_end(now=100.001)  # no cost known: measure it
    # 60 ms spent, and 60 ms the next: due once 120 ms is 2% of the time.
    schedule.diagnosed(157, image=False, seconds=0.06, now=100.1)
    pays = 100.0 + (0.06 + 0.06) / AUTO_OVERHEAD
    assert pays == pytest.approx(106.0)
    assert not schedule.due_at_epoch_end(now=pays - 0.01)
    assert schedule.due_at_epoch_end(now=pays + 0.01)
    assert schedule.due_at_epoch_end(now=None)  # no clock: every epoch
    # The same times do not pace an "epoch" schedule.
    epoch = Schedule("epoch")
    epoch.diagnosed(0, image=False, seconds=0.5, now=100.0)
    epoch.diagnosed(157, image=False, seconds=0.06, now=100.1)
    assert epoch.due_at_epoch_end(now=100.2)


def test_one_offs_and_the_compile_say_what_the_next_costs_or_nothing():
    """The update ratios' and the verdict's diagnoses are not spent but time
    their kind; the probe's compile (its fifth call) is neither, and makes
    the eager runs' times stale."""
    schedule = Schedule("auto")
    schedule.diagnosed(0, image=False, seconds=0.5, now=0.0)
    schedule.diagnosed(3, image=False, seconds=0.3, now=1.0, one_off=True)
    assert schedule.spent == 0.0 and schedule.costs == {False: 0.3}
    schedule.diagnosed(157, image=False, seconds=0.3, now=5.0)
    schedule.diagnosed(314, image=False, seconds=2.0, now=10.0, compiled=True)
    assert schedule.spent == pytest.approx(0.3) and schedule.costs == {}
    assert schedule.due_at_epoch_end(now=10.5)  # measure the compiled cost
    schedule.diagnosed(471, image=False, seconds=0.02, now=10.52)
    # 0.32 s spent: the next 20 ms is due after 17 s.
    assert not schedule.due_at_epoch_end(now=16.5)
    assert schedule.due_at_epoch_end(now=17.5)


def test_an_auto_schedule_paces_an_epoch_end_by_the_last_full_diagnosis():
    """The epoch end's diagnosis is full (the searches): a light one's time
    would call it due too early."""
    schedule = Schedule("auto")
    schedule.diagnosed(0, image=False, seconds=0.5, now=0.0)  # builds the probe
    schedule.full_due = True
    schedule.diagnosed(157, image=False, seconds=0.1, now=1.0)  # full
    schedule.diagnosed(200, image=False, seconds=0.01, now=2.0)  # light
    assert schedule.costs == {True: 0.1, False: 0.01}
    schedule.end_epoch()
    assert schedule.cost == 0.1
    # Spent 0.11 s: with the full one's 0.1 s, due after 10.5 s.
    assert not schedule.due_at_epoch_end(now=10.4)
    assert schedule.due_at_epoch_end(now=10.6)
    light_only = Schedule("auto", full_due=False)
    light_only.diagnosed(0, image=False, seconds=0.5, now=0.0)
    light_only.diagnosed(3, image=False, seconds=0.01, now=2.0, one_off=True)
    light_only.end_epoch()
    assert light_only.cost == 0.01  # no full one timed yet: the light one's


def test_the_auto_schedule_says_once_why_it_passed_an_epoch_end():
    schedule = Schedule("auto")
    assert schedule.pacing_note() is None  # nothing measured: nothing to say
    schedule.diagnosed(0, image=False, seconds=0.5, now=0.0)
    schedule.diagnosed(3, image=False, seconds=0.0812, now=10.0)
    note = schedule.pacing_note()
    assert "81 ms" in note and "2%" in note and 'update_freq="epoch"' in note
    assert schedule.pacing_note() is None
    schedule.reset()
    assert schedule.cost is None and schedule.since is None and not schedule.spent
    schedule.diagnosed(0, image=False, seconds=0.5, now=1.0)
    schedule.diagnosed(2, image=False, seconds=0.05, now=2.0)
    assert schedule.pacing_note() is not None  # another model: said again


def test_full_at_the_start_of_each_fit_and_the_first_diagnosis_of_each_epoch():
    schedule = Schedule(2)
    schedule.begin_fit()
    assert schedule.full_due
    schedule.diagnosed(0, image=True)
    assert not schedule.full_due
    schedule.diagnosed(2, image=False)
    assert not schedule.full_due
    schedule.end_epoch()
    assert schedule.full_due
    schedule.diagnosed(4, image=False)
    assert not schedule.full_due
    schedule.begin_fit()
    assert schedule.full_due


def test_drawn_at_the_first_diagnosis_of_a_fit_and_at_the_end_once_per_step():
    schedule = Schedule(2)
    schedule.begin_fit()
    assert schedule.image_wanted(0)
    schedule.diagnosed(0, image=True)
    assert not schedule.image_wanted(2)  # Between the ends: no image.
    schedule.diagnosed(2, image=False)
    schedule.end_fit()
    assert schedule.image_wanted(4)
    schedule.diagnosed(4, image=True)
    assert schedule.image_step == 4
    # The next fit resumes at step 4, drawn already: not drawn again.
    schedule.begin_fit()
    assert not schedule.image_wanted(4)
    assert schedule.image_wanted(5)


def test_an_undrawn_diagnosis_keeps_the_last_drawn_step():
    schedule = Schedule("epoch")
    schedule.diagnosed(0, image=True)
    schedule.end_fit()
    schedule.diagnosed(8, image=False)
    assert schedule.image_step == 0 and not schedule.image_due


def test_done_is_the_last_diagnosed_step():
    schedule = Schedule("epoch")
    schedule.diagnosed(8, image=False)
    assert schedule.done(8)
    assert not schedule.done(7) and not schedule.done(9)


def test_reset_forgets_everything():
    schedule = Schedule(2)
    schedule.diagnosed(4, image=True)
    schedule.reset()
    assert schedule.last_step is None and schedule.image_step is None
    assert schedule.full_due and schedule.image_due
    assert schedule.due_at_batch(1) and not schedule.done(4)


def test_failed_attempts_count_and_back_off_after_three_in_a_row():
    schedule = Schedule(update_freq=1)
    schedule.begin_fit()
    attempts = []
    for step in range(0, 26):
        if schedule.due_at_batch(step):
            attempts.append(step)
            schedule.failed(step)
    # Three attempts at the normal pace, then 2, 4, 8, 16 due points apart.
    assert attempts == [0, 1, 2, 4, 8, 16]
    # One success resets the pace.
    schedule.diagnosed(16, image=False)
    assert [
        s
        for s in range(17, 20)
        if schedule.due_at_batch(s) and (schedule.diagnosed(s, image=False) or True)
    ] == [17, 18, 19]


def test_a_stopped_step_is_diagnosed_again_by_the_next_fit():
    schedule = Schedule(update_freq="epoch")
    schedule.begin_fit()
    schedule.diagnosed(0, image=False)
    schedule.stopped(0)
    assert schedule.done(0)  # the same fit's end does not repeat it
    schedule.begin_fit()
    assert not schedule.done(0)  # the retry does
    schedule.diagnosed(0, image=False)
    schedule.begin_fit()
    assert schedule.done(0)  # an ordinary resumed fit does not
