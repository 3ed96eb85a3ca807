"""The early verdict's fitted model: numbers, written by a fit, not by hand.

`benchmarks/verdict.py fit` prints them; `tests/test_verdict.py` refits
on the committed grid records and checks that they are exactly these.
`keras_initdiag.diagnostics.verdict` reads them (and re-exports them), in
the order of its `FEATURES`.
"""

#: The fitted model (`benchmarks/verdict.py fit`: the calibration grid and
#: the first held-out grid at 160 steps, 1,064 runs; the fourth grid's 336
#: runs at 160, 320 and 480 steps; 2,072 cases, their step-0 flags pending
#: as `pending.waits` says for each budget; scored on the sixth held-out
#: grid, at 640 steps): each feature's mean and standard deviation there,
#: and the coefficients of the standardized features.
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
}
COEFFICIENTS = {
    "level": 3.437,
    "progress": -0.7949,
    "log_trust": 0.8365,
    "log_slowest": -1.636,
    "above_chance": -0.8369,
    "over_trust": 0.2191,
    "step0_certain": 1.777,
    "step0_pending": 0.3249,
    "log_budget": -0.4031,
}
INTERCEPT = -0.4778
#: The risk at which a run is judged failing: the lowest at which the
#: training runs' precision is at least 0.97 (a false "failing" can stop a
#: good run).
RISK_THRESHOLD = 0.7121
