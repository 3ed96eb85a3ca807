"""Keeps `benchmarks/zoo_fit.py` working: one tiny entry, a few steps."""

import json
import math

import numpy as np
import pytest
from helpers import load_script

FIELDS = {
    "model",
    "optimizer",
    "task",
    "classes_in_labels",
    "label_entropy",
    "steps_planned",
    "steps_run",
    "stopped",
    "acted_at",
    "diagnosed_steps",
    "early_steps",
    "flags",
    "non_advisory",
    "advisory_count",
    "loss_first_batch",
    "loss_last_epoch",
    "loss_per_epoch",
    "update_ratios",
    "verdict",
    "seconds",
}


@pytest.mark.slow
def test_quick_run_records_one_fit(tmp_path, capsys):
    zoo_fit = load_script("benchmarks/zoo_fit.py")
    output = tmp_path / "zoo_fit.json"
    zoo_fit.main(["--quick", "--only", "zero_head_mlp", "--output", str(output)])
    (record,) = json.loads(output.read_text())["records"]

    assert set(record) == FIELDS
    # 12 steps, the watch starting half-way up a 4-step warmup: no verdict yet.
    printed = capsys.readouterr().out
    assert record["verdict"] is None and "none yet" in printed
    assert record["early_steps"] is None  # nothing judged, nothing recorded
    assert record["model"] == "zero_head_mlp"
    assert record["optimizer"].startswith("SGD(momentum 0.9) peak 0.00625")
    assert record["steps_planned"] == 12
    assert record["stopped"] == (record["steps_run"] < 12)
    assert not record["stopped"]  # on_flag="warn": the fit runs to its end
    steps = [f["step"] for f in record["non_advisory"]]
    assert record["acted_at"] == (min(steps) if steps else None)
    # Step 0, the update-ratio diagnosis, every 10 steps, the last step.
    assert record["diagnosed_steps"][0] == 0 and 10 in record["diagnosed_steps"]
    assert record["update_ratios"]
    for flag in record["flags"]:
        assert set(flag) == {
            "kind",
            "layer",
            "step",
            "value",
            "threshold",
            "advisory",
            "message",
        }
    assert record["non_advisory"] == [f for f in record["flags"] if not f["advisory"]]
    assert record["advisory_count"] == len(record["flags"]) - len(
        record["non_advisory"]
    )
    assert math.isfinite(record["loss_first_batch"])
    assert math.isfinite(record["loss_last_epoch"])
    assert "| zero_head_mlp |" in printed


def test_labels_are_a_fixed_function_of_the_inputs():
    zoo_fit = load_script("benchmarks/zoo_fit.py")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (64, 8, 8, 3)).astype("float32")
    task = zoo_fit.Task("sign", x)
    y = task(x)
    np.testing.assert_array_equal(task(x[:5]), y[:5])  # Per sample, not per batch.
    assert set(y) <= set(range(10)) and len(set(y)) > 5
    # Constant over positions: a translation-invariant net can learn them.
    np.testing.assert_array_equal(task(np.roll(x, 3, axis=1)), y)
    tokens = np.array([[13, 4, 4, 0], [7, 21, 31, 0]])
    np.testing.assert_array_equal(zoo_fit.Task("first_token", tokens)(tokens), [3, 7])
    np.testing.assert_array_equal(
        zoo_fit.Task("majority_residue", tokens)(tokens), [4, 1]
    )


def test_each_budget_and_seed_has_its_own_results_file():
    zoo_fit = load_script("benchmarks/zoo_fit.py")
    names = [zoo_fit.output_for(s, e).name for s, e in ((0, 4), (3, 4), (0, 12))]
    assert names == ["zoo_fit.json", "zoo_fit_seed3.json", "zoo_fit_240steps.json"]
    assert zoo_fit.output_for(2, 12).name == "zoo_fit_240steps_seed2.json"
    with pytest.raises(SystemExit, match="--epochs must be at least 1, got 0"):
        zoo_fit.main(["--epochs", "0"])


def test_label_entropy_is_the_loss_of_predicting_the_frequencies():
    """Closed forms, and the recorded runs' value is their own labels'."""
    zoo_fit = load_script("benchmarks/zoo_fit.py")
    assert zoo_fit.label_entropy(np.arange(10)) == pytest.approx(math.log(10))
    # Two cells for classes 0-5, one for 6-9 (a 4-bit number modulo 10).
    y = np.arange(16) % 10
    expected = -(6 * (2 / 16) * math.log(2 / 16) + 4 * (1 / 16) * math.log(1 / 16))
    assert zoo_fit.label_entropy(y) == pytest.approx(expected)
    entry = next(e for e in zoo_fit._zoo().HEALTHY if e.name == "ids_and_features")
    path = zoo_fit.output_for(1)
    record = next(
        r for r in json.loads(path.read_text())["records"] if r["model"] == entry.name
    )
    (_, y), _ = zoo_fit.training_data(entry, 320, seed=1)
    assert record["label_entropy"] == pytest.approx(zoo_fit.label_entropy(y), 1e-12)
    assert record["label_entropy"] < math.log(10) - 0.02
