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
    "verdict",
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
#: Flag kinds that are advice once training has started (a diagnosis after
#: step 0). Measured on the calibration grid's training runs
#: (`benchmarks/midfit.py`, BENCHMARKS.md "Flags during training"): each
#: fired after step 0 on networks that trained, and never on a failing one
#: that step 0 had not already flagged. Symmetry, update_ratio, nonfinite and
#: no_gradient did not fire on a network that trained, and stay serious.
ADVISORY_DURING_TRAINING: tuple[str, ...] = (
    "vanishing",
    "exploding",
    "dead",
    "saturation",
    "finite_width",
)


def is_advisory(flag: Flag) -> bool:
    """Whether `flag` is advice, never a reason to stop, raise or fail.

    Always for `ADVISORY` kinds; after step 0 also for
    `ADVISORY_DURING_TRAINING` kinds.

    Example:
    >>> rules.is_advisory(Flag("dead", "dense", 0, 0.9, 0.5, ""))
    False
    >>> rules.is_advisory(Flag("dead", "dense", 100, 0.9, 0.5, ""))
    True
    """
    return flag.kind in ADVISORY or (
        flag.step > 0 and flag.kind in ADVISORY_DURING_TRAINING
    )


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
