"""Helpers the rules share: reading a report, advice, the graph's shape."""

from __future__ import annotations

import math

from keras_initdiag.diagnostics.report import DiagnosticReport, LayerInfo

#: Initializer families the rule of thumb recommends, as advice text.
ADVICE = {
    "he": "use He initialization (keras_initdiag.He, or for_activation)",
    "xavier": "use Xavier/Glorot initialization (keras_initdiag.Xavier)",
    "lecun": "use LeCun initialization (keras_initdiag.LeCun)",
}


def get(report: DiagnosticReport, layer: str, stat: str) -> float:
    """One statistic of one node, NaN when absent."""
    return report.stats.get(layer, {}).get(stat, math.nan)


def info(report: DiagnosticReport, layer: str) -> LayerInfo:
    """The node's facts (a bare `LayerInfo` when the report has none)."""
    return report.info.get(layer) or LayerInfo(name=layer)


def count(report: DiagnosticReport, layer: str, stat: str) -> float:
    """A count statistic, 0 when NaN (does not apply)."""
    value = get(report, layer, stat)
    return 0.0 if math.isnan(value) else value


def readers(report: DiagnosticReport) -> dict[str, list[str]]:
    """Node -> the nodes that read its output."""
    found: dict[str, list[str]] = {name: [] for name in report.layers}
    for name in report.layers:
        for source in info(report, name).inputs:
            if source in found:
                found[source].append(name)
    return found


def read_only_by_norms(report: DiagnosticReport) -> set[str]:
    """Nodes whose every reader is a normalization layer.

    Their output's scale is renormalized away: the scale of such a node
    (and of its kernel) sets no signal and, by BatchNorm's scale invariance,
    only its own effective learning rate.
    """
    return {
        name
        for name, found in readers(report).items()
        if found and all(info(report, r).kind == "norm" for r in found)
    }


def branch_ends(report: DiagnosticReport) -> set[str]:
    """Nodes whose output only enters sum merges as a smaller branch.

    Such an output is added to a stream that carries the signal on (a
    residual branch's last layer, a LayerScale, a ReZero or SkipInit gate, an
    attention block before `h + a`): its scale relative to the stream is a
    design choice, not something compounding with depth. Pass-through nodes
    on the way to the merge (an identity or linear activation, dropout, as
    ConvNeXt's `LayerScale -> Activation("linear") -> Add`) are seen through.
    """
    from keras_initdiag.diagnostics.signal import second_moments

    moments = second_moments(report)
    ends: set[str] = set()
    for name, consumers in reversed(list(readers(report).items())):
        if not consumers:
            continue
        small = True
        for consumer in consumers:
            merge = info(report, consumer)
            if consumer in ends and _passes_through(merge):
                continue
            if merge.merge not in ("sum", "average"):
                small = False
                break
            others = [moments.get(n, math.nan) for n in merge.inputs if n != name]
            mine = moments.get(name, math.nan)
            if not others or not any(o >= mine for o in others if math.isfinite(o)):
                small = False
                break
        if small:
            ends.add(name)
    return ends


def _passes_through(facts) -> bool:
    """Whether a node hands its input on unscaled (up to dropout's noise)."""
    if facts.propagation in ("identity", "dropout"):
        return True
    return facts.propagation == "activation" and facts.activation in ("", "linear")


def advice(report: DiagnosticReport, layers: list[str]) -> str:
    """What to try for a scale problem among `layers`, as one sentence."""
    if report.training and any(info(report, n).kernel_normalized for n in layers):
        return (
            "spectral normalization keeps each layer's gain at or below 1 (a "
            "ReLU halves it again) whatever the initialization: use fewer "
            "spectrally normalized layers, activations that keep the scale, or "
            "residual connections"
        )
    for layer in layers:
        facts = info(report, layer)
        if facts.recommended and facts.initializer not in facts.recommended:
            return f"{ADVICE[facts.recommended[0]]} for {facts.activation} layers"
    return (
        "check the initial weight scale (for_activation picks a variance-"
        "preserving one), add normalization, or run keras_initdiag.lsuv"
    )


def sentence(text: str) -> str:
    """`text` with its first letter upper-cased."""
    return text[:1].upper() + text[1:]
