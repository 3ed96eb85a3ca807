"""The zoo's published models as a gate on the early verdict's fit.

A false alarm on a published architecture is a bug, and the grids the
verdict is fitted on are not the zoo: a feature that the grids reward can
stop a published model that trains (the readout's pace stopped ConvNeXtTiny
and EfficientNetB0: BENCHMARKS.md). `zoo_fit.py` records, per model, the
steps its verdict read (`EarlyWatch.judged`: each watched step's loss,
rate and per-layer relative update, the step-0 flags, the budget); here a
verdict model, the installed one or a refit's, is judged on those steps.
`verdict.py fit` prints the gate; `tests/test_zoo_gate.py` holds the
installed verdict to it.

A zoo run trains when the training loss of its last epoch is below that of
its first batch and, by more than `MARGIN`, below the loss of predicting
its training labels' frequencies (`outcome`): it learned something of its
input. That is the grids' chance level (`trainability.label_entropy`); the
zoo's labels are uneven (a 4-bit number modulo 10: classes 0-5 take two
cells, 6-9 one), so it lies 1-23% below `ln 10`, and a run that learns
only the frequencies ends there.
`zoo_fit.py` runs every fit to its end, so this is the outcome a stop
would have cut short. A run whose loss rose fails (ResNet50 and
MobileNetV2 at seed 0, with their recipes at this scale); one not below
the frequencies' loss but falling is undecided, and the gate asserts
nothing about it.

Usage:
    python benchmarks/zoo_gate.py     # the installed verdict on the zoo
"""

from __future__ import annotations

import json
import math
import pathlib
import sys

HERE = pathlib.Path(__file__).parent

from keras_initdiag.diagnostics import verdict as vd  # noqa: E402
from keras_initdiag.diagnostics.rules import is_advisory  # noqa: E402
from keras_initdiag.tensorboard.codec import json_float  # noqa: E402

ZOO_FIT = HERE / "results" / "zoo_fit.json"
DEMO_FIT = HERE / "results" / "demo_fit.json"
#: The budget of the published run (`zoo_fit.py`'s default: 4 epochs of 20).
PUBLISHED_STEPS = 80


def files() -> list[pathlib.Path]:
    """`zoo_fit.json` (seed 0), every `zoo_fit_seed<k>.json`, the runs at
    other budgets (`zoo_fit_<n>steps*.json`), and the demo's regimes
    (`demo_fit.json`, written by `demo_fit.py`)."""
    found = sorted(ZOO_FIT.parent.glob("zoo_fit_*.json"))
    return [ZOO_FIT, *(path for path in found if path != ZOO_FIT), DEMO_FIT]


def runs(paths: list[pathlib.Path] | None = None) -> list[dict]:
    """Every zoo run, each with `"run"`: its model's name, its seed when not
    0 and its steps when not 80."""
    out = []
    for path in files() if paths is None else paths:
        results = json.loads(path.read_text())
        config = results["config"]
        seed = config.get("seed", 0)
        steps = config["steps_per_epoch"] * config["epochs"]
        notes = []
        if seed:
            notes.append(f"seed {seed}")
        if steps != PUBLISHED_STEPS:
            notes.append(f"{steps} steps")
        for record in results["records"]:
            run = record["model"] + (f" ({', '.join(notes)})" if notes else "")
            out.append({**record, "run": run})
    return out


def records(paths: list[pathlib.Path] | None = None) -> list[dict]:
    """The zoo runs that recorded the steps their verdict read."""
    return [r for r in runs(paths) if r.get("early_steps")]


def stopped_before_the_verdict(paths=None) -> dict[str, list[str]]:
    """Published runs that do not fail and that a step-0 flag would stop
    (`on_flag="stop"` acts before any verdict): run -> kinds. By default
    the zoo's runs, not the demo's, whose regimes that learn nothing stop
    at step 0 by design (`tests/test_zoo_gate.py` holds them to their
    truth).

    Not the verdict's doing, so not part of the gate on a fit; listed
    beside it, since a published model stopped at step 0 is a false alarm
    too.
    """
    return {
        r["run"]: sorted({f["kind"] for f in r["non_advisory"] if f["step"] == 0})
        for r in runs([p for p in files() if p != DEMO_FIT] if paths is None else paths)
        if r["acted_at"] == 0 and outcome(r) != "fails"
    }


#: How far below the loss of predicting the labels' frequencies a run must
#: end to count as learning, as a fraction of it: about the scatter of an
#: epoch's mean loss at chance (MobileNetV3Small's first epochs 2.315-2.323
#: against 2.303). The Fixup ResNet falls to its labels' entropy in one
#: epoch and stays within 0.3% of it for 220 steps: the frequencies,
#: learned.
MARGIN = 0.01


def outcome(record: dict) -> str:
    """How the run went, by the loss of its last epoch (`zoo_fit.py` runs
    every fit to its end, also where `on_flag="stop"` would have stopped it).

    `"trains"`: below its first batch and more than `MARGIN` below the
    labels' entropy (`label_entropy`: better than predicting the class
    frequencies, which ignores the input); `"fails"`: at or above its first
    batch, or not finite; `"undecided"`: falling but not below that (it may
    train given more steps, or not), or with no first batch's loss.

    Example:
    >>> run = {"loss_first_batch": 2.3, "label_entropy": 2.0}
    >>> [outcome({**run, "loss_last_epoch": v}) for v in (1.9, 2.0, 2.4, math.nan)]
    ['trains', 'undecided', 'fails', 'fails']
    """
    last, first = record["loss_last_epoch"], record["loss_first_batch"]
    if not math.isfinite(last) or last >= first:
        return "fails"
    if not math.isfinite(first):
        return "undecided"
    prior = float(record["label_entropy"])
    return "trains" if last < (1.0 - MARGIN) * prior else "undecided"


def flags_json(reports) -> tuple[list[dict], list[dict], int | None]:
    """`(flags, non_advisory, acted_at)` of a fit's reports, as `zoo_fit.py`
    and `demo_fit.py` record them: every flag (kind, layer, step, value,
    threshold, advisory by `rules.is_advisory`, pending, message), those
    `on_flag` acts on (neither advisory nor pending), and the first step it
    acts at (None: never)."""
    flags = [
        {
            "kind": f.kind,
            "layer": f.layer,
            "step": f.step,
            "value": f.value,
            "threshold": f.threshold,
            "advisory": is_advisory(f),
            "pending": f.pending,
            "message": f.message,
        }
        for report in reports
        for f in report.flags
    ]
    non_advisory = [f for f in flags if not f["advisory"] and not f["pending"]]
    return flags, non_advisory, min((f["step"] for f in non_advisory), default=None)


def early_json(early: vd.EarlySteps) -> dict:
    """`EarlySteps` as JSON (`zoo_fit.py` records it; `early_steps` reads it).

    Example:
    >>> early_json(vd.EarlySteps([2.0], [0.1], {"d": [float("nan")]}))["update_ratios"]
    {'d': ['nan']}
    """
    return {
        "losses": [json_float(v) for v in early.losses],
        "learning_rates": [json_float(v) for v in early.learning_rates],
        "update_ratios": {
            name: [json_float(v) for v in values]
            for name, values in early.update_ratios.items()
        },
        "chance_loss": json_float(early.chance_loss),
        "step0_flags": list(early.step0_flags),
        "step0_pending": list(early.step0_pending),
        "from_zero": list(early.from_zero),
        "budget": early.budget,
    }


def early_steps(record: dict) -> vd.EarlySteps:
    """The watched steps of a zoo run, as its verdict read them (the inverse
    of `early_json`)."""
    early = record["early_steps"]  # `json_float`'s "nan"/"inf" parse as floats
    return vd.EarlySteps(
        losses=[float(v) for v in early["losses"]],
        learning_rates=[float(v) for v in early["learning_rates"]],
        update_ratios={
            name: [float(v) for v in values]
            for name, values in early["update_ratios"].items()
        },
        chance_loss=float(early["chance_loss"]),
        step0_flags=early["step0_flags"],
        step0_pending=early["step0_pending"],
        from_zero=early["from_zero"],
        budget=early["budget"],
    )


def judged(risk_of, threshold: float, paths=None) -> list[tuple]:
    """`(run, outcome, risk, failing)` for each zoo run, by `risk_of`.

    Args:
        risk_of: `EarlySteps -> risk` (a non-finite run is failing anyway):
            `installed_risk`, or a refit's (`verdict.py`'s `model_risk`).
        threshold: The risk at which a run is judged failing.
        paths: The `zoo_fit.py` results (default: every seed's, `files`).
    """
    out = []
    for record in records(paths):
        early = early_steps(record)
        risk = risk_of(early) if early.finite else 1.0
        out.append((record["run"], outcome(record), risk, risk >= threshold))
    return out


def installed_risk(early: vd.EarlySteps) -> float:
    """The installed verdict's risk."""
    return vd.risk(vd.features(early))


def lines(rows: list[tuple], threshold: float) -> list[str]:
    """The gate in words: every zoo run, and the trained ones it would stop."""
    out = [f"zoo gate (threshold {threshold:.4g}):"]
    for name, how, risk, failing in rows:
        verdict = "failing" if failing else "training"
        out.append(
            f"  {name:38s} {how:9s}: risk {risk:.3f} ({risk - threshold:+.3f}) "
            f"{verdict}"
        )
    stopped = [name for name, how, _, failing in rows if how == "trains" and failing]
    out.append(
        "  STOPS ZOO MODELS THAT TRAIN: " + ", ".join(stopped)
        if stopped
        else "  stops no zoo model that trains"
    )
    return out


def main() -> int:
    """Print the installed verdict's gate; exit 1 if it stops a trained run."""
    rows = judged(installed_risk, vd.RISK_THRESHOLD)
    print("\n".join(lines(rows, vd.RISK_THRESHOLD)))
    for run, kinds in stopped_before_the_verdict().items():
        print(f"  stopped at step 0, before any verdict: {run} ({', '.join(kinds)})")
    return int(any(how == "trains" and failing for _, how, _, failing in rows))


if __name__ == "__main__":
    sys.exit(main())
