"""Fans of a weight: the one place the package computes them (pure Python).

Two questions have two answers:

- `compute_fans(shape, depthwise)` is what an *initializer* sees: only the
  shape, in Keras's convention (`(*receptive field, in, out)`), as
  `keras.initializers.VarianceScaling` computes it. It tells which variance a
  shape-based initializer drew, so the diagnostics can recognize it.
- `forward_fans(layout, shape, ...)` is what the *layer* does with the weight:
  how many inputs each output sums over (fan-in) and how many outputs each
  input reaches (fan-out). Signal-propagation theory needs these. They differ
  from the initializer's for transposed convolutions (the kernel is
  `(*k, out, in)`), depthwise kernels (each output sees one channel),
  `EinsumDense` (the contracted axes can be anywhere) and embeddings (a
  lookup reads one row).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: Weight layouts `forward_fans` understands.
LAYOUTS = ("dense", "conv", "conv_transpose", "depthwise", "einsum", "embedding")


def compute_fans(shape: Sequence[int], depthwise: bool = False) -> tuple[int, int]:
    """Fans of a kernel shape as an initializer computes them.

    Args:
        shape: The kernel shape, `(*receptive field, in, out)`.
        depthwise: Leave the channel axis out of fan-in, for depthwise
            kernels `(*spatial, channels, multiplier)`, where each output
            sees one channel. Defaults to `False` (Keras's convention).

    Returns:
        `(fan_in, fan_out)`.

    Raises:
        ValueError: `depthwise=True` with a kernel of rank < 3.

    Example:
    >>> compute_fans((3, 3, 16, 32))
    (144, 288)
    >>> compute_fans((3, 3, 16, 1), depthwise=True)
    (9, 9)
    """
    shape = tuple(int(d) for d in shape)
    if depthwise:
        if len(shape) < 3:
            raise ValueError(
                "With `depthwise=True` the kernel must have rank >= 3, "
                "`(*spatial, channels, multiplier)`. "
                f"Received: shape={shape}"
            )
        receptive = math.prod(shape[:-2])
        return receptive, receptive * shape[-1]
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def einsum_fans(equation: str, shape: Sequence[int]) -> tuple[int, int]:
    """Forward fans of an `EinsumDense` kernel from its equation.

    The kernel axes that also appear in the input but not in the output are
    summed over: their product is the fan-in; the other kernel axes make
    the fan-out.

    Args:
        equation: The layer's equation, e.g. `"abc,cde->abde"`.
        shape: The kernel shape, one size per letter of the kernel spec.

    Returns:
        `(fan_in, fan_out)`, or Keras's shape-based fans when the equation
        cannot be read (an ellipsis, or a spec that does not match `shape`).

    Example:
    >>> einsum_fans("abc,cde->abde", (64, 4, 16))  # a query projection
    (64, 64)
    """
    try:
        inputs, output = equation.replace(" ", "").split("->")
        source, kernel = inputs.split(",")
    except ValueError:
        return compute_fans(shape)
    if "." in equation or len(kernel) != len(shape):
        return compute_fans(shape)
    size = dict(zip(kernel, (int(d) for d in shape)))
    contracted = [c for c in kernel if c in source and c not in output]
    fan_in = math.prod(size[c] for c in contracted)
    fan_out = math.prod(size[c] for c in kernel if c not in contracted)
    return max(fan_in, 1), max(fan_out, 1)


def forward_fans(
    layout: str,
    shape: Sequence[int],
    strides: Sequence[int] = (),
    equation: str = "",
) -> tuple[int, int]:
    """Fans of a weight as the layer uses it in the forward pass.

    Args:
        layout: One of `LAYOUTS`: `"dense"` (`(in, out)`, also recurrent
            kernels), `"conv"` (`(*k, in, out)`), `"conv_transpose"`
            (`(*k, out, in)`), `"depthwise"` (`(*k, channels, multiplier)`),
            `"einsum"` (needs `equation`) or `"embedding"` (`(vocab, dim)`).
        shape: The weight's shape.
        strides: A transposed convolution's strides: each output sums over
            about `k / stride` taps per spatial axis. Defaults to `()`.
        equation: An `EinsumDense` equation. Defaults to `""`.

    Returns:
        `(fan_in, fan_out)`.

    Raises:
        ValueError: For an unknown `layout`.

    Example:
    >>> forward_fans("conv_transpose", (4, 4, 8, 16), strides=(2, 2))
    (64, 128)
    """
    shape = tuple(int(d) for d in shape)
    if layout in ("dense", "conv"):
        return compute_fans(shape)
    if layout == "depthwise":
        return compute_fans(shape, depthwise=True)
    if layout == "conv_transpose":
        taps = math.prod(shape[:-2])
        stride = math.prod(strides) if strides else 1
        return max(1, shape[-1] * taps // stride), shape[-2] * taps
    if layout == "einsum":
        return einsum_fans(equation, shape)
    if layout == "embedding":
        return 1, shape[-1]
    raise ValueError(
        f"Argument `layout` must be one of {list(LAYOUTS)}. Received: layout={layout!r}"
    )


def valid_taps(
    length: int, kernel: int, stride: int = 1, dilation: int = 1, padding: str = "valid"
) -> float:
    """Mean number of a kernel's taps that land inside the input, per output.

    With `"valid"` padding every tap of every output lands inside (the mean
    is `kernel`). With `"same"` (TensorFlow's split: the extra padded
    position goes after) or `"causal"` padding, the outputs near a border
    sum over fewer inputs: a 3-tap kernel over 8 positions averages 2.75.
    The effective fan-in of a convolution is this mean over its spatial axes,
    times its input channels.

    Args:
        length: Input length along the axis.
        kernel: Kernel size along the axis.
        stride: Stride. Defaults to `1`.
        dilation: Dilation rate. Defaults to `1`.
        padding: `"valid"`, `"same"` or `"causal"`. Defaults to `"valid"`.

    Returns:
        The mean count, a float in `[1, kernel]`.

    Example:
    >>> valid_taps(8, 3, padding="same")
    2.75
    """
    padding = padding.lower()
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        return float(kernel)
    if padding == "causal":
        outputs, before = -(-length // stride), span - 1
    else:
        outputs = -(-length // stride)
        before = max((outputs - 1) * stride + span - length, 0) // 2
    total = 0
    for o in range(outputs):
        start = o * stride - before
        total += sum(0 <= start + t * dilation < length for t in range(kernel))
    return total / max(outputs, 1)
