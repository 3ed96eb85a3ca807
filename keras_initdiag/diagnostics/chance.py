"""The watched loss against the chance level: its quarters, and its pace.

The early verdict (`verdict.features`) and its words (`judgement.describe`)
read the loss of the watched steps through these: the first and last
quarter's means, and how many steps the loss would need, at the pace it
fell, to come within its own noise of the chance level (`log_pace`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def quarters(losses: np.ndarray) -> tuple[int, float, float]:
    """The watch's quarter length (at least one) and its first and last quarter's means.

    The verdict's loss features, `pace` and its words all compare these two.

    Example:
    >>> [float(v) for v in quarters(np.asarray([4.0, 3.0, 1.0, 1.0, 1.0, 0.5]))]
    [1.0, 4.0, 0.5]
    """
    quarter = max(1, len(losses) // 4)
    return quarter, losses[:quarter].mean(), losses[-quarter:].mean()


#: A loss counts as at the chance level within this log-ratio of it, or
#: within one standard error of its last quarter's mean where that is wider:
#: the scatter of an epoch's mean loss at chance (as the zoo's
#: `benchmarks/zoo_gate.MARGIN`: MobileNetV3Small's first epochs at
#: 2.315-2.323 against 2.303). A claim that the loss is above chance must
#: stand beyond its own noise: batches of 16 scatter a quarter's mean by
#: several percent on published models.
AT_CHANCE = 0.01
#: Steps `log_pace` counts for a loss above chance that does not fall:
#: beyond any budget the verdict was fitted at (`verdict.BUDGET_RANGE`) by
#: decades.
PACE_CAP = 1e5


def pace(losses: Sequence[float], chance_loss: float) -> float:
    """Steps the loss would need to come within its noise of the chance level.

    The pace is the fall of the log loss per step from the first quarter's
    mean to the last quarter's (their centres lie `n - max(1, n // 4)` steps
    apart); the distance is the last quarter's log-ratio above chance, less
    `AT_CHANCE` or the relative standard error of that quarter's mean,
    whichever is wider. 0 at chance or below, `PACE_CAP` when the loss does
    not fall or would need longer, NaN when the chance level is unknown, or
    there are fewer than two losses, or one is not finite.

    Example:
    >>> round(pace([4.0] * 8 + [2.0] * 8 + [1.0] * 8 + [0.5] * 8, 0.125), 1)
    15.9
    >>> pace([0.5] * 32, 1.0), pace([2.0] * 32, 1.0)
    (0.0, 100000.0)
    """
    losses = np.asarray(losses, dtype=np.float64)
    known = math.isfinite(chance_loss) and chance_loss > 0
    if not known or len(losses) < 2 or not np.isfinite(losses).all():
        return math.nan
    quarter, head, tail = quarters(losses)
    if tail <= 0:  # a loss at its floor is below any chance level
        return 0.0
    noise = losses[-quarter:].std(ddof=1) / math.sqrt(quarter) if quarter > 1 else 0
    distance = math.log(tail / chance_loss) - max(AT_CHANCE, noise / tail)
    if distance <= 0:
        return 0.0
    fall = math.log(head / tail) / (len(losses) - quarter) if head > 0 else 0.0
    return PACE_CAP if fall <= 0 else min(distance / fall, PACE_CAP)


def log_pace(losses: Sequence[float], chance_loss: float) -> float:
    """The `log_pace` feature: `log10(1 + pace(losses, chance_loss))`.

    Example:
    >>> round(log_pace([2.0] * 32, 1.0), 3)
    5.0
    """
    return math.log10(1.0 + pace(losses, chance_loss))
