"""The early verdict's fitted model: numbers, written by a fit, not by hand.

`benchmarks/verdict.py fit` prints them; `tests/test_verdict.py` refits
on the committed grid records and checks that they are exactly these.
`keras_initdiag.diagnostics.verdict` reads them (and re-exports them), in
the order of its `FEATURES`.
"""

#: The fitted model (`benchmarks/verdict.py fit`: the calibration grid and
#: the first held-out grid at 160 steps, 1,064 runs; the fourth grid's 336
#: runs at 160, 320 and 480 steps; since the seventh fit, the read held-out
#: grids (second, third, fifth to ninth: 1,512 runs) at their own budgets
#: and the scheduled ones also at 160, 320 and 480 steps; since the eighth
#: fit also the tenth, and the loss read over 64 steps for budgets of 320
#: and more (`verdict.loss_steps`); since the ninth fit also the eleventh,
#: since the tenth the twelfth, since the eleventh the thirteenth, since
#: the twelfth the fourteenth; 9,464 cases, their step-0 flags pending as
#: `pending.waits` says for each budget; scored on the fifteenth held-out
#: grid, at 528 steps). `log_settling` since the twelfth fit.
#:
#: Since the eleventh fit each feature is read within its 1st and 99th
#: percentile over the fitted cases, `LOWS` and `HIGHS` (`benchmarks/
#: verdict.py`'s `CLIP_QUANTILE`): `verdict.contributions` reads a value
#: outside them as the nearest one. `MEANS` and `SCALES`: each feature's
#: mean and standard deviation there, within those bounds; `COEFFICIENTS`:
#: those of the standardized features.
LOWS = {
    "level": -2.0878699,
    "progress": -0.008958819,
    "log_trust": -6.1153612,
    "log_slowest": -12.0,
    "above_chance": 0.0,
    "over_trust": 0.0,
    "step0_certain": 0.0,
    "step0_pending": 0.0,
    "log_budget": 0.0,
    "log_pace": 0.0,
    "log_settling": -1.1905353,
}
HIGHS = {
    "level": 10.0,
    "progress": 0.83583018,
    "log_trust": 0.17038936,
    "log_slowest": -1.4562437,
    "above_chance": 10.0,
    "over_trust": 0.17038936,
    "step0_certain": 1.0,
    "step0_pending": 1.0,
    "log_budget": 0.47712125,
    "log_pace": 3.0569168,
    "log_settling": 0.73142847,
}
MEANS = {
    "level": -0.3871,
    "progress": 0.3131,
    "log_trust": -1.665,
    "log_slowest": -3.557,
    "above_chance": 0.2062,
    "over_trust": 0.002923,
    "step0_certain": 0.2776,
    "step0_pending": 0.206,
    "log_budget": 0.2513,
    "log_pace": 0.1909,
    "log_settling": -0.1319,
}
SCALES = {
    "level": 1.439,
    "progress": 0.2634,
    "log_trust": 1.026,
    "log_slowest": 2.205,
    "above_chance": 1.193,
    "over_trust": 0.02068,
    "step0_certain": 0.4478,
    "step0_pending": 0.4044,
    "log_budget": 0.2131,
    "log_pace": 0.6223,
    "log_settling": 0.2734,
}
COEFFICIENTS = {
    "level": 3.17,
    "progress": -1.771,
    "log_trust": 0.01424,
    "log_slowest": -0.595,
    "above_chance": -2.498,
    "over_trust": 0.2003,
    "step0_certain": 1.825,
    "step0_pending": 0.3808,
    "log_budget": -0.2848,
    "log_pace": 1.201,
    "log_settling": -0.9162,
}
INTERCEPT = -1.47
#: The risk at which a run is judged failing: the lowest at which the
#: training runs' precision is at least 0.97 (a false "failing" can stop a
#: good run).
RISK_THRESHOLD = 0.7508
