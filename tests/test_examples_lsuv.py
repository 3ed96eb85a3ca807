from helpers import load_script


def test_example_runs_and_lsuv_removes_vanishing(capsys):
    example = load_script("examples/lsuv_deep_net.py")
    results = example.main(depth=12, width=32, samples=128)
    assert "vanishing" in results["flags_before"]
    assert "vanishing" not in results["flags_after"]
    assert results["result"].converged
    assert results["ratio_before"] < 1e-3
    assert 0.1 < results["ratio_after"] < 10
    out = capsys.readouterr().out
    assert "flags before LSUV" in out and "flags after LSUV" in out
    assert "var_before" in out
