"""One diagnosis end to end: validate the probe batch, run the probe, judge.

`Diagnoser` holds the taps and the compiled probe of one model, so repeated
diagnoses (the callback, `lsuv`) never retrace. `diagnose()` is the one-shot
public entry point.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_initdiag.diagnostics import probe as probe_lib
from keras_initdiag.diagnostics import rules
from keras_initdiag.diagnostics.batches import as_batch, check_fits, restructure
from keras_initdiag.diagnostics.report import DiagnosticReport
from keras_initdiag.diagnostics.taps import build_taps, check_model

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class ProbeInputError(ValueError):
    """The model (or its loss) rejected the probe batch: a caller's error."""


class Diagnoser:
    """Taps, compiled probe and rules for one model; reused across diagnoses.

    Args:
        model: A built Keras model.
        layers: Layer names to tap. Defaults to every layer.
        loss: Loss for gradient statistics. Defaults to the compiled loss.
        thresholds: `Thresholds` for the rules. Defaults to `Thresholds()`.
        histograms: Also return raw tensors for histogram summaries.

    Example:
    >>> diagnoser = Diagnoser(model)
    >>> report = diagnoser.run(x, y, step=0)
    """

    def __init__(
        self,
        model: keras.Model,
        layers: Sequence[str] | None = None,
        loss=None,
        thresholds: rules.Thresholds | None = None,
        histograms: bool = False,
    ):
        check_model(model)
        if thresholds is not None and not isinstance(thresholds, rules.Thresholds):
            raise TypeError(
                "Argument `thresholds` must be a `keras_initdiag.Thresholds` or "
                f"None. Received: thresholds={thresholds!r}"
            )
        self.model = model
        self.thresholds = thresholds or rules.Thresholds()
        self.tapset = build_taps(model, layers)
        self.probe = probe_lib.Probe(
            self.tapset, probe_lib.resolve_loss(model, loss), histograms=histograms
        )
        self.last_histograms = {}

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """`(layer, reason)` for the layers whose outputs are not tapped."""
        return self.tapset.skipped

    def run(
        self,
        x,
        y=None,
        step: int = 0,
        validate: bool = True,
        full: bool = True,
    ) -> DiagnosticReport:
        """Diagnose once: one compiled call, one host copy, then the rules.

        `full=False` skips the duplicate-unit and identical-kernel searches
        (reported as NaN), the costliest reductions; the callback asks for
        them at step 0 and once per epoch.
        """
        if validate:
            xs, ys = as_batch(x, "x"), as_batch(y, "y")
            check_fits(self.model, xs, ys)
            x = restructure(x, xs)
            y = None if y is None else restructure(y, ys)
            result = self._checked_call(x, y, xs, ys, full)
        else:
            result = self.probe(x, y, full)
        if self.probe.histograms:
            vector, self.last_histograms = result
        else:
            vector = result
        per_layer, signatures, loss = probe_lib.decode(self.probe, vector.numpy())
        info = self._info_with_signatures(per_layer, signatures)
        report = DiagnosticReport(
            step=int(step),
            layers=[tap.name for tap in self.tapset.taps],
            stats=per_layer,
            info=info,
            loss=loss,
            skipped=list(self.tapset.skipped),
        )
        report.flags = rules.judge(report, self.thresholds)
        return report

    def _checked_call(self, x, y, xs, ys, full):
        """Run the probe; a batch the model rejects is the caller's ValueError.

        What `check_fits` cannot see (a subclassed model's input shape, a dict
        with other keys, targets shaped unlike the outputs) fails inside
        Keras or TensorFlow; say which argument was wrong instead.
        """
        try:
            return self.probe(x, y, full)
        except (ValueError, TypeError, tf.errors.InvalidArgumentError) as error:
            received = f"x with shapes {[a.shape for a in xs]}"
            if ys is not None:
                received += f", y with shapes {[a.shape for a in ys]}"
            # One line, without Keras's terminal colour codes.
            detail = " ".join(str(error).replace("\x1b[1m", "").split())
            detail = detail.replace("\x1b[0m", "")[:400]
            raise ProbeInputError(
                f"Arguments `x` and `y` must fit model {self.model.name!r} and its "
                f"loss, but running it failed ({type(error).__name__}: {detail}). "
                f"Received: {received}"
            ) from error

    def _info_with_signatures(self, per_layer, signatures):
        info, seen = {}, {}
        for tap in self.tapset.taps:
            layer_info = tap.info
            signature = signatures[tap.name]
            variance = per_layer[tap.name]["weight_variance"]
            if (
                len(layer_info.weight_shape) >= 2
                and math.isfinite(signature)
                and variance > 0
            ):
                key = (layer_info.weight_shape, signature)
                if key in seen:
                    layer_info = dataclasses.replace(
                        layer_info, same_kernel_as=(seen[key],)
                    )
                else:
                    seen[key] = tap.name
            info[tap.name] = layer_info
        return info


def diagnose(
    model: keras.Model,
    x,
    y=None,
    *,
    loss=None,
    layers: Sequence[str] | None = None,
    thresholds: rules.Thresholds | None = None,
) -> DiagnosticReport:
    """Diagnose a model's initialization on one batch, without training.

    Runs one compiled forward and backward pass in inference mode, measures
    every tapped layer (activation variance and mean, back-propagated gradient
    RMS, weight variance, gradient norms, dead, saturated and duplicate unit
    fractions) and applies the rules. Weights and every other variable are left
    untouched.

    Args:
        model: A built Keras model (Sequential, functional, nested or subclassed).
        x: A batch of inputs (array, tensor, or a list/dict for several inputs).
        y: Targets for `x`. Gradient statistics need `y` and a loss. Defaults to
            `None` (forward statistics only).
        loss: Loss for the gradients: a Keras loss name, `keras.losses.Loss` or
            callable. Defaults to `None`, which uses the loss given to
            `model.compile` (so an uncompiled model can be diagnosed when
            `loss` is given).
        layers: Names of the layers to tap. Defaults to `None` (every layer).
        thresholds: `keras_initdiag.Thresholds`. Defaults to `None` (defaults).

    Returns:
        A `DiagnosticReport` at step 0 with its `flags`.

    Raises:
        TypeError: `model` is not a Keras model, or `x`/`y` are not numeric.
        ValueError: the model was never built, `x` is empty, non-finite or does
            not fit the model, or `layers` names a layer the model lacks.

    Example:
    >>> model = keras.Sequential([keras.Input((32,))] + [
    ...     keras.layers.Dense(256, activation="relu") for _ in range(30)])
    >>> report = keras_initdiag.diagnose(model, x, y, loss="mse")
    >>> print(report.table())
    >>> [flag.kind for flag in report.flags]
    ['vanishing', 'init_mismatch', ...]
    """
    check_model(model)
    key = (tuple(layers) if layers is not None else None, _loss_key(loss))
    per_model = _CACHE.setdefault(model, {})
    diagnoser = per_model.get(key)
    if diagnoser is None:
        diagnoser = Diagnoser(model, layers=layers, loss=loss)
        per_model[key] = diagnoser
    diagnoser.thresholds = _checked_thresholds(thresholds)
    return diagnoser.run(x, y, step=0)


def forget(model: keras.Model) -> None:
    """Drop the cached diagnosers of `model` (its layers' facts changed)."""
    _CACHE.pop(model, None)


def _checked_thresholds(thresholds):
    if thresholds is None:
        return rules.Thresholds()
    if not isinstance(thresholds, rules.Thresholds):
        raise TypeError(
            "Argument `thresholds` must be a `keras_initdiag.Thresholds` or None. "
            f"Received: thresholds={thresholds!r}"
        )
    return thresholds


def _loss_key(loss):
    if loss is None or isinstance(loss, str):
        return loss
    return id(loss)
