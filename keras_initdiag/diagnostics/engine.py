"""One measurement end to end: validate the probe batch, run the probe, decode.

`Diagnoser` holds the taps and the compiled probe of one model, so repeated
diagnoses (the callback, `lsuv`) never retrace. It only *measures*: the
report is assembled from the decoded values (`assemble`), the rules judge it
(`rules.judge`), the writer writes it, the callback acts. The one-shot
`diagnose()` and the cache policy are in `oneshot`.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence

import keras

from keras_initdiag.diagnostics import assemble, cache
from keras_initdiag.diagnostics import probe as probe_lib
from keras_initdiag.diagnostics.activation_moments import ActivationMoments
from keras_initdiag.diagnostics.batches import as_batch, check_fits, restructure
from keras_initdiag.diagnostics.loss import ProbeLoss
from keras_initdiag.diagnostics.report import DiagnosticReport
from keras_initdiag.diagnostics.stateless import read_only
from keras_initdiag.diagnostics.taps import TapSet, build_taps, check_model


class ProbeInputError(ValueError):
    """The model (or its loss) rejected the probe batch: a caller's error."""


class DiagnosticsError(RuntimeError):
    """The diagnostics themselves failed on a batch the model accepts."""


class Diagnoser:
    """Taps and compiled probe of one model; measures, does not judge.

    Args:
        model: A built Keras model (held weakly).
        layers: Layer names to report. Defaults to every node.
        loss: Loss for gradient statistics. Defaults to the compiled loss.
        histograms: Also keep raw tensors for histogram summaries.
        training: Measure with training-mode semantics, as `fit` runs the
            model. Defaults to `True`.
        tapset: Reuse an existing `TapSet` of this model. Defaults to
            `None` (trace the model).

    Example:
    >>> diagnoser = Diagnoser(model)
    >>> report = diagnoser.measure(x, y, step=0)
    >>> flags = keras_initdiag.diagnostics.rules.judge(report)
    """

    def __init__(
        self,
        model: keras.Model,
        layers: Sequence[str] | None = None,
        loss=None,
        histograms: bool = False,
        training: bool = True,
        tapset: TapSet | None = None,
    ):
        check_model(model)
        self._model = weakref.ref(model)
        if tapset is None:
            tapset = build_taps(model, layers, graph=cache.graph_of(model))
        self.tapset = tapset
        self.probe = probe_lib.Probe(
            self.tapset,
            model,
            ProbeLoss.resolve(model, loss),
            training=training,
            histograms=histograms,
        )
        self.state = cache.model_state(model)
        self.last_histograms: dict = {}
        self._moments = ActivationMoments(self.tapset)
        self.last_values: dict = {}  # the latest measurement, decoded

    @property
    def model(self) -> keras.Model:
        """The model (raises `ReferenceError` once it was freed)."""
        return self.probe.model

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """`(node, reason)` for the nodes whose outputs are not measured."""
        return self.tapset.skipped

    def stale(self) -> bool:
        """Whether the model was recompiled or (un)frozen since the probe."""
        return cache.model_state(self.model) != self.state

    def measure(
        self,
        x,
        y=None,
        step: int = 0,
        validate: bool = True,
        searches: bool = True,
    ) -> DiagnosticReport:
        """Measure once: one compiled call, one host copy; no flags yet.

        Args:
            x: Inputs.
            y: Targets, or None for forward statistics only.
            step: The global training step to record.
            validate: Check the batch first and classify failures (a
                `ProbeInputError` when the model rejects the batch, a
                `DiagnosticsError` when the model accepts it but the
                diagnostics fail). Defaults to `True`.
            searches: Also run the duplicate-unit and identical-kernel searches
                (reported as NaN otherwise). Defaults to `True`.

        Returns:
            A `DiagnosticReport` without flags.
        """
        if validate:
            xs, ys = as_batch(x, "x"), as_batch(y, "y")
            check_fits(self.model, xs, ys)
            x = restructure(x, xs, tensors=True)
            y = None if y is None else restructure(y, ys, tensors=True)
            result = self._checked_call(x, y, xs, ys, searches)
        else:
            result = self.probe(x, y, searches)
        if self.probe.histograms:
            vector, self.last_histograms = result
        else:
            vector = result
        return self._report(vector.numpy(), step)

    def _report(self, vector, step: int) -> DiagnosticReport:
        values, loss = probe_lib.decode(self.probe, vector)
        report = assemble.assemble(
            self.tapset,
            values,
            loss,
            step,
            skipped=list(self.tapset.skipped),
            optimizer=optimizer_name(self.model),
            training=self.probe.training,
        )
        report.chance_loss = self._chance(report.info)
        self.last_values = values
        assemble.add_predictions(report, self.predict(report))
        return report

    def predict(self, report: DiagnosticReport) -> dict:
        """Theory's prediction for each node of the latest report measured.

        See `assemble.predict`: the bias and scale moments are those of
        that measurement.
        """
        return assemble.predict(
            report, self.last_values, self._moments, self.probe.training
        )

    def _chance(self, info: dict) -> float:
        """The chance-level loss of a single-output classifier, or NaN."""
        outputs = [i for i in info.values() if i.is_output]
        if self.probe.loss is None or len(outputs) != 1:
            return math.nan
        return self.probe.loss.chance(outputs[0].units)

    def _checked_call(self, x, y, xs, ys, searches):
        """Run the probe; blame the batch only when the model rejects it.

        When the probe fails, the model's own forward pass (and loss) runs
        on the batch once, eagerly and statelessly. If that fails too, the
        batch does not fit: a `ProbeInputError` naming `x` and `y`.
        Otherwise the fault is the diagnostics': a `DiagnosticsError`.
        """
        try:
            return self.probe(x, y, searches)
        except Exception as error:  # noqa: BLE001 - classified below.
            fault = self._model_rejects(x, y)
            if fault is None:
                raise DiagnosticsError(
                    f"Diagnosing model {self.model.name!r} failed on a batch the "
                    f"model accepts ({type(error).__name__}: {_one_line(error)})"
                ) from error
            received = f"x with shapes {[a.shape for a in xs]}"
            if ys is not None:
                received += f", y with shapes {[a.shape for a in ys]}"
            raise ProbeInputError(
                f"Arguments `x` and `y` must fit model {self.model.name!r} and its "
                f"loss, but running it failed ({type(fault).__name__}: "
                f"{_one_line(fault)}). Received: {received}"
            ) from fault

    def _model_rejects(self, x, y) -> Exception | None:
        model = self.model
        try:
            with read_only(model):
                preds = model(x, training=False)
                if y is not None and self.probe.loss is not None:
                    self.probe.loss(model, x, y, preds)
        except Exception as error:  # noqa: BLE001 - any failure is the batch's.
            return error
        return None


def _one_line(error: Exception) -> str:
    """An error message on one line, without Keras's terminal colour codes."""
    text = " ".join(str(error).split())
    return text.replace("\x1b[1m", "").replace("\x1b[0m", "")[:400]


def optimizer_name(model: keras.Model) -> str:
    """Class name of the model's optimizer (the inner one under loss scaling)."""
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return "" if optimizer is None else type(optimizer).__name__
