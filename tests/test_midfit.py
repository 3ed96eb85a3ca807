"""Keeps `benchmarks/midfit.py` honest: real diagnosed fits, counted exactly."""

import pytest
from helpers import load_script

from keras_initdiag.diagnostics import verdict as vd

FIELDS = {"kind", "layer", "step", "value", "threshold", "acted"}


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
    # Symmetry is acted on at step 0 and after it (not advice during training).
    assert all(f["acted"] for f in record["flags"] if f["kind"] == "symmetry")
    assert "verdict" in record

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


def test_the_held_out_judge_counts_what_on_flag_acts_on(midfit):
    def run(key, failed, flags, verdict=None):
        return {
            "key": key,
            "failed": failed,
            "agrees": True,
            "final_loss": 0.1 if not failed else 1.3,
            "final_loss_batch_stats": 0.1 if not failed else 1.3,
            "entropy": 1.386,
            "nonfinite": False,
            "flags": flags,
            "verdict": verdict,
        }

    def flag(kind, step, acted, value=0.5, threshold=1e-3):
        return dict(
            kind=kind,
            layer="d",
            step=step,
            value=value,
            threshold=threshold,
            acted=acted,
        )

    records = [
        # Trained, one acted flag after step 0 (the verdict), one advice.
        run(
            "a",
            False,
            [flag("verdict", 32, True), flag("dead", 48, False)],
            {"step": 32, "risk": 0.95, "failing": True},
        ),
        # Trained, acted only at step 0: not a mid-fit alarm.
        run("b", False, [flag("symmetry", 0, True)]),
        # Failed, nothing acted; backward vanishing at 2e-4 after step 0.
        run("c", True, [flag("vanishing", 16, False, value=2e-4)]),
        # Failed, backward vanishing at 5e-4 (above the candidate).
        run(
            "d",
            True,
            [flag("vanishing", 16, False, value=5e-4)],
            {"step": 32, "risk": 0.9, "failing": True},
        ),
    ]
    text = "\n".join(midfit.judge_heldout_lines(records))
    assert "on runs that trained: 1 of 2**" in text
    assert "At any step, step 0 too: 2 of 2 trained runs and 0 of 2 failed" in text
    assert "| verdict | 1 | 0 | 0 | 0 |" in text
    assert "| dead | 0 | 0 | 1 | 0 |" in text
    assert "| vanishing | 0 | 0 | 0 | 2 |" in text
    assert "fire on 0 trained and 1 failed runs" in text
    assert "of the 2 failed runs nothing acted on, it would catch 1" in text
    assert "given on 2 runs; failing on 1 failed and 1 trained runs" in text
    # Compared with the risk from recorded steps: one agrees, one does not
    # (for any installed threshold between 0.5 and 0.9).
    assert 0.5 < vd.RISK_THRESHOLD <= 0.9
    text = "\n".join(midfit.judge_heldout_lines(records, {"a": 0.99, "d": 0.5}))
    assert "(2 runs): median |difference| 0.22, largest 0.4" in text
    assert "the same side of the threshold on 1." in text
