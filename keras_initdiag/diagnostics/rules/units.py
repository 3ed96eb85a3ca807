"""Per-node rules: non-finite values, dead, saturated and duplicate units.

Also identical kernels and the initializer/activation advice.
"""

from __future__ import annotations

import math

from keras_initdiag import _fans
from keras_initdiag.diagnostics.report import DiagnosticReport, Flag
from keras_initdiag.diagnostics.rules.common import ADVICE, count, get, info
from keras_initdiag.diagnostics.rules.thresholds import Thresholds


def nonfinite_flags(report: DiagnosticReport) -> list[Flag]:
    """One flag at the node where non-finite values first appear."""
    affected = [
        layer
        for layer in report.layers
        if count(report, layer, "nonfinite_weights")
        or count(report, layer, "nonfinite_activations")
    ]
    if affected:
        origin = affected[0]
        where = "weights" if count(report, origin, "nonfinite_weights") else "outputs"
        value = count(report, origin, "nonfinite_weights") + count(
            report, origin, "nonfinite_activations"
        )
        message = (
            f"NaN/Inf first appears in the {where} of layer {origin!r} "
            f"({int(value)} values; {len(affected)} layer(s) affected in all). "
            "Lower the learning rate, clip gradients, or check the inputs and "
            "the initial scale of this layer."
        )
        return [Flag("nonfinite", origin, report.step, value, 0.0, message)]
    backward = [
        layer for layer in report.layers if count(report, layer, "nonfinite_gradients")
    ]
    if backward or not (math.isnan(report.loss) or math.isfinite(report.loss)):
        origin = backward[-1] if backward else report.layers[-1]
        value = count(report, origin, "nonfinite_gradients")
        message = (
            f"NaN/Inf gradients first appear (going backward) at layer {origin!r} "
            f"while the forward pass is finite (probe loss {report.loss:.3g}). "
            "Check the loss for log(0) or division by zero, or lower the "
            "learning rate."
        )
        return [Flag("nonfinite", origin, report.step, value, 0.0, message)]
    return []


def readouts(report: DiagnosticReport) -> set[str]:
    """Constant output layers that training tells apart, and the nodes after them.

    A readout is a model output's last layer with weights, with the
    parameter-free nodes after it (a softmax). When its kernel starts
    constant (zeros: Fixup, the muP readout, "zero-init the last layer"),
    its units have identical incoming weights and a constant output, yet
    they are not interchangeable: each output unit has its own target, so
    the kernel's gradient `x^T dL/dy` differs per unit and the first step
    tells them apart. That holds while the kernel gets a gradient: measured
    (`kernel_gradient_norm > 0`) or, without targets, while some input of
    the layer is not all zero. A readout whose kernel gets no gradient (its
    input is all zero too) stays constant: a defect.
    """
    found: set[str] = set()
    for name in report.layers:
        if not info(report, name).is_output:
            continue
        path, head = [name], name
        while not info(report, head).weight_shape:
            inputs = info(report, head).inputs
            if len(inputs) != 1 or inputs[0] in path:
                break
            head = inputs[0]
            path.append(head)
        if info(report, head).weight_shape and _told_apart(report, head):
            found.update(path)
    return found


def _told_apart(report: DiagnosticReport, head: str) -> bool:
    """Whether a readout's kernel is constant and still gets a gradient.

    After step 0 an output layer's units are told apart by their targets
    whatever their weights: two units of classes that no target has named
    yet keep identical weights (a Fixup head fit to 8 of its 10 classes got
    "symmetry" 0.2 at step 30), which is no defect of the network.
    """
    if report.step > 0:
        return True
    if get(report, head, "weight_variance") != 0:
        return False
    gradient = get(report, head, "kernel_gradient_norm")
    if math.isfinite(gradient):
        return gradient > 0
    for source in info(report, head).inputs:
        mean = get(report, source, "activation_mean")
        moment = get(report, source, "activation_variance") + mean * mean
        if math.isfinite(moment) and moment > 0:
            return True
    return False


def zero_by_design(
    report: DiagnosticReport, layer: str, ends: set, heads: set = frozenset()
) -> bool:
    """An all-zero or constant output or weight that is a design choice.

    A zero-initialized last layer (or BatchNormalization gamma) of a
    residual branch gives exactly zero where the branch joins the stream,
    a ReZero/SkipInit gate is a zero scalar (a weight of rank < 2), and a
    constant readout that training tells apart (`readouts`, given as
    `heads`) is how Fixup and the muP readout start.
    """
    if layer in heads:
        return True
    facts = info(report, layer)
    weights = get(report, layer, "weight_variance")
    zero_weights = weights == 0 and count(report, layer, "nonfinite_weights") == 0
    if zero_weights and len(facts.weight_shape) < 2:
        return True
    if layer not in ends and not facts.feeds_residual:
        return False
    variance = get(report, layer, "activation_variance")
    mean = get(report, layer, "activation_mean")
    return (variance == 0 and mean == 0) or zero_weights


#: The chance below which a layer's dead units at step 0 are a defect, not
#: an unlucky draw (`chance_dead`). Where a layer's input hardly varies over
#: the batch, each unit's sign is set by its random weights, and about half
#: of a narrow layer may start dead by chance. Measured: the first
#: squeeze-and-excite ReLU of MobileNetV3Small (8 units reading a globally
#: pooled vector) had 2, 2, 1, 1 and 6 of its 8 units dead on the zoo's
#: seeds 0-4, and 4, 4, 4, 1, 0 positive on every sample, a fair coin's
#: split; the same layer trains. Wider squeeze-and-excite layers (24 to 144
#: units) had none dead. Over the eight grid records (396 runs with a
#: step-0 "dead" flag) the test drops 32 of 413 such flags, all at 0.50-0.62
#: of 32 or 64 units; the 15 runs left with none all failed, and all had
#: another non-advisory step-0 flag.
DEAD_CHANCE = 0.01


def chance_dead(units: int, dead: int) -> float:
    """The chance that at least `dead` of `units` start dead by luck alone.

    With zero biases and weights drawn symmetric about zero (every
    initializer of the catalogue and of Keras), a unit's weights `w` and
    `-w` are equally likely, and at most one of the two is negative on
    every sample: a unit starts dead with probability at most 1/2 whatever
    its inputs, independently of the other units. The bound is reached
    where the input hardly varies over the batch (a globally pooled
    vector). This is the binomial tail `P(Binomial(units, 1/2) >= dead)`,
    the largest chance a symmetric initialization gives that many.

    Args:
        units: The layer's units (the last axis).
        dead: How many of them are constant over the probe batch.

    Returns:
        The tail probability, 1.0 for no units.

    Example:
    >>> round(chance_dead(8, 6), 3)
    0.145
    >>> chance_dead(32, 32) < 1e-9
    True
    """
    if units <= 0:
        return 1.0
    dead = max(0, min(dead, units))
    tail = sum(math.comb(units, k) for k in range(dead, units + 1))
    return tail / 2**units


def _beyond_chance(report: DiagnosticReport, layer: str) -> bool:
    """Whether a layer's dead units are more than luck at step 0 explains.

    After step 0 the weights are no longer a symmetric draw, and the flag is
    advisory there (`is_advisory`): the fraction alone decides.
    """
    units = info(report, layer).units
    if report.step > 0 or units <= 0:
        return True
    dead = round(get(report, layer, "dead_fraction") * units)
    return chance_dead(units, dead) < DEAD_CHANCE


def dead_flags(
    report: DiagnosticReport, t: Thresholds, ends: set, heads: set = frozenset()
) -> list[Flag]:
    """Flag "dead" where units die first, not at every node after it.

    At step 0, only where more units are dead than a symmetric random
    initialization makes with a chance of `DEAD_CHANCE` (`chance_dead`).
    """
    dead = {
        layer
        for layer in report.layers
        if get(report, layer, "dead_fraction") >= t.dead
        and not zero_by_design(report, layer, ends, heads)
        and _beyond_chance(report, layer)
    }
    flags = []
    for layer in report.layers:
        if layer not in dead or any(s in dead for s in info(report, layer).inputs):
            continue
        fraction = get(report, layer, "dead_fraction")
        later = sum(1 for other in dead if other != layer)
        flags.append(
            Flag(
                "dead",
                layer,
                report.step,
                fraction,
                t.dead,
                f"{fraction:.0%} of the units of layer {layer!r} are constant over "
                "the whole probe batch (dead): they pass no gradient"
                + (f"; {later} later layer(s) inherit it" if later else "")
                + ". Check the bias initialization and the input scale; for ReLU "
                "consider He initialization or leaky_relu.",
            )
        )
    return flags


def same_kernels(signatures: dict) -> dict[str, tuple[str, ...]]:
    """Which layers start with the same kernel as an earlier one.

    Args:
        signatures: Layer -> `(kernel shape, kernel signature)` in forward
            order, for the layers with a non-zero kernel (the probe's
            signature is a fixed random projection of the kernel: equal
            kernels give equal signatures).

    Returns:
        Layer -> `(the first earlier layer with the same kernel,)`, for
        the layers that have one. They become `LayerInfo.same_kernel_as`,
        which `unit_flags` turns into "identical_kernels".

    Example:
    >>> same_kernels({"a": ((4, 4), 0.3), "b": ((4, 4), 0.3)})
    {'b': ('a',)}
    """
    first: dict = {}
    twins = {}
    for name, key in signatures.items():
        if key in first:
            twins[name] = (first[key],)
        else:
            first[key] = name
    return twins


def unit_flags(
    report: DiagnosticReport, layer: str, t: Thresholds, ends, heads=frozenset()
) -> list:
    """Symmetry, identical kernels, saturation and mismatch at one node."""
    if zero_by_design(report, layer, ends, heads):
        return []
    flags = []
    duplicate = get(report, layer, "duplicate_unit_fraction")
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
    for other in info(report, layer).same_kernel_as:
        flags.append(
            Flag(
                "identical_kernels",
                layer,
                report.step,
                1.0,
                1.0,
                f"Layer {layer!r} starts with exactly the same kernel as layer "
                f"{other!r} (advisory). That is often an unseeded initializer "
                "instance shared between layers, which draws the same values at "
                "every call; give each layer its own instance or seed. It is "
                "fine when intended (e.g. Identity or Constant kernels).",
            )
        )
    saturated = get(report, layer, "saturation_fraction")
    if saturated >= t.saturation:
        flags.append(
            Flag(
                "saturation",
                layer,
                report.step,
                saturated,
                t.saturation,
                f"{saturated:.0%} of the outputs of layer {layer!r} "
                f"({info(report, layer).activation}) sit at the activation's "
                "limits, where its gradient is nearly zero. Reduce the weight "
                "scale (Xavier or LeCun for tanh/sigmoid) or normalize the inputs.",
            )
        )
    flags += mismatch_flags(report, layer, t)
    return flags


def expected_variance(
    family: str, weight_shape: tuple[int, ...], depthwise: bool = False
) -> float:
    """The weight variance an initializer family gives a kernel of this shape.

    Args:
        family: `"he"`, `"xavier"` or `"lecun"`.
        weight_shape: The kernel shape in Keras's layout (`(..., in, out)`).
        depthwise: Whether the fans leave out the channel axis (as for our
            initializers with `depthwise=True`). Defaults to `False`.

    Returns:
        The variance, or NaN for other families or shapes of rank < 2.
    """
    if len(weight_shape) < 2:
        return math.nan
    fan_in, fan_out = _fans.compute_fans(weight_shape, depthwise=depthwise)
    return {
        "he": 2.0 / fan_in,
        "lecun": 1.0 / fan_in,
        "xavier": 2.0 / (fan_in + fan_out),
    }.get(family, math.nan)


def _drawn_variance(facts, actual: float) -> float:
    """The declared family's variance for this kernel.

    With the fan convention (Keras's, or depthwise) that matches what was
    drawn.
    """
    candidates = [expected_variance(facts.initializer, facts.weight_shape)]
    if facts.depthwise:
        candidates.append(
            expected_variance(facts.initializer, facts.weight_shape, depthwise=True)
        )
    finite = [c for c in candidates if math.isfinite(c)]
    if not finite:
        return math.nan
    return min(finite, key=lambda c: abs(math.log(actual / c)))


def mismatch_flags(report: DiagnosticReport, layer: str, t: Thresholds) -> list[Flag]:
    """Advisory: the initializer family does not suit the activation."""
    facts = info(report, layer)
    if not facts.recommended or facts.initializer in facts.recommended:
        return []
    if facts.kernel_normalized and report.training:
        return []  # Training rescales the kernel: its initializer is moot.
    actual = get(report, layer, "weight_variance")
    if not (math.isfinite(actual) and actual > 0):
        return []
    expected = _drawn_variance(facts, actual)
    if not math.isfinite(expected):
        return []
    if not 1 / t.mismatch_tolerance <= actual / expected <= t.mismatch_tolerance:
        return []  # The weights no longer are what the initializer drew.
    wanted = facts.recommended[0]
    return [
        Flag(
            "init_mismatch",
            layer,
            report.step,
            actual,
            expected_variance(wanted, facts.weight_shape, facts.depthwise),
            f"Layer {layer!r} uses {facts.initializer} initialization with "
            f"{facts.activation} activation (advisory): {ADVICE[wanted]} for "
            f"{facts.activation} layers.",
        )
    ]
