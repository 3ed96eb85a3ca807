from helpers import load_script


def test_example_runs_and_whitening_wins(capsys):
    example = load_script("examples/whitening_inputs.py")
    results = example.main(samples=256, epochs=10)
    assert results["condition_number"] > 100
    assert results["whitened_condition_number"] < 1.001
    assert results["loss_whitened"] < 0.1 * results["loss_raw"]
    assert "condition number before" in capsys.readouterr().out
