"""LSUV: layer-sequential unit-variance initialization (Mishkin & Matas, 2016).

`lsuv(model, x)` first replaces each eligible kernel with an orthonormal one,
then visits the layers in forward order and divides each kernel by the
standard deviation of the layer's pre-activation output on `x`, until that
variance is within `tol` of 1. Layer inputs are measured through the
diagnostics' view of the model, statelessly and by default in training mode
(what `fit` runs); the pre-activation is recomputed from the layer's input
with the layer's own linear operation (`keras.ops`), so the layer is never
changed, not even for a moment.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_initdiag import _checks, _warn, initializers
from keras_initdiag.diagnostics.batches import as_batch, check_fits
from keras_initdiag.diagnostics.cache import forget, graph_of
from keras_initdiag.diagnostics.probe import stateless_forward
from keras_initdiag.diagnostics.taps import DATA_DEPENDENT, build_taps, check_model

_L = keras.layers


def _conv(layer, x, kernel):
    return layer.convolution_op(x, kernel)


def _conv_transpose(layer, x, kernel):
    return keras.ops.conv_transpose(
        x,
        kernel,
        strides=list(layer.strides),
        padding=layer.padding,
        output_padding=layer.output_padding,
        dilation_rate=layer.dilation_rate,
        data_format=layer.data_format,
    )


def _depthwise(layer, x, kernel):
    return keras.ops.depthwise_conv(
        x,
        kernel,
        strides=layer.strides,
        padding=layer.padding,
        dilation_rate=layer.dilation_rate,
        data_format=layer.data_format,
    )


def _separable(layer, x, kernel):
    return keras.ops.separable_conv(
        x,
        layer.depthwise_kernel,
        kernel,
        strides=layer.strides,
        padding=layer.padding,
        dilation_rate=layer.dilation_rate,
        data_format=layer.data_format,
    )


# Layers whose pre-activation output is linear in one kernel: (classes, kernel
# attribute, whether that kernel is in the `(*receptive field, in, out)`
# layout that the orthonormal pre-initialization flattens to `(fan_in, out)`,
# the linear operation `(layer, x, kernel) -> pre-activation without bias`).
_SUPPORTED = (
    ((_L.Dense,), "kernel", True, lambda layer, x, k: keras.ops.matmul(x, k)),
    ((_L.SeparableConv1D, _L.SeparableConv2D), "pointwise_kernel", True, _separable),
    ((_L.DepthwiseConv1D, _L.DepthwiseConv2D), "kernel", False, _depthwise),
    (
        (_L.Conv1DTranspose, _L.Conv2DTranspose, _L.Conv3DTranspose),
        "kernel",
        False,
        _conv_transpose,
    ),
    ((_L.Conv1D, _L.Conv2D, _L.Conv3D), "kernel", True, _conv),
    (
        (_L.EinsumDense,),
        "kernel",
        False,
        lambda layer, x, k: keras.ops.einsum(layer.equation, x, k),
    ),
)


class LSUVWarning(UserWarning):
    """A layer's pre-activation variance did not reach 1 within `max_iter`.

    Example:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always", keras_initdiag.LSUVWarning)
    ...     result = keras_initdiag.lsuv(model, x, max_iter=1, verbose=0)
    >>> [str(w.message) for w in caught if w.category is keras_initdiag.LSUVWarning]
    """


@dataclasses.dataclass(frozen=True)
class LSUVLayer:
    """What `lsuv` did to one layer.

    Args:
        name: The layer's name.
        class_name: The layer's class name, e.g. `"Dense"`.
        iterations: How many rescales were applied (0 if the variance was
            already within `tol` of 1).
        variance_before: Pre-activation variance on `x` before the first
            rescale (after the orthonormal pre-initialization, with the
            earlier layers already fixed).
        variance_after: Pre-activation variance on `x` after the last rescale.
        scale: The total factor the kernel was multiplied by.
        converged: Whether `|variance_after - 1| < tol`.
        orthogonal: Whether the kernel was replaced by an orthonormal one first.

    Example:
    >>> result = keras_initdiag.lsuv(model, x, verbose=0)
    >>> first = result.layers[0]
    >>> first.name, first.iterations, round(first.variance_after, 1)
    """

    name: str
    class_name: str
    iterations: int
    variance_before: float
    variance_after: float
    scale: float
    converged: bool
    orthogonal: bool


@dataclasses.dataclass
class LSUVResult:
    """Per-layer record of one `lsuv` run.

    Args:
        layers: One `LSUVLayer` per rescaled layer, in forward order.
        skipped: `(layer name, reason)` for the layers left untouched.
        tol: The tolerance the run used.

    Example:
    >>> result = keras_initdiag.lsuv(model, x, verbose=0)
    >>> print(result.table())
    >>> result["dense_3"].variance_after
    1.0
    """

    layers: list[LSUVLayer]
    skipped: list[tuple[str, str]]
    tol: float

    @property
    def converged(self) -> bool:
        """Whether every rescaled layer reached variance 1 within `tol`."""
        return all(record.converged for record in self.layers)

    def __getitem__(self, name: str) -> LSUVLayer:
        for record in self.layers:
            if record.name == name:
                return record
        raise KeyError(
            f"No layer named {name!r} was rescaled. Rescaled layers: "
            f"{[record.name for record in self.layers]}"
        )

    def table(self) -> str:
        """Render the per-layer records and the skipped layers as text.

        Returns:
            A fixed-width table as one string, skipped layers listed below it.
        """
        width = max([len("layer")] + [len(r.name) for r in self.layers])
        header = (
            f"{'layer':<{width}}  {'class':<16} {'iters':>5} {'var_before':>11} "
            f"{'var_after':>11} {'scale':>10}  ortho  converged"
        )
        lines = [header, "-" * len(header)]
        for r in self.layers:
            lines.append(
                f"{r.name:<{width}}  {r.class_name:<16} {r.iterations:>5} "
                f"{r.variance_before:>11.4g} {r.variance_after:>11.4g} "
                f"{r.scale:>10.4g}  {'yes' if r.orthogonal else 'no':<5}  "
                f"{'yes' if r.converged else 'NO'}"
            )
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} layer(s):")
            lines += [f"  {name}: {reason}" for name, reason in self.skipped]
        return "\n".join(lines)


def lsuv(
    model: keras.Model,
    x,
    *,
    tol: float = 0.1,
    max_iter: int = 10,
    orthogonal: bool = True,
    layers: Sequence[str] | None = None,
    seed: int | None = None,
    verbose: int = 1,
    training: bool = True,
) -> LSUVResult:
    """Layer-sequential unit-variance initialization, in place.

    First, every eligible kernel is replaced by an orthonormal one (over its
    `(fan_in, out)` view: orthonormal columns when `fan_in >= out`, rows
    otherwise). Then the layers are visited in forward order; each one's
    pre-activation output (the output before a fused activation) is measured
    on `x`, with the earlier layers already fixed, and its kernel is divided
    by the standard deviation until the variance is within `tol` of 1 or
    `max_iter` rescales were made. Biases and every other weight are left as
    they are. With zero biases one rescale is exact, since the pre-activation
    is linear in the kernel. Everything is measured as `fit` runs the model
    (training mode: BatchNormalization normalizes with the batch's
    statistics, dropout is on with a fixed seed), statelessly: apart from
    the kernels, no variable changes.

    Supported layers: Dense, EinsumDense, Conv1D/2D/3D, their transposed
    versions, SeparableConv1D/2D (the pointwise kernel is rescaled) and
    DepthwiseConv1D/2D. The orthonormal pre-initialization is applied to
    Dense, Conv and the pointwise kernel of SeparableConv; the other kernels
    are only rescaled. Layers without a kernel, recurrent layers, layers in a
    nested model and layers with several inputs are skipped and listed.

    Args:
        model: A built functional or Sequential Keras model.
        x: A batch of inputs (array, tensor, or a list/dict for several
            inputs). A few hundred samples are enough.
        tol: Stop when `|variance - 1| < tol`. Defaults to `0.1`.
        max_iter: Most rescales per layer. Defaults to `10`.
        orthogonal: Replace the kernels by orthonormal ones first. Defaults
            to `True`.
        layers: Names of the layers to initialize; the others are untouched.
            Defaults to `None` (every eligible layer).
        seed: Seed of the orthonormal kernels. Defaults to `None` (drawn from
            NumPy's global generator, so `keras.utils.set_random_seed` makes
            it reproducible).
        verbose: 0 is silent, 1 prints the table and the skipped layers, 2
            also prints every iteration. Defaults to `1`.
        training: `True` measures the layers as `fit` runs the model;
            `False` as `predict` does (moving statistics, no dropout).
            Defaults to `True`.

    Returns:
        An `LSUVResult`.

    Raises:
        TypeError: `model` is not a Keras model, `x` is not numeric, or `tol`,
            `max_iter`, `orthogonal`, `seed` or `verbose` has the wrong type.
        ValueError: `x` is empty, non-finite or does not fit the model; `tol`
            is not positive; `max_iter < 1`; `verbose` is not 0, 1 or 2;
            `layers` names an unknown layer; no layer is eligible; or a
            layer's pre-activation variance is zero or not finite. The model's
            weights are restored before any error is raised.

    Warns:
        LSUVWarning: for each layer that did not converge (its record has
            `converged=False`).

    Example:
    >>> model = keras.Sequential([keras.Input((32,))] + [
    ...     keras.layers.Dense(64, activation="relu") for _ in range(20)])
    >>> x = np.random.normal(size=(256, 32))
    >>> result = keras_initdiag.lsuv(model, x, verbose=0)
    >>> print(result.table())

    Reference:

    - [Mishkin & Matas, 2016](https://arxiv.org/abs/1511.06422)
    """
    check_model(model)
    tol, max_iter, verbose = _check_options(tol, max_iter, orthogonal, verbose)
    training = _checks.boolean("training", training)
    base = _base_seed(seed)
    xs = as_batch(x, "x")
    if xs is None:
        raise ValueError("Argument `x` must be a batch of inputs. Received: x=None")
    check_fits(model, xs, None)
    x = [tf.constant(a.astype(np.float32) if a.dtype.kind == "f" else a) for a in xs]
    x = tf.nest.pack_sequence_as(model.input, x) if len(x) > 1 else x[0]
    tapset = build_taps(model, graph=graph_of(model))
    plan, skipped = _plan(tapset, layers, model.name)
    if not plan:
        raise ValueError(
            f"Model {model.name!r} has no layer LSUV can initialize"
            + (f" among layers={list(layers)!r}" if layers is not None else "")
            + ". LSUV needs a Dense, EinsumDense or convolution layer in the "
            "model's own functional graph (a Sequential or functional model; "
            f"subclassed models expose none). Skipped: {skipped}"
        )
    kernels = [item[1] for item in plan]
    saved = [kernel.numpy() for kernel in kernels]
    try:
        # One trace per call: layer inputs are read through the view again
        # after each layer is fixed (kernels are variables, so no retrace).
        forward = tf.function(
            lambda inputs: stateless_forward(tapset, model, inputs, training)[1],
            autograph=False,
        )
        records = []
        for index, (tap, kernel, ortho, linear, source) in enumerate(plan):
            if orthogonal and ortho:
                init = initializers.Orthogonal(seed=base + index)
                kernel.assign(init(kernel.shape, dtype=kernel.dtype))
            inputs = forward(x)[source]
            record = _fit_layer(tap, kernel, linear, inputs, tol, max_iter, verbose)
            records.append(record | {"orthogonal": bool(orthogonal and ortho)})
    except BaseException:
        for kernel, value in zip(kernels, saved):
            kernel.assign(value)
        raise
    result = LSUVResult([LSUVLayer(**r) for r in records], skipped, tol)
    for tap, *_ in plan:  # Their kernels no longer are what the initializer drew.
        DATA_DEPENDENT.add(tap.layer)
    forget(model)  # Cached diagnoses described the old initializers.
    for record in result.layers:
        if not record.converged:
            _warn.warn(
                f"LSUV did not converge for layer {record.name!r}: its "
                f"pre-activation variance is {record.variance_after:.4g} after "
                f"{record.iterations} rescale(s) (target 1 +/- {tol:g}). "
                "Raise `max_iter` or `tol`, or zero this layer's bias.",
                LSUVWarning,
            )
    if verbose:
        print(result.table())
    return result


def _check_options(tol, max_iter, orthogonal, verbose):
    tol = _checks.positive("tol", tol)
    max_iter = _checks.integer("max_iter", max_iter, minimum=1)
    _checks.boolean("orthogonal", orthogonal)
    return tol, max_iter, _checks.verbose(verbose)


def _base_seed(seed) -> int:
    if seed is None:
        return int(np.random.randint(0, 2**30))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"Argument `seed` must be an int or None. Received: seed={seed!r}"
        )
    return int(seed)


def _kernel(layer):
    """`(kernel variable, orthonormal pre-init applies, linear op)` or a reason."""
    for classes, attr, ortho, linear in _SUPPORTED:
        if isinstance(layer, classes):
            kernel = getattr(layer, attr, None)
            if isinstance(kernel, keras.Variable):
                return kernel, ortho, linear
            return f"it has no `{attr}` weight"
    if isinstance(layer, keras.Model):
        return "a model without a functional graph (its layers are not reachable)"
    if isinstance(layer, keras.layers.RNN):
        return "recurrent layers are not supported by LSUV"
    if not layer.weights:
        return "no kernel (no weights)"
    names = sorted({w.path.split("/")[-1] for w in layer.weights})
    return f"no kernel LSUV can rescale (its weights: {names})"


def _plan(tapset, layers, model_name):
    """`[(tap, kernel, ortho, linear op, input tap)]` and skipped `(name, why)`.

    Every layer call with a kernel is planned once, at its first call; a
    layer that reads several inputs, or whose input is not measured, is
    skipped with the reason.
    """
    wanted = None
    if layers is not None:
        graph_taps = [t.name for t in tapset.taps]
        wanted = set(_select(tapset, layers, model_name, graph_taps))
    by_node = {id(tap.node): tap for tap in tapset.taps}
    nodes = tapset.graph.nodes
    plan, skipped = [], []
    for tap in tapset.taps:
        if tap.layer is None or not tap.node.first_call:
            continue
        if wanted is not None and tap.name not in wanted:
            continue
        found = _kernel(tap.layer)
        if isinstance(found, str):
            skipped.append((tap.name, found))
            continue
        sources = [by_node.get(id(nodes[i])) for i in tap.node.inputs]
        if len(sources) != 1 or sources[0] is None or sources[0].output_index is None:
            why = (
                "it reads several inputs"
                if len(sources) > 1
                else "its input cannot be measured ("
                + (tap.node.note or "not exposed")
                + ")"
            )
            skipped.append((tap.name, why))
            continue
        plan.append((tap, *found, sources[0].output_index))
    return plan, skipped


def _select(tapset, layers, model_name, names):
    from keras_initdiag.diagnostics import graph as graph_lib

    chosen = graph_lib.select(tapset.graph, layers, model_name)
    picked = {tapset.graph.nodes[i].name for i in chosen}
    return [name for name in names if name in picked]


def _fit_layer(tap, kernel, linear, inputs, tol, max_iter, verbose) -> dict:
    """Rescale one kernel until its pre-activation variance is 1 +/- tol."""
    variance = before = _preactivation_variance(tap.layer, linear, inputs)
    scale, iterations = 1.0, 0
    while abs(variance - 1.0) >= tol and iterations < max_iter:
        factor = 1.0 / math.sqrt(variance)
        kernel.assign(kernel * keras.ops.cast(factor, kernel.dtype))
        scale *= factor
        iterations += 1
        variance = _preactivation_variance(tap.layer, linear, inputs)
        if verbose >= 2:
            print(f"lsuv {tap.name}: iteration {iterations}, variance {variance:.6g}")
    return {
        "name": tap.name,
        "class_name": type(tap.layer).__name__,
        "iterations": iterations,
        "variance_before": before,
        "variance_after": variance,
        "scale": scale,
        "converged": abs(variance - 1.0) < tol,
    }


def _with_bias(layer, outputs):
    """Add a layer's bias along its channel axis (as the layer itself does)."""
    bias = getattr(layer, "bias", None)
    if bias is None or not getattr(layer, "use_bias", True):
        return outputs
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        shape = (1, -1) + (1,) * (len(outputs.shape) - 2)
        return outputs + keras.ops.reshape(bias, shape)
    return outputs + keras.ops.cast(bias, outputs.dtype)


def _preactivation_variance(layer, linear, inputs) -> float:
    """Variance of the layer's output before its activation, on `inputs`."""
    kernel = getattr(layer, "pointwise_kernel", None)
    if kernel is None or not isinstance(
        layer, (_L.SeparableConv1D, _L.SeparableConv2D)
    ):
        kernel = layer.kernel
    x = keras.ops.cast(inputs, kernel.dtype)
    outputs = _with_bias(layer, linear(layer, x, kernel))
    variance = float(keras.ops.var(keras.ops.cast(outputs, "float32")))
    if variance == 0.0 or not math.isfinite(variance):
        why = (
            "its output is constant over `x` (a zero kernel, or an input that is "
            "constant because earlier units are dead or `x` does not vary)"
            if variance == 0.0
            else "its output is not finite (the earlier layers overflow)"
        )
        raise ValueError(
            f"LSUV cannot rescale layer {layer.name!r}: its pre-activation "
            f"variance on `x` is {variance}, because {why}. Check this layer and "
            "the ones before it, pass a more varied `x`, or leave the layer out "
            "with `layers=`."
        )
    return variance
