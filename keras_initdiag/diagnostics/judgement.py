"""The early verdict as a judgement: the `Verdict` record, in words, and its flag.

`verdict` measures the watched steps and gives their risk; here the risk
becomes what the callback reports: a `report.Verdict` that says in words
what the steps showed and why it judged so (`describe`), the pending flags
it confirms or clears, and, when failing, a "verdict" `Flag`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from keras_initdiag.diagnostics import chance
from keras_initdiag.diagnostics import verdict as vd
from keras_initdiag.diagnostics.report import Flag, Verdict

_REASONS = {
    "level": "the loss is still high",
    "progress": "the loss hardly falls",
    "log_trust": "the network as a whole hardly moves",
    "log_slowest": "a layer hardly moves",
    "above_chance": "the loss is above the chance level",
    "over_trust": "the updates change the network completely at every step",
    "step0_certain": "step 0 flagged it",
    "step0_pending": "step 0 flagged it",
    "log_budget": "the training is short",
    "log_pace": "the loss stays above the chance level: it falls slowly "
    "towards it, or not at all",
}


def judge(
    early: vd.EarlySteps,
    step: int,
    start: int,
    pending: Sequence = (),
    threshold: float | None = None,
):
    """The verdict on the watched steps.

    Args:
        early: What the watched steps showed.
        step: The step at which the verdict is given.
        start: The first watched step.
        pending: The pending `Flag`s it confirms (failing) or clears.
        threshold: The risk at which the run is called failing. Defaults to
            `None`: `verdict.RISK_THRESHOLD`.

    Returns:
        A `keras_initdiag.diagnostics.report.Verdict`.

    Example:
    >>> early = vd.EarlySteps([1.4] * 32, [0.01] * 32, {"dense": [1e-9] * 32}, 1.386)
    >>> judge(early, 32, 0).failing
    True
    """
    threshold = vd.RISK_THRESHOLD if threshold is None else threshold
    values = vd.features(early)
    finite = early.finite
    score = vd.risk(values) if finite else 1.0
    failing = score >= threshold
    names = tuple(dict.fromkeys(f"{f.kind} at {f.layer}" for f in pending))
    return Verdict(
        step=int(step),
        start=int(start),
        failing=bool(failing),
        risk=score,
        threshold=threshold,
        features=values,
        summary=describe(early, values, failing),
        confirmed=names if failing else (),
        cleared=() if failing else names,
    )


def describe(early: vd.EarlySteps, values: Mapping[str, float], failing: bool) -> str:
    """What the watched steps showed, in words."""
    losses = np.asarray(early.losses, dtype=np.float64)
    steps = max(len(early.learning_rates), losses.size)
    if not early.finite:
        return f"The loss or an update became NaN or Inf within {steps} steps."
    words = []
    if losses.size:
        steps = losses.size
        _, head, tail = chance.quarters(losses)
        text = (
            f"Over {steps} steps the training loss went from {head:.3g} to "
            f"{tail:.3g} ({(tail - head) / head:+.0%})"
            if head > 0
            else f"Over {steps} steps the training loss went to {tail:.3g}"
        )
        if early.chance > 0:
            text += f", {tail / early.chance:.2f}x the chance level"
        words.append(text + ".")
        words += _pace_words(chance.pace(losses, early.chance), falls=tail < head)
    ratios = early.ratios()
    if ratios.size:
        medians = np.nanmedian(np.nan_to_num(ratios, nan=0.0), axis=0)
        slowest = int(np.argmin(medians))
        name = early.layers()[slowest]
        words.append(
            f"Compounded over depth the weights move "
            f"{10 ** values['log_trust']:.2g} per step; the slowest layer, {name}, "
            f"{medians[slowest]:.2g} of its weights per step."
        )
    if early.step0_flags:
        kinds = ", ".join(dict.fromkeys(early.step0_flags))
        words.append(f"Step 0 flagged: {kinds}.")
    judged = round(vd.CALIBRATION_BUDGET * 10 ** values["log_budget"])
    if early.budget is None:
        words.append(f"Judged as a training of {judged} steps (budget unknown).")
    else:
        words.append(
            f"Judged for a training of {early.budget} steps"
            + (f" (as {judged})." if judged != early.budget else ".")
        )
    terms = vd.contributions(values)
    if failing and vd.frozen(values):
        words.append("Mostly because the network does not move.")
    elif failing:
        worst = [n for n in sorted(terms, key=terms.get, reverse=True) if terms[n] > 0]
        if worst:
            words.append("Mostly because " + _REASONS[worst[0]] + ".")
    return " ".join(words)


def _pace_words(steps: float, falls: bool) -> list[str]:
    """`pace` in words (none at chance, below it, or unknown)."""
    if steps >= chance.PACE_CAP:
        how = "falls too slowly to reach it" if falls else "does not fall"
        return [f"It is above the chance level and {how}."]
    if steps >= 1:
        count = math.ceil(steps)
        return [
            f"At this pace it comes within its noise of the chance level in "
            f"about {count} step{'s' if count > 1 else ''}."
        ]
    return []


def verdict_flags(verdict, model: str) -> list:
    """A failing verdict as a "verdict" flag on `model` (none for a healthy one).

    Example:
    >>> early = vd.EarlySteps([1.4] * 32, [0.01] * 32, {"dense": [1e-9] * 32}, 1.386)
    >>> [f.kind for f in verdict_flags(judge(early, 32, 0), "mlp")]
    ['verdict']
    """
    if not verdict.failing:
        return []
    message = verdict.summary
    if verdict.confirmed:
        message += " Confirms the pending " + ", ".join(verdict.confirmed) + "."
    return [
        Flag("verdict", model, verdict.step, verdict.risk, verdict.threshold, message)
    ]
