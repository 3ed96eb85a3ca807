"""Vanishing and exploding: scales compounded along the path the signal takes.

Forward, a node's scale is its output's second moment relative to its
segment's start; backward, the gradient energy relative to the output side
(see `keras_initdiag.diagnostics.signal`). A flag names the node where the
compounded scale is worst, its value is that scale, and its message names
the layers with weights whose own gain, with the parameter-free layers that
follow them (their activation, pooling), moved it most.
"""

from __future__ import annotations

import math

from keras_initdiag.diagnostics import signal
from keras_initdiag.diagnostics.report import DiagnosticReport, Flag
from keras_initdiag.diagnostics.rules.common import (
    advice,
    branch_ends,
    get,
    info,
    read_only_by_norms,
    sentence,
)
from keras_initdiag.diagnostics.rules.thresholds import (
    ADAPTIVE_OPTIMIZERS,
    Thresholds,
)


def depth_flags(report: DiagnosticReport, t: Thresholds) -> list[Flag]:
    """At most one "vanishing" and one "exploding" flag, forward or backward."""
    ends = branch_ends(report)
    forward = signal.forward(report)
    backward = signal.backward(report)
    renormalized = read_only_by_norms(report)
    trained = _behind_weights(report)
    found: dict[str, Flag] = {}
    gradient_high = (
        t.gradient_exploding if _normalized(report) else t.gradient_exploding_plain
    )
    for direction, result, low, high in (
        ("forward", forward, t.vanishing, t.exploding),
        ("backward", backward, t.gradient_vanishing, gradient_high),
    ):
        judged = {
            name: scale
            for name, scale in result.scale.items()
            if _judged(report, name, ends | renormalized, trained, direction)
        }
        if not judged:
            continue
        lowest = min(judged, key=judged.get)
        highest = max(judged, key=judged.get)
        for kind, name, threshold in (
            ("vanishing", lowest, low),
            ("exploding", highest, high),
        ):
            value = math.exp(judged[name])
            crossed = value < threshold if kind == "vanishing" else value > threshold
            if crossed and kind not in found:
                found[kind] = _flag(
                    report, kind, direction, result, name, value, threshold
                )
    flags = [found[k] for k in ("exploding", "vanishing") if k in found]
    if "exploding" not in found:
        flags += _absolute(report, t)
    return flags


def _normalized(report: DiagnosticReport) -> bool:
    """Whether the network has a normalization layer (a different threshold)."""
    return any(facts.kind == "norm" for facts in report.info.values())


def _judged(
    report: DiagnosticReport, name: str, exempt: set, trained: set, direction: str
) -> bool:
    """Whether a node's scale can signal a problem.

    Forward: not at the outputs (their scale is set by the task), at a
    branch end (set by design), or where only normalization layers read the
    output (they divide its scale out). Backward: only where the gradient
    still trains a layer with weights (at or before the node); before the
    first such layer (the inputs, a `Normalization` or `Whitening` of them)
    it trains nothing, and an input layer's anisotropic rescaling changes
    `E[x^2] E||g||^2` by design.
    """
    if direction == "backward":
        return name in trained
    return not info(report, name).is_output and name not in exempt


def _behind_weights(report: DiagnosticReport) -> set[str]:
    """Nodes with a layer with trainable weights at or before them.

    Reports written before `trainable` was recorded count every layer with
    weights.
    """
    recorded = any(info(report, name).trainable for name in report.layers)
    found: set[str] = set()
    for name in report.layers:  # forward order
        facts = info(report, name)
        if (facts.weight_shape and (facts.trainable or not recorded)) or any(
            source in found for source in facts.inputs
        ):
            found.add(name)
    return found


def _units(report, chain: list[str], gains: dict, direction: str) -> list[tuple]:
    """`(layer with weights, the gain it and its parameter-free nodes cause)`.

    `chain` runs along the direction of the scale. A step's gain is caused by
    the node it enters going forward, and by the node it leaves going
    backward (a layer's Jacobian acts on the gradient at its output). Each
    cause is charged to the nearest layer with weights at or before it in
    forward order, so an activation, pooling or dropout counts with the
    layer it follows; steps before the first such layer are left out (their
    gain is fixed by design).
    """
    order = chain if direction == "forward" else chain[::-1]
    owner, current = {}, None
    for name in order:
        if info(report, name).weight_shape:
            current = name
        owner[name] = current
    units: dict[str, float] = {}
    for i in range(1, len(chain)):
        gain = gains.get(chain[i], math.nan)
        cause = chain[i] if direction == "forward" else chain[i - 1]
        if owner.get(cause) is None or not (math.isfinite(gain) and gain > 0):
            continue
        units[owner[cause]] = units.get(owner[cause], 1.0) * gain
    return list(units.items())


#: Kernel variances the rule-of-thumb families draw, by forward fans.
_FORMULAS = (
    ("He", "2/fan_in", lambda fi, fo: 2.0 / fi),
    ("LeCun", "1/fan_in", lambda fi, fo: 1.0 / fi),
    ("Xavier", "2/(fan_in+fan_out)", lambda fi, fo: 2.0 / (fi + fo)),
)


#: What each family's variance suits (the rule table, read backwards).
_SUITS = {
    "he": "the ReLU family",
    "xavier": "tanh and sigmoid",
    "lecun": "SELU, tanh and sigmoid",
}


def _formula(variance: float, fan_in: float, fan_out: float, prefer: str = "") -> str:
    """Which family's formula a kernel variance is, or `""`.

    At equal fans Xavier's and LeCun's formulas agree: the declared family
    (`prefer`) is named first.
    """
    if not (fan_in > 0 and fan_out > 0 and variance > 0):
        return ""
    ordered = sorted(_FORMULAS, key=lambda f: f[0].lower() != prefer)
    for family, text, rule in ordered:
        if abs(math.log(variance / rule(fan_in, fan_out))) < math.log(1.15):
            return f"{family}'s {text}"
    return ""


def explain(report: DiagnosticReport, layer: str, gain: float) -> str:
    """Why a layer with weights moves the scale, and what would keep it.

    Its gain (with the parameter-free layers after it) scales with its
    kernel variance, so `Var(W) / gain` keeps the signal steady; both are
    named by the family formula they match (forward fans), e.g. "its kernel
    variance 2/(fan_in+fan_out) suits tanh, not relu; He would keep it at 1".
    """
    facts = info(report, layer)
    if facts.kernel_normalized and report.training:
        return (
            f"{layer!r} multiplies the variance by {gain:.3g}: training divides "
            "its kernel by the kernel's largest singular value, so its initial "
            "scale does not set this gain"
        )
    variance = get(report, layer, "weight_variance")
    if not (math.isfinite(variance) and variance > 0 and gain > 0):
        return ""
    verb = "halves" if 0.4 < gain < 0.6 else "doubles" if 1.7 < gain < 2.3 else ""
    effect = (
        f"{layer!r} {verb} the variance"
        if verb
        else (f"{layer!r} multiplies the variance by {gain:.3g}")
    )
    have = _formula(variance, facts.fan_in, facts.fan_out, facts.initializer)
    text = f"{effect}: its kernel variance is {variance:.3g}" + (
        f", {have}" if have else ""
    )
    if have and facts.activation and facts.recommended:
        family = have.split("'")[0].lower()
        if family not in facts.recommended:
            text += f", which suits {_SUITS[family]}, not {facts.activation}"
    steady = variance / gain
    want = _formula(steady, facts.fan_in, facts.fan_out)
    keep = want.split("'")[0] if want else f"a kernel variance of {steady:.3g}"
    return text + f"; {keep} would keep it at 1"


def _culprits(report, units: list[tuple], kind: str) -> str:
    """Name the layers that moved the scale most, with their gains."""
    wrong = [u for u in units if (u[1] < 1) == (kind == "vanishing") and u[1] != 1]
    if not wrong:
        return ""
    first, last = wrong[0][0], wrong[-1][0]  # in the signal's order
    wrong.sort(key=lambda u: -abs(math.log(u[1])))
    logs = sorted(abs(math.log(g)) for _, g in wrong)
    if len(wrong) >= 3 and logs[-1] < 3 * logs[len(logs) // 2]:
        # No layer stands out: the factor is spread over the chain.
        gains = [g for _, g in wrong]
        geometric = math.exp(sum(math.log(g) for g in gains) / len(gains))
        why = explain(report, wrong[0][0], wrong[0][1])
        return (
            f"Each of the {len(wrong)} layers with weights on the way "
            f"(from {first!r} to {last!r}) multiplies it by about "
            f"{geometric:.3g}x, between {min(gains):.3g}x and {max(gains):.3g}x "
            "(with the parameter-free layers that follow it)"
            + (f". For instance {why}" if why else "")
        )
    named = ", ".join(f"{name!r} ({gain:.3g}x)" for name, gain in wrong[:3])
    more = f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""
    why = explain(report, wrong[0][0], wrong[0][1])
    return f"The layers that move it most: {named}{more}" + (f". {why}" if why else "")


def _backward_advice(report: DiagnosticReport, chain: list[str], kind: str) -> str:
    """What to try when the gradient alone compounds along a chain."""
    if any(info(report, n).kind == "norm" for n in chain):
        return (
            "in a plain stack of normalized layers the gradient grows about "
            "sqrt(pi / (pi - 1)) = 1.21x per layer going backward (Yang et "
            "al. 2019): add residual connections, or use fewer layers"
        )
    if kind == "exploding":
        return (
            "the layers amplify the gradient beyond what the forward signal "
            "shows (a chaotic regime, e.g. tanh with a large weight scale; "
            "Schoenholz et al. 2017): lower the initial weight scale (Xavier or "
            "LeCun for tanh), or add normalization"
        )
    return (
        "the layers shrink the gradient beyond what the forward signal shows "
        "(an ordered regime, e.g. saturating activations): raise the initial "
        "weight scale, or add normalization or residual connections"
    )


def _culprits_backward(units: list[tuple], kind: str) -> str:
    """Name the layers whose backward steps moved the gradient energy most."""
    wrong = [u for u in units if (u[1] < 1) == (kind == "vanishing") and u[1] != 1]
    if not wrong:
        return ""
    wrong.sort(key=lambda u: -abs(math.log(u[1])))
    named = ", ".join(f"{name!r} ({gain:.3g}x)" for name, gain in wrong[:3])
    more = f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""
    return f"The layers whose backward pass moves it most: {named}{more}"


def _flag(report, kind, direction, result, name, value, threshold) -> Flag:
    chain = signal.path(result.parent, name)
    weighted = [n for n in chain[1:] if info(report, n).weight_shape]
    steps = max(len(weighted), 1)
    factor = value ** (1.0 / steps)
    units = _units(report, chain, result.gain, direction)
    what = (
        "activation second moment"
        if direction == "forward"
        else "gradient energy E[x^2]·E||dL/dx||^2 (going backward)"
    )
    label = "signal" if direction == "forward" else "gradient"
    culprits = (
        _culprits(report, units, kind)
        if direction == "forward"
        else (_culprits_backward(units, kind))
    )
    if direction == "forward":
        todo = advice(report, [n for n, _ in units] or weighted)
    else:
        todo = _backward_advice(report, chain, kind)
    message = (
        f"The {label} {kind[:-3]}es with depth: the {what} changes by "
        f"{value:.3g}x from {chain[0]!r} to {name!r} ({steps} layer(s) with "
        f"weights on the way, about {factor:.3g}x per layer; threshold "
        f"{threshold:g}{_with(report, kind, direction)}). "
        + (f"{culprits}. " if culprits else "")
        + f"{sentence(todo)}."
    )
    return Flag(kind, name, report.step, value, threshold, message)


def _with(report: DiagnosticReport, kind: str, direction: str) -> str:
    """What a threshold was chosen for: the optimizer, or normalization."""
    if direction == "backward" and kind == "exploding":
        where = "with" if _normalized(report) else "without"
        return f" {where} normalization layers"
    if kind != "vanishing" or direction != "forward":
        return ""
    if report.optimizer in ADAPTIVE_OPTIMIZERS:
        return f" with {report.optimizer}, an adaptive optimizer"
    return f" with {report.optimizer or 'SGD-like updates'}"


def _absolute(report: DiagnosticReport, t: Thresholds) -> list[Flag]:
    """An activation variance beyond `exploding_absolute` at any depth."""
    for layer in report.layers:
        variance = get(report, layer, "activation_variance")
        if math.isfinite(variance) and variance > t.exploding_absolute:
            return [
                Flag(
                    "exploding",
                    layer,
                    report.step,
                    variance,
                    t.exploding_absolute,
                    f"Activation variance of layer {layer!r} is {variance:.3g} "
                    f"(above {t.exploding_absolute:g}): the signal explodes. "
                    f"{sentence(advice(report, report.layers))}.",
                )
            ]
    return []
