"""One measurement end to end: validate the probe batch, run the probe, decode.

`Diagnoser` holds the taps and the compiled probe of one model, so repeated
diagnoses (the callback, `lsuv`) never retrace. It only *measures*: the rules
judge its reports (`rules.judge`), the writer writes them, the callback acts.
`diagnose()` is the one-shot public entry point: measure, then judge.

`diagnose()` keeps one `Diagnoser` per model and configuration (see
`cache`). Recompiling with another loss or optimizer class, or freezing or
unfreezing layers, rebuilds the probe; a new learning rate does not.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections.abc import Sequence

import keras

from keras_initdiag import _checks
from keras_initdiag.diagnostics import cache, rules, signal, theory
from keras_initdiag.diagnostics import probe as probe_lib
from keras_initdiag.diagnostics.activation_moments import ActivationMoments
from keras_initdiag.diagnostics.batches import as_batch, check_fits, restructure
from keras_initdiag.diagnostics.loss import ProbeLoss
from keras_initdiag.diagnostics.report import STAT_NAMES, DiagnosticReport
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
        self._bias_and_scale: dict = {}

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
        full: bool = True,
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
            full: Also run the duplicate-unit and identical-kernel searches
                (reported as NaN otherwise). Defaults to `True`.

        Returns:
            A `DiagnosticReport` without flags.
        """
        if validate:
            xs, ys = as_batch(x, "x"), as_batch(y, "y")
            check_fits(self.model, xs, ys)
            x = restructure(x, xs, tensors=True)
            y = None if y is None else restructure(y, ys, tensors=True)
            result = self._checked_call(x, y, xs, ys, full)
        else:
            result = self.probe(x, y, full)
        if self.probe.histograms:
            vector, self.last_histograms = result
        else:
            vector = result
        return self._report(vector.numpy(), step)

    def _report(self, vector, step: int) -> DiagnosticReport:
        values, loss = probe_lib.decode(self.probe, vector)
        info, seen = {}, {}
        for tap in self.tapset.taps:
            fields = values[tap.name]
            layer_info = tap.info
            signature = fields["kernel_signature"]
            if (
                len(layer_info.weight_shape) >= 2
                and math.isfinite(signature)
                and fields["weight_variance"] > 0
            ):
                key = (layer_info.weight_shape, signature)
                if key in seen:
                    layer_info = dataclasses.replace(
                        layer_info, same_kernel_as=(seen[key],)
                    )
                else:
                    seen[key] = tap.name
            if math.isfinite(fields["size"]):
                layer_info = dataclasses.replace(layer_info, size=fields["size"])
            if tap.weights:
                layer_info = dataclasses.replace(layer_info, trainable=True)
            info[tap.name] = layer_info
        names = [tap.name for tap in self.tapset.taps]
        stats = {
            name: {s: values[name].get(s, math.nan) for s in STAT_NAMES}
            for name in names
        }
        for name in names:
            stats[name]["duplicate_unit_fraction"] = _larger(
                values[name]["duplicate_weight_fraction"],
                values[name]["duplicate_output_fraction"],
            )
        report = DiagnosticReport(
            step=int(step),
            layers=names,
            stats=stats,
            info=info,
            loss=loss,
            skipped=list(self.tapset.skipped),
            optimizer=optimizer_name(self.model),
            training=self.probe.training,
            chance_loss=self._chance(info),
        )
        gains = signal.activation_gains(report)
        for name in names:
            report.stats[name]["activation_gain"] = gains.get(name, math.nan)
        self._bias_and_scale = {n: {k: values[n][k] for k in _AFFINE} for n in names}
        for name, state in self.predict(report).items():
            found = state is not None
            spread = math.sqrt(max(state.spread, 0.0)) if found else math.nan
            report.stats[name]["predicted_activation_variance"] = (
                state.variance if found else math.nan
            )
            report.stats[name]["predicted_log_spread"] = spread
        return report

    def predict(self, report: DiagnosticReport) -> dict:
        """Theory's prediction for each node of a report this diagnoser made.

        See `theory.predict`; the bias and scale moments are those of the
        report's own measurement.
        """
        return theory.predict(
            report, self._bias_and_scale, self._moments, training=self.probe.training
        )

    def _chance(self, info: dict) -> float:
        """The chance-level loss of a single-output classifier, or NaN."""
        outputs = [i for i in info.values() if i.is_output]
        if self.probe.loss is None or len(outputs) != 1:
            return math.nan
        return self.probe.loss.chance(outputs[0].units)

    def _checked_call(self, x, y, xs, ys, full):
        """Run the probe; blame the batch only when the model rejects it.

        When the probe fails, the model's own forward pass (and loss) runs
        on the batch once, eagerly and statelessly. If that fails too, the
        batch does not fit: a `ProbeInputError` naming `x` and `y`.
        Otherwise the fault is the diagnostics': a `DiagnosticsError`.
        """
        try:
            return self.probe(x, y, full)
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
        mapping = [(v, v.value) for v in model.variables]
        try:
            with keras.StatelessScope(state_mapping=mapping, collect_losses=True):
                preds = model(x, training=False)
                if y is not None and self.probe.loss is not None:
                    self.probe.loss(model, x, y, preds)
        except Exception as error:  # noqa: BLE001 - any failure is the batch's.
            return error
        return None


#: The theory's device values: moments of each layer's last bias and scale.
_AFFINE = ("bias_mean", "bias_second_moment", "scale_second_moment")


def _larger(a: float, b: float) -> float:
    """The larger of two fractions, ignoring NaN (NaN when both are)."""
    known = [v for v in (a, b) if not math.isnan(v)]
    return max(known) if known else math.nan


def _one_line(error: Exception) -> str:
    """An error message on one line, without Keras's terminal colour codes."""
    text = " ".join(str(error).split())
    return text.replace("\x1b[1m", "").replace("\x1b[0m", "")[:400]


def optimizer_name(model: keras.Model) -> str:
    """Class name of the model's optimizer (the inner one under loss scaling)."""
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return "" if optimizer is None else type(optimizer).__name__


def diagnose(
    model: keras.Model,
    x,
    y=None,
    *,
    loss=None,
    layers: Sequence[str] | None = None,
    thresholds: rules.Thresholds | None = None,
    training: bool = True,
) -> DiagnosticReport:
    """Diagnose a model's initialization on one batch, without training.

    Runs one compiled forward and backward pass with training-mode semantics
    (as `fit` runs the model: batch statistics in BatchNormalization, dropout
    on with a fixed seed), statelessly: no variable changes, not even the
    moving statistics, the random state or the loss trackers. It measures
    every node of the model's graph (the inputs, each layer call, op-level
    merges such as `h + r`): activation moments and gain, back-propagated
    gradient RMS, weight variance, gradient norms, dead, saturated and
    duplicate unit fractions; then applies the rules.

    Args:
        model: A built Keras model (Sequential, functional, nested or subclassed).
        x: A batch of inputs (array, tensor, or a list/dict for several inputs).
        y: Targets for `x`. Gradient statistics need `y` and a loss. Defaults to
            `None` (forward statistics only).
        loss: Loss for the gradients: a Keras loss name, `keras.losses.Loss`,
            callable, or a list/dict of them per output; the model's own
            losses (regularizers, `add_loss`) are added. Defaults to `None`,
            which uses the compiled loss exactly as `fit` computes it.
        layers: Names of the layers to report. Defaults to `None` (every node).
        thresholds: `keras_initdiag.Thresholds`. Defaults to `None` (defaults).
        training: `True` measures the model as `fit` runs it; `False` as
            `predict` does (normalization layers use their moving statistics,
            dropout is off). Defaults to `True`.

    Returns:
        A `DiagnosticReport` at step 0 with its `flags`.

    Raises:
        TypeError: `model` is not a Keras model, `x`/`y` are not numeric, or
            `thresholds`/`training` have the wrong type.
        ValueError: the model was never built, `x` is empty, non-finite or does
            not fit the model, or `layers` names a layer the model lacks.

    Example:
    >>> model = keras.Sequential([keras.Input((32,))] + [
    ...     keras.layers.Dense(256, activation="relu",
    ...                        kernel_initializer="glorot_normal")
    ...     for _ in range(30)] + [keras.layers.Dense(1)])
    >>> x = np.random.normal(size=(128, 32))
    >>> y = np.random.normal(size=(128, 1))
    >>> report = keras_initdiag.diagnose(model, x, y, loss="mse")
    >>> print(report.table())
    >>> [flag.kind for flag in report.flags]
    ['vanishing', 'init_mismatch', ...]
    """
    check_model(model)
    thresholds = rules.check_thresholds(thresholds)
    training = _checks.boolean("training", training)
    diagnoser = cached_diagnoser(model, layers=layers, loss=loss, training=training)
    report = diagnoser.measure(x, y, step=0)
    report.flags = rules.judge(report, thresholds)
    return report


def predicted_report(model: keras.Model, samples: int = 256) -> DiagnosticReport:
    """The depth profile theory predicts from the architecture alone.

    The model runs once, forward only, on standard-normal inputs (random
    token ids for inputs that feed an `Embedding`), which give the input
    statistics the theory starts from and the weight variances it uses;
    each node's activation mean and variance are then the theory's
    prediction wherever one applies (the standard-normal measurement
    elsewhere), and the rules judge that profile: compounded per-layer
    factors, the finite-width spread, dead, saturated and duplicate units.
    No gradient statistics: there are no labels.

    Args:
        model: A built Keras model with a functional graph.
        samples: Standard-normal samples to run. Defaults to `256`.

    Returns:
        A `DiagnosticReport` at step 0, judged with the default thresholds.

    Raises:
        ValueError: The model's inputs cannot be synthesized (a subclassed
            model, or integer inputs that feed no `Embedding`).

    Example:
    >>> report = keras_initdiag.diagnostics.engine.predicted_report(model)
    >>> print(report.table(("predicted_activation_variance",)))
    """
    from keras_initdiag.diagnostics.batches import synthetic_inputs

    diagnoser = cached_diagnoser(model)
    x, _ = synthetic_inputs(model, diagnoser.tapset, batch=samples)
    report = diagnoser.measure(x, None, step=0)
    for name, state in diagnoser.predict(report).items():
        if state is not None:
            report.stats[name]["activation_variance"] = state.variance
            report.stats[name]["activation_mean"] = state.mean
    gains = signal.activation_gains(report)
    for name in report.layers:
        report.stats[name]["activation_gain"] = gains.get(name, math.nan)
    report.flags = rules.judge(report)
    return report


def cached_diagnoser(
    model: keras.Model,
    layers: Sequence[str] | None = None,
    loss=None,
    training: bool = True,
) -> Diagnoser:
    """The cached `Diagnoser` of `model` for this configuration (see module)."""
    entry = cache.entry(model)
    layers_key = None if layers is None else tuple(layers)
    key = (layers_key, cache.loss_key(loss), training, cache.model_state(model))
    diagnoser = entry.diagnosers.get(key)
    if diagnoser is None:
        tapset = entry.tapsets.get(layers_key)
        diagnoser = Diagnoser(
            model, layers=layers, loss=loss, training=training, tapset=tapset
        )
        entry.tapsets[layers_key] = diagnoser.tapset
        entry.diagnosers[key] = diagnoser
        while len(entry.diagnosers) > cache.CACHE_SIZE:
            entry.diagnosers.popitem(last=False)
    entry.diagnosers.move_to_end(key)
    return diagnoser
