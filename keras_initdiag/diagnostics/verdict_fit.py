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
#: the thirteenth the fourteenth and fifteenth, since the fourteenth the
#: sixteenth, since the fifteenth the seventeenth; 11,480 cases, their
#: step-0 flags pending as `pending.waits` says for each budget and family,
#: the residual one included; scored on the eighteenth held-out grid, at
#: 656 steps).
#:
#: Since the eleventh fit each feature is read within its 1st and 99th
#: percentile over the fitted cases, `LOWS` and `HIGHS` (`benchmarks/
#: verdict.py`'s `CLIP_QUANTILE`): `verdict.contributions` reads a value
#: outside them as the nearest one. `MEANS` and `SCALES`: each feature's
#: mean and standard deviation there, within those bounds; `COEFFICIENTS`:
#: those of the standardized features.
LOWS = {
    "level": -2.1181303,
    "progress": -0.019768021,
    "log_trust": -6.0923779,
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
    "progress": 0.83534869,
    "log_trust": 0.17480775,
    "log_slowest": -1.4633734,
    "above_chance": 10.0,
    "over_trust": 0.17480775,
    "step0_certain": 1.0,
    "step0_pending": 1.0,
    "log_budget": 0.47712125,
    "log_pace": 3.0968757,
}
MEANS = {
    "level": -0.3894,
    "progress": 0.3106,
    "log_trust": -1.655,
    "log_slowest": -3.574,
    "above_chance": 0.2031,
    "over_trust": 0.003049,
    "step0_certain": 0.2926,
    "step0_pending": 0.1991,
    "log_budget": 0.2623,
    "log_pace": 0.1943,
}
SCALES = {
    "level": 1.429,
    "progress": 0.2634,
    "log_trust": 1.02,
    "log_slowest": 2.212,
    "above_chance": 1.181,
    "over_trust": 0.02115,
    "step0_certain": 0.455,
    "step0_pending": 0.3993,
    "log_budget": 0.2114,
    "log_pace": 0.6301,
}
COEFFICIENTS = {
    "level": 3.588,
    "progress": -1.588,
    "log_trust": 0.4166,
    "log_slowest": -0.231,
    "above_chance": -2.877,
    "over_trust": 0.1799,
    "step0_certain": 2.376,
    "step0_pending": 0.1458,
    "log_budget": -0.3444,
    "log_pace": 1.368,
}
INTERCEPT = -1.24
#: The risk at which a run is judged failing: the lowest at which the
#: training runs' precision is at least 0.97 (a false "failing" can stop a
#: good run), overall and in each architecture family of the grids (since
#: the fifteenth fit).
RISK_THRESHOLD = 0.8433
