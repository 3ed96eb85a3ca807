"""Which step-0 flags wait for the early verdict, and which act at once.

Step 0 sees the network before any update. Some of its flags were right on
every network of the training grids; others were often wrong in one family
of networks (with normalization layers; without, and with residual
branches summed into a trunk; without either) and wait, as pending, for
the verdict (`judgement.judge`) to confirm or clear them. Within a kind
that waits, a flag far past its threshold may still be certain
(`CERTAIN_BEYOND`). A longer training lets more kinds wait
(`LONG_PENDING`). `benchmarks/verdict.py pending` derives every constant
here from the committed grid records; `tests/test_verdict.py` checks them.
"""

from __future__ import annotations

import math

from keras_initdiag.diagnostics.rules.thresholds import Thresholds

#: Non-advisory step-0 flag kinds held pending until the verdict, per family
#: (`family`): the kinds whose step-0 precision on the training grids (the
#: calibration grid and the first held-out grid) is below `CERTAIN` in that
#: family, or that flagged fewer than 10 runs there, too few to know
#: (`benchmarks/verdict.py pending`, BENCHMARKS.md "Early verdict"). Other
#: kinds act at once; `nonfinite` always does.
#:
#: The residual family (no normalization layer, branches summed into a
#: trunk) is measured on every grid fitted on (the training grids, the
#: fourth and the read held-out ones: 672 residual MLPs), against the
#: outcome at 160 steps: the training grids alone hold too few. There the
#: compounded `vanishing` runs through the stem and one branch, not the
#: depth: the identity path carries the signal past every branch, and 24
#: of 48 runs it flagged trained (all 12 flagged two decades past or more:
#: small kernels, whose branches start near zero as in Fixup), against 6
#: of 409 in plain networks on the same grids.
PENDING_KINDS = {
    "normalized": (
        "exploding",
        "vanishing",
        "initial_loss",
        "no_gradient",
        "saturation",
        "finite_width",
    ),
    "plain": ("initial_loss", "no_gradient", "saturation", "finite_width"),
    "residual": ("exploding", "vanishing", "initial_loss", "no_gradient"),
}
#: The step-0 precision from which a flag kind acts without waiting.
CERTAIN = 0.95
#: Within a pending kind, the whole decades past its threshold from which a
#: flag acts at once, per family: where every flag that far out, on at least
#: 10 runs of the training grids, had a precision of at least `CERTAIN`
#: (`benchmarks/verdict.py pending`). A BatchNorm network's backward growth
#: of 1e3 to 1e5 is mixed (35 of 60 failed); beyond 1e5 all 34 failed. That
#: is about 30 BN-ReLU layers at Yang et al.'s rate, a gradient variance
#: growing by pi / (pi - 1) per layer (ICLR 2019); published BN networks
#: without skips measure 1.8e3 to 1.1e4. A loss over 100x the step-0
#: threshold (500x the chance level) failed on all 28 plain runs.
CERTAIN_BEYOND = {
    "normalized": {"exploding": 2},
    "plain": {"initial_loss": 2},
    "residual": {"exploding": 2, "initial_loss": 2},
}


#: Kinds that act at once at the calibration budget but wait for the verdict
#: when the training is longer: from each budget (in steps) on, per family,
#: each such kind and the whole decades past its threshold from which it
#: still acts at once (None: never). Derived like `PENDING_KINDS` and
#: `CERTAIN_BEYOND`, against the outcome at that budget on the scheduled
#: grids fitted on (the fourth and the read held-out ones, 480-800 steps
#: under a warmup and cosine decay; `benchmarks/verdict.py pending`). In
#: plain networks `vanishing`: 26 of 239 runs it flagged trained by step
#: 320, 39 by step 480 (slow starters at the higher rate); a decade past,
#: 10 of 210 by 320 (certain: 0.952) and 18 by 480; two decades past, 4 of
#: 187 by 480. (Two decades at 320 too until the eighteenth grid was
#: fitted on: 10 of 190 a decade past, 0.947.) Plain `exploding` stays
#: certain (163 of 167 failed by step 320, 161 of 167 by 480): its
#: long-budget band, when the fourth grid alone measured it, came from
#: residual nets counted as plain.
LONG_PENDING = {
    320: {"plain": {"vanishing": 1}},
    480: {"plain": {"vanishing": 2}},
}


#: The `Thresholds` fields that judge each banded kind. The band was
#: measured with their defaults: under other values every flag of the kind
#: waits (`calibrated`), since "two decades past" a threshold the user moved
#: is not where the grids were right.
BAND_FIELDS = {
    "exploding": (
        "exploding",
        "gradient_exploding",
        "gradient_exploding_plain",
        "exploding_absolute",
    ),
    "initial_loss": ("initial_loss",),
    "vanishing": ("vanishing", "vanishing_adaptive", "gradient_vanishing"),
}


def decades_past(value: float, threshold: float) -> float:
    """How many decades `value` lies past `threshold`, either way.

    NaN when either is not a positive number (no such flag is banded).

    Example:
    >>> round(decades_past(2e5, 1e3), 2), decades_past(1e-6, 1e-3)
    (2.3, 3.0)
    """
    if not (0 < value < math.inf and 0 < threshold < math.inf):
        return math.nan
    return abs(math.log10(value / threshold))


def calibrated(kind: str, thresholds=None) -> bool:
    """Whether `thresholds` judge `kind` as on the training grids (defaults).

    Example:
    >>> calibrated("exploding"), calibrated("exploding", Thresholds(exploding=50))
    (True, False)
    """
    if thresholds is None:
        return True
    default = Thresholds()
    return all(
        getattr(thresholds, name) == getattr(default, name)
        for name in BAND_FIELDS.get(kind, ())
    )


def bands(family_: str, budget: int | None = None) -> dict:
    """`{kind: decades or None}`: what waits in `family_` for `budget` steps.

    The kinds that wait for a training of `budget` steps (None: unknown, as
    at the calibration budget), and how many decades past its threshold
    each acts anyway (None: never).

    Example:
    >>> bands("plain")["initial_loss"], "vanishing" in bands("plain")
    (2, False)
    >>> bands("plain", 480)["vanishing"], "exploding" in bands("plain", 480)
    (2, False)
    >>> bands("residual")["vanishing"], bands("residual")["exploding"]
    (None, 2)
    """
    table = {k: CERTAIN_BEYOND.get(family_, {}).get(k) for k in PENDING_KINDS[family_]}
    for start in sorted(LONG_PENDING):
        if budget is not None and budget >= start:
            table.update(LONG_PENDING[start].get(family_, {}))
    return table


def waits(
    kind: str,
    value: float,
    threshold: float,
    family_: str,
    thresholds=None,
    budget: int | None = None,
) -> bool:
    """Whether a non-advisory step-0 flag waits for the verdict.

    Its kind waits in the network's family for the training's `budget`
    (`bands`), and it lies fewer than its band's decades past its threshold
    (or the `thresholds` in use are not the ones the band was measured
    with).

    Example:
    >>> waits("exploding", 2e3, 1e3, "normalized")
    True
    >>> waits("exploding", 2e8, 1e3, "normalized"), waits("dead", 1, .5, "plain")
    (False, False)
    >>> waits("vanishing", 1e-5, 1e-4, "plain", budget=800)
    True
    """
    table = bands(family_, budget)
    if kind not in table:
        return False
    beyond = table[kind]
    if beyond is None or not calibrated(kind, thresholds):
        return True
    return not decades_past(value, threshold) >= beyond  # NaN waits


def family(report) -> str:
    """The network's family: `"normalized"`, `"residual"` or `"plain"`.

    `"normalized"` when the model has a normalization layer; else
    `"residual"` when a sum merge adds a node to one computed from it (a
    branch summed into its own trunk: `_skips`); else `"plain"`. Summed
    embeddings, or towers summed at their ends, are plain; so is a net
    whose every shortcut is a projection (the grids measured identity
    skips).
    """
    infos = report.info.values()
    if any(info.kind == "norm" for info in infos):
        return "normalized"
    ordered = {name: report.info[name] for name in report.layers if name in report.info}
    return "residual" if _skips(ordered) else "plain"


def _skips(info: dict) -> bool:
    """Whether a sum merge reads a node and one of that node's descendants.

    `info`: name -> `LayerInfo`, in forward order (a node after its inputs).
    Each node's ancestors are a bit set over the nodes before it.

    Example:
    >>> from keras_initdiag.diagnostics.report import LayerInfo as I
    >>> chain = {"h": I("h"), "f": I("f", inputs=("h",))}
    >>> _skips({**chain, "add": I("add", inputs=("h", "f"), merge="sum")})
    True
    >>> towers = {"a": I("a"), "b": I("b")}
    >>> _skips({**towers, "add": I("add", inputs=("a", "b"), merge="sum")})
    False
    """
    bit = {name: 1 << i for i, name in enumerate(info)}
    above: dict[str, int] = {}
    for name, facts in info.items():
        sources = [s for s in facts.inputs if s in bit]
        direct = 0  # the nodes this one reads
        for source in sources:
            direct |= bit[source]
        reach = direct
        for source in sources:
            reach |= above.get(source, 0)
        above[name] = reach
        if facts.merge == "sum" and any(above.get(s, 0) & direct for s in sources):
            return True
    return False
