"""Tests of the depth-profile and summary figures."""

import dataclasses
import math
import sys

import numpy as np
import pytest

from keras_initdiag import plots
from keras_initdiag.diagnostics.report import DiagnosticReport, Flag, LayerInfo

matplotlib = pytest.importorskip("matplotlib")


def make_report(layers, step=0, flags=0, loss=1.0):
    stats = {
        layer: {
            "activation_variance": 2.0**-i,
            "activation_gradient_rms": 10.0**i,
            "weight_variance": 0.01,
        }
        for i, layer in enumerate(layers)
    }
    flag_list = [Flag("dead", layers[0], step, 1.0, 0.5, "m")] * flags
    return DiagnosticReport(step, list(layers), stats, flag_list, {}, loss)


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_depth_profile_plots_each_stat_against_depth_on_log_scale():
    report = make_report(["in", "mid", "out"], step=7, flags=2)
    fig = plots.depth_profile_figure(report)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    lines = lines_by_label(ax)
    assert set(lines) == set(plots.DEFAULT_STATS)
    line = lines["activation_variance"]
    np.testing.assert_array_equal(line.get_xdata(), [0, 1, 2])
    np.testing.assert_allclose(line.get_ydata(), [1.0, 0.5, 0.25])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["in", "mid", "out"]
    assert "step 7" in ax.get_title() and "2 flag" in ax.get_title()


def test_nan_zero_and_negative_values_are_skipped():
    report = make_report(["a", "b", "c", "d"])
    report.stats["b"]["activation_variance"] = math.nan
    report.stats["c"]["activation_variance"] = 0.0
    report.stats["d"]["activation_variance"] = -math.inf
    for layer in "abcd":  # a statistic that never applies: no line at all
        report.stats[layer]["weight_variance"] = math.nan
    fig = plots.depth_profile_figure(report)
    lines = lines_by_label(fig.axes[0])
    assert "weight_variance" not in lines
    np.testing.assert_array_equal(lines["activation_variance"].get_xdata(), [0])
    assert plots.figure_to_png(fig).startswith(b"\x89PNG")


def test_many_layers_name_every_kth_layer_and_odd_names_render():
    names = [f"dense_{i}" for i in range(30)]
    fig = plots.depth_profile_figure(make_report(names))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == names[::2]  # 16 names at most: every second of 30
    np.testing.assert_array_equal(ax.get_xticks(), range(0, 30, 2))

    odd = ["$x$", "长" * 60, "a_b|c<d>&`e`"]  # mathtext, CJK (no glyph), specials
    png = plots.figure_to_png(plots.depth_profile_figure(make_report(odd)))
    assert png.startswith(b"\x89PNG")


def test_figure_to_png_round_trips_through_tensorflow():
    import tensorflow as tf

    png = plots.figure_to_png(plots.depth_profile_figure(make_report(["a"])), dpi=50)
    image = tf.io.decode_png(png).numpy()
    assert image.shape[0] == int(4.5 * 50) and image.shape[1] == 7 * 50


def test_summary_figure_has_one_panel_per_run_and_loss_curves():
    runs = {
        "he": [make_report(["a", "b"], step=s, loss=1.0 / (s + 1)) for s in (0, 5)],
        "small": [make_report(["a", "b"], step=s, loss=math.nan) for s in (0, 5)],
        "empty": [],
    }
    fig = plots.summary_figure(runs)
    assert len(fig.axes) == 3  # he, small, loss
    loss_lines = lines_by_label(fig.axes[-1])
    assert set(loss_lines) == {"he"}  # NaN losses are not drawn
    np.testing.assert_array_equal(loss_lines["he"].get_xdata(), [0, 5])

    fig = plots.summary_figure(runs, losses={"he": [3.0, 2.0, 1.0]})
    np.testing.assert_array_equal(
        lines_by_label(fig.axes[-1])["he"].get_xdata(), [1, 2, 3]
    )
    assert plots.figure_to_png(fig).startswith(b"\x89PNG")
    # Up to three runs: one row, the loss panel on the right, same cell size.
    np.testing.assert_array_equal(fig.get_size_inches(), [3 * 4.5, 4.5])
    assert [grid_cell(ax) for ax in fig.axes] == [(0, 0, 1), (0, 1, 1), (0, 2, 1)]


def grid_cell(ax):
    """(row, first column, columns spanned) of an axes in its grid."""
    spec = ax.get_subplotspec()
    return spec.rowspan.start, spec.colspan.start, len(spec.colspan)


def test_summary_figure_wraps_many_runs_into_rows_of_four():
    layers = [f"dense_{i}" for i in range(8)]
    runs = {f"run_{i}": [make_report(layers)] for i in range(10)}
    fig = plots.summary_figure(runs, losses={name: [2.0, 1.0] for name in runs})
    *profiles, loss = fig.axes
    assert plots.PANELS_PER_ROW == 4
    assert [grid_cell(ax) for ax in profiles] == [(i // 4, i % 4, 1) for i in range(10)]
    assert [ax.get_title().split(":")[0] for ax in profiles] == list(runs)
    assert grid_cell(loss) == (3, 0, 4)  # its own row, across the full width
    assert loss.get_title() == "loss" and len(loss.get_lines()) == 10
    # 4 cells wide, 3 rows of profiles and the loss row: square, not 45 x 4.5.
    np.testing.assert_array_equal(fig.get_size_inches(), [18.0, 18.0])
    widths = [ax.get_position().width * 18.0 for ax in fig.axes]
    heights = [ax.get_position().height * 18.0 for ax in fig.axes]
    assert min(widths[:-1]) > 3.0 and widths[-1] > 3.5 * min(widths[:-1])
    assert min(heights) > 2.5 and max(heights) - min(heights) < 1e-9
    # Panels do not overlap: each row's tick labels have their own margin.
    boxes = [ax.get_position() for ax in fig.axes]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b)

    fig = plots.summary_figure({name: runs[name] for name in list(runs)[:4]})
    assert [grid_cell(ax) for ax in fig.axes][-1] == (1, 0, 4)
    np.testing.assert_array_equal(fig.get_size_inches(), [18.0, 9.0])
    fig = plots.summary_figure({"empty": []})
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "loss"


def test_missing_matplotlib_raises_import_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"keras_initdiag\[plots\]"):
        plots.depth_profile_figure(make_report(["a"]))


def test_importing_plots_leaves_matplotlib_state_alone():
    assert "matplotlib" not in vars(plots)
    backend = matplotlib.get_backend()
    plots.figure_to_png(plots.depth_profile_figure(make_report(["a"])))
    assert matplotlib.get_backend() == backend
    assert (
        "matplotlib.pyplot" not in sys.modules
        or not sys.modules["matplotlib.pyplot"].get_fignums()
    )


@dataclasses.dataclass(frozen=True)
class KindInfo(LayerInfo):
    """`LayerInfo` with the node kind the writer on main is gaining."""

    kind: str = "layer"


def texts(ax):
    return [t.get_text() for t in ax.texts]


def test_norm_layers_and_merges_are_marked_on_the_depth_axis():
    layers = ["x", "dense", "bn", "add", "head"]
    report = make_report(layers)
    report.info = {
        "x": KindInfo("x", kind="input"),
        "dense": KindInfo("dense", class_name="Dense"),
        "bn": KindInfo("bn", kind="norm"),
        "add": LayerInfo("add", class_name="Add"),  # older logs: from the class
        "head": KindInfo("head", kind="layer", class_name="BatchNormalization"),
    }
    ax = plots.depth_profile_figure(report).axes[0]
    marks = {c.get_label(): c.get_offsets()[:, 0].tolist() for c in ax.collections}
    assert marks == {"normalization": [2.0], "merge": [3.0]}
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"normalization", "merge"} <= set(legend)


def test_prediction_is_a_dashed_line_with_its_band():
    layers = ["a", "b", "c"]
    report = make_report(layers)
    for i, layer in enumerate(layers):
        report.stats[layer][plots.PREDICTION_STAT] = 2.0**-i
        report.stats[layer][plots.SPREAD_STAT] = 0.1 * (i + 1)
    report.stats["c"][plots.SPREAD_STAT] = math.nan  # no spread: no width
    ax = plots.depth_profile_figure(report).axes[0]
    line = lines_by_label(ax)[plots.PREDICTION_STAT]
    assert line.get_linestyle() == "--"
    assert line.get_color() == lines_by_label(ax)["activation_variance"].get_color()
    np.testing.assert_allclose(line.get_ydata(), [1.0, 0.5, 0.25])
    (band,) = [c for c in ax.collections if c.get_label().startswith("prediction")]
    ys = band.get_paths()[0].vertices[:, 1]
    spread = np.array([0.1, 0.2, 0.0])
    expected = np.array([1.0, 0.5, 0.25])
    np.testing.assert_allclose(ys.min(), (expected * np.exp(-3 * spread)).min())
    np.testing.assert_allclose(ys.max(), (expected * np.exp(3 * spread)).max())
    assert "predicted_activation_variance" not in lines_by_label(
        plots.depth_profile_figure(make_report(layers)).axes[0]
    )


def test_all_zero_statistics_say_so_instead_of_an_empty_panel():
    report = make_report(["a", "b", "c"])
    for layer in report.layers:
        report.stats[layer]["weight_variance"] = 0.0
    ax = plots.depth_profile_figure(report).axes[0]
    assert "weight_variance" not in lines_by_label(ax)
    assert texts(ax) == ["weight_variance: all zero"]

    for layer in report.layers:  # the "zeros" regime: nothing to draw
        report.stats[layer] = {name: 0.0 for name in plots.DEFAULT_STATS}
    fig = plots.depth_profile_figure(report)
    ax = fig.axes[0]
    assert ax.get_lines() == [] and texts(ax) == ["all zero"]
    assert plots.figure_to_png(fig).startswith(b"\x89PNG")

    runs = {"zeros": [report], "he": [make_report(["a", "b", "c"])]}
    zeros_ax, he_ax, _ = plots.summary_figure(runs).axes
    assert texts(zeros_ax) == ["all zero"] and texts(he_ax) == []
