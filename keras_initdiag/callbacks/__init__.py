"""`InitDiagnostics`: schedules diagnoses during `fit` and acts on the flags.

The callback only orchestrates: the probe computes, the rules judge, the
writer writes. It diagnoses at step 0 in `on_train_begin` (the state the
initializer produced), then on schedule.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_initdiag.diagnostics import rules
from keras_initdiag.diagnostics.batches import (
    as_batch,
    check_fits,
    restructure,
    split_probe_data,
    synthetic_inputs,
)
from keras_initdiag.diagnostics.engine import Diagnoser, ProbeInputError
from keras_initdiag.diagnostics.report import DiagnosticReport, Flag
from keras_initdiag.diagnostics.train_grads import GradientRecorder
from keras_initdiag.tensorboard import TRAIN_GRADIENT_TAG, DiagnosticsWriter

ON_FLAG = ("warn", "stop", "raise", "ignore")
ADVISORY = rules.ADVISORY


class InitDiagnosticsWarning(UserWarning):
    """A flag raised by `InitDiagnostics` (or a diagnostics failure)."""


class FlagError(RuntimeError):
    """Raised by `InitDiagnostics(on_flag="raise")`; `flags` lists the causes."""

    def __init__(self, flags: list[Flag]):
        self.flags = list(flags)
        super().__init__("\n".join(str(flag) for flag in self.flags))


class InitDiagnostics(keras.callbacks.Callback):
    """Diagnose every layer's signal and gradients during `fit`, from step 0.

    At the start of training (step 0, before any update) and then on schedule
    the callback runs one compiled probe on a fixed batch: per layer it
    measures activation variance and mean, the RMS of the back-propagated
    gradient, weight variance, weight-gradient norms, and the fractions of
    dead, saturated and duplicate units. It flags symmetry, vanishing,
    exploding, dead units, saturation, NaN/Inf and initializer/activation
    mismatch, naming the layer, and writes everything to TensorBoard under
    `log_dir/initdiag` (scalars `<stat>/<layer>`, a custom-scalars layout, the
    flag table, a depth-profile image, optional histograms).

    A failure inside the diagnostics never stops training: it warns once and
    training goes on (unless `on_flag="raise"`).

    Args:
        log_dir: TensorBoard log directory; events go to `log_dir/initdiag`,
            so it can be shared with `keras.callbacks.TensorBoard`. `None`
            computes and flags without writing. Defaults to `"logs/initdiag"`.
        probe_data: The fixed probe batch, `x` or `(x, y)`. Gradient
            statistics need `y`. Keep it small (32 to 256 samples). Defaults
            to `None`: standard-normal inputs shaped like the model's, forward
            statistics only, with a warning.
        update_freq: `"epoch"` (at step 0 and after every epoch) or a positive
            int: every that many training batches. Defaults to `"epoch"`.
        layers: Names of the layers to tap. Defaults to `None` (all).
        thresholds: `keras_initdiag.Thresholds`. Defaults to `None` (defaults).
        on_flag: `"warn"` (Python warnings, once per kind and layer), `"stop"`
            (warn, then `model.stop_training = True`), `"raise"` (raise
            `FlagError`) or `"ignore"`. Advisory flags (`init_mismatch`) only
            warn. Defaults to `"warn"`.
        histograms: Also write histograms of weights, activations and
            gradients (copies those tensors to the host). Defaults to `False`.
        verbose: 0 silent, 1 one line per diagnosis with flags, 2 the full
            table. Defaults to `1`.
        batch_gradients: Also record every batch's per-layer gradient norms
            from the real training step (no extra pass: taken from the
            gradients the optimizer applies, unscaled under mixed precision),
            as `train_gradient_norm/<layer>`. Retraces the train function once.
            Not yet supported under `tf.distribute` strategies (it warns and
            stays off). Defaults to `False`.

    Attributes:
        reports: One `DiagnosticReport` per diagnosis, in order (kept across
            `fit` calls, like the event files).
        flags: Every flag raised so far.
        batch_gradient_norms: `(step, {layer: norm})` per recorded batch, with
            `batch_gradients=True`.

    Example:
    >>> callback = keras_initdiag.InitDiagnostics(
    ...     log_dir="logs", probe_data=(x[:128], y[:128]))
    >>> model.fit(x, y, epochs=5, callbacks=[callback])
    >>> [flag.kind for flag in callback.flags]
    """

    def __init__(
        self,
        log_dir: str | os.PathLike | None = "logs/initdiag",
        probe_data=None,
        update_freq: str | int = "epoch",
        layers: Sequence[str] | None = None,
        thresholds: rules.Thresholds | None = None,
        on_flag: str = "warn",
        histograms: bool = False,
        verbose: int = 1,
        batch_gradients: bool = False,
    ):
        super().__init__()
        if not (
            update_freq == "epoch"
            or (isinstance(update_freq, int) and not isinstance(update_freq, bool))
            and update_freq > 0
        ):
            raise ValueError(
                'Argument `update_freq` must be "epoch" or a positive int (a number '
                f"of batches). Received: update_freq={update_freq!r}"
            )
        if on_flag not in ON_FLAG:
            raise ValueError(
                f"Argument `on_flag` must be one of {list(ON_FLAG)}. "
                f"Received: on_flag={on_flag!r}"
            )
        if thresholds is not None and not isinstance(thresholds, rules.Thresholds):
            raise TypeError(
                "Argument `thresholds` must be a `keras_initdiag.Thresholds` or None. "
                f"Received: thresholds={thresholds!r}"
            )
        if not isinstance(batch_gradients, bool):
            raise TypeError(
                "Argument `batch_gradients` must be a bool. "
                f"Received: batch_gradients={batch_gradients!r}"
            )
        if not isinstance(histograms, bool):
            raise TypeError(
                "Argument `histograms` must be a bool. "
                f"Received: histograms={histograms!r}"
            )
        if verbose not in (0, 1, 2) or isinstance(verbose, bool):
            raise ValueError(
                f"Argument `verbose` must be 0, 1 or 2. Received: verbose={verbose!r}"
            )
        if layers is not None and (
            isinstance(layers, str) or not isinstance(layers, Sequence)
        ):
            raise TypeError(
                "Argument `layers` must be a list of layer names or None. "
                f"Received: layers={layers!r}"
            )
        if log_dir is not None and (
            not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir)
        ):
            raise ValueError(
                "Argument `log_dir` must be a non-empty path or None. "
                f"Received: log_dir={log_dir!r}"
            )
        self.log_dir = log_dir
        self.probe_x, self.probe_y = split_probe_data(probe_data)
        self.update_freq = update_freq
        self.layers = None if layers is None else list(layers)
        self.thresholds = thresholds
        self.on_flag = on_flag
        self.histograms = histograms
        self.verbose = verbose
        self.batch_gradients = batch_gradients
        self.batch_gradient_norms: list[tuple[int, dict[str, float]]] = []
        self._recorder: GradientRecorder | None = None
        self._series: list = []  # recorded norms not yet written
        self.reports: list[DiagnosticReport] = []
        self.flags: list[Flag] = []
        self._writer = None if log_dir is None else DiagnosticsWriter(log_dir)
        self._diagnoser: Diagnoser | None = None
        self._inputs = None
        self._warned: set = set()
        self._printed: set = set()
        self._failure_warned = False
        self._last_step: int | None = None
        self._full_due = self._image_due = True
        self._image_step: int | None = None  # step of the last image drawn

    @property
    def diagnoser(self) -> Diagnoser | None:
        """The `Diagnoser` (taps, compiled probe, rules) once `fit` started.

        Its `probe.traces` counts how often the diagnosis was traced (1 per
        model); `skipped` lists the layers whose outputs are not tapped.
        """
        return self._diagnoser

    # -- lifecycle -----------------------------------------------------------

    def on_train_begin(self, logs=None):
        """Validate everything (before any step), then diagnose at step 0."""
        self._failure_warned = False
        self._full_due = self._image_due = True
        self._prepare()
        self._diagnose(check_inputs=True)
        if self.batch_gradients:
            self._start_recorder()

    def on_train_batch_end(self, batch, logs=None):
        """Collect the step's gradient norms; diagnose on an int schedule."""
        if self._recorder is not None:
            record = self._recorder.read()
            if record is not None:
                self.batch_gradient_norms.append(record)
                self._series.append(record)
        if self.update_freq == "epoch" or self._diagnoser is None:
            return
        step = self._step()
        last = self._last_step if self._last_step is not None else -1
        if step // self.update_freq > max(last, 0) // self.update_freq or last < 0:
            self._diagnose(step)

    def on_epoch_end(self, epoch, logs=None):
        """With `update_freq="epoch"`, diagnose after every epoch."""
        self._full_due = True
        if self.update_freq == "epoch" and self._diagnoser is not None:
            self._diagnose()
        self._write_series()

    def on_train_end(self, logs=None):
        """Diagnose the final state, then flush and close the event file.

        The depth-profile image (a few tenths of a second of matplotlib) is
        drawn at step 0 and here; the scalars show every diagnosis. A later
        `fit` reopens the file.
        """
        if self._diagnoser is not None:
            self._image_due = True
            self._diagnose()  # Once: skipped when this step was diagnosed.
        self._write_series()
        if self._writer is not None:
            self._writer.close()

    def _start_recorder(self):
        if self._recorder is None or self._recorder.model is not self.model:
            reason = GradientRecorder.supported(self.model)
            if reason is not None:
                self._warn_once(
                    "batch-gradients",
                    f"InitDiagnostics: batch_gradients=True stays off: {reason}.",
                )
                return
            self._recorder = GradientRecorder(self.model, self._diagnoser.tapset.taps)
        self._recorder.attach()

    def _write_series(self):
        if self._series and self._writer is not None and _is_chief(self.model):
            self._writer.write_series(TRAIN_GRADIENT_TAG, self._series)
            self._writer.flush()
        self._series = []

    # -- steps ---------------------------------------------------------------

    def _prepare(self):
        model = self.model
        if self._diagnoser is None or self._diagnoser.model is not model:
            self._diagnoser = Diagnoser(
                model, layers=self.layers, histograms=self.histograms
            )
            self._inputs = None
            if self._diagnoser.tapset.view is None and self._diagnoser.skipped:
                self._warn_once(
                    "no-graph",
                    f"InitDiagnostics: model {model.name!r} exposes no functional "
                    "graph (subclassed model), so only weight and gradient "
                    "statistics are recorded; activation statistics need a "
                    "Sequential or functional model.",
                )
        if self._inputs is None:
            x = self.probe_x
            if x is None:
                x = synthetic_inputs(model)
                self._warn_once(
                    "no-probe",
                    "InitDiagnostics: no `probe_data` given, so standard-normal "
                    "inputs are used and gradient statistics are skipped. Pass "
                    "`probe_data=(x, y)` with a small batch of real data.",
                )
            xs = as_batch(x, "probe_data")
            ys = as_batch(self.probe_y, "probe_data")
            try:
                check_fits(model, xs, ys)
            except ValueError as error:
                raise ValueError(
                    f"Argument `probe_data` does not fit model {model.name!r}: {error}"
                ) from None
            self._inputs = (
                restructure(x, xs, tensors=True),
                None
                if self.probe_y is None
                else restructure(self.probe_y, ys, tensors=True),
            )
        if self._writer is not None and _is_chief(model):
            self._writer.check_writable()

    def _writes_events(self) -> bool:
        return self._writer is not None and _is_chief(self.model)

    def _step(self) -> int:
        optimizer = getattr(self.model, "optimizer", None)
        iterations = getattr(optimizer, "iterations", None)
        return 0 if iterations is None else int(np.asarray(iterations))

    def _diagnose(self, step: int | None = None, check_inputs: bool = False):
        """Diagnose at `step`; `check_inputs` raises if the model rejects the batch.

        `check_fits` cannot see a subclassed model's input shape, so the first
        diagnosis of a `fit` lets the model itself reject `probe_data`, before
        any training step, instead of warning and going on.
        """
        step = self._step() if step is None else step
        if step == self._last_step:  # Already diagnosed (e.g. a resumed fit).
            if self._image_due and self._image_step != step and self.reports:
                if self._writes_events():
                    self._writer.write_depth_profile(self.reports[-1])
                    self._writer.flush()
                self._image_step = step
            self._image_due = False
            return
        self._last_step = step
        try:
            # Duplicate-unit searches and the depth-profile image are the
            # costliest parts: run them at step 0 and once per epoch only.
            report = self._diagnoser.measure(
                *self._inputs, step=step, validate=check_inputs, full=self._full_due
            )
            report.flags = rules.judge(report, self.thresholds)
            if self._writes_events():
                self._writer.write(
                    report,
                    self._diagnoser.last_histograms or None,
                    depth_profile=self._image_due,
                )
                if self._image_due:
                    self._image_step = step
                self._writer.flush()
            self._full_due = self._image_due = False
        except Exception as error:  # noqa: BLE001 - never break the user's fit.
            if check_inputs and isinstance(error, ProbeInputError):
                self._last_step = None
                raise ValueError(
                    f"Argument `probe_data` does not fit model {self.model.name!r}: "
                    f"{error}"
                ) from error
            if self.on_flag == "raise":
                raise
            if not self._failure_warned:
                self._failure_warned = True
                warnings.warn(
                    f"InitDiagnostics failed at step {step} and will keep trying "
                    f"quietly; training goes on. {type(error).__name__}: {error}",
                    InitDiagnosticsWarning,
                    stacklevel=2,
                )
            return
        self.reports.append(report)
        self.flags.extend(report.flags)
        self._report(report)
        self._act(report.flags)

    def _report(self, report: DiagnosticReport):
        if self.verbose == 2:
            print(report.table())
            return
        serious = sorted(
            {(f.kind, f.layer) for f in report.flags if f.kind not in ADVISORY}
        )
        new = set(serious) - self._printed
        if self.verbose == 1 and (new or len(self.reports) == 1):
            self._printed |= new
            kinds = ", ".join(f"{kind} at {layer}" for kind, layer in serious)
            advisory = sum(f.kind in ADVISORY for f in report.flags)
            line = f"InitDiagnostics step {report.step}: " + (kinds or "no problems")
            if advisory:
                line += f" ({advisory} advisory: see the warnings or TensorBoard)"
            print(line)

    def _act(self, flags: list[Flag]):
        if self.on_flag == "ignore" or not flags:
            return
        serious = [f for f in flags if f.kind not in ADVISORY]
        if self.on_flag == "raise" and serious:
            raise FlagError(serious)
        for flag in serious:
            self._warn_once((flag.kind, flag.layer), str(flag))
        advisory = [f for f in flags if f.kind in ADVISORY]
        fresh = [f for f in advisory if (f.kind, f.layer) not in self._warned]
        if fresh:
            self._warned |= {(f.kind, f.layer) for f in fresh}
            warnings.warn(
                f"{len(fresh)} advisory flag(s):\n" + "\n".join(str(f) for f in fresh),
                InitDiagnosticsWarning,
                stacklevel=2,
            )
        if self.on_flag == "stop" and serious:
            self.model.stop_training = True

    def _warn_once(self, key, message: str):
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, InitDiagnosticsWarning, stacklevel=3)


def _is_chief(model: keras.Model) -> bool:
    """Only the chief of a multi-worker run writes events."""
    strategy = (
        getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
    )
    return bool(getattr(strategy.extended, "should_checkpoint", True))
