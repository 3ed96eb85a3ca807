"""`SmallRandom`: the fixed-scale baseline that variance scaling improves on."""

from __future__ import annotations

import keras

from keras_initdiag.initializers._common import (
    _check_choice,
    _check_positive,
    _register,
    _SeededInitializer,
)


@_register
class SmallRandom(_SeededInitializer):
    """Small random weights: the classic baseline before variance scaling.

    Draws from `N(0, scale**2)` (`distribution="normal"`) or from
    `U(-scale, scale)` (`distribution="uniform"`), whatever the layer size.
    Deep networks started this way see their signal shrink layer by layer;
    it is here as the reference point the other families improve on.

    Args:
        scale: Standard deviation (normal) or half-width (uniform). Defaults
            to `0.01`.
        distribution: `"normal"` or `"uniform"`. Defaults to `"normal"`.
        seed: An int, `None` or a `keras.random.SeedGenerator`. An int or
            `None` gives the same values on every call (`None` draws a seed
            at construction). Defaults to `None`.

    Example:
    ```python
    init = keras_initdiag.initializers.SmallRandom(scale=0.01, seed=0)
    layer = keras.layers.Dense(8, kernel_initializer=init)
    ```

    Reference:

    - [Glorot & Bengio, 2010](http://proceedings.mlr.press/v9/glorot10a.html)
    """

    def __init__(self, scale=0.01, distribution="normal", seed=None):
        self.scale = _check_positive("scale", scale)
        self.distribution = _check_choice(
            "distribution", distribution, ("normal", "uniform")
        )
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        """Returns a tensor of `shape` and `dtype` (default floatx)."""
        if self.distribution == "uniform":
            return keras.random.uniform(
                shape, -self.scale, self.scale, dtype=dtype, seed=self._seed
            )
        return keras.random.normal(
            shape, stddev=self.scale, dtype=dtype, seed=self._seed
        )

    def get_config(self):
        """Returns the constructor arguments as a JSON-serializable dict."""
        base_config = super().get_config()
        config = {"scale": self.scale, "distribution": self.distribution}
        return {**base_config, **config}
