"""Keeps `benchmarks/practice.py` honest: a grid apart, trained under a warmup."""

import keras
import numpy as np
import pytest
from helpers import load_script

from keras_initdiag.callbacks.early import warm_start
from keras_initdiag.callbacks.updates import LearningRate


@pytest.fixture(scope="module")
def practice():
    return load_script("benchmarks/practice.py")


def test_the_fourth_grid_differs_from_every_other(practice):
    heldout, tr = practice.heldout, practice.tr
    fourth = practice.grid()
    assert len(fourth) == len({c.key for c in fourth}) == 336
    assert {c.seed for c in fourth} == {4} and {c.task_seed for c in fourth} == {4}
    depths = {c.depth for c in fourth}
    earlier = heldout.ordered() + heldout.second() + heldout.third()
    assert depths == {8, 18}  # 8 as in the second grid, at another seed and task
    assert not {c.key for c in fourth} & {c.key for c in earlier + tr.grid()}
    ours = tr.make_task(256, 4)
    for other in (0, 1, 2, 3):
        assert not np.array_equal(ours.y, tr.make_task(256, other).y)
    # The held-out grids' archs, widths and peak rates, under a schedule.
    assert {(c.arch, c.units, c.lr_scale) for c in fourth} == {
        (c.arch, c.units, c.lr_scale) for c in heldout.third()
    }


def test_the_schedule_warms_up_from_zero_then_decays_to_zero(practice):
    config = practice.grid()[0]
    model = practice.tr.build_model(config)
    rate = LearningRate(model.optimizer)
    peak = config.learning_rate
    warmup, budget = practice.WARMUP, practice.BUDGET
    values = rate.at([0, warmup // 2, warmup, (warmup + budget) // 2, budget])
    np.testing.assert_allclose(
        values, [0.0, peak / 2, peak, peak / 2, 0.0], rtol=1e-5, atol=1e-12
    )
    # The callback's watch (and so the recorded steps) starts half-way up.
    assert warm_start(rate, 0) == warmup // 2


def _tiny_model(optimizer):
    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, activation="tanh", name="hidden"),
            keras.layers.Dense(2, name="logits"),
        ]
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=1,
    )
    return model


def test_the_recorder_starts_where_the_watch_starts(practice):
    """`StepRecorder(start=None)` records the steps from the warm start:
    the same numbers a recorder from step 0 sees there, in the same fit."""
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, 100, warmup_target=0.1, warmup_steps=8
    )
    model = _tiny_model(keras.optimizers.SGD(schedule))
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, 3)).astype("float32")
    y = rng.integers(0, 2, size=32)
    StepRecorder = practice.heldout.StepRecorder
    everything = StepRecorder(loss_steps=9, update_steps=9, start=0)
    warm = StepRecorder(loss_steps=3, update_steps=2, start=None)
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=3,
        shuffle=False,
        verbose=0,
        callbacks=[everything, warm],
    )
    assert warm.first == 4 and everything.first == 0
    np.testing.assert_allclose(warm.learning_rates, [0.05, 0.0625, 0.075], rtol=1e-6)
    np.testing.assert_allclose(warm.learning_rates, everything.learning_rates[4:7])
    np.testing.assert_allclose(warm.losses, everything.losses[4:7], rtol=1e-6)
    for name, ratios in warm.update_ratios.items():
        assert len(ratios) == 2
        np.testing.assert_allclose(
            ratios, everything.update_ratios[name][4:6], rtol=1e-5
        )


def test_failed_by_reads_the_epoch_mean_against_half_of_chance(practice):
    entropy = float(np.log(4))
    record = {
        "loss_curve": [1.4, 0.9, 0.6, "NaN"],
        "entropy": entropy,
        "nonfinite": False,
    }
    # Half of chance is 0.693: epoch 2 (0.9) not trained, epoch 3 (0.6) trained.
    assert [practice.failed_by(record, e) for e in (1, 2, 3)] == [True, True, False]
    assert practice.failed_by(record, 4)  # a non-finite mean
    assert practice.failed_by(record, 5)  # stopped before that epoch
    assert practice.failed_by(dict(record, nonfinite=True), 3)
