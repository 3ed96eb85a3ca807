"""`InitDiagnostics`: diagnoses during `fit`, and acts on the flags.

The callback only wires parts together, each with one role:

- `schedule.Schedule`: which step diagnoses, which diagnosis is full, when
  images are drawn (pure Python);
- `keras_initdiag.diagnostics.engine.Diagnoser`: measures (the probe);
- `keras_initdiag.diagnostics.rules.judge`: flags;
- `sink.Sink`: writes TensorBoard events (images off the training thread);
- `actor.Actor`: warns, stops or raises; prints;
- `binding.Binding`: the parts of the model it is bound to (probe, inputs,
  gradient recorder, update tracker, the early watch);
- `history.History`: what stays in memory, bounded.

Its whole lifecycle is `InitDiagnostics`'s methods below: `on_train_begin`
(bind to the model, validate, diagnose the current step), the batch and
epoch ends (diagnose on schedule), `on_train_end` (final diagnosis, flush,
close), and `_shutdown`, which every exit path this callback controls goes
through (its own `FlagError` included) before anything propagates.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from time import perf_counter as now

import keras

from keras_initdiag import _checks
from keras_initdiag.callbacks.actor import ON_FLAG as ON_FLAG
from keras_initdiag.callbacks.actor import Actor
from keras_initdiag.callbacks.actor import FlagError as FlagError
from keras_initdiag.callbacks.actor import (
    InitDiagnosticsWarning as InitDiagnosticsWarning,
)
from keras_initdiag.callbacks.binding import Binding, optimizer_step
from keras_initdiag.callbacks.early import fit_budget
from keras_initdiag.callbacks.history import History
from keras_initdiag.callbacks.schedule import Schedule
from keras_initdiag.callbacks.sink import Sink
from keras_initdiag.callbacks.summary import log_summary
from keras_initdiag.diagnostics import rules
from keras_initdiag.diagnostics.batches import split_probe_data
from keras_initdiag.diagnostics.engine import Diagnoser, ProbeInputError
from keras_initdiag.diagnostics.report import DiagnosticReport, Flag

#: Flag kinds that are advice, never a reason to stop or raise.
ADVISORY = rules.ADVISORY


class InitDiagnostics(keras.callbacks.Callback):
    """Diagnose every layer's signal and gradients during `fit`, from step 0.

    At the start of training (step 0, before any update) and then on schedule
    the callback runs one compiled probe on a fixed batch, as `fit` runs the
    model (training mode, statelessly: no variable changes). Per layer it
    measures activation variance, mean and gain, the RMS of the
    back-propagated gradient, weight variance, weight-gradient norms, and
    the fractions of dead, saturated and duplicate units. It flags symmetry,
    vanishing, exploding, dead units, saturation, NaN/Inf and
    initializer/activation mismatch, naming the layer, and writes everything
    to TensorBoard under `log_dir/initdiag` (scalars `<stat>/<layer>`, a
    custom-scalars layout, the flag table, and optionally histograms and
    depth-profile images).

    A failure inside the diagnostics never stops training: it warns once and
    training goes on. Only a `probe_data` the model rejects stops `fit`
    before its first step, with a `ValueError`.

    Args:
        log_dir: TensorBoard log directory; events go to `log_dir/initdiag`,
            so it can be shared with `keras.callbacks.TensorBoard`. `None`
            computes and flags without writing. Defaults to `"logs"`.
        probe_data: The fixed probe batch, `x` or `(x, y)`. Gradient
            statistics need `y`. Keep it small (32 to 256 samples). Defaults
            to `None`: standard-normal float inputs (and random token ids
            for inputs that feed an `Embedding`), forward statistics only,
            with a warning.
        update_freq: `"auto"` (as `"epoch"`, but an epoch end is diagnosed
            only while the periodic diagnoses stay within 2% of the
            training's wall time: on short epochs, not every one),
            `"epoch"` (at step 0, after every epoch and at the end of
            training) or a positive int: every that many training batches.
            Defaults to `"auto"`.
        layers: Names of the layers to report. Defaults to `None` (all).
        thresholds: `keras_initdiag.Thresholds`. Defaults to `None` (defaults).
        on_flag: `"warn"` (Python warnings, once per kind and layer), `"stop"`
            (warn, then `model.stop_training = True`), `"raise"` (raise
            `FlagError`) or `"ignore"`. Advisory flags only warn. Defaults
            to `"warn"`.
        histograms: Also write histograms of weights, activations and
            gradients (copies those tensors to the host). Defaults to `False`.
        depth_profile: Also write the depth-profile image (the statistics
            against depth, drawn with matplotlib off the training thread) at
            the first diagnosis of each `fit` and at the end of training; the
            initdiag dashboard draws the same profile at every step without
            it. Costs about 0.25 s of CPU per image. Defaults to `False`, as
            Keras's `TensorBoard(write_images=False)`.
        verbose: 0 silent, 1 one line per diagnosis with new flags, 2 the full
            table. Defaults to `1`.
        batch_gradients: Also record every batch's per-layer gradient norms
            from the real training step, as `train_gradient_norm/<layer>`.
            Defaults to `False`.
        training: `True` measures the model as `fit` runs it (batch
            statistics, dropout on with a fixed seed); `False` as `predict`
            does. Defaults to `True`.
        budget: Optimizer steps the whole training will take: the early
            verdict judges whether the run trains within them (a slow
            starter may need 480 steps). Defaults to `None`: from `fit`, the
            step it starts at plus its remaining epochs times its steps per
            epoch; with steps per epoch unknown (a dataset of unknown
            length), judged as `verdict.CALIBRATION_BUDGET` (160) steps.
        risk_threshold: The risk in (0, 1] at which the early verdict calls
            the run failing. Higher stops fewer runs. Lower catches more
            runs that learn too slowly and stops more that would have
            trained, published models among them: at 0.5, 36 of 128 zoo
            and demo runs that train, against 5 at the default
            (BENCHMARKS.md, "The twenty-first held-out grid"). Defaults to
            `None`: the fitted `verdict.RISK_THRESHOLD` (0.848), at which
            at least 97% of the runs it called failing had failed, in every
            family of the grids it was fitted on (0.91 on BatchNorm MLPs
            with each grid left out). Fixed at construction.

    Attributes:
        reports: The kept `DiagnosticReport`s of the current model, in step
            order: the first one, those with flags not seen before, and the
            latest 100 (memory stays bounded over long runs; the event files
            have every diagnosis). A callback moved to another model starts
            over.
        flags: The first and the latest flag of each kind and layer.
        batch_gradient_norms: `(step, {layer: norm})` of the latest 10,000
            recorded batches, with `batch_gradients=True`.
        update_ratios: `{layer: ratio}`: `||W_new - W_old|| / ||W_old||` per
            step, median of the first 3 steps (`update_ratio/<layer>`).
        verdict: The early verdict (`Verdict`) once the first
            `verdict.WATCH_STEPS` steps after any warmup were watched: will
            the run train? A failing one is a "verdict" flag. Until then,
            step-0 flags of kinds found uncertain at step 0 are pending:
            shown and logged, not acted on.
        early_steps: What the verdict read (`verdict.EarlySteps`), None
            until the verdict is given.

    Example:
    >>> callback = keras_initdiag.InitDiagnostics(
    ...     log_dir="logs", probe_data=(x[:128], y[:128]))
    >>> model.fit(x, y, epochs=5, callbacks=[callback])
    >>> [flag.kind for flag in callback.flags]
    """

    def __init__(
        self,
        log_dir: str | os.PathLike | None = "logs",
        probe_data=None,
        update_freq: str | int = "auto",
        layers: Sequence[str] | None = None,
        thresholds: rules.Thresholds | None = None,
        on_flag: str = "warn",
        histograms: bool = False,
        depth_profile: bool = False,
        verbose: int = 1,
        batch_gradients: bool = False,
        training: bool = True,
        budget: int | None = None,
        risk_threshold: float | None = None,
    ):
        super().__init__()
        self.update_freq = _checks.frequency("update_freq", update_freq)
        self.on_flag = _checks.choice("on_flag", on_flag, ON_FLAG)
        self.thresholds = rules.check_thresholds(thresholds)
        self.batch_gradients = _checks.boolean("batch_gradients", batch_gradients)
        self.histograms = _checks.boolean("histograms", histograms)
        self.depth_profile = _checks.boolean("depth_profile", depth_profile)
        self.training = _checks.boolean("training", training)
        self.budget = None if budget is None else _checks.integer("budget", budget, 1)
        self.risk_threshold = (
            None
            if risk_threshold is None
            else _checks.fraction("risk_threshold", risk_threshold)
        )
        self.verbose = _checks.verbose(verbose)
        self.layers = _checks.names("layers", layers)
        self.log_dir = _checks.path("log_dir", log_dir, optional=True)
        self.probe_x, self.probe_y = split_probe_data(probe_data)
        self.schedule = Schedule(self.update_freq)
        self.sink = Sink(self.log_dir)
        self.actor = Actor(self.on_flag, self.verbose)
        self.history = History()
        self.binding = Binding(
            self.layers,
            self.histograms,
            self.training,
            self.probe_x,
            self.probe_y,
            self.risk_threshold,
        )
        self._deferred = False  # bind after the first step (unbuilt model)
        self._fit_start = 0  # the step the current fit started at
        self._fit_budget: int | None = None  # its budget (`fit_budget`)
        self._epoch_seen = False  # whether its first epoch began

    @property
    def reports(self) -> list[DiagnosticReport]:
        """The kept reports (see the class docstring)."""
        return self.history.reports

    @property
    def flags(self) -> list[Flag]:
        """The first and the latest flag of each kind and layer."""
        return self.history.flags

    @property
    def batch_gradient_norms(self) -> list[tuple[int, dict[str, float]]]:
        """`(step, {layer: norm})` of the latest recorded batches."""
        return list(self.history.norms)

    @property
    def step_statistics(self) -> dict:
        """In-step statistics of the latest steps (`batch_gradients=True`).

        `{"gradient_norm" | "weight_norm" | "update_ratio" | "update_norm" |
        "learning_rate" | "loss": [(step, {layer: value})]}`: each layer's
        gradient norm, main weight norm after the step, relative update and
        update norm, and the step's learning rate and loss (under `""`).
        """
        return self.history.steps.as_lists()

    @property
    def diagnoser(self) -> Diagnoser | None:
        """The `Diagnoser` (taps, compiled probe) once `fit` started.

        Its `probe.traces` counts how often the diagnosis was traced (1 per
        model); `skipped` lists the layers whose outputs are not measured.
        """
        return self.binding.diagnoser

    @property
    def verdict(self):
        """The early verdict, None until given (see the class docstring)."""
        watch = self.binding.watch
        return None if watch is None else watch.verdict

    @property
    def early_steps(self):
        """What the early verdict read (`verdict.EarlySteps`).

        The watched steps' losses, learning rates and relative updates, the
        step-0 flags and which of them waited; None until the verdict is
        given. `keras_initdiag.diagnostics.verdict.features` of it equals
        `callback.verdict.features`.
        """
        watch = self.binding.watch
        return None if watch is None else watch.judged

    @property
    def update_ratios(self) -> dict[str, float]:
        """Each layer's update ratio over the first steps (see the class)."""
        return self.binding.update_ratios

    # -- lifecycle -----------------------------------------------------------

    def on_train_begin(self, logs=None):
        """Bind to the model, validate everything, then diagnose this step.

        A subclassed model that Keras builds only at its first step, with no
        `probe_data` to build it on, is bound after that step instead.
        """
        self.actor.begin_fit()
        self._fit_start, self._epoch_seen = self._step(), False
        # Until the first epoch says (`fit(initial_epoch=...)`), from epoch 0:
        # the step-0 flags' pending decision uses it.
        self._fit_budget = fit_budget(self.params, self._fit_start, 0)
        note = self.binding.deferred(self.model)
        self._deferred = bool(note)
        if note:
            self.actor.warn_once("deferred", note)
            return
        self._begin()

    def _begin(self):
        self._bind()
        self.schedule.begin_fit()
        self.binding.start_watching(self.model, self._step())
        self._give_budget()
        self._diagnose(first=True)
        if self.batch_gradients:
            self.binding.start_recorder(self.model, self.actor.warn_once)

    def on_train_batch_begin(self, batch, logs=None):
        """Arm the recording train function; sample weights for the watch."""
        if self.binding.recording:
            self.binding.recorder.armed = True
        if self.binding.waiting:
            self.binding.watch.batch_begin(self._step())

    def on_train_batch_end(self, batch, logs=None):
        """Collect the steps' gradient norms; diagnose on an int schedule."""
        if self._deferred:
            self._deferred = False
            try:
                self._begin()
            except Exception as error:  # noqa: BLE001 - never break the user's fit.
                self.binding.diagnoser = None
                self._failed(self._step(), error)
            return
        if self.binding.recording:
            self._collect_norms(force=False)
        if self.binding.watching:
            self._first_steps(batch, logs)
        # The step is read from the device only when a batch end can be due.
        if (
            self.binding.diagnoser is not None
            and self.schedule.per_batch
            and self.schedule.due_at_batch(self._step())
        ):
            self._diagnose()

    def on_epoch_begin(self, epoch, logs=None):
        """At the fit's first epoch: the training's budget, for the verdict."""
        if not self._epoch_seen:
            self._epoch_seen = True
            self._fit_budget = fit_budget(self.params, self._fit_start, epoch)
            self._give_budget()

    def _give_budget(self):
        """The training's budget to the watch: the user's, else the fit's."""
        self.binding.give_budget(self.budget or self._fit_budget)

    def on_epoch_end(self, epoch, logs=None):
        """Diagnose after every epoch with `update_freq="epoch"`; fill `logs`.

        The latest diagnosis's `summary.log_summary` joins `logs`, for the
        callbacks after this one (History, the progress bar, CSVLogger).
        """
        self.schedule.end_epoch()
        if self.binding.recording:
            self._collect_norms()
        if self.binding.diagnoser is not None:
            if self.schedule.due_at_epoch_end(now()):
                self._diagnose()
            elif self.verbose and (note := self.schedule.pacing_note()):
                print(note)
        if logs is not None and self.history.last is not None:
            logs.update(log_summary(self.history.last, self.verdict))
        self.sink.flush()

    def on_train_end(self, logs=None):
        """Diagnose the final state (once per step), then flush and close."""
        self.schedule.end_fit()
        if self.binding.diagnoser is not None:
            self._diagnose()
        self._shutdown()

    def _shutdown(self):
        """Give the model its own train function back, write everything, close.

        The end of training and this callback's `FlagError` come here; what
        an exception from elsewhere leaves is safe (ARCHITECTURE.md, "The
        callback's lifecycle").
        """
        self.binding.stop_watching()
        if self.binding.recording:
            self.binding.recorder.detach()
            self._collect_norms()
        self.sink.close()

    # -- binding -------------------------------------------------------------

    def _bind(self):
        """Make every per-model part belong to `self.model`, and validate.

        Another model than before starts over: its schedule, history and
        flags, and a run of its own (`binding.Binding` has the rest).
        """
        model = self.model
        if not self.binding.holds(model):
            if self.binding.bound:  # Another model: its own run and flags.
                self.actor.start_over(model.name, self.sink.follow(model))
            self.schedule.reset()
            self.history = History()
        self.binding.bind(model, self.actor.warn_once)
        self.sink.check(model)

    def _step(self) -> int:
        return optimizer_step(self.model)

    # -- one diagnosis -------------------------------------------------------

    def _diagnose(self, first: bool = False, extra: dict | None = None, verdict=None):
        """Measure, judge, write and act at the current step (once per step).

        On the first diagnosis of a `fit`, a batch the model rejects raises a
        `ValueError` before any training step; any other failure warns once
        and training goes on. `extra` (statistic -> {layer: value}, e.g. the
        update ratios) joins the measured statistics before they are judged;
        a `verdict` joins the report (a failing one as a "verdict" flag).
        """
        step = self._step()
        image = self.depth_profile and self.schedule.image_wanted(step)
        if self.schedule.done(step) and verdict is None:
            if image and self.history.last is not None:
                self.sink.write_image(self.model, self.history.last)
                self.schedule.diagnosed(step, image=True)
            return
        start, traces = now(), self.binding.traces
        try:
            report, histograms = self.binding.report(
                step,
                first=first,
                searches=self.schedule.full_due,
                thresholds=self.thresholds,
                extra=extra,
                verdict=verdict,
            )
            self.sink.write(self.model, report, histograms, image=image)
        except ProbeInputError as error:
            if first:
                raise ValueError(
                    f"Argument `probe_data` does not fit model {self.model.name!r}: "
                    f"{error}"
                ) from error
            self._failed(step, error)
            return
        except Exception as error:  # noqa: BLE001 - never break the user's fit.
            self._failed(step, error)
            return
        end = now()
        compiled = traces != self.binding.traces  # the probe's fifth call compiles
        one_off = extra is not None or verdict is not None
        self.schedule.diagnosed(step, image, end - start, end, compiled, one_off)
        self.history.add(report)
        self._act(report)

    def _act(self, report: DiagnosticReport) -> None:
        """Let the actor act on a report: stop training, or raise (shut down first).

        Either way the next `fit` diagnoses this step again: the usual retry
        fixes the weights in place and fits again.
        """
        try:
            stop = self.actor.act(report)
        except FlagError:
            self.schedule.stopped(report.step)
            self._shutdown()
            raise
        if stop:
            self.schedule.stopped(report.step)
            self.model.stop_training = True

    def _failed(self, step: int, error: Exception, attempt: bool = True) -> None:
        """A diagnosis (`attempt`) or a measurement failed: warn once."""
        if attempt:
            self.schedule.failed(step)
        self.actor.failed(step, error)

    # -- the first steps ------------------------------------------------------

    def _first_steps(self, batch, logs):
        """Feed the update tracker and the early watch; diagnose with their results.

        The update ratios (after the first steps) and the early verdict (after
        the watch) join a diagnosis at the step they are measured.
        """
        step = self._step()
        try:
            measured, verdict = self.binding.first_steps(step, batch, logs)
        except Exception as error:  # noqa: BLE001 - never break the user's fit.
            self._failed(step, error, attempt=False)
            return
        if measured is not None or verdict is not None:
            self._diagnose(extra=measured, verdict=verdict)

    # -- per-step gradient norms ---------------------------------------------

    def _collect_norms(self, force: bool = True):
        """Keep and write the in-step statistics (`Binding.collect`)."""
        read = self.binding.collect(force)
        if read:
            self.history.steps.extend(read)
            self.sink.add_steps(self.model, read)
