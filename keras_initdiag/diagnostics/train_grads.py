"""Per-layer gradient norms of every training step, with no extra pass.

The train step hands its gradients to `model.optimizer.apply(grads, vars)`.
A `RecordingOptimizer` in that place is a `keras.optimizers.Optimizer` that
delegates everything to the user's optimizer (its variables, learning rate,
iteration count, loss scaling, saving), as Keras's own `LossScaleOptimizer`
wraps an inner optimizer, and around the user's `apply` reduces the step
on the device: per layer the gradient norm, the main weight's norm and its
relative update (`step_stats`), and the step's learning rate. Nothing is
patched.

The recording optimizer is `model.optimizer` only while a training step
runs: `GradientRecorder.attach()` makes `model.train_function` a
`RecordingTrainFunction`, which puts the recording optimizer in place, calls
the train function traced with it, and gives the model back the user's very
optimizer object in a `finally`. So after any exit of `fit` (Ctrl-C,
another callback's error, an out-of-memory error) `model.optimizer` is the
user's. The traced function is kept across `fit` calls (no retrace), and
`detach()` gives the model back its own train function object. One left in
place by an interrupted `fit` heals itself: called in a `fit` that did not
arm it (the callback arms it at every batch begin), it puts the model's own
train function back and runs that.

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
- Saving the model during `fit` (e.g. `ModelCheckpoint`) saves the user's
  optimizer itself: outside the step it is `model.optimizer`.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from keras_initdiag.diagnostics.step_stats import (
    combined_norms,
    euclidean,
    gradient_norm,
    main_weights,
    moved,
    norms,
    users_optimizer,
)
from keras_initdiag.diagnostics.step_stats import samples as samples_of
from keras_initdiag.diagnostics.taps import Tap

#: Steps between host copies of the in-step statistics (rounded up to whole
#: `steps_per_execution` calls): one small copy per 32 steps.
COPY_EVERY = 32
#: The per-layer columns of a recorded step, in buffer order.
COLUMNS = ("gradient_norm", "weight_norm", "update_ratio")


class RecordingOptimizer(keras.optimizers.Optimizer):
    """Delegates to an optimizer; records per-layer gradient norms first.

    Args:
        inner: The optimizer the model was compiled with.
        recorder: Its `before(variables)` is called in the train step before
            the update, its `record(grads, variables, before)` after it.

    Example:
    >>> recording = RecordingOptimizer(model.optimizer, recorder)
    """

    def __init__(self, inner: keras.optimizers.Optimizer, recorder):
        super().__init__(learning_rate=0.0, name=f"{inner.name}_initdiag_tap")
        # Closures, not attributes: saving walks an optimizer's attributes,
        # and the inner optimizer must be saved in its own place, not here.
        self._inner = lambda: inner
        self._recorder = lambda: recorder
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
        """Let the user's optimizer apply the gradients; record the step.

        The recorder samples the main weights before the update and reduces
        the gradients, the weights and the update after it.
        """
        if trainable_variables is None:
            return self.inner_optimizer.apply(grads, trainable_variables)
        grads, variables = list(grads), list(trainable_variables)
        recorder = self._recorder()
        before = recorder.before(variables)
        result = self.inner_optimizer.apply(grads, variables)
        recorder.record(grads, variables, before)
        return result

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


#: Words of TensorFlow's errors for a graph it could not compile.
_COMPILE_ERRORS = (
    "unsupported operations",
    "No registered",
    "tf2xla conversion failed",
)
#: TensorFlow's boilerplate lines around an error's reason.
_BOILERPLATE = ("Graph execution error", "Detected at node", "<stack traces")


def unbuildable(error: BaseException) -> bool:
    """Whether `error` says a step could not be built, not that it ran badly.

    A Python error is raised while tracing; of TensorFlow's run-time
    errors, only compile failures (`UnimplementedError`, or XLA's "Detected
    unsupported operations") count: a bad value in the data does not.
    """
    if isinstance(error, tf.errors.UnimplementedError):
        return True
    if isinstance(error, tf.errors.OpError):
        return any(words in str(error) for words in _COMPILE_ERRORS)
    return True


def reason_of(error: BaseException) -> str:
    """The first line of `error` that says why, in 200 characters at most."""
    lines = [line.strip() for line in str(error).splitlines()]
    useful = [line for line in lines if line and not line.startswith(_BOILERPLATE)]
    return f"{type(error).__name__}: {(useful or [''])[0][:200]}"


class RecordingTrainFunction:
    """`model.train_function` while a `GradientRecorder` is attached.

    Calls the train function traced with the recording optimizer, with that
    optimizer in `model.optimizer` only for the length of the call.

    Args:
        recorder: The recorder that owns it.
        traced: The train function built with the recording optimizer.
        original: The model's own train function, given back by `detach`.
    """

    def __init__(self, recorder: GradientRecorder, traced, original):
        self.recorder = recorder
        self.traced = traced
        self.original = original

    def __call__(self, iterator):
        """Run one call of the train function (one or more steps).

        If the recording step cannot be built at its first call (an error
        while tracing, or a compile error such as an op XLA lacks:
        `unbuildable`) and the model's own step then runs, the recording is
        at fault: the recorder gives up (`GradientRecorder.fail`) and
        training goes on. Nothing of the failed call ran. If the model's
        own step fails too, that error is the user's and propagates, as
        does any error of a step that ran (a bad label in the data).
        """
        recorder = self.recorder
        model = recorder.model
        if not recorder.armed:
            # Left behind by a `fit` that was interrupted: not ours any more.
            if model.train_function is self:
                model.train_function = self.original
            return self.original(iterator)
        recorder.armed = False
        recorder.calls_since_read += 1
        users = model.optimizer
        model.optimizer = recorder.recording
        try:
            result = self.traced(iterator)
        except Exception as error:
            if recorder.ran or not unbuildable(error):
                raise  # the step ran, or a data error: not the recording's
            failure = error
        else:
            recorder.ran = True
            return result
        finally:
            model.optimizer = users
        result = self.original(iterator)
        recorder.fail(failure)
        return result


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
        self._buffer = None  # [rows, gradient norm per layer]
        self._steps = None  # [rows]: the step each row holds (-1: none yet)
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
            self._build(current)
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
            self._buffer = tf.Variable(
                tf.zeros([rows, len(COLUMNS) * len(self.names) + 1], tf.float32),
                **kept,
            )
            self._steps = tf.Variable(
                tf.fill([rows], tf.constant(-1, tf.int64)), **kept
            )
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
        update, and its relative update `||W_after - W_before|| /
        ||W_before||` over the sampled entries; and the step's learning rate.
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
        ratios = tf.fill([m], nan)
        if m and before is not None and "weights" in before:
            change, size = tf.unstack(
                moved(samples_of(weights, picks), before["weights"], xla), axis=1
            )
            ratios = change / size  # NaN from a weight of all zeros, as 0 / 0
        # Each layer's slot among the stacked values: its main weight's, or
        # the NaN at the end.
        slot = np.full(n, 2 * m)
        slot[layers] = np.arange(m)
        where = np.r_[slot, np.where(slot < m, slot + m, 2 * m)]
        found = tf.concat([tf.stack(weight_norms), ratios, [nan]], 0) if m else [nan]
        by_layer = tf.gather(found, where)
        rate = nan if before is None else before["rate"]
        values = tf.concat([gradient, by_layer, [rate]], 0)
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

    @property
    def due(self) -> bool:
        """Whether the buffer must be copied now (before it wraps around)."""
        rows = self._buffer.shape[0] if self._buffer is not None else 0
        return rows > 0 and (self.calls_since_read + 1) * self.per_call > rows

    def read(self) -> dict[str, list[tuple[int, dict[str, float]]]]:
        """Steps recorded since the last read, per statistic.

        Returns:
            `{column: [(step, {layer: value})]}` for each of `COLUMNS`, and
            `"learning_rate": [(step, {"": rate})]`. Two small host copies:
            the buffer and the step each row holds.
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
        out["learning_rate"] = [
            (int(steps[i]), {"": float(values[i, -1])}) for i in order
        ]
        return out
