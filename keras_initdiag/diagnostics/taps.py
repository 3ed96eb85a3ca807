"""Which layers are tapped, and the functional view that exposes their outputs.

A tap is one layer of the model: its output (when the model's graph exposes
it), its main weight and its trainable weights. `build_taps` walks the model in
forward order and builds, once per model, a functional view
`model.inputs -> [tapped outputs..., model outputs]`. `lsuv` reuses it.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Sequence

import keras

from keras_initdiag import initializers
from keras_initdiag.diagnostics.report import LayerInfo

#: Layers whose kernels were set from data (by `lsuv`): their declared
#: initializer no longer describes them, so their family reads as "lsuv".
DATA_DEPENDENT: weakref.WeakSet = weakref.WeakSet()

_MAIN_WEIGHTS = ("kernel", "depthwise_kernel", "embeddings")
_INITIALIZER_ATTRS = {
    "kernel": "kernel_initializer",
    "depthwise_kernel": "depthwise_initializer",
    "embeddings": "embeddings_initializer",
}
_MERGE_LAYERS = ("Add", "Average", "Subtract")
_ACTIVATION_LAYERS = {"ReLU": "relu", "LeakyReLU": "leaky_relu", "ELU": "elu"}


@dataclasses.dataclass
class Tap:
    """One tapped layer.

    Args:
        layer: The Keras layer.
        info: Static facts about it (activation, initializer family, ...).
        main_weight: The kernel-like weight whose variance is reported, or None.
        weights: The layer's own trainable weights (for gradient norms).
        output_index: Index of its output among the view's outputs, or None
            when the output could not be exposed (weight statistics only).
    """

    layer: keras.layers.Layer
    info: LayerInfo
    main_weight: keras.Variable | None
    weights: list
    output_index: int | None

    @property
    def name(self) -> str:
        """The layer's name."""
        return self.layer.name


@dataclasses.dataclass
class TapSet:
    """The taps of one model and the functional view that exposes them.

    Args:
        model: The model.
        taps: Taps in forward order.
        view: `keras.Model` from `model.inputs` to the tapped outputs followed
            by the model's outputs, or None when the model exposes no graph.
        skipped: `(layer name, reason)` for layers whose output is not tapped.
    """

    model: keras.Model
    taps: list[Tap]
    view: keras.Model | None
    skipped: list[tuple[str, str]]

    @property
    def n_outputs(self) -> int:
        """How many of the view's outputs are tapped layer outputs."""
        return sum(tap.output_index is not None for tap in self.taps)


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


def walk(model: keras.Model) -> list[tuple[keras.layers.Layer, bool]]:
    """Every layer in forward order, nested models flattened.

    Returns:
        `(layer, exposed)` pairs: `exposed` is False for layers inside a nested
        model, whose outputs live in the nested model's own graph.
    """
    result = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        result.append((layer, True))
        if isinstance(layer, keras.Model):
            result += [(inner, False) for inner, _ in walk(layer)]
    return result


def main_weight(layer: keras.layers.Layer):
    """The weight whose variance describes the layer's initialization, or None."""
    if isinstance(layer, keras.Model):
        return None
    owner = getattr(layer, "cell", layer)
    for attr in _MAIN_WEIGHTS:
        weight = getattr(owner, attr, None)
        if isinstance(weight, keras.Variable):
            return weight
    trainable = [w for w in layer.trainable_weights if len(w.shape) >= 2]
    return trainable[0] if trainable else None


def _initializer(layer: keras.layers.Layer) -> str:
    if layer in DATA_DEPENDENT:
        return "lsuv"
    owner = getattr(layer, "cell", layer)
    for attr in _MAIN_WEIGHTS:
        if isinstance(getattr(owner, attr, None), keras.Variable):
            init = getattr(owner, _INITIALIZER_ATTRS[attr], None)
            return initializers.initializer_family(init) if init is not None else ""
    return ""


def _activation(layer: keras.layers.Layer) -> str:
    name = type(layer).__name__
    if name in _ACTIVATION_LAYERS:
        return _ACTIVATION_LAYERS[name]
    activation = getattr(getattr(layer, "cell", layer), "activation", None)
    if activation is None or isinstance(layer, keras.Model):
        return ""
    try:
        return initializers.activation_name(activation)
    except (TypeError, ValueError):
        return getattr(activation, "__name__", "")


def _recommended(layer: keras.layers.Layer, activation: str) -> tuple[str, ...]:
    if not activation:
        return ()
    try:
        return initializers.recommended_families(
            getattr(getattr(layer, "cell", layer), "activation", activation)
        )
    except (TypeError, ValueError):
        return ()


def _first(output):
    return output[0] if isinstance(output, (list, tuple)) else output


def _residual_inputs(model: keras.Model) -> list:
    """Symbolic tensors that enter a merge layer together with another branch."""
    tensors = []
    for layer, exposed in walk(model):
        if exposed and type(layer).__name__ in _MERGE_LAYERS:
            try:
                inputs = layer.input
            except (AttributeError, ValueError):
                continue
            if isinstance(inputs, (list, tuple)) and len(inputs) > 1:
                tensors += list(inputs)
    return tensors


def _layer_info(layer, weight, exposed, graph, residual) -> LayerInfo:
    activation = _activation(layer)
    outputs = graph.outputs
    output = graph.output_of(layer) if exposed else None
    return LayerInfo(
        name=layer.name,
        class_name=type(layer).__name__,
        activation=activation,
        initializer=_initializer(layer) if weight is not None else "",
        weight_shape=tuple(int(d) for d in weight.shape) if weight is not None else (),
        is_output=output is not None and any(output is o for o in outputs),
        tapped_output=False,
        feeds_residual=output is not None and any(output is r for r in residual),
        recommended=_recommended(layer, activation),
    )


def _symbolic_output(layer):
    try:
        return _first(layer.output)
    except (AttributeError, ValueError, IndexError):
        return None


def select(model: keras.Model, layers: Sequence[str] | None) -> list:
    """The `(layer, exposed)` pairs to tap, restricted to `layers` if given."""
    pairs = walk(model)
    if layers is None:
        return pairs
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise TypeError(
            "Argument `layers` must be a list of layer names or None. "
            f"Received: layers={layers!r}"
        )
    names = [layer.name for layer, _ in pairs]
    unknown = [name for name in layers if name not in names]
    if unknown:
        raise ValueError(
            f"Argument `layers` names layer(s) {unknown} that model {model.name!r} "
            f"does not have. Received: layers={list(layers)!r}. "
            f"Available layers: {names}"
        )
    if not layers:
        raise ValueError(
            "Argument `layers` must name at least one layer. Received: layers=[]"
        )
    wanted = set(layers)
    return [(layer, exposed) for layer, exposed in pairs if layer.name in wanted]


def build_taps(
    model: keras.Model, layers: Sequence[str] | None = None, which: str = "output"
) -> TapSet:
    """Tap the layers of a model and build the view that exposes them.

    Args:
        model: A built Keras model.
        layers: Names of the layers to tap. Defaults to every layer.
        which: `"output"` exposes each layer's output; `"input"` its input
            (used by `lsuv` to recompute pre-activations).

    Returns:
        A `TapSet`.
    """
    check_model(model)
    pairs = select(model, layers)
    graph = _graph(model)
    residual = _residual_inputs(model) if graph.outputs else []
    taps, exposed_tensors, skipped = [], [], []
    seen = set()
    for layer, exposed in pairs:
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        weight = main_weight(layer)
        info = _layer_info(layer, weight, exposed, graph, residual)
        own = [] if isinstance(layer, keras.Model) else list(layer.trainable_weights)
        tensor = None
        if not graph.outputs:
            skipped.append((layer.name, "the model exposes no functional graph"))
        elif not exposed:
            skipped.append((layer.name, "inside a nested model: weights only"))
        else:
            find = graph.output_of if which == "output" else graph.input_of
            tensor = find(layer)
            if tensor is None:
                skipped.append((layer.name, f"its {which} is not a single tensor"))
        taps.append(Tap(layer, info, weight, own, None))
        exposed_tensors.append(tensor)
    view = _build_view(
        model, graph.inputs, graph.outputs, taps, exposed_tensors, skipped
    )
    return TapSet(model, taps, view, skipped)


@dataclasses.dataclass
class _Graph:
    """The symbolic graph the view is built from."""

    inputs: list
    outputs: list
    output_of: Callable
    input_of: Callable


def _graph(model: keras.Model) -> _Graph:
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError):
        return _Graph([], [], lambda layer: None, lambda layer: None)
    if isinstance(model, keras.Sequential) and len(inputs) == 1 and outputs:
        return _sequential_chain(model, inputs[0])
    return _Graph(inputs, outputs, _symbolic_output, _first_input)


def _sequential_chain(model: keras.Sequential, spec) -> _Graph:
    """One connected chain through a Sequential model's layers.

    A Sequential model's layers can hold calls from more than one graph (a
    model loaded from a `.keras` file is built twice), and `layer.output`
    names the first; calling the layers again on a fresh `keras.Input` gives
    tensors that are certainly on the path to the model's output.
    """
    tensor = keras.Input(batch_shape=tuple(spec.shape), dtype=spec.dtype)
    first, ins, outs = tensor, {}, {}
    for layer in model.layers:
        ins[id(layer)] = tensor
        tensor = _first(layer(tensor))
        outs[id(layer)] = tensor
    return _Graph(
        [first],
        [tensor],
        lambda layer: outs.get(id(layer)),
        lambda layer: ins.get(id(layer)),
    )


def _first_input(layer):
    try:
        return _first(layer.input)
    except (AttributeError, ValueError, IndexError):
        return None


def _build_view(model, inputs, outputs, taps, tensors, skipped):
    if not outputs:
        return None
    candidates = [(tap, t) for tap, t in zip(taps, tensors) if t is not None]
    try:
        view = keras.Model(inputs, [t for _, t in candidates] + outputs)
    except (ValueError, KeyError, AttributeError):
        # Some tensor is not in this model's graph (e.g. a shared layer first
        # called elsewhere): keep the ones that connect, one by one.
        kept = []
        for tap, tensor in candidates:
            try:
                keras.Model(inputs, [tensor])
                kept.append((tap, tensor))
            except (ValueError, KeyError, AttributeError):
                skipped.append((tap.name, "its output is not in this model's graph"))
        candidates = kept
        view = keras.Model(inputs, [t for _, t in candidates] + outputs)
    for index, (tap, _) in enumerate(candidates):
        tap.output_index = index
        tap.info = dataclasses.replace(tap.info, tapped_output=True)
    return view
