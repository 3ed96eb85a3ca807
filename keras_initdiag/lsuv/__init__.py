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

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_initdiag import _checks, _warn, initializers
from keras_initdiag.diagnostics.batches import as_batch, check_fits
from keras_initdiag.diagnostics.cache import forget, graph_of
from keras_initdiag.diagnostics.stateless import stateless_forward
from keras_initdiag.diagnostics.taps import SET_BY_LSUV, build_taps, check_model
from keras_initdiag.lsuv.layers import plan as plan_layers
from keras_initdiag.lsuv.rescale import fit_layer
from keras_initdiag.lsuv.result import LSUVLayer as LSUVLayer
from keras_initdiag.lsuv.result import LSUVResult as LSUVResult
from keras_initdiag.lsuv.result import LSUVWarning as LSUVWarning


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
    plan, skipped = plan_layers(tapset, layers, model.name)
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
            record = fit_layer(tap, kernel, linear, inputs, tol, max_iter, verbose)
            records.append(record | {"orthogonal": bool(orthogonal and ortho)})
    except BaseException:
        for kernel, value in zip(kernels, saved):
            kernel.assign(value)
        raise
    result = LSUVResult([LSUVLayer(**r) for r in records], skipped, tol)
    for tap, *_ in plan:  # Their kernels no longer are what the initializer drew.
        SET_BY_LSUV.add(tap.layer)
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
