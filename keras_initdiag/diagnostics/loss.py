"""The probe's loss: the model's own training loss, or the one the caller gives.

A compiled model's loss is computed by `model.compute_loss`, the public method
`fit` uses: `loss_weights`, dict outputs matched by name, masks and the
regularization and `add_loss` terms are all included. The probe calls it
inside a `keras.StatelessScope`, so the loss trackers it updates keep their
values. A loss passed to `diagnose(loss=...)` is applied per output and the
model's own losses (regularizers, `add_loss`) are added, as `fit` would.
"""

from __future__ import annotations

import inspect
import math

import keras
import tensorflow as tf

from keras_initdiag.diagnostics import stateless


class ProbeLoss:
    """Computes a model's loss from targets and predictions, statelessly.

    Args:
        model: The model.
        loss: A Keras loss name, `keras.losses.Loss`, callable, or a list or
            dict of those (one per output). `None` uses the compiled loss.

    Example:
    >>> probe_loss = ProbeLoss.resolve(model, None)   # None: no loss at all
    """

    def __init__(self, model: keras.Model, loss=None):
        self.explicit = None if loss is None else _per_output(model, loss)
        self._output_names = _output_names(model)
        self.spec = loss if loss is not None else getattr(model, "loss", None)
        self._training_arg = (
            "training" in inspect.signature(model.compute_loss).parameters
        )
        self.built = False

    @classmethod
    def resolve(cls, model: keras.Model, loss) -> ProbeLoss | None:
        """A `ProbeLoss`, or None when there is no loss to compute."""
        if loss is not None:
            return cls(model, loss)
        if getattr(model, "compiled", False) and getattr(model, "loss", None):
            return cls(model, None)
        return None

    def chance(self, classes: int) -> float:
        """The loss of predicting uniform class probabilities, or NaN.

        `ln(classes)` for (sparse) categorical cross-entropy, `ln(2)` for
        binary cross-entropy (per output unit); NaN for other losses and for
        several outputs.
        """
        kind = _crossentropy_kind(self.spec)
        if kind == "binary":
            return math.log(2.0)
        if kind == "categorical" and classes >= 2:
            return math.log(classes)
        return math.nan

    def key(self) -> str:
        """A description that is equal for equal losses (for caching)."""
        return "compiled" if self.explicit is None else repr(self.explicit_keys)

    def build(self, model: keras.Model, x, y, preds) -> None:
        """Build the compiled loss's trackers outside the compiled probe.

        Keras builds a model's `CompileLoss` (and its loss-tracking metrics)
        on its first call. Inside a `keras.StatelessScope` the new trackers
        start at zero when the scope ends, and the update of this call is
        discarded, so no existing variable changes.
        """
        if self.built or self.explicit is not None:
            self.built = True
            return
        with stateless.read_only(model):
            self(model, x, y, preds)
        self.built = True

    def __call__(self, model: keras.Model, x, y, preds) -> tf.Tensor:
        """The scalar float32 loss (call inside the probe's stateless scope)."""
        if self.explicit is None:
            kwargs = {"training": True} if self._training_arg else {}
            loss = model.compute_loss(x=x, y=y, y_pred=preds, **kwargs)
            return tf.cast(loss, tf.float32)
        terms = []
        for fn, target, pred in _pairs(self.explicit, y, preds, self._output_names):
            value = fn(target, tf.cast(pred, tf.float32))
            terms.append(tf.cast(tf.reduce_mean(value), tf.float32))
        terms += [tf.cast(term, tf.float32) for term in model.losses]
        return tf.add_n(terms)

    @property
    def explicit_keys(self):
        """Per-output descriptions of an explicit loss."""
        return [_describe(fn) for fn in (self.explicit or {}).values()]


def _crossentropy_kind(spec) -> str:
    """`"categorical"`, `"binary"` or `""` for a single loss specification."""
    if isinstance(spec, (list, tuple, dict)):
        values = list(spec.values()) if isinstance(spec, dict) else list(spec)
        return _crossentropy_kind(values[0]) if len(values) == 1 else ""
    name = spec if isinstance(spec, str) else type(spec).__name__
    if isinstance(spec, str) or isinstance(spec, keras.losses.Loss):
        name = name.lower().replace("_", "")
    else:
        name = getattr(spec, "__name__", "").lower().replace("_", "")
    if "binarycrossentropy" in name or "binaryfocal" in name:
        return "binary"
    if "categoricalcrossentropy" in name or "categoricalfocal" in name:
        return "categorical"
    return ""


def _describe(fn) -> str:
    if isinstance(fn, keras.losses.Loss):
        return f"{type(fn).__name__}{sorted(fn.get_config().items())}"
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    module = getattr(fn, "__module__", "")
    return f"{module}.{name}" if "<lambda>" not in name else f"lambda@{id(fn)}"


def _get(spec):
    try:
        fn = keras.losses.get(spec)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"Argument `loss` must be a Keras loss name, a `keras.losses.Loss` or a "
            f"callable `(y_true, y_pred) -> loss`. Received: loss={spec!r}"
        ) from error
    if fn is None:
        raise ValueError(
            f"Argument `loss` is not a known loss. Received: loss={spec!r}"
        )
    return fn


def _output_names(model: keras.Model) -> list[str]:
    names = list(getattr(model, "output_names", None) or [])
    try:
        count = len(model.outputs)
    except (AttributeError, ValueError, TypeError):
        count = 1
    return names if len(names) == count else [f"output_{i}" for i in range(count)]


def _per_output(model: keras.Model, loss) -> dict:
    """Output name -> loss function (outputs without a loss are left out)."""
    names = _output_names(model)
    if isinstance(loss, dict):
        missing = [name for name in loss if name not in names]
        if missing:
            raise ValueError(
                f"Argument `loss` names outputs {missing} that the model does not "
                f"have (outputs: {names}). Received: loss={loss!r}"
            )
        return {name: _get(loss[name]) for name in names if loss.get(name) is not None}
    if isinstance(loss, (list, tuple)):
        if len(loss) != len(names):
            raise ValueError(
                f"Argument `loss` must have one entry per model output ({len(names)})"
                f". Received: loss={loss!r}"
            )
        return {name: _get(s) for name, s in zip(names, loss) if s is not None}
    fn = _get(loss)
    return {name: fn for name in names}


def _pairs(fns: dict, y, preds, names: list[str]):
    """`(fn, target, prediction)` per output with a loss, matched by name."""
    flat_preds = _by_name(preds, names, "predictions")
    flat_y = _by_name(y, names, "y")
    return [(fn, flat_y[name], flat_preds[name]) for name, fn in fns.items()]


def _by_name(value, names: list[str], what: str) -> dict:
    if isinstance(value, dict):
        return {name: value[name] for name in names if name in value}
    flat = value if isinstance(value, (list, tuple)) else [value]
    if len(flat) != len(names):
        raise ValueError(
            f"Argument `y` must have one target per model output ({len(names)}: "
            f"{names}). Received: {len(flat)} {what}"
        )
    return dict(zip(names, flat))
