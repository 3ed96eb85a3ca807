"""From the probe's decoded values to a `DiagnosticReport`, and the theory.

Pure Python on the values one diagnosis decoded: each node's statistics and
layer facts, the identical-kernel search's result (decided by the rules,
`rules.units.same_kernels`), the activation gains along the graph, and the
bridge to the theory, which adds each node's predicted variance and
finite-width spread. `engine.Diagnoser` measures and calls `assemble`;
`predicted.predicted_report` puts the prediction in place of the measurement.
"""

from __future__ import annotations

import dataclasses
import math

from keras_initdiag.diagnostics import signal, theory
from keras_initdiag.diagnostics.report import STAT_NAMES, DiagnosticReport
from keras_initdiag.diagnostics.rules.units import same_kernels
from keras_initdiag.diagnostics.taps import TapSet

#: The theory's device values: moments of each layer's last bias and scale.
AFFINE = ("bias_mean", "bias_second_moment", "scale_second_moment")


def _larger(a: float, b: float) -> float:
    """The larger of two fractions, ignoring NaN (NaN when both are)."""
    known = [v for v in (a, b) if not math.isnan(v)]
    return max(known) if known else math.nan


def _layer_facts(tapset: TapSet, values: dict) -> dict:
    """Each node's `LayerInfo`, completed with what the probe measured."""
    signatures = {
        tap.name: (tap.info.weight_shape, values[tap.name]["kernel_signature"])
        for tap in tapset.taps
        if len(tap.info.weight_shape) >= 2
        and math.isfinite(values[tap.name]["kernel_signature"])
        and values[tap.name]["weight_variance"] > 0
    }
    twins = same_kernels(signatures)
    info = {}
    for tap in tapset.taps:
        facts = tap.info
        if tap.name in twins:
            facts = dataclasses.replace(facts, same_kernel_as=twins[tap.name])
        size = values[tap.name]["size"]
        if math.isfinite(size):
            facts = dataclasses.replace(facts, size=size)
        if tap.trainable_weights:
            facts = dataclasses.replace(facts, trainable=True)
        info[tap.name] = facts
    return info


def assemble(
    tapset: TapSet, values: dict, loss: float, step: int, **facts
) -> DiagnosticReport:
    """The report of one diagnosis (no flags, no prediction yet).

    Args:
        tapset: The taps the values belong to.
        values: Node -> field -> value, as `probe.decode` returns them.
        loss: The probe batch's loss (NaN without targets).
        step: The global training step.
        **facts: `DiagnosticReport` fields of the run: `skipped`,
            `optimizer`, `training`, `chance_loss`.

    Example:
    >>> report = assemble(diagnoser.tapset, values, loss, step=0)
    """
    names = [tap.name for tap in tapset.taps]
    stats = {
        name: {s: values[name].get(s, math.nan) for s in STAT_NAMES} for name in names
    }
    for name in names:
        stats[name]["duplicate_unit_fraction"] = _larger(
            values[name]["duplicate_weight_fraction"],
            values[name]["duplicate_output_fraction"],
        )
    report = DiagnosticReport(
        step=int(step),
        layers=names,
        stats=stats,
        info=_layer_facts(tapset, values),
        loss=loss,
        **facts,
    )
    add_gains(report)
    return report


def add_gains(report: DiagnosticReport) -> None:
    """Each node's `activation_gain` along the graph (`signal`)."""
    gains = signal.activation_gains(report)
    for name in report.layers:
        report.stats[name]["activation_gain"] = gains.get(name, math.nan)


def predict(report: DiagnosticReport, values: dict, moments, training: bool) -> dict:
    """The theory's state of each node, from the measured inputs on.

    `values` gives each layer's bias and scale moments (`AFFINE`), as the
    probe measured them for this report.
    """
    affine = {n: {k: values[n][k] for k in AFFINE} for n in report.layers}
    return theory.predict(report, affine, moments, training=training)


def add_predictions(report: DiagnosticReport, states: dict) -> None:
    """`predicted_activation_variance` and `predicted_log_spread` per node."""
    for name, state in states.items():
        found = state is not None
        report.stats[name]["predicted_activation_variance"] = (
            state.variance if found else math.nan
        )
        report.stats[name]["predicted_log_spread"] = (
            math.sqrt(max(state.spread, 0.0)) if found else math.nan
        )
