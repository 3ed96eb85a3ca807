"""The callback's schedule on literal step numbers: no TensorFlow involved."""

from keras_initdiag.callbacks.schedule import Schedule


def run(schedule, batch_ends, epoch_ends=(), start=None):
    """Drive a schedule like `fit`; returns the steps diagnosed and drawn."""
    diagnosed, drawn = [], []

    def diagnose(step):
        if schedule.done(step):
            if schedule.image_wanted(step):
                drawn.append(step)
                schedule.diagnosed(step, image=True)
            return
        image = schedule.image_wanted(step)
        diagnosed.append((step, schedule.full_due))
        if image:
            drawn.append(step)
        schedule.diagnosed(step, image)

    schedule.begin_fit()
    diagnose(batch_ends[0] - 1 if start is None else start)
    for step in batch_ends:
        if schedule.due_at_batch(step):
            diagnose(step)
        if step in epoch_ends:
            schedule.end_epoch()
            if schedule.due_at_epoch_end():
                diagnose(step)
    schedule.end_fit()
    diagnose(batch_ends[-1])
    return diagnosed, drawn


def test_epoch_schedule_is_full_and_drawn_at_the_ends():
    diagnosed, drawn = run(Schedule("epoch"), list(range(1, 9)), epoch_ends=(4, 8))
    assert diagnosed == [(0, True), (4, True), (8, True)]
    assert drawn == [0, 8]


def test_int_schedule_every_n_steps_full_once_per_epoch():
    diagnosed, drawn = run(Schedule(3), list(range(1, 9)), epoch_ends=(4, 8))
    # After the last epoch end, the final diagnosis is the first of a new
    # epoch: full.
    assert diagnosed == [(0, True), (3, False), (6, True), (8, True)]
    assert drawn == [0, 8]


def test_steps_per_execution_lands_on_the_next_batch_end():
    # Batch ends every 4 steps with update_freq=3: at 4 (crossed 3), 8 (6).
    diagnosed, _ = run(Schedule(3), [4, 8, 12], start=0)
    assert [step for step, _ in diagnosed] == [0, 4, 8, 12]


def test_a_resumed_fit_does_not_diagnose_a_step_twice_but_draws_it():
    schedule = Schedule("epoch")
    first, _ = run(schedule, [1, 2], epoch_ends=(2,))
    assert [s for s, _ in first] == [0, 2]
    # The next fit starts at step 2, already diagnosed and drawn at the end
    # of the first fit: neither remeasured nor redrawn.
    second, drawn = run(schedule, [3, 4], epoch_ends=(4,))
    assert [s for s, _ in second] == [4]
    assert drawn == [4]


def test_reset_forgets_everything():
    schedule = Schedule(2)
    run(schedule, [1, 2, 3, 4])
    schedule.reset()
    assert schedule.last_step is None and schedule.image_step is None
    assert schedule.due_at_batch(1)


def test_only_an_int_schedule_is_due_at_batch_ends():
    # With "epoch" the callback never reads the step at a batch end.
    assert not Schedule("epoch").per_batch
    assert Schedule(5).per_batch
