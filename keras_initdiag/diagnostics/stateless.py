"""Running a model without changing it: the stateless scope and forward pass.

Every measurement of the package (the probe, its loss, the engine's check
of a rejected batch, `lsuv`) runs the model inside a `keras.StatelessScope`:
every variable is read into a tensor, the layers see those tensors, and
whatever they would write (BatchNormalization's moving statistics, dropout's
seed-generator state, the loss trackers) goes to the scope and is dropped.
This module builds that scope's variable mapping, in one place, and runs
the view of the model inside it.

Seed-generator states map to a fixed seed each, so random layers (dropout,
noise) draw the same numbers in every measurement and the model's own
random state never moves.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_initdiag.diagnostics.taps import TapSet

_SEED_STATE = "seed_generator_state"


def unique(variables) -> list:
    """`variables` in their order, each once (by identity)."""
    seen, out = set(), []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def split_variables(tapset: TapSet, model: keras.Model) -> tuple[list, list]:
    """`(trainable, other)` variables of the view and the model, each once."""
    source = tapset.view if tapset.view is not None else model
    trainable = unique(
        list(source.trainable_variables) + list(model.trainable_variables)
    )
    ids = {id(v) for v in trainable}
    every = unique(list(source.variables) + list(model.variables))
    return trainable, [v for v in every if id(v) not in ids]


def state_mapping(trainable: Sequence, values: Sequence, others: Sequence) -> list:
    """`(variable, value)` for a stateless call; seed states are fixed.

    Trainable variables map to `values` (tensors a tape can watch), the
    others to their current values, except seed-generator states, which map
    to a fixed seed each: random layers draw the same numbers at every
    diagnosis, and the model's own random state never moves.
    """
    mapping = list(zip(trainable, values))
    seeds = 0
    for variable in others:
        if variable.name == _SEED_STATE:
            seeds += 1
            value = tf.constant([1337 + seeds, 0], dtype=variable.dtype)
        else:
            value = tf.identity(variable.value)
        mapping.append((variable, value))
    return mapping


def scope(
    trainable: Sequence = (),
    values: Sequence = (),
    others: Sequence = (),
    *,
    collect_losses: bool = True,
) -> keras.StatelessScope:
    """A `keras.StatelessScope` over `state_mapping(...)`.

    Args:
        trainable: Variables read as `values` (tensors a tape can watch).
        values: One tensor per trainable variable.
        others: Variables read at their current value (seed states: fixed).
        collect_losses: Collect the layers' `add_loss` terms in the scope
            (`model.losses` reads them there). Defaults to `True`.
    """
    return keras.StatelessScope(
        state_mapping=state_mapping(trainable, values, others),
        collect_losses=collect_losses,
    )


def read_only(
    model: keras.Model, *, collect_losses: bool = True
) -> keras.StatelessScope:
    """A stateless scope that reads every variable of `model` as it is now."""
    return scope(others=model.variables, collect_losses=collect_losses)


def forward(tapset: TapSet, model: keras.Model, x, training: bool):
    """`(predictions, tapped outputs)` of the view (or the model without one).

    Call it inside a stateless scope (see `stateless_forward`).
    """
    if tapset.view is None:
        return model(x, training=training), []
    out = tapset.view(x, training=training)
    return out["outputs"], list(out["taps"])


def stateless_forward(tapset: TapSet, model: keras.Model, x, training: bool):
    """`forward`, run in a stateless scope: no variable changes."""
    trainable, others = split_variables(tapset, model)
    values = [tf.identity(v.value) for v in trainable]
    with scope(trainable, values, others):
        return forward(tapset, model, x, training)
