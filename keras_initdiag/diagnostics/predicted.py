"""The depth profile the theory predicts from the architecture alone.

What `keras-initdiag check` judges without data: one forward pass on
standard-normal inputs, then the theory's prediction in place of each
node's measured mean and variance, judged by the same rules.
"""

from __future__ import annotations

import keras

from keras_initdiag.diagnostics import assemble, rules
from keras_initdiag.diagnostics.batches import synthetic_inputs
from keras_initdiag.diagnostics.oneshot import cached_diagnoser
from keras_initdiag.diagnostics.report import DiagnosticReport


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
    >>> report = keras_initdiag.diagnostics.predicted.predicted_report(model)
    >>> print(report.table(("predicted_activation_variance",)))
    """
    diagnoser = cached_diagnoser(model)
    x, _ = synthetic_inputs(model, diagnoser.tapset, batch=samples)
    report = diagnoser.measure(x, None, step=0)
    for name, state in diagnoser.predict(report).items():
        if state is not None:
            report.stats[name]["activation_variance"] = state.variance
            report.stats[name]["activation_mean"] = state.mean
    assemble.add_gains(report)
    report.flags = rules.judge(report)
    return report
