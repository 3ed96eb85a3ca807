"""Keeps `benchmarks/trainability.py` honest: a quick grid, trained for real."""

import json
import math

import numpy as np
import pytest
from helpers import load_script


@pytest.fixture(scope="module")
def trainability():
    return load_script("benchmarks/trainability.py")


def test_task_is_standardized_balanced_and_deterministic(trainability):
    task = trainability.make_task(n=4096, seed=0)
    assert task.x.shape == (4096, 16) and task.images.shape == (4096, 8, 8, 2)
    np.testing.assert_allclose(task.x.std(axis=0), 1.0, atol=0.06)
    np.testing.assert_allclose(task.images.std(axis=0), 1.0, atol=0.06)
    np.testing.assert_allclose(task.images.mean(axis=0), 0.0, atol=0.06)
    assert min(task.class_counts) > 0.2 * task.n  # Four balanced classes.
    assert math.log(4) - 0.01 < task.entropy <= math.log(4)
    again = trainability.make_task(n=1000, seed=0)
    np.testing.assert_array_equal(again.images, task.images[:1000])
    np.testing.assert_array_equal(again.y, task.y[:1000])
    other = trainability.make_task(n=1000, seed=1)
    assert not np.array_equal(other.y, again.y)


def test_config_keys_and_grid(trainability):
    config = trainability.RunConfig("mlp", 20, "relu", "he", "sgd")
    assert config.key == "mlp-d20-relu-he-sgd-s0"
    configs = trainability.grid()
    assert len(configs) == 560
    assert len({c.key for c in configs}) == 560
    with pytest.raises(ValueError):
        trainability.RunConfig("mlp", 2, "relu", "glorot", "sgd")


@pytest.mark.parametrize("arch", ["mlp", "mlp_bn", "cnn", "cnn_bn"])
def test_build_model_is_bit_identical(trainability, arch):
    config = trainability.RunConfig(arch, 3, "tanh", "orthogonal", "adam", seed=0)
    first = trainability.build_model(config)
    second = trainability.build_model(config)
    weights = first.get_weights()
    assert len(weights) == len(second.get_weights())
    for a, b in zip(weights, second.get_weights(), strict=True):
        assert a.tobytes() == b.tobytes()
    assert trainability.weights_digest(first) == trainability.weights_digest(second)
    # Same-shape layers do not share a kernel (one seed per layer) ...
    names = [layer.name for layer in first.layers]
    prefix = "dense" if arch.startswith("mlp") else "conv"
    assert {f"{prefix}_2", f"{prefix}_3", "logits"} <= set(names)
    if arch.endswith("bn"):
        assert {"bn_1", "act_1"} <= set(names)
    k2 = first.get_layer(f"{prefix}_2").kernel.numpy()
    k3 = first.get_layer(f"{prefix}_3").kernel.numpy()
    assert not np.array_equal(k2, k3)
    # ... and another seed gives other weights.
    seeded = trainability.build_model(config.__class__(**{**vars(config), "seed": 1}))
    assert trainability.weights_digest(seeded) != trainability.weights_digest(first)


@pytest.mark.slow
def test_quick_train_writes_resumable_records(trainability, tmp_path, capsys):
    out = tmp_path / "runs.jsonl"
    assert trainability.main(["train", "--quick", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    configs = trainability.quick_grid()
    assert len(lines) == len(configs) == 8
    records = {r["key"]: r for r in map(json.loads, lines)}  # Standard JSON.
    assert set(records) == {c.key for c in configs}
    assert len(capsys.readouterr().out.splitlines()) == 1 + len(configs)

    entropy = records["mlp-d2-relu-he-adam-s0"]["entropy"]
    assert math.log(4) - 0.02 < entropy <= math.log(4)
    for key, record in records.items():
        assert not record["nonfinite"], key
        for field in ("initial_loss", "final_loss", "initial_accuracy", "seconds"):
            assert isinstance(record[field], float) and math.isfinite(record[field])
        assert record["steps_done"] == record["steps"] == trainability.QUICK["steps"]
        assert len(record["loss_curve"]) == len(record["curve_steps"]) >= 5
        assert record["curve_steps"][-1] == record["steps"]
        assert record["versions"]["keras"]
        # The weights that trained are the ones `build_model` rebuilds.
        config = trainability.RunConfig(
            **{f: record[f] for f in ("arch", "depth", "activation", "init")},
            optimizer=record["optimizer"],
            seed=record["seed"],
        )
        rebuilt = trainability.build_model(config)
        assert trainability.weights_digest(rebuilt) == record["init_weights_sha256"]

    # Healthy networks learn the task; zero-initialized ones cannot (no
    # gradient reaches any kernel: only the head bias learns class frequencies).
    for key in ("mlp-d2-relu-he-adam-s0", "cnn_bn-d2-relu-he-adam-s0"):
        healthy = records[key]
        assert healthy["final_loss"] < 0.6 * healthy["initial_loss"], key
        assert healthy["final_loss"] < 0.6 * entropy, key
        assert healthy["final_accuracy"] > 0.7, key
        assert healthy["loss_curve"][-1] < healthy["loss_curve"][0], key
    for key in ("mlp-d2-relu-zeros-adam-s0", "cnn_bn-d6-relu-zeros-adam-s0"):
        dead = records[key]
        assert dead["initial_loss"] == pytest.approx(math.log(4), abs=1e-4)
        assert dead["final_loss"] > 0.97 * entropy, key
        assert dead["final_accuracy"] < 0.35, key

    # A second run resumes: nothing left to train, nothing appended.
    trainability.main(["train", "--quick", "--out", str(out)])
    assert out.read_text().splitlines() == lines
    assert "0 to train" in capsys.readouterr().out


def test_nonfinite_values_stay_standard_json(trainability, tmp_path):
    path = tmp_path / "runs.jsonl"
    record = {
        "key": "k",
        "final_loss": trainability._finite_or_string(float("nan")),
        "loss_curve": [1.0, trainability._finite_or_string(float("inf"))],
    }
    trainability.append_run(path, record)
    with open(path, "a") as f:
        f.write('{"key": "truncated')  # An interrupted write.
    text = path.read_text()
    assert "NaN" in text and "Infinity" in text
    json.loads(text.splitlines()[0])  # Strict JSON parses it.
    (loaded,) = trainability.load_runs(path)
    assert math.isnan(loaded["final_loss"])
    assert loaded["loss_curve"][0] == 1.0 and math.isinf(loaded["loss_curve"][1])


@pytest.mark.slow
def test_cached_model_trains_like_a_fresh_one(trainability):
    # The grid reuses one traced model per group; a run through the cache must
    # start from the same weights and follow the same trajectory as a fresh one.
    task = trainability.make_task(n=256, seed=0)
    first = trainability.RunConfig("mlp_bn", 2, "tanh", "he", "sgd")
    second = trainability.RunConfig("mlp_bn", 2, "tanh", "lecun", "sgd")
    fresh = trainability.train(second, task, steps=32, batch_size=32)
    cache = trainability.ModelCache()
    trainability.train(first, task, steps=32, batch_size=32, cache=cache)
    cached = trainability.train(second, task, steps=32, batch_size=32, cache=cache)
    assert cached["init_weights_sha256"] == fresh["init_weights_sha256"]
    for field in ("initial_loss", "loss_curve", "final_loss"):
        assert cached[field] == pytest.approx(fresh[field], rel=1e-5), field
    assert cached["final_loss"] < cached["initial_loss"]
