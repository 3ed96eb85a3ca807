"""The one diagnosis function: forward, loss, gradients, reductions -> one vector.

`Probe` is built once per model (and tap selection, loss and measurement
mode). Its first `EAGER_CALLS` calls run eagerly, then one `tf.function` per
input signature runs the same code. It runs the view of the model
statelessly (`stateless`: every variable read into a tensor, whatever the
layers would write dropped), so the model runs exactly as `fit` runs it
(training mode by default: batch statistics in normalization layers,
dropout on with a fixed seed), and no variable changes. It then computes
the loss, the gradients with respect to every tapped output, the model's
inputs and the weights (`backward`), reduces everything on the device, and
returns a single float32 vector, which the host copies once.
"""

from __future__ import annotations

import math
import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_initdiag.diagnostics import backward, reduce, stateless
from keras_initdiag.diagnostics.backward import FLOAT16_LOSS_SCALE as FLOAT16_LOSS_SCALE
from keras_initdiag.diagnostics.loss import ProbeLoss
from keras_initdiag.diagnostics.reduce import DEVICE_FIELDS, f32
from keras_initdiag.diagnostics.taps import Tap, TapSet

_NAN = float("nan")
#: Calls a probe runs eagerly before it compiles its `tf.function`. Tracing
#: and compiling cost as much as about ten eager runs (a 20x256 MLP: 1.1 s
#: against 0.13 s per eager run and 0.02 s compiled; ResNet50 at 32x32:
#: 10 s against 2 s and 0.5 s), so a `fit` diagnosed once per epoch for a
#: few epochs, and a one-shot `diagnose()`, never pay for it, while a
#: frequent schedule compiles once, at its fifth diagnosis. Both paths run
#: the same function, with one host copy per call.
EAGER_CALLS = 4


class Probe:
    """The compiled diagnosis of one model.

    Args:
        tapset: The taps and view (`taps.build_taps`).
        model: The model (held weakly).
        loss: A `ProbeLoss`, or None for forward statistics only.
        training: Run the forward pass with training-mode semantics (batch
            statistics in normalization layers, dropout on). Defaults to
            `True`.
        histograms: Also return the raw tensors for histogram summaries.

    Example:
    >>> probe = Probe(build_taps(model), model, ProbeLoss.resolve(model, None))
    >>> vector = probe(x, y)      # one float32 vector, one host copy later
    """

    def __init__(
        self,
        tapset: TapSet,
        model: keras.Model,
        loss: ProbeLoss | None = None,
        training: bool = True,
        histograms: bool = False,
    ):
        self.tapset = tapset
        self._model = weakref.ref(model)
        self.loss = loss
        self.training = bool(training)
        self.histograms = histograms
        self.trainable, self.non_trainable = stateless.split_variables(tapset, model)
        # Every variable the reductions read: main weights and trainable ones.
        self.measured = stateless.unique(
            [
                w
                for tap in tapset.taps
                for w in [
                    tap.main_variable,
                    *tap.trainable_weights,
                    tap.bias,
                    tap.scale,
                ]
                if w is not None
            ]
        )
        self.scale = backward.loss_scale(model)
        self._functions: dict = {}
        self.traces = 0
        self.calls = 0

    @property
    def model(self) -> keras.Model:
        """The model (raises if it was garbage-collected)."""
        model = self._model()
        if model is None:
            raise ReferenceError("The model of this probe no longer exists.")
        return model

    @property
    def width(self) -> int:
        """Length of the returned vector: one row per tap, plus the loss."""
        return len(self.tapset.taps) * len(DEVICE_FIELDS) + 1

    def __call__(self, x, y=None, searches: bool = True):
        """Run the probe; returns the vector (and histogram tensors if asked).

        Args:
            x: Inputs (tensors in the model's input structure).
            y: Targets, or None for forward statistics only.
            searches: Also search for duplicate units and identical kernels (the
                costliest reductions; symmetry is set at initialization, so
                the callback asks for them at step 0 and once per epoch).
                A tensor argument: both settings share one trace.
        """
        if y is not None and self.loss is not None and not self.loss.built:
            self._build_loss(x, y)
        y = y if self.loss is not None else None
        self.calls += 1
        if self.calls <= EAGER_CALLS:
            x, y = _tensors(x), _tensors(y)
            return self._run(x, y, tf.constant(bool(searches)))
        function = self._function(x, y)
        if y is None:
            return function(x, tf.constant(bool(searches)))
        return function(x, y, tf.constant(bool(searches)))

    def _function(self, x, y):
        """One `tf.function` per input signature; the batch size is free."""
        signature = (_specs(x, self.tapset.view), _specs(y, None))
        key = repr(signature)
        if key not in self._functions:
            if y is None:

                def run(x, searches):
                    self.traces += 1  # Python side effect: counts traces.
                    return self._run(x, None, searches)

                specs = [signature[0], tf.TensorSpec([], tf.bool)]
            else:

                def run(x, y, searches):
                    self.traces += 1  # Python side effect: counts traces.
                    return self._run(x, y, searches)

                specs = [signature[0], signature[1], tf.TensorSpec([], tf.bool)]
            self._functions[key] = tf.function(
                run, input_signature=specs, autograph=False
            )
        return self._functions[key]

    def _build_loss(self, x, y) -> None:
        """Build the compiled loss's trackers eagerly, on two samples."""
        model = self.model
        head = tf.nest.map_structure(lambda a: a[:2], x)
        target = tf.nest.map_structure(lambda a: a[:2], y)
        with stateless.read_only(model, collect_losses=False):
            preds = model(head, training=False)
        self.loss.build(model, head, target, preds)

    def _inputs_as_given(self, tapped: list, x) -> list:
        """Tapped outputs, with each model input taken as the tensor given.

        The view may hand its inputs back converted (e.g. cast for a mixed
        precision policy); the tensor passed in is the one the gradient
        reaches. Each input is found by its position in the input structure,
        recorded when the graph was traced: inputs that are not measured
        (integer ids, inputs left out by `layers=`) shift nothing.
        """
        given = tf.nest.flatten(x)
        tapped = list(tapped)
        for tap in self.tapset.taps:
            position = tap.node.position
            if tap.node.kind == "input" and tap.output_index is not None:
                if 0 <= position < len(given):
                    tapped[tap.output_index] = given[position]
        return tapped

    def _run(self, x, y, searches):
        model = self.model
        values = [tf.identity(v.value) for v in self.trainable]
        inputs = [t for t in tf.nest.flatten(x) if t.dtype.is_floating]
        with tf.GradientTape(watch_accessed_variables=False, persistent=True) as tape:
            tape.watch(values + inputs)
            with stateless.scope(self.trainable, values, self.non_trainable):
                preds, tapped = stateless.forward(self.tapset, model, x, self.training)
                tapped = self._inputs_as_given(tapped, x)
                tape.watch(tapped)
                loss = None
                if self.loss is not None and y is not None:
                    loss = self.loss(model, x, y, preds)
        current = {id(v): value for v, value in zip(self.trainable, values)}
        if loss is not None:
            grads = backward.gradients(tape, loss, list(tapped) + values, self.scale)
            out_grads, weight_grads = grads[: len(tapped)], grads[len(tapped) :]
        else:
            out_grads, weight_grads = [None] * len(tapped), [None] * len(values)
        del tape
        by_id = {id(v): g for v, g in zip(self.trainable, weight_grads)}
        taps = self.tapset.taps
        outputs = [_tapped(tapped, tap) for tap in taps]
        gradients = [_tapped(out_grads, tap) for tap in taps]
        measured = self.measured
        measured_values = [
            f32(current[id(v)] if id(v) in current else tf.identity(v.value))
            for v in measured
        ]
        measured_grads = [f32(by_id.get(id(v))) for v in measured]
        table = reduce.Table(len(taps))
        reduce.output_stats(table, taps, outputs, searches)
        reduce.gradient_stats(table, taps, gradients)
        reduce.weight_stats(
            table, taps, measured, measured_values, measured_grads, searches
        )
        loss_value = tf.constant(_NAN) if loss is None else tf.cast(loss, tf.float32)
        vector = tf.concat([table.vector(), [loss_value]], axis=0)
        if not self.histograms:
            return vector
        hist = _histograms(taps, outputs, measured, measured_values, measured_grads)
        return vector, hist


def _tapped(tensors: list, tap: Tap):
    if tap.output_index is None:
        return None
    return f32(tensors[tap.output_index])


def _tensors(structure):
    """Arrays as tensors of their own dtype, as a `tf.function` takes them."""
    if structure is None:
        return None
    return tf.nest.map_structure(
        lambda a: tf.convert_to_tensor(a, tf.as_dtype(a.dtype)), structure
    )


def _specs(structure, view):
    """`tf.TensorSpec`s of a batch with a free batch size.

    Dimensions the model's inputs leave free (e.g. a sequence length) are
    free too, so one trace serves every probe batch that fits the model.
    """
    if structure is None:
        return None
    free = []
    if view is not None:
        free = [tuple(t.shape) for t in tf.nest.flatten(view.input)]

    def spec(array, model_shape=None):
        shape = list(array.shape)
        shape[0] = None
        if model_shape is not None and len(model_shape) == len(shape):
            shape = [None if m is None else s for s, m in zip(shape, model_shape)]
        return tf.TensorSpec(shape, tf.as_dtype(array.dtype))

    flat = tf.nest.flatten(structure)
    shapes = free if len(free) == len(flat) else [None] * len(flat)
    specs = [spec(a, s) for a, s in zip(flat, shapes)]
    return tf.nest.pack_sequence_as(structure, specs)


def _histograms(taps, outputs, measured, values, grads) -> dict:
    index = {id(v): k for k, v in enumerate(measured)}
    hist = {}
    for tap, output in zip(taps, outputs):
        if tap.main_variable is not None:
            hist[f"weights/{tap.name}"] = values[index[id(tap.main_variable)]]
        if output is not None:
            hist[f"activations/{tap.name}"] = output
        own = [grads[index[id(w)]] for w in tap.trainable_weights]
        own = [tf.reshape(g, [-1]) for g in own if g is not None]
        if own:
            hist[f"gradients/{tap.name}"] = tf.concat(own, 0)
    return hist


def decode(probe: Probe, vector: np.ndarray):
    """Split the host copy of the vector into per-tap values and the loss.

    Returns:
        `(values, loss)`: tap name -> {field -> float} for every field of
        `DEVICE_FIELDS`, and the probe loss.
    """
    vector = np.asarray(vector, dtype=np.float64)
    width = len(DEVICE_FIELDS)
    values = {}
    for i, tap in enumerate(probe.tapset.taps):
        row = vector[i * width : (i + 1) * width]
        values[tap.name] = {name: float(v) for name, v in zip(DEVICE_FIELDS, row)}
    loss = float(vector[-1]) if vector.size else math.nan
    return values, loss
