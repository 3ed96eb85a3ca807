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
fit's own threshold. `--clip` compares, the same way, the quantiles within
which each feature is read (`verdict.py`'s `CLIP_QUANTILE`): a linear logit
is not extrapolated past what the fitted cases hold. `--by-grid` drops
features as the default does, but scored leaving each read grid out.
`--misses` counts, leaving each read grid out, the failed runs the
verdict misses by where they end (their final loss over chance).
`--trade-off` gives, the same way, each family's precision and recall at
the installed risk threshold and lower ones (`InitDiagnostics(
risk_threshold=...)`), its ROC AUC, and the best recall any threshold
reaches at the issue's precision of 0.95, chosen on the scored runs
themselves.

Usage:
    python benchmarks/verdict_cv.py                 # every feature, dropped
    python benchmarks/verdict_cv.py --drop log_budget
    python benchmarks/verdict_cv.py --loss-watch
    python benchmarks/verdict_cv.py --clip
    python benchmarks/verdict_cv.py --by-grid --drop progress
    python benchmarks/verdict_cv.py --misses
    python benchmarks/verdict_cv.py --trade-off
"""

from __future__ import annotations

import argparse
import functools
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


@functools.cache
def _read_groups() -> dict:
    """The fitted cases by grid: the training grids, the fourth, each read
    held-out grid (read once per process)."""
    groups = {
        "training": scoring.cases(scoring.training()),
        "fourth": scoring.budget_cases(scoring.load(scoring.PRACTICE)),
    }
    for path in scoring.READ:
        groups[path.stem] = scoring.read_cases((path,))
    return groups


def _matrices(groups: dict, loss_steps) -> dict:
    """`{group: (features, finite, failed, families)}` of `_read_groups`'
    cases, the loss watched for `loss_steps` (as `scoring.matrix`)."""
    return {
        g: (
            *scoring.matrix((), vd.WATCH_STEPS, at=c, loss_steps=loss_steps),
            scoring.families(c),
        )
        for g, c in groups.items()
    }


def _held_out(data: dict, quantile: float):
    """For each read held-out grid: `(grid, risk, cut)`, its cases' risk
    from the model fitted on every other group of `data` (`_matrices`),
    and that model's own threshold (`threshold_for`, met in every family)."""
    trust = vd.FEATURES.index("log_trust")
    for held in (p.stem for p in scoring.READ):
        x, finite, y, families = (
            np.concatenate([data[g][i] for g in data if g != held]) for i in range(4)
        )
        model = scoring.fit_logistic(
            x[finite], y[finite].astype(float), quantile=quantile
        )
        risk = np.where(finite, scoring.predict(x, *model), 1)
        cut = scoring.threshold_for(risk, y, families)
        x, finite, _, _ = data[held]
        risk = np.where(finite, scoring.predict(x, *model), 1.0)
        risk = np.where(x[:, trust] <= math.log10(vd.FROZEN), 1.0, risk)
        yield held, risk, cut


def _left_out(data: dict, quantile: float) -> tuple[np.ndarray, int, int]:
    """Each read held-out grid scored as `_held_out` does: per-case
    log-loss, false alarms and misses."""
    losses, alarms, misses = [], 0, 0
    for held, risk, cut in _held_out(data, quantile):
        y = data[held][2]
        losses.append(log_loss(risk, y))
        alarms += int((risk >= cut)[~y].sum())
        misses += int((risk < cut)[y].sum())
    return np.concatenate(losses), alarms, misses


#: Where a failed run ends, as its final loss over the chance level, in the
#: bins `--misses` counts, down to the failure line (`FAIL_FRACTION`).
END_BINS = (
    (1.0, math.inf),
    (0.8, 1.0),
    (0.6, 0.8),
    (scoring.tr.FAIL_FRACTION, 0.6),
)


def end_over_chance(record: dict) -> float:
    """The run's final loss over its chance level (the outcome's loss:
    `trainability.final_loss`), NaN when it went non-finite on the way."""
    loss = scoring.tr.final_loss(record)
    if record["nonfinite"] or not math.isfinite(loss):
        return math.nan
    return loss / record["entropy"]


@functools.cache
def _at_own_budget() -> tuple:
    """Leaving each read grid out (`_held_out`, the loss watched as the
    callback does): `(record, failed, risk, cut)` of each of its runs at its
    own budget, as a user would have met it (computed once per process)."""
    groups, data = _read_groups(), _as_watched()
    return tuple(
        (record, failed, r, cut)
        for held, risk, cut in _held_out(data, scoring.CLIP_QUANTILE)
        for (record, budget, failed), r in zip(groups[held], risk)
        if budget == scoring.budget_of(record)
    )


def missed_by_end() -> dict:
    """Each failed run at its own budget (`_at_own_budget`): `{(lo, hi) or
    "non-finite": {family: [failed, missed]}}` by `END_BINS` bin (a run
    ending below all of them, which `failed` rules out, would raise)."""
    table: dict = {}
    for record, failed, r, cut in _at_own_budget():
        if failed:
            end = end_over_chance(record)
            key = (
                "non-finite"
                if math.isnan(end)
                else next(b for b in END_BINS if b[0] <= end < b[1])
            )
            family = scoring.family(record)
            counts = table.setdefault(key, {}).setdefault(family, [0, 0])
            counts[0] += 1
            counts[1] += int(r < cut)
    return table


def misses_table() -> list[str]:
    """`missed_by_end` as a table: each bin's failed runs, misses and
    recall, overall and per family."""
    table = missed_by_end()
    archs = sorted({a for counts in table.values() for a in counts})
    lines = [
        "| failed run ends at (loss / chance) | failed | missed | recall | "
        + " | ".join(archs)
        + " |",
        "|---" * (4 + len(archs)) + "|",
    ]
    for key in ("non-finite", *END_BINS):
        counts = table.get(key, {})
        failed = sum(c[0] for c in counts.values())
        missed = sum(c[1] for c in counts.values())
        per = [
            f"{1 - counts[a][1] / counts[a][0]:.3f}" if a in counts else ""
            for a in archs
        ]
        name = key if isinstance(key, str) else f"{key[0]} to {key[1]}"
        name = name.replace(" to inf", " or more")
        recall = 1 - missed / failed if failed else math.nan
        lines.append(
            f"| {name} | {failed} | {missed} | {recall:.3f} | " + " | ".join(per) + " |"
        )
    return lines


#: The risk thresholds `--trade-off` calls runs failing at: the installed
#: one (`InitDiagnostics(risk_threshold=None)`), then lower ones a user may
#: pass.
THRESHOLDS = (vd.RISK_THRESHOLD, 0.7, 0.5, 0.3)
#: What the issue asks of every family, in precision and in recall.
GOAL = 0.95


def trade_off() -> dict:
    """Each run at its own budget, its grid left out (`_at_own_budget`):
    per family (and "all"), `{threshold: (precision, recall)}` at each of
    `THRESHOLDS` (precision NaN where nothing is called), and `"auc"` and
    `"best"`: the ROC AUC of the risk and the highest recall of any
    threshold whose precision reaches `GOAL` on these very runs (chosen on
    what it scores: an upper bound for any threshold on this risk). And
    `"published"`: `{threshold: (stopped, trains)}`, the zoo's and the
    demo's runs that train (`zoo_gate.outcome`) and how many of them the
    installed risk calls failing there."""
    import zoo_gate

    runs: dict = {}
    for record, failed, risk, _ in _at_own_budget():
        for family in (scoring.family(record), "all"):
            runs.setdefault(family, []).append((failed, risk))
    cuts = np.asarray(THRESHOLDS)
    out: dict = {}
    for family, rows in sorted(runs.items()):
        failed, risk = (np.asarray(v) for v in zip(*rows))
        failed = failed.astype(bool)
        called, hits = scoring._called_at(cuts, risk, failed)
        precision = np.where(called > 0, scoring._share(hits, called), math.nan)
        recall = hits / failed.sum()
        out[family] = {
            cut: (float(p), float(r))
            for cut, p, r in zip(THRESHOLDS, precision, recall)
        }
        out[family]["auc"] = scoring.roc_auc(risk, failed)
        out[family]["best"] = scoring.recall_at(risk, failed, precision=GOAL)
    rows = zoo_gate.judged(zoo_gate.installed_risk, vd.RISK_THRESHOLD)
    trains = np.asarray([risk for _, how, risk, _ in rows if how == "trains"])
    out["published"] = {
        cut: (int((trains >= cut).sum()), len(trains)) for cut in THRESHOLDS
    }
    return out


def trade_off_table() -> list[str]:
    """`trade_off` as a table: precision / recall per family at each of
    `THRESHOLDS`, and the published runs that train it would stop."""
    table = trade_off()
    published = table.pop("published")
    lines = [
        "| family | "
        + " | ".join(f"P / R at {c:.3g}" for c in THRESHOLDS)
        + f" | AUC | best R at P {GOAL} |",
        "|---" * (len(THRESHOLDS) + 3) + "|",
    ]
    for family, row in table.items():
        cells = " | ".join(f"{row[c][0]:.3f} / {row[c][1]:.3f}" for c in THRESHOLDS)
        lines.append(f"| {family} | {cells} | {row['auc']:.3f} | {row['best']:.3f} |")
    cells = " | ".join(
        f"{stopped} of {trains} stopped" for stopped, trains in published.values()
    )
    return lines + [f"| published runs that train (zoo, demo) | {cells} | | |"]


def _rows(first: str, candidates, scored) -> list[str]:
    """A table of `scored(candidate) -> (losses, alarms, misses)`, each
    against the first candidate, paired per case."""
    lines = [
        f"| {first} | log-loss | paired diff (SE) | false alarms | misses |",
        "|---|---|---|---|---|",
    ]
    base = None
    for candidate in candidates:
        loss, alarms, misses = scored(candidate)
        base = loss if base is None else base
        d = loss - base
        lines.append(
            f"| {candidate} | {loss.mean():.4f} | {d.mean():+.4f} "
            f"({d.std() / math.sqrt(len(d)):.4f}) | {alarms} | {misses} |"
        )
    return lines


def loss_watch() -> list[str]:
    """Leave-one-read-grid-out scores of each loss watch (`LONG_FROM`)."""
    groups = _read_groups()

    def scored(long_from):
        watch = _loss_steps_from(None if long_from == "never" else long_from)
        return _left_out(_matrices(groups, watch), scoring.CLIP_QUANTILE)

    never_first = ["never" if v is None else v for v in LONG_FROM]
    return _rows("loss of 64 steps from", never_first, scored)


#: The quantiles at which `--clip` bounds each feature (0: not at all).
CLIP_QUANTILES = (0.0, 0.001, 0.0025, 0.005, 0.01, 0.025)


@functools.cache
def _as_watched() -> dict:
    """`_read_groups`' matrices, the loss watched as the callback does
    (`vd.loss_steps`; built once per process)."""
    return _matrices(_read_groups(), vd.loss_steps)


def clip() -> list[str]:
    """Leave-one-read-grid-out scores of each `CLIP_QUANTILES`, the loss
    watched as the callback does (`vd.loss_steps`)."""
    data = _as_watched()
    return _rows(
        "features within quantiles", CLIP_QUANTILES, lambda q: _left_out(data, q)
    )


def grids_without(drops: Sequence[str]) -> list[str]:
    """Leave-one-read-grid-out scores of `vd.FEATURES` and of it without
    each of `drops`, the loss watched as the callback does."""
    data = _as_watched()

    def scored(drop):
        keep = [i for i, n in enumerate(vd.FEATURES) if n != drop]
        less = {g: (x[:, keep], *rest) for g, (x, *rest) in data.items()}
        return _left_out(less, scoring.CLIP_QUANTILE)

    return _rows("without", ["nothing", *drops], scored)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drop", nargs="+", default=list(vd.FEATURES))
    parser.add_argument("--loss-watch", action="store_true")
    parser.add_argument("--clip", action="store_true")
    parser.add_argument("--by-grid", action="store_true")
    parser.add_argument("--misses", action="store_true")
    parser.add_argument("--trade-off", action="store_true")
    args = parser.parse_args(argv)
    if args.misses or args.trade_off:
        print("\n".join(misses_table() if args.misses else trade_off_table()))
        return 0
    if args.loss_watch or args.clip:
        print("\n".join(loss_watch() if args.loss_watch else clip()))
        return 0
    unknown = sorted(set(args.drop) - set(vd.FEATURES))
    if unknown:
        parser.error(f"--drop: unknown feature(s) {unknown}; known {vd.FEATURES}")
    print("\n".join((grids_without if args.by_grid else compare)(args.drop)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
