"""Rules on literal numbers: no TensorFlow involved."""

import math

import pytest

from keras_initdiag.diagnostics.report import DiagnosticReport, LayerInfo
from keras_initdiag.diagnostics.rules import Thresholds, expected_variance, judge

NAN = math.nan


def make_report(variances, grad_rms=None, extra=None, info=None, loss=1.0):
    names = [f"d{i}" for i in range(len(variances))]
    grad_rms = grad_rms or [1.0] * len(variances)
    stats = {}
    for i, name in enumerate(names):
        stats[name] = {
            "activation_variance": variances[i],
            "activation_gradient_rms": grad_rms[i],
            "weight_variance": 0.01,
            "dead_fraction": 0.0,
            "saturation_fraction": NAN,
            "duplicate_unit_fraction": 0.0,
            "nonfinite_activations": 0.0,
            "nonfinite_weights": 0.0,
            "nonfinite_gradients": 0.0,
        }
        stats[name].update((extra or {}).get(name, {}))
    infos = {
        name: LayerInfo(name=name, class_name="Dense", weight_shape=(100, 100))
        for name in names
    }
    infos.update(info or {})
    return DiagnosticReport(step=0, layers=names, stats=stats, info=infos, loss=loss)


def kinds(report, thresholds=None):
    return [f.kind for f in judge(report, thresholds)]


def test_healthy_report_has_no_flags():
    assert kinds(make_report([1.0, 0.9, 1.1, 1.0])) == []


def test_vanishing_signal_names_the_layer_where_it_crosses():
    flags = judge(make_report([0.5**i for i in range(30)]))
    assert [f.kind for f in flags] == ["vanishing"]
    # 0.5**10 < 1e-3 <= 0.5**9: the ratio first drops below at d10.
    assert flags[0].layer == "d10"
    assert flags[0].value == pytest.approx(0.5**29)
    assert "0.5x per layer" in flags[0].message


def test_vanishing_gradient_alone_is_flagged():
    grads = [2.0 ** -(30 - i) for i in range(30)]  # small at the input end
    assert kinds(make_report([1.0] * 30, grad_rms=grads)) == ["vanishing"]


def test_exploding_signal_and_absolute_limit():
    assert kinds(make_report([10.0**i for i in range(5)])) == ["exploding"]
    report = make_report([1e13, 1e13])
    assert kinds(report) == ["exploding"]


def test_just_inside_thresholds_is_quiet():
    assert kinds(make_report([1.0, 1.01e-3])) == []
    assert kinds(make_report([1.0, 0.99e-3])) == ["vanishing"]
    assert kinds(make_report([1.0, 0.99e-3]), Thresholds(vanishing=1e-4)) == []


def test_output_layer_is_left_out_of_depth():
    info = {"d2": LayerInfo("d2", weight_shape=(100, 10), is_output=True)}
    assert kinds(make_report([1.0, 1.0, 1e-6], info=info)) == []


def test_zero_by_design_residual_branch_is_not_vanishing_or_dead():
    # d1 is the zero-initialized last layer of a residual branch: its output is
    # exactly zero and the gradient upstream of it too.
    extra = {
        "d1": {
            "activation_variance": 0.0,
            "weight_variance": 0.0,
            "dead_fraction": 1.0,
            "duplicate_unit_fraction": 1.0,
        },
        "d0": {"activation_gradient_rms": 0.0},
    }
    info = {"d1": LayerInfo("d1", weight_shape=(100, 100), feeds_residual=True)}
    assert kinds(make_report([1.0, 0.0, 1.0], extra=extra, info=info)) == []
    # The same zeros without the residual connection are a defect.
    assert sorted(kinds(make_report([1.0, 0.0, 1.0], extra=extra))) == [
        "dead",
        "symmetry",
    ]


def test_zero_gate_with_rank_one_weight_is_by_design():
    extra = {"d1": {"weight_variance": 0.0, "dead_fraction": 1.0}}
    info = {"d1": LayerInfo("d1", weight_shape=(1,))}
    assert kinds(make_report([1.0, 0.0, 1.0], extra=extra, info=info)) == []


def test_unit_rules():
    extra = {
        "d0": {"duplicate_unit_fraction": 1.0},
        "d1": {"dead_fraction": 0.75},
        "d2": {"saturation_fraction": 0.9},
    }
    flags = judge(make_report([1.0, 1.0, 1.0], extra=extra))
    assert [(f.kind, f.layer) for f in flags] == [
        ("symmetry", "d0"),
        ("dead", "d1"),
        ("saturation", "d2"),
    ]
    assert flags[1].value == 0.75 and flags[1].threshold == 0.5


def test_nonfinite_names_first_layer_in_forward_order():
    extra = {
        "d1": {"nonfinite_weights": 3.0, "activation_variance": NAN},
        "d2": {"nonfinite_activations": 100.0, "activation_variance": NAN},
    }
    flags = judge(make_report([1.0, 1.0, 1.0], extra=extra))
    assert [(f.kind, f.layer) for f in flags] == [("nonfinite", "d1")]
    assert "weights" in flags[0].message


def test_nonfinite_gradients_name_backward_origin():
    extra = {n: {"nonfinite_gradients": 1.0} for n in ("d0", "d1")}
    flags = judge(make_report([1.0, 1.0, 1.0], extra=extra))
    assert [(f.kind, f.layer) for f in flags] == [("nonfinite", "d1")]


def test_nonfinite_loss_is_flagged_at_output():
    flags = judge(make_report([1.0, 1.0], loss=math.inf))
    assert [(f.kind, f.layer) for f in flags] == [("nonfinite", "d1")]


def test_init_mismatch_only_while_weights_look_initialized():
    shape = (256, 256)
    he = LayerInfo(
        "d0",
        weight_shape=shape,
        activation="relu",
        initializer="xavier",
        recommended=("he",),
    )
    xavier_var = expected_variance("xavier", shape)
    report = make_report(
        [1.0], extra={"d0": {"weight_variance": xavier_var}}, info={"d0": he}
    )
    flags = judge(report)
    assert [f.kind for f in flags] == ["init_mismatch"]
    assert "He" in flags[0].message
    report.stats["d0"]["weight_variance"] = 2 / 256  # rescaled (e.g. by LSUV)
    assert kinds(report) == []


def test_expected_variance_closed_forms():
    assert expected_variance("he", (3, 3, 16, 32)) == pytest.approx(2 / 144)
    assert expected_variance("lecun", (100, 10)) == pytest.approx(1 / 100)
    assert expected_variance("xavier", (100, 300)) == pytest.approx(2 / 400)
    assert math.isnan(expected_variance("orthogonal", (3, 3)))


def test_shared_kernel_advisory():
    info = {"d1": LayerInfo("d1", weight_shape=(100, 100), same_kernel_as=("d0",))}
    flags = judge(make_report([1.0, 1.0], info=info))
    assert [(f.kind, f.layer) for f in flags] == [("symmetry", "d1")]
    assert "d0" in flags[0].message


@pytest.mark.parametrize(
    "kwargs",
    [
        {"vanishing": -1.0},
        {"vanishing": 2.0},
        {"exploding": 0.5},
        {"dead": 1.5},
        {"symmetry": 0},
        {"saturation": math.nan},
        {"mismatch_tolerance": 0.5},
    ],
)
def test_bad_thresholds(kwargs):
    name, value = next(iter(kwargs.items()))
    with pytest.raises(ValueError, match=name) as info:
        Thresholds(**kwargs)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("value", ["high", True, None])
def test_threshold_of_wrong_type(value):
    with pytest.raises(TypeError, match="dead") as info:
        Thresholds(dead=value)
    assert repr(value) in str(info.value)
