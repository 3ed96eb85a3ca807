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
#: since the tenth the twelfth, since the eleventh the thirteenth; 8,792
#: cases, their step-0 flags pending as `pending.waits` says for each
#: budget; scored on the fourteenth held-out grid, at 576 steps).
#:
#: Since the eleventh fit each feature is read within its 1st and 99th
#: percentile over the fitted cases, `LOWS` and `HIGHS` (`benchmarks/
#: verdict.py`'s `CLIP_QUANTILE`): `verdict.contributions` reads a value
#: outside them as the nearest one. `MEANS` and `SCALES`: each feature's
#: mean and standard deviation there, within those bounds; `COEFFICIENTS`:
#: those of the standardized features.
LOWS = {
    "level": -2.081998,
    "progress": -0.002440812,
    "log_trust": -6.1451861,
    "log_slowest": -12.0,
    "above_chance": 0.0,
    "over_trust": 0.0,
    "step0_certain": 0.0,
    "step0_pending": 0.0,
    "log_budget": 0.0,
    "log_pace": 0.0,
}
HIGHS = {
    "level": 10.0,
    "progress": 0.83646058,
    "log_trust": 0.16955466,
    "log_slowest": -1.4520354,
    "above_chance": 10.0,
    "over_trust": 0.16955466,
    "step0_certain": 1.0,
    "step0_pending": 1.0,
    "log_budget": 0.47712125,
    "log_pace": 3.0265403,
}
MEANS = {
    "level": -0.3845,
    "progress": 0.3171,
    "log_trust": -1.673,
    "log_slowest": -3.544,
    "above_chance": 0.2157,
    "over_trust": 0.002696,
    "step0_certain": 0.2763,
    "step0_pending": 0.1925,
    "log_budget": 0.2465,
    "log_pace": 0.1892,
}
SCALES = {
    "level": 1.479,
    "progress": 0.2646,
    "log_trust": 1.02,
    "log_slowest": 2.189,
    "above_chance": 1.233,
    "over_trust": 0.01988,
    "step0_certain": 0.4471,
    "step0_pending": 0.3942,
    "log_budget": 0.2137,
    "log_pace": 0.621,
}
COEFFICIENTS = {
    "level": 3.372,
    "progress": -1.409,
    "log_trust": 0.481,
    "log_slowest": -0.4402,
    "above_chance": -2.655,
    "over_trust": 0.1554,
    "step0_certain": 1.829,
    "step0_pending": 0.2691,
    "log_budget": -0.2469,
    "log_pace": 1.185,
}
INTERCEPT = -1.461
#: The risk at which a run is judged failing: the lowest at which the
#: training runs' precision is at least 0.97 (a false "failing" can stop a
#: good run).
RISK_THRESHOLD = 0.7387
