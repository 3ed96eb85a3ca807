"""Rules on literal numbers: no TensorFlow involved.

Reports are built by hand as small graphs: every node names the nodes it
reads (`LayerInfo.inputs`), as the engine records them.
"""

import dataclasses
import math

import pytest

from keras_initdiag.diagnostics import signal
from keras_initdiag.diagnostics.report import DiagnosticReport, Flag, LayerInfo
from keras_initdiag.diagnostics.rules import Thresholds, expected_variance, judge
from keras_initdiag.diagnostics.rules.units import chance_dead

NAN = math.nan
WIDTH = 100


def node(name, inputs=(), kind="layer", weights=True, **info):
    """A LayerInfo; `weights=False` for parameter-free layers."""
    shape = (WIDTH, WIDTH) if weights and kind == "layer" else ()
    info.setdefault("class_name", "Dense" if shape else "Op")
    info.setdefault("trainable", bool(shape))
    return LayerInfo(
        name,
        weight_shape=info.pop("weight_shape", shape),
        kind=kind,
        inputs=tuple(inputs),
        size=info.pop("size", float(WIDTH)),
        **info,
    )


def stats(m2=1.0, grad_rms=None, **extra):
    """Statistics with second moment `m2` (zero mean).

    The gradient RMS defaults to `m2 ** -0.5`, what a chain of linear layers
    gives: the gradient energy `E[x^2] E||g||^2` stays constant.
    """
    if grad_rms is None:
        grad_rms = m2**-0.5 if m2 > 0 else 1.0
    values = {
        "activation_mean": 0.0,
        "activation_variance": m2,
        "activation_gradient_rms": grad_rms,
        "weight_variance": 0.01,
        "dead_fraction": 0.0,
        "saturation_fraction": NAN,
        "duplicate_unit_fraction": 0.0,
        "nonfinite_activations": 0.0,
        "nonfinite_weights": 0.0,
        "nonfinite_gradients": 0.0,
    }
    values.update(extra)
    return values


def report_of(nodes, values, loss=1.0, optimizer=""):
    return DiagnosticReport(
        step=0,
        layers=[n.name for n in nodes],
        stats={n.name: values[n.name] for n in nodes},
        info={n.name: n for n in nodes},
        loss=loss,
        optimizer=optimizer,
    )


def chain(moments, grads=None, extra=None, info=None, loss=1.0):
    """An input `x` then Dense layers d0, d1, ... each reading the previous."""
    grads = grads or [None] * len(moments)
    nodes = [node("x", kind="input")]
    values = {"x": stats(1.0)}
    for i, m2 in enumerate(moments):
        name = f"d{i}"
        nodes.append((info or {}).get(name) or node(name, [nodes[-1].name]))
        values[name] = stats(m2, grads[i], **(extra or {}).get(name, {}))
    return report_of(nodes, values, loss)


def kinds(report, thresholds=None):
    return [f.kind for f in judge(report, thresholds)]


def test_healthy_chain_has_no_flags():
    assert kinds(chain([1.0, 0.9, 1.1, 1.0])) == []


def test_vanishing_chain_names_the_worst_node_and_the_per_layer_factor():
    flags = judge(chain([0.5 ** (i + 1) for i in range(30)]))
    assert [f.kind for f in flags] == ["vanishing"]
    assert flags[0].layer == "d29"
    assert flags[0].value == pytest.approx(0.5**30)
    assert "0.5x per layer" in flags[0].message
    # Every layer halves it: no single culprit, the factor is spread.
    assert "Each of the 30 layers with weights" in flags[0].message
    assert "(from 'd0' to 'd29')" in flags[0].message


def test_a_single_bad_layer_is_named_as_the_culprit():
    moments = [1.0] * 10 + [1e-5] * 10
    flags = judge(chain(moments))
    assert [f.kind for f in flags] == ["vanishing"]
    assert "'d10' (1e-05x)" in flags[0].message


def test_exploding_signal_and_absolute_limit():
    assert kinds(chain([10.0**i for i in range(1, 6)])) == ["exploding"]
    report = chain([1.0, 1.0])
    report.stats["d1"]["activation_variance"] = 1e13
    report.stats["d0"]["activation_variance"] = 1e13
    report.stats["x"]["activation_variance"] = 1e13
    assert kinds(report) == ["exploding"]


def test_just_inside_thresholds_is_quiet():
    assert kinds(chain([1.0, 1.01e-4])) == []
    assert kinds(chain([1.0, 0.99e-4])) == ["vanishing"]
    assert kinds(chain([1.0, 0.99e-4]), Thresholds(vanishing=1e-5)) == []


@pytest.mark.parametrize(
    "optimizer, flagged",
    [("SGD", True), ("", True), ("MyOptimizer", True), ("Adam", False)],
)
def test_vanishing_threshold_follows_the_optimizer(optimizer, flagged):
    report = chain([1.0, 1e-6])
    report.optimizer = optimizer
    flags = judge(report)
    assert [f.kind for f in flags] == (["vanishing"] if flagged else [])
    if flagged:
        assert flags[0].threshold == Thresholds().vanishing
        assert f"with {optimizer or 'SGD-like updates'})" in flags[0].message
    report = chain([1.0, 0.99e-8])
    report.optimizer = "Adam"
    (flag,) = judge(report)
    assert flag.threshold == Thresholds().vanishing_adaptive
    assert "with Adam, an adaptive optimizer" in flag.message


def test_finite_width_threshold_follows_the_optimizer():
    report = chain([1.0, 1.0])
    report.stats["d1"]["predicted_log_spread"] = math.sqrt(3.5)
    assert kinds(report) == ["finite_width"]
    report.optimizer = "AdamW"
    assert kinds(report) == []


@pytest.mark.parametrize("gate_spread, flagged", [(0.1, False), (2.5, True)])
def test_finite_width_judges_the_spread_a_node_passes_on(gate_spread, flagged):
    # Squeeze-and-excite: a 4-unit layer spreads its own output (3.3), but
    # the sigmoid gate it drives squashes that away (0.1): nothing reaches
    # the signal. A gate that kept it (2.5, carried on to the end) would.
    nodes = [node("x", kind="input"), node("d0", ["x"]), node("narrow", ["d0"])]
    nodes += [node("gate", ["narrow"])]
    nodes += [node("mul", ["d0", "gate"], kind="merge", merge="product")]
    nodes += [node("d1", ["mul"]), node("head", ["d1"], is_output=True)]
    spreads = {"x": 0.0, "d0": 0.5, "narrow": 3.3, "gate": gate_spread}
    spreads["mul"] = spreads["d1"] = spreads["head"] = 0.5 + gate_spread
    values = {
        n.name: stats(predicted_log_spread=math.sqrt(spreads[n.name])) for n in nodes
    }
    flags = judge(report_of(nodes, values))
    assert [f.kind for f in flags] == (["finite_width"] if flagged else [])
    if flagged:
        assert flags[0].value == pytest.approx(3.0)


def test_output_layer_is_left_out_of_the_forward_scale():
    info = {"d2": node("d2", ["d1"], is_output=True)}
    assert kinds(chain([1.0, 1.0, 1e-6], info=info)) == []


def test_normalization_resets_the_forward_scale():
    nodes = [node("x", kind="input")]
    values = {"x": stats()}
    for block in range(4):
        for i in range(5):  # 0.25 ** 5 ~ 1e-3 per segment: never below.
            name = f"b{block}d{i}"
            nodes.append(node(name, [nodes[-1].name]))
            values[name] = stats(0.25 ** (i + 1))
        nodes.append(node(f"b{block}bn", [nodes[-1].name], kind="norm"))
        values[f"b{block}bn"] = stats(1.0)
    assert kinds(report_of(nodes, values)) == []
    # Without the normalization layers the same gains compound to 1e-12.
    plain = chain([0.25 ** (i + 1) for i in range(20)])
    assert kinds(plain) == ["vanishing"]


def test_layer_read_only_by_a_norm_is_not_judged():
    # A depthwise layer whose tiny output is normalized right away.
    nodes = [
        node("x", kind="input"),
        node("dw", ["x"]),
        node("bn", ["dw"], kind="norm"),
        node("relu", ["bn"], weights=False),
    ]
    values = {"x": stats(), "dw": stats(1e-5), "bn": stats(1.0), "relu": stats(0.5)}
    assert kinds(report_of(nodes, values)) == []


def residual(blocks, branch_m2, merge="sum", norm=False):
    """A residual stream: h_{k+1} = h_k + f(h_k), f one Dense layer."""
    nodes = [node("x", kind="input")]
    values = {"x": stats()}
    stream, m2 = "x", 1.0
    for k in range(blocks):
        branch = f"f{k}"
        nodes.append(node(branch, [stream]))
        b = branch_m2(m2)
        values[branch] = stats(b)
        add = f"add{k}"
        nodes.append(node(add, [stream, branch], kind="merge", merge=merge))
        m2 = m2 + b
        values[add] = stats(m2)
        stream = add
    return report_of(nodes, values)


def test_unnormalized_residual_stream_that_doubles_explodes():
    # He-initialized branches without normalization: Var doubles per block.
    flags = judge(residual(12, lambda m2: m2))
    assert [f.kind for f in flags] == ["exploding"]
    assert flags[0].value == pytest.approx(2.0**12)


def test_normalized_residual_stream_grows_linearly_and_is_quiet():
    # Each branch ends in a normalization: adds 1 per block (Brock et al.).
    assert kinds(residual(50, lambda m2: 1.0)) == []


def test_small_by_design_branch_is_not_vanishing():
    # LayerScale 1e-6: the branch is tiny relative to the stream.
    assert kinds(residual(20, lambda m2: 1e-12 * m2)) == []


@pytest.mark.parametrize("passes_through", [True, False])
def test_small_branch_seen_through_an_identity_before_the_merge(passes_through):
    # ConvNeXt: norm -> dense -> LayerScale(1e-6) -> Activation("linear") -> Add.
    # A ReLU between the gate and the merge is not a pass-through: judged.
    activation = "linear" if passes_through else "relu"
    nodes = [node("x", kind="input"), node("norm", ["x"], kind="norm")]
    nodes += [node("dense", ["norm"]), node("scale", ["dense"])]
    nodes += [node("identity", ["scale"], weights=False, activation=activation)]
    nodes += [node("add", ["x", "identity"], kind="merge", merge="sum")]
    nodes[-2] = dataclasses.replace(nodes[-2], propagation="activation")
    values = {n.name: stats() for n in nodes}
    values["scale"] = values["identity"] = stats(1e-12)
    values["add"] = stats(1.0 + 1e-12)
    assert ("vanishing" in kinds(report_of(nodes, values))) != passes_through


def test_two_inputs_of_different_scales_are_not_compared():
    nodes = [
        node("a", kind="input"),
        node("b", kind="input"),
        node("da", ["a"]),
        node("db", ["b"]),
        node("add", ["da", "db"], kind="merge", merge="sum"),
        node("out", ["add"]),
    ]
    values = {
        "a": stats(1.0),
        "b": stats(1e8),
        "da": stats(1.0),
        "db": stats(1e8),
        "add": stats(1e8),
        "out": stats(1e8),
    }
    assert kinds(report_of(nodes, values)) == []


def test_backward_energy_compounds_through_a_plain_chain():
    # The forward scale is steady; the gradient grows 1.21x per layer going
    # backward (Yang et al.): the energy grows by 1.21**2 per layer.
    depth = 50
    grads = [1.21 ** (depth - 1 - i) for i in range(depth)]
    flags = judge(chain([1.0] * depth, grads=grads))
    assert [f.kind for f in flags] == ["exploding"]
    assert flags[0].layer == "d0"
    assert flags[0].value == pytest.approx(1.21 ** (2 * (depth - 1)), rel=1e-6)
    assert "gradient" in flags[0].message


@pytest.mark.parametrize("normalized", [False, True])
def test_gradient_threshold_depends_on_normalization(normalized):
    # Energy growth 1.106 per layer over 50 layers (~140x): a tanh MLP with
    # He's gain, which failed on the grid; BN nets train through 6e2.
    depth = 50
    grads = [1.106 ** ((depth - 1 - i) / 2) for i in range(depth)]
    info = {}
    if normalized:  # A norm at the end leaves the backward energy as it is.
        info["d49"] = node("d49", ["d48"], kind="norm")
    flags = judge(chain([1.0] * depth, grads=grads, info=info))
    if normalized:
        assert flags == []
        return
    (flag,) = flags
    assert flag.kind == "exploding" and flag.threshold == 1e2
    assert flag.value == pytest.approx(1.106 ** (depth - 1), rel=1e-6)
    assert "threshold 100 without normalization layers" in flag.message


def test_the_output_layers_own_backward_step_is_not_depth():
    # A 1-unit regression head on a collapsed representation: the energy
    # jumps 500x across the head alone (no mean-field law there), then stays
    # flat. Depth compounding starts below the head.
    depth = 10
    grads = [500**0.5] * (depth - 1) + [1.0]
    info = {f"d{depth - 1}": node(f"d{depth - 1}", [f"d{depth - 2}"], is_output=True)}
    assert judge(chain([1.0] * depth, grads=grads, info=info)) == []


def test_backward_energy_is_judged_only_where_it_trains_a_weight():
    # A frozen first half: the gradient that reaches it trains nothing.
    depth = 50
    grads = [1.21 ** (depth - 1 - i) for i in range(depth)]
    frozen = {
        f"d{i}": node(f"d{i}", [f"d{i - 1}" if i else "x"], trainable=False)
        for i in range(25)
    }
    flags = judge(chain([1.0] * depth, grads=grads, info=frozen))
    assert [(f.kind, f.layer) for f in flags] == [("exploding", "d25")]
    assert flags[0].value == pytest.approx(1.21 ** (2 * (depth - 1 - 25)), rel=1e-6)


def test_backward_energy_is_unchanged_by_a_linear_rescaling():
    # Each layer multiplies activations by a = 2 ** -0.5, so the second
    # moment halves forward and the gradient shrinks by a going backward:
    # E[x^2] E||g||^2 is constant, nothing to flag backward, while the
    # forward scale vanishes.
    depth = 30
    moments = [0.5 ** (i + 1) for i in range(depth)]
    grads = [2.0 ** (-(depth - 1 - i) / 2) for i in range(depth)]
    report = chain(moments, grads=grads)
    report.stats["x"]["activation_gradient_rms"] = 2.0 ** (-depth / 2)
    backward = signal.backward(report)
    assert backward.scale["d0"] == pytest.approx(0.0, abs=1e-9)
    assert kinds(report) == ["vanishing"]


def test_backward_energy_restarts_at_merges():
    report = residual(30, lambda m2: 1.0)
    for k in range(30):
        report.stats[f"add{k}"]["activation_gradient_rms"] = 1.5 ** (30 - k)
        report.stats[f"f{k}"]["activation_gradient_rms"] = 1.5 ** (30 - k)
    assert "exploding" not in kinds(report)


def test_zero_by_design_residual_branch_is_not_vanishing_or_dead():
    extra = {
        "d1": {
            "activation_variance": 0.0,
            "weight_variance": 0.0,
            "dead_fraction": 1.0,
            "duplicate_unit_fraction": 1.0,
        },
        "d0": {"activation_gradient_rms": 0.0},
    }
    info = {"d1": node("d1", ["d0"], feeds_residual=True)}
    assert kinds(chain([1.0, 0.0, 1.0], extra=extra, info=info)) == []
    # The same zeros without the residual connection are a defect.
    assert sorted(kinds(chain([1.0, 0.0, 1.0], extra=extra))) == ["dead", "symmetry"]


def _zero_head(kernel_gradient, below=1.0, softmax=False):
    """d0 -> d1 -> d2, a zero-initialized output layer (+ a softmax node)."""
    zero = {
        "activation_variance": 0.0,
        "weight_variance": 0.0,
        "dead_fraction": 1.0,
        "duplicate_unit_fraction": 1.0,
        "kernel_gradient_norm": kernel_gradient,
    }
    extra = {"d2": zero, "d0": {"activation_gradient_rms": 0.0}}
    extra["d1"] = {"activation_gradient_rms": 0.0}
    info = {"d2": node("d2", ["d1"], is_output=not softmax)}
    report = chain([1.0, below, 0.0], extra=extra, info=info)
    if softmax:
        # Softmax of zeros: a constant 1/C, every unit alike.
        out = node("softmax", ["d2"], weights=False, is_output=True)
        report.layers.append("softmax")
        report.info["softmax"] = out
        report.stats["softmax"] = stats(
            0.0, activation_mean=0.1, dead_fraction=1.0, duplicate_unit_fraction=1.0
        )
    return report


@pytest.mark.parametrize("softmax", [False, True])
def test_zero_head_with_a_kernel_gradient_is_by_design(softmax):
    # Fixup, the muP readout, "zero-init the last layer": the output units
    # are told apart by their targets, and the kernel gets a gradient.
    assert kinds(_zero_head(0.3, softmax=softmax)) == []
    # Without targets (no gradient measured), a live input is the evidence:
    # the kernel's gradient x^T dL/dy is not zero.
    assert kinds(_zero_head(NAN, softmax=softmax)) == []


def test_zero_head_without_a_kernel_gradient_is_still_a_defect():
    # Its kernel gets no gradient: it stays zero (e.g. its input is zero).
    assert sorted(kinds(_zero_head(0.0))) == ["dead", "symmetry"]
    extra = {"activation_variance": 0.0, "weight_variance": 0.0}
    report = _zero_head(NAN, below=0.0)
    report.stats["d1"].update(extra, dead_fraction=1.0, duplicate_unit_fraction=1.0)
    assert ("symmetry", "d1") in [(f.kind, f.layer) for f in judge(report)]
    assert ("symmetry", "d2") in [(f.kind, f.layer) for f in judge(report)]


def test_zero_gate_with_rank_one_weight_is_by_design():
    extra = {"d1": {"weight_variance": 0.0, "dead_fraction": 1.0}}
    info = {"d1": node("d1", ["d0"], weight_shape=(1,))}
    assert kinds(chain([1.0, 0.0, 1.0], extra=extra, info=info)) == []


def test_unit_rules():
    extra = {
        "d0": {"duplicate_unit_fraction": 1.0},
        "d1": {"dead_fraction": 0.75},
        "d2": {"saturation_fraction": 0.9},
    }
    flags = judge(chain([1.0, 1.0, 1.0], extra=extra))
    assert [(f.kind, f.layer) for f in flags] == [
        ("symmetry", "d0"),
        ("dead", "d1"),
        ("saturation", "d2"),
    ]
    assert flags[1].value == 0.75 and flags[1].threshold == 0.5


def test_dead_is_flagged_where_units_die_first():
    extra = {f"d{i}": {"dead_fraction": 1.0} for i in range(2, 6)}
    flags = [f for f in judge(chain([1.0] * 6, extra=extra)) if f.kind == "dead"]
    assert [f.layer for f in flags] == ["d2"]
    assert "3 later layer(s) inherit it" in flags[0].message


def test_chance_dead_is_the_fair_coin_tail():
    # P(Binomial(n, 1/2) >= k): 37/256 for 6 of 8, 1/16 for 4 of 4.
    assert chance_dead(8, 6) == pytest.approx(37 / 256)
    assert chance_dead(4, 4) == pytest.approx(1 / 16)
    assert chance_dead(8, 0) == 1.0
    assert chance_dead(0, 0) == 1.0
    assert chance_dead(64, 50) == pytest.approx(
        sum(math.comb(64, k) for k in range(50, 65)) / 2**64
    )


@pytest.mark.parametrize(
    ("units", "fraction", "flagged"),
    [
        (8, 0.75, False),  # 6 of 8: 0.145 by luck alone
        (8, 1.0, True),  # 8 of 8: 0.0039
        (32, 0.5, False),  # 16 of 32: 0.57
        (32, 0.75, True),  # 24 of 32: 0.0035
        (0, 0.5, True),  # width unknown: the fraction alone
    ],
)
def test_dead_at_step_0_needs_more_than_a_symmetric_draw_makes(
    units, fraction, flagged
):
    d0 = node("d0", ["x"], units=units)
    report = chain([1.0, 1.0], extra={"d0": {"dead_fraction": fraction}})
    report.info["d0"] = d0
    found = [f.layer for f in judge(report) if f.kind == "dead"]
    assert found == (["d0"] if flagged else [])


def test_dead_after_step_0_is_judged_by_the_fraction_alone():
    report = chain([1.0, 1.0], extra={"d0": {"dead_fraction": 0.75}})
    report.info["d0"] = node("d0", ["x"], units=8)
    later = dataclasses.replace(report, step=100)
    assert [f.layer for f in judge(later) if f.kind == "dead"] == ["d0"]


@pytest.mark.parametrize("activation", ["sigmoid", "hard_sigmoid"])
def test_a_gate_offset_is_no_vanishing_gradient(activation):
    # A sigmoid gate in its linear range: Var(phi(z)) = phi'(0)^2 Var(z) and
    # dL/dz = phi'(0) dL/dphi, so variance x gradient energy is unchanged
    # (here 1e-4 x 1e4 = 1, as at d0). Its E[x^2] is the offset's 0.25: by
    # second moments the gradient would seem to fall 2501x over one layer.
    gate = node("d1", ["d0"], activation=activation)
    report = chain(
        [1.0, 1e-4, 1.0],
        grads=[1.0, 100.0, None],
        extra={"d1": {"activation_mean": 0.5}},
        info={"d1": gate},
    )
    assert signal.backward(report).gain["d0"] == pytest.approx(1.0)
    assert kinds(report) == []
    plain = chain(
        [1.0, 1e-4, 1.0],
        grads=[1.0, 100.0, None],
        extra={"d1": {"activation_mean": 0.5}},
        info={"d1": node("d1", ["d0"], activation="tanh")},
    )
    assert signal.backward(plain).gain["d0"] == pytest.approx(1 / 2501)
    assert kinds(plain) != []


def test_nonfinite_names_first_layer_in_forward_order():
    extra = {
        "d1": {"nonfinite_weights": 3.0, "activation_variance": NAN},
        "d2": {"nonfinite_activations": 100.0, "activation_variance": NAN},
    }
    flags = judge(chain([1.0, 1.0, 1.0], extra=extra))
    assert [(f.kind, f.layer) for f in flags] == [("nonfinite", "d1")]
    assert "weights" in flags[0].message


def test_nonfinite_gradients_name_backward_origin():
    extra = {n: {"nonfinite_gradients": 1.0} for n in ("d0", "d1")}
    flags = judge(chain([1.0, 1.0, 1.0], extra=extra))
    assert [(f.kind, f.layer) for f in flags] == [("nonfinite", "d1")]


def test_nonfinite_loss_is_flagged_at_output():
    flags = judge(chain([1.0, 1.0], loss=math.inf))
    assert [(f.kind, f.layer) for f in flags] == [("nonfinite", "d1")]


def test_init_mismatch_only_while_weights_look_initialized():
    shape = (256, 256)
    he = node(
        "d0",
        ["x"],
        weight_shape=shape,
        activation="relu",
        initializer="xavier",
        recommended=("he",),
    )
    xavier_var = expected_variance("xavier", shape)
    report = chain(
        [1.0], extra={"d0": {"weight_variance": xavier_var}}, info={"d0": he}
    )
    flags = judge(report)
    assert [f.kind for f in flags] == ["init_mismatch"]
    assert "He" in flags[0].message
    report.stats["d0"]["weight_variance"] = 2 / 256  # rescaled (e.g. by LSUV)
    assert kinds(report) == []


def test_init_mismatch_recognizes_depthwise_fans():
    shape = (3, 3, 32, 1)
    depthwise = node(
        "d0",
        ["x"],
        weight_shape=shape,
        activation="relu",
        initializer="xavier",
        recommended=("he",),
        depthwise=True,
    )
    drawn = expected_variance("xavier", shape, depthwise=True)
    report = chain(
        [1.0], extra={"d0": {"weight_variance": drawn}}, info={"d0": depthwise}
    )
    assert kinds(report) == ["init_mismatch"]


def test_expected_variance_closed_forms():
    assert expected_variance("he", (3, 3, 16, 32)) == pytest.approx(2 / 144)
    assert expected_variance("lecun", (100, 10)) == pytest.approx(1 / 100)
    assert expected_variance("xavier", (100, 300)) == pytest.approx(2 / 400)
    assert expected_variance("he", (3, 3, 16, 1), depthwise=True) == pytest.approx(
        2 / 9
    )
    assert math.isnan(expected_variance("orthogonal", (3, 3)))


def test_identical_kernels_are_their_own_advisory_kind():
    info = {"d1": node("d1", ["d0"], same_kernel_as=("d0",))}
    flags = judge(chain([1.0, 1.0], info=info))
    assert [(f.kind, f.layer) for f in flags] == [("identical_kernels", "d1")]
    assert "d0" in flags[0].message and "advisory" in flags[0].message


@pytest.mark.parametrize(
    "kwargs",
    [
        {"vanishing": -1.0},
        {"vanishing": 2.0},
        {"exploding": 0.5},
        {"gradient_exploding": 0.5},
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


def test_the_culprit_layer_is_explained_with_its_kernel_variance():
    # Glorot & Bengio's ReLU chain: Xavier kernels halve the variance.
    fan, depth = 100, 30
    info = {
        f"d{i}": node(
            f"d{i}",
            [f"d{i - 1}" if i else "x"],
            activation="relu",
            initializer="xavier",
            recommended=("he",),
            fan_in=fan,
            fan_out=fan,
        )
        for i in range(depth)
    }
    extra = {f"d{i}": {"weight_variance": 2.0 / (2 * fan)} for i in range(depth)}
    report = chain([0.5 ** (i + 1) for i in range(depth)], extra=extra, info=info)
    (flag,) = [f for f in judge(report) if f.kind == "vanishing"]
    assert (
        "halves the variance: its kernel variance is 0.01, Xavier's "
        "2/(fan_in+fan_out), which suits tanh and sigmoid, not relu; He would "
        "keep it at 1"
    ) in flag.message


def test_a_plain_normalized_stack_gets_the_residual_advice():
    depth = 50
    nodes = [node("x", kind="input")]
    values = {"x": stats(1.0)}
    for i in range(depth):
        nodes.append(node(f"d{i}", [nodes[-1].name]))
        values[f"d{i}"] = stats(1.0, 1.21 ** (2 * depth - 2 * i))
        nodes.append(node(f"bn{i}", [f"d{i}"], kind="norm"))
        values[f"bn{i}"] = stats(1.0, 1.21 ** (2 * depth - 2 * i - 1))
    flags = judge(report_of(nodes, values))
    (flag,) = [f for f in flags if f.kind == "exploding"]
    assert "residual connections" in flag.message and "Yang" in flag.message


def test_kinds_that_do_not_predict_failure_during_training_are_advice_after_step_0():
    from keras_initdiag.diagnostics.rules import is_advisory

    def flag(kind, step):
        return Flag(kind, "dense", step, 1.0, 0.5, "")

    for kind in ("vanishing", "exploding", "dead", "saturation", "finite_width"):
        assert not is_advisory(flag(kind, 0)) and is_advisory(flag(kind, 1)), kind
    for kind in ("symmetry", "nonfinite", "update_ratio", "no_gradient"):
        assert not is_advisory(flag(kind, 0)) and not is_advisory(flag(kind, 50))
    for kind in ("identical_kernels", "init_mismatch"):
        assert is_advisory(flag(kind, 0)) and is_advisory(flag(kind, 50))


def test_a_global_pooling_is_no_depth_for_the_backward_scale():
    # The product E[x^2] E||dL/dx||^2 falls by the pooled size at a global
    # pooling (1024 for a 32 x 32 map) by construction: read across it, a
    # healthy He conv net got "vanishing" 3e-4..8e-4 on 9 of 12 seeds.
    layers = ["input", "conv_a", "conv_b", "pool", "head"]
    info = {
        "input": LayerInfo(name="input", kind="input", size=3072.0),
        "conv_a": LayerInfo(
            name="conv_a", kind="layer", inputs=("input",), size=65536.0
        ),
        "conv_b": LayerInfo(
            name="conv_b", kind="layer", inputs=("conv_a",), size=65536.0
        ),
        "pool": LayerInfo(name="pool", kind="reduce", inputs=("conv_b",), size=64.0),
        "head": LayerInfo(
            name="head", kind="layer", inputs=("pool",), size=10.0, is_output=True
        ),
    }
    # Gradient RMS per element: pooled outputs carry 1024 x the gradient
    # energy per element of its inputs; conv_a and conv_b are flat.
    rms = {"input": 1e-4, "conv_a": 1e-4, "conv_b": 1e-4, "pool": 0.1, "head": 0.3}
    stats = {
        name: {
            "activation_variance": 1.0,
            "activation_mean": 0.0,
            "activation_gradient_rms": rms[name],
        }
        for name in layers
    }
    report = DiagnosticReport(step=0, layers=layers, stats=stats, info=info)
    back = signal.backward(report)
    assert "conv_b" not in back.parent  # a new chain starts below the pooling
    assert back.scale["conv_a"] == pytest.approx(0.0, abs=1e-12)  # flat
    pooled = dataclasses.replace(info["pool"], kind="layer")
    report.info["pool"] = pooled
    assert signal.backward(report).scale["conv_b"] == pytest.approx(
        math.log(65536 * 1e-8 / (64 * 1e-2)), rel=1e-9
    )  # read across it: ~1e-3, a false "vanishing"


def test_output_units_of_unseen_classes_are_no_symmetry_after_step_0():
    # A zero head fit to 8 of its 10 classes keeps two identical units.
    layers = ["input", "hidden", "head"]
    info = {
        "input": LayerInfo(name="input", kind="input"),
        "hidden": LayerInfo(
            name="hidden", kind="layer", inputs=("input",), weight_shape=(4, 8)
        ),
        "head": LayerInfo(
            name="head",
            kind="layer",
            inputs=("hidden",),
            weight_shape=(8, 10),
            is_output=True,
        ),
    }
    stats = {
        n: {
            "activation_variance": 1.0,
            "activation_mean": 0.0,
            "weight_variance": 0.1,
            "duplicate_unit_fraction": 0.0,
        }
        for n in layers
    }
    stats["head"]["duplicate_unit_fraction"] = 0.2
    for step, flagged in ((0, True), (30, False)):
        report = DiagnosticReport(step=step, layers=layers, stats=stats, info=info)
        kinds = {(f.kind, f.layer) for f in judge(report)}
        assert (("symmetry", "head") in kinds) is flagged, (step, kinds)
