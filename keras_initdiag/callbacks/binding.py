"""What `InitDiagnostics` holds for the one model it is bound to.

The probe (`Diagnoser`) and its input batch, the per-step gradient recorder,
the update tracker and the update ratios it measured. A recompiled or
(un)frozen model keeps its taps and gets a new probe; another model starts
all of it over (the callback then also resets its schedule, history, actor
and run).
"""

from __future__ import annotations

import functools
import weakref

import keras
import numpy as np

from keras_initdiag.callbacks.early import EarlyWatch
from keras_initdiag.callbacks.updates import UpdateTracker
from keras_initdiag.diagnostics import rules
from keras_initdiag.diagnostics.batches import probe_inputs
from keras_initdiag.diagnostics.engine import Diagnoser
from keras_initdiag.diagnostics.judgement import verdict_flags
from keras_initdiag.diagnostics.report import DiagnosticReport
from keras_initdiag.diagnostics.train_grads import GradientRecorder


def optimizer_step(model: keras.Model) -> int:
    """The step `model`'s optimizer is at (0 without an optimizer).

    Example:
    >>> optimizer_step(keras.Sequential([keras.layers.Dense(1)]))
    0
    """
    optimizer = getattr(model, "optimizer", None)
    iterations = getattr(optimizer, "iterations", None)
    return 0 if iterations is None else int(np.asarray(iterations))


class Binding:
    """The per-model parts of the callback.

    Args:
        layers: Names of the layers to report (None: all).
        histograms: Keep raw tensors for histogram summaries.
        training: Measure with training-mode semantics.
        probe_x: The probe inputs, or None to synthesize them.
        probe_y: The probe targets, or None.
        risk_threshold: The risk at which the early verdict calls the run
            failing (None: `verdict.RISK_THRESHOLD`).

    Example:
    >>> binding = Binding(None, False, True, x[:32], y[:32])
    >>> binding.bind(model, warn_once=print)
    >>> report = binding.diagnoser.measure(*binding.inputs, step=0)
    """

    def __init__(
        self,
        layers,
        histograms: bool,
        training: bool,
        probe_x,
        probe_y,
        risk_threshold: float | None = None,
    ):
        self.layers = layers
        self.risk_threshold = risk_threshold
        self.histograms = histograms
        self.training = training
        self.probe_x, self.probe_y = probe_x, probe_y
        self._model = None  # weakref to the model the parts below belong to
        self.recorder: GradientRecorder | None = None
        self.forget()

    def forget(self) -> None:
        """Drop every per-model part (the recorder gives the model its own back)."""
        if self.recorder is not None:
            self.recorder.detach()
        self.diagnoser: Diagnoser | None = None
        self.inputs = None
        self.recorder = None
        self.updates: UpdateTracker | None = None
        self.update_ratios: dict[str, float] = {}
        self.watch: EarlyWatch | None = None

    @property
    def bound(self) -> bool:
        """Whether some model was bound before."""
        return self._model is not None

    def holds(self, model: keras.Model) -> bool:
        """Whether the parts belong to `model`."""
        return self._model is not None and self._model() is model

    def deferred(self, model: keras.Model) -> str:
        """Why binding waits for the first step (`""` when it need not).

        A subclassed model that Keras builds only at its first step, with no
        `probe_data` to build it on, has no weights to measure before it.
        """
        if model.built or self.probe_x is not None:
            return ""
        return (
            f"InitDiagnostics: model {model.name!r} is built only by its first "
            "training step, and no `probe_data` was given, so the diagnostics "
            "start after that step (without step 0). Pass `probe_data=(x, y)` "
            "to diagnose it from step 0."
        )

    def bind(self, model: keras.Model, warn_once) -> None:
        """Make the parts belong to `model`; build what is missing, and check.

        A model recompiled with another loss, loss weights, optimizer class
        or loss scaling, or (un)frozen, gets a new probe on the same taps (a
        new learning rate keeps it). `warn_once(key, message)` says what is
        left out (no functional graph, no probe data).

        Raises:
            ValueError: `probe_data` does not fit the model.
        """
        if not self.holds(model):
            self.forget()
            self._model = weakref.ref(model)
        elif self.diagnoser is not None and self.diagnoser.stale():
            self.diagnoser = Diagnoser(
                model,
                histograms=self.histograms,
                training=self.training,
                tapset=self.diagnoser.tapset,
            )
        if self.diagnoser is None:
            self.diagnoser = Diagnoser(
                model,
                layers=self.layers,
                histograms=self.histograms,
                training=self.training,
            )
            if self.diagnoser.tapset.view is None:
                warn_once(
                    "no-graph",
                    f"InitDiagnostics: model {model.name!r} exposes no functional "
                    "graph (subclassed model), so only weight and gradient "
                    "statistics are recorded; activation statistics need a "
                    "Sequential or functional model.",
                )
        if self.inputs is None:
            self.inputs, note = probe_inputs(
                model, self.diagnoser.tapset, self.probe_x, self.probe_y
            )
            if note:
                warn_once("no-probe", f"InitDiagnostics: {note}")

    def report(
        self,
        step: int,
        first: bool = False,
        searches: bool = True,
        thresholds=None,
        extra: dict | None = None,
        verdict=None,
    ) -> tuple[DiagnosticReport, dict]:
        """Measure and judge the model at `step`: `(report, histograms)`.

        `extra` (statistic -> {layer: value}) joins the measured statistics
        before they are judged; the early watch holds its uncertain flags
        pending; a `verdict` joins the report (a failing one as a "verdict"
        flag). `first` validates the probe batch (`ProbeInputError`).
        """
        diagnoser = self.diagnoser
        report = diagnoser.measure(
            *self.inputs, step=step, validate=first, searches=searches
        )
        report.add_stats(extra or {})
        report.flags = rules.judge(report, thresholds)
        if self.watch is not None:
            report.flags = self.watch.hold(report, thresholds)
        if verdict is not None:
            report.verdict = verdict
            report.flags += verdict_flags(verdict, self._model().name)
        histograms, diagnoser.last_histograms = diagnoser.last_histograms, {}
        return report, histograms

    def start_watching(self, model: keras.Model, step: int) -> None:
        """Sample the weights before the first updates; watch for the verdict.

        Both once per model: the update tracker until it measured, the early
        watch until its verdict (a watch cut short by the end of a `fit`
        goes on in the next one).
        """
        if getattr(model, "optimizer", None) is None:
            return
        taps = self.diagnoser.tapset.taps
        if self.watch is None:
            self.watch = EarlyWatch(
                taps, model.optimizer, step, threshold=self.risk_threshold
            )
        else:
            self.watch.resume(step)
        if not self.update_ratios:
            # The watch's compiled sampler: the same weights and entries.
            sampler = self.watch.tracker.sampler
            self.updates = UpdateTracker(taps, model.optimizer, sampler=sampler)
            self.updates.start(step)

    @property
    def watching(self) -> bool:
        """Whether the update tracker or the early watch measures this batch."""
        watch = self.watch
        return (self.updates is not None and self.updates.active) or (
            watch is not None and watch.started
        )

    @property
    def waiting(self) -> bool:
        """Whether the early watch waits for its first step."""
        watch = self.watch
        return watch is not None and watch.needs_begin

    def first_steps(self, step: int, batch: int, logs) -> tuple[dict | None, object]:
        """The update ratios and the early verdict, each once measured.

        Returns:
            `(measured, verdict)`: `UpdateTracker.after_batch`'s result and
            `EarlyWatch.batch_end`'s, each None until it is there.

        Raises:
            Exception: Whatever a measurement raised (both are then stopped).
        """
        measured = verdict = None
        try:
            if self.updates is not None and self.updates.active:
                measured = self.updates.after_batch(step)
            if self.watch is not None and self.watch.started:
                verdict = self.watch.batch_end(step, batch, logs)
        except Exception:
            self.stop_watching()
            raise
        if measured is not None:
            self.update_ratios = measured["update_ratio"]
        return measured, verdict

    def give_budget(self, budget: int | None) -> None:
        """Tell the early watch the training's budget (until its verdict)."""
        if self.watch is not None and not self.watch.done:
            self.watch.budget = budget

    def stop_watching(self) -> None:
        """Drop the weight samples of the first steps (kept: what was measured)."""
        for tracker in (self.updates, self.watch and self.watch.tracker):
            if tracker is not None:
                tracker.stop()

    def start_recorder(self, model: keras.Model, warn_once) -> None:
        """Record every step's gradient norms (the train function is kept)."""
        reason = GradientRecorder.supported(model)
        if reason is not None:
            warn_once(
                "batch-gradients",
                f"InitDiagnostics: batch_gradients=True stays off: {reason}.",
            )
            return
        if self.recorder is None:
            self.recorder = GradientRecorder(model, self.diagnoser.tapset.taps)
            self.recorder.on_failure = functools.partial(
                self._recorder_failed, model, warn_once
            )
        self.recorder.attach()
        if not self.recorder.attached:
            return  # it gave up before (warned then)
        if self.watch is not None and not self.watch.started:
            self.watch.in_step = True  # exact per-step updates, no sampling

    def _recorder_failed(self, model: keras.Model, warn_once, reason: str) -> None:
        """The recording step failed and the model's own ran: go on without."""
        warn_once(
            "batch-gradients-failed",
            "InitDiagnostics: batch_gradients=True is off for this model: its "
            f"recording train step failed ({reason}). Training goes on with "
            "the model's own step; the diagnoses go on without in-step "
            "statistics.",
        )
        if self.watch is not None and self.watch.in_step:
            # The early watch samples the weights itself from the next step.
            self.watch.in_step = False
            self.watch.resume(optimizer_step(model))

    def collect(self, force: bool = True) -> dict:
        """Copy the in-step statistics to the host: when due, or `force`.

        While the early watch needs updates they are copied at every batch
        end and fed to it, for the verdict. Returns `GradientRecorder.read`'s
        columns (empty when nothing was copied).
        """
        watch = self.watch
        feeding = watch is not None and watch.in_step and watch.measuring
        if not (force or feeding or self.recorder.due):
            return {}
        read = self.recorder.read()
        if read and feeding:
            watch.add_steps(read)  # the verdict's updates, every batch
        return read

    @property
    def recording(self) -> bool:
        """Whether the recorder is attached (during a `fit`)."""
        return self.recorder is not None and self.recorder.attached

    @property
    def traces(self) -> int | None:
        """How often the probe was traced (None before it exists).

        A diagnosis during which it grew compiled the probe.
        """
        return None if self.diagnoser is None else self.diagnoser.probe.traces
