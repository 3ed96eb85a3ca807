"""Keeps `benchmarks/midfit.py` honest: real diagnosed fits, counted exactly."""

import pytest
from helpers import load_script

FIELDS = {"kind", "layer", "step", "value", "threshold"}


@pytest.fixture(scope="module")
def midfit():
    return load_script("benchmarks/midfit.py")


@pytest.mark.slow
def test_records_every_diagnosis_and_the_outcome(midfit, tmp_path):
    tr = midfit.tr
    task = tr.make_task(n=256, seed=0)
    cache = tr.ModelCache()
    zeros = tr.RunConfig("mlp", 2, "relu", "zeros", "sgd")
    # What the committed grid says of a net that stays at chance, same weights.
    grid_run = {
        "init_weights_sha256": tr.weights_digest(tr.build_model(zeros)),
        "entropy": task.entropy,
        "final_loss": task.entropy,
        "final_loss_batch_stats": task.entropy,
        "nonfinite": False,
    }
    record = midfit.measure_one(zeros, task, grid_run, cache, steps=32, batch_size=32)
    assert record["key"] == zeros.key and record["init"] == "zeros"
    # 24: after the first updates (3 batch ends of 8 steps), with their ratios.
    assert record["diagnosed"] == [0, 16, 24, 32] and len(record["probe_loss"]) == 4
    assert record["steps_done"] == 32 and record["nonfinite"] is False
    assert record["failed"] is True and record["agrees"] is True
    assert all(set(f) == FIELDS for f in record["flags"])
    # Zero kernels: every unit alike, before training and after it.
    assert "symmetry" in midfit._kinds(record, after_zero=False)
    assert "symmetry" in midfit._kinds(record, after_zero=True)
    assert midfit.flagged_at_zero(record)

    he = tr.RunConfig("mlp", 2, "relu", "he", "adam")
    record = midfit.measure_one(he, task, None, cache, steps=32, batch_size=32)
    assert "agrees" not in record and record["diagnosed"] == [0, 16, 24, 32]
    assert record["probe_loss"][-1] < record["probe_loss"][0]  # It learns.
    assert not midfit.flagged_at_zero(record)

    out = tmp_path / "midfit.jsonl"
    tr.append_run(out, record)
    assert midfit.measure(out, configs=[he]) == 0  # Resumable: already there.


def _flag(kind, step):
    return {
        "kind": kind,
        "layer": "dense_1",
        "step": step,
        "value": 1.0,
        "threshold": 0.5,
    }


def _run(key, failed, *flags):
    return {
        "key": key,
        "arch": "mlp",
        "depth": 6,
        "failed": failed,
        "agrees": True,
        "final_loss": 1.0 if failed else 0.1,
        "final_loss_batch_stats": 1.0,
        "flags": [_flag(kind, step) for kind, step in flags],
    }


RECORDS = [
    _run("a", False, ("dead", 32)),  # A mid-fit false alarm, quiet at step 0.
    _run("b", True, ("symmetry", 0), ("dead", 16), ("dead", 32), ("symmetry", 16)),
    _run("c", True, ("init_mismatch", 0), ("saturation", 48)),  # Advisory at 0.
    _run("d", False, ("exploding", 0), ("exploding", 16), ("init_mismatch", 16)),
    _run("e", False, ("init_mismatch", 0)),
    {
        "key": "h",
        "case": "random_labels",
        "seed": 1,
        "final_loss": 2.0,
        "entropy": 2.3,
        "diagnosed": [0, 1, 2],
        "flags": [_flag("dead", 2)],
    },
]


def test_judge_counts_hand_made_records(midfit):
    # [trained, of which flagged at step 0, failed, of which flagged at step 0]
    assert midfit.count(RECORDS) == {
        "exploding": [1, 1, 0, 0],
        "symmetry": [0, 0, 1, 1],
        "dead": [1, 0, 1, 1],
        "saturation": [0, 0, 1, 0],
        "init_mismatch": [1, 1, 0, 0],
    }
    assert list(midfit.count(RECORDS)) == [
        "exploding",
        "symmetry",
        "dead",
        "saturation",
        "init_mismatch",
    ]
    assert midfit.per_step(RECORDS) == {
        16: {
            "dead": [0, 1],
            "symmetry": [0, 1],
            "exploding": [1, 0],
            "init_mismatch": [1, 0],
        },
        32: {"dead": [1, 1]},
        48: {"saturation": [0, 1]},
    }
    text = "\n".join(midfit.judge_lines(RECORDS))
    assert "5 grid runs (mlp-d6: 5): 3 trained, 2 failed." in text
    assert "runs that trained: 2 of 3** (1 of them quiet at step 0)" in text
    assert "| dead | 1 | 0 | 1 | 1 |" in text
    assert "| init_mismatch (advisory) | 1 | 1 | 0 | 0 |" in text
    assert "| 32 |  |  | 1/1 |  |  |" in text
    assert "- a (loss 0.100, quiet at step 0): dead at dense_1 from step 32" in text
    assert "seed 1: loss 2.000 (label entropy 2.300), 3 diagnoses; " in text
    assert "after step 0: dead at 1 diagnoses (steps 2-2, dense_1)" in text
    assert "Failed runs quiet at step 0: 1, of which flagged after it: 1 ['c']" in text
