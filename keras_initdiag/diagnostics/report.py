"""The result of one diagnosis: per-layer statistics, layer facts and flags.

Plain Python, no TensorFlow: a report can be built from literal numbers in tests
and read back from TensorBoard events.
"""

from __future__ import annotations

import dataclasses
import math

#: The weight, gradient and unit statistics, as the probe computes them on
#: the device too (`reduce.DEVICE_FIELDS`).
WEIGHT_AND_UNIT_STATS: tuple[str, ...] = (
    "weight_variance",
    "gradient_norm",
    "kernel_gradient_norm",
    "gradient_to_weight_ratio",
    "dead_fraction",
    "saturation_fraction",
)

#: The statistics measured for every tapped layer, in display order. These
#: names are part of the public contract (they are the TensorBoard tag prefixes).
STAT_NAMES: tuple[str, ...] = (
    "activation_mean",
    "activation_variance",
    "activation_gradient_rms",
    "activation_gain",
    *WEIGHT_AND_UNIT_STATS,
    "duplicate_unit_fraction",
    "nonfinite_activations",
    "nonfinite_weights",
    "nonfinite_gradients",
    "predicted_activation_variance",
    "predicted_log_spread",
    "update_ratio",
    "update_ratio_at_peak_lr",
)


#: The statistics shown by default in tables (`table()`, the CLI's report).
MAIN_STATS: tuple[str, ...] = (
    "activation_variance",
    "activation_gradient_rms",
    "weight_variance",
    "gradient_norm",
    "dead_fraction",
    "saturation_fraction",
    "duplicate_unit_fraction",
)


@dataclasses.dataclass(frozen=True)
class Flag:
    """One problem found by a diagnosis, naming the layer where it was seen.

    Args:
        kind: One of `"symmetry"`, `"vanishing"`, `"exploding"`, `"dead"`,
            `"saturation"`, `"nonfinite"` or `"init_mismatch"` (advisory).
        layer: Name of the layer where the problem was seen.
        step: Global training step of the diagnosis (0 = before training).
        value: The measured value that triggered the flag.
        threshold: The threshold it was compared against.
        message: What was seen, where, and what to try.
        pending: A step-0 flag that the early verdict confirms or clears
            (`InitDiagnostics` only): shown and logged, not acted on.
            Defaults to `False`.

    Example:
    >>> flag = keras_initdiag.Flag("dead", "dense_3", 0, 1.0, 0.5, "...")
    >>> flag.kind
    'dead'
    """

    kind: str
    layer: str
    step: int
    value: float
    threshold: float
    message: str
    pending: bool = False

    def __str__(self) -> str:
        status = " pending" if self.pending else ""
        return f"[{self.kind}{status}] {self.layer} (step {self.step}): {self.message}"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The early verdict on a run, from its first watched steps.

    See `keras_initdiag.diagnostics.verdict`.

    Args:
        step: The step at which it was given (the end of the watch).
        start: The first watched step (after a warmup's early steps).
        failing: Whether the run is judged likely to fail.
        risk: The fitted probability of failure, 0 to 1.
        threshold: The risk from which a run is judged failing.
        features: The measured features (`verdict.FEATURES`).
        summary: What it saw, in words.
        confirmed: The pending step-0 flags it confirms, as `"kind at layer"`.
        cleared: The pending step-0 flags it clears.

    Example:
    >>> Verdict(32, 0, False, 0.02, 0.67, {}, "trains", (), ()).failing
    False
    """

    step: int
    start: int
    failing: bool
    risk: float
    threshold: float
    features: dict
    summary: str
    confirmed: tuple[str, ...] = ()
    cleared: tuple[str, ...] = ()

    def __str__(self) -> str:
        word = "likely to fail" if self.failing else "training"
        return (
            f"Early verdict at step {self.step}: {word} (risk {self.risk:.2f}, "
            f"threshold {self.threshold:.2f}). {self.summary}"
        )


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """Static facts about one node of the model's graph that the rules need.

    A node is one call of a layer (or of an op such as `h + r`), or one of
    the model's inputs; see `keras_initdiag.diagnostics.graph`.

    Args:
        name: The node's name (the layer's name for its first call).
        class_name: The layer's or operation's class name, e.g. `"Dense"`.
        activation: Canonical activation name (`""` when the layer has none).
        initializer: Initializer family of the main weight (`""` when none).
        weight_shape: Shape of the main weight, `()` when there is none.
        is_output: Whether the node produces one of the model's outputs.
        tapped_output: Whether the node's output is measured.
        feeds_residual: Whether the node's output only enters sum merges
            (e.g. `Add` or `h + r`) with another branch, so all-zero
            outputs there can be by design.
        recommended: Initializer families that suit the activation (`()` when
            no rule applies).
        same_kernel_as: Earlier layers whose initial kernel is identical.
        kind: `"input"`, `"layer"`, `"norm"` (a normalization layer, whose
            output scale is set by design), `"preprocess"` (a preprocessing
            layer such as `Rescaling`, `Normalization` or `Whitening`, whose
            output scale is set by design too), `"reduce"` (a pooling layer,
            which averages or picks over windows), `"merge"` (a layer or op that
            merges branches, e.g. `Add` or `h + r`) or `"op"` (another
            operation that is not a layer); `""` when unknown (reports
            written before kinds were recorded).
        inputs: Names of the nodes it reads, in argument order.
        merge: For merges, how inputs combine: `"sum"`, `"average"`,
            `"product"` or `"concat"`; `""` otherwise.
        depthwise: Whether the main weight is a depthwise kernel.
        fan_in: How many inputs each output sums over (forward fan-in of the
            main weight, averaged over the outputs: a padded convolution's
            border outputs sum over fewer), 0 without one.
        fan_out: How many outputs each input reaches, 0 without a weight.
        shared_with: For a later call of a shared layer, the name of the
            first call's node (which carries the weight statistics).
        size: Elements of the output per sample (0 when unknown).
        units: Width of the output's last axis (0 when unknown).
        propagation: How signal-propagation theory passes the node:
            `"linear"`, `"activation"`, `"batch_norm"`, `"layer_norm"`,
            `"rms_norm"`, `"dropout"`, `"embedding"`, `"identity"`,
            `"input"`, `"merge"`, or `""` where no theory applies.
        epsilon: A normalization layer's epsilon (0 otherwise).
        rate: A dropout layer's rate (0 otherwise).
        trainable: Whether its layer had trainable weights when measured.
        kernel_normalized: Whether training divides its kernel by the
            kernel's largest singular value at every step
            (`SpectralNormalization`), so the initial scale does not set
            its gain in training mode.
    """

    name: str
    class_name: str = ""
    activation: str = ""
    initializer: str = ""
    weight_shape: tuple[int, ...] = ()
    is_output: bool = False
    tapped_output: bool = True
    feeds_residual: bool = False
    recommended: tuple[str, ...] = ()
    same_kernel_as: tuple[str, ...] = ()
    kind: str = ""
    inputs: tuple[str, ...] = ()
    merge: str = ""
    depthwise: bool = False
    fan_in: float = 0
    fan_out: int = 0
    shared_with: str = ""
    size: float = 0.0
    units: int = 0
    propagation: str = ""
    epsilon: float = 0.0
    rate: float = 0.0
    trainable: bool = False
    kernel_normalized: bool = False


@dataclasses.dataclass
class DiagnosticReport:
    """Per-layer statistics of one diagnosis, and the flags raised from them.

    Args:
        step: Global training step (0 = before any update).
        layers: Node names in forward order: the model's inputs, every call
            of every layer (a shared layer once per call), and op-level
            operations such as residual merges written `h + r`.
        stats: Node name -> {statistic name -> float}; NaN where a statistic
            does not apply to the node.
        flags: The flags raised for this diagnosis.
        info: Node name -> `LayerInfo` (static facts used by the rules).
        loss: The loss on the probe batch, NaN when no loss was available.
        skipped: `(node, reason)` for nodes whose outputs could not be
            measured (layers among them still get weight statistics).
        optimizer: Class name of the model's optimizer (e.g. `"Adam"`), `""`
            when the model is not compiled with one. Some rules depend on it.
        training: Whether the forward pass ran with training-mode semantics
            (batch statistics in normalization layers, dropout on).
        chance_loss: The loss of uniform predictions (`ln(classes)` for a
            classifier trained with cross-entropy), NaN when unknown.
        verdict: The early verdict given at this step (`InitDiagnostics`),
            else `None`.

    Example:
    >>> report = keras_initdiag.diagnose(model, x, y)
    >>> print(report.table())
    >>> report.stats["dense_1"]["activation_variance"]
    """

    step: int
    layers: list[str]
    stats: dict[str, dict[str, float]]
    flags: list = dataclasses.field(default_factory=list)
    info: dict[str, LayerInfo] = dataclasses.field(default_factory=dict)
    loss: float = math.nan
    skipped: list = dataclasses.field(default_factory=list)
    optimizer: str = ""
    training: bool = True
    chance_loss: float = math.nan
    verdict: Verdict | None = None

    def add_stats(self, stats: dict[str, dict[str, float]]) -> None:
        """Join statistics measured elsewhere: `{stat: {layer: value}}`.

        Layers this report does not have are left out.

        Example:
        >>> report.add_stats({"update_ratio": {"dense": 1e-3}})
        """
        for stat, values in stats.items():
            for layer, value in values.items():
                if layer in self.stats:
                    self.stats[layer][stat] = value

    def stat(self, name: str) -> list[float]:
        """Return one statistic for every layer, in forward order.

        Args:
            name: A statistic name from `STAT_NAMES`.

        Returns:
            A list of floats, one per layer in `layers`.
        """
        if name not in STAT_NAMES:
            raise ValueError(
                f"Argument `name` must be one of {list(STAT_NAMES)}. Received: "
                f"name={name!r}"
            )
        return [self.stats[layer].get(name, math.nan) for layer in self.layers]

    def table(self, stats: tuple[str, ...] | None = None) -> str:
        """Render the statistics and flags as a fixed-width text table.

        Args:
            stats: Which statistics to show as columns. Defaults to
                `MAIN_STATS`.

        Returns:
            The table as one string, flags listed below it.
        """
        columns = stats or MAIN_STATS
        short = {
            "activation_variance": "act_var",
            "activation_gradient_rms": "act_grad_rms",
            "weight_variance": "w_var",
            "gradient_norm": "grad_norm",
            "gradient_to_weight_ratio": "grad/w",
            "dead_fraction": "dead",
            "saturation_fraction": "satur",
            "duplicate_unit_fraction": "dup",
            "activation_mean": "act_mean",
            "activation_gain": "gain",
            "kernel_gradient_norm": "kernel_grad",
            "predicted_activation_variance": "pred_var",
            "predicted_log_spread": "pred_spread",
        }
        headers = ["layer"] + [short.get(c, c) for c in columns]
        rows = [
            [layer]
            + [format_value(self.stats[layer].get(c, math.nan)) for c in columns]
            for layer in self.layers
        ]
        lines = [f"Diagnosis at step {self.step} (loss {format_value(self.loss)})"]
        lines.append(format_table(headers, rows))
        if self.skipped:
            lines.append(
                "Outputs not tapped: "
                + "; ".join(f"{name} ({why})" for name, why in self.skipped)
            )
        if self.verdict is not None:
            lines.append(str(self.verdict))
        if self.flags:
            lines.append(f"{len(self.flags)} flag(s):")
            lines += [f"  {flag}" for flag in self.flags]
        else:
            lines.append("No flags.")
        return "\n".join(lines)


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """A fixed-width text table: headers, a rule of dashes, then the rows."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def format_value(value: float) -> str:
    """Format a statistic compactly: `-` for NaN, 3 significant digits otherwise."""
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if value == 0 or (1e-3 <= abs(value) < 1e4):
        return f"{value:.3g}"
    return f"{value:.2e}"
