"""The model's graph as the signal travels it: every call, every merge, every input.

`trace(model)` records every operation call of a model in forward order as a
`Node`: the model's inputs, each call of each layer (a shared layer once per
call), each output of a multi-output layer, the layers inside nested models,
and op-level operations such as `h + r` or `keras.ops.add`, which are not
layers. Each node knows the nodes it reads from, so the rules can follow the
path the signal takes.

It also builds the *view*: a functional model from the model's inputs to
`{"outputs": <the model's outputs>, "taps": [<every node's output>]}`. The
view reuses the model's own layers and variables (nothing is copied), so the
probe can run it statelessly in training mode.

How the calls are seen, with public APIs only: a functional model is cloned
with `keras.models.clone_model(model, clone_function=<the same layer>,
call_function=<a recorder>)`, which calls the recorder for every node of the
graph, ops included. A Sequential model is a chain: its layers are called in
order on a new `keras.Input`. A nested model (a functional or Sequential
model used as a layer) is traced the same way into its own view, and that
view is called in the outer graph, so its inner outputs become outer
tensors. Subclassed models expose no graph: their layers become nodes with
weights only. Cloning with the same layers calls them once more on symbolic
inputs, which adds one inbound node to each of the model's layers; this
happens once per model (the engine caches the graph).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_initdiag import _checks
from keras_initdiag.diagnostics import layer_facts

#: Operations (layer or op-level, by class name) that merge branches, and how.
MERGES: dict[str, str] = {
    "Add": "sum",
    "Subtract": "sum",
    "Average": "average",
    "Multiply": "product",
    "Concatenate": "concat",
    "Maximum": "sum",
    "Minimum": "sum",
}


@dataclasses.dataclass
class Node:
    """One call in the model's graph, with the output it produced.

    Args:
        name: Unique name: the layer's name for its first call, `name@k` for
            the k-th call of a shared layer, `name#j` for output j > 0 of a
            multi-output layer, `outer/inner` inside a nested model, the
            operation's name for op-level calls, the input's name for inputs.
        op: The layer or operation called (`None` for a model input).
        kind: `"input"`, `"layer"`, `"norm"` (normalization layer),
            `"preprocess"` (preprocessing layer, e.g. `Rescaling`),
            `"merge"` (a layer or op that merges branches) or `"op"` (any
            other operation that is not a layer).
        inputs: Indices (into the graph's node list) of the nodes it reads.
        tensor: Its symbolic output in the view's graph, or None.
        first_call: Whether this is the first call and output 0 of its layer,
            the node that carries the layer's weight statistics.
        note: Why the output is not measured, `""` when it is.
        position: For a model input, its index in the flattened input
            structure (`tf.nest.flatten` of the model's inputs, as the probe
            batch is given); -1 for other nodes.
    """

    name: str
    op: object
    kind: str
    inputs: tuple[int, ...] = ()
    tensor: object = None
    first_call: bool = True
    note: str = ""
    position: int = -1

    @property
    def layer(self) -> keras.layers.Layer | None:
        """The layer called, or None for inputs and op-level operations."""
        return self.op if isinstance(self.op, keras.layers.Layer) else None

    @property
    def merge(self) -> str:
        """How the node merges its inputs (`MERGES`), `""` for other nodes."""
        return MERGES.get(type(self.op).__name__, "") if self.op is not None else ""


@dataclasses.dataclass
class Graph:
    """Every node of a model in forward order, and the view exposing them.

    Args:
        nodes: The nodes in forward (topological) order, inputs first.
        view: `keras.Model` from the model's inputs to `{"outputs": ...,
            "taps": [...]}`, or None for a model without a graph.
        taps: Indices of the nodes whose outputs the view returns, in the
            order of `view.output["taps"]`.
        outputs: Indices of the nodes that produce the model's outputs.
        skipped: `(node name, reason)` for nodes whose output is not measured.
    """

    nodes: list[Node]
    view: keras.Model | None
    taps: list[int]
    outputs: list[int]
    skipped: list[tuple[str, str]]

    def consumers(self) -> list[list[int]]:
        """For each node, the indices of the nodes that read its output."""
        readers: list[list[int]] = [[] for _ in self.nodes]
        for index, node in enumerate(self.nodes):
            for source in node.inputs:
                readers[source].append(index)
        return readers


def kind_of(op) -> str:
    """The node kind of a layer or operation (see `Node.kind`).

    A layer's kind comes from its class (`isinstance`), a wrapper's from the
    layer it wraps: `SpectralNormalization(Dense(...))` is a layer with
    weights, `TimeDistributed(BatchNormalization())` a normalization.
    """
    if op is None:
        return "input"
    if type(op).__name__ in MERGES:
        return "merge"
    if layer_facts.is_normalization(op):
        return "norm"
    if layer_facts.is_preprocessing(op):
        return "preprocess"
    if layer_facts.is_reduction(op):
        return "reduce"
    return "layer" if isinstance(op, keras.layers.Layer) else "op"


def _same(op):
    return op


def _is_float(tensor) -> bool:
    return keras.backend.is_float_dtype(tensor.dtype)


class _Recorder:
    """Collects nodes while a graph is rebuilt on new symbolic inputs."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.nodes: list[Node] = []
        self.by_tensor: dict[int, int] = {}
        self.calls: dict[int, int] = {}
        self.names: set[str] = set()
        self.input_structure = None

    def unique(self, name: str) -> str:
        """`name` with the prefix, made unique among this graph's nodes."""
        name = f"{self.prefix}{name}"
        candidate, k = name, 2
        while candidate in self.names:
            candidate, k = f"{name}~{k}", k + 1
        self.names.add(candidate)
        return candidate

    def add(self, node: Node, tensor) -> int:
        """Append a node producing `tensor`; returns its index."""
        index = len(self.nodes)
        node.tensor = tensor if tensor is not None and _is_float(tensor) else None
        if tensor is not None and node.tensor is None and not node.note:
            node.note = f"its output is not floating point ({tensor.dtype})"
        self.nodes.append(node)
        if tensor is not None:
            self.by_tensor[id(tensor)] = index
        return index

    def add_input(self, tensor, name: str, position: int) -> int:
        """A model input as a node, at `position` in the input structure."""
        node = Node(self.unique(name), None, "input", position=position)
        return self.add(node, tensor)

    def sources(self, args, kwargs) -> tuple[int, ...]:
        """Indices of the recorded nodes whose tensors appear in a call."""
        found = []
        for item in tf.nest.flatten((args, kwargs)):
            index = self.by_tensor.get(id(item))
            if index is not None and index not in found:
                found.append(index)
        return tuple(found)

    def __call__(self, op, *args, **kwargs):
        """The `call_function` given to `clone_model`: call, then record."""
        if isinstance(op, keras.Model):
            return self._nested(op, args, kwargs)
        outputs = op(*args, **kwargs)
        sources = self.sources(args, kwargs)
        count = self.calls.get(id(op), 0) + 1
        self.calls[id(op)] = count
        base = op.name if count == 1 else f"{op.name}@{count}"
        for j, tensor in enumerate(tf.nest.flatten(outputs)):
            if not isinstance(tensor, keras.KerasTensor):
                continue
            name = self.unique(base if j == 0 else f"{base}#{j}")
            node = Node(
                name, op, kind_of(op), sources, first_call=count == 1 and j == 0
            )
            self.add(node, tensor)
        return outputs

    def _nested(self, model: keras.Model, args, kwargs):
        """Trace a nested model into its own view and call that view here."""
        inner = trace(model, prefix=f"{self.prefix}{model.name}/")
        if inner.view is None:
            # No graph inside: one opaque node, like a layer.
            outputs = model(*args, **kwargs)
            for j, tensor in enumerate(tf.nest.flatten(outputs)):
                name = self.unique(model.name if j == 0 else f"{model.name}#{j}")
                node = Node(name, model, "layer", self.sources(args, kwargs))
                node.first_call = j == 0
                self.add(node, tensor)
            return outputs
        result = inner.view(*args, **kwargs)
        outer_inputs = [self.by_tensor.get(id(t)) for t in tf.nest.flatten(args[:1])]
        mapping: dict[int, int] = {}
        tapped = dict(zip(inner.taps, result["taps"]))
        for index, node in enumerate(inner.nodes):
            if node.kind == "input":
                if 0 <= node.position < len(outer_inputs):
                    if outer_inputs[node.position] is not None:
                        mapping[index] = outer_inputs[node.position]
                continue
            sources = tuple(mapping[s] for s in node.inputs if s in mapping)
            copy = dataclasses.replace(node, inputs=sources, tensor=None)
            self.names.add(copy.name)
            mapping[index] = self.add(copy, tapped.get(index))
            if copy.tensor is None and not copy.note:
                copy.note = "its output is not exposed by the nested model"
        for tensor, index in zip(tf.nest.flatten(result["outputs"]), inner.outputs):
            if index in mapping:
                self.by_tensor[id(tensor)] = mapping[index]
        return result["outputs"]


def trace(model: keras.Model, prefix: str = "") -> Graph:
    """Record every call of `model` in forward order and build its view.

    Args:
        model: A built Keras model.
        prefix: Prepended to every node name (for nested models).

    Returns:
        A `Graph`. Subclassed models give one weights-only node per layer
        and `view=None`.

    Example:
    >>> graph = trace(model)
    >>> [node.name for node in graph.nodes]
    ['input_layer', 'dense', 'dense_1', 'add', 'batch_normalization', ...]
    """
    recorder = _Recorder(prefix)
    if isinstance(model, keras.Sequential):
        outputs = _trace_sequential(model, recorder)
    else:
        outputs = _trace_functional(model, recorder)
    if outputs is None:
        return _without_graph(model, prefix)
    input_structure = recorder.input_structure
    taps = [i for i, n in enumerate(recorder.nodes) if n.tensor is not None]
    output_nodes = [recorder.by_tensor.get(id(t)) for t in tf.nest.flatten(outputs)]
    view = keras.Model(
        input_structure,
        {"outputs": outputs, "taps": [recorder.nodes[i].tensor for i in taps]},
        name=f"{model.name}_initdiag_view",
    )
    skipped = [(n.name, n.note) for n in recorder.nodes if n.note]
    return Graph(
        recorder.nodes,
        view,
        taps,
        [i for i in output_nodes if i is not None],
        skipped,
    )


def _trace_sequential(model: keras.Sequential, recorder: _Recorder):
    try:
        spec = model.inputs[0]
    except (AttributeError, ValueError, IndexError, TypeError):
        return None
    tensor = keras.Input(batch_shape=tuple(spec.shape), dtype=spec.dtype)
    recorder.input_structure = tensor
    recorder.add_input(tensor, "input", 0)
    for layer in model.layers:
        tensor = recorder(layer, tensor)
    return tensor


def _trace_functional(model: keras.Model, recorder: _Recorder):
    try:
        structure = model.input
    except (AttributeError, ValueError, TypeError):
        return None
    inputs = tf.nest.map_structure(
        lambda spec: keras.Input(
            batch_shape=tuple(spec.shape), dtype=spec.dtype, name=spec.name
        ),
        structure,
    )
    names = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            try:
                names[id(layer.output)] = layer.name
            except (AttributeError, ValueError):
                continue
    flat = zip(tf.nest.flatten(inputs), tf.nest.flatten(structure))
    for position, (tensor, spec) in enumerate(flat):
        recorder.add_input(tensor, names.get(id(spec), spec.name), position)
    recorder.input_structure = inputs
    try:
        clone = keras.models.clone_model(
            model, input_tensors=inputs, clone_function=_same, call_function=recorder
        )
    except ValueError:
        return None  # Not a functional model: no graph to follow.
    return clone.output


def _without_graph(model: keras.Model, prefix: str) -> Graph:
    recorder = _Recorder(prefix)
    for layer in _layers(model):
        node = Node(recorder.unique(layer.name), layer, kind_of(layer))
        node.note = "the model exposes no functional graph (subclassed): weights only"
        recorder.add(node, None)
    skipped = [(n.name, n.note) for n in recorder.nodes]
    return Graph(recorder.nodes, None, [], [], skipped)


def _layers(model: keras.Model) -> list:
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += _layers(layer)
        else:
            found.append(layer)
    return found


def select(graph: Graph, names: Sequence[str] | None, model_name: str) -> list[int]:
    """Indices of the nodes to report: all, or those named in `names`.

    A layer's name selects every call of it (its `name@k` and `name#j`
    nodes too).

    Raises:
        TypeError: `names` is not a list of strings.
        ValueError: `names` is empty or names a node the model lacks.
    """
    if names is None:
        return list(range(len(graph.nodes)))
    names = _checks.names("layers", names)
    if not names:
        raise ValueError(
            "Argument `layers` must name at least one layer. Received: layers=[]"
        )

    def base(name: str) -> str:
        return name.split("@")[0].split("#")[0]

    known = {node.name for node in graph.nodes} | {
        base(node.name) for node in graph.nodes
    }
    unknown = [name for name in names if name not in known]
    if unknown:
        available = [n.name for n in graph.nodes if n.kind != "input"]
        raise ValueError(
            f"Argument `layers` names layer(s) {unknown} that model "
            f"{model_name!r} does not have. Received: layers={list(names)!r}. "
            f"Available layers: {available}"
        )
    wanted = set(names)
    return [
        i
        for i, node in enumerate(graph.nodes)
        if node.name in wanted or base(node.name) in wanted
    ]
