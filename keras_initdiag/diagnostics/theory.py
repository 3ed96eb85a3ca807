"""What the numbers should be: each node's activation variance from theory.

Mean-field signal propagation (He et al. 2015; Glorot & Bengio 2010; Saxe et
al. 2014; Schoenholz et al. 2017) carries each node's output distribution
through the graph, starting from the *measured* statistics of the model's
inputs and using each layer's *actual* weight variance:

- a linear layer (Dense, Conv, EinsumDense) with fan-in `n` maps an input
  of second moment `E[x^2]` to Gaussian pre-activations `z` of mean
  `mean(b)` and second moment `q = n * Var(W) * E[x^2] + E[b^2]`; its
  activation `phi` then gives `E[phi(z)]`, `E[phi(z)^2]` by quadrature
  (`gaussian_moments`). Without a bias, a layer
  multiplies the second moment by `n * Var(W) * E[phi(z)^2] / E[z^2]`: 1/2
  for Glorot with ReLU at equal widths, 1 for He;
- an activation layer applies `phi` to a Gaussian of its input's mean and
  variance;
- BatchNormalization in training mode, LayerNormalization and
  RMSNormalization reset the second moment to `E[gamma^2] * v / (v + eps)
  + E[beta^2]` and the mean to `mean(beta)` (in inference mode at step 0,
  BatchNormalization only divides by `sqrt(1 + eps)`);
- dropout in training mode multiplies the second moment by `1 / (1 - rate)`
  (Hendrycks & Gimpel 2016);
- a sum merge adds second moments (a branch's random weights make it
  uncorrelated with the stream), a concatenation averages them by size, a
  product multiplies them; reshapes pass them on; an embedding's output is
  its table's.

Where no theory applies (recurrent layers, attention, pooling, softmax,
separable convolutions, custom layers and ops), the prediction is NaN and
the measured statistics of that node carry on.

Finite width (Hanin & Rolnick, NeurIPS 2018): with `n` units, a layer
multiplies the per-example `||z||^2` by a random factor whose log has
variance about `(kappa - 1) / n`, `kappa = E[phi^4] / E[phi^2]^2` (5 / n for
ReLU, 2 / n for a linear layer; `log_variance` adds the next orders). These
add up along the path, so `predicted_log_spread = sqrt(sum (kappa_l - 1) /
n_l)` is how far `log` of the measured variance may wander from the
prediction; a normalization layer resets it. For a convolution, `n` is its
channel count, which overstates the spread (shared weights average part of
it out; measured here for 3x3 ReLU convolutions on 8x8 maps: about half).

Pure Python on a report: the activation's moments come from a callable the
engine provides.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from keras_initdiag.diagnostics.report import DiagnosticReport, LayerInfo

#: `(node, mean, variance) -> (E[phi], E[phi^2], E[phi^4])` of the node's
#: activation for a Gaussian input; None when the node has no element-wise
#: activation (then the theory treats it as linear or does not apply).
Moments = Callable[[str, float, float], tuple[float, float, float] | None]


@dataclasses.dataclass(frozen=True)
class State:
    """A node's output distribution as the theory carries it.

    Args:
        mean: Mean of the output.
        moment: Second moment `E[x^2]`.
        spread: Variance of `log` of the per-example scale (finite width).
        dof: How many independent terms each unit's output sums (the last
            linear layer's fan-in): a unit's variance across the batch is
            the layer's times about `chi^2_dof / dof`. A normalization layer
            needs it when that variance is near its epsilon.
    """

    mean: float
    moment: float
    spread: float = 0.0
    dof: float = math.inf

    @property
    def variance(self) -> float:
        """`moment - mean^2`."""
        return self.moment - self.mean * self.mean


def _get(report: DiagnosticReport, name: str, stat: str) -> float:
    return report.stats.get(name, {}).get(stat, math.nan)


def _measured(report: DiagnosticReport, name: str) -> State | None:
    mean = _get(report, name, "activation_mean")
    variance = _get(report, name, "activation_variance")
    if not (math.isfinite(mean) and math.isfinite(variance)):
        return None
    return State(mean, variance + mean * mean)


def _gaussian_kurtosis(mean: float, variance: float) -> float:
    """`E[z^4] / E[z^2]^2` for `z ~ N(mean, variance)`."""
    second = mean * mean + variance
    fourth = mean**4 + 6 * mean * mean * variance + 3 * variance * variance
    return fourth / (second * second) if second > 0 else 3.0


#: Step in `log E[z^2]` of the central difference that measures how an
#: activation passes the per-example scale (`_elasticity`).
_LOG_STEP = 0.1


def _through(
    moments: Moments,
    name: str,
    mean: float,
    variance: float,
    units: int,
    spread: float,
) -> tuple[float, float, float] | None:
    """`(mean, moment, spread)` of `phi(z)`, `z ~ N(mean, variance)`.

    `spread` is the variance of `log` of the per-example scale of `z`: the
    scale carried from upstream plus the sampling term of `z`'s own `units`
    Gaussian terms (`log_variance(kurtosis - 1, units)`). An example whose
    `z` is `e^(t/2)` times larger has `E[phi^2]` about `e^(elasticity * t)`
    times larger, so `phi` passes `elasticity^2` of the upstream part on (the
    delta method): all of it for ReLU and linear maps, which are homogeneous,
    little of it for a sigmoid gate near its centre or a saturated tanh. The
    sampling term becomes `phi`'s own, `log_variance(E[phi^4] / E[phi^2]^2 -
    1, units)`: 5 / n for ReLU, as Hanin & Rolnick have it.
    """
    variance = max(variance, 0.0)
    found = moments(name, mean, variance)
    if found is None:
        return None
    first, second, fourth = found
    if not (math.isfinite(second) and second > 0):
        return None
    before = own = 0.0  # Without a known width, no sampling term.
    if units > 0:
        before = log_variance(_gaussian_kurtosis(mean, variance) - 1.0, units)
        own = log_variance(fourth / (second * second) - 1.0, units)
    upstream = max(spread - before, 0.0)
    if upstream > 0:  # Two more quadratures, only when there is a spread to pass.
        upstream *= _elasticity(moments, name, mean, variance) ** 2
    return first, second, upstream + own


def _elasticity(moments: Moments, name: str, mean: float, variance: float) -> float:
    """`d log E[phi(z)^2] / d log E[z^2]` when `z` is scaled as a whole.

    1 for a homogeneous activation (ReLU, linear); NaN moments count as 1,
    so a failed evaluation never hides a spread.
    """
    logs = []
    for sign in (1.0, -1.0):
        factor = math.exp(sign * _LOG_STEP / 2)
        found = moments(name, mean * factor, variance * factor * factor)
        moment = found[1] if found is not None else math.nan
        if not (math.isfinite(moment) and moment > 0):
            return 1.0
        logs.append(math.log(moment))
    return abs(logs[0] - logs[1]) / (2 * _LOG_STEP)


def log_variance(excess: float, units: int) -> float:
    """`Var(log X)` for `X` the mean of `units` i.i.d. terms of mean 1.

    `excess` is the terms' variance (`kappa - 1`). To first order this is
    `excess / units` (Hanin & Rolnick's `5 / n` for ReLU); a Gamma
    distribution with that mean and variance gives the next orders,
    `trigamma(units / excess)`: 6% more for ReLU at 64 units, which is what
    a simulation of that layer measures.
    """
    if excess <= 0 or units <= 0:
        return 0.0
    return trigamma(units / excess)


def trigamma(k: float) -> float:
    """The trigamma function (the variance of `log` of a Gamma(k) variable)."""
    total = 0.0
    while k < 6.0:
        total += 1.0 / (k * k)
        k += 1.0
    inverse = 1.0 / k
    square = inverse * inverse
    series = (
        inverse + square / 2 + square * inverse / 6 - square * square * inverse / 30
    )
    return total + series


def _moment_of(affine: dict, key: str, default: float) -> float:
    """A bias or scale moment of the node; `default` where it has none."""
    value = affine.get(key, default)
    return value if math.isfinite(value) else default


def _linear(report, name, info: LayerInfo, source: State, affine, moments):
    """`z = W x + b`, then the activation.

    Over units and examples, `z` has mean `mean(b)` and second moment
    `n * Var(W) * E[x^2] + E[b^2]`; it is carried as the Gaussian with those
    two moments (exact for a constant bias, the mean-field one for random
    biases).
    """
    weight_variance = _get(report, name, "weight_variance")
    if not (info.fan_in > 0 and math.isfinite(weight_variance)):
        return None
    bias_mean = _moment_of(affine, "bias_mean", 0.0)
    bias = _moment_of(affine, "bias_second_moment", 0.0)
    q = info.fan_in * weight_variance * source.moment + bias
    spread = source.spread + log_variance(2.0, info.units)
    if info.activation in ("", "linear"):
        return State(bias_mean, q, spread, info.fan_in)
    variance = q - bias_mean * bias_mean
    found = _through(moments, name, bias_mean, variance, info.units, spread)
    if found is None:
        return None
    return State(*found, info.fan_in)


def _norm(info: LayerInfo, source: State, affine, training: bool) -> State | None:
    """A normalization layer's output, `gamma * x_hat + beta`, per unit.

    Over units and examples: mean `mean(beta)`, second moment
    `E[gamma^2] * E[x_hat^2] + E[beta^2]`.
    """
    scale = _moment_of(affine, "scale_second_moment", 1.0)
    bias = _moment_of(affine, "bias_second_moment", 0.0)
    mean = _moment_of(affine, "bias_mean", 0.0)
    eps = info.epsilon
    if info.propagation == "rms_norm":
        return State(mean, scale * source.moment / (source.moment + eps) + bias)
    if info.propagation == "batch_norm" and not training:
        # Moving statistics at their start (mean 0, variance 1).
        moment = scale * source.moment / (1.0 + eps) + bias
        return State(mean, moment, source.spread)
    variance = max(source.variance, 0.0)
    return State(mean, scale * _normalized(variance, eps, source.dof) + bias)


def _normalized(variance: float, eps: float, dof: float) -> float:
    """Mean over units of `v / (v + eps)`, each unit's `v` about chi^2-spread.

    A unit after a linear layer of fan-in `dof` has a variance across the
    batch of about `variance * X / dof`, `X ~ chi^2_dof`. Where `variance` is
    far above `eps` this is `variance / (variance + eps)`; near `eps` the
    spread of the units matters (a depthwise convolution's 9 taps, for
    instance).
    """
    if eps <= 0 or variance <= 0:
        return 1.0 if variance > 0 else 0.0
    plain = variance / (variance + eps)
    if not math.isfinite(dof) or dof >= 1000 or plain > 0.999:
        return plain
    k = max(dof, 1.0)
    # Gamma(k/2, scale 2/k) has mean 1: integrate on a grid to 12 sds.
    top = 1.0 + 12.0 * math.sqrt(2.0 / k)
    steps = 4000
    total = weight = 0.0
    for i in range(1, steps + 1):
        x = top * i / steps
        log_pdf = (k / 2 - 1) * math.log(x) - k * x / 2
        density = math.exp(log_pdf)
        total += density * (variance * x) / (variance * x + eps)
        weight += density
    return total / weight


def _merge(info: LayerInfo, states: list[State], sizes: list[float]) -> State | None:
    how = info.merge
    if info.class_name in ("Maximum", "Minimum"):
        return None
    if how == "sum":
        moment = sum(s.moment for s in states)
        if info.class_name == "Subtract":
            mean = states[0].mean - sum(s.mean for s in states[1:])
        else:
            mean = sum(s.mean for s in states)
        return State(mean, moment, _weighted_spread(states, [1.0] * len(states)))
    if how == "average":
        k = len(states)
        moment = sum(s.moment for s in states) / (k * k)
        mean = sum(s.mean for s in states) / k
        return State(mean, moment, _weighted_spread(states, [1.0] * k))
    if how == "concat":
        total = sum(sizes)
        weights = [size / total for size in sizes]
        moment = sum(w * s.moment for w, s in zip(weights, states))
        mean = sum(w * s.mean for w, s in zip(weights, states))
        return State(mean, moment, _weighted_spread(states, weights))
    if how == "product":
        moment, mean = 1.0, 1.0
        for s in states:
            moment *= s.moment
            mean *= s.mean
        return State(mean, moment, sum(s.spread for s in states))
    return None


def _weighted_spread(states: list[State], weights: list[float]) -> float:
    """Spread of a weighted sum of independent log-normal-ish scales."""
    total = sum(w * s.moment for w, s in zip(weights, states))
    if total <= 0:
        return 0.0
    return sum((w * s.moment / total) ** 2 * s.spread for w, s in zip(weights, states))


def predict(
    report: DiagnosticReport,
    bias_and_scale: dict[str, dict[str, float]],
    moments: Moments,
    training: bool = True,
) -> dict[str, State | None]:
    """Each node's predicted variance and log-spread (NaN where no theory).

    Args:
        report: The measured report (its inputs' statistics start the theory;
            its layers' weight variances and facts drive it).
        bias_and_scale: Node -> `{"bias_mean": ..., "bias_second_moment": ...,
            "scale_second_moment": ...}`: the mean and mean square of the
            bias (beta) it adds and the mean square of the scale (gamma) it
            multiplies. Missing or NaN: no bias, a unit scale.
        moments: The activations' Gaussian moments (see `Moments`).
        training: Whether the report was measured in training mode.

    Returns:
        Node -> its predicted `State` (`variance`, `mean`, and `spread`, the
        variance of the log scale: `predicted_log_spread` is its square
        root), or None where no theory applies.

    Example:
    >>> predictions = predict(report, bias_and_scale, moments)
    >>> predictions["dense_3"].variance
    0.125
    """
    states: dict[str, State] = {}
    out: dict[str, State | None] = {}
    for name in report.layers:
        info = report.info.get(name) or LayerInfo(name=name)
        state = _predict_node(
            report, name, info, states, bias_and_scale, moments, training
        )
        if state is not None and math.isfinite(state.moment) and state.moment >= 0:
            out[name] = states[name] = state
        else:
            out[name] = None
            measured = _measured(report, name)
            if measured is not None:
                states[name] = measured  # The measurement carries on.
    return out


def _predict_node(report, name, info, states, bias_and_scale, moments, training):
    how = info.propagation
    if how == "input":
        return _measured(report, name)
    if how == "embedding":
        variance = _get(report, name, "weight_variance")
        return State(0.0, variance) if math.isfinite(variance) else None
    sources = [states[i] for i in info.inputs if i in states]
    if not how or not sources or (how != "merge" and len(info.inputs) != 1):
        return None
    if how == "merge":
        if len(sources) != len(info.inputs):
            return None
        sizes = [
            (report.info.get(i) or LayerInfo(name=i)).size or 1.0 for i in info.inputs
        ]
        return _merge(info, sources, sizes)
    source = sources[0]
    affine = bias_and_scale.get(name, {})
    if how == "linear":
        return _linear(report, name, info, source, affine, moments)
    if how == "activation":
        found = _through(
            moments, name, source.mean, source.variance, info.units, source.spread
        )
        return None if found is None else State(*found)
    if how in ("batch_norm", "layer_norm", "rms_norm"):
        return _norm(info, source, affine, training)
    if how == "dropout":
        factor = 1.0 / (1.0 - info.rate) if training else 1.0
        return State(source.mean, source.moment * factor, source.spread)
    if how == "identity":
        return source
    return None
