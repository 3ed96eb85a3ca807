"""Per-layer gradient norms of every training step, with no extra pass.

The train step hands its gradients to `model.optimizer.apply(grads, vars)`.
`GradientRecorder.attach()` puts a `GradientTap` in that place for the
length of a `fit`: a `keras.optimizers.Optimizer` that delegates everything
to the user's optimizer (its variables, learning rate, iteration count,
loss scaling, saving), as Keras's own `LossScaleOptimizer` wraps an inner
optimizer, and first reduces the gradients to one squared norm per layer on
the device. `detach()` gives the model back the very optimizer object it
had. Nothing is patched: the tap is an object in its own right, and the
train function is rebuilt with `model.make_train_function(force=True)`.

- Every step is recorded, also with `steps_per_execution > 1`: the norms go
  to row `step % steps_per_execution` of a small device buffer, which the
  callback copies to the host once per batch end.
- Under mixed precision the gradients arrive multiplied by the loss scale;
  they are divided by it, and a step the loss scaler skips (non-finite
  gradients) records nothing.
- Under a `tf.distribute` strategy the per-replica gradients are summed
  across replicas first (as the optimizer sums them), so the norms are
  those of the gradient that is applied.
- An embedding's gradient (`IndexedSlices`, rows repeated once per lookup)
  is summed per distinct row before its norm is taken.
- Saving the model during `fit` (e.g. `ModelCheckpoint`) saves the user's
  optimizer state in its own layout: the tap saves and loads exactly the
  inner optimizer's variables.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_initdiag.diagnostics.taps import Tap


def _row_sums(gradient) -> tf.Tensor:
    """Sum of squares of a gradient, in float64 (IndexedSlices summed by row)."""
    if isinstance(gradient, tf.IndexedSlices):
        rows, position = tf.unique(gradient.indices)
        gradient = tf.math.unsorted_segment_sum(
            gradient.values, position, tf.size(rows)
        )
    return tf.reduce_sum(tf.square(tf.cast(gradient, tf.float64)))


class GradientTap(keras.optimizers.Optimizer):
    """Delegates to an optimizer; records per-layer gradient norms first.

    Args:
        inner: The optimizer the model was compiled with.
        record: `(grads, variables) -> None`, called in the train step.

    Example:
    >>> tap = GradientTap(model.optimizer, recorder.record)
    """

    def __init__(self, inner: keras.optimizers.Optimizer, record):
        super().__init__(learning_rate=0.0, name=f"{inner.name}_initdiag_tap")
        # Closures, not attributes: saving walks an optimizer's attributes,
        # and the inner optimizer must be saved in its own place, not here.
        self._inner = lambda: inner
        self._record = lambda: record
        self.built = inner.built

    @property
    def inner_optimizer(self) -> keras.optimizers.Optimizer:
        """The user's optimizer."""
        return self._inner()

    def build(self, variables):
        """Build the user's optimizer."""
        self.inner_optimizer.build(variables)
        self.built = True

    @property
    def variables(self):
        """The user's optimizer's variables (this tap has none of its own)."""
        return self.inner_optimizer.variables

    @property
    def iterations(self):
        """The user's optimizer's step counter."""
        return self.inner_optimizer.iterations

    @property
    def learning_rate(self):
        """The user's optimizer's learning rate (settable)."""
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self.inner_optimizer.learning_rate = value

    def scale_loss(self, loss):
        """Scaled as the user's optimizer scales it (loss scaling)."""
        return self.inner_optimizer.scale_loss(loss)

    def apply(self, grads, trainable_variables=None):
        """Record the gradients' norms, then let the user's optimizer apply them."""
        if trainable_variables is not None:
            self._record()(list(grads), list(trainable_variables))
        return self.inner_optimizer.apply(grads, trainable_variables)

    def apply_gradients(self, grads_and_vars):
        """`apply` on pairs."""
        grads, variables = zip(*grads_and_vars)
        return self.apply(list(grads), list(variables))

    def finalize_variable_values(self, var_list):
        """As the user's optimizer does (e.g. EMA)."""
        self.inner_optimizer.finalize_variable_values(var_list)

    def save_own_variables(self, store):
        """Save the user's optimizer's variables, in its own layout."""
        self.inner_optimizer.save_own_variables(store)

    def load_own_variables(self, store):
        """Load the user's optimizer's variables."""
        self.inner_optimizer.load_own_variables(store)

    def get_config(self):
        """The user's optimizer's configuration."""
        return self.inner_optimizer.get_config()


class GradientRecorder:
    """Records per-layer gradient norms inside the compiled train step.

    Args:
        model: A compiled model.
        taps: The layers whose gradient norms are recorded.

    Example:
    >>> recorder = GradientRecorder(model, diagnoser.tapset.taps)
    >>> recorder.attach()           # at the start of fit
    >>> records = recorder.read()   # after a batch: [(step, {layer: norm})]
    >>> recorder.detach()           # the model's own optimizer again
    """

    def __init__(self, model: keras.Model, taps: list[Tap]):
        self.model = model
        with_weights = [tap for tap in taps if tap.weights]
        self.names = [tap.name for tap in with_weights]
        self._owner = {
            id(w): i for i, tap in enumerate(with_weights) for w in tap.weights
        }
        self.optimizer = None
        self._buffer = None  # [rows, squared norm per layer..., step]
        self._last_step = -1

    @staticmethod
    def supported(model: keras.Model) -> str | None:
        """None when recording works for `model`, else the reason it does not."""
        if getattr(model, "optimizer", None) is None:
            return "the model is not compiled with an optimizer"
        return None

    def attach(self) -> None:
        """Give the model a `GradientTap` and rebuild its train function."""
        if self.optimizer is not None:
            return
        self.optimizer = self.model.optimizer
        if not self.optimizer.built:
            # As Keras would at the first step; here, outside the train
            # function, so that the loss scale exists when it is traced.
            with self.model.distribute_strategy.scope():
                self.optimizer.build(self.model.trainable_variables)
        rows = int(getattr(self.model, "steps_per_execution", 1) or 1)
        with self.model.distribute_strategy.scope():
            self._buffer = tf.Variable(
                tf.fill([rows, len(self.names) + 1], tf.constant(-1.0, tf.float64)),
                trainable=False,
                synchronization=tf.VariableSynchronization.ON_WRITE,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
        self.model.optimizer = GradientTap(self.optimizer, self.record)
        self.model.make_train_function(force=True)

    def detach(self) -> None:
        """Give the model back its own optimizer (idempotent)."""
        if self.optimizer is None:
            return
        self.model.optimizer = self.optimizer
        self.optimizer = None
        self.model.make_train_function(force=True)

    def record(self, grads, variables) -> None:
        """Reduce the step's gradients to norms in the buffer (in the graph)."""
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        sums = [[] for _ in self.names]
        finite = []
        for grad, variable in zip(grads, variables):
            index = self._owner.get(id(variable))
            if grad is None or index is None:
                continue
            total = _row_sums(grad)
            finite.append(tf.math.is_finite(total))
            sums[index].append(total)
        inner = self.optimizer
        if isinstance(inner, keras.optimizers.LossScaleOptimizer):
            scale = tf.cast(inner.dynamic_scale, tf.float64)
            sums = [[s / tf.square(scale) for s in group] for group in sums]
        nan = tf.constant(float("nan"), tf.float64)
        values = [tf.add_n(group) if group else nan for group in sums]
        # The optimizer's counter before this update: the step it completes.
        step = tf.cast(inner.iterations, tf.float64) + 1.0
        row = tf.cast(inner.iterations, tf.int64) % self._buffer.shape[0]
        ok = tf.reduce_all(finite) if finite else tf.constant(True)
        update = tf.expand_dims(tf.stack(values + [step]), 0)
        written = tf.tensor_scatter_nd_update(self._buffer, [[row]], update)
        # No control flow around the assignment: under a strategy it is a
        # synchronization point, which a `tf.cond` branch may not contain.
        self._buffer.assign(tf.where(ok, written, self._buffer))

    def read(self) -> list[tuple[int, dict[str, float]]]:
        """Steps recorded since the last read: `[(step, {layer: norm})]`.

        One host copy of a `steps_per_execution x (layers + 1)` buffer.
        """
        if self._buffer is None:
            return []
        buffer = np.asarray(self._buffer.numpy())
        rows = sorted(
            (row for row in buffer if row[-1] > self._last_step),
            key=lambda row: row[-1],
        )
        if not rows:
            return []
        self._last_step = rows[-1][-1]
        return [
            (int(row[-1]), dict(zip(self.names, (float(v) for v in np.sqrt(row[:-1])))))
            for row in rows
        ]
