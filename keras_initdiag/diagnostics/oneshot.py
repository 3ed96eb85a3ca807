"""`diagnose()`, the one-shot public entry point, and the cache policy.

`diagnose()` measures once (`engine.Diagnoser`) and judges (`rules.judge`).
It keeps one `Diagnoser` per model and configuration (`cached_diagnoser`,
on `cache`'s weak per-model store): recompiling with another loss or
optimizer class, or freezing or unfreezing layers, rebuilds the probe; a
new learning rate does not.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_initdiag import _checks
from keras_initdiag.diagnostics import cache, rules
from keras_initdiag.diagnostics.engine import Diagnoser
from keras_initdiag.diagnostics.report import DiagnosticReport
from keras_initdiag.diagnostics.taps import check_model


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
