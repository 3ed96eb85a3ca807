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
#: eighteenth, since the seventeenth the nineteenth; 12,824 cases, their
#: step-0 flags pending as `pending.waits` says for each budget and family,
#: the residual one included; scored on the twentieth held-out grid, at 608
#: steps).
#:
#: Since the eleventh fit each feature is read within its 1st and 99th
#: percentile over the fitted cases, `LOWS` and `HIGHS` (`benchmarks/
#: verdict.py`'s `CLIP_QUANTILE`): `verdict.contributions` reads a value
#: outside them as the nearest one. `MEANS` and `SCALES`: each feature's
#: mean and standard deviation there, within those bounds; `COEFFICIENTS`:
#: those of the standardized features.
LOWS = {
    "level": -2.1106354,
    "progress": -0.016993855,
    "log_trust": -6.0375821,
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
    "progress": 0.83110516,
    "log_trust": 0.16737238,
    "log_slowest": -1.4528975,
    "above_chance": 10.0,
    "over_trust": 0.16737238,
    "step0_certain": 1.0,
    "step0_pending": 1.0,
    "log_budget": 0.47712125,
    "log_pace": 3.0958394,
}
MEANS = {
    "level": -0.3971,
    "progress": 0.3142,
    "log_trust": -1.659,
    "log_slowest": -3.567,
    "above_chance": 0.2076,
    "over_trust": 0.002755,
    "step0_certain": 0.2918,
    "step0_pending": 0.1905,
    "log_budget": 0.2677,
    "log_pace": 0.194,
}
SCALES = {
    "level": 1.451,
    "progress": 0.264,
    "log_trust": 1.005,
    "log_slowest": 2.202,
    "above_chance": 1.201,
    "over_trust": 0.01972,
    "step0_certain": 0.4546,
    "step0_pending": 0.3927,
    "log_budget": 0.2103,
    "log_pace": 0.632,
}
COEFFICIENTS = {
    "level": 3.5,
    "progress": -1.683,
    "log_trust": 0.4273,
    "log_slowest": -0.2427,
    "above_chance": -2.74,
    "over_trust": 0.1674,
    "step0_certain": 2.316,
    "step0_pending": 0.09555,
    "log_budget": -0.336,
    "log_pace": 1.454,
}
INTERCEPT = -1.325
#: The risk at which a run is judged failing: the lowest at which the
#: training runs' precision is at least 0.97 (a false "failing" can stop a
#: good run), overall and in each architecture family of the grids (since
#: the fifteenth fit).
RISK_THRESHOLD = 0.8482
