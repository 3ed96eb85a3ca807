"""Each example runs with small sizes and shows what its docstring says."""

import pytest
from helpers import load_script

from keras_initdiag.diagnostics.rules import ADVISORY


def _load(name):
    return load_script(f"examples/{name}.py")


def test_quickstart_flags_glorot_and_not_he(tmp_path, capsys):
    callbacks = _load("quickstart").main(
        samples=256, depth=16, width=64, epochs=1, log_dir=str(tmp_path)
    )
    glorot = {flag.kind for flag in callbacks["glorot_default"].reports[0].flags}
    he = {flag.kind for flag in callbacks["for_activation"].reports[0].flags}
    assert "vanishing" in glorot
    # The good initializer gets no flag at all (at width 32, 16 layers were
    # "deep for their width": 5 * 16 / 32 > finite_width = 2.5).
    assert he <= set(ADVISORY)
    assert (tmp_path / "for_activation" / "initdiag").is_dir()
    out = capsys.readouterr().out
    assert "glorot_default" in out and "tensorboard --logdir" in out


def test_compare_initializers_orders_the_regimes(capsys):
    example = _load("compare_initializers")
    relu = [case for case in example.CASES if case[0] == "relu"]
    reports = example.main(depth=6, width=16, samples=64, cases=relu)
    kinds = {key: {flag.kind for flag in r.flags} for key, r in reports.items()}
    assert "vanishing" in kinds[("relu", "SmallRandom(0.01)")]
    assert "exploding" in kinds[("relu", "SmallRandom(1.0)")]
    assert not kinds[("relu", "He")] & {"vanishing", "exploding"}
    assert "vanishing" not in kinds[("relu", "Orthogonal(gain=sqrt 2)")]
    assert "signal last/first" in capsys.readouterr().out


@pytest.mark.parametrize("size", [12])
def test_small_cnn_diagnoses_conv_layers(tmp_path, capsys, size):
    callback = _load("small_cnn").main(
        samples=128, size=size, epochs=1, log_dir=str(tmp_path)
    )
    first = callback.reports[0]
    assert first.step == 0 and len(callback.reports) == 2
    assert any(name.startswith("conv2d") for name in first.layers)
    assert not {flag.kind for flag in callback.flags} & {"vanishing", "exploding"}
    assert "Accuracy after 1 epoch" in capsys.readouterr().out
