"""Keeps `benchmarks/practice.py` honest: a grid apart, trained under a warmup."""

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


@pytest.mark.parametrize(
    ("name", "seed", "depth", "budget", "warmup"),
    [
        ("fifth", 5, 12, 800, 80),
        ("sixth", 6, 10, 640, 64),
        ("seventh", 7, 14, 560, 56),
        ("eighth", 8, 16, 720, 72),
        ("ninth", 9, 20, 560, 56),
        ("tenth", 10, 18, 640, 64),
    ],
)
def test_the_later_grids_differ_from_every_other(
    practice, name, seed, depth, budget, warmup
):
    heldout, tr = practice.heldout, practice.tr
    configs = practice.grid(name)
    assert len(configs) == len({c.key for c in configs}) == 168
    assert {(c.seed, c.task_seed, c.depth) for c in configs} == {(seed, seed, depth)}
    assert {(c.budget, c.warmup) for c in configs} == {(budget, warmup)}
    others = heldout.ordered() + heldout.second() + heldout.third() + tr.grid()
    others += [c for g in practice.GRIDS if g != name for c in practice.grid(g)]
    assert not {c.key for c in configs} & {c.key for c in others}
    ours = tr.make_task(256, seed)
    for other in range(seed):
        assert not np.array_equal(ours.y, tr.make_task(256, other).y)
    # Beyond the budgets the verdict was fitted at; the warmup a tenth.
    assert budget > practice.vd.BUDGET_RANGE[1] and warmup * 10 == budget
    assert {(c.arch, c.units, c.lr_scale) for c in configs} == {
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


def test_failed_by_reads_the_epoch_mean_against_half_of_chance(practice):
    entropy = float(np.log(4))
    record = {
        "loss_curve": [1.4, 0.9, 0.6, "NaN"],
        "entropy": entropy,
        "nonfinite": False,
    }
    # Half of chance is 0.693: epoch 2 (0.9) not trained, epoch 3 (0.6) trained.
    assert [practice.tr.failed_by(record, e) for e in (1, 2, 3)] == [True, True, False]
    assert practice.tr.failed_by(record, 4)  # a non-finite mean
    assert practice.tr.failed_by(record, 5)  # stopped before that epoch
    assert practice.tr.failed_by(dict(record, nonfinite=True), 3)
