"""The TensorBoard writer of diagnostic reports: lazy, I/O only.

`DiagnosticsWriter` turns a `DiagnosticReport` into summaries (scalars, a
custom-scalars layout, a flag table, a depth-profile image and optional
histograms). The reader is `events.py`, next to it.
"""

from __future__ import annotations

import logging
import math
import os
import re
import uuid
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import summary_pb2, types_pb2
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import summary as custom_scalar_summary
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.util import tensor_util

from keras_initdiag import _checks
from keras_initdiag.diagnostics.report import STAT_NAMES, DiagnosticReport, Flag
from keras_initdiag.tensorboard.codec import report_to_json
from keras_initdiag.tensorboard.events import (
    DEPTH_PROFILE_TAG,
    FLAGS_TAG,
    LAYOUT_CATEGORY,
    LOSS_TAG,
    REPORT_METADATA,
    REPORT_TAG,
    TRAIN_SERIES_TAGS,
)

logger = logging.getLogger("keras_initdiag")

# Python-Markdown (which TensorBoard's text plugin uses) honours a backslash
# before these characters; "|" is added by its tables extension.
_MARKDOWN_ESCAPED = set("\\`*_{}[]()#+-.!|")
_HTML_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_missing_matplotlib_reported = False


class DiagnosticsWriter:
    """Writes diagnostic reports as TensorBoard summaries, lazily.

    Creating the writer touches no disk; the `tf.summary` file writer is
    created on the first `write()`. After `close()`, the next `write()` opens a
    new event file in the same directory, so one instance can serve several
    `fit` calls.

    Args:
        log_dir: The TensorBoard log directory (any path `tf.io.gfile`
            understands).
        subdir: The run directory under `log_dir` that receives the events.
            Defaults to `"initdiag"`.
        depth_profile: Whether to write the depth-profile image (it needs
            matplotlib and costs a few tenths of a second per write).
            Defaults to `True`.

    Example:
    >>> writer = keras_initdiag.tensorboard.DiagnosticsWriter("logs")
    >>> writer.check_writable()
    >>> writer.write(report)
    >>> writer.close()
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        subdir: str = "initdiag",
        depth_profile: bool = True,
    ):
        self.log_dir = _checks.path("log_dir", log_dir)
        self.subdir = subdir
        self.depth_profile = depth_profile
        self._writer = None
        self._layout_written = False

    @property
    def run_dir(self) -> str:
        """The directory that receives the event files."""
        return os.path.join(self.log_dir, self.subdir)

    def check_writable(self) -> None:
        """Create the run directory and check that a file can be written there.

        Raises:
            ValueError: If the directory cannot be created or written to.
        """
        probe = os.path.join(self.run_dir, f".initdiag_probe_{uuid.uuid4().hex}")
        try:
            tf.io.gfile.makedirs(self.run_dir)
            with tf.io.gfile.GFile(probe, "w") as f:
                f.write("")
            tf.io.gfile.remove(probe)
        except (OSError, tf.errors.OpError) as e:
            raise ValueError(
                "Argument `log_dir` must be a directory that can be created and "
                f"written to (TensorBoard events go to {self.run_dir!r}). "
                f"Received: log_dir={self.log_dir!r} ({type(e).__name__}: {e})"
            ) from e

    def write(
        self,
        report: DiagnosticReport,
        histograms: Mapping[str, object] | None = None,
        depth_profile: bool | None = None,
    ) -> None:
        """Write one diagnosis at `step=report.step`.

        Writes the report JSON (tag `initdiag/report_json`, a string tensor
        read by the dashboard plugin), one scalar per
        (statistic, layer) as `<stat>/<layer>` (NaN, "does not apply", is
        skipped), `loss/probe` (skipped when NaN), the custom-scalars layout
        (first write only), the flag table (tag `flags`), the depth-profile
        image (tag `depth_profile`, when enabled and matplotlib is installed)
        and the optional histograms.

        Args:
            report: The diagnosis to write.
            histograms: Tag -> array or tensor, e.g.
                `{"weights/dense_1": kernel}`, each written with
                `tf.summary.histogram`. Defaults to `None` (no histograms).
            depth_profile: Whether to draw the depth-profile image for this
                diagnosis (it costs a few tenths of a second). Defaults to
                `None`, which uses the writer's `depth_profile` setting.

        Example:
        >>> writer.write(report, histograms={"weights/dense_1": kernel})
        """
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.run_dir)
        scalars = _scalar_values(report)
        with self._writer.as_default(step=int(report.step)):
            # The JSON goes first: the reader takes it as the start of a report.
            _write_report(report_to_json(report, len(scalars)))
            _write_scalars(scalars)
            if not math.isnan(report.loss):
                tf.summary.scalar(LOSS_TAG, report.loss)
            if not self._layout_written:
                tf.summary.experimental.write_raw_pb(
                    custom_scalar_summary.pb(_layout()).SerializeToString()
                )
                self._layout_written = True
            tf.summary.text(FLAGS_TAG, flags_markdown(report.flags))
            if self.depth_profile if depth_profile is None else depth_profile:
                self.write_depth_profile(report)
            for tag, values in (histograms or {}).items():
                tf.summary.histogram(tag, values)

    def write_depth_profile(self, report: DiagnosticReport) -> None:
        """Draw and write the depth-profile image of `report` at its step.

        Does nothing (after one informative message) without matplotlib.

        Example:
        >>> writer.write_depth_profile(report)
        """
        self.write_png(DEPTH_PROFILE_TAG, depth_profile_png(report), report.step)

    def write_png(self, tag: str, png: bytes | None, step: int) -> None:
        """Write an encoded PNG as an image summary (nothing for `None`).

        The record is what `tf.summary.image` writes (the images plugin's
        metadata and a `[width, height, png]` string tensor), built on the
        host from the bytes, so an image drawn elsewhere costs no decoding.

        Args:
            tag: The image's tag, e.g. `"depth_profile"`.
            png: The PNG file contents, or `None`.
            step: The global step.

        Example:
        >>> writer.write_png("depth_profile", png_bytes, step=0)
        """
        if png is None:
            return
        width, height = _png_size(png)
        summary = summary_pb2.Summary()
        entry = summary.value.add(tag=tag)
        entry.metadata.CopyFrom(_IMAGE_METADATA)
        entry.tensor.CopyFrom(
            tensor_util.make_tensor_proto(
                np.array([str(width).encode(), str(height).encode(), png], object)
            )
        )
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.run_dir)
        with self._writer.as_default():
            tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)

    def write_series(self, prefix: str, records) -> None:
        """Write buffered per-step scalars as `<prefix>/<name>`.

        Args:
            prefix: Tag prefix, e.g. `"train_gradient_norm"`.
            records: `(step, {name: value})` pairs; NaN values are skipped.

        Example:
        >>> writer.write_series("train_gradient_norm", [(1, {"dense": 0.3})])
        """
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.run_dir)
        with self._writer.as_default():
            for step, values in records:
                scalars = {f"{prefix}/{name}": v for name, v in values.items()}
                _write_scalars(scalars, step=int(step))

    def flush(self) -> None:
        """Flush pending events to disk (no-op before the first write)."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file. Idempotent; `write()` reopens."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> DiagnosticsWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# What tf.summary.scalar attaches to every scalar: the scalars plugin's name.
_SCALAR_METADATA = scalar_metadata.create_summary_metadata(
    display_name="", description=""
)
# And what tf.summary.image attaches to an image.
_IMAGE_METADATA = image_metadata.create_summary_metadata(
    display_name=None, description=""
)


def _write_scalars(scalars: dict[str, float], step: int | None = None) -> None:
    """Write many scalars as one `Summary` protobuf to the default writer.

    The same records `tf.summary.scalar` writes (a float tensor with the
    scalars plugin's metadata), built on the host and written in one call:
    one eager `tf.summary.scalar` costs ~0.5 ms, so a 100-layer report took
    ~0.5 s that way; NaN ("does not apply") values are skipped.
    """
    summary = summary_pb2.Summary()
    for tag, value in scalars.items():
        if not math.isnan(value):
            entry = summary.value.add(tag=tag)
            entry.metadata.CopyFrom(_SCALAR_METADATA)
            entry.tensor.dtype = types_pb2.DT_FLOAT
            entry.tensor.float_val.append(value)
    if summary.value:
        tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)


def _write_report(text: str) -> None:
    """Write the report JSON as a string tensor with the dashboard's metadata.

    The metadata keeps the record out of TensorBoard's Text tab (which shows
    the readable `flags` table) and lets the dashboard ask TensorBoard to keep
    every record. Versions before it wrote the same JSON with
    `tf.summary.text`; the reader accepts both.
    """
    summary = summary_pb2.Summary()
    entry = summary.value.add(tag=REPORT_TAG)
    entry.metadata.CopyFrom(REPORT_METADATA)
    entry.tensor.dtype = types_pb2.DT_STRING
    entry.tensor.string_val.append(text.encode("utf-8"))
    tf.summary.experimental.write_raw_pb(summary.SerializeToString())


def _scalar_values(report: DiagnosticReport) -> dict[str, float]:
    """Tag -> value of every applicable (non-NaN) statistic, in forward order."""
    return {
        f"{stat}/{layer}": float(value)
        for layer in report.layers
        for stat, value in report.stats.get(layer, {}).items()
        if not math.isnan(value)
    }


def _layout() -> layout_pb2.Layout:
    """One multi-line chart per statistic (every layer), plus the loss."""
    charts = [
        layout_pb2.Chart(
            title=name,
            multiline=layout_pb2.MultilineChartContent(tag=[f"^{re.escape(name)}/"]),
        )
        for name in (*STAT_NAMES, *TRAIN_SERIES_TAGS, "loss")
    ]
    return layout_pb2.Layout(
        category=[layout_pb2.Category(title=LAYOUT_CATEGORY, chart=charts)]
    )


def depth_profile_png(report: DiagnosticReport) -> bytes | None:
    """The depth profile of `report` as PNG bytes, or `None` without matplotlib.

    Pure matplotlib (no TensorFlow), so it can run on a background thread.
    """
    global _missing_matplotlib_reported
    from keras_initdiag import plots

    try:
        fig = plots.depth_profile_figure(report)
    except ImportError as e:
        if not _missing_matplotlib_reported:
            _missing_matplotlib_reported = True
            logger.warning("keras_initdiag: depth-profile images skipped: %s", e)
        return None
    return plots.figure_to_png(fig)


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def escape_markdown(text: str) -> str:
    """Escape text for a markdown table cell as TensorBoard renders it.

    HTML special characters become entities, markdown punctuation (including
    `|`) is backslash-escaped and newlines become spaces.

    Args:
        text: Any text, e.g. a layer name or a flag message.

    Returns:
        The escaped text.

    Example:
    >>> keras_initdiag.tensorboard.escape_markdown("<b> & co")
    '&lt;b&gt; &amp; co'
    """
    out = []
    for char in str(text):
        if char in _HTML_ENTITIES:
            out.append(_HTML_ENTITIES[char])
        elif char in _MARKDOWN_ESCAPED:
            out.append("\\" + char)
        elif char in "\r\n":
            out.append(" ")
        else:
            out.append(char)
    return "".join(out)


def flags_markdown(flags: list[Flag]) -> str:
    """Render flags as a markdown table: kind | layer | value | threshold | message.

    Args:
        flags: The flags of one report.

    Returns:
        The markdown table, or `"No flags"` when `flags` is empty.

    Example:
    >>> print(keras_initdiag.tensorboard.flags_markdown([]))
    No flags
    """
    if not flags:
        return "No flags"
    lines = [
        "| kind | layer | value | threshold | message |",
        "| --- | --- | --- | --- | --- |",
    ]
    for flag in flags:
        cells = (flag.kind, flag.layer, f"{flag.value:.4g}", f"{flag.threshold:.4g}")
        row = [escape_markdown(c) for c in (*cells, flag.message)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
