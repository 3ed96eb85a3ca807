"""Figures of diagnostic reports: signal propagation plots and loss curves.

A depth profile is a signal propagation plot (Brock, De & Smith 2021): each
statistic against depth on a log scale, layer names on the axis, normalization
layers and merges marked, and the theory's prediction with its finite-width
band when the report records it.

matplotlib is optional (`pip install keras_initdiag[plots]`): it is imported
inside the functions. Figures are built with `matplotlib.figure.Figure` and the
Agg canvas, so no pyplot window or global backend state is involved.
"""

from __future__ import annotations

import io
import math
import warnings

from keras_initdiag.diagnostics.report import DiagnosticReport
from tensorboard_plugin_initdiag.records import node_kind

DEFAULT_STATS = ("activation_variance", "activation_gradient_rms", "weight_variance")
#: The predicted activation variance, drawn next to the measured one.
PREDICTION_STAT = "predicted_activation_variance"
#: The prediction's log spread: the band is prediction * exp(+-3 * spread).
SPREAD_STAT = "predicted_log_spread"
# At most this many layer names on the depth axis; with more layers, every
# k-th layer is named.
_MAX_NAMED_TICKS = 16
# Node kinds marked on the depth axis: marker, colour and legend label.
_KIND_MARKS = {
    "norm": ("^", "tab:green", "normalization"),
    "merge": ("D", "tab:purple", "merge"),
}
# summary_figure: depth-profile panels per row, and the size of one grid cell
# with its margins (inches): a title above, rotated layer names below.
PANELS_PER_ROW = 4
_CELL, _TOP, _BOTTOM, _LEFT, _RIGHT = 4.5, 0.45, 1.35, 0.6, 0.2


def _new_figure(**kwargs):
    """A figure on an Agg canvas; ImportError naming the extra when missing."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "keras_initdiag plots need matplotlib. Install it with "
            "`pip install keras_initdiag[plots]`."
        ) from e
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _text(text: str, limit: int = 24) -> str:
    """Shorten a name to `limit` characters and escape `$` (mathtext)."""
    text = str(text)
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return text.replace("$", r"\$")


def _positive(values: list[float]) -> tuple[list[int], list[float]]:
    """Indices and values that can be drawn on a log scale (finite, > 0)."""
    points = [(i, v) for i, v in enumerate(values) if math.isfinite(v) and v > 0]
    return [i for i, _ in points], [v for _, v in points]


def _values(report: DiagnosticReport, name: str) -> list[float]:
    """One statistic for every layer in forward order, NaN where absent."""
    return [
        float(report.stats.get(layer, {}).get(name, math.nan))
        for layer in report.layers
    ]


def _all_zero(values: list[float]) -> bool:
    """Whether the values that exist are all exactly zero."""
    present = [v for v in values if not math.isnan(v)]
    return bool(present) and all(v == 0 for v in present)


def _kinds(report: DiagnosticReport) -> list[str]:
    """Each layer's kind: `info.kind` when recorded, else guessed from its class."""
    kinds = []
    for layer in report.layers:
        info = report.info.get(layer)
        facts = {
            "kind": getattr(info, "kind", ""),
            "class_name": getattr(info, "class_name", ""),
        }
        kinds.append(node_kind(facts))
    return kinds


def _plot_prediction(ax, report: DiagnosticReport, color) -> bool:
    """The predicted activation variance, dashed, with its band; drawn or not."""
    predicted = _values(report, PREDICTION_STAT)
    spread = _values(report, SPREAD_STAT)
    points = [
        (i, p, 0.0 if math.isnan(s) else s)
        for i, (p, s) in enumerate(zip(predicted, spread))
        if math.isfinite(p) and p > 0
    ]
    if not points:
        return False
    depth = [i for i, _, _ in points]
    ax.fill_between(
        depth,
        [p * math.exp(-3 * s) for _, p, s in points],
        [p * math.exp(3 * s) for _, p, s in points],
        color=color,
        alpha=0.15,
        linewidth=0,
        label="prediction \u00b13 spread",
    )
    values = [p for _, p, _ in points]
    ax.plot(depth, values, linestyle="--", color=color, label=PREDICTION_STAT)
    return True


def _mark_kinds(ax, report: DiagnosticReport) -> None:
    """Normalization layers and merges: a shaded column and a marker on the axis."""
    kinds = _kinds(report)
    for kind, (marker, color, label) in _KIND_MARKS.items():
        depth = [i for i, k in enumerate(kinds) if k == kind]
        if not depth:
            continue
        for i in depth:
            ax.axvspan(i - 0.4, i + 0.4, color=color, alpha=0.08, linewidth=0)
        ax.scatter(
            depth,
            [0.0] * len(depth),
            marker=marker,
            color=color,
            s=30,
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            zorder=3,
            label=label,
        )


def _name_ticks(ax, report: DiagnosticReport) -> None:
    """Layer names on the depth axis: all of them, or every k-th when many."""
    count = len(report.layers)
    every = max(1, math.ceil(count / _MAX_NAMED_TICKS))
    ticks = list(range(0, count, every))
    ax.set_xticks(ticks)
    labels = [_text(report.layers[i]) for i in ticks]
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize="small")


def _plot_depth_profile(ax, report: DiagnosticReport, stats) -> None:
    """Draw a signal propagation plot of `report` on `ax` (log y scale).

    Statistics with no positive value cannot be drawn on a log axis: those
    that are all zero are named in the panel ("all zero") instead.
    """
    colors = {}
    notes = []
    for name in stats:
        values = _values(report, name)
        depth, positive = _positive(values)
        if positive:
            (line,) = ax.plot(depth, positive, marker="o", markersize=4, label=name)
            colors[name] = line.get_color()
        elif _all_zero(values):
            notes.append(f"{name}: all zero")
    predicted = _plot_prediction(
        ax, report, colors.get("activation_variance", "tab:blue")
    )
    _mark_kinds(ax, report)
    ax.set_yscale("log")
    ax.set_xlim(-0.5, max(len(report.layers) - 0.5, 0.5))
    if report.layers:
        _name_ticks(ax, report)
    ax.set_xlabel("layer depth (forward order)")
    ax.grid(True, which="major", alpha=0.3)
    if not colors and not predicted:
        ax.set_ylim(0.1, 10)
        empty = "all zero" if notes else "no values to draw"
        ax.text(
            0.5,
            0.5,
            empty,
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize="x-large",
            color="darkred",
        )
    if notes and (colors or predicted):
        ax.text(
            0.02,
            0.97,
            "\n".join(notes),
            transform=ax.transAxes,
            ha="left",
            va="top",
            fontsize="small",
            color="darkred",
        )
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")


def depth_profile_figure(
    report: DiagnosticReport, stats: tuple[str, ...] = DEFAULT_STATS
):
    """Plot statistics of one report against layer depth: a signal propagation plot.

    Each statistic is a line over the layers in forward order, on a log y
    scale. NaN ("does not apply"), non-finite and non-positive values are left
    out, and a statistic that is all zero is named in the panel ("all zero").
    Layer names label the depth axis (every k-th one beyond 16 layers).
    Normalization layers and merges are marked on the axis (from `info.kind`
    when the report records it, else from the layer's class). When the report
    has `predicted_activation_variance`, it is drawn dashed with the band
    prediction * exp(+-3 * `predicted_log_spread`).

    Args:
        report: The diagnosis to plot.
        stats: Statistic names (from `STAT_NAMES`) to draw. Defaults to
            `("activation_variance", "activation_gradient_rms",
            "weight_variance")`.

    Returns:
        A `matplotlib.figure.Figure`.

    Raises:
        ImportError: If matplotlib is not installed.

    Example:
    >>> fig = keras_initdiag.plots.depth_profile_figure(report)
    >>> png = keras_initdiag.plots.figure_to_png(fig)
    """
    # Fixed margins: a layout engine costs more than the rest of the drawing.
    fig = _new_figure(figsize=(7, 4.5))
    fig.subplots_adjust(left=0.1, right=0.97, top=0.92, bottom=0.3)
    ax = fig.add_subplot()
    _plot_depth_profile(ax, report, stats)
    ax.set_title(
        f"Signal propagation at step {report.step}: {len(report.flags)} flag(s)"
    )
    return fig


def figure_to_png(fig, dpi: int = 100) -> bytes:
    r"""Render a matplotlib figure to PNG bytes with the Agg renderer.

    Warnings about glyphs missing from the font (e.g. CJK layer names) are
    silenced: those characters are drawn as boxes.

    Args:
        fig: A `matplotlib.figure.Figure`.
        dpi: Resolution in dots per inch. Defaults to `100`.

    Returns:
        The PNG file contents.

    Example:
    >>> fig = keras_initdiag.plots.depth_profile_figure(report)
    >>> png = keras_initdiag.plots.figure_to_png(fig)
    >>> png[:4]
    b'\\x89PNG'
    """
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from")
        fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _summary_grid(fig, panels: int):
    """Axes for `panels` depth profiles in rows, then one for the losses.

    Up to `PANELS_PER_ROW - 1` profiles share one row with the loss panel.
    More wrap into rows of `PANELS_PER_ROW`, and the loss panel gets its own
    row across the full width. Margins are fixed in inches, so every cell has
    the same room for its title and tick labels whatever the grid.
    """
    single = panels < PANELS_PER_ROW
    cols = panels + 1 if single else PANELS_PER_ROW
    rows = 1 if single else -(-panels // cols) + 1
    width, height = _CELL * cols, _CELL * rows
    fig.set_size_inches(width, height)
    axes_height = _CELL - _TOP - _BOTTOM
    grid = fig.add_gridspec(
        rows,
        cols,
        left=_LEFT / width,
        right=1 - _RIGHT / width,
        top=1 - _TOP / height,
        bottom=_BOTTOM / height,
        wspace=0.3,
        hspace=(_TOP + _BOTTOM) / axes_height,
    )
    profiles = [fig.add_subplot(grid[i // cols, i % cols]) for i in range(panels)]
    loss = fig.add_subplot(grid[0, -1] if single else grid[-1, :])
    return profiles, loss


def summary_figure(
    runs: dict[str, list[DiagnosticReport]],
    losses: dict[str, list[float]] | None = None,
):
    """Compare runs: the first depth profile of each, in a grid, and losses.

    Up to three runs fit in one row with the loss panel on the right. More
    runs wrap into rows of `PANELS_PER_ROW` (4) depth profiles, with the loss
    panel in its own full-width row at the bottom, so the figure grows in both
    directions (10 runs: 18 x 18 inches) instead of only in width. The loss
    panel is always the last of `fig.axes`.

    Args:
        runs: Run name -> its reports sorted by step (the first one, usually
            step 0, is drawn). Runs without reports get no panel.
        losses: Run name -> loss values, one per epoch. Defaults to `None`:
            the probe losses of the reports are drawn against their steps.

    Returns:
        A `matplotlib.figure.Figure` with one depth-profile panel per run and a
        loss panel.

    Raises:
        ImportError: If matplotlib is not installed.

    Example:
    >>> runs = {"he": keras_initdiag.tensorboard.read_reports("logs/initdiag")}
    >>> fig = keras_initdiag.plots.summary_figure(runs)
    """
    names = [name for name, reports in runs.items() if reports]
    fig = _new_figure()
    profile_axes, loss_ax = _summary_grid(fig, len(names))
    for ax, name in zip(profile_axes, names, strict=True):
        first = runs[name][0]
        _plot_depth_profile(ax, first, DEFAULT_STATS)
        ax.set_title(f"{_text(name)}: step {first.step}, {len(first.flags)} flag(s)")
    if losses is None:
        curves = {n: [(r.step, r.loss) for r in runs[n]] for n in names}
        loss_ax.set_xlabel("step")
    else:
        curves = {n: list(enumerate(v, start=1)) for n, v in losses.items()}
        loss_ax.set_xlabel("epoch")
    for name, points in curves.items():
        finite = [(x, y) for x, y in points if math.isfinite(y)]
        if finite:
            xs, ys = [x for x, _ in finite], [y for _, y in finite]
            loss_ax.plot(xs, ys, marker=".", label=_text(name))
    loss_ax.set_title("loss")
    if loss_ax.get_lines():
        loss_ax.legend(fontsize="small")
    return fig
