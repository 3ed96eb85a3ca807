"""The wrappers of the in-step path: an optimizer and a train function.

`RecordingOptimizer` is a `keras.optimizers.Optimizer` that delegates
everything to the user's optimizer, as Keras's own `LossScaleOptimizer`
wraps an inner one, and around the user's `apply` hands the step to its
`train_grads.GradientRecorder`.

It is `model.optimizer` only while a training step runs:
`RecordingTrainFunction`, which the recorder makes `model.train_function`,
puts it in place, calls the train function traced with it, and gives the
model back the user's very optimizer object in a `finally`. So after any
exit of `fit` (Ctrl-C, another callback's error, an out-of-memory error)
`model.optimizer` is the user's. One left in place by an interrupted `fit`
heals itself: called in a `fit` that did not arm it (the callback arms it
at every batch begin), it puts the model's own train function back and runs
that. A recording step that cannot be built gives way to the model's own
(`unbuildable`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import tensorflow as tf

if TYPE_CHECKING:
    from keras_initdiag.diagnostics.train_grads import GradientRecorder


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
