"""`Whitening`: standardize or decorrelate inputs (modes standardize, pca, zca)."""

from __future__ import annotations

import itertools
import math

import keras
import numpy as np
from keras import ops

from keras_initdiag.layers import linalg, moments
from keras_initdiag.layers.adapt_data import iter_batches, resolve_axis, to_rows

MODES = ("standardize", "pca", "zca")


@keras.saving.register_keras_serializable(package="keras_initdiag")
class Whitening(keras.layers.Layer):
    """Standardizes or decorrelates (whitens) inputs with statistics from `adapt`.

    Features on different scales, or correlated features, give an elongated
    loss surface on which gradient descent zig-zags. After `adapt(data)`, this
    layer maps `data` to zero mean and identity covariance, so the surface is
    round:

    - `"standardize"`: `(x - mean) / std`, feature by feature.
    - `"pca"`: rotates onto the principal axes (largest variance first) and
        scales each to unit variance.
    - `"zca"`: PCA whitening rotated back. Its matrix is symmetric positive
        definite, and of all whitening transforms its output stays closest to
        the input.

    The layer computes `y = (x - mean) @ matrix` along `axis`, in float32 even
    under mixed precision (float64 if the layer's dtype is float64). `adapt`
    accumulates the count, mean and co-moment in float64 with an exact parallel
    merge, so batches, several `adapt(..., reset=False)` calls and one call on
    all the data agree. The statistics and the matrix are non-trainable weights.

    Args:
        mode: `"standardize"`, `"pca"` or `"zca"`. Defaults to `"zca"`.
        epsilon: Relative variance floor. A direction (a feature for
            `"standardize"`, an eigenvector of the covariance otherwise) whose
            variance is at most `epsilon` times the mean variance
            `trace(cov) / d` is degenerate: it is centered and scaled by
            `1 / sqrt(mean variance)` instead of being amplified. Being
            relative, it means the same in any unit. It is for numerical
            safety only, so the default is as small as float32 allows: at the
            floor a direction is amplified `1e5` times over an average one,
            and float32 rounding (`6e-8`) amplified that much leaves whitened
            outputs `6e-3 * sqrt(d)` accurate at worst. Float64 eigenvalue
            error (`d**2 * 2e-16` at most) and float32 data rounding of a
            feature (`(6e-8)**2 = 4e-15`) stay below it, so numerically zero
            directions are floored. Variances that are zero up to float64
            rounding always are, whatever `epsilon`. Defaults to `1e-10`.
        axis: The feature axis, any axis but the batch axis (e.g. the channel
            axis of images). Defaults to `-1`.
        mean: Optional centering vector of shape `(d,)`, given with `matrix`
            instead of calling `adapt`. Defaults to `None`.
        matrix: Optional `(d, d)` whitening matrix, applied as
            `(x - mean) @ matrix`, given with `mean`. Defaults to `None`.
        invert: If `True`, maps whitened values back: `x = y @ inverse + mean`.
            Defaults to `False`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Raises:
        ValueError: If `mode`, `epsilon`, `axis`, `mean` or `matrix` is invalid.
        TypeError: If `axis` is not an int.

    Example:
    ```python
    import keras
    import numpy as np
    import keras_initdiag

    mixing = np.array([[1.0, 0.0], [0.99, 0.01]])  # two strongly correlated
    x_train = np.random.normal(size=(1000, 2)) @ mixing + 5.0
    y_train = x_train @ np.array([1.0, -1.0])

    whitening = keras_initdiag.layers.Whitening(mode="zca")
    whitening.adapt(x_train)  # array, tensor, tf.data.Dataset or batches
    print(whitening.condition_number, whitening.whitened_condition_number)
    model = keras.Sequential([whitening, keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(x_train, y_train)
    ```
    """

    def __init__(
        self,
        mode="zca",
        epsilon=1e-10,
        axis=-1,
        mean=None,
        matrix=None,
        invert=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(
                f"Argument `mode` must be one of {MODES}. Received: mode={mode!r}"
            )
        if (
            isinstance(epsilon, bool)
            or not isinstance(epsilon, (int, float))
            or not 0 < epsilon < math.inf
        ):
            raise ValueError(
                f"Argument `epsilon` must be a positive float. Received: "
                f"epsilon={epsilon!r}"
            )
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"Argument `axis` must be an int. Received: axis={axis!r}")
        if axis == 0:
            resolve_axis(axis, 2, "any input (axis 0 is the batch axis)")
        self.mode = mode
        self.epsilon = float(epsilon)
        self.axis = axis
        self.invert = bool(invert)
        self.input_mean, self.input_matrix = linalg.check_explicit(mean, matrix)
        self.supports_masking = True
        self._features = None if mean is None else len(self.input_mean)
        self._adapted = mean is not None
        self._build_input_shape = None

    @property
    def input_dtype(self):
        """Inputs are computed in at least float32 (also under mixed precision)."""
        return "float64" if self.compute_dtype == "float64" else "float32"

    def build(self, input_shape):
        """Creates the statistics and matrix weights for `input_shape`."""
        ndim = len(input_shape)
        axis = resolve_axis(self.axis, ndim, f"inputs of shape {input_shape}")
        d = input_shape[axis]
        if d is None or (self._features is not None and d != self._features):
            raise ValueError(
                f"The feature size along axis {self.axis} must be "
                f"{self._features or 'known'}. Received: input_shape={input_shape}"
            )
        self._features = d
        self._build_input_shape = (None, *tuple(input_shape)[1:])
        if self.input_mean is None:
            weight = dict(trainable=False, autocast=False)
            self.adapted_count = self.add_weight(
                name="count", shape=(), dtype="float64", initializer="zeros", **weight
            )
            self.adapted_mean = self.add_weight(
                name="mean", shape=(d,), dtype="float64", initializer="zeros", **weight
            )
            self.adapted_comoment = self.add_weight(
                name="comoment", shape=(d, d), dtype="float64", **weight
            )
            self.adapted_matrix = self.add_weight(
                name="matrix", shape=(d, d), dtype=self.input_dtype, **weight
            )
        self.built = True

    def adapt(self, data, batch_size=None, steps=None, reset=True):
        """Computes the mean and whitening matrix of `data`.

        Args:
            data: A numpy array or tensor (rows along axis 0), a
                `tf.data.Dataset` (batched, or unbatched with rank-1
                elements), a `keras.utils.PyDataset` or any iterable of
                batches. For `(x, y)` elements only `x` is used.
            batch_size: Rows per step for arrays, tensors and unbatched
                datasets. Defaults to `None` (whole arrays; 256 for datasets).
            steps: Number of batches to read at most. Defaults to `None` (all).
            reset: If `False`, merges `data` into the current statistics
                instead of starting again. Defaults to `True`.

        Raises:
            ValueError: If `data` is empty, holds NaN/Inf, changes its feature
                size, or the layer was built with explicit `mean`/`matrix`.
            TypeError: If `data` is not numeric.

        Example:
        ```python
        x = np.random.normal(size=(1000, 4))
        layer = keras_initdiag.layers.Whitening()
        layer.adapt(x[:500])
        layer.adapt(x[500:], reset=False)  # same statistics as layer.adapt(x)
        ```
        """
        if self.input_mean is not None:
            raise ValueError(
                "This layer was given explicit `mean` and `matrix`; `adapt()` "
                "would not use them. Create it without them to adapt."
            )
        for name, value in (("batch_size", batch_size), ("steps", steps)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(
                    f"Argument `{name}` must be a positive int or None. "
                    f"Received: {name}={value!r}"
                )
        rank = len(self._build_input_shape) if self.built else None
        batches = iter_batches(data, batch_size, rank)
        total, shape, offset = None, None, 0
        for index, batch in enumerate(itertools.islice(batches, steps)):
            features = self._features if total is None else total.features
            rows, array = to_rows(batch, index, offset, self.axis, features)
            if total is None:
                total, shape = moments.empty(rows.shape[1]), array.shape
            total = moments.merge(total, moments.from_batch(rows))
            offset += len(array)
        if total is None or total.count == 0:
            raise ValueError(
                "Argument `data` is empty: `adapt()` received no rows. "
                f"Received: data of type {type(data).__name__}"
            )
        if not self.built:
            self.build((None, *shape[1:]))
        if not reset and self._adapted:
            total = moments.merge(self._moments(), total)
        self._assign(total)

    def _moments(self):
        return moments.Moments(
            float(ops.convert_to_numpy(self.adapted_count)),
            ops.convert_to_numpy(self.adapted_mean),
            ops.convert_to_numpy(self.adapted_comoment),
        )

    def _assign(self, total):
        cov = moments.covariance(total)
        matrix, inverse = linalg.whitening_matrices(cov, self.mode, self.epsilon)
        self.adapted_count.assign(total.count)
        self.adapted_mean.assign(total.mean)
        self.adapted_comoment.assign(total.comoment)
        self.adapted_matrix.assign(inverse if self.invert else matrix)
        self._adapted = True

    def _refresh(self):
        if self.input_mean is None and self.built:
            self._adapted = float(ops.convert_to_numpy(self.adapted_count)) > 0

    def load_own_variables(self, store):
        """Loads the weights, then marks the layer adapted if they hold data."""
        super().load_own_variables(store)
        self._refresh()

    def set_weights(self, weights):
        """Sets the weights, then marks the layer adapted if they hold data."""
        super().set_weights(weights)
        self._refresh()

    def _covariance(self):
        if self.input_mean is not None or not self._adapted:
            raise ValueError(
                "Condition numbers come from `adapt()` statistics. Call "
                "`adapt(data)` first."
            )
        return moments.covariance(self._moments())

    @property
    def condition_number(self):
        """How elongated the adapted data is: largest over smallest variance.

        The condition number of the covariance of the `adapt` data over all
        directions, except those of zero variance (up to float64 rounding:
        constant features, exact linear dependences), which have no spread to
        compare. 1.0 is perfectly round; NaN if no direction has spread.
        """
        return linalg.condition_number(self._covariance())

    @property
    def whitened_condition_number(self):
        """The condition number of the layer's output on the adapted data.

        Of the covariance of `(x - mean) @ matrix` (the stored float32 or
        float64 matrix) on the `adapt` data, in every direction but those of
        zero variance (the same as `condition_number` leaves out). A real
        direction floored by `epsilon` counts, so this exceeds 1.0 when
        whitening left it unscaled. About 1.0 for `"pca"` and `"zca"`; for
        `"standardize"` it shows the correlation left. With `invert=True`, of
        the forward (whitening) transform.
        """
        cov = self._covariance()
        if self.invert:
            matrix, _ = linalg.whitening_matrices(cov, self.mode, self.epsilon)
            matrix = matrix.astype(self.input_dtype)
        else:
            matrix = ops.convert_to_numpy(self.adapted_matrix)
        return linalg.output_condition_number(cov, matrix.astype(np.float64))

    def call(self, inputs):
        """Whitens `inputs` (or colors them back if `invert`)."""
        if not self._adapted:
            raise ValueError(
                f"Layer '{self.name}' is not adapted. Call `adapt(data)` before "
                "using it, or pass explicit `mean` and `matrix`."
            )
        axis = resolve_axis(self.axis, len(inputs.shape), f"shape {inputs.shape}")
        if inputs.shape[axis] not in (None, self._features):
            raise ValueError(
                f"Layer '{self.name}' was adapted on {self._features} features "
                f"along axis {self.axis}. Received: inputs of shape {inputs.shape}"
            )
        x = ops.moveaxis(ops.cast(inputs, self.input_dtype), axis, -1)
        mean, matrix = self._mean_and_matrix()
        if self.invert:
            y = ops.matmul(x, matrix) + mean
        else:
            y = ops.matmul(x - mean, matrix)
        return ops.cast(ops.moveaxis(y, -1, axis), self.compute_dtype)

    def _mean_and_matrix(self):
        if self.input_mean is None:
            mean, matrix = self.adapted_mean, self.adapted_matrix
        elif self.invert:
            mean, matrix = self.input_mean, np.linalg.inv(self.input_matrix)
        else:
            mean, matrix = self.input_mean, self.input_matrix
        return ops.cast(mean, self.input_dtype), ops.cast(matrix, self.input_dtype)

    def compute_output_shape(self, input_shape):
        """The output has the shape of the input."""
        return input_shape

    def compute_output_spec(self, inputs):
        """Symbolic output: same shape, the layer's compute dtype."""
        return keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)

    def get_config(self):
        """Returns the constructor arguments, chained to the base layer's."""
        explicit = self.input_mean is not None
        return {
            **super().get_config(),
            "mode": self.mode,
            "epsilon": self.epsilon,
            "axis": self.axis,
            "mean": self.input_mean.tolist() if explicit else None,
            "matrix": self.input_matrix.tolist() if explicit else None,
            "invert": self.invert,
        }

    def get_build_config(self):
        """The input shape, so a loaded model builds before weights arrive."""
        if self._build_input_shape is not None:
            return {"input_shape": self._build_input_shape}

    def build_from_config(self, config):
        """Builds from `get_build_config()` output."""
        if config and not self.built:
            self.build(config["input_shape"])
