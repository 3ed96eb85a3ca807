"""`Thresholds`: every number the rules compare against, in one place."""

from __future__ import annotations

import dataclasses

from keras_initdiag import _checks

#: Optimizers that scale each parameter's step by its own gradient history
#: (or its sign): a uniformly small gradient still moves the weights, so a
#: signal can shrink much further before training stalls than with SGD.
ADAPTIVE_OPTIMIZERS: frozenset[str] = frozenset(
    {
        "Adadelta",
        "Adafactor",
        "Adagrad",
        "Adam",
        "AdamW",
        "Adamax",
        "Ftrl",
        "Lamb",
        "Lion",
        "Muon",
        "Nadam",
        "RMSprop",
    }
)


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Every threshold the rules use.

    The defaults were chosen on the trainability grid of
    `benchmarks/trainability.py` (networks trained for real; see
    BENCHMARKS.md for the confusion table and what the rules get wrong).

    The depth rules follow the path the signal takes (see
    `keras_initdiag.diagnostics.signal`): the *forward scale* is the second
    moment of a node's output relative to the start of its segment (a model
    input or a normalization layer), compounded through every layer on the
    way; a residual merge is compared with its stream, never with a branch.
    A per-layer factor `f` compounds to `f ** depth`, so a 30-layer ReLU net
    with Glorot kernels (`f = 0.5`) reaches about 2e-9. The *backward scale*
    compounds what the gradient gains beyond the forward scale
    (`E[x^2] E||dL/dx||^2`), which linear layers and normalization layers'
    rescaling leave unchanged.

    Two thresholds depend on the optimizer the model was compiled with: an
    adaptive one (`ADAPTIVE_OPTIMIZERS`: Adam, RMSprop, Lion, ...) divides
    each step by the gradient's own scale, so on the grid it trained through
    signals 10,000 times smaller than SGD did, and through deeper narrow
    stacks. Any other optimizer, and a model that is not compiled, get the
    stricter SGD values.

    Args:
        vanishing: Flag "vanishing" when a forward scale falls below this
            (SGD and other non-adaptive optimizers). Defaults to `1e-4`.
        vanishing_adaptive: ... with an adaptive optimizer. Defaults to
            `1e-8`.
        exploding: Flag "exploding" when a forward scale rises above this.
            Defaults to `1e3`.
        gradient_vanishing: Flag "vanishing" when a backward scale falls below
            this. Defaults to `1e-3`.
        gradient_exploding: Flag "exploding" when a backward scale rises
            above this in a network with normalization layers. Defaults to
            `1e3`: BN nets trained through up to ~6e2 on the grid, as the
            scale invariance BN gives the weights damps the effective
            learning rate of the layers whose gradients grow (Arora, Li &
            Lyu, ICLR 2019).
        gradient_exploding_plain: ... in a network without normalization
            layers, which has no such damping. Defaults to `1e2`: plain nets
            on the grid trained up to 73 and failed at 207 (a 50-layer tanh
            MLP with He's gain: the chaotic phase, where gradients grow by
            about `chi_1 = 1.106` per layer, Schoenholz et al. 2017).
        exploding_absolute: An activation variance above this is exploding
            whatever the depth. Defaults to `1e12`.
        dead: Flag "dead" when at least this fraction of a layer's units is
            constant over the probe batch (at step 0, and when more units
            are dead than a symmetric random draw makes by chance:
            `rules.units.chance_dead`). Defaults to `0.5`.
        saturation: Flag "saturation" when at least this fraction of a bounded
            activation's outputs sits at its limits. Defaults to `0.5`.
        symmetry: Flag "symmetry" when at least this fraction of a layer's
            units duplicates another unit. Defaults to `0.1`.
        mismatch_tolerance: For "init_mismatch", the weights must still look
            like the declared initializer's output: their variance within this
            factor of the initializer's (otherwise they were changed, e.g. by
            training or LSUV, and no advice is given). Defaults to `1.5`.
        initial_loss: Flag "initial_loss" when a classifier's loss at step 0
            is above this multiple of the chance level `ln(C)`. Defaults to
            `5.0` (on the grid, networks flagged by it alone between 3x and
            4.5x trained as often as they failed, 7 and 7).
        finite_width: Flag "finite_width" when the predicted variance of the
            log of the per-example scale (`predicted_log_spread ** 2`)
            exceeds this (SGD and other non-adaptive optimizers). Defaults
            to `2.5`.
        finite_width_adaptive: ... with an adaptive optimizer. Defaults to
            `4.0`.
        update_ratio_low: Flag "update_ratio" when a layer's first updates
            are below this fraction of its weights per step. Defaults to
            `1e-6` (`benchmarks/update_ratios.py`, the first 3 steps of the
            560 grid networks: every network that trained stayed at or
            above 1.3e-5 in every layer; failing ones went down to 4e-14).
        update_ratio_high: ... or above this fraction. Defaults to `0.5`
            (the same grid: networks that trained stayed at or below 0.38,
            every one at 0.9 or above failed).

    Example:
    >>> thresholds = keras_initdiag.Thresholds(vanishing=1e-4, dead=0.9)
    >>> report = keras_initdiag.diagnose(model, x, y, thresholds=thresholds)
    """

    vanishing: float = 1e-4
    vanishing_adaptive: float = 1e-8
    exploding: float = 1e3
    gradient_vanishing: float = 1e-3
    gradient_exploding: float = 1e3
    gradient_exploding_plain: float = 1e2
    exploding_absolute: float = 1e12
    dead: float = 0.5
    saturation: float = 0.5
    symmetry: float = 0.1
    mismatch_tolerance: float = 1.5
    initial_loss: float = 5.0
    finite_width: float = 2.5
    finite_width_adaptive: float = 4.0
    update_ratio_low: float = 1e-6
    update_ratio_high: float = 0.5

    def __post_init__(self):
        for field in dataclasses.fields(self):
            _checks.positive(field.name, getattr(self, field.name))
        for name in ("dead", "saturation", "symmetry"):
            _checks.fraction(name, getattr(self, name))
        for low, high in (
            ("vanishing", "exploding"),
            ("vanishing_adaptive", "exploding"),
            ("gradient_vanishing", "gradient_exploding"),
            ("gradient_vanishing", "gradient_exploding_plain"),
        ):
            if not getattr(self, low) < 1 < getattr(self, high):
                raise ValueError(
                    f"Thresholds are inconsistent: `{low}` must be below 1 and "
                    f"`{high}` above 1. Received: {low}={getattr(self, low)!r}, "
                    f"{high}={getattr(self, high)!r}"
                )
        if not self.update_ratio_low < self.update_ratio_high:
            raise ValueError(
                "Thresholds are inconsistent: `update_ratio_low` must be below "
                f"`update_ratio_high`. Received: update_ratio_low="
                f"{self.update_ratio_low!r}, update_ratio_high="
                f"{self.update_ratio_high!r}"
            )
        if self.initial_loss <= 1:
            raise ValueError(
                "Argument `initial_loss` is a multiple of the chance level and "
                f"must be > 1. Received: initial_loss={self.initial_loss!r}"
            )
        if self.mismatch_tolerance < 1:
            raise ValueError(
                "Argument `mismatch_tolerance` is a factor and must be >= 1. "
                f"Received: mismatch_tolerance={self.mismatch_tolerance!r}"
            )

    def for_optimizer(self, optimizer: str) -> Thresholds:
        """These thresholds as they apply to a model trained with `optimizer`.

        Args:
            optimizer: The optimizer's class name (`DiagnosticReport.optimizer`;
                `""` when the model is not compiled).

        Returns:
            A copy whose `vanishing` and `finite_width` are the adaptive
            values when `optimizer` is in `ADAPTIVE_OPTIMIZERS`, else `self`.

        Example:
        >>> keras_initdiag.Thresholds().for_optimizer("Adam").vanishing
        1e-08
        """
        if optimizer not in ADAPTIVE_OPTIMIZERS:
            return self
        return dataclasses.replace(
            self,
            vanishing=self.vanishing_adaptive,
            finite_width=self.finite_width_adaptive,
        )


def check_thresholds(thresholds) -> Thresholds:
    """`thresholds`, or the defaults for None; TypeError for anything else."""
    if thresholds is None:
        return Thresholds()
    if not isinstance(thresholds, Thresholds):
        raise TypeError(
            "Argument `thresholds` must be a `keras_initdiag.Thresholds` or None. "
            f"Received: thresholds={thresholds!r}"
        )
    return thresholds
