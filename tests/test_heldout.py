"""Keeps `benchmarks/heldout.py` honest: a grid apart, and per-step records."""

import collections
import json
import math

import keras
import numpy as np
import pytest
from helpers import ROOT, load_script


@pytest.fixture(scope="module")
def heldout():
    return load_script("benchmarks/heldout.py")


@pytest.fixture(scope="module")
def tr(heldout):
    return heldout.tr


def test_step_losses_invert_running_means(heldout):
    losses = np.array([2.0, 1.25, 0.5, 3.0, 0.125])
    means = np.cumsum(losses) / np.arange(1, 6)  # What Keras logs.
    np.testing.assert_allclose(heldout.step_losses(means), losses, atol=1e-12)
    # Means logged in float32 still give each step to ~1e-6.
    rounded = means.astype(np.float32).tolist()
    np.testing.assert_allclose(heldout.step_losses(rounded), losses, atol=1e-5)
    assert heldout.step_losses([]) == []


def test_outcome_of_a_diverged_record(heldout, tr):
    # What `run` writes for a run that went non-finite: strings for NaN.
    record = {
        "nonfinite": True,
        "entropy": 1.386,
        "final_loss": "NaN",
        "final_loss_batch_stats": "Infinity",
    }
    assert tr.failed(heldout.decoded(record))
    assert tr.final_loss(heldout.decoded(record)) == math.inf
    record.update(nonfinite=False, final_loss=0.25)
    assert not tr.failed(heldout.decoded(record))


def test_heldout_grid_differs_from_calibration(heldout, tr):
    configs = heldout.ordered()
    calibration = tr.grid()
    assert len(configs) == len({c.key for c in configs}) == 504
    assert not {c.key for c in configs} & {c.key for c in calibration}
    # Another seed (weights and batch order) and another task.
    assert {c.seed for c in calibration} == {0} and {c.seed for c in configs} == {1}
    assert {c.task_seed for c in configs} == {heldout.TASK_SEED} != {tr.TASK_SEED}
    ours, theirs = tr.make_task(256, heldout.TASK_SEED), tr.make_task(256)
    assert not np.array_equal(ours.y, theirs.y)
    assert not np.allclose(ours.images, theirs.images)
    # Other widths and learning rates, on every arch and optimizer.
    assert {c.units for c in calibration} == {tr.MLP_WIDTH, tr.CNN_FILTERS}
    assert {c.units for c in configs} == {8, 32, 128}
    for config in configs:
        plain = config.arch.removeprefix("res")
        base = tr.RunConfig(plain, 2, "relu", config.init, config.optimizer)
        narrow = config.units < base.units
        assert config.units == (base.units // 2 if narrow else base.units * 2)
        assert config.learning_rate == pytest.approx(
            base.learning_rate * (3 if narrow else 1 / 3)
        )
    assert not {c.learning_rate for c in configs} & {
        c.learning_rate for c in calibration
    }
    assert not {c.depth for c in configs} & set(tr.DEPTHS)
    assert {"resmlp", "resmlp_bn"} <= {c.arch for c in configs}


def test_the_second_heldout_grid_differs_from_both(heldout, tr):
    """The grid the refitted verdict is scored on: its own seed, task and
    depths; the first grid's archs, widths and rates."""
    second, first = heldout.second(), heldout.ordered()
    assert len(second) == len({c.key for c in second}) == 336
    assert not {c.key for c in second} & (
        {c.key for c in first} | {c.key for c in tr.grid()}
    )
    assert {c.seed for c in second} == {2} and {c.task_seed for c in second} == {2}
    ours, theirs = tr.make_task(256, 2), tr.make_task(256, heldout.TASK_SEED)
    assert not np.array_equal(ours.y, theirs.y)
    depths = {c.depth for c in second}
    assert depths == {8, 20} and not depths & (
        {c.depth for c in first} | set(tr.DEPTHS)
    )
    assert {(c.arch, c.units, c.lr_scale) for c in second} == {
        (c.arch, c.units, c.lr_scale) for c in first
    }


def test_the_third_heldout_grid_differs_from_all(heldout, tr):
    """The grid the verdict is scored on after the certain band was chosen:
    its own seed, task and depths again."""
    third = heldout.third()
    assert len(third) == len({c.key for c in third}) == 336
    seen = {c.key for c in heldout.second()} | {c.key for c in heldout.ordered()}
    assert not {c.key for c in third} & (seen | {c.key for c in tr.grid()})
    assert {c.seed for c in third} == {3} and {c.task_seed for c in third} == {3}
    ours = tr.make_task(256, 3)
    for other in (2, heldout.TASK_SEED):
        assert not np.array_equal(ours.y, tr.make_task(256, other).y)
    depths = {c.depth for c in third}
    earlier = {c.depth for c in heldout.ordered() + heldout.second()}
    assert depths == {10, 24} and not depths & (earlier | set(tr.DEPTHS))


def test_first_runs_cover_every_family_optimizer_and_init(heldout, tr):
    first = heldout.ordered()[:84]
    cells = collections.Counter((c.arch, c.optimizer, c.init) for c in first)
    assert len(cells) == len(heldout.ARCHS) * 2 * len(tr.INITS)
    assert len({c.depth for c in first}) == len(heldout.DEPTHS)
    assert len({(c.units, c.lr_scale) for c in first}) == 4
    # Not family by family: the first six groups are six archs.
    assert len({c.arch for c in heldout.ordered()[:42]}) == len(heldout.ARCHS)


def test_residual_archs_build_blocks_with_identity_skips(heldout, tr):
    config = heldout.HeldoutConfig("resmlp_bn", 4, "relu", "he", "adam", width=8)
    model = tr.build_model(config)
    names = {layer.name for layer in model.layers}
    assert {"dense_0", "dense_4", "bn_4", "add_1", "add_2", "out_2"} <= names
    assert "act_2" not in names  # The block's second layer joins the skip raw.
    assert model.get_layer("add_2").input[0] is model.get_layer("out_1").output
    again = tr.build_model(config)
    assert tr.weights_digest(again) == tr.weights_digest(model)
    assert model.optimizer.learning_rate.numpy() == pytest.approx(1e-3)
    with pytest.raises(ValueError):
        heldout.HeldoutConfig("resmlp", 3, "relu", "he", "sgd")
    with pytest.raises(ValueError):
        tr.RunConfig("resmlp", 4, "relu", "he", "sgd")  # Not a calibration arch.


def test_calibration_networks_are_unchanged(tr):
    # The hooks for the held-out grid rebuild the calibration's networks
    # bit for bit: their initial weights match the committed records.
    runs = tr.load_runs(ROOT / "benchmarks/results/trainability_runs.jsonl")
    picked = {}
    for run in runs:
        if run["depth"] == 2:
            picked.setdefault((run["arch"], run["optimizer"]), run)
    assert len(picked) == 8
    for run in picked.values():
        config = tr.RunConfig.from_record(run)
        assert tr.weights_digest(tr.build_model(config)) == run["init_weights_sha256"]
        assert tr.build_model(config).optimizer.learning_rate.numpy() == pytest.approx(
            tr.LEARNING_RATES[config.optimizer]
        )


def _tiny_model(optimizer):
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


def test_recorder_losses_equal_each_batch_loss(heldout):
    # With a zero learning rate the weights stay put, so step k's loss is the
    # loss of batch k, computed directly; 3 epochs of 4 batches cross epoch
    # boundaries (Keras restarts its running mean there).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype("float32")
    y = rng.integers(0, 2, size=32)
    model = _tiny_model(keras.optimizers.SGD(0.0))
    recorder = heldout.StepRecorder(loss_steps=10, update_steps=3)
    model.fit(
        x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, callbacks=[recorder]
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    direct = [
        float(loss(y[i : i + 8], model(x[i : i + 8]))) for i in range(0, 32, 8)
    ] * 3
    np.testing.assert_allclose(recorder.losses, direct[:10], rtol=1e-5)
    assert recorder.learning_rates == [0.0] * 10
    assert recorder.update_ratios == {"hidden": [0.0] * 3, "logits": [0.0] * 3}


def test_recorder_update_ratio_is_the_first_step(heldout):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = rng.integers(0, 2, size=16)
    keras.utils.set_random_seed(3)
    model = _tiny_model(keras.optimizers.SGD(0.1))
    before = model.get_layer("hidden").kernel.numpy()
    recorder = heldout.StepRecorder(loss_steps=4, update_steps=2)
    model.fit(
        x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[recorder]
    )
    keras.utils.set_random_seed(3)
    once = _tiny_model(keras.optimizers.SGD(0.1))
    np.testing.assert_array_equal(once.get_layer("hidden").kernel.numpy(), before)
    once.fit(x[:8], y[:8], batch_size=8, epochs=1, shuffle=False, verbose=0)
    after = once.get_layer("hidden").kernel.numpy()
    expected = np.linalg.norm(after - before) / np.linalg.norm(before)
    assert len(recorder.update_ratios["hidden"]) == 2
    assert recorder.update_ratios["hidden"][0] == pytest.approx(expected, rel=1e-5)
    assert recorder.learning_rates == pytest.approx([0.1] * 4)
    assert len(recorder.losses) == 4


def test_the_recorder_starts_where_the_watch_starts(heldout):
    """`StepRecorder(start=None)` records the steps from the warm start:
    the same numbers a recorder from step 0 sees there, in the same fit."""
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, 100, warmup_target=0.1, warmup_steps=8
    )
    model = _tiny_model(keras.optimizers.SGD(schedule))
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, 3)).astype("float32")
    y = rng.integers(0, 2, size=32)
    StepRecorder = heldout.StepRecorder
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


@pytest.mark.slow
def test_runs_write_resumable_records(heldout, tr, tmp_path, capsys):
    configs = [
        heldout.HeldoutConfig(
            "resmlp_bn", 2, "relu", "he", "adam", width=8, lr_scale=3.0
        ),
        heldout.HeldoutConfig(
            "cnn", 2, "tanh", "zeros", "sgd", width=4, lr_scale=1 / 3
        ),
    ]
    out = tmp_path / "runs.jsonl"
    sizes = {"n": 128, "steps": 8, "batch_size": 32}  # 4 steps per epoch.
    assert heldout.run_grid(configs, out, minutes=0, **sizes) == 0  # No budget.
    assert heldout.run_grid(configs, out, **sizes) == 2
    records = {r["key"]: r for r in map(json.loads, out.read_text().splitlines())}
    loaded = {r["key"]: r for r in tr.load_runs(out)}
    assert set(records) == {c.key for c in configs}
    for config in configs:
        record = records[config.key]
        assert record["task_seed"] == heldout.TASK_SEED and record["seed"] == 1
        assert record["width"] == config.width
        assert record["failed"] == tr.failed(loaded[config.key])
        assert len(record["step_losses"]) == len(record["step_learning_rates"]) == 8
        assert record["step_learning_rates"] == pytest.approx(
            [config.learning_rate] * 8, rel=1e-6
        )
        # Each epoch's mean of the step losses is the epoch's logged loss.
        for epoch, logged in enumerate(record["loss_curve"]):
            steps = record["step_losses"][4 * epoch : 4 * epoch + 4]
            assert np.mean(steps) == pytest.approx(logged, rel=1e-5)
        kernels = (
            {"conv_1", "conv_2", "logits"}
            if config.arch == "cnn"
            else {"dense_0", "dense_1", "dense_2", "logits"}
        )
        assert set(record["update_ratios"]) == kernels
        assert all(len(v) == 8 for v in record["update_ratios"].values())
        for flag in record["step0_flags"]:
            assert set(flag) == {
                "kind",
                "layer",
                "value",
                "threshold",
                "serious",
                "advisory",
            }
    zero = records[configs[1].key]
    assert {"symmetry"} <= {f["kind"] for f in zero["step0_flags"] if f["serious"]}
    assert all(v == "NaN" for v in zero["update_ratios"]["conv_1"])  # 0 / 0.
    healthy = records[configs[0].key]
    assert all(0 < r < 1 for r in healthy["update_ratios"]["dense_1"])
    assert not any(f["serious"] for f in healthy["step0_flags"])
    # A second run resumes: nothing left to train.
    assert heldout.run_grid(configs, out, **sizes) == 0
    assert "0 to train" in capsys.readouterr().out
    rows = heldout.summary(out)
    assert rows["cnn"]["n"] == rows["cnn sgd"]["n"] == 1
    assert rows["resmlp_bn adam"]["failed"] == int(healthy["failed"])
    assert "2 of 504 runs" in capsys.readouterr().out
    assert math.isfinite(healthy["seconds"]) and healthy["step0_seconds"] > 0


def test_the_calibration_grid_as_first_step_records(heldout, tr):
    """`train --grid calibration` is the calibration grid itself: same
    networks, seed, task, widths and rates; outcomes from the committed runs
    only for the same initial weights."""
    configs = heldout.calibration()
    assert len(configs) == len(tr.grid()) == 560
    keys = {c.key.rsplit("-w", 1)[0] for c in configs}
    assert keys == {c.key for c in tr.grid()}
    assert {(c.seed, c.task_seed, c.lr_scale) for c in configs} == {(0, 0, 1.0)}
    assert {c.width for c in configs} == {tr.MLP_WIDTH, tr.CNN_FILTERS}
    full = {
        "mlp-d2-relu-he-sgd-s0": {
            "init_weights_sha256": "abc",
            "entropy": 1.386,
            "final_loss": 1.4,
            "final_over_entropy": 1.0,
            "nonfinite": False,
            "steps": 160,
        }
    }
    record = {"key": "mlp-d2-relu-he-sgd-s0-w64-lr1-t0", "init_weights_sha256": "abc"}
    joined = heldout.with_calibration_outcome(dict(record), full)
    assert joined["failed"] is True and joined["outcome_steps"] == 160
    with pytest.raises(RuntimeError, match="no calibration run with its weights"):
        heldout.with_calibration_outcome({**record, "init_weights_sha256": "x"}, full)
    # The committed first-step records: one per config, outcomes as committed.
    runs = {r["key"]: r for r in tr.load_runs(heldout.CALIBRATION_OUT)}
    assert len(runs) == 560
    committed = {r["key"]: r for r in tr.load_runs(tr.DEFAULT_OUT)}
    for record in runs.values():
        assert record["failed"] == tr.failed(committed[record["calibration_key"]])
        losses = record["step_losses"]
        # Every step recorded, unless TerminateOnNaN ended the run early.
        assert len(losses) == heldout.CALIBRATION_STEPS or not math.isfinite(losses[-1])
