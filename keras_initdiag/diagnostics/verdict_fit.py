"""The early verdict's fitted model: numbers, written by a fit, not by hand.

`benchmarks/verdict.py fit` prints them; `tests/test_verdict.py` refits
on the committed grid records and checks that they are exactly these.
`keras_initdiag.diagnostics.verdict` reads them (and re-exports them), in
the order of its `FEATURES`.
"""

#: The fitted model (`benchmarks/verdict.py fit`: the calibration grid and
#: the first held-out grid at 160 steps, 1,064 runs; the fourth grid's 336
#: runs at 160, 320 and 480 steps; 2,072 cases, their step-0 flags pending
#: as `pending.waits` says for each budget; since `log_pace`, scored on
#: the ninth held-out grid, at 560 steps): each feature's mean and standard
#: deviation there, and the coefficients of the standardized features.
MEANS = {
    "level": -0.1973,
    "progress": 0.2839,
    "log_trust": -1.665,
    "log_slowest": -3.429,
    "above_chance": 0.2105,
    "over_trust": 0.007452,
    "step0_certain": 0.3033,
    "step0_pending": 0.1819,
    "log_budget": 0.1275,
    "log_pace": 0.2067,
}
SCALES = {
    "level": 1.349,
    "progress": 0.2465,
    "log_trust": 1.239,
    "log_slowest": 2.149,
    "above_chance": 1.192,
    "over_trust": 0.05517,
    "step0_certain": 0.4597,
    "step0_pending": 0.3857,
    "log_budget": 0.1894,
    "log_pace": 0.6891,
}
COEFFICIENTS = {
    "level": 1.959,
    "progress": -0.9488,
    "log_trust": 0.9329,
    "log_slowest": -1.593,
    "above_chance": -1.885,
    "over_trust": 0.2224,
    "step0_certain": 2.018,
    "step0_pending": 0.3678,
    "log_budget": -0.5085,
    "log_pace": 1.364,
}
INTERCEPT = -0.5173
#: The risk at which a run is judged failing: the lowest at which the
#: training runs' precision is at least 0.97 (a false "failing" can stop a
#: good run).
RISK_THRESHOLD = 0.7567
