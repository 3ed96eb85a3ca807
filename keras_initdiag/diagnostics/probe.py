"""The one diagnosis function: forward, loss, gradients, reductions -> one vector.

`Probe` is built once per model (and tap selection, loss and measurement
mode). Its first `EAGER_CALLS` calls run eagerly, then one `tf.function` per
input signature runs the same code. It runs the view of the model
statelessly inside a `keras.StatelessScope`: every variable is read into a
tensor, the layers see those tensors, and whatever they would write
(BatchNormalization's moving statistics, dropout's seed-generator state, the
loss trackers) goes to the scope and is dropped. So the model runs exactly
as `fit` runs it (training mode by default: batch statistics in
normalization layers, dropout on), and no variable changes. It then computes
the loss, the gradients with respect to every tapped output, the model's
inputs and the weights, reduces everything on the device, and returns a
single float32 vector, which the host copies once.

Random layers (dropout, noise) draw from a fixed seed in every diagnosis, so
two diagnoses of the same weights give the same numbers and the model's own
random state never moves.
"""

from __future__ import annotations

import math
import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_initdiag.diagnostics import reduce
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
#: Under float16 compute, the probe first scales its loss by this power of
#: two (exact in binary) and divides the gradients back in float32, so that
#: small back-propagated gradients do not underflow float16 (smallest
#: subnormal 6e-8). When that overflows, it tries the unscaled loss, then
#: `1 / FLOAT16_LOSS_SCALE`: only gradients that overflow at every scale
#: are reported as non-finite, as Keras's `LossScaleOptimizer` would skip
#: them at every scale too.
FLOAT16_LOSS_SCALE = 2.0**10
_SEED_STATE = "seed_generator_state"


def _unique(variables) -> list:
    seen, out = set(), []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


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
        self.trainable, self.non_trainable = split_variables(tapset, model)
        # Every variable the reductions read: main weights and trainable ones.
        self.measured = _unique(
            [
                w
                for tap in tapset.taps
                for w in [tap.main_weight, *tap.weights, tap.bias, tap.scale]
                if w is not None
            ]
        )
        self.scale = FLOAT16_LOSS_SCALE if _computes_in_float16(model) else 1.0
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

    def __call__(self, x, y=None, full: bool = True):
        """Run the probe; returns the vector (and histogram tensors if asked).

        Args:
            x: Inputs (tensors in the model's input structure).
            y: Targets, or None for forward statistics only.
            full: Also search for duplicate units and identical kernels (the
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
            return self._run(x, y, tf.constant(bool(full)))
        function = self._function(x, y)
        if y is None:
            return function(x, tf.constant(bool(full)))
        return function(x, y, tf.constant(bool(full)))

    def _function(self, x, y):
        """One `tf.function` per input signature; the batch size is free."""
        signature = (_specs(x, self.tapset.view), _specs(y, None))
        key = repr(signature)
        if key not in self._functions:
            if y is None:

                def run(x, full):
                    self.traces += 1  # Python side effect: counts traces.
                    return self._run(x, None, full)

                specs = [signature[0], tf.TensorSpec([], tf.bool)]
            else:

                def run(x, y, full):
                    self.traces += 1  # Python side effect: counts traces.
                    return self._run(x, y, full)

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
        mapping = [(v, v.value) for v in model.variables]
        with keras.StatelessScope(state_mapping=mapping):
            preds = model(head, training=False)
        self.loss.build(model, head, target, preds)

    def _forward(self, model, x):
        return forward(self.tapset, model, x, self.training)

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

    def _run(self, x, y, full):
        model = self.model
        values = [tf.identity(v.value) for v in self.trainable]
        inputs = [t for t in tf.nest.flatten(x) if t.dtype.is_floating]
        with tf.GradientTape(watch_accessed_variables=False, persistent=True) as tape:
            tape.watch(values + inputs)
            scope = keras.StatelessScope(
                state_mapping=state_mapping(self.trainable, values, self.non_trainable),
                collect_losses=True,
            )
            with scope:
                preds, tapped = self._forward(model, x)
                tapped = self._inputs_as_given(tapped, x)
                tape.watch(tapped)
                loss = None
                if self.loss is not None and y is not None:
                    loss = self.loss(model, x, y, preds)
        current = {id(v): value for v, value in zip(self.trainable, values)}
        if loss is not None:
            grads = _gradients(tape, loss, list(tapped) + values, self.scale)
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
        reduce.output_stats(table, taps, outputs, full)
        reduce.gradient_stats(table, taps, gradients)
        reduce.weight_stats(
            table, taps, measured, measured_values, measured_grads, full
        )
        loss_value = tf.constant(_NAN) if loss is None else tf.cast(loss, tf.float32)
        vector = tf.concat([table.vector(), [loss_value]], axis=0)
        if not self.histograms:
            return vector
        hist = _histograms(taps, outputs, measured, measured_values, measured_grads)
        return vector, hist


def split_variables(tapset: TapSet, model: keras.Model) -> tuple[list, list]:
    """`(trainable, other)` variables of the view and the model, each once."""
    source = tapset.view if tapset.view is not None else model
    trainable = _unique(
        list(source.trainable_variables) + list(model.trainable_variables)
    )
    ids = {id(v) for v in trainable}
    every = _unique(list(source.variables) + list(model.variables))
    return trainable, [v for v in every if id(v) not in ids]


def state_mapping(trainable: list, values: list, non_trainable: list) -> list:
    """`(variable, value)` for a stateless call; seed states are fixed.

    Trainable variables map to `values` (tensors a tape can watch), the
    others to their current values, except seed-generator states, which map
    to a fixed seed each: random layers draw the same numbers at every
    diagnosis, and the model's own random state never moves.
    """
    mapping = list(zip(trainable, values))
    seeds = 0
    for variable in non_trainable:
        if variable.name == _SEED_STATE:
            seeds += 1
            value = tf.constant([1337 + seeds, 0], dtype=variable.dtype)
        else:
            value = tf.identity(variable.value)
        mapping.append((variable, value))
    return mapping


def forward(tapset: TapSet, model: keras.Model, x, training: bool):
    """`(predictions, tapped outputs)` of the view (or the model without one).

    Call it inside a `keras.StatelessScope` (see `stateless_forward`).
    """
    if tapset.view is None:
        return model(x, training=training), []
    out = tapset.view(x, training=training)
    return out["outputs"], list(out["taps"])


def stateless_forward(tapset: TapSet, model: keras.Model, x, training: bool):
    """`forward`, run in a `keras.StatelessScope`: no variable changes."""
    source = tapset.view if tapset.view is not None else model
    trainable = _unique(
        list(source.trainable_variables) + list(model.trainable_variables)
    )
    ids = {id(v) for v in trainable}
    others = [
        v
        for v in _unique(list(source.variables) + list(model.variables))
        if id(v) not in ids
    ]
    values = [tf.identity(v.value) for v in trainable]
    with keras.StatelessScope(
        state_mapping=state_mapping(trainable, values, others), collect_losses=True
    ):
        return forward(tapset, model, x, training)


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


def _computes_in_float16(model: keras.Model) -> bool:
    policy = getattr(model, "dtype_policy", None)
    layers = [model] + list(model.layers)
    dtypes = {getattr(layer, "compute_dtype", None) for layer in layers}
    return "float16" in dtypes or getattr(policy, "compute_dtype", None) == "float16"


def _dense(gradient):
    """A gradient as one tensor; an `IndexedSlices` is summed per row first.

    An embedding's gradient lists one slice per lookup, with repeated rows;
    summing them per distinct row gives the true gradient's non-zero rows
    (its norm and values), without materializing the whole table.
    """
    if isinstance(gradient, tf.IndexedSlices):
        rows, position = tf.unique(gradient.indices)
        return tf.math.unsorted_segment_sum(gradient.values, position, tf.size(rows))
    return gradient


def _gradients(tape, loss, sources: list, scale: float) -> list:
    """Gradients of `loss` in float32, loss-scaled under float16 compute.

    Which sources are connected to the loss is static, so every attempt has
    the same `None` positions; a retry runs only when the previous attempt
    overflowed (inside a `tf.cond` branch).
    """
    unconnected = tf.UnconnectedGradients.NONE

    def attempt(factor) -> list:
        # The seed of the backward pass is `factor` (the loss's own gradient):
        # the same as differentiating `loss * factor`, recorded or not.
        seed = tf.constant(factor, loss.dtype)
        grads = tape.gradient(
            loss, sources, output_gradients=seed, unconnected_gradients=unconnected
        )
        grads = [None if g is None else f32(_dense(g)) for g in grads]
        return (
            grads
            if factor == 1.0
            else [None if g is None else g / factor for g in grads]
        )

    result = attempt(scale)
    if scale == 1.0:
        return result
    connected = [g is not None for g in result]
    present = [g for g in result if g is not None]
    for factor in (1.0, 1.0 / scale):
        if not present:
            break
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in present])
        present = tf.cond(
            finite,
            lambda kept=present: kept,
            lambda f=factor: [g for g in attempt(f) if g is not None],
        )
    it = iter(present)
    return [next(it) if c else None for c in connected]


def _histograms(taps, outputs, measured, values, grads) -> dict:
    index = {id(v): k for k, v in enumerate(measured)}
    hist = {}
    for tap, output in zip(taps, outputs):
        if tap.main_weight is not None:
            hist[f"weights/{tap.name}"] = values[index[id(tap.main_weight)]]
        if output is not None:
            hist[f"activations/{tap.name}"] = output
        own = [grads[index[id(w)]] for w in tap.weights]
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
