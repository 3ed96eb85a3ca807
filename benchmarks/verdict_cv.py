"""Does a verdict feature earn its place? Cross-validated on the fitted cases.

Each candidate feature set is fitted as the verdict is (`verdict.py`:
`fit_logistic` on `training_cases()`, non-finite runs left out) in 5 folds
grouped by run (a run's cases at several budgets stay in one fold), and
scored by its out-of-fold log-loss and ROC AUC. A feature is kept when the
paired difference in log-loss, per case, is several standard errors below
0, over every fold seed. No unread held-out grid is read.

`--loss-watch` compares how long the loss is watched instead: the loss of
64 steps for budgets from each candidate on (`vd.LONG_BUDGET`), else 32,
each read held-out grid (`verdict.READ`) left out in turn and scored by the
model fitted on every other training case: log-loss, paired difference
against never watching longer, and the false alarms and misses at each
fit's own threshold.

Usage:
    python benchmarks/verdict_cv.py                 # every feature, dropped
    python benchmarks/verdict_cv.py --drop log_budget
    python benchmarks/verdict_cv.py --loss-watch
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


#: The budgets from which the loss is watched for 64 steps, compared by
#: `--loss-watch` (None: never; 160: always, 40% of the shortest budget).
LONG_FROM = (None, 640, 480, 320, 160)


def _loss_steps_from(long_from):
    """`budget -> loss steps`: 64 for budgets from `long_from` on (None:
    never), else 32."""

    def steps(budget: int) -> int:
        long = long_from is not None and budget >= long_from
        return vd.LONG_WATCH_STEPS if long else vd.WATCH_STEPS

    return steps


def loss_watch() -> list[str]:
    """Leave-one-read-grid-out scores of each loss watch (`LONG_FROM`)."""
    groups = {
        "training": scoring.cases(scoring.training()),
        "fourth": scoring.budget_cases(scoring.load(scoring.PRACTICE)),
    }
    for path in scoring.READ:
        groups[path.stem] = scoring.read_cases((path,))
    trust = vd.FEATURES.index("log_trust")
    lines = [
        "| loss of 64 steps from | log-loss | paired diff (SE) | false alarms | "
        "misses |",
        "|---|---|---|---|---|",
    ]
    base = None
    for long_from in LONG_FROM:
        data = {
            g: scoring.matrix(
                (), vd.WATCH_STEPS, at=c, loss_steps=_loss_steps_from(long_from)
            )
            for g, c in groups.items()
        }
        losses, alarms, misses = [], 0, 0
        for held in (p.stem for p in scoring.READ):
            x, finite, y = (
                np.concatenate([data[g][i] for g in data if g != held])
                for i in range(3)
            )
            model = scoring.fit_logistic(x[finite], y[finite].astype(float))
            cut = scoring.threshold_for(
                np.where(finite, scoring.predict(x, *model), 1), y
            )
            x, finite, y = data[held]
            risk = np.where(finite, scoring.predict(x, *model), 1.0)
            risk = np.where(x[:, trust] <= math.log10(vd.FROZEN), 1.0, risk)
            losses.append(log_loss(risk, y))
            alarms += int((risk >= cut)[~y].sum())
            misses += int((risk < cut)[y].sum())
        loss = np.concatenate(losses)
        base = loss if base is None else base
        d = loss - base
        lines.append(
            f"| {long_from or 'never'} | {loss.mean():.4f} | {d.mean():+.4f} "
            f"({d.std() / math.sqrt(len(d)):.4f}) | {alarms} | {misses} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drop", nargs="+", default=list(vd.FEATURES))
    parser.add_argument("--loss-watch", action="store_true")
    args = parser.parse_args(argv)
    if args.loss_watch:
        print("\n".join(loss_watch()))
        return 0
    unknown = sorted(set(args.drop) - set(vd.FEATURES))
    if unknown:
        parser.error(f"--drop: unknown feature(s) {unknown}; known {vd.FEATURES}")
    print("\n".join(compare(args.drop)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
