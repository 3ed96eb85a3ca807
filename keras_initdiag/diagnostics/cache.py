"""What the diagnostics keep per model, held weakly (freed with the model).

One traced graph per model (tracing calls its layers once more on symbolic
inputs), the taps per layer selection, and at most `CACHE_SIZE` diagnosers
(compiled probes) per model, least recently used dropped. A diagnoser's key
holds what its probe depends on besides the architecture (`model_state`)
and the loss by its configuration (`loss_key`: a fresh `MeanSquaredError()`
per call is the same loss).
"""

from __future__ import annotations

import dataclasses
import json
import weakref
from collections import OrderedDict

import keras

from keras_initdiag.diagnostics import graph as graph_lib

#: Diagnosers kept per model by `diagnose()` (least recently used dropped).
CACHE_SIZE = 4
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_state(model: keras.Model) -> tuple:
    """What a probe depends on besides the architecture.

    The trainable variables (freezing a layer removes its weights), the
    compiled loss and its weights (recompiling with another loss changes
    the probe's loss), the optimizer's class (thresholds depend on it) and
    whether it scales the loss (mixed precision). Nothing else of the
    optimizer: a new learning rate, schedule or optimizer object of the
    same class keeps the probe, its eager calls and its trace.
    """
    loss = ""
    if getattr(model, "compiled", False):
        weights = model.get_compile_config().get("loss_weights")
        loss = loss_key(getattr(model, "loss", None))
        loss += json.dumps(weights, sort_keys=True, default=str)
    optimizer = getattr(model, "optimizer", None)
    return (
        tuple(id(v) for v in model.trainable_variables),
        loss,
        type(getattr(optimizer, "inner_optimizer", optimizer)).__name__,
        isinstance(optimizer, keras.optimizers.LossScaleOptimizer),
    )


def loss_key(loss) -> str:
    """A loss by its configuration (closures by identity) for cache keys."""
    if loss is None or isinstance(loss, str):
        return repr(loss)
    if isinstance(loss, (list, tuple)):
        return repr([loss_key(item) for item in loss])
    if isinstance(loss, dict):
        return repr({k: loss_key(v) for k, v in sorted(loss.items())})
    if isinstance(loss, keras.losses.Loss):
        try:
            config = json.dumps(loss.get_config(), sort_keys=True, default=str)
        except (TypeError, ValueError):
            config = str(id(loss))
        return f"{type(loss).__module__}.{type(loss).__qualname__}{config}"
    name = getattr(loss, "__qualname__", "")
    if name and "<lambda>" not in name and "<locals>" not in name:
        return f"{getattr(loss, '__module__', '')}.{name}"
    return f"object@{id(loss)}"


@dataclasses.dataclass
class _ModelEntry:
    """What is kept per model: its graph, taps per selection, probes per key."""

    graph: object = None
    tapsets: dict = dataclasses.field(default_factory=dict)
    diagnosers: OrderedDict = dataclasses.field(default_factory=OrderedDict)


def entry(model: keras.Model) -> _ModelEntry:
    """What is kept for `model` (created empty on first use)."""
    kept = _CACHE.get(model)
    if kept is None:
        kept = _CACHE[model] = _ModelEntry()
    return kept


def graph_of(model: keras.Model) -> graph_lib.Graph:
    """The model's traced graph, traced once per model and kept with it.

    Tracing calls the model's layers once more on symbolic inputs (which
    adds an inbound node to each); keeping one graph per model makes that
    happen once, however many diagnoses, callbacks and `lsuv` runs follow.
    """
    kept = entry(model)
    if kept.graph is None:
        kept.graph = graph_lib.trace(model)
    return kept.graph


def forget(model: keras.Model) -> None:
    """Drop the cached taps and probes of `model` (its layers' facts changed).

    The traced graph is kept: the architecture did not change.
    """
    entry = _CACHE.get(model)
    if entry is not None:
        entry.tapsets.clear()
        entry.diagnosers.clear()
