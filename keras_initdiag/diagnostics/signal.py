"""How the signal travels a report's graph: gains and compounded scales.

Pure Python on a `DiagnosticReport` (no TensorFlow), shared by the engine
(which reports each node's `activation_gain`) and the depth rules.

- The *second moment* `E[x^2]` of a node's output is what a layer's weights
  scale (`fan_in * Var(W) * E[phi(z)^2] / E[z^2]` per layer, mean-field
  theory), so gains are ratios of second moments.
- A node's *reference input* is the input its gain is measured against: its
  only input; for a sum-like merge (`Add`, `h + r`), the dominant (largest)
  input, so a residual stream is compared with the stream, never with a
  branch; for a concatenation, the size-weighted mean of its inputs.
- The *forward scale* `L` of a node is the log of its second moment
  relative to its segment's start, compounded along reference inputs. A
  segment starts at a model input, a normalization or preprocessing layer
  (its output scale is set by design: `Rescaling` of 0-255 pixels divides
  it by 65025), an embedding, or wherever no input was measured. A plain
  chain with a per-layer factor `f` reaches `L = depth * log(f)`; a residual
  stream grows only as fast as its merges add to it.
- The *backward scale* `B` compounds, from the outputs back, the log of
  `E[x^2] * E||dL/dx||^2` (the output's second moment times the squared
  norm per sample of the gradient at it). That product is unchanged by any
  linear layer (whatever its weight scale or width) and by pure rescalings
  such as a normalization layer's division by the standard deviation, so
  `B` measures only what compounds beyond the forward scale: at a
  mean-field fixed point it grows by `chi_1 = sigma_w^2 E[phi'(z)^2]` per
  layer (Schoenholz et al. 2017), and through batch-normalized ReLU layers
  by about `pi / (pi - 1)` per layer (Yang et al. 2019). It compounds along
  chains and restarts where the signal was merged (a residual sum, a
  concatenation): behind a merge the gradient also flows through the other
  branches, the skip path among them, so the per-layer factors of a chain
  do not multiply across it. It restarts at a pooling layer too: averaging
  `k` inputs divides the product by about `k` by construction (a global
  pooling of a 32 x 32 map by ~1024), which says nothing about depth.
"""

from __future__ import annotations

import dataclasses
import math

from keras_initdiag.diagnostics.report import DiagnosticReport, LayerInfo

#: Class names that start a new forward segment besides inputs and norms:
#: an embedding's output scale has nothing to do with its integer inputs.
SEGMENT_STARTS = ("Embedding",)


def _finite_positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def second_moments(report: DiagnosticReport) -> dict[str, float]:
    """`E[x^2] = variance + mean^2` of every node's output (NaN if unknown)."""
    moments = {}
    for name in report.layers:
        stats = report.stats.get(name, {})
        variance = stats.get("activation_variance", math.nan)
        mean = stats.get("activation_mean", math.nan)
        moments[name] = variance + mean * mean
    return moments


def _info(report: DiagnosticReport, name: str) -> LayerInfo:
    return report.info.get(name) or LayerInfo(name=name)


def starts_segment(info: LayerInfo) -> bool:
    """Whether a node's output scale is set by design (no compounding across)."""
    return (
        info.kind in ("input", "norm", "preprocess")
        or info.class_name in SEGMENT_STARTS
    )


@dataclasses.dataclass(frozen=True)
class Reference:
    """The input a node's gain is measured against.

    Args:
        name: The reference input (for a concatenation, its largest input).
        moment: Its second moment (for a concatenation, the size-weighted
            mean of the inputs' second moments).
        scale: Its forward scale `L` (for a concatenation, the size-weighted
            mean of the inputs' scales).
    """

    name: str
    moment: float
    scale: float


def reference(
    report: DiagnosticReport, name: str, moments: dict, scales: dict
) -> Reference | None:
    """The reference input of a node, or None when no input was measured."""
    info = _info(report, name)
    measured = [
        n for n in info.inputs if n in scales and _finite_positive(moments.get(n, 0))
    ]
    if not measured:
        return None
    dominant = max(measured, key=lambda n: moments[n])
    if info.merge != "concat" or len(measured) == 1:
        return Reference(dominant, moments[dominant], scales[dominant])
    sizes = [_info(report, n).size for n in measured]
    weights = [s if _finite_positive(s) else 1.0 for s in sizes]
    total = sum(weights)
    moment = sum(w * moments[n] for w, n in zip(weights, measured)) / total
    scale = sum(w * scales[n] for w, n in zip(weights, measured)) / total
    return Reference(dominant, moment, scale)


@dataclasses.dataclass
class Forward:
    """Forward scales of a report.

    Args:
        scale: Node -> `L`, the log second moment relative to the segment's
            start (only nodes with a measured, positive second moment).
        gain: Node -> its output's second moment over its reference input's.
        parent: Node -> its reference input (absent at segment starts).
    """

    scale: dict[str, float]
    gain: dict[str, float]
    parent: dict[str, str]


def forward(report: DiagnosticReport) -> Forward:
    """Compound each node's gain along its reference inputs (see module)."""
    moments = second_moments(report)
    result = Forward({}, {}, {})
    for name in report.layers:
        moment = moments[name]
        if not _finite_positive(moment):
            continue
        info = _info(report, name)
        ref = reference(report, name, moments, result.scale)
        if ref is not None:
            result.gain[name] = moment / ref.moment
        if starts_segment(info) or ref is None:
            result.scale[name] = 0.0
            continue
        result.scale[name] = ref.scale + math.log(moment / ref.moment)
        result.parent[name] = ref.name
    return result


def activation_gains(report: DiagnosticReport) -> dict[str, float]:
    """Each node's output second moment over its reference input's.

    Example:
    >>> activation_gains(report)["dense_3"]   # ~0.5 for Glorot with ReLU
    """
    return forward(report).gain


#: Activations with `phi(0) != 0`: a sigmoid gate's output is its offset
#: (0.5) plus `phi'(0) z`. The offset is no signal the weights scale, and
#: the backward invariant holds for the variance there: `Var(phi(z)) =
#: phi'(0)^2 Var(z)` and `dL/dz = phi'(0) dL/dphi`. With `E[x^2]`, the
#: squeeze-and-excite gates of EfficientNetB0 read as a fall of 0.004-0.03
#: over one layer (now 0.67-0.88), and a hand-built one with
#: `activation="hard_sigmoid"` as 0.0008: a false "vanishing".
OFFSET_ACTIVATIONS = ("sigmoid", "hard_sigmoid")


def gradient_energy(report: DiagnosticReport, name: str, moments: dict) -> float:
    """Log of `E[x^2] * E||dL/dx||^2` at a node's output, NaN when unknown.

    For an activation with an offset (`OFFSET_ACTIVATIONS`), the variance
    stands for `E[x^2]`.
    """
    stats = report.stats.get(name, {})
    rms = stats.get("activation_gradient_rms", math.nan)
    size = _info(report, name).size
    moment = moments.get(name, math.nan)
    if _info(report, name).activation in OFFSET_ACTIVATIONS:
        moment = stats.get("activation_variance", math.nan)
    if not (_finite_positive(rms) and _finite_positive(size)):
        return math.nan
    if not _finite_positive(moment):
        return math.nan
    return math.log(moment) + math.log(size) + 2.0 * math.log(rms)


@dataclasses.dataclass
class Backward:
    """Backward scales of a report.

    Args:
        scale: Node -> `B`, the log of `E[x^2] E||dL/dx||^2` relative to the
            start of its chain (an output, or a merge reading it),
            compounded from the outputs back.
        gain: Node -> its energy over its reference consumer's (as a ratio).
        parent: Node -> its reference consumer (absent at starts).
    """

    scale: dict[str, float]
    gain: dict[str, float]
    parent: dict[str, str]


def backward(report: DiagnosticReport) -> Backward:
    """Compound gradient energies from the outputs back (see module).

    A node's reference consumer is the node reading it with the largest
    gradient energy; a node read by a merge starts a new chain, and so does
    a node read by an output layer (the head's own step follows the loss and
    the head's shape, e.g. a 1-unit regression head on a collapsed
    representation, not any law of depth), and a node read by a pooling
    layer (a reduction, not depth).
    """
    moments = second_moments(report)
    energy = {n: gradient_energy(report, n, moments) for n in report.layers}
    readers: dict[str, list[str]] = {n: [] for n in report.layers}
    for name in report.layers:
        for source in _info(report, name).inputs:
            if source in readers:
                readers[source].append(name)
    result = Backward({}, {}, {})
    for name in reversed(report.layers):
        if not math.isfinite(energy[name]):
            continue
        measured = [r for r in readers[name] if r in result.scale]
        if not measured:
            result.scale[name] = 0.0
            continue
        consumer = max(measured, key=lambda r: energy[r])
        step = energy[name] - energy[consumer]
        result.gain[name] = math.exp(step)
        reference = _info(report, consumer)
        if reference.kind in ("merge", "reduce") or reference.is_output:
            result.scale[name] = 0.0
            continue
        result.scale[name] = result.scale[consumer] + step
        result.parent[name] = consumer
    return result


def path(parent: dict[str, str], name: str) -> list[str]:
    """The chain of references from a node back to its start, start first."""
    chain = [name]
    while chain[-1] in parent:
        chain.append(parent[chain[-1]])
    return chain[::-1]
