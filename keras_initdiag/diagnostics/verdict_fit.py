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
#: since the tenth the twelfth; 8,120 cases, their step-0 flags pending as
#: `pending.waits` says for each budget; scored on the thirteenth held-out
#: grid, at 672 steps): each
#: feature's mean and standard deviation there, and the coefficients of the
#: standardized features.
MEANS = {
    "level": -0.3873,
    "progress": 0.3204,
    "log_trust": -1.713,
    "log_slowest": -3.536,
    "above_chance": 0.2171,
    "over_trust": 0.004545,
    "step0_certain": 0.2756,
    "step0_pending": 0.1886,
    "log_budget": 0.2409,
    "log_pace": 0.1984,
}
SCALES = {
    "level": 1.489,
    "progress": 0.2685,
    "log_trust": 1.251,
    "log_slowest": 2.188,
    "above_chance": 1.241,
    "over_trust": 0.04267,
    "step0_certain": 0.4468,
    "step0_pending": 0.3912,
    "log_budget": 0.2142,
    "log_pace": 0.6822,
}
COEFFICIENTS = {
    "level": 3.44,
    "progress": -1.331,
    "log_trust": 0.3737,
    "log_slowest": -0.2719,
    "above_chance": -2.713,
    "over_trust": 0.1205,
    "step0_certain": 1.879,
    "step0_pending": 0.2757,
    "log_budget": -0.2332,
    "log_pace": 1.205,
}
INTERCEPT = -1.419
#: The risk at which a run is judged failing: the lowest at which the
#: training runs' precision is at least 0.97 (a false "failing" can stop a
#: good run).
RISK_THRESHOLD = 0.7148
