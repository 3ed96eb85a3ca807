"""The demo's output: the comparison table and the summary PNG."""

from __future__ import annotations

import math
from collections.abc import Sequence

from keras_initdiag.cli.demo.regimes import DESCRIPTIONS, RegimeResult
from keras_initdiag.diagnostics.report import Flag, format_table
from keras_initdiag.diagnostics.rules import is_advisory


def flag_summary(flags: Sequence[Flag]) -> str:
    """Distinct flag kinds with counts, advisory ones marked `*`; `-` if none.

    A pending flag (held for the early verdict) reads `kind?`.

    A kind is marked when every one of its flags is advice (an advisory kind,
    or one that is advice after step 0, `rules.is_advisory`).
    """
    counts: dict[str, int] = {}
    advice: dict[str, bool] = {}
    for flag in flags:
        kind = f"{flag.kind}?" if flag.pending else flag.kind
        counts[kind] = counts.get(kind, 0) + 1
        advice[kind] = advice.get(kind, True) and is_advisory(flag)
    if not counts:
        return "-"
    return ", ".join(
        f"{kind}{'*' if advice[kind] else ''}" + (f" x{n}" if n > 1 else "")
        for kind, n in counts.items()
    )


def verdict_cell(verdict) -> str:
    """`training 0.12` / `failing 0.98` (the risk), `-` without a verdict."""
    if verdict is None:
        return "-"
    return f"{'failing' if verdict.failing else 'training'} {verdict.risk:.2f}"


def comparison_table(results: Sequence[RegimeResult]) -> str:
    """The regimes side by side as a fixed-width text table.

    Args:
        results: One `RegimeResult` per regime.

    Returns:
        The table; `*` marks advisory flags.
    """
    headers = [
        "regime",
        "init",
        "flags at step 0",
        "flags later",
        "verdict (risk)",
        "loss",
        "acc",
        "time",
    ]
    rows = []
    for r in results:
        rows.append(
            [
                r.regime,
                DESCRIPTIONS[r.regime],
                flag_summary(r.initial_flags),
                flag_summary(r.later_flags),
                verdict_cell(r.verdict),
                f"{r.loss:.3g}" if math.isfinite(r.loss) else "nan",
                f"{r.accuracy:.2f}",
                f"{r.seconds:.1f}s",
            ]
        )
    table = format_table(headers, rows)
    return table + (
        "\n* advisory flag (a suggestion, not a defect); ? pending: held until "
        "the early verdict (after 32 steps) confirms or clears it"
    )


def write_summary_png(results: Sequence[RegimeResult], path: str) -> bool:
    """Write the depth profiles at step 0 and the loss curves as a PNG.

    Args:
        results: The regime results.
        path: Where to write the PNG.

    Returns:
        `True` when written, `False` when matplotlib is not installed.
    """
    from keras_initdiag import plots

    ran = [r for r in results if r.reports]
    try:
        fig = plots.summary_figure(
            {r.regime: r.reports for r in ran}, {r.regime: r.losses for r in ran}
        )
    except ImportError:
        return False
    # The loss panel is the last one; a diverged regime's loss (1e7 or more)
    # would flatten every other curve on a linear axis.
    fig.axes[-1].set_yscale("log")
    with open(path, "wb") as f:
        f.write(plots.figure_to_png(fig, dpi=60))
    return True
