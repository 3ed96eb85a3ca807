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
#: sixteenth, since the fifteenth the seventeenth, since the sixteenth the
#: eighteenth; 12,152 cases, their step-0 flags pending as `pending.waits`
#: says for each budget and family, the residual one included; scored on
#: the nineteenth held-out grid, at 544 steps).
#:
#: Since the eleventh fit each feature is read within its 1st and 99th
#: percentile over the fitted cases, `LOWS` and `HIGHS` (`benchmarks/
#: verdict.py`'s `CLIP_QUANTILE`): `verdict.contributions` reads a value
#: outside them as the nearest one. `MEANS` and `SCALES`: each feature's
#: mean and standard deviation there, within those bounds; `COEFFICIENTS`:
#: those of the standardized features.
LOWS = {
    "level": -2.1181303,
    "progress": -0.021159237,
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
    "progress": 0.83523667,
    "log_trust": 0.17038936,
    "log_slowest": -1.4612653,
    "above_chance": 10.0,
    "over_trust": 0.17038936,
    "step0_certain": 1.0,
    "step0_pending": 1.0,
    "log_budget": 0.47712125,
    "log_pace": 3.1464112,
}
MEANS = {
    "level": -0.3935,
    "progress": 0.3115,
    "log_trust": -1.658,
    "log_slowest": -3.572,
    "above_chance": 0.2056,
    "over_trust": 0.00293,
    "step0_certain": 0.2931,
    "step0_pending": 0.1942,
    "log_budget": 0.2652,
    "log_pace": 0.1957,
}
SCALES = {
    "level": 1.441,
    "progress": 0.2635,
    "log_trust": 1.016,
    "log_slowest": 2.211,
    "above_chance": 1.192,
    "over_trust": 0.0205,
    "step0_certain": 0.4552,
    "step0_pending": 0.3956,
    "log_budget": 0.2108,
    "log_pace": 0.6356,
}
COEFFICIENTS = {
    "level": 3.582,
    "progress": -1.623,
    "log_trust": 0.5072,
    "log_slowest": -0.3298,
    "above_chance": -2.848,
    "over_trust": 0.1673,
    "step0_certain": 2.336,
    "step0_pending": 0.1089,
    "log_budget": -0.349,
    "log_pace": 1.439,
}
INTERCEPT = -1.293
#: The risk at which a run is judged failing: the lowest at which the
#: training runs' precision is at least 0.97 (a false "failing" can stop a
#: good run), overall and in each architecture family of the grids (since
#: the fifteenth fit).
RISK_THRESHOLD = 0.8375
