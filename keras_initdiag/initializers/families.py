"""`initializer_family`: which family an initializer belongs to.

Classifies ours and Keras's initializers into the family names that
`recommended_families` uses, so the diagnostics can compare the two.
"""

from __future__ import annotations

import math

import keras

from keras_initdiag.initializers.orthogonal import DeltaOrthogonal, Orthogonal
from keras_initdiag.initializers.small_random import SmallRandom
from keras_initdiag.initializers.variance import He, LeCun, Xavier

# Stddev at or below which a fixed-scale random initializer counts as "small".
SMALL_STDDEV = 0.02

_OUR_FAMILIES = (
    (He, "he"),
    (Xavier, "xavier"),
    (LeCun, "lecun"),
    (SmallRandom, "small_random"),
    (DeltaOrthogonal, "delta_orthogonal"),
    (Orthogonal, "orthogonal"),
)


# `Identity` is a (semi-)orthogonal matrix times `gain`; look it up by name
# so an older Keras 3 without it still imports.
_KERAS_ORTHOGONAL = tuple(
    getattr(keras.initializers, name)
    for name in ("Orthogonal", "Identity")
    if hasattr(keras.initializers, name)
)


def _variance_scaling_family(scale: float, mode: str) -> str:
    for target, target_mode, family in (
        (2.0, "fan_in", "he"),
        (1.0, "fan_avg", "xavier"),
        (1.0, "fan_in", "lecun"),
    ):
        if mode == target_mode and math.isclose(scale, target, rel_tol=1e-6):
            return family
    return "unknown"


def _fixed_scale_family(stddev: float) -> str:
    return "small_random" if abs(stddev) <= SMALL_STDDEV else "random"


def initializer_family(initializer) -> str:
    """Classify an initializer into the family the rule of thumb talks about.

    Returns one of `"he"`, `"xavier"`, `"lecun"`, `"orthogonal"`,
    `"delta_orthogonal"`, `"constant"` (`Zeros`, `Ones`, `Constant`),
    `"small_random"` (`SmallRandom`, or `RandomNormal`, `TruncatedNormal`,
    `RandomUniform` with a standard deviation of at most `SMALL_STDDEV`),
    `"random"` (those with a larger one) or `"unknown"`. Keras's
    `VarianceScaling` (and so Glorot*, He*, Lecun*) is classified from
    `(scale, mode)`: `(2, fan_in)` is He, `(1, fan_avg)` Xavier,
    `(1, fan_in)` LeCun, anything else unknown. Keras's `Identity` counts as
    orthogonal. Our `He`, `Xavier` and `LeCun` keep their family whatever
    their gain or distribution.

    Args:
        initializer: An initializer object, class, config dict or name
            (e.g. `"he_normal"` or `"keras_initdiag>He"`).

    Returns:
        The family name.

    Example:
    ```python
    keras_initdiag.initializers.initializer_family("glorot_uniform")  # "xavier"
    ```
    """
    if isinstance(initializer, (str, dict, type)):
        try:
            initializer = keras.initializers.get(initializer)
        except (ValueError, TypeError):
            return "unknown"
    for cls, family in _OUR_FAMILIES:
        if isinstance(initializer, cls):
            return family
    inits = keras.initializers
    if isinstance(initializer, (inits.Zeros, inits.Ones, inits.Constant)):
        return "constant"
    if isinstance(initializer, _KERAS_ORTHOGONAL):
        return "orthogonal"
    if isinstance(initializer, inits.VarianceScaling):
        return _variance_scaling_family(initializer.scale, initializer.mode)
    if isinstance(initializer, (inits.RandomNormal, inits.TruncatedNormal)):
        return _fixed_scale_family(float(initializer.stddev))
    if isinstance(initializer, inits.RandomUniform):
        width = float(initializer.maxval) - float(initializer.minval)
        return _fixed_scale_family(width / math.sqrt(12.0))
    return "unknown"
