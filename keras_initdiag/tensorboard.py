"""TensorBoard I/O for diagnostic reports: a lazy writer and an event reader.

The writer does I/O only: it turns a `DiagnosticReport` into summaries
(scalars, a custom-scalars layout, a flag table, a depth-profile image and
optional histograms). The reader rebuilds reports from the event files with
TensorBoard's own record loader, so a run can be analyzed later without
pickling anything.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import uuid
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import summary as custom_scalar_summary
from tensorboard.util import tensor_util

from keras_initdiag.diagnostics.report import (
    STAT_NAMES,
    DiagnosticReport,
    Flag,
    LayerInfo,
)

logger = logging.getLogger("keras_initdiag")

#: Tag of the text summary holding the machine-readable report (JSON).
REPORT_TAG = "initdiag/report_json"
#: Tag of the markdown flag table.
FLAGS_TAG = "flags"
#: Tag of the probe-batch loss scalar.
LOSS_TAG = "loss/probe"
#: Tag of the depth-profile image.
DEPTH_PROFILE_TAG = "depth_profile"
#: Title of the custom-scalars category.
LAYOUT_CATEGORY = "keras_initdiag"
#: Prefix of the per-batch gradient norms taken from the real train step.
TRAIN_GRADIENT_TAG = "train_gradient_norm"

_REPORT_FORMAT = 1
# A TFRecord frames each record with a uint64 length, a uint32 CRC of the
# length and a uint32 CRC of the data: 16 bytes around the payload.
_RECORD_OVERHEAD = 16
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
        if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
            raise ValueError(
                "Argument `log_dir` must be a non-empty path. Received: "
                f"log_dir={log_dir!r}"
            )
        self.log_dir = os.fspath(log_dir)
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

        Writes the report JSON (tag `initdiag/report_json`), one scalar per
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
            tf.summary.text(REPORT_TAG, _report_json(report, len(scalars)))
            for tag, value in scalars.items():
                tf.summary.scalar(tag, value)
            if not math.isnan(report.loss):
                tf.summary.scalar(LOSS_TAG, report.loss)
            if not self._layout_written:
                tf.summary.experimental.write_raw_pb(
                    custom_scalar_summary.pb(_layout()).SerializeToString()
                )
                self._layout_written = True
            tf.summary.text(FLAGS_TAG, flags_markdown(report.flags))
            draw = self.depth_profile if depth_profile is None else depth_profile
            image = _depth_profile_image(report) if draw else None
            if image is not None:
                tf.summary.image(DEPTH_PROFILE_TAG, image[np.newaxis])
            for tag, values in (histograms or {}).items():
                tf.summary.histogram(tag, values)

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
                for name, value in values.items():
                    if not math.isnan(value):
                        tf.summary.scalar(f"{prefix}/{name}", value, step=int(step))

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
        for name in (*STAT_NAMES, TRAIN_GRADIENT_TAG, "loss")
    ]
    return layout_pb2.Layout(
        category=[layout_pb2.Category(title=LAYOUT_CATEGORY, chart=charts)]
    )


def _depth_profile_image(report: DiagnosticReport) -> np.ndarray | None:
    """The depth profile as an RGBA uint8 array, or `None` without matplotlib."""
    global _missing_matplotlib_reported
    from keras_initdiag import plots

    try:
        fig = plots.depth_profile_figure(report)
    except ImportError as e:
        if not _missing_matplotlib_reported:
            _missing_matplotlib_reported = True
            logger.warning("keras_initdiag: depth-profile images skipped: %s", e)
        return None
    return tf.io.decode_png(plots.figure_to_png(fig), channels=4).numpy()


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


def _encode_float(value: float) -> float | str:
    """JSON-safe float: non-finite values become "nan", "inf" or "-inf"."""
    value = float(value)
    return value if math.isfinite(value) else str(value)


def _report_json(report: DiagnosticReport, num_scalars: int | None = None) -> str:
    """Serialize everything but the statistics of `report` as JSON.

    The statistics travel as scalars; `num_scalars` records how many were
    written so the reader can tell a complete report from a truncated one.

    Args:
        report: The report to serialize.
        num_scalars: Number of `<stat>/<layer>` scalars written with it.
            Defaults to the number of non-NaN statistics in `report`.

    Returns:
        A JSON string (standard JSON: non-finite floats are strings).
    """
    if num_scalars is None:
        num_scalars = len(_scalar_values(report))
    flags = [
        {
            **dataclasses.asdict(flag),
            "value": _encode_float(flag.value),
            "threshold": _encode_float(flag.threshold),
        }
        for flag in report.flags
    ]
    payload = {
        "format": _REPORT_FORMAT,
        "step": int(report.step),
        "layers": list(report.layers),
        "info": {name: dataclasses.asdict(info) for name, info in report.info.items()},
        "loss": _encode_float(report.loss),
        "flags": flags,
        "num_scalars": num_scalars,
    }
    return json.dumps(payload, ensure_ascii=False)


def _report_from_json(text: str) -> tuple[DiagnosticReport, int]:
    """Rebuild a report without statistics, and the expected scalar count."""
    payload = json.loads(text)
    known = {field.name for field in dataclasses.fields(LayerInfo)}
    info = {}
    for name, fields in payload["info"].items():
        # JSON turns tuples (the only sequences in LayerInfo) into lists; keys
        # from a newer writer that this version does not know are dropped.
        fields = {
            key: tuple(value) if isinstance(value, list) else value
            for key, value in fields.items()
            if key in known
        }
        info[name] = LayerInfo(**fields)
    flags = [
        Flag(**dict(f, value=float(f["value"]), threshold=float(f["threshold"])))
        for f in payload["flags"]
    ]
    report = DiagnosticReport(
        step=int(payload["step"]),
        layers=list(payload["layers"]),
        stats={layer: {} for layer in payload["layers"]},
        flags=flags,
        info=info,
        loss=float(payload["loss"]),
    )
    return report, int(payload["num_scalars"])


class ReadProblem(NamedTuple):
    """An event file (or part of one) that could not be read.

    Args:
        path: The event file.
        reason: What went wrong, e.g. a truncated or corrupt record.
    """

    path: str
    reason: str


def _event_files(run_dir: str) -> list[str]:
    """Event files directly inside `run_dir`, sorted by name."""
    if not tf.io.gfile.isdir(run_dir):
        return []
    names = tf.io.gfile.listdir(run_dir)
    return [os.path.join(run_dir, n) for n in sorted(names) if "tfevents" in n]


def _load_events(path: str, problems: list[ReadProblem], limit: int | None = None):
    """Yield the events of one file with TensorBoard's record loader.

    A file that ends in a partial or corrupt record (TensorBoard's loader stops
    there silently) is detected by comparing the bytes read with the file size,
    and reported in `problems`; the records before that point are kept.
    """
    consumed = 0
    try:
        size = tf.io.gfile.stat(path).length
        loader = event_file_loader.RawEventFileLoader(path)
        for count, record in enumerate(loader.Load()):
            if limit is not None and count >= limit:
                return
            consumed += len(record) + _RECORD_OVERHEAD
            yield event_pb2.Event.FromString(record)
    except (OSError, tf.errors.OpError, DecodeError) as e:
        problems.append(ReadProblem(path, f"unreadable: {type(e).__name__}: {e}"))
        return
    if consumed < size:
        what = (
            "corrupt (no readable record)" if consumed == 0 else "truncated or corrupt"
        )
        problems.append(
            ReadProblem(path, f"{what}: read {consumed} of {size} bytes; rest skipped")
        )


def _scalar(value) -> float | None:
    """The float in a scalar tensor summary value, `None` for anything else."""
    if not value.HasField("tensor"):
        return None
    array = tensor_util.make_ndarray(value.tensor)
    if array.ndim != 0 or array.dtype.kind != "f":
        return None
    return float(array)


def _read_file(path: str, problems: list[ReadProblem]) -> dict[int, tuple]:
    """Step -> (wall time, report) of the complete reports in one event file."""
    pending = {}
    for event in _load_events(path, problems):
        for value in event.summary.value:
            if value.tag == REPORT_TAG:
                text = tensor_util.make_ndarray(value.tensor).item()
                try:
                    report, expected = _report_from_json(text.decode("utf-8"))
                except (ValueError, KeyError, TypeError) as e:
                    reason = f"step {event.step}: bad report JSON ({e!r}); skipped"
                    problems.append(ReadProblem(path, reason))
                    continue
                report.step = int(event.step)
                pending[event.step] = (event.wall_time, report, expected)
            elif event.step in pending and value.tag != LOSS_TAG:
                stat, _, layer = value.tag.partition("/")
                report = pending[event.step][1]
                number = _scalar(value)
                if layer in report.stats and number is not None:
                    report.stats[layer][stat] = number
    complete = {}
    for step, (wall_time, report, expected) in pending.items():
        found = sum(len(s) for s in report.stats.values())
        if found == expected:
            complete[step] = (wall_time, report)
        else:
            reason = f"step {step}: {found} of {expected} statistics found; skipped"
            problems.append(ReadProblem(path, reason))
    return complete


def read_reports(
    run_dir: str | os.PathLike, problems: list[ReadProblem] | None = None
) -> list[DiagnosticReport]:
    """Rebuild the diagnostic reports written to one run directory.

    Reads every event file in `run_dir` (e.g. `logs/initdiag`) with
    TensorBoard's record loader. Nothing is unpickled or evaluated: the layer
    facts and flags come from the report's JSON text, the statistics from the
    scalars. A corrupt or truncated file, or a report whose statistics are
    incomplete, is skipped and reported; when a step was written more than
    once, the latest write wins.

    Args:
        run_dir: The run directory holding the event files.
        problems: A list that receives a `ReadProblem(path, reason)` for every
            file or report that was skipped. Defaults to `None`: problems are
            logged as warnings on the `"keras_initdiag"` logger.

    Returns:
        The reports sorted by step. Statistics that were NaN ("does not
        apply") when written are absent from `stats[layer]`.

    Raises:
        ValueError: If `run_dir` is not an existing directory.

    Example:
    >>> problems = []
    >>> reports = keras_initdiag.tensorboard.read_reports("logs/initdiag", problems)
    >>> [r.step for r in reports]
    [0, 100, 200]
    """
    run_dir = os.fspath(run_dir)
    if not tf.io.gfile.isdir(run_dir):
        raise ValueError(
            "Argument `run_dir` must be an existing directory, e.g. "
            f"'logs/initdiag'. Received: run_dir={run_dir!r}"
        )
    collected = [] if problems is None else problems
    start = len(collected)
    latest = {}
    for path in _event_files(run_dir):
        for step, (wall_time, report) in _read_file(path, collected).items():
            if step not in latest or wall_time >= latest[step][0]:
                latest[step] = (wall_time, report)
    if problems is None:
        for problem in collected[start:]:
            logger.warning("keras_initdiag: skipped %s: %s", *problem)
    return [latest[step][1] for step in sorted(latest)]


def find_runs(logdir: str | os.PathLike) -> list[str]:
    """Find every run directory below `logdir` that holds diagnostic reports.

    A directory counts when one of its event files starts with a report
    (the writer puts the report JSON first). Unreadable files are ignored
    here; `read_reports` reports them.

    Args:
        logdir: The TensorBoard log directory to search (recursively).

    Returns:
        The run directories, sorted.

    Raises:
        ValueError: If `logdir` is not an existing directory.

    Example:
    >>> keras_initdiag.tensorboard.find_runs("logs")
    ['logs/relu_he/initdiag', 'logs/tanh_small/initdiag']
    """
    logdir = os.fspath(logdir)
    if not tf.io.gfile.isdir(logdir):
        raise ValueError(
            "Argument `logdir` must be an existing directory. Received: "
            f"logdir={logdir!r}"
        )
    runs = []
    for directory, _, _ in tf.io.gfile.walk(logdir):
        for path in _event_files(directory):
            events = _load_events(path, [], limit=4)
            if any(v.tag == REPORT_TAG for e in events for v in e.summary.value):
                runs.append(directory)
                break
    return sorted(runs)
