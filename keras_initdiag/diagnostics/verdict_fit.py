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
#: and more (`verdict.loss_steps`); since the ninth fit also the eleventh;
#: 7,448 cases, their step-0 flags pending as `pending.waits` says for each
#: budget; scored on the twelfth held-out grid, at 704 steps): each
#: feature's mean and standard deviation there, and the coefficients of the
#: standardized features.
MEANS = {
    "level": -0.3742,
    "progress": 0.3176,
    "log_trust": -1.705,
    "log_slowest": -3.536,
    "above_chance": 0.2143,
    "over_trust": 0.004956,
    "step0_certain": 0.2783,
    "step0_pending": 0.1932,
    "log_budget": 0.2343,
    "log_pace": 0.2007,
}
SCALES = {
    "level": 1.473,
    "progress": 0.269,
    "log_trust": 1.249,
    "log_slowest": 2.189,
    "above_chance": 1.23,
    "over_trust": 0.04454,
    "step0_certain": 0.4482,
    "step0_pending": 0.3948,
    "log_budget": 0.2147,
    "log_pace": 0.6885,
}
COEFFICIENTS = {
    "level": 3.383,
    "progress": -1.321,
    "log_trust": 0.3816,
    "log_slowest": -0.2945,
    "above_chance": -2.649,
    "over_trust": 0.1251,
    "step0_certain": 1.837,
    "step0_pending": 0.2648,
    "log_budget": -0.2301,
    "log_pace": 1.215,
}
INTERCEPT = -1.339
#: The risk at which a run is judged failing: the lowest at which the
#: training runs' precision is at least 0.97 (a false "failing" can stop a
#: good run).
RISK_THRESHOLD = 0.7301
