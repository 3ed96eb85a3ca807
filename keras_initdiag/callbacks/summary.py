"""A few run-level numbers of the latest diagnosis, for Keras's `logs`.

`InitDiagnostics` adds them to the `logs` of every epoch end, so `History`,
`ProgbarLogger`, `CSVLogger`, MLflow's Keras autologging or any callback that
reads `logs` sees them with no integration. Pure Python on a report.
"""

from __future__ import annotations

import math

from keras_initdiag.diagnostics import signal
from keras_initdiag.diagnostics.report import DiagnosticReport
from keras_initdiag.diagnostics.rules import is_advisory

#: The keys added to `logs`, each prefixed with `initdiag_`.
KEYS = (
    "flags",
    "advisory_flags",
    "max_dead_fraction",
    "worst_backward_scale",
    "verdict_risk",
)


def log_summary(report: DiagnosticReport, verdict=None) -> dict[str, float]:
    """The latest diagnosis and the early verdict in five numbers (NaN if none).

    - `initdiag_flags`: its flags that are not advice;
    - `initdiag_advisory_flags`: its advisory flags;
    - `initdiag_max_dead_fraction`: the largest dead fraction of any layer;
    - `initdiag_worst_backward_scale`: the compounded backward scale furthest
      from 1 (below 1 the gradient fades going back, above it grows);
    - `initdiag_verdict_risk`: the early verdict's risk (0 to 1), NaN until
      it is given.

    Example:
    >>> log_summary(report)["initdiag_flags"]
    0.0
    """
    dead = [
        value
        for value in report.stat("dead_fraction")
        if isinstance(value, float) and math.isfinite(value)
    ]
    scales = [s for s in signal.backward(report).scale.values() if math.isfinite(s)]
    worst = max(scales, key=abs) if scales else math.nan
    serious = sum(not is_advisory(f) for f in report.flags)
    values = (
        float(serious),
        float(len(report.flags) - serious),
        max(dead) if dead else math.nan,
        math.exp(worst) if math.isfinite(worst) else math.nan,
        math.nan if verdict is None else float(verdict.risk),
    )
    return {f"initdiag_{key}": value for key, value in zip(KEYS, values)}
