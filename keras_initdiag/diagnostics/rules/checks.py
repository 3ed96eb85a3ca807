"""The sanity checks practitioners run by hand at the start of training.

The initial loss against the chance level, layers that receive no gradient,
the finite-width spread of deep narrow stacks, and the size of the first
real updates against the weights.
"""

from __future__ import annotations

import math

from keras_initdiag.diagnostics.report import DiagnosticReport, Flag
from keras_initdiag.diagnostics.rules.common import (
    get,
    info,
    read_only_by_norms,
    readers,
)
from keras_initdiag.diagnostics.rules.thresholds import Thresholds


def initial_loss_flags(report: DiagnosticReport, t: Thresholds) -> list[Flag]:
    """A classifier whose step-0 loss is far above the chance level ln(C).

    Uniform predictions cost `ln(C)`; an initialization whose logits are
    large is confidently wrong on most samples and starts far above it.
    """
    chance, loss = report.chance_loss, report.loss
    if report.step != 0 or not (math.isfinite(chance) and chance > 0):
        return []
    if not (math.isfinite(loss) and loss > t.initial_loss * chance):
        return []
    outputs = [name for name in report.layers if info(report, name).is_output]
    layer = outputs[0] if outputs else report.layers[-1]
    stats = report.stats.get(layer, {})
    rms = math.sqrt(
        max(get(report, layer, "activation_variance"), 0.0)
        + get(report, layer, "activation_mean") ** 2
    )
    scale = f" (its outputs have RMS {rms:.3g})" if math.isfinite(rms) and stats else ""
    return [
        Flag(
            "initial_loss",
            layer,
            report.step,
            loss,
            t.initial_loss * chance,
            f"The loss at step 0 is {loss:.3g}, {loss / chance:.3g}x the chance "
            f"level ln(C) = {chance:.3g} of uniform predictions: the network "
            f"starts confidently wrong. The output layer {layer!r}{scale} is "
            "initialized too large: scale its kernel down (e.g. Xavier, or "
            "zeros for the last layer) so that the first logits are small.",
        )
    ]


def no_gradient_flags(report: DiagnosticReport) -> list[Flag]:
    """Layers with trainable weights that receive no gradient at all.

    A gradient that does not exist (the loss does not depend on the layer:
    a path cut by `stop_gradient`, an integer cast, `argmax` or `round`)
    differs from one that is exactly zero by design (a zero-initialized
    layer downstream) or because units are dead: those have a gradient,
    its value is zero.
    """
    if not math.isfinite(report.loss):
        return []
    connected = [
        n for n in report.layers if math.isfinite(get(report, n, "gradient_norm"))
    ]
    if not connected:
        return []  # No gradient anywhere: no loss to follow.
    flags = []
    for name in report.layers:
        facts = info(report, name)
        if facts.trainable and not math.isfinite(get(report, name, "gradient_norm")):
            flags.append(
                Flag(
                    "no_gradient",
                    name,
                    report.step,
                    math.nan,
                    0.0,
                    f"Layer {name!r} has trainable weights but receives no "
                    "gradient: the loss does not depend on it (a path cut by "
                    "stop_gradient, an integer cast, argmax or round, or an "
                    "output the loss leaves out). It will never train; "
                    "reconnect it or freeze it (`trainable = False`).",
                )
            )
    return flags


def finite_width_flags(report: DiagnosticReport, t: Thresholds) -> list[Flag]:
    """A deep and narrow stack whose per-example scale fluctuates too much.

    Hanin & Rolnick (2018): through a ReLU stack of widths `n_l`, `log` of
    each example's `||z||^2` drifts by a random amount of variance about
    `5 * sum(1 / n_l)`, even when the mean is right. When that variance is
    large, examples reach the output at wildly different scales.

    A node is judged by the spread it passes on (`_carried`): a narrow
    bottleneck whose output only drives a bounded gate (a squeeze-and-excite
    block's 4-unit layer before its sigmoid) spreads its own output, not the
    signal's.
    """
    carried = _carried(report)
    worst, value = None, 0.0
    for name in report.layers:
        if info(report, name).is_output:
            continue  # A few output units spread by design (the task's width).
        spread = carried[name]
        if math.isfinite(spread) and spread * spread > value:
            worst, value = name, spread * spread
    if worst is None or value <= t.finite_width:
        return []
    return [
        Flag(
            "finite_width",
            worst,
            report.step,
            value,
            t.finite_width,
            f"The network is deep for its width: at layer {worst!r} the log "
            f"of each example's squared norm varies by {value:.3g} (a factor "
            f"of e^{math.sqrt(value):.2g} up or down) from one example to the "
            "next, even though the average scale is right (Hanin & Rolnick "
            "2018: about 5 * sum(1 / width) through a ReLU stack). Widen the "
            "layers (twice the width halves it), use fewer of them, or add "
            "normalization or residual connections.",
        )
    ]


def _carried(report: DiagnosticReport) -> dict[str, float]:
    """Each node's `predicted_log_spread`, capped by what its readers carry.

    Where the signal ends (an output, a normalization layer, a reader without
    a prediction) a node keeps its own spread; elsewhere it keeps at most the
    largest spread its readers carry on, so a spread the next node squashes
    away (a sigmoid gate) no longer counts.
    """
    found: dict[str, float] = {}
    for name, consumers in reversed(list(readers(report).items())):
        own = get(report, name, "predicted_log_spread")
        ahead = [found.get(c, math.nan) for c in consumers]
        if not consumers or any(
            info(report, c).kind == "norm" or not math.isfinite(a)
            for c, a in zip(consumers, ahead)
        ):
            found[name] = own
        else:
            found[name] = min(own, max(ahead))
    return found


def update_ratio_flags(
    step: int,
    ratios: dict[str, float],
    t: Thresholds,
    at_peak: dict[str, float] | None = None,
) -> list[Flag]:
    """Layers whose first real updates are far from what training needs.

    "Too small" is judged at the schedule's peak learning rate (`at_peak`):
    a warmup that starts near 0 makes the first updates tiny by design, and
    only updates that stay tiny once the warmup is over are a problem. A
    layer whose peak is unknown (a learning rate of exactly 0 so far) is not
    judged as too small. "Too large" is judged on the updates as measured.

    Args:
        step: The step after which the ratios were measured.
        ratios: Layer -> `||update|| / ||weights||` per step (the median of
            the first steps), from the weights the optimizer actually wrote.
        t: The thresholds.
        at_peak: Layer -> the same ratio at the schedule's peak learning
            rate. Defaults to `None`: `ratios` (a fixed learning rate).

    Returns:
        An "update_ratio" flag per layer below `t.update_ratio_low` at the
        peak learning rate (nearly frozen) or above `t.update_ratio_high`
        (unstable).

    Example:
    >>> flags = update_ratio_flags(3, {"dense": 1e-9}, Thresholds(), {"dense": 1e-3})
    >>> flags   # tiny now, fine once the warmup is over
    []
    """
    at_peak = ratios if at_peak is None else at_peak
    flags = []
    for name, ratio in ratios.items():
        peak = at_peak.get(name, math.nan)
        if math.isfinite(ratio) and ratio > t.update_ratio_high:
            value, limit, what = (
                ratio,
                t.update_ratio_high,
                (
                    "changes by more than its own size in one step: training is "
                    "unstable. Lower the learning rate or clip gradients"
                ),
            )
        elif math.isfinite(peak) and peak < t.update_ratio_low:
            value, limit, what = (
                peak,
                t.update_ratio_low,
                (
                    "hardly moves"
                    + (
                        ""
                        if peak == ratio
                        else ", even at the schedule's peak learning rate"
                    )
                    + ": at this rate it needs millions of steps to change. Raise "
                    "its learning rate (or check a per-layer scale or optimizer "
                    "setting)"
                ),
            )
        else:
            continue
        flags.append(
            Flag(
                "update_ratio",
                name,
                step,
                value,
                limit,
                f"Layer {name!r}: each update is {value:.3g}x its weights "
                f"({_log10(value)}; a common rule of thumb puts the log10 near "
                f"-3). The layer {what}.",
            )
        )
    return flags


def report_update_ratio_flags(report: DiagnosticReport, t: Thresholds) -> list[Flag]:
    """`update_ratio_flags` on the ratios a report carries (if it has any)."""
    ratios = {
        name: stats["update_ratio"]
        for name, stats in report.stats.items()
        if "update_ratio" in stats
    }
    if not ratios:
        return []
    at_peak = {
        name: report.stats[name].get("update_ratio_at_peak_lr", ratios[name])
        for name in ratios
    }
    # A kernel read only by normalization layers is scale-invariant: a large
    # relative step only grows its norm, which lowers its own effective rate
    # (Arora, Li & Lyu 2019). ResNet50's conv1 (read by conv1_bn) measured
    # 1.01 under its warmup, then 0.14 by step 9 as its norm grew 2.4 -> 9.5,
    # and trained. Its "too large" is not instability.
    invariant = read_only_by_norms(report)
    judged = {n: (math.nan if n in invariant else r) for n, r in ratios.items()}
    return update_ratio_flags(report.step, judged, t, at_peak)


def _log10(ratio: float) -> str:
    return "it did not move" if ratio == 0 else f"log10 {math.log10(ratio):.2g}"
