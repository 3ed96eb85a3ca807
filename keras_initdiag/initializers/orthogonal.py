"""Orthogonal kernels: `Orthogonal`, `DeltaOrthogonal` and `centre_tap`."""

from __future__ import annotations

import keras
import numpy as np

from keras_initdiag.initializers._common import (
    _check_positive,
    _register,
    _SeededInitializer,
)


@_register
class Orthogonal(_SeededInitializer):
    """(Semi-)orthogonal kernel times `gain`, for any rank >= 2.

    The kernel is viewed as a `(prod(shape[:-1]), shape[-1])` matrix `W`
    with orthonormal columns (`W^T W = gain**2 I`) when it has at least as
    many rows as columns, and orthonormal rows otherwise. Wraps
    `keras.initializers.Orthogonal`.

    Args:
        gain: Factor on the orthogonal matrix. Defaults to `1.0`.
        seed: An int, `None` or a `keras.random.SeedGenerator`. An int or
            `None` gives the same values on every call (`None` draws a seed
            at construction). Defaults to `None`.

    Example:
    ```python
    init = keras_initdiag.initializers.Orthogonal(gain=2**0.5, seed=0)
    layer = keras.layers.Dense(8, activation="relu", kernel_initializer=init)
    ```

    Reference:

    - [Saxe et al., 2014](https://arxiv.org/abs/1312.6120)
    """

    def __init__(self, gain=1.0, seed=None):
        self.gain = _check_positive("gain", gain)
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        """Returns a tensor of `shape` and `dtype` (default floatx)."""
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError(
                "`Orthogonal` needs a kernel of rank >= 2. "
                f"Received: shape={shape} of rank {len(shape)}"
            )
        ortho = keras.initializers.Orthogonal(gain=self.gain, seed=self._seed)
        return ortho(shape, dtype=dtype)

    def get_config(self):
        """Returns the constructor arguments as a JSON-serializable dict."""
        base_config = super().get_config()
        return {**base_config, "gain": self.gain}


def centre_tap(shape) -> tuple[int, ...]:
    """Index of the spatial tap that `DeltaOrthogonal` fills.

    It is `(k - 1) // 2` along each spatial axis: the middle for odd `k`, and
    for even `k` the lower of the two middle taps, which is the tap Keras's
    `padding="same"` aligns with the output position (TensorFlow pads the
    extra element after), so the convolution does not shift its input.

    Args:
        shape: A 3-, 4- or 5-D kernel shape `(*spatial, in, out)`.

    Returns:
        A tuple of spatial indices.

    Example:
    ```python
    keras_initdiag.initializers.centre_tap((3, 4, 8, 8))  # (1, 1)
    ```
    """
    return tuple((k - 1) // 2 for k in tuple(shape)[:-2])


@_register
class DeltaOrthogonal(_SeededInitializer):
    """Delta-orthogonal convolution kernel: orthogonal centre tap, zeros elsewhere.

    For a 1-, 2- or 3-D convolution kernel `(*spatial, in, out)`, the tap at
    `centre_tap(shape)` holds an `(in, out)` matrix with orthonormal rows
    times `gain`, and every other tap is exactly zero. At initialization the
    convolution is then a norm-preserving channel map, which lets very deep
    plain CNNs train (dynamical isometry). Needs `in <= out`.

    Args:
        gain: Factor on the orthogonal block. Defaults to `1.0`.
        seed: An int, `None` or a `keras.random.SeedGenerator`. An int or
            `None` gives the same values on every call (`None` draws a seed
            at construction). Defaults to `None`.

    Example:
    ```python
    init = keras_initdiag.initializers.DeltaOrthogonal(seed=0)
    layer = keras.layers.Conv2D(16, 3, padding="same", kernel_initializer=init)
    ```

    Reference:

    - [Xiao et al., 2018](https://arxiv.org/abs/1806.05393)
    """

    def __init__(self, gain=1.0, seed=None):
        self.gain = _check_positive("gain", gain)
        super().__init__(seed=seed)

    def __call__(self, shape, dtype=None):
        """Returns a tensor of `shape` and `dtype` (default floatx)."""
        shape = tuple(shape)
        if len(shape) not in (3, 4, 5):
            raise ValueError(
                "`DeltaOrthogonal` needs a 3-, 4- or 5-D convolution kernel "
                f"`(*spatial, in, out)`. Received: shape={shape}"
            )
        n_in, n_out = shape[-2], shape[-1]
        if n_in > n_out:
            raise ValueError(
                "`DeltaOrthogonal` needs in_channels <= out_channels "
                "(an orthogonal map cannot shrink the channel count). "
                f"Received: shape={shape}"
            )
        ortho = keras.initializers.Orthogonal(gain=self.gain, seed=self._seed)
        block = ortho((n_in, n_out), dtype=dtype)
        mask = np.zeros(shape[:-2] + (1, 1), dtype="float32")
        mask[centre_tap(shape)] = 1.0
        mask = keras.ops.convert_to_tensor(mask, dtype=block.dtype)
        return mask * block

    def get_config(self):
        """Returns the constructor arguments as a JSON-serializable dict."""
        base_config = super().get_config()
        return {**base_config, "gain": self.gain}
