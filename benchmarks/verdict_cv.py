"""Does a verdict feature earn its place? Cross-validated on the fitted cases.

Each candidate feature set is fitted as the verdict is (`verdict.py`:
`fit_logistic` on `training_cases()`, non-finite runs left out) in 5 folds
grouped by run (a run's cases at several budgets stay in one fold), and
scored by its out-of-fold log-loss and ROC AUC. A feature is kept when the
paired difference in log-loss, per case, is several standard errors below
0, over every fold seed. No unread held-out grid is read.

Usage:
    python benchmarks/verdict_cv.py                 # every feature, dropped
    python benchmarks/verdict_cv.py --drop log_budget
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
from collections.abc import Sequence

import numpy as np

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
import verdict as scoring  # noqa: E402

from keras_initdiag.diagnostics import verdict as vd  # noqa: E402

FOLDS = 5
SEEDS = (0, 1, 2)


def out_of_fold(x, finite, y, groups, seed: int) -> np.ndarray:
    """Each case's risk from the model fitted on the other folds' runs."""
    keys = np.unique(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    fold_of = {keys[j]: i % FOLDS for i, j in enumerate(order)}
    folds = np.asarray([fold_of[g] for g in groups])
    risk = np.ones(len(y))
    for k in range(FOLDS):
        train = (folds != k) & finite
        model = scoring.fit_logistic(x[train], y[train].astype(float))
        test = (folds == k) & finite
        risk[test] = scoring.predict(x[test], *model)
    return risk


def log_loss(risk: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per case."""
    risk = np.clip(risk, 1e-9, 1 - 1e-9)
    return -np.where(y, np.log(risk), np.log(1 - risk))


def compare(drops: Sequence[str]) -> list[str]:
    """Out-of-fold log-loss of `vd.FEATURES` against it without each of `drops`."""
    at = scoring.training_cases()
    x, finite, y = scoring.matrix((), vd.WATCH_STEPS, at=at)
    groups = np.asarray([r["key"] for r, _, _ in at])
    lines = [
        f"{len(at)} cases ({int(y.sum())} failed), {FOLDS} folds grouped by run",
        "",
        "| without | seed | log-loss all / without | paired diff (SE) | AUC all "
        "/ without |",
        "|---|---|---|---|---|",
    ]
    for drop in drops:
        keep = [i for i, n in enumerate(vd.FEATURES) if n != drop]
        for seed in SEEDS:
            full = out_of_fold(x, finite, y, groups, seed)
            less = out_of_fold(x[:, keep], finite, y, groups, seed)
            a, b = log_loss(full, y), log_loss(less, y)
            d = a - b
            se = d.std() / math.sqrt(len(d))
            lines.append(
                f"| {drop} | {seed} | {a.mean():.4f} / {b.mean():.4f} "
                f"| {d.mean():+.4f} ({se:.4f}) | {scoring.roc_auc(full, y):.4f} "
                f"/ {scoring.roc_auc(less, y):.4f} |"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drop", nargs="+", default=list(vd.FEATURES))
    args = parser.parse_args(argv)
    unknown = sorted(set(args.drop) - set(vd.FEATURES))
    if unknown:
        parser.error(f"--drop: unknown feature(s) {unknown}; known {vd.FEATURES}")
    print("\n".join(compare(args.drop)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
