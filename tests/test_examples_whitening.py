import importlib.util
import pathlib

EXAMPLE = pathlib.Path(__file__).parents[1] / "examples" / "whitening_inputs.py"


def test_example_runs_and_whitening_wins(capsys):
    spec = importlib.util.spec_from_file_location("whitening_inputs", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main(samples=256, epochs=10)
    assert results["condition_number"] > 100
    assert results["whitened_condition_number"] < 1.001
    assert results["loss_whitened"] < 0.1 * results["loss_raw"]
    assert "condition number before" in capsys.readouterr().out
