"""Keeps `benchmarks/update_ratios.py` honest: real first steps of grid nets."""

import math

from helpers import load_script

from keras_initdiag.diagnostics.rules import Thresholds


def test_measures_what_the_committed_results_hold(tmp_path, capsys):
    ur = load_script("benchmarks/update_ratios.py")
    out = tmp_path / "ratios.jsonl"
    # A healthy net and a BN net with N(0, 0.01^2) kernels under SGD.
    keys = ["mlp-d2-relu-he-sgd-s0", "mlp_bn-d2-relu-small-sgd-s0"]
    assert ur.measure(ur.tr.DEFAULT_OUT, out, only=keys) == 2
    fresh = {r["key"]: r for r in ur.tr.load_runs(out)}
    committed = {r["key"]: r for r in ur.tr.load_runs(ur.OUT) if r["key"] in keys}
    assert sorted(fresh) == sorted(committed) == sorted(keys)
    for key in keys:
        low, high = ur._extremes(fresh[key])
        assert math.isclose(low, ur._extremes(committed[key])[0], rel_tol=1e-3)
        assert math.isclose(high, ur._extremes(committed[key])[1], rel_tol=1e-3)
    # He on a 2-layer net: near the rule of thumb (log10 about -3). Small
    # kernels behind BatchNorm: BN undoes their scale, so each SGD step moves
    # them far more relative to themselves (the effective learning rate).
    he = fresh[keys[0]]["update_ratios"]
    small = fresh[keys[1]]["update_ratios"]
    assert 1e-4 < he["dense_1"] < 1e-2 and 1e-4 < he["dense_2"] < 1e-2
    assert small["dense_1"] > 10 * he["dense_1"]
    assert ur.measure(ur.tr.DEFAULT_OUT, out, only=keys) == 0  # resumable
    ur.judge(ur.tr.DEFAULT_OUT, ur.tr.DEFAULT_REPORTS, ur.OUT)
    printed = capsys.readouterr().out
    assert f"{len(ur.tr.load_runs(ur.OUT))} networks measured" in printed
    # What the default thresholds were chosen for: on the grid they flag
    # networks that failed to train and none that trained.
    defaults = Thresholds()
    start = f"| {defaults.update_ratio_low:g} | {defaults.update_ratio_high:g} |"
    row = next(line for line in printed.splitlines() if line.startswith(start))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    flagged_and_failed, flagged_but_trained = int(cells[2]), int(cells[3])
    assert flagged_but_trained == 0 < flagged_and_failed
