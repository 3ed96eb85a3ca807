"""Fit the early verdict on the training grids; score it on the held-out ones.

Every grid records the first steps of every run (`heldout.py`: loss and
learning rate of 64 steps, every layer's relative update of 32 steps, the
step-0 flags) and its outcome after 160 steps (`trainability.failed`).

- `fit`: the verdict's logistic model (`keras_initdiag.diagnostics.verdict`)
  on the training cases only (`training_cases`: `TRAINING`, the fourth grid
  and the held-out grids already read, `READ`; never an unread grid):
  feature means and scales,
  coefficients (Newton's method, L2 penalty `PENALTY` on the standardized
  coefficients), and the risk threshold: the lowest at which the training
  precision is at least `PRECISION`, overall and in every architecture
  family, since a false "failing" verdict can stop a good run. Prints the
  constants to put in `keras_initdiag/diagnostics/verdict_fit.py`.
- `choose-k`: the training ROC AUC of the verdict refitted at 8, 16, 24
  and 32 watched steps.
- `pending`: each step-0 flag kind's precision per family (with
  normalization layers; without, with residual branches; without either)
  on the training grids (the residual family: on every grid fitted on),
  overall and whole decades past its threshold; the kinds below
  `pending.CERTAIN` wait for the verdict (`pending.PENDING_KINDS`) unless
  they lie far enough past it (`pending.CERTAIN_BEYOND`); and, from the
  scheduled grids fitted on, those that wait in longer trainings
  (`pending.LONG_PENDING`).
- `score`: the module's verdict, what `on_flag` acts on (step-0 flags that
  do not wait, and a failing verdict), the step-0 flags and the loss-only
  baseline (the loss features alone over 20 steps, fitted the same way on
  the training grids) on every grid: precision, recall, ROC AUC, per family
  and optimizer; writes `results/verdict_judge.md`.
- `horizon`: per family, the recall at precision 0.95 of the best
  threshold on the training loss alone after 96 to 480 steps (`horizon`):
  how early the loss tells the outcome.
- `disagree`: per family, the scheduled grids' runs whose training loss
  (the last epoch's mean, in training mode) says "failed" while the loss
  evaluated after training says "trained" (`disagreement`).

Usage:
    python benchmarks/verdict.py fit
    python benchmarks/verdict.py choose-k
    python benchmarks/verdict.py pending
    python benchmarks/verdict.py score
    python benchmarks/verdict.py disagree
    python benchmarks/verdict.py horizon
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
import trainability as tr  # noqa: E402
import zoo_gate  # noqa: E402

from keras_initdiag.diagnostics import pending as waiting  # noqa: E402
from keras_initdiag.diagnostics import verdict as vd  # noqa: E402

CALIBRATION = HERE / "results" / "early_calibration_runs.jsonl"
HELDOUT = HERE / "results" / "heldout_runs.jsonl"
#: The second held-out grid (`heldout.py train --grid heldout2`): never
#: fitted on, but its scores were read before the certain band
#: (`pending.CERTAIN_BEYOND`) was chosen.
HELDOUT2 = HERE / "results" / "heldout2_runs.jsonl"
#: The third held-out grid (`heldout.py train --grid heldout3`), recorded
#: after the band was chosen and read only to score it.
HELDOUT3 = HERE / "results" / "heldout3_runs.jsonl"
#: The fourth held-out grid (`practice.py`): warmup, cosine decay, 480 steps.
#: Scored as shipped first (BENCHMARKS.md); since the budget-aware fit, fitted
#: on at three budgets (its own and `PRACTICE_EPOCHS`').
PRACTICE = HERE / "results" / "practice_runs.jsonl"
#: The fifth held-out grid (`practice.py train --grid fifth`): an 800-step
#: budget, outside the fitted range; it scores the budget-aware verdict.
FIFTH = HERE / "results" / "fifth_runs.jsonl"
#: The sixth held-out grid (`practice.py train --grid sixth`): 640 steps;
#: recorded after the fifth was read, it scores the budget-aware step-0
#: kinds (`pending.LONG_PENDING`) and the fit that goes with them.
SIXTH = HERE / "results" / "sixth_runs.jsonl"
#: The seventh held-out grid (`practice.py train --grid seventh`): 560
#: steps; recorded before `log_recover` was chosen and read only to score it.
SEVENTH = HERE / "results" / "seventh_runs.jsonl"
#: The eighth held-out grid (`practice.py train --grid eighth`): 720 steps,
#: depth 16; recorded before any verdict change of its session was chosen.
EIGHTH = HERE / "results" / "eighth_runs.jsonl"
#: The ninth held-out grid (`practice.py train --grid ninth`): 560 steps,
#: depth 20; recorded before `log_pace` was chosen and read only to score it.
NINTH = HERE / "results" / "ninth_runs.jsonl"
#: The tenth held-out grid (`practice.py train --grid tenth`): 640 steps,
#: depth 18; read once to score the seventh fit (fitted on the grids above).
TENTH = HERE / "results" / "tenth_runs.jsonl"
#: The eleventh held-out grid (`practice.py train --grid eleventh`): 608
#: steps, depth 22; recorded under the seventh fit, read once to score the
#: eighth (the loss watched for 64 steps in trainings of 320 or more);
#: fitted on since the ninth fit.
ELEVENTH = HERE / "results" / "eleventh_runs.jsonl"
#: The twelfth held-out grid (`practice.py train --grid twelfth`): 704
#: steps, depth 12; recorded under the eighth fit, read once to score the
#: ninth (the eleventh grid fitted on too).
TWELFTH = HERE / "results" / "twelfth_runs.jsonl"
#: The thirteenth held-out grid (`practice.py train --grid thirteenth`):
#: 672 steps, depth 20; recorded under the ninth fit, read once to score the
#: tenth (the twelfth grid fitted on too); fitted on since the eleventh.
THIRTEENTH = HERE / "results" / "thirteenth_runs.jsonl"
#: The fourteenth held-out grid (`practice.py train --grid fourteenth`): 576
#: steps, depth 24; recorded under the tenth fit, read once to score the
#: eleventh (the features read within their fitted range); fitted on since
#: the twelfth.
FOURTEENTH = HERE / "results" / "fourteenth_runs.jsonl"
#: The fifteenth held-out grid (`practice.py train --grid fifteenth`): 528
#: steps, depth 26; recorded under the eleventh fit, read once to score the
#: twelfth (`log_settling`, the fourteenth grid fitted on too; withdrawn:
#: BENCHMARKS.md); fitted on since the thirteenth.
FIFTEENTH = HERE / "results" / "fifteenth_runs.jsonl"
#: The sixteenth held-out grid (`practice.py train --grid sixteenth`): 624
#: steps, depth 16; recorded under the twelfth fit, read once to score the
#: thirteenth (the twelfth's `log_settling` withdrawn, the fourteenth and
#: fifteenth grids fitted on); fitted on since the fourteenth.
SIXTEENTH = HERE / "results" / "sixteenth_runs.jsonl"
#: The seventeenth held-out grid (`practice.py train --grid seventeenth`):
#: 592 steps, depth 18; recorded under the thirteenth fit, read once to
#: score the fourteenth (the sixteenth grid fitted on too); fitted on since
#: the fifteenth.
SEVENTEENTH = HERE / "results" / "seventeenth_runs.jsonl"
#: The eighteenth held-out grid (`practice.py train --grid eighteenth`):
#: 656 steps, depth 14; recorded under the thirteenth fit, read once to
#: score the fifteenth (the residual step-0 family, the threshold met on
#: every family, the seventeenth grid fitted on too); fitted on since the
#: sixteenth.
EIGHTEENTH = HERE / "results" / "eighteenth_runs.jsonl"
#: The nineteenth held-out grid (`practice.py train --grid nineteenth`):
#: 544 steps, depth 12; recorded under the fifteenth fit, read once to
#: score the sixteenth (the eighteenth grid fitted on too); fitted on since
#: the seventeenth.
NINETEENTH = HERE / "results" / "nineteenth_runs.jsonl"
#: The twentieth held-out grid (`practice.py train --grid twentieth`): 608
#: steps, depth 10; recorded under the fifteenth fit, read once to score the
#: seventeenth (the nineteenth grid fitted on too).
TWENTIETH = HERE / "results" / "twentieth_runs.jsonl"
#: The twenty-first held-out grid (`practice.py train --grid twenty-first`):
#: 512 steps, depth 12; recorded under the sixteenth fit, read once to score
#: the seventeenth fit again (the nineteenth session changed no fit).
TWENTY_FIRST = HERE / "results" / "twenty-first_runs.jsonl"
#: What the verdict's step-0 rules (`pending`) and the loss-only baseline's
#: budget-free part were derived from: the calibration grid and the first
#: held-out grid (held out for the first fit, whose scores BENCHMARKS.md
#: keeps); the second and third held-out grids score them.
TRAINING = (CALIBRATION, HELDOUT)
#: The fourth grid's epochs (`trainability.EPOCH_STEPS` steps each) whose
#: end gives an outcome to fit
#: the budget on (160 and 320 steps), besides its final one (480). Not
#: shorter: a budget only ever relaxes the verdict (`vd.BUDGET_RANGE`).
PRACTICE_EPOCHS = (10, 20)
#: The read held-out grids trained under warmup and cosine decay.
LATER_READ = (
    FIFTH,
    SIXTH,
    SEVENTH,
    EIGHTH,
    NINTH,
    TENTH,
    ELEVENTH,
    TWELFTH,
    THIRTEENTH,
    FOURTEENTH,
    FIFTEENTH,
    SIXTEENTH,
    SEVENTEENTH,
    EIGHTEENTH,
    NINETEENTH,
)
#: The held-out grids read before the latest fit (each scored a fit once,
#: then read for information): fitted on since the seventh fit (the tenth
#: since the eighth), as the first held-out grid was since the second. The
#: 160-step ones at their budget; the scheduled ones at theirs (560-800
#: steps, judged as 480: `vd.BUDGET_RANGE`) and at the ends of their epochs
#: of 160, 320 and 480 steps, as the fourth grid (the eleventh since the
#: ninth fit, the twelfth since the tenth, the thirteenth since the
#: eleventh, the fourteenth since the twelfth, the fifteenth since the
#: thirteenth, the sixteenth since the fourteenth, the seventeenth since the
#: fifteenth, the eighteenth since the sixteenth, the nineteenth since the
#: seventeenth). Left out: the twentieth and the twenty-first (each read
#: once to score the seventeenth fit) and the twenty-second (unread).
READ = (HELDOUT2, HELDOUT3, *LATER_READ)
#: Budgets short of a scheduled grid's own at which its runs are also fitted.
READ_BUDGETS = (160, 320, 480)
JUDGE = HERE / "results" / "verdict_judge.md"
#: L2 penalty on the standardized coefficients (keeps them finite when a
#: feature separates the classes perfectly).
PENALTY = 1.0
#: Each feature is read within its quantiles `CLIP_QUANTILE` and
#: `1 - CLIP_QUANTILE` over the fitted cases: a linear logit extrapolated
#: past its data (a loss rising at the schedule's peak rate, well below
#: chance) speaks with a confidence nothing measured. Chosen by leaving one
#: read held-out grid out at a time (`verdict_cv.py --clip`): the lowest
#: log-loss of 0, 0.001, 0.0025, 0.005, 0.01 and 0.025 over eleven groups;
#: over thirteen (the thirteenth fit) 0.025 is 0.0005 lower, within noise.
CLIP_QUANTILE = 0.01
#: The calibration precision the risk threshold must reach, overall and in
#: every architecture family of the fitted grids (`threshold_for`): the
#: goal is per family, and a threshold met only overall lets a family's
#: false alarms through (resmlp's precision 0.875-0.889 on the sixteenth
#: and seventeenth grids, the fourteenth fit's).
PRECISION = 0.97
#: A step-0 kind acts at once in a family only when it flagged at least this
#: many runs there (fewer cannot tell a precision of 0.95 from 0.8).
MIN_RUNS = 10
#: The step-0 kinds that may wait (`trainability.SERIOUS` but `nonfinite`,
#: a failure by definition, and the verdict itself).
STEP0_KINDS = tuple(k for k in tr.SERIOUS if k not in ("nonfinite", "verdict"))
#: Watched steps of the loss-only baseline ("watch the loss for 20 steps").
BASELINE_STEPS = 20
#: The baseline knows the budget too: it is no measurement of the network.
LOSS_FEATURES = ("level", "progress", "log_budget")


def load(path: pathlib.Path) -> list[dict]:
    """The grid's records (one per key, NaN/Inf strings as floats)."""
    seen = {}
    for record in tr.load_runs(path):
        seen.setdefault(record["key"], record)
    return list(seen.values())


def budget_of(record: dict) -> int:
    """The steps the record's training was given (its outcome's budget)."""
    return record.get("budget") or record.get("outcome_steps") or record["steps"]


def early_steps(
    record: dict,
    steps: int = vd.WATCH_STEPS,
    budget: int | None = None,
    loss_steps: int | None = None,
) -> vd.EarlySteps:
    """The record's first `steps` steps as the verdict reads them, judged for
    `budget` steps (default: the record's own, `budget_of`); the loss of its
    first `loss_steps` (default: at least `steps`, `vd.loss_steps(budget)`
    as the callback watches)."""
    number = tr._from_json_number
    flags = [f for f in record["step0_flags"] or () if not f["advisory"]]
    family_ = family_of(record)
    budget = budget or budget_of(record)
    if loss_steps is None:
        loss_steps = max(steps, vd.loss_steps(budget))
    return vd.EarlySteps(
        losses=[number(v) for v in record["step_losses"][:loss_steps]],
        learning_rates=record["step_learning_rates"][:steps],
        update_ratios={
            name: [number(v) for v in values[:steps]]
            for name, values in record["update_ratios"].items()
        },
        chance_loss=math.log(tr.N_CLASSES),
        step0_flags=[f["kind"] for f in flags],
        step0_pending=[
            f["kind"]
            for f in flags
            if waiting.waits(
                f["kind"], f["value"], f["threshold"], family_, budget=budget
            )
        ],
        # The first step's ratio is not finite exactly for a weight that was
        # all zero (0/0, or x/0 if it moved).
        from_zero=[
            name
            for name, values in record["update_ratios"].items()
            if values and not math.isfinite(number(values[0]))
        ],
        budget=budget,
    )


def family_of(record: dict) -> str:
    """`pending.family` of the record's network (BatchNorm archs end "_bn";
    the residual ones are `trainability.RESIDUAL_ARCHS`)."""
    if record["arch"].endswith("_bn"):
        return "normalized"
    return "residual" if record["arch"] in tr.RESIDUAL_ARCHS else "plain"


def family(record: dict) -> str:
    """The record's architecture family: its arch (`mlp`, `cnn_bn`, ...),
    by which the scores and the threshold's precision are counted."""
    return record["arch"]


def cases(records) -> list[tuple[dict, int, bool]]:
    """`(record, budget, failed)`: each run at its own budget and outcome."""
    return [(r, budget_of(r), bool(r["failed"])) for r in records]


def outcome_at(record: dict, budget: int) -> bool:
    """Whether the run had failed by `budget` steps: its outcome at its own
    budget, else the mean loss of the epoch that ends there
    (`trainability.failed_by`)."""
    if budget == budget_of(record):
        return bool(record["failed"])
    return tr.failed_by(record, budget // tr.EPOCH_STEPS)


def budget_cases(records, budgets=None) -> list[tuple[dict, int, bool]]:
    """Each run at its own budget, and at each of `budgets` short of it with
    the outcome there (`outcome_at`; default: `PRACTICE_EPOCHS`' ends)."""
    if budgets is None:
        budgets = [tr.EPOCH_STEPS * epoch for epoch in PRACTICE_EPOCHS]
    return cases(records) + [
        (r, budget, outcome_at(r, budget))
        for r in records
        for budget in budgets
        if budget < budget_of(r)
    ]


def matrix(records, steps, names=vd.FEATURES, at=None, loss_steps=None):
    """`(features [runs, names], finite [runs], failed [runs])`.

    `at`: `(record, budget, failed)` cases to read instead of `records`, each
    at its own budget (default: `cases(records)`); `loss_steps` as
    `early_steps`, or a function of the case's budget that gives them.
    """
    rows, finite = [], []
    at = cases(records) if at is None else at
    for record, budget, _ in at:
        watched = loss_steps(budget) if callable(loss_steps) else loss_steps
        early = early_steps(record, steps, budget, watched)
        values = vd.features(early)
        rows.append([values[n] for n in names])
        finite.append(early.finite)
    return (
        np.asarray(rows, dtype=np.float64),
        np.asarray(finite),
        np.asarray([failed for _, _, failed in at]),
    )


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    penalty: float = PENALTY,
    quantile: float = CLIP_QUANTILE,
):
    """Bounds, means, scales, coefficients and intercept of an L2 logistic
    model, each feature read within its `quantile` and `1 - quantile`
    quantiles over `x` (`vd.contributions`).

    NaN entries count as the mean (0 after standardizing), as `vd.risk`
    treats an unmeasured feature.
    """
    lows = np.nanquantile(x, quantile, axis=0)
    highs = np.nanquantile(x, 1 - quantile, axis=0)
    x = clipped(x, lows, highs)
    means = np.nanmean(x, axis=0)
    scales = np.nanstd(x, axis=0)
    scales = np.where(scales > 0, scales, 1.0)
    z = np.nan_to_num((x - means) / scales, nan=0.0)
    design = np.hstack([np.ones((len(z), 1)), z])
    w = np.zeros(design.shape[1])
    ridge = np.eye(len(w)) * penalty
    ridge[0, 0] = 0.0
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-design @ w))
        gradient = design.T @ (p - y) + ridge @ w
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + ridge
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return lows, highs, means, scales, w[1:], w[0]


def clipped(x, lows, highs) -> np.ndarray:
    """`x` within `[lows, highs]` per column; NaN stays NaN."""
    return np.where(np.isnan(x), x, np.clip(x, lows, highs))


def predict(x, lows, highs, means, scales, coefficients, intercept) -> np.ndarray:
    z = np.nan_to_num((clipped(x, lows, highs) - means) / scales, nan=0.0)
    return 1.0 / (1.0 + np.exp(-(intercept + z @ coefficients)))


def model_risk(model, names=vd.FEATURES):
    """`EarlySteps -> risk` of a fitted `(means, scales, coefficients,
    intercept)` (`predict` on `vd.features`): a refit judged on the zoo's
    steps (`zoo_gate.judged`)."""

    def risk_of(early: vd.EarlySteps) -> float:
        values = vd.features(early)
        return float(predict(np.asarray([[values[n] for n in names]]), *model)[0])

    return risk_of


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """The probability that a failed run scores above a trained one (ties 1/2)."""
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return math.nan
    greater = (pos[:, None] > neg[None, :]).mean()
    equal = (pos[:, None] == neg[None, :]).mean()
    return float(greater + equal / 2)


def threshold_for(scores, labels, families=None, precision=PRECISION) -> float:
    """The lowest threshold whose precision is at least `precision`, overall
    and, given each case's family (`families`), in every family it calls
    any case of.

    Example:
    >>> scores, labels = np.asarray([4.0, 3, 2, 1]), np.asarray([1, 1, 0, 1]) > 0
    >>> threshold_for(scores, labels, precision=0.7)
    1.0
    >>> threshold_for(scores, labels, list("abab"), precision=0.7)
    3.0
    """
    scores, labels = np.asarray(scores), np.asarray(labels, dtype=bool)
    if np.isnan(scores).any():
        raise ValueError("threshold_for: a score is NaN (a risk is never NaN)")
    cuts = np.unique(scores)
    called, failed = _called_at(cuts, scores, labels)
    meets = (called > 0) & (_share(failed, called) >= precision)
    if families is not None:
        families = np.asarray(families)
        for f in np.unique(families):
            mine = families == f
            called, failed = _called_at(cuts, scores[mine], labels[mine])
            meets &= (called == 0) | (_share(failed, called) >= precision)
    return float(cuts[meets.argmax()]) if meets.any() else 1.0


def _called_at(cuts, scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """At each of `cuts`: how many `scores` are at or above it, and how many
    of those are `labels`."""
    called = len(scores) - np.searchsorted(np.sort(scores), cuts)
    positive = np.sort(scores[labels])
    return called, len(positive) - np.searchsorted(positive, cuts)


def _share(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """`part / whole` per entry, the division a mean of labels does (0
    where `whole` is 0)."""
    return np.divide(part, whole, out=np.zeros(len(whole)), where=whole > 0)


def fitted(records, steps, names=vd.FEATURES, at=None, loss_steps=None):
    """A model fitted on `records` (or the cases `at`; nonfinite runs left
    out: failing anyway)."""
    at = cases(records) if at is None else at
    x, finite, y = matrix((), steps, names, at, loss_steps)
    model = fit_logistic(x[finite], y[finite].astype(float))
    scores = np.where(finite, predict(x, *model), 1.0)
    return model, threshold_for(scores, y, families(at)), scores, y


def families(at) -> np.ndarray:
    """Each case's architecture family (`family`)."""
    return np.asarray([family(record) for record, _, _ in at])


def training() -> list[dict]:
    """The records the step-0 rules were derived from (`TRAINING`)."""
    return [record for path in TRAINING for record in load(path)]


def training_cases() -> list[tuple[dict, int, bool]]:
    """What the verdict and the baseline are fitted on: `TRAINING`'s runs at
    160 steps, the fourth grid's at three budgets (`budget_cases`), and the
    read held-out grids' (`read_cases`)."""
    return cases(training()) + budget_cases(load(PRACTICE)) + read_cases()


def read_cases(paths: Sequence[pathlib.Path] = READ) -> list[tuple[dict, int, bool]]:
    """`READ`'s runs at their own budgets, and the scheduled ones also at
    each of `READ_BUDGETS` short of it, with the outcome there."""
    return [case for path in paths for case in budget_cases(load(path), READ_BUDGETS)]


def baseline():
    """`(model, threshold)` of the loss-only baseline, fitted as the verdict."""
    model, cut, _, _ = fitted(
        (), BASELINE_STEPS, LOSS_FEATURES, training_cases(), BASELINE_STEPS
    )
    return model, cut


def fit(steps: int = vd.WATCH_STEPS) -> None:
    """Fit on the training grids; print the constants for `verdict_fit.py`."""
    at = training_cases()
    model, cut, scores, y = fitted((), steps, at=at)
    lows, highs, means, scales, coefficients, intercept = model
    print(f"{len(at)} training cases, {int(y.sum())} failed; K={steps}")

    def fmt(values, digits: int = 4) -> str:
        pairs = (f'"{n}": {v:.{digits}g}' for n, v in zip(vd.FEATURES, values))
        return "{" + ", ".join(pairs) + "}"

    # The bounds to 8 digits: a budget's at the fitted range's end (log10 3)
    # must stay there.
    print(f"LOWS = {fmt(lows, 8)}")
    print(f"HIGHS = {fmt(highs, 8)}")
    print(f"MEANS = {fmt(means)}")
    print(f"SCALES = {fmt(scales)}")
    print(f"COEFFICIENTS = {fmt(coefficients)}")
    print(f"INTERCEPT = {intercept:.4g}")
    print(f"RISK_THRESHOLD = {cut:.4g}")
    called = scores >= cut
    print(
        f"in-sample: AUC {roc_auc(scores, y):.3f}, precision "
        f"{y[called].mean():.3f}, recall {called[y].mean():.3f}"
    )
    print("\n".join(zoo_gate.lines(zoo_gate.judged(model_risk(model), cut), cut)))


def choose_k() -> None:
    """In-sample AUC of the verdict refitted at each length of the updates'
    watch (the loss watched as the callback does, at least as long)."""
    at = training_cases()
    for steps in (8, 16, 24, 32):
        _, _, scores, y = fitted((), steps, at=at)
        print(f"K={steps}: in-sample AUC {roc_auc(scores, y):.4f}")


def module_scores(records, steps=vd.WATCH_STEPS) -> np.ndarray:
    """The installed module's risk for each record (1 for nonfinite runs)."""
    out = []
    for record in records:
        early = early_steps(record, steps)
        out.append(vd.risk(vd.features(early)) if early.finite else 1.0)
    return np.asarray(out)


def step0_scores(records) -> np.ndarray:
    """1 when step 0 raised a non-advisory flag, else 0."""
    return np.asarray(
        [float(any(not f["advisory"] for f in r["step0_flags"] or ())) for r in records]
    )


def _row(name, scores, called, y) -> str:
    tp = int((called & y).sum())
    fp = int((called & ~y).sum())
    fn = int((~called & y).sum())
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    return (
        f"| {name} | {len(y)} | {int(y.sum())} | {tp} | {fp} | {fn} "
        f"| {precision:.3f} | {recall:.3f} | {roc_auc(scores, y):.3f} |"
    )


def acted_on(records) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(risk, certain, acted)` per record, each judged for its own budget:
    the installed verdict's risk, whether step 0 raised a flag that acts at
    once, and whether `on_flag` acts on the run (that, or a failing
    verdict)."""
    risk = module_scores(records)
    certain = np.asarray(
        [vd.features(early_steps(r))["step0_certain"] > 0 for r in records]
    )
    return risk, certain, certain | (risk >= vd.RISK_THRESHOLD)


def table(title: str, records: list[dict], baseline_model, baseline_cut) -> list[str]:
    y = np.asarray([bool(r["failed"]) for r in records])
    verdict, certain, acted = acted_on(records)
    step0 = step0_scores(records)
    xb, finite_b, _ = matrix(
        records, BASELINE_STEPS, LOSS_FEATURES, loss_steps=BASELINE_STEPS
    )
    baseline = np.where(finite_b, predict(xb, *baseline_model), 1.0)
    methods = {
        "early verdict": (verdict, verdict >= vd.RISK_THRESHOLD),
        "what on_flag acts on": (np.maximum(verdict, certain.astype(float)), acted),
        "step-0 flags": (step0, step0 > 0),
        f"loss only, {BASELINE_STEPS} steps": (baseline, baseline >= baseline_cut),
    }
    lines = [
        f"### {title}",
        "",
        "| networks | method | runs | failed | TP | FP | FN | precision | recall "
        "| ROC AUC |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups = {"all": np.ones(len(records), bool)}
    for key in sorted({family(r) for r in records}):
        groups[key] = np.asarray([family(r) == key for r in records])
    for key in tr.OPTIMIZERS:
        groups[key] = np.asarray([r["optimizer"] == key for r in records])
    for group, mask in groups.items():
        for name, (scores, called) in methods.items():
            row = _row(name, scores[mask], called[mask], y[mask])
            lines.append(f"| {group} " + row)
    return lines + [""]


def score() -> None:
    """Score the module's verdict on every grid; write `JUDGE`."""
    order = (
        TWENTY_FIRST,
        TWENTIETH,
        *reversed(LATER_READ),
        HELDOUT3,
        HELDOUT2,
        PRACTICE,
        *TRAINING,
    )
    grids = {path: load(path) for path in order if path.exists()}
    baseline_model, baseline_cut = baseline()
    titles = {
        TWENTY_FIRST: "Twenty-first held-out grid (512 steps; never fitted on; "
        "read once to score the seventeenth fit, a second unseen grid)",
        TWENTIETH: "Twentieth held-out grid (608 steps; never fitted on; "
        "read once to score the seventeenth fit)",
        NINETEENTH: "Nineteenth held-out grid (544 steps; read once to score "
        "the sixteenth fit; fitted on since the seventeenth fit: in-sample)",
        EIGHTEENTH: "Eighteenth held-out grid (656 steps; read once to score "
        "the fifteenth fit; fitted on since the sixteenth fit: in-sample)",
        SEVENTEENTH: "Seventeenth held-out grid (592 steps; read once to score "
        "the fourteenth fit; fitted on since the fifteenth fit: in-sample)",
        SIXTEENTH: "Sixteenth held-out grid (624 steps; read once to score "
        "the thirteenth fit; fitted on since the fourteenth fit: in-sample)",
        FIFTEENTH: "Fifteenth held-out grid (528 steps; read once to score "
        "the twelfth fit; fitted on since the thirteenth fit: in-sample)",
        FOURTEENTH: "Fourteenth held-out grid (576 steps; read once to score "
        "the eleventh fit; fitted on since the twelfth fit: in-sample)",
        THIRTEENTH: "Thirteenth held-out grid (672 steps; read once to score "
        "the tenth fit; fitted on since the eleventh fit: in-sample)",
        TWELFTH: "Twelfth held-out grid (704 steps; read once to score the "
        "ninth fit; fitted on since the tenth fit: in-sample)",
        ELEVENTH: "Eleventh held-out grid (608 steps; read once to score the "
        "eighth fit; fitted on since the ninth fit: in-sample)",
        TENTH: "Tenth held-out grid (640 steps; read once to score the seventh "
        "fit; fitted on since the eighth fit: in-sample)",
        NINTH: "Ninth held-out grid (560 steps; read once to score `log_pace`; "
        "fitted on since the seventh fit: in-sample)",
        EIGHTH: "Eighth held-out grid (720 steps; fitted on since the seventh "
        "fit: in-sample)",
        SEVENTH: "Seventh held-out grid (560 steps; fitted on since the seventh "
        "fit: in-sample)",
        SIXTH: "Sixth held-out grid (640 steps; fitted on since the seventh "
        "fit: in-sample)",
        FIFTH: "Fifth held-out grid (800 steps; scored the first budget-aware "
        "fit; fitted on since the seventh fit: in-sample)",
        PRACTICE: "Fourth held-out grid (480 steps; fitted on at 160, 320 and 480 "
        "steps since the budget-aware fit: in-sample)",
        HELDOUT3: "Third held-out grid (fitted on since the seventh fit: in-sample)",
        HELDOUT2: "Second held-out grid (read before the band was chosen; "
        "fitted on since the seventh fit: in-sample)",
        HELDOUT: "First held-out grid (fitted on since the second fit; in-sample)",
        CALIBRATION: "Calibration grid (in-sample)",
    }
    lines = [
        "# The early verdict against the outcomes (`benchmarks/verdict.py score`)",
        "",
        f"Watched steps: {vd.WATCH_STEPS} (the loss for {vd.LONG_WATCH_STEPS} "
        f"in trainings of {vd.LONG_BUDGET} steps or more); risk threshold "
        f"{vd.RISK_THRESHOLD:.3g}. "
        f"Fitted on the calibration grid and the first held-out grid (160 "
        f"steps), the fourth grid at 160, 320 and 480 steps, and the second, "
        f"third and fifth to nineteenth held-out grids at their own budgets (the "
        f"scheduled ones also at 160, 320 and 480); each run judged for its "
        f"own budget. "
        f"The loss-only baseline: the loss features over {BASELINE_STEPS} steps, "
        f"fitted on the same runs (threshold {baseline_cut:.3g}).",
        "",
    ]
    for path, records in grids.items():
        if records:
            lines += table(titles[path], records, baseline_model, baseline_cut)
    JUDGE.write_text("\n".join(lines))
    print("\n".join(lines))


#: The whole decades past the threshold that `pending` tries for
#: `pending.CERTAIN_BEYOND`.
DECADES = (1, 2, 3)


def kind_precision(records, past: float = 0.0, outcome=None) -> dict:
    """`{(family, kind): (trained, failed)}`: runs with the kind at step 0,
    at least `past` decades beyond its threshold (`pending.decades_past`);
    `outcome(record)` says whether it failed (default: `record["failed"]`)."""
    counts: dict = {}
    for record in records:
        family_ = family_of(record)
        kinds = {
            f["kind"]
            for f in record["step0_flags"] or ()
            if not f["advisory"]
            and waiting.decades_past(f["value"], f["threshold"]) >= past
        }
        failed = record["failed"] if outcome is None else outcome(record)
        for kind in kinds:
            row = counts.setdefault((family_, kind), [0, 0])
            row[bool(failed)] += 1
    return counts


def certain(trained: int, failed: int) -> bool:
    """Whether a flag's runs show it acting at once is safe."""
    runs = trained + failed
    return runs >= MIN_RUNS and failed / runs >= waiting.CERTAIN


def derive_pending(
    records, families=("normalized", "plain"), outcome=None
) -> tuple[dict, dict]:
    """`(PENDING_KINDS, CERTAIN_BEYOND)` of `families` from `records`: the
    kinds below `pending.CERTAIN` per family against `outcome` (default:
    `record["failed"]`), or measured on fewer than `MIN_RUNS` runs; for each
    of those, the fewest whole decades (`DECADES`) past the threshold beyond
    which its flags are certain, if any."""
    counts = kind_precision(records, 0.0, outcome)
    kinds: dict = {family_: [] for family_ in families}
    beyond: dict = {family_: {} for family_ in families}
    for family_ in kinds:
        for kind in STEP0_KINDS:
            if certain(*counts.get((family_, kind), (0, 0))):
                continue
            kinds[family_].append(kind)
            band = _band(records, family_, kind, outcome)
            if band is not None:
                beyond[family_][kind] = band
    return {k: tuple(v) for k, v in kinds.items()}, {
        k: v for k, v in beyond.items() if v
    }


def _band(records, family_: str, kind: str, outcome=None) -> int | None:
    """The fewest `DECADES` past its threshold from which `kind`'s flags in
    `family_` are `certain` against `outcome`, or None."""
    for past in DECADES:
        tail = kind_precision(records, past, outcome).get((family_, kind), (0, 0))
        if certain(*tail):
            return past
    return None


#: The fourth grid's budgets past the calibration one at which the step-0
#: kinds are judged again (`derive_long_pending`).
LONG_BUDGETS = (320, 480)


def derive_long_pending(records, pending_kinds=None) -> dict:
    """`LONG_PENDING` from `records` (the scheduled grids fitted on,
    `SCHEDULED`): at each of `LONG_BUDGETS`, per family, the
    kinds that act at once at 160 steps but are not `certain` against the
    outcome at that budget (on at least `MIN_RUNS` runs given as many
    steps), each with its band (`_band`). `pending_kinds`: the kinds that
    wait at 160 steps (default: the installed `pending.PENDING_KINDS`)."""
    pending_kinds = waiting.PENDING_KINDS if pending_kinds is None else pending_kinds
    table: dict = {}
    for budget in LONG_BUDGETS:
        outcome = functools.partial(outcome_at, budget=budget)
        long = [r for r in records if budget_of(r) >= budget]
        counts = kind_precision(long, 0.0, outcome)
        for (family_, kind), (trained, failed) in sorted(counts.items()):
            if kind not in STEP0_KINDS or kind in pending_kinds[family_]:
                continue
            if trained + failed >= MIN_RUNS and not certain(trained, failed):
                band = _band(long, family_, kind, outcome)
                table.setdefault(budget, {}).setdefault(family_, {})[kind] = band
    return table


def outcome_at_160(record: dict) -> bool:
    """Whether the run had failed by the calibration budget (160 steps)."""
    return outcome_at(record, vd.CALIBRATION_BUDGET)


def residual_records() -> list[dict]:
    """The residual networks without normalization (`family_of`) of every
    grid fitted on: the training grids alone hold too few to measure the
    family's step-0 kinds (`pending.PENDING_KINDS`)."""
    paths = (*TRAINING, PRACTICE, *READ)
    return [r for p in paths for r in load(p) if family_of(r) == "residual"]


def step0_sources() -> list[tuple[list[dict], object, tuple[str, ...]]]:
    """`(records, outcome, families)` from which each family's step-0 kinds
    are measured at 160 steps: the plain and normalized families from the
    training grids (their own outcome), the residual one from
    `residual_records` (the outcome at 160 steps, `outcome_at_160`)."""
    return [
        (training(), None, ("normalized", "plain")),
        (residual_records(), outcome_at_160, ("residual",)),
    ]


def derive_all(sources=None) -> tuple[dict, dict, dict]:
    """`(PENDING_KINDS, CERTAIN_BEYOND, LONG_PENDING)`: each family from its
    `step0_sources` (default: loaded here); for longer trainings every
    family from the scheduled grids fitted on (`SCHEDULED`)."""
    kinds: dict = {}
    beyond: dict = {}
    for records, outcome, families in sources or step0_sources():
        more_kinds, more_beyond = derive_pending(records, families, outcome)
        kinds.update(more_kinds)
        beyond.update(more_beyond)
    scheduled = [r for path in SCHEDULED for r in load(path)]
    return kinds, beyond, derive_long_pending(scheduled, pending_kinds=kinds)


def pending() -> None:
    """Step-0 precision per family and kind on the training grids (the
    residual family: on `residual_records`, at 160 steps), overall and some
    decades past the threshold; the kinds that wait for the verdict and
    where they stop waiting (`derive_all`)."""
    sources = step0_sources()
    print("| family | kind at step 0 | decades past | trained | failed | precision |")
    print("|---|---|---|---|---|---|")
    for records, outcome, only in sources:
        for past in (0, *DECADES):
            counts = kind_precision(records, past, outcome)
            for (family_, kind), (trained, failed) in sorted(counts.items()):
                if family_ in only:
                    print(
                        f"| {family_} | {kind} | {past} | {trained} | {failed} "
                        f"| {failed / (trained + failed):.3f} |"
                    )
    kinds, beyond, long = derive_all(sources)
    print("PENDING_KINDS =", kinds)
    print("CERTAIN_BEYOND =", beyond)
    print("LONG_PENDING =", long)


#: The scheduled grids (warmup and cosine decay), whose runs' training
#: losses `disagreement` reads.
SCHEDULED = (PRACTICE, *LATER_READ)


def disagreement(paths: Sequence[pathlib.Path] = SCHEDULED) -> dict:
    """Per family, `(runs, disagreeing runs)`: runs that failed by their
    last epoch's mean training loss (`loss_curve`, what `fit`'s progress
    bar shows, in training mode) and trained by the outcome (the loss
    evaluated after training, `trainability.failed`), both against
    `FAIL_FRACTION` of the labels' entropy. The other way round it raises
    (the evaluated loss is never the worse one on the committed grids)."""
    counts: dict = {}
    for path in paths:
        for record in load(path):
            curve = [tr._from_json_number(v) for v in record["loss_curve"]]
            if record["nonfinite"] or not curve or not math.isfinite(curve[-1]):
                continue
            seen = tr.failed_by(record, len(curve))  # the outcome's own rule
            runs, disagree = counts.get(record["arch"], (0, 0))
            counts[record["arch"]] = (
                runs + 1,
                disagree + (seen and not record["failed"]),
            )
            if not seen and record["failed"]:
                raise ValueError(f"{record['key']}: failed evaluated, not by its curve")
    return counts


def disagree() -> None:
    """Print `disagreement` as a table."""
    print("| family | runs | failed by the training loss, trained evaluated |")
    print("|---|---|---|")
    for arch, (runs, count) in sorted(disagreement().items()):
        print(f"| {arch} | {runs} | {count} |")


#: The steps at whose epoch `horizon` reads the training loss.
HORIZONS = (96, 160, 240, 320, 480)


def recall_at(scores: np.ndarray, labels: np.ndarray, precision=0.95) -> float:
    """The highest recall of any threshold on `scores` (higher: failing) whose
    precision is at least `precision`."""
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(labels[order])
    good = hits / np.arange(1, len(order) + 1) >= precision
    return float(hits[good].max() / labels.sum()) if good.any() else 0.0


def horizon(paths: Sequence[pathlib.Path] = SCHEDULED) -> dict:
    """`{family: {steps: recall}}`: how early the training loss alone tells
    the outcome. For each of `HORIZONS`, the mean training loss of the epoch
    ending at or before it, over the labels' entropy, thresholded at the
    best cut for these very runs (in-sample: an upper bound for a rule on the
    loss's level) at precision 0.95; its recall. Runs with a non-finite
    loss left out (failing anyway)."""
    rows: dict = {}
    for path in paths:
        for record in load(path):
            curve = [tr._from_json_number(v) for v in record["loss_curve"]]
            if record["nonfinite"] or not all(map(math.isfinite, curve)):
                continue
            steps = record["curve_steps"]
            levels = [
                curve[max(i for i, s in enumerate(steps) if s <= h)] / record["entropy"]
                for h in HORIZONS
            ]
            for family in (record["arch"], "all"):
                rows.setdefault(family, []).append((levels, record["failed"]))
    out = {}
    for family, runs in rows.items():
        levels = np.asarray([lv for lv, _ in runs])
        failed = np.asarray([f for _, f in runs], dtype=bool)
        out[family] = {
            h: recall_at(levels[:, i], failed) for i, h in enumerate(HORIZONS)
        }
    return out


def horizons() -> None:
    """Print `horizon` as a table."""
    recalls = horizon()
    print("| family | " + " | ".join(f"{h} steps" for h in HORIZONS) + " |")
    print("|---|" + "---|" * len(HORIZONS))
    for family in sorted(recalls):
        cells = " | ".join(f"{recalls[family][h]:.2f}" for h in HORIZONS)
        print(f"| {family} | {cells} |")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``fit``, ``choose-k``, ``pending``, ``score``,
    ``disagree``, ``horizon``."""
    commands = {
        "fit": fit,
        "choose-k": choose_k,
        "pending": pending,
        "score": score,
        "disagree": disagree,
        "horizon": horizons,
    }
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=tuple(commands))
    args = parser.parse_args(argv)
    commands[args.command]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
