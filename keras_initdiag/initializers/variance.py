"""The variance-scaling families: `Xavier`, `He` and `LeCun`.

They scale the variance by the fans and delegate the sampling to
`keras.initializers.VarianceScaling` (and `keras.initializers.Orthogonal`
for `distribution="orthogonal"`).
"""

from __future__ import annotations

import math

import keras

from keras_initdiag._fans import compute_fans
from keras_initdiag.initializers._common import (
    _check_bool,
    _check_choice,
    _check_non_negative,
    _check_positive,
    _register,
    _SeededInitializer,
)

_DISTRIBUTIONS = ("normal", "truncated_normal", "uniform", "orthogonal")
# Our distribution names -> `keras.initializers.VarianceScaling` names.
_KERAS_DISTRIBUTION = {
    "normal": "untruncated_normal",
    "truncated_normal": "truncated_normal",
    "uniform": "uniform",
}


#: The Args entries every variance initializer shares, filled into their
#: docstrings as Keras fills `{{base_optimizer_keyword_args}}`.
_VARIANCE_KEYWORD_ARGS = """\
        distribution: One of `"normal"` (untruncated), `"truncated_normal"`
            (cut at two standard deviations, with the standard deviation
            corrected so the variance is still the target, as Keras's
            `VarianceScaling` does), `"uniform"` or `"orthogonal"` (an
            orthogonal matrix over the `(prod(shape[:-1]), shape[-1])` view,
            scaled to the target per-element variance). Defaults to
            `"normal"`.
        gain: Extra factor on the standard deviation (the variance is
            multiplied by `gain**2`). Defaults to `1.0`.
        seed: An int, `None` or a `keras.random.SeedGenerator`. An int or
            `None` gives the same values on every call (`None` draws a seed
            at construction). Defaults to `None`.
        depthwise: Leave the channel axis out of the fans, for
            `DepthwiseConv*D` kernels `(*spatial, channels, multiplier)`;
            Keras's fans over-count those by `channels`. Defaults to `False`.
"""


class _VarianceFamily(_SeededInitializer):
    """Weights with variance `gain**2 * base_scale / fan` (fan from `mode`)."""

    mode = "fan_in"

    def __init__(self, distribution="normal", gain=1.0, seed=None, depthwise=False):
        self.distribution = _check_choice("distribution", distribution, _DISTRIBUTIONS)
        self.gain = _check_positive("gain", gain)
        self.depthwise = _check_bool("depthwise", depthwise)
        super().__init__(seed=seed)

    def _base_scale(self) -> float:
        return 1.0

    def variance(self, shape) -> float:
        """Target per-element variance of a kernel of this `shape`.

        Args:
            shape: The kernel shape.

        Returns:
            `gain**2 * base_scale / fan`, with the fan picked by the family's
            mode (fan_in, or fan_avg for `Xavier`) and computed as Keras does,
            except with `depthwise=True`.

        Example:
        ```python
        keras_initdiag.initializers.He().variance((100, 10))  # 0.02
        ```
        """
        shape = tuple(shape)
        fan_in, fan_out = compute_fans(shape, depthwise=self.depthwise)
        fan = fan_in if self.mode == "fan_in" else (fan_in + fan_out) / 2.0
        return self.gain**2 * self._base_scale() / max(1.0, fan)

    def __call__(self, shape, dtype=None):
        """Returns a tensor of `shape` and `dtype` (default floatx)."""
        shape = tuple(shape)
        if self.distribution == "orthogonal":
            if len(shape) < 2:
                raise ValueError(
                    "The `orthogonal` distribution needs a kernel of rank >= 2. "
                    f"Received: shape={shape}"
                )
            # A (semi-)orthogonal (rows, cols) matrix has per-element mean
            # square 1 / max(rows, cols); rescale it to the target variance.
            rows, cols = math.prod(shape[:-1]), shape[-1]
            factor = math.sqrt(self.variance(shape) * max(rows, cols))
            ortho = keras.initializers.Orthogonal(gain=factor, seed=self._seed)
            return ortho(shape, dtype=dtype)
        if self.depthwise:
            # Keras's fans over-count a depthwise kernel by `channels`: fold
            # our own variance into `scale` and draw a (1, n) view (fan_in 1),
            # so Keras still does the sampling and truncation correction.
            initializer = keras.initializers.VarianceScaling(
                scale=self.variance(shape),
                mode="fan_in",
                distribution=_KERAS_DISTRIBUTION[self.distribution],
                seed=self._seed,
            )
            flat = initializer((1, math.prod(shape)), dtype=dtype)
            return keras.ops.reshape(flat, shape)
        initializer = keras.initializers.VarianceScaling(
            scale=self.gain**2 * self._base_scale(),
            mode=self.mode,
            distribution=_KERAS_DISTRIBUTION[self.distribution],
            seed=self._seed,
        )
        return initializer(shape, dtype=dtype)

    def get_config(self):
        """Returns the constructor arguments as a JSON-serializable dict."""
        base_config = super().get_config()
        config = {
            "distribution": self.distribution,
            "gain": self.gain,
            "depthwise": self.depthwise,
        }
        return {**base_config, **config}


@_register
class Xavier(_VarianceFamily):
    """Xavier (Glorot) initializer: variance `gain**2 / fan_avg`.

    `fan_avg = (fan_in + fan_out) / 2`. Keeps both the forward signal and
    the back-propagated gradient near unit variance for tanh and sigmoid
    networks, and for linear layers.

    Args:
        {{variance_keyword_args}}

    Example:
    ```python
    init = keras_initdiag.initializers.Xavier(distribution="uniform", seed=0)
    layer = keras.layers.Dense(8, activation="tanh", kernel_initializer=init)
    ```

    Reference:

    - [Glorot & Bengio, 2010](http://proceedings.mlr.press/v9/glorot10a.html)
    """

    mode = "fan_avg"


@_register
class LeCun(_VarianceFamily):
    """LeCun initializer: variance `gain**2 / fan_in`.

    The variance-preserving choice for SELU (self-normalizing networks) and,
    with a measured `gain`, for any activation (see `for_activation`).

    Args:
        {{variance_keyword_args}}

    Example:
    ```python
    init = keras_initdiag.initializers.LeCun(seed=0)
    layer = keras.layers.Dense(8, activation="selu", kernel_initializer=init)
    ```

    Reference:

    - [LeCun et al., 1998](http://yann.lecun.com/exdb/publis/pdf/lecun-98b.pdf)
    - [Klambauer et al., 2017](https://arxiv.org/abs/1706.02515)
    """


@_register
class He(_VarianceFamily):
    """He (Kaiming) initializer: variance `gain**2 * 2 / ((1 + a**2) fan_in)`.

    `a` is `negative_slope`: 0 for ReLU, the leak for leaky ReLU (Keras 3's
    `leaky_relu` default is 0.2). Keeps the forward signal at constant
    variance through ReLU layers, which zero half of their input.

    Args:
        {{variance_keyword_args}}
        negative_slope: Slope `a` of the leaky ReLU for negative inputs.
            Defaults to `0.0`.

    Example:
    ```python
    init = keras_initdiag.initializers.He(negative_slope=0.2, seed=0)
    layer = keras.layers.Dense(8, activation="leaky_relu", kernel_initializer=init)
    ```

    Reference:

    - [He et al., 2015](https://arxiv.org/abs/1502.01852)
    """

    def __init__(
        self,
        distribution="normal",
        gain=1.0,
        seed=None,
        depthwise=False,
        negative_slope=0.0,
    ):
        self.negative_slope = _check_non_negative("negative_slope", negative_slope)
        super().__init__(
            distribution=distribution, gain=gain, seed=seed, depthwise=depthwise
        )

    def _base_scale(self) -> float:
        return 2.0 / (1.0 + self.negative_slope**2)

    def get_config(self):
        """Returns the constructor arguments as a JSON-serializable dict."""
        base_config = super().get_config()
        config = {"negative_slope": self.negative_slope}
        return {**base_config, **config}


for _cls in (Xavier, LeCun, He):
    _cls.__doc__ = _cls.__doc__.replace(
        "        {{variance_keyword_args}}\n", _VARIANCE_KEYWORD_ARGS
    )
