"""Reading diagnostics back from TensorBoard event files.

Every diagnosis the writer records starts with a string summary holding the
report (layer order, layer facts, loss, flags) as standard JSON (`codec.py`),
followed by the `<stat>/<layer>` scalars. The report carries the dashboard
plugin's metadata (`tensorboard_plugin_initdiag`); versions before the
dashboard wrote it as a text summary, and both are read. `read_reports`
rebuilds reports from those with TensorBoard's own record loader; nothing is
unpickled or evaluated. Truncated or corrupt files, and report records that
do not fit the format, are reported and skipped.
"""

from __future__ import annotations

import logging
import os
from typing import NamedTuple

import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.compat.proto import event_pb2
from tensorboard.util import tensor_util

from keras_initdiag.diagnostics.report import DiagnosticReport
from keras_initdiag.tensorboard.codec import report_from_json
from tensorboard_plugin_initdiag import metadata as dashboard_metadata

logger = logging.getLogger("keras_initdiag")

#: Tag of the summary holding the machine-readable report (JSON).
REPORT_TAG = dashboard_metadata.REPORT_TAG
#: Metadata of the report summary: the dashboard plugin's, as a tensor series.
REPORT_METADATA = dashboard_metadata.create_report_metadata()
# Plugins a report summary may belong to: the dashboard (current), the Text
# plugin (older logs), or none (metadata is only sure to be on a tag's first
# event).
_REPORT_PLUGINS = (
    "",
    dashboard_metadata.PLUGIN_NAME,
    dashboard_metadata.TEXT_PLUGIN_NAME,
)
#: Tag of the markdown flag table.
FLAGS_TAG = "flags"
#: Tag of the probe-batch loss scalar.
LOSS_TAG = dashboard_metadata.LOSS_TAG
#: Tag of the depth-profile image.
DEPTH_PROFILE_TAG = "depth_profile"
#: Title of the custom-scalars category.
LAYOUT_CATEGORY = "keras_initdiag"
#: Prefix of the per-batch gradient norms taken from the real train step.
TRAIN_GRADIENT_TAG = dashboard_metadata.TRAIN_GRADIENT_TAG
#: Prefixes of every per-step series of the real train step.
TRAIN_SERIES_TAGS = dashboard_metadata.TRAIN_SERIES_TAGS
#: Tag of every training step's loss (the in-step path).
TRAIN_LOSS_TAG = dashboard_metadata.TRAIN_LOSS_TAG
#: Prefix of the update-to-weight ratios of the first training steps.
UPDATE_RATIO_TAG = "update_ratio"

# Scalar prefixes written at a report's step that are not its statistics.
_NOT_STATS = (*TRAIN_SERIES_TAGS, LOSS_TAG.partition("/")[0])
# A TFRecord frames each record with a uint64 length, a uint32 CRC of the
# length and a uint32 CRC of the data: 16 bytes around the payload.
_RECORD_OVERHEAD = 16


class ReadProblem(NamedTuple):
    """An event file (or part of one) that could not be read.

    Args:
        path: The event file.
        reason: What went wrong, e.g. a truncated or corrupt record.

    Example:
    >>> problems = []
    >>> reports = keras_initdiag.tensorboard.read_reports("logs/initdiag", problems)
    >>> for problem in problems:
    ...     print(problem.path, problem.reason)
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
    try:
        array = tensor_util.make_ndarray(value.tensor)
    except (TypeError, ValueError) as e:
        raise ValueError(f"the record's tensor cannot be read: {e}") from None
    if array.ndim != 0 or array.dtype.kind != "f":
        return None
    return float(array)


def _is_report(value) -> bool:
    """Whether a summary value is a report record, in the current or older format."""
    return (
        value.tag == REPORT_TAG
        and value.metadata.plugin_data.plugin_name in _REPORT_PLUGINS
    )


def _report_text(value) -> str:
    """The JSON text of a report record; `ValueError` if it holds anything else."""
    try:
        array = tensor_util.make_ndarray(value.tensor)
    except (TypeError, ValueError) as e:
        raise ValueError(f"the record's tensor cannot be read: {e}") from None
    if array.ndim != 0 or not isinstance(array.item(), bytes):
        raise ValueError(
            "the record must be one string. Received: a tensor of dtype "
            f"{array.dtype} and shape {array.shape}"
        )
    return array.item().decode("utf-8")


def _read_file(path: str, problems: list[ReadProblem]) -> dict[int, tuple]:
    """Step -> (wall time, report) of the complete reports in one event file."""
    pending = {}
    for event in _load_events(path, problems):
        for value in event.summary.value:
            if _is_report(value):
                try:
                    report, expected = report_from_json(_report_text(value))
                except ValueError as e:
                    reason = f"step {event.step}: bad report record ({e}); skipped"
                    problems.append(ReadProblem(path, reason))
                    continue
                report.step = int(event.step)
                pending[event.step] = (event.wall_time, report, expected)
            elif event.step in pending:
                stat, _, layer = value.tag.partition("/")
                report = pending[event.step][1]
                number = _scalar(value)
                # Only the report's own statistics: the per-step gradient
                # norms and the loss may share its step but are not part of
                # it. (The update ratios are, in the report of their step.)
                if stat in _NOT_STATS or layer not in report.stats:
                    continue
                if number is not None:
                    report.stats[layer][stat] = number
    complete = {}
    for step, (wall_time, report, expected) in pending.items():
        found = sum(len(s) for s in report.stats.values())
        # More than expected: a file written before the update ratios
        # belonged to their report had them beside it.
        if found >= expected:
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


def find_runs(
    logdir: str | os.PathLike, problems: list[ReadProblem] | None = None
) -> list[str]:
    """Find every run directory below `logdir` that holds diagnostic reports.

    A directory counts when one of its event files starts with a report
    (the writer puts the report JSON first). Only the first few records of
    each event file are read, so other TensorBoard runs beside ours cost
    next to nothing. Works on any file system `tf.io.gfile` knows (`gs://`).

    Args:
        logdir: The TensorBoard log directory to search (recursively).
        problems: A list that receives a `ReadProblem(path, reason)` for every
            event file of a directory that is not a run and whose first
            records could not be read (it may have been one). Defaults to
            `None`: such files are ignored.

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
        unreadable = []
        for path in _event_files(directory):
            events = _load_events(path, unreadable, limit=4)
            if any(_is_report(v) for e in events for v in e.summary.value):
                runs.append(directory)
                break
        else:
            # A run's files are read, and their problems told, by read_reports.
            if problems is not None:
                problems.extend(unreadable)
    return sorted(runs)
