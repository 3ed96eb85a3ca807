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
#: and the scheduled ones also at 160, 320 and 480 steps; 6,104 cases,
#: their step-0 flags pending as `pending.waits` says for each budget;
#: scored on the tenth held-out grid, at 640 steps): each feature's mean
#: and standard deviation there, and the coefficients of the standardized
#: features.
MEANS = {
    "level": -0.2075,
    "progress": 0.2597,
    "log_trust": -1.705,
    "log_slowest": -3.5,
    "above_chance": 0.2369,
    "over_trust": 0.005273,
    "step0_certain": 0.277,
    "step0_pending": 0.1769,
    "log_budget": 0.2167,
    "log_pace": 0.2112,
}
SCALES = {
    "level": 1.451,
    "progress": 0.2329,
    "log_trust": 1.222,
    "log_slowest": 2.154,
    "above_chance": 1.283,
    "over_trust": 0.0478,
    "step0_certain": 0.4475,
    "step0_pending": 0.3816,
    "log_budget": 0.2149,
    "log_pace": 0.6932,
}
COEFFICIENTS = {
    "level": 3.228,
    "progress": -1.042,
    "log_trust": 0.369,
    "log_slowest": -0.5337,
    "above_chance": -2.876,
    "over_trust": 0.1619,
    "step0_certain": 2.016,
    "step0_pending": 0.3525,
    "log_budget": -0.6497,
    "log_pace": 1.126,
}
INTERCEPT = -1.085
#: The risk at which a run is judged failing: the lowest at which the
#: training runs' precision is at least 0.97 (a false "failing" can stop a
#: good run).
RISK_THRESHOLD = 0.7694
