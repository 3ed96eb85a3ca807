"""Per-layer gradient norms taken from the real training step, no extra pass.

`GradientRecorder` wraps the (inner) optimizer's `apply`, which the compiled
train step calls with the gradients it already has. The wrapper reduces them
to one squared norm per layer on the device and stores the result in a small
non-trainable variable; the callback copies that vector to the host once per
batch. Under mixed precision the inner optimizer of Keras's
`LossScaleOptimizer` is wrapped, so the gradients are already unscaled, and
steps the loss scaler skips (non-finite gradients) record nothing.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_initdiag.diagnostics.taps import Tap


class GradientRecorder:
    """Records per-layer gradient norms inside the compiled train step.

    Args:
        model: A compiled model.
        taps: The layers whose gradient norms are recorded.

    Example:
    >>> recorder = GradientRecorder(model, diagnoser.tapset.taps)
    >>> recorder.attach()           # before the train function is traced
    >>> norms = recorder.read()     # after a step: layer -> norm, or None
    """

    def __init__(self, model: keras.Model, taps: list[Tap]):
        self.model = model
        self.names = [tap.name for tap in taps if tap.weights]
        with_weights = [tap for tap in taps if tap.weights]
        self._owner = {
            id(w): i for i, tap in enumerate(with_weights) for w in tap.weights
        }
        self._target = None
        self._original = None
        self._record_var = None  # [squared norm per layer..., global step]
        self._last_step = None

    @staticmethod
    def supported(model: keras.Model) -> str | None:
        """None when recording works for `model`, else the reason it does not."""
        if getattr(model, "optimizer", None) is None:
            return "the model is not compiled with an optimizer"
        if tf.distribute.has_strategy() or _strategy(model) is not None:
            return "recording inside tf.distribute strategies is not supported yet"
        return None

    def attach(self) -> None:
        """Wrap the optimizer's `apply` and rebuild the train function."""
        if self._target is not None:
            return
        optimizer = self.model.optimizer
        target = getattr(optimizer, "inner_optimizer", optimizer)
        self._record_var = tf.Variable(
            tf.fill([len(self.names) + 1], tf.constant(float("nan"), tf.float64)),
            trainable=False,
        )
        original = target.apply
        recorder = self

        def apply(grads, trainable_variables=None):
            if trainable_variables is not None:
                recorder._record(grads, trainable_variables)
            return original(grads, trainable_variables=trainable_variables)

        target.apply = apply
        self._target, self._original = target, original
        # The train function must be traced again to include the wrapper.
        self.model.make_train_function(force=True)

    def detach(self) -> None:
        """Restore the optimizer's own `apply` (a later `fit` retraces)."""
        if self._target is not None:
            self._target.apply = self._original
            self._target = self._original = None
            self.model.make_train_function(force=True)

    def _record(self, grads, variables) -> None:
        sums = [[] for _ in self.names]
        for grad, variable in zip(grads, variables):
            index = self._owner.get(id(variable))
            if grad is None or index is None:
                continue
            if isinstance(grad, tf.IndexedSlices):
                grad = grad.values
            sums[index].append(tf.reduce_sum(tf.square(tf.cast(grad, tf.float64))))
        nan = tf.constant(float("nan"), tf.float64)
        values = [tf.add_n(s) if s else nan for s in sums]
        # The optimizer's counter before this update: the step it completes.
        step = tf.cast(self._target.iterations, tf.float64) + 1.0
        self._record_var.assign(tf.stack(values + [step]))

    def read(self) -> tuple[int, dict[str, float]] | None:
        """The latest recorded step: `(global step, layer -> gradient norm)`.

        Returns None when no new step was recorded (e.g. the loss scaler
        skipped it). One host copy of a vector of length layers + 1.
        """
        if self._record_var is None:
            return None
        vector = self._record_var.numpy()
        if np.isnan(vector[-1]) or vector[-1] == self._last_step:
            return None
        self._last_step = vector[-1]
        norms = np.sqrt(vector[:-1])
        return int(vector[-1]), dict(zip(self.names, (float(v) for v in norms)))


def _strategy(model):
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None or strategy is tf.distribute.get_strategy():
        return None
    default = type(tf.distribute.get_strategy()).__name__
    return None if type(strategy).__name__ == default else strategy
