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
#: sixteenth; 10,808 cases, their step-0 flags pending as `pending.waits`
#: says for each budget; scored on the seventeenth held-out grid, at 592
#: steps).
#:
#: Since the eleventh fit each feature is read within its 1st and 99th
#: percentile over the fitted cases, `LOWS` and `HIGHS` (`benchmarks/
#: verdict.py`'s `CLIP_QUANTILE`): `verdict.contributions` reads a value
#: outside them as the nearest one. `MEANS` and `SCALES`: each feature's
#: mean and standard deviation there, within those bounds; `COEFFICIENTS`:
#: those of the standardized features.
LOWS = {
    "level": -2.1027151,
    "progress": -0.021556666,
    "log_trust": -6.0890724,
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
    "progress": 0.83254825,
    "log_trust": 0.1766964,
    "log_slowest": -1.4569418,
    "above_chance": 10.0,
    "over_trust": 0.1766964,
    "step0_certain": 1.0,
    "step0_pending": 1.0,
    "log_budget": 0.47712125,
    "log_pace": 3.0621138,
}
MEANS = {
    "level": -0.3903,
    "progress": 0.3107,
    "log_trust": -1.655,
    "log_slowest": -3.57,
    "above_chance": 0.2005,
    "over_trust": 0.003128,
    "step0_certain": 0.2784,
    "step0_pending": 0.2154,
    "log_budget": 0.2591,
    "log_pace": 0.1934,
}
SCALES = {
    "level": 1.417,
    "progress": 0.2634,
    "log_trust": 1.019,
    "log_slowest": 2.213,
    "above_chance": 1.169,
    "over_trust": 0.02171,
    "step0_certain": 0.4482,
    "step0_pending": 0.4111,
    "log_budget": 0.2119,
    "log_pace": 0.6258,
}
COEFFICIENTS = {
    "level": 3.384,
    "progress": -1.442,
    "log_trust": 0.4411,
    "log_slowest": -0.3846,
    "above_chance": -2.742,
    "over_trust": 0.193,
    "step0_certain": 1.786,
    "step0_pending": 0.3184,
    "log_budget": -0.2876,
    "log_pace": 1.264,
}
INTERCEPT = -1.48
#: The risk at which a run is judged failing: the lowest at which the
#: training runs' precision is at least 0.97 (a false "failing" can stop a
#: good run).
RISK_THRESHOLD = 0.8032
