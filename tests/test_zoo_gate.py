"""The zoo gate: the early verdict must stop no published model that trains.

`benchmarks/zoo_fit.py` records the steps each zoo model's verdict read; the
gate judges any verdict model on them. These tests hold the installed
verdict to the committed records.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import load_script

from keras_initdiag.diagnostics import verdict as vd


@pytest.fixture(scope="module")
def gate():
    return load_script("benchmarks/zoo_gate.py")


def test_the_gate_reads_what_the_live_verdict_read(gate):
    """Offline, from the recorded steps, the features are the callback's own:
    the gate judges exactly what the verdict judged during the fit, and its
    risk is the installed model's on those features (a refit since the
    recording changes the risk, not what it is computed from)."""
    runs = gate.records()
    assert len(runs) >= 10  # every zoo model the verdict reached
    for record in runs:
        early = gate.early_steps(record)
        live = {k: float(v) for k, v in record["verdict"]["features"].items()}
        offline = vd.features(early)
        assert set(offline) == set(live), record["model"]
        for name, value in offline.items():
            assert value == pytest.approx(live[name], rel=1e-9, abs=1e-12, nan_ok=True)
        assert gate.installed_risk(early) == vd.risk(live)


#: Known false alarms on published models, found by the zoo's extra seeds
#: and not fixed yet (BENCHMARKS.md, "Real fits of the published models").
#: Pinned: a fix makes this test fail until the entry is removed, and any
#: new false alarm makes it fail too. At 80 steps none since `log_pace`
#: weighs the loss against its noise: MobileNetV3Small at seed 3 (loss at
#: chance through the watch, 1.04x it within one standard error; it ends at
#: 0.72 of its labels' entropy) was stopped before it. At 240 steps
#: (`zoo_fit.py --epochs 12`, seeds 0-2) the runs whose loss blows up to
#: 3-4x chance at their recipes' peak rate recover as the cosine decays the
#: rate; risk 1.00, as with the fit before `log_pace`. Four of the seven
#: stopped end at or above their labels' entropy (ResNet50 at seeds 1 and
#: 2, MobileNetV2 at seed 2, EfficientNetB0 at seed 2: 0.99-1.18 of it),
#: the loss of predicting the class frequencies: they learned nothing of
#: the input, and the stop is right. These three end 2-6% below it. At 320
#: steps (`--epochs 16`, seed 0; the loss watched for 64 steps) ResNet50
#: is stopped at step 74 as at 240 and ends 1.6% below its entropy;
#: MobileNetV2, stopped at 240, is judged training (risk 0.48). At seed 1
#: (the ninth fit installed) both are stopped at step 74: ResNet50 (risk
#: 1.00) ends 11% below its entropy, MobileNetV2 (0.731 against 0.730)
#: 1.8% below it, both after the same blow-up (epoch means up to 9.1 and
#: 8.2 against 2.3). At seed 2 MobileNetV2 (0.958) ends 2.0% below its
#: entropy; ResNet50, stopped too, ends at 1.01 of it: the stop is right.
#: Since the eleventh fit reads each feature within its fitted range (the
#: blow-up's rising loss no longer extrapolated), both MobileNetV2 runs at
#: 320 steps are judged training (seeds 1 and 2: risks 0.12 and 0.59
#: against 0.739).
KNOWN_VERDICT_FALSE_ALARMS = {
    "resnet50 (320 steps)",
    "resnet50 (seed 1, 320 steps)",
    "resnet50 (240 steps)",
    "mobilenet_v2 (240 steps)",
    "mobilenet_v2 (seed 1, 240 steps)",
}
#: None since the step-0 "dead" rule weighs chance (`rules.units.chance_dead`):
#: MobileNetV3Small at seed 4, stopped at step 0 before it, lost 6 of the 8
#: units of its first squeeze-and-excite ReLU by luck (P = 0.145).
KNOWN_STEP0_FALSE_ALARMS: dict = {}


def test_the_installed_verdict_stops_no_zoo_model_that_trains(gate):
    """A false alarm on a published architecture is a bug: every zoo run
    that ends better than predicting its labels' frequencies, on every
    recorded seed, is judged training, but for the known ones pinned above;
    on the published run
    (seed 0) the two whose loss rises at this scale with their recipes
    (ResNet50, MobileNetV2) are judged failing."""
    rows = gate.judged(gate.installed_risk, vd.RISK_THRESHOLD)
    trained = {name: failing for name, how, _, failing in rows if how == "trains"}
    assert len(trained) >= 30
    stopped = {name for name, failing in trained.items() if failing}
    assert stopped == KNOWN_VERDICT_FALSE_ALARMS
    published = gate.judged(gate.installed_risk, vd.RISK_THRESHOLD, [gate.ZOO_FIT])
    rising = {name: failing for name, how, _, failing in published if how == "fails"}
    assert rising == {"resnet50": True, "mobilenet_v2": True}
    assert not any(failing for _, how, _, failing in published if how == "trains")


#: The demo's regimes that train (`benchmarks/demo_fit.py`: the demo's own
#: setting, 96 steps of SGD with momentum 0.9 from step 0): He starts at
#: 3x chance (loss 4.1), and momentum carries that first gradient through
#: the first twenty steps. A feature read that echo as a collapse once
#: (BENCHMARKS.md, "The fifteenth and sixteenth held-out grids").
DEMO_TRAINS = {"he", "for_activation", "lsuv", "he_whitening"}
#: The demo's regimes that learn nothing (within 2% of chance, or NaN).
DEMO_FAILS = {"zeros", "small_random", "large_random", "xavier", "lecun"}


def test_the_gate_holds_the_demo_to_its_truth(gate):
    """The demo's runs are in the gate: the healthy regimes end below their
    labels' entropy and are judged training; the ones that learn nothing
    do not train and are judged failing. So a refit (`verdict.py fit`
    prints the gate) that judges the demo wrong says so before it ships."""
    rows = gate.judged(gate.installed_risk, vd.RISK_THRESHOLD, [gate.DEMO_FIT])
    by_regime = {name.split()[1]: (how, failing) for name, how, _, failing in rows}
    assert set(by_regime) == DEMO_TRAINS | DEMO_FAILS
    for regime in DEMO_TRAINS:
        assert by_regime[regime] == ("trains", False), regime
    for regime in DEMO_FAILS:
        how, failing = by_regime[regime]
        assert how != "trains" and failing, regime
    assert gate.DEMO_FIT in gate.files()


def test_a_run_is_named_by_its_model_seed_and_budget(gate, tmp_path):
    """Runs of one model at other seeds or budgets are told apart."""
    paths = []
    for seed, epochs in ((0, 4), (2, 4), (0, 12), (3, 12)):
        path = tmp_path / f"{seed}-{epochs}.json"
        config = {"seed": seed, "steps_per_epoch": 20, "epochs": epochs}
        path.write_text(json.dumps({"config": config, "records": [{"model": "m"}]}))
        paths.append(path)
    assert [r["run"] for r in gate.runs(paths)] == [
        "m",
        "m (seed 2)",
        "m (240 steps)",
        "m (seed 3, 240 steps)",
    ]
    assert gate.files()[0] == gate.ZOO_FIT


def test_no_zoo_run_is_stopped_at_step_0_but_the_known(gate):
    assert gate.stopped_before_the_verdict() == KNOWN_STEP0_FALSE_ALARMS


def test_the_gate_catches_a_fit_that_stops_a_model_that_trains(gate):
    """A refit whose risk is high everywhere (here: a large intercept) is
    named by the gate: it cannot pass silently."""
    k = len(vd.FEATURES)
    reckless = (np.full(k, -np.inf), np.full(k, np.inf), np.zeros(k), np.ones(k))
    reckless += (np.zeros(k), 5.0)
    refit_risk = load_script("benchmarks/verdict.py").model_risk(reckless)
    rows = gate.judged(refit_risk, vd.RISK_THRESHOLD)
    assert all(failing for _, _, _, failing in rows)
    assert "STOPS ZOO MODELS THAT TRAIN" in "\n".join(
        gate.lines(rows, vd.RISK_THRESHOLD)
    )
