"""Log directories for the dashboard tests, written with the package's writer.

Synthetic runs use `DiagnosticsWriter` with hand-made reports, so each test
knows every number it wrote. `FutureLayerInfo` adds the fields the writer on
`main` is gaining (`kind`, `inputs`), and statistics such as
`predicted_activation_variance` are just more keys of `report.stats`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import math
import os

import numpy as np
from helpers import record_ends

from keras_initdiag.diagnostics.report import (
    DiagnosticReport,
    Flag,
    LayerInfo,
    Verdict,
)
from keras_initdiag.tensorboard import REPORT_TAG, DiagnosticsWriter
from keras_initdiag.tensorboard import writer as writer_module

HOSTILE_NAMES = (
    '<img src=x onerror="window.__pwned=1">',
    "</script><script>window.__pwned=2</script>",
    "quote\"d 'name' & <b>bold</b>",
    "外側/内側@2#1",
)


@dataclasses.dataclass(frozen=True)
class FutureLayerInfo(LayerInfo):
    """`LayerInfo` with the node kind and producer names of the new contract."""

    kind: str = "layer"
    inputs: tuple[str, ...] = ()


def variance_profile(layers: int, step: int, decay: float = 0.7) -> np.ndarray:
    """Activation variances that shrink with depth and drift with the step."""
    depth = np.arange(layers)
    return (decay**depth) * (1.0 + 0.001 * step)


def make_report(
    step: int,
    layers: list[str],
    kinds: dict[str, str] | None = None,
    flags: list[Flag] | None = None,
    predicted: bool = False,
    decay: float = 0.7,
    gaps: tuple[str, ...] = (),
    inputs: dict[str, tuple[str, ...]] | None = None,
    verdict: Verdict | None = None,
) -> DiagnosticReport:
    """A report whose numbers are closed forms of (layer index, step).

    Layers named in `gaps` have no `activation_variance` at odd steps (NaN,
    which the writer skips), like a statistic that does not always apply.
    `inputs` names a node's producers (default: the node before it).
    """
    variances = variance_profile(len(layers), step, decay)
    stats = {}
    for i, name in enumerate(layers):
        gap = name in gaps and step % 2 == 1
        stats[name] = {
            "activation_variance": math.nan if gap else float(variances[i]),
            "activation_gradient_rms": 0.01 * 1.1**i,
            "weight_variance": 0.5 / (i + 1),
            "dead_fraction": 0.0 if i else 0.25,
        }
        if predicted:
            stats[name]["predicted_activation_variance"] = float(decay**i)
            stats[name]["predicted_log_spread"] = 0.05 * math.sqrt(i + 1)
    info = {
        name: FutureLayerInfo(
            name=name,
            class_name="Dense",
            activation="relu",
            kind=(kinds or {}).get(name, "layer"),
            inputs=(inputs or {}).get(name, (layers[i - 1],) if i else ()),
        )
        for i, name in enumerate(layers)
    }
    return DiagnosticReport(
        step, list(layers), stats, flags or [], info, loss=1.0, verdict=verdict
    )


def write_run(
    run_dir,
    layers: list[str],
    report_steps: list[int],
    series_steps: list[int] = (),
    kinds: dict[str, str] | None = None,
    flags: dict[int, list[Flag]] | None = None,
    predicted: bool = False,
    gaps: tuple[str, ...] = (),
    inputs: dict[str, tuple[str, ...]] | None = None,
    verdicts: dict[int, Verdict] | None = None,
) -> None:
    """Write reports at `report_steps` and `activation_variance` series between.

    Steps are written in increasing order (TensorBoard's loaders drop points
    that go back in time). At `series_steps` that are not report steps, only
    `activation_variance/<node>` is written, as `write_series` does for
    per-batch values. `verdicts` gives the early verdict of a report step.
    """
    parent, _, subdir = str(run_dir).rstrip("/").rpartition("/")
    writer = DiagnosticsWriter(parent, subdir=subdir, depth_profile=False)
    reports = set(report_steps)
    for step in sorted(reports.union(series_steps)):
        if step in reports:
            report_flags = (flags or {}).get(step, [])
            report = make_report(
                step,
                layers,
                kinds,
                report_flags,
                predicted,
                gaps=gaps,
                inputs=inputs,
                verdict=(verdicts or {}).get(step),
            )
            writer.write(report)
        else:
            values = variance_profile(len(layers), step)
            row = {name: float(v) for name, v in zip(layers, values)}
            writer.write_series("activation_variance", [(step, row)])
    writer.close()


@contextlib.contextmanager
def legacy_format():
    """Write report records as text summaries, as versions before the dashboard."""
    import tensorflow as tf

    original = writer_module._write_report
    writer_module._write_report = lambda text: tf.summary.text(REPORT_TAG, text)
    try:
        yield
    finally:
        writer_module._write_report = original


def truncate_last_scalars(run_dir) -> str:
    """Cut the run's event file inside the record of its last statistics.

    The last diagnosis keeps its report record but loses its scalars, as when
    a job dies while writing. Returns the path of the truncated file.
    """
    (path,) = glob.glob(os.path.join(str(run_dir), "*tfevents*"))
    start = 0
    cut = None
    for end, event in record_ends(path):
        if any(v.tag.startswith("activation_variance/") for v in event.summary.value):
            cut = (start + end) // 2
        start = end
    with open(path, "r+b") as f:
        f.truncate(cut)
    return path
