"""Taps: the nodes a diagnosis measures, with the static facts the rules need.

`build_taps(model)` traces the model's graph (`graph.trace`) and turns every
node into a `Tap`: its output in the view (when measurable), its layer's
main weight and trainable weights (on the first call of a shared layer only),
and a `LayerInfo` with the facts the rules read (kind, inputs, activation,
initializer family, forward fans). `lsuv` reuses it.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Sequence

import keras

from keras_initdiag import _fans, initializers
from keras_initdiag.diagnostics import graph as graph_lib
from keras_initdiag.diagnostics import layer_facts
from keras_initdiag.diagnostics.report import LayerInfo

#: Layers whose kernels were set from data (by `lsuv`): their declared
#: initializer no longer describes them, so their family reads as "lsuv".
SET_BY_LSUV: weakref.WeakSet = weakref.WeakSet()

_ACTIVATION_LAYERS = {"ReLU": "relu", "LeakyReLU": "leaky_relu", "ELU": "elu"}


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """A layer's main weight and how the layer uses it.

    Args:
        variable: The weight (a `keras.Variable`).
        initializer: The initializer the layer declared for it, or None.
        layout: How the forward pass uses it (one of `_fans.LAYOUTS`).
        strides: A transposed convolution's strides.
        equation: An `EinsumDense` equation.
    """

    variable: object
    initializer: object = None
    layout: str = "dense"
    strides: tuple[int, ...] = ()
    equation: str = ""

    @property
    def fans(self) -> tuple[int, int]:
        """Forward `(fan_in, fan_out)` of the weight."""
        return _fans.forward_fans(
            self.layout, self.variable.shape, self.strides, self.equation
        )


def weight_spec(layer) -> WeightSpec | None:
    """The weight whose variance describes a layer's initialization, or None.

    Convolutions, dense and einsum layers use their kernel (a separable
    convolution its pointwise kernel), embeddings their table, recurrent
    layers their cell's input kernel, `MultiHeadAttention` its value
    projection; other layers their first trainable weight of rank >= 2. A
    wrapper's is the weight of the layer it wraps.
    """
    if isinstance(layer, keras.Model) or layer is None:
        return None
    layer = layer_facts.unwrapped(layer)
    layers = keras.layers
    strides = tuple(getattr(layer, "strides", ()) or ())
    if isinstance(layer, (layers.SeparableConv1D, layers.SeparableConv2D)):
        return WeightSpec(layer.pointwise_kernel, layer.pointwise_initializer, "conv")
    if isinstance(layer, (layers.DepthwiseConv1D, layers.DepthwiseConv2D)):
        return WeightSpec(layer.kernel, layer.depthwise_initializer, "depthwise")
    transposed = (
        layers.Conv1DTranspose,
        layers.Conv2DTranspose,
        layers.Conv3DTranspose,
    )
    if isinstance(layer, transposed):
        return WeightSpec(
            layer.kernel, layer.kernel_initializer, "conv_transpose", strides
        )
    if isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Conv3D)):
        return WeightSpec(layer.kernel, layer.kernel_initializer, "conv")
    if isinstance(layer, layers.EinsumDense):
        return WeightSpec(
            layer.kernel, layer.kernel_initializer, "einsum", equation=layer.equation
        )
    if isinstance(layer, layers.Embedding):
        return WeightSpec(layer.embeddings, layer.embeddings_initializer, "embedding")
    if isinstance(layer, layers.MultiHeadAttention):
        value = layer.value_dense
        return WeightSpec(
            value.kernel, value.kernel_initializer, "einsum", equation=value.equation
        )
    owner = getattr(layer, "cell", layer)
    kernel = getattr(owner, "kernel", None)
    if isinstance(kernel, keras.Variable) and len(kernel.shape) >= 2:
        return WeightSpec(kernel, getattr(owner, "kernel_initializer", None))
    trainable = [w for w in layer.trainable_weights if len(w.shape) >= 2]
    return WeightSpec(trainable[0]) if trainable else None


@dataclasses.dataclass
class Tap:
    """One measured node.

    Args:
        node: The graph node.
        info: Static facts about it.
        main_weight_spec: Its layer's main weight and how the layer uses it
            (first call of a layer only), or None.
        output_index: Index of its output in the view's `taps`, or None
            when the output is not measured (weight statistics only).
        bias: The variable its layer adds last (bias, beta), or None.
        scale: The variable its layer multiplies last (gamma), or None.
    """

    node: graph_lib.Node
    info: LayerInfo
    main_weight_spec: WeightSpec | None
    output_index: int | None
    bias: object = None
    scale: object = None

    @property
    def name(self) -> str:
        """The node's name."""
        return self.node.name

    @property
    def layer(self):
        """The layer called at this node, or None."""
        return self.node.layer

    @property
    def trainable_weights(self) -> list:
        """Its layer's trainable weights now (first call only; else `[]`).

        Read at each use: freezing or unfreezing a layer changes them.
        """
        if not self.node.first_call or self.node.layer is None:
            return []
        return list(self.node.layer.trainable_weights)

    @property
    def main_variable(self):
        """The main weight's variable, or None."""
        spec = self.main_weight_spec
        return None if spec is None else spec.variable


@dataclasses.dataclass
class TapSet:
    """The taps of one model and the graph they come from.

    Args:
        graph: The traced graph (its `view` runs the model's layers).
        taps: The measured nodes in forward order.
        skipped: `(node name, reason)` for nodes whose output is not measured.
    """

    graph: graph_lib.Graph
    taps: list[Tap]
    skipped: list[tuple[str, str]]

    @property
    def view(self) -> keras.Model | None:
        """The functional view exposing every tapped output, or None."""
        return self.graph.view


def check_model(model) -> None:
    """Raise a clear error unless `model` is a built Keras model."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a `keras.Model`. "
            f"Received: model={model!r} of type {type(model).__name__}"
        )
    if not model.built or not model.weights and not model.layers:
        raise ValueError(
            f"Argument `model` must be built before it can be diagnosed, but model "
            f"{model.name!r} was never built or called. Call `model.build("
            "input_shape)`, call it on data, or give it a `keras.Input`."
        )


def activation_of(layer) -> str:
    """Canonical name of a layer's activation (`""` for none), through wrappers."""
    if layer is None or isinstance(layer, keras.Model):
        return ""
    layer = layer_facts.unwrapped(layer)
    name = type(layer).__name__
    if name in _ACTIVATION_LAYERS:
        return _ACTIVATION_LAYERS[name]
    activation = getattr(getattr(layer, "cell", layer), "activation", None)
    if activation is None:
        return ""
    try:
        return initializers.activation_name(activation)
    except (TypeError, ValueError):
        return getattr(activation, "__name__", "")


def _recommended(layer, activation: str) -> tuple[str, ...]:
    if not activation:
        return ()
    layer = layer_facts.unwrapped(layer)
    try:
        return initializers.recommended_families(
            getattr(getattr(layer, "cell", layer), "activation", activation)
        )
    except (TypeError, ValueError):
        return ()


def _family(layer, spec: WeightSpec | None) -> str:
    if spec is None:
        return ""
    if layer in SET_BY_LSUV or layer_facts.unwrapped(layer) in SET_BY_LSUV:
        return "lsuv"
    if spec.initializer is None:
        return ""
    return initializers.initializer_family(spec.initializer)


def _size(tensor) -> float:
    """Elements per sample of a symbolic tensor (0 when a dim is unknown)."""
    if tensor is None:
        return 0.0
    size = 1
    for dim in tuple(tensor.shape)[1:]:
        if dim is None:
            return 0.0
        size *= int(dim)
    return float(size)


def _reported_inputs(graph, chosen: list[int]) -> dict[int, tuple[int, ...]]:
    """For each chosen node, the nearest chosen nodes it reads from.

    With every node chosen these are its inputs; when only some layers are
    reported, an input that is not reported is replaced by the reported
    nodes it reads from, so the signal's path stays connected.
    """
    keep = set(chosen)
    nearest: dict[int, tuple[int, ...]] = {}
    for index, node in enumerate(graph.nodes):
        found: list[int] = []
        for source in node.inputs:
            for item in (source,) if source in keep else nearest.get(source, ()):
                if item not in found:
                    found.append(item)
        nearest[index] = tuple(found)
    return {i: nearest[i] for i in chosen}


def _feeds_residual(graph, readers, index: int) -> bool:
    """Whether a node's output only enters sum-like merges."""
    found = readers[index]
    return bool(found) and all(
        graph.nodes[r].merge in ("sum", "average") for r in found
    )


def _info(graph, index: int, first: dict, outputs: set, inputs, readers) -> tuple:
    node = graph.nodes[index]
    layer = node.layer
    spec = weight_spec(layer) if node.first_call else None
    activation = activation_of(layer)
    fan_in, fan_out = spec.fans if spec is not None else (0, 0)
    source = graph.nodes[node.inputs[0]].tensor if node.inputs else None
    fan_in = layer_facts.effective_fan_in(layer, fan_in, source)
    base = node.name.split("@")[0].split("#")[0]
    info = LayerInfo(
        name=node.name,
        class_name=type(node.op).__name__ if node.op is not None else "InputLayer",
        kind=node.kind,
        inputs=tuple(graph.nodes[i].name for i in inputs),
        merge=node.merge,
        activation=activation,
        initializer=_family(layer, spec),
        weight_shape=tuple(int(d) for d in spec.variable.shape) if spec else (),
        depthwise=spec is not None and spec.layout == "depthwise",
        fan_in=float(fan_in),
        fan_out=int(fan_out),
        is_output=index in outputs,
        tapped_output=node.tensor is not None,
        feeds_residual=_feeds_residual(graph, readers, index),
        shared_with="" if node.first_call else first.get(id(node.op), base),
        recommended=_recommended(layer, activation),
        size=_size(node.tensor),
        units=layer_facts.units(node.tensor),
        propagation=layer_facts.propagation(node.op, node.kind),
        epsilon=layer_facts.epsilon(layer),
        rate=layer_facts.rate(layer),
        kernel_normalized=layer_facts.normalizes_kernel(layer),
    )
    return info, spec


def build_taps(
    model: keras.Model,
    layers: Sequence[str] | None = None,
    graph: graph_lib.Graph | None = None,
) -> TapSet:
    """Describe every node of a model's graph to measure.

    Args:
        model: A built Keras model.
        layers: Names of the layers to report. Defaults to every node.
        graph: The model's traced graph. Defaults to `None`: trace it now
            (the engine keeps one per model, `cache.graph_of`).

    Returns:
        A `TapSet`.

    Example:
    >>> tapset = build_taps(model)
    >>> [tap.name for tap in tapset.taps]
    """
    check_model(model)
    graph = graph if graph is not None else graph_lib.trace(model)
    chosen = graph_lib.select(graph, layers, model.name)
    position = {node_index: k for k, node_index in enumerate(graph.taps)}
    first = {
        id(node.op): node.name
        for node in graph.nodes
        if node.first_call and node.op is not None
    }
    outputs = set(graph.outputs)
    reported = _reported_inputs(graph, chosen)
    readers = graph.consumers()
    taps = []
    for index in chosen:
        node = graph.nodes[index]
        info, spec = _info(graph, index, first, outputs, reported[index], readers)
        if node.tensor is None and spec is None and "floating point" in node.note:
            # Token ids, a mask: nothing to measure, nothing to report.
            continue
        # The bias and scale of a shared layer belong to its first call.
        owner = node.layer if node.first_call else None
        bias, scale = layer_facts.bias_and_scale(owner)
        taps.append(Tap(node, info, spec, position.get(index), bias, scale))
    wanted = {tap.name for tap in taps}
    skipped = [(name, why) for name, why in graph.skipped if name in wanted]
    return TapSet(graph, taps, skipped)
