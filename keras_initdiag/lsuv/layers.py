"""Which layers LSUV rescales, and in which order.

A layer is eligible when its pre-activation output is linear in one kernel:
`_SUPPORTED` lists those classes with the kernel's attribute, whether the
orthonormal pre-initialization applies to it, and the linear operation
(`keras.ops`) that recomputes the pre-activation from the layer's input.
`plan` walks the diagnostics' taps in forward order and lists each eligible
layer once, with the tap its input is read from, and every other layer with
the reason it is skipped.
"""

from __future__ import annotations

import keras

from keras_initdiag.diagnostics import graph as graph_lib

_L = keras.layers


def _conv(layer, x, kernel):
    return layer.convolution_op(x, kernel)


def _options(layer) -> dict:
    """The window options a convolution layer passes to its `keras.ops` call."""
    return {
        "strides": layer.strides,
        "padding": layer.padding,
        "dilation_rate": layer.dilation_rate,
        "data_format": layer.data_format,
    }


def _conv_transpose(layer, x, kernel):
    options = _options(layer) | {"strides": list(layer.strides)}
    return keras.ops.conv_transpose(
        x, kernel, output_padding=layer.output_padding, **options
    )


def _depthwise(layer, x, kernel):
    return keras.ops.depthwise_conv(x, kernel, **_options(layer))


def _separable(layer, x, kernel):
    return keras.ops.separable_conv(
        x, layer.depthwise_kernel, kernel, **_options(layer)
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


def kernel_of(layer):
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


def plan(tapset, layers, model_name):
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
    planned, skipped = [], []
    for tap in tapset.taps:
        if tap.layer is None or not tap.node.first_call:
            continue
        if wanted is not None and tap.name not in wanted:
            continue
        found = kernel_of(tap.layer)
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
        planned.append((tap, *found, sources[0].output_index))
    return planned, skipped


def _select(tapset, layers, model_name, names):
    chosen = graph_lib.select(tapset.graph, layers, model_name)
    picked = {tapset.graph.nodes[i].name for i in chosen}
    return [name for name in names if name in picked]
