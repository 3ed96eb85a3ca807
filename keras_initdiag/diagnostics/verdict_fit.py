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
#: and more (`verdict.loss_steps`); 6,776 cases, their step-0 flags pending
#: as `pending.waits` says for each budget; scored on the eleventh held-out
#: grid, at 608 steps): each feature's mean and standard deviation there,
#: and the coefficients of the standardized features.
MEANS = {
    "level": -0.3636,
    "progress": 0.322,
    "log_trust": -1.697,
    "log_slowest": -3.513,
    "above_chance": 0.2279,
    "over_trust": 0.004905,
    "step0_certain": 0.2774,
    "step0_pending": 0.1806,
    "log_budget": 0.2264,
    "log_pace": 0.1996,
}
SCALES = {
    "level": 1.524,
    "progress": 0.2691,
    "log_trust": 1.195,
    "log_slowest": 2.158,
    "above_chance": 1.285,
    "over_trust": 0.04558,
    "step0_certain": 0.4477,
    "step0_pending": 0.3847,
    "log_budget": 0.2149,
    "log_pace": 0.6805,
}
COEFFICIENTS = {
    "level": 3.436,
    "progress": -1.28,
    "log_trust": 0.4233,
    "log_slowest": -0.3855,
    "above_chance": -2.765,
    "over_trust": 0.124,
    "step0_certain": 1.827,
    "step0_pending": 0.2648,
    "log_budget": -0.2308,
    "log_pace": 1.22,
}
INTERCEPT = -1.362
#: The risk at which a run is judged failing: the lowest at which the
#: training runs' precision is at least 0.97 (a false "failing" can stop a
#: good run).
RISK_THRESHOLD = 0.7107
