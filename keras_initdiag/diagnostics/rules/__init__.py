"""Rules: turn a report's statistics into flags. Floats in, flags out.

This package computes with plain Python (no TensorFlow), so every rule can
be tested with literal numbers. The thresholds live in `Thresholds`;
`judge()` applies them. The depth rules follow the path the signal takes
through the report's graph (`depth.py`); the others look at one node at a
time (`units.py`).

Example:
>>> flags = keras_initdiag.diagnostics.rules.judge(report)
>>> [f.kind for f in flags]
"""

from __future__ import annotations

from keras_initdiag.diagnostics.report import DiagnosticReport, Flag
from keras_initdiag.diagnostics.rules.checks import (
    finite_width_flags,
    initial_loss_flags,
    no_gradient_flags,
    report_update_ratio_flags,
)
from keras_initdiag.diagnostics.rules.checks import (
    update_ratio_flags as update_ratio_flags,
)
from keras_initdiag.diagnostics.rules.common import branch_ends
from keras_initdiag.diagnostics.rules.depth import depth_flags
from keras_initdiag.diagnostics.rules.thresholds import Thresholds as Thresholds
from keras_initdiag.diagnostics.rules.thresholds import (
    check_thresholds as check_thresholds,
)
from keras_initdiag.diagnostics.rules.units import (
    dead_flags,
    nonfinite_flags,
    readouts,
    unit_flags,
)
from keras_initdiag.diagnostics.rules.units import (
    expected_variance as expected_variance,
)

#: Every flag kind, in the order flags of one diagnosis are listed.
FLAG_KINDS: tuple[str, ...] = (
    "nonfinite",
    "exploding",
    "vanishing",
    "initial_loss",
    "no_gradient",
    "symmetry",
    "dead",
    "saturation",
    "finite_width",
    "update_ratio",
    "identical_kernels",
    "init_mismatch",
)
#: Flag kinds that are advice, never a reason to stop or raise.
ADVISORY: tuple[str, ...] = ("identical_kernels", "init_mismatch")


def judge(report: DiagnosticReport, thresholds: Thresholds | None = None) -> list[Flag]:
    """Apply every rule to a report and return the flags, most severe first.

    Args:
        report: The statistics of one diagnosis.
        thresholds: The thresholds to apply, as they hold for the report's
            optimizer (`Thresholds.for_optimizer`). Defaults to
            `Thresholds()`.

    Returns:
        A list of `Flag`, ordered by kind (see `FLAG_KINDS`) then depth.

    Example:
    >>> flags = keras_initdiag.diagnostics.rules.judge(report)
    >>> [f.kind for f in flags]
    """
    t = check_thresholds(thresholds).for_optimizer(report.optimizer)
    ends = branch_ends(report)
    flags = nonfinite_flags(report)
    flags += depth_flags(report, t)
    flags += initial_loss_flags(report, t)
    flags += no_gradient_flags(report)
    flags += finite_width_flags(report, t)
    flags += report_update_ratio_flags(report, t)
    heads = readouts(report)
    flags += dead_flags(report, t, ends, heads)
    for layer in report.layers:
        flags += unit_flags(report, layer, t, ends, heads)
    order = {kind: i for i, kind in enumerate(FLAG_KINDS)}
    depth = {layer: i for i, layer in enumerate(report.layers)}
    return sorted(
        flags, key=lambda f: (order.get(f.kind, len(order)), depth.get(f.layer, 0))
    )
