"""Where the callback's diagnoses go: TensorBoard events, images, per-step norms.

The sink writes only on the chief of a multi-worker run, flushes after every
diagnosis (so an interrupted run keeps its events), and draws the
depth-profile images on a background thread: matplotlib takes a few tenths
of a second per image, which would otherwise stall training. Images are
written when they are ready, and at the latest when the sink is flushed at
the end of training. Per-step series are buffered and written at every
flush, and whenever `SERIES_RECORDS` of them are waiting, so the buffer
stays bounded however long an epoch is.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import re

import keras
import tensorflow as tf

from keras_initdiag.diagnostics.report import DiagnosticReport
from keras_initdiag.diagnostics.train_grads import COLUMNS
from keras_initdiag.tensorboard.events import (
    DEPTH_PROFILE_TAG,
    TRAIN_GRADIENT_TAG,
    TRAIN_LOSS_TAG,
    TRAIN_SERIES_TAGS,
)
from keras_initdiag.tensorboard.writer import DiagnosticsWriter, depth_profile_png

logger = logging.getLogger("keras_initdiag")

#: Per-step records (`(step, {layer: value})`) the sink buffers before it
#: writes them, without waiting for the epoch's end. For 200 layers that is
#: about 7 MB of Python objects, written in about 1 s (1 ms per record, the
#: same cost as before, no longer all at the epoch's end).
SERIES_RECORDS = 1_000


def is_chief(model: keras.Model) -> bool:
    """Only the chief of a multi-worker run writes events."""
    strategy = (
        getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
    )
    return bool(getattr(strategy.extended, "should_checkpoint", True))


class Sink:
    """TensorBoard output of one callback.

    Args:
        log_dir: The log directory (events go to `log_dir/initdiag`), or
            `None` to write nothing.

    Example:
    >>> sink = Sink("logs")
    >>> sink.write(model, report, image=True)
    >>> sink.close()
    """

    def __init__(self, log_dir: str | os.PathLike | None):
        self.writer = None if log_dir is None else DiagnosticsWriter(log_dir)
        self._runs = {"initdiag"}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: list = []
        self._series: list = []
        self.images = 0

    def is_writer(self, model: keras.Model) -> bool:
        """Whether this process writes `model`'s events (chief, with a log dir).

        Example:
        >>> Sink(None).is_writer(model)
        False
        """
        return self.writer is not None and is_chief(model)

    def check(self, model: keras.Model) -> None:
        """Raise `ValueError` now if the log directory cannot be written."""
        if self.is_writer(model):
            self.writer.check_writable()

    def write(
        self,
        model: keras.Model,
        report: DiagnosticReport,
        histograms: dict | None = None,
        image: bool = False,
    ) -> None:
        """Write one diagnosis (its image, if asked, once it is drawn)."""
        if not self.is_writer(model):
            return
        self.writer.write(report, histograms or None, depth_profile=False)
        if image:
            self._draw(report)
        self.flush()

    def write_image(self, model: keras.Model, report: DiagnosticReport) -> None:
        """Draw and write the depth profile of an already written report."""
        if self.is_writer(model):
            self._draw(report)
            self.flush()

    def add_series(self, records: list, prefix: str = TRAIN_GRADIENT_TAG) -> None:
        """Buffer per-step values `(step, {layer: value})` as `<prefix>/<layer>`.

        They are written at the next flush, or as soon as `SERIES_RECORDS`
        records are waiting. Nothing is kept without a log directory.
        """
        if self.writer is None:
            return
        self._series.extend((prefix, step, values) for step, values in records)
        if len(self._series) >= SERIES_RECORDS:
            self._write_series()
            self.writer.flush()

    def add_steps(self, model: keras.Model, read: dict) -> None:
        """Buffer the in-step statistics `GradientRecorder.read` returned.

        On the chief only: each per-layer column as `train_<column>/<layer>`,
        the losses as `loss/train`.
        """
        if not (read and self.is_writer(model)):
            return
        for tag, column in zip(TRAIN_SERIES_TAGS, COLUMNS):
            self.add_series(read[column], prefix=tag)
        prefix, _, name = TRAIN_LOSS_TAG.partition("/")
        self.add_series([(s, {name: v[""]}) for s, v in read["loss"]], prefix=prefix)

    def flush(self, wait: bool = False) -> None:
        """Write ready images and buffered norms, then flush the event file.

        Args:
            wait: Wait for images still being drawn. Defaults to `False`.
        """
        if self.writer is None:
            self._series = []
            return
        still = []
        for future, step in self._pending:
            if not (wait or future.done()):
                still.append((future, step))
                continue
            try:
                png = future.result()
            except Exception as error:  # noqa: BLE001 - an image is optional.
                logger.warning("keras_initdiag: depth-profile image skipped: %s", error)
                continue
            self.writer.write_png(DEPTH_PROFILE_TAG, png, step)
            self.images += png is not None
        self._pending = still
        self._write_series()
        self.writer.flush()

    def _write_series(self) -> None:
        """Write the buffered per-step records, one prefix at a time."""
        for prefix in dict.fromkeys(p for p, _, _ in self._series):
            records = [(st, v) for p, st, v in self._series if p == prefix]
            self.writer.write_series(prefix, records)
        self._series = []

    def close(self) -> None:
        """Write everything pending and close the event file (idempotent)."""
        if self.writer is not None:
            self.flush(wait=True)
            self.writer.close()

    def follow(self, model: keras.Model) -> str | None:
        """Send the events of another model than before to a run of its own.

        The first model a callback writes for keeps `log_dir/initdiag`; each
        later one gets `log_dir/initdiag_<model name>` (with a number if that
        name was used), so the reports of two models never share a run.

        Returns:
            The new run directory, or None when nothing is written.
        """
        if self.writer is None:
            return None
        self.close()
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", model.name) or "model"
        subdir, number = f"initdiag_{name}", 1
        while subdir in self._runs:
            number += 1
            subdir = f"initdiag_{name}_{number}"
        self._runs.add(subdir)
        self.writer = DiagnosticsWriter(self.writer.log_dir, subdir=subdir)
        return self.writer.run_dir

    def _draw(self, report: DiagnosticReport) -> None:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="initdiag-image"
            )
        self._pending.append(
            (self._pool.submit(depth_profile_png, report), report.step)
        )
