"""The demo: data, models, and `keras-initdiag demo --quick` end to end."""

import contextlib
import io
import os

import numpy as np
import pytest

from keras_initdiag import Flag
from keras_initdiag.cli import demo, main
from keras_initdiag.diagnostics import rules
from keras_initdiag.tensorboard import read_reports

RUN = ("zeros", "he")


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """`keras-initdiag demo --quick` on two regimes; (exit code, stdout, logdir)."""
    logdir = tmp_path_factory.mktemp("demo") / "runs"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(
            ["demo", "--quick", "--logdir", str(logdir), "--regimes", ",".join(RUN)]
        )
    return code, out.getvalue(), logdir


def test_demo_prints_progress_table_and_tensorboard_command(quick_demo):
    code, out, logdir = quick_demo
    assert code == 0
    for i, regime in enumerate(RUN, start=1):
        assert f"[{i}/{len(RUN)}] {regime:<15} started" in out
        assert f"[{i}/{len(RUN)}] {regime:<15} done in" in out
    table = out.split("flags at step 0")[1]
    for regime in RUN:
        assert f"\n{regime} " in table
    assert out.rstrip().splitlines()[-1].strip() == f"tensorboard --logdir {logdir}"
    dashboard = out.rstrip().splitlines()[-3]
    assert dashboard.startswith('Dashboard: the "initdiag" tab of TensorBoard')
    assert "http://localhost:6006/#keras_initdiag" in dashboard


def test_demo_writes_runs_and_summary_png(quick_demo):
    _, _, logdir = quick_demo
    for regime in RUN:
        events = os.listdir(logdir / regime / "initdiag")
        assert any("tfevents" in name for name in events), regime
    png = logdir / "summary.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_flags_zeros_symmetry_and_he_healthy(quick_demo):
    _, _, logdir = quick_demo
    zeros = read_reports(logdir / "zeros" / "initdiag")
    assert zeros[0].step == 0
    assert "symmetry" in {flag.kind for flag in zeros[0].flags}
    reports = read_reports(logdir / "he" / "initdiag")
    assert len(reports) == 3  # Step 0, after the first updates, after the epoch.
    kinds = {
        flag.kind
        for report in reports
        for flag in report.flags
        if not rules.is_advisory(flag)
    }
    # Healthy means no flag but advisory ones: dead units included (a ReLU
    # layer of 16 units under He has a few dead ones, far below the flag).
    assert kinds == set(), kinds


@pytest.mark.slow
def test_demo_tells_the_truth_flagged_regimes_train_worse_than_he(tmp_path):
    # The demo's own setting (20 ReLU layers, SGD with momentum, 3 epochs):
    # what the flags at step 0 say is what training then does.
    results = {
        r.regime: r
        for r in demo.run_demo(
            str(tmp_path),
            regimes=["small_random", "xavier", "lecun", "he", "he_whitening"],
            out=io.StringIO(),
        )
    }
    chance = np.log(demo.DemoConfig().classes)

    def serious(result):
        return {f.kind for f in result.initial_flags} - set(demo.ADVISORY)

    for regime in ("small_random", "xavier", "lecun"):
        assert "vanishing" in serious(results[regime]), regime
        # Stalled: within 2% of the chance level after three epochs.
        assert results[regime].loss > 0.98 * chance, results[regime].losses
    for regime in ("he", "he_whitening"):
        assert serious(results[regime]) == set(), regime
        assert results[regime].loss < 0.92 * chance, results[regime].losses
        assert results[regime].losses[-1] < results[regime].losses[0]
    assert results["he"].loss < results["xavier"].loss - 0.1
    # The early verdict (step 32 of 96) agrees with what training then did.
    for regime in ("small_random", "xavier", "lecun"):
        assert results[regime].verdict.failing, regime
    for regime in ("he", "he_whitening"):
        assert not results[regime].verdict.failing, regime
    # Decorrelated inputs train fastest.
    assert results["he_whitening"].loss < results["he"].loss


def test_make_data_is_elongated_correlated_and_seeded():
    x, y = demo.make_data(2000, features=16, classes=4, seed=0)
    assert x.shape == (2000, 16) and x.dtype == np.float32
    assert y.shape == (2000,) and set(np.unique(y)) == {0, 1, 2, 3}
    scales = x.std(axis=0)
    assert 8 < scales.max() / scales.min() < 12
    assert 0.8 < float(np.mean(x**2)) < 1.25
    eigenvalues = np.linalg.eigvalsh(np.cov(x, rowvar=False))
    assert eigenvalues.max() / eigenvalues.min() > 1e3
    correlation = np.corrcoef(x, rowvar=False)
    assert correlation[np.triu_indices(16, 1)].min() > 0.8
    np.testing.assert_array_equal(x, demo.make_data(2000, seed=0)[0])


@pytest.mark.parametrize("regime", demo.REGIMES)
def test_build_model_uses_the_regime(regime):
    config = demo.DemoConfig(depth=3, width=8)
    model = demo.build_model(regime, config)
    hidden = [layer for layer in model.layers if layer.name.startswith("dense_")]
    assert len(hidden) == 3
    kernels = [layer.kernel.numpy() for layer in hidden]
    if regime == "zeros":
        assert all(not k.any() for k in kernels)
    else:
        assert not np.array_equal(kernels[1], kernels[2])  # One seed per layer.
    if regime == "large_random":
        assert kernels[1].std() > 0.5
    if regime == "small_random":
        assert kernels[1].std() < 0.05


def test_whitening_regime_puts_an_adapted_zca_layer_first():
    config = demo.DemoConfig(depth=2, width=8)
    x, _ = demo.make_data(256)
    model = demo.build_model("he_whitening", config, demo.make_whitening(x))
    whitening = model.layers[0]
    assert isinstance(whitening, demo.Whitening)
    white = np.asarray(whitening(x))
    np.testing.assert_allclose(np.cov(white, rowvar=False), np.eye(16), atol=0.05)


def test_lsuv_regime_rescales_before_training(tmp_path):
    x, y = demo.make_data(256)
    result = demo.run_regime("lsuv", x, y, demo.QUICK, str(tmp_path))
    plain = demo.build_model("lsuv", demo.QUICK)  # Orthogonal, not rescaled.
    first = result.reports[0]
    assert first.step == 0
    # LSUV rescaled each hidden kernel, so none keeps the orthogonal scale.
    for layer in plain.layers[:-1]:
        orthogonal = float(np.var(layer.kernel.numpy()))
        assert first.stats[layer.name]["weight_variance"] != pytest.approx(
            orthogonal, rel=0.05
        ), layer.name


def test_run_demo_rejects_unknown_regimes(tmp_path):
    with pytest.raises(ValueError, match="regimes"):
        demo.run_demo(str(tmp_path), regimes=["he", "bogus"])


def test_flag_summary_counts_and_marks_advisory():
    flags = [Flag("vanishing", "a", 0, 0.0, 1e-3, "m")] + [
        Flag("init_mismatch", n, 0, 0.0, 1.0, "m") for n in "bc"
    ]
    assert demo.flag_summary(flags) == "vanishing, init_mismatch* x2"
    assert demo.flag_summary([]) == "-"
    # After step 0, dead is advice (it did not predict failure mid-fit).
    later = [
        Flag("dead", "a", 40, 0.6, 0.5, "m"),
        Flag("symmetry", "b", 40, 1, 0.1, "m"),
    ]
    assert demo.flag_summary(later) == "dead*, symmetry"


def test_rerun_into_a_used_logdir_says_so(tmp_path):
    (tmp_path / "zeros" / "initdiag").mkdir(parents=True)
    out = io.StringIO()
    demo.run_demo(str(tmp_path), demo.QUICK, ["zeros"], out=out)
    text = out.getvalue()
    assert "already holds runs of zeros" in text
    assert "[1/1] zeros           done in" in text
    assert "tensorboard --logdir" in text
