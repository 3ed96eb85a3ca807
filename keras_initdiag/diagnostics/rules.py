"""Rules: turn per-layer statistics into flags. Floats in, flags out.

This module imports no TensorFlow, so every rule can be tested with literal
numbers. The thresholds live in `Thresholds`; `judge()` applies them.
"""

from __future__ import annotations

import dataclasses
import math

from keras_initdiag.diagnostics.report import DiagnosticReport, Flag, LayerInfo

#: Every flag kind, in the order flags of one diagnosis are listed.
FLAG_KINDS: tuple[str, ...] = (
    "nonfinite",
    "exploding",
    "vanishing",
    "symmetry",
    "dead",
    "saturation",
    "init_mismatch",
)

_ADVICE = {
    "he": "use He initialization (keras_initdiag.He, or for_activation)",
    "xavier": "use Xavier/Glorot initialization (keras_initdiag.Xavier)",
    "lecun": "use LeCun initialization (keras_initdiag.LeCun)",
}


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Every threshold the rules use, with defaults calibrated on known cases.

    The depth rules compare the first and last layers with weights (the
    model's output layers excluded, their scale is set by the task): the signal
    ratio is `activation_variance[last] / activation_variance[first]`, the
    gradient ratio is `(activation_gradient_rms[first] /
    activation_gradient_rms[last]) ** 2`. A per-layer factor `f` compounds to
    `f ** depth`, so a 30-layer ReLU net with Glorot kernels (`f = 0.5`) gives
    about 2e-9.

    Args:
        vanishing: Flag "vanishing" when a depth ratio falls below this.
            Defaults to `1e-3`.
        exploding: Flag "exploding" when a depth ratio rises above this, or an
            activation variance exceeds `exploding_absolute`. Defaults to `1e3`.
        exploding_absolute: An activation variance above this is exploding
            whatever the depth. Defaults to `1e12`.
        dead: Flag "dead" when at least this fraction of a layer's units is
            constant over the probe batch. Defaults to `0.5`.
        saturation: Flag "saturation" when at least this fraction of a bounded
            activation's outputs sits at its limits. Defaults to `0.5`.
        symmetry: Flag "symmetry" when at least this fraction of a layer's
            units duplicates another unit. Defaults to `0.1`.
        mismatch_tolerance: For "init_mismatch", the weights must still look
            like the declared initializer's output: their variance within this
            factor of the initializer's (otherwise they were changed, e.g. by
            training or LSUV, and no advice is given). Defaults to `1.5`.

    Example:
    >>> thresholds = keras_initdiag.Thresholds(vanishing=1e-4, dead=0.9)
    >>> report = keras_initdiag.diagnose(model, x, y, thresholds=thresholds)
    """

    vanishing: float = 1e-3
    exploding: float = 1e3
    exploding_absolute: float = 1e12
    dead: float = 0.5
    saturation: float = 0.5
    symmetry: float = 0.1
    mismatch_tolerance: float = 1.5

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(
                    f"Argument `{field.name}` must be a number. "
                    f"Received: {field.name}={value!r}"
                )
            if not math.isfinite(value) or value <= 0:
                raise ValueError(
                    f"Argument `{field.name}` must be a positive finite number. "
                    f"Received: {field.name}={value!r}"
                )
        for name in ("dead", "saturation", "symmetry"):
            if getattr(self, name) > 1:
                raise ValueError(
                    f"Argument `{name}` is a fraction of units and must be in "
                    f"(0, 1]. Received: {name}={getattr(self, name)!r}"
                )
        if not self.vanishing < 1 < self.exploding:
            raise ValueError(
                "Thresholds are inconsistent: `vanishing` must be below 1 and "
                "`exploding` above 1. Received: "
                f"vanishing={self.vanishing!r}, exploding={self.exploding!r}"
            )
        if self.mismatch_tolerance < 1:
            raise ValueError(
                "Argument `mismatch_tolerance` is a factor and must be >= 1. "
                f"Received: mismatch_tolerance={self.mismatch_tolerance!r}"
            )


def judge(report: DiagnosticReport, thresholds: Thresholds | None = None) -> list[Flag]:
    """Apply every rule to a report and return the flags, most severe first.

    Args:
        report: The statistics of one diagnosis.
        thresholds: The thresholds to apply. Defaults to `Thresholds()`.

    Returns:
        A list of `Flag`, ordered by kind (see `FLAG_KINDS`) then depth.

    Example:
    >>> flags = keras_initdiag.diagnostics.rules.judge(report)
    >>> [f.kind for f in flags]
    """
    t = thresholds or Thresholds()
    flags = _nonfinite(report)
    flags += _depth(report, t)
    for layer in report.layers:
        flags += _unit_rules(report, layer, t)
    order = {kind: i for i, kind in enumerate(FLAG_KINDS)}
    depth = {layer: i for i, layer in enumerate(report.layers)}
    return sorted(flags, key=lambda f: (order[f.kind], depth.get(f.layer, 0)))


def _get(report: DiagnosticReport, layer: str, stat: str) -> float:
    return report.stats.get(layer, {}).get(stat, math.nan)


def _info(report: DiagnosticReport, layer: str) -> LayerInfo:
    return report.info.get(layer) or LayerInfo(name=layer)


def _nonfinite(report: DiagnosticReport) -> list[Flag]:
    """One flag at the layer where non-finite values first appear."""

    def count(layer, stat):
        value = _get(report, layer, stat)
        return 0.0 if math.isnan(value) else value

    affected = [
        layer
        for layer in report.layers
        if count(layer, "nonfinite_weights") or count(layer, "nonfinite_activations")
    ]
    if affected:
        origin = affected[0]
        where = "weights" if count(origin, "nonfinite_weights") else "outputs"
        value = count(origin, "nonfinite_weights") + count(
            origin, "nonfinite_activations"
        )
        message = (
            f"NaN/Inf first appears in the {where} of layer {origin!r} "
            f"({int(value)} values; {len(affected)} layer(s) affected in all). "
            "Lower the learning rate, clip gradients, or check the inputs and "
            "the initial scale of this layer."
        )
        return [Flag("nonfinite", origin, report.step, value, 0.0, message)]
    backward = [layer for layer in report.layers if count(layer, "nonfinite_gradients")]
    if backward or not (math.isnan(report.loss) or math.isfinite(report.loss)):
        origin = backward[-1] if backward else report.layers[-1]
        value = count(origin, "nonfinite_gradients")
        message = (
            f"NaN/Inf gradients first appear (going backward) at layer {origin!r} "
            f"while the forward pass is finite (probe loss {report.loss:.3g}). "
            "Check the loss for log(0) or division by zero, or lower the "
            "learning rate."
        )
        return [Flag("nonfinite", origin, report.step, value, 0.0, message)]
    return []


def _body(report: DiagnosticReport) -> list[str]:
    """Layers whose scale the depth rules compare: with weights, not outputs."""
    return [
        layer
        for layer in report.layers
        if _info(report, layer).weight_shape
        and _info(report, layer).tapped_output
        and not _info(report, layer).is_output
    ]


def _advice(report: DiagnosticReport, layers: list[str]) -> str:
    for layer in layers:
        info = _info(report, layer)
        if info.recommended and info.initializer not in info.recommended:
            return f"{_ADVICE[info.recommended[0]]} for {info.activation} layers"
    return (
        "check the initial weight scale (for_activation picks a variance-"
        "preserving one), add normalization, or run keras_initdiag.lsuv"
    )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _depth(report: DiagnosticReport, t: Thresholds) -> list[Flag]:
    """Vanishing/exploding from how signal and gradient scale change with depth."""
    body = _body(report)
    flags = []
    signal = [(layer, _get(report, layer, "activation_variance")) for layer in body]
    grads = [
        (layer, _get(report, layer, "activation_gradient_rms") ** 2)
        for layer in reversed(body)
    ]
    for label, series in (("signal", signal), ("gradient", grads)):
        # Exactly zero means "zero by design" or dead (the dead rule speaks
        # there); non-finite is the nonfinite rule's.
        series = [(n, v) for n, v in series if math.isfinite(v) and v > 0]
        if len(series) < 2:
            continue
        first_layer, first = series[0]
        for layer, value in series[1:]:
            ratio = value / first
            kind = (
                "vanishing"
                if ratio < t.vanishing
                else "exploding"
                if ratio > t.exploding
                else None
            )
            if kind is None:
                continue
            last_layer, last = series[-1]
            total = last / first
            steps = len(series) - 1
            factor = total ** (1 / steps) if total > 0 else 0.0
            what = (
                "activation variance"
                if label == "signal"
                else "squared back-propagated gradient RMS"
            )
            threshold = t.vanishing if kind == "vanishing" else t.exploding
            message = (
                f"The {label} {kind[:-3]}es with depth: the {what} changes by "
                f"{ratio:.3g}x from layer {first_layer!r} to layer {layer!r} "
                f"({total:.3g}x over {steps} layers, about {factor:.3g}x per "
                f"layer; threshold {threshold:g}). "
                f"{_sentence(_advice(report, body))}."
            )
            flags.append(Flag(kind, layer, report.step, total, threshold, message))
            break
    seen = set()
    unique = []
    for flag in flags:  # Signal and gradient may agree: one flag per kind.
        if flag.kind not in seen:
            seen.add(flag.kind)
            unique.append(flag)
    for layer in report.layers:
        variance = _get(report, layer, "activation_variance")
        if math.isfinite(variance) and variance > t.exploding_absolute:
            if "exploding" not in seen:
                seen.add("exploding")
                unique.append(
                    Flag(
                        "exploding",
                        layer,
                        report.step,
                        variance,
                        t.exploding_absolute,
                        f"Activation variance of layer {layer!r} is {variance:.3g} "
                        f"(above {t.exploding_absolute:g}): the signal explodes. "
                        f"{_sentence(_advice(report, body))}.",
                    )
                )
    return unique


def _zero_by_design(report: DiagnosticReport, layer: str) -> bool:
    """An all-zero gate or residual-branch output layer is not a defect."""
    info = _info(report, layer)
    weight_variance = _get(report, layer, "weight_variance")
    zero = weight_variance == 0 and _get(report, layer, "nonfinite_weights") == 0
    return zero and (len(info.weight_shape) < 2 or info.feeds_residual)


def _unit_rules(report: DiagnosticReport, layer: str, t: Thresholds) -> list[Flag]:
    info = _info(report, layer)
    flags = []
    if _zero_by_design(report, layer):
        return flags
    duplicate = _get(report, layer, "duplicate_unit_fraction")
    if duplicate >= t.symmetry:
        flags.append(
            Flag(
                "symmetry",
                layer,
                report.step,
                duplicate,
                t.symmetry,
                f"{duplicate:.0%} of the units of layer {layer!r} duplicate another "
                "unit (identical incoming weights or outputs): they receive "
                "identical updates and never differ. Initialize the weights "
                "randomly (e.g. keras_initdiag.for_activation), not to a constant.",
            )
        )
    for other in info.same_kernel_as:
        flags.append(
            Flag(
                "symmetry",
                layer,
                report.step,
                1.0,
                1.0,
                f"Layer {layer!r} has exactly the same initial kernel as layer "
                f"{other!r}: an unseeded initializer instance shared between "
                "layers draws the same values every call. Give each layer its "
                "own initializer instance (or a distinct seed).",
            )
        )
    dead = _get(report, layer, "dead_fraction")
    if dead >= t.dead:
        flags.append(
            Flag(
                "dead",
                layer,
                report.step,
                dead,
                t.dead,
                f"{dead:.0%} of the units of layer {layer!r} are constant over the "
                "whole probe batch (dead): they pass no gradient. Check the bias "
                "initialization and the input scale; for ReLU consider He "
                "initialization or leaky_relu.",
            )
        )
    saturated = _get(report, layer, "saturation_fraction")
    if saturated >= t.saturation:
        flags.append(
            Flag(
                "saturation",
                layer,
                report.step,
                saturated,
                t.saturation,
                f"{saturated:.0%} of the outputs of layer {layer!r} "
                f"({info.activation}) sit at the activation's limits, where its "
                "gradient is nearly zero. Reduce the weight scale (Xavier or "
                "LeCun for tanh/sigmoid) or normalize the inputs.",
            )
        )
    flags += _mismatch(report, layer, t)
    return flags


def expected_variance(family: str, weight_shape: tuple[int, ...]) -> float:
    """The weight variance an initializer family gives a kernel of this shape.

    Args:
        family: `"he"`, `"xavier"` or `"lecun"`.
        weight_shape: The kernel shape in Keras's layout (`(..., in, out)`).

    Returns:
        The variance, or NaN for other families or shapes of rank < 2.
    """
    if len(weight_shape) < 2:
        return math.nan
    receptive = math.prod(weight_shape[:-2])
    fan_in = weight_shape[-2] * receptive
    fan_out = weight_shape[-1] * receptive
    return {
        "he": 2.0 / fan_in,
        "lecun": 1.0 / fan_in,
        "xavier": 2.0 / (fan_in + fan_out),
    }.get(family, math.nan)


def _mismatch(report: DiagnosticReport, layer: str, t: Thresholds) -> list[Flag]:
    info = _info(report, layer)
    if not info.recommended or info.initializer in info.recommended:
        return []
    expected = expected_variance(info.initializer, info.weight_shape)
    actual = _get(report, layer, "weight_variance")
    if not (math.isfinite(expected) and math.isfinite(actual) and actual > 0):
        return []
    if not 1 / t.mismatch_tolerance <= actual / expected <= t.mismatch_tolerance:
        return []  # The weights no longer are what the initializer drew.
    wanted = info.recommended[0]
    return [
        Flag(
            "init_mismatch",
            layer,
            report.step,
            actual,
            expected_variance(wanted, info.weight_shape),
            f"Layer {layer!r} uses {info.initializer} initialization with "
            f"{info.activation} activation (advisory): {_ADVICE[wanted]} for "
            f"{info.activation} layers.",
        )
    ]
