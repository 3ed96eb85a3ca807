"""Per-layer gradient norms of every training step, with no extra pass.

The train step hands its gradients to `model.optimizer.apply(grads, vars)`.
A `recording.RecordingOptimizer` in that place is a Keras optimizer that
delegates everything to the user's optimizer (its variables, learning rate,
iteration count, loss scaling, saving), as Keras's own `LossScaleOptimizer`
wraps an inner optimizer, and around the user's `apply` reduces the step
on the device: per layer the gradient norm, the main weight's norm, its
relative update and the norm of its update (`step_stats`), and the step's
learning rate and loss. Nothing is patched.

The recording optimizer is `model.optimizer` only while a training step
runs (`recording.RecordingTrainFunction`, which `GradientRecorder.attach()`
makes `model.train_function`). The traced function is kept across `fit`
calls (no retrace), and `detach()` gives the model back its own train
function object.

- Every step is recorded, also with `steps_per_execution > 1`: each goes to
  row `step % rows` of a small device buffer of `COPY_EVERY` steps, which
  the callback copies to the host before it wraps (`due`).
- Under mixed precision the gradients arrive multiplied by the loss scale;
  they are divided by it, and a step the loss scaler skips (non-finite
  gradients) records nothing.
- Under a `tf.distribute` strategy the per-replica gradients are summed
  across replicas first (as the optimizer sums them), so the norms are
  those of the gradient that is applied.
- An embedding's gradient (`IndexedSlices`, rows repeated once per lookup)
  is summed per distinct row before its norm is taken.
- The step's loss is the one Keras's train step tracks (`model.metrics`'
  "loss" mean, updated before the optimizer applies): the change of its
  running total over the change of its count, summed over the replicas
  under a strategy: the mean loss of the step's whole batch.
- Saving the model during `fit` (e.g. `ModelCheckpoint`) saves the user's
  optimizer itself: outside the step it is `model.optimizer`.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from keras_initdiag.diagnostics.recording import (
    RecordingOptimizer,
    RecordingTrainFunction,
    reason_of,
)
from keras_initdiag.diagnostics.step_stats import (
    combined_norms,
    euclidean,
    gradient_norm,
    main_weights,
    moved,
    norms,
    sample_scale,
    users_optimizer,
)
from keras_initdiag.diagnostics.step_stats import samples as samples_of
from keras_initdiag.diagnostics.taps import Tap

#: Steps between host copies of the in-step statistics (rounded up to whole
#: `steps_per_execution` calls): one small copy per 32 steps.
COPY_EVERY = 32
#: The per-layer columns of a recorded step, in buffer order. After them,
#: per step: the learning rate and the loss (`SCALARS`).
COLUMNS = ("gradient_norm", "weight_norm", "update_ratio", "update_norm")
SCALARS = ("learning_rate", "loss")


def loss_tracker(model: keras.Model) -> tuple | None:
    """The running `(total, count)` of the loss Keras's train step tracks.

    `model.metrics`' "loss" mean; None when the model is not compiled, or
    overrides `train_step`: a custom step may update its tracker after the
    optimizer applies (as Keras's guide does), and the recorder would read
    the step before's loss. No loss then, rather than a shifted one.
    """
    if type(model).train_step is not keras.Model.train_step:
        return None
    for metric in model.metrics:
        if metric.name == "loss" and isinstance(metric, keras.metrics.Mean):
            found = {v.name: v for v in metric.variables}
            if {"total", "count"} <= set(found):
                return found["total"], found["count"]
    return None


class GradientRecorder:
    """Records per-layer gradient norms inside the compiled train step.

    Args:
        model: A compiled model.
        taps: The layers whose gradient norms are recorded.

    Attributes:
        traces: How often the recording step was traced (once per model and
            compile, whatever the number of `fit` calls).
        armed: Set before every training step of a `fit` that records (the
            callback's `on_train_batch_begin`); cleared by the step.

    Example:
    >>> recorder = GradientRecorder(model, diagnoser.tapset.taps)
    >>> recorder.attach()           # at the start of fit
    >>> recorder.armed = True       # before each batch
    >>> records = recorder.read()   # after a batch: [(step, {layer: norm})]
    >>> recorder.detach()           # the model's own train function again
    """

    def __init__(self, model: keras.Model, taps: list[Tap]):
        self.model = model
        with_weights = [tap for tap in taps if tap.trainable_weights]
        self.names = [tap.name for tap in with_weights]
        self._owner = {
            id(w): i
            for i, tap in enumerate(with_weights)
            for w in tap.trainable_weights
        }
        # Each layer's main weight and the fixed entries whose update is
        # measured (`step_stats.main_weights`, the same as `UpdateTracker`'s).
        position = {tap.name: i for i, tap in enumerate(with_weights)}
        self._main = {
            id(weight): (position[tap.name], picks)
            for tap, weight, picks in main_weights(with_weights)
        }
        self.optimizer = None  # the user's
        self.recording: RecordingOptimizer | None = None
        self._function: RecordingTrainFunction | None = None
        self._buffer = None  # [rows, COLUMNS per layer, then SCALARS]
        self._steps = None  # [rows]: the step each row holds (-1: none yet)
        self._tracker = None  # `loss_tracker(model)`, found at `_build`
        self._seen = None  # its summed total and count after the last step
        self._last_step = -1
        self.attached = False
        self.armed = False
        self.traces = 0
        self.per_call = 1
        self.xla = False  # whether the train step is compiled with XLA
        self.ran = False  # whether the recording step ever ran
        #: Why recording gave up for good (`fail`), or None.
        self.broken: str | None = None
        #: Called with `broken` when it gives up.
        self.on_failure = None
        self.calls_since_read = 0

    @staticmethod
    def supported(model: keras.Model) -> str | None:
        """None when recording works for `model`, else the reason it does not."""
        if getattr(model, "optimizer", None) is None:
            return "the model is not compiled with an optimizer"
        return None

    def attach(self) -> None:
        """Make `model.train_function` record (traced once, kept across fits).

        Nothing once it gave up (`broken`).
        """
        if self.broken is not None:
            return
        model = self.model
        # Keras resets its loss tracker at every epoch's start, so each fit
        # starts counting afresh (a later fit's batches may be larger).
        if self._seen is not None:
            self._seen.assign(tf.zeros([2]))
        if self._function is not None and model.train_function is self._function:
            self.attached = True  # still in place (an interrupted fit)
            return
        if model.train_function is None:
            model.make_train_function()
        current = model.train_function
        if (
            isinstance(current, RecordingTrainFunction)
            and current is not self._function
        ):
            current = current.original  # another recorder's, left behind
        if (
            self._function is None
            or self.optimizer is not model.optimizer
            or current not in (self._function, self._function.original)
        ):
            self._build(current)  # its counts start at zero
        model.train_function = self._function
        self.attached = True

    def _build(self, original) -> None:
        model = self.model
        self.optimizer = model.optimizer
        if not self.optimizer.built:
            # As Keras would at the first step; here, outside the train
            # function, so that the loss scale exists when it is traced.
            with model.distribute_strategy.scope():
                self.optimizer.build(model.trainable_variables)
        per_call = int(getattr(model, "steps_per_execution", 1) or 1)
        # Room for COPY_EVERY steps (whole calls): copied to the host that
        # often, not at every batch end.
        rows = per_call * max(1, math.ceil(COPY_EVERY / per_call))
        self.per_call = per_call
        # Keras's own resolution of `jit_compile` ("auto": XLA wherever there
        # is an accelerator): the norms must then be ops XLA can compile.
        self.xla = bool(model.jit_compile)
        with model.distribute_strategy.scope():
            kept = dict(
                trainable=False,
                synchronization=tf.VariableSynchronization.ON_WRITE,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            width = len(COLUMNS) * len(self.names) + len(SCALARS)
            self._buffer = tf.Variable(tf.zeros([rows, width], tf.float32), **kept)
            self._steps = tf.Variable(
                tf.fill([rows], tf.constant(-1, tf.int64)), **kept
            )
            self._seen = tf.Variable(tf.zeros([2], tf.float32), **kept)
        self._tracker = loss_tracker(model)
        self.recording = RecordingOptimizer(self.optimizer, self)
        # A new train function object (traced lazily, at its first call, when
        # the recording optimizer is in place); the model keeps its own.
        model.make_train_function(force=True)
        traced, model.train_function = model.train_function, original
        self._function = RecordingTrainFunction(self, traced, original)
        self._last_step = -1
        self.ran = False

    def fail(self, error: BaseException) -> None:
        """Give up for good: the recording step failed where the model's ran."""
        self.broken = reason_of(error)
        self.detach()
        if self.on_failure is not None:
            self.on_failure(self.broken)

    def detach(self) -> None:
        """Give the model back its own train function (idempotent)."""
        self.attached = self.armed = False
        if self._function is not None and self.model.train_function is self._function:
            self.model.train_function = self._function.original

    def _mains(self, variables) -> tuple[list, list, list]:
        """The main weights among `variables`: their layers, them, their picks."""
        found = [(*self._main[id(v)], v) for v in variables if id(v) in self._main]
        layers, picks, weights = (list(c) for c in zip(*found)) if found else ([],) * 3
        return layers, weights, picks

    def before(self, variables) -> dict:
        """The sampled main weights and the learning rate before the update."""
        samples = {
            "rate": tf.cast(users_optimizer(self.optimizer).learning_rate, tf.float32)
        }
        _, weights, picks = self._mains(variables)
        if weights:
            samples["weights"] = samples_of(weights, picks)
        return samples

    def record(self, grads, variables, before=None) -> None:
        """Reduce the step to per-layer numbers in the buffer (in the graph).

        Per layer: the gradient's norm, the main weight's norm after the
        update, its relative update `||W_after - W_before|| / ||W_before||`
        over the sampled entries, and its update's norm `||W_after -
        W_before||` (the sampled one times `sample_scale`: exact for a
        weight sampled whole); and the step's learning rate and loss.
        Every statistic is reduced for all layers at once (stacked vectors,
        segment sums): the op count grows with the weights by a few reads
        and reductions each, not by a per-layer combination.
        """
        self.traces += 1
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        inner = self.optimizer
        unscale = None
        if isinstance(inner, keras.optimizers.LossScaleOptimizer):
            unscale = 1.0 / tf.cast(inner.dynamic_scale, tf.float32)
        n = len(self.names)
        nan = tf.constant(float("nan"), tf.float32)
        dense, dense_owners, sparse, sparse_owners = [], [], [], []
        for grad, variable in zip(grads, variables):
            index = self._owner.get(id(variable))
            if grad is None or index is None:
                continue
            if isinstance(grad, tf.IndexedSlices):  # rows summed first
                sparse.append(gradient_norm(grad, unscale))
                sparse_owners.append(index)
                continue
            grad = tf.cast(grad, tf.float32)
            dense.append(grad if unscale is None else grad * unscale)
            dense_owners.append(index)
        xla = self.xla
        parts = [norms(dense, xla)] if dense else []
        parts += [tf.stack(sparse)] if sparse else []
        owners = dense_owners + sparse_owners
        if owners:
            parts = tf.concat(parts, 0) if len(parts) > 1 else parts[0]
            ok = tf.reduce_all(tf.math.is_finite(parts))
            # A layer's norm from its weights' norms: the same scaled sum.
            has = tf.constant(np.isin(np.arange(n), owners))
            gradient = tf.where(has, combined_norms(parts, owners, n), nan)
        else:
            ok, gradient = tf.constant(True), tf.fill([n], nan)
        layers, weights, picks = self._mains(variables)
        m = len(weights)
        # Weights and their updates are far from float32's limits (a
        # gradient of 1e-25 per entry is not): one plain reduction each.
        weight_norms = [
            euclidean(tf.cast(w.value, tf.float32), xla=xla) for w in weights
        ]
        ratios = updates = tf.fill([m], nan)
        if m and before is not None and "weights" in before:
            change, size = tf.unstack(
                moved(samples_of(weights, picks), before["weights"], xla), axis=1
            )
            ratios = change / size  # NaN from a weight of all zeros, as 0 / 0
            updates = change * tf.constant(sample_scale(weights, picks), tf.float32)
        # The main weights' columns (COLUMNS after the gradient's), stacked;
        # each layer's slot in each: its main weight's, or the NaN at the end.
        columns = [tf.stack(weight_norms), ratios, updates] if m else []
        end = len(columns) * m
        slot = np.full(n, -1)
        slot[layers] = np.arange(m)
        where = np.concatenate(
            [np.where(slot >= 0, slot + k * m, end) for k in range(len(COLUMNS) - 1)]
        )
        by_layer = tf.gather(tf.concat([*columns, [nan]], 0), where)
        rate = nan if before is None else before["rate"]
        values = tf.concat([gradient, by_layer, [rate, self._step_loss(context)]], 0)
        # The optimizer's counter after the update is the step it completed
        # (a step the loss scaler skipped leaves the row as it was: `ok`).
        step = tf.cast(inner.iterations, tf.int64)
        row = step % self._buffer.shape[0]
        written = tf.tensor_scatter_nd_update(self._buffer, [[row]], [values])
        steps = tf.tensor_scatter_nd_update(self._steps, [[row]], [step])
        # No control flow around the assignments: under a strategy they are
        # synchronization points, which a `tf.cond` branch may not contain.
        self._buffer.assign(tf.where(ok, written, self._buffer))
        self._steps.assign(tf.where(ok, steps, self._steps))

    def _step_loss(self, context) -> tf.Tensor:
        """The step's mean loss from Keras's loss tracker (NaN without one).

        Its running total and count include this step (the train step
        updates them before the optimizer applies); a count that did not
        grow means Keras reset them (a new epoch). Remembered whether or
        not the step is recorded (a step the loss scaler skips).
        """
        if self._tracker is None:
            return tf.constant(float("nan"), tf.float32)
        now = tf.stack([tf.cast(v.value, tf.float32) for v in self._tracker])
        if context is not None and context.num_replicas_in_sync > 1:
            now = context.all_reduce(tf.distribute.ReduceOp.SUM, now)
        seen = tf.where(now[1] > self._seen[1], self._seen, tf.zeros([2]))
        self._seen.assign(now)
        return (now[0] - seen[0]) / (now[1] - seen[1])

    @property
    def due(self) -> bool:
        """Whether the buffer must be copied now (before it wraps around)."""
        rows = self._buffer.shape[0] if self._buffer is not None else 0
        return rows > 0 and (self.calls_since_read + 1) * self.per_call > rows

    def read(self) -> dict[str, list[tuple[int, dict[str, float]]]]:
        """Steps recorded since the last read, per statistic.

        Returns:
            `{column: [(step, {layer: value})]}` for each of `COLUMNS`, and
            `{scalar: [(step, {"": value})]}` for each of `SCALARS` (the
            learning rate, the loss). Two small host copies: the buffer and
            the step each row holds.
        """
        self.calls_since_read = 0
        if self._buffer is None:
            return {}
        values, steps = (np.asarray(v) for v in (self._buffer, self._steps))
        order = [i for i in np.argsort(steps) if steps[i] > self._last_step]
        if not order:
            return {}
        self._last_step = int(steps[order[-1]])
        n = len(self.names)
        out = {}
        for k, column in enumerate(COLUMNS):
            out[column] = [
                (
                    int(steps[i]),
                    dict(zip(self.names, values[i, k * n : (k + 1) * n].tolist())),
                )
                for i in order
            ]
        for k, scalar in enumerate(SCALARS, start=len(COLUMNS) * n):
            out[scalar] = [(int(steps[i]), {"": float(values[i, k])}) for i in order]
        return out
