"""The probe: training-mode semantics, statelessly; the real loss; one trace.

What must hold: the model is measured as `fit` runs it (BatchNormalization
with batch statistics, dropout on) and no variable changes, not even the
moving statistics or the random state; the probe's loss is the one `fit`
minimizes; one trace serves every batch size; the cache lets models go and
stays small.
"""

from __future__ import annotations

import gc
import math
import warnings
import weakref

import keras
import numpy as np
import pytest
from helpers import compiled

import keras_initdiag
from keras_initdiag.callbacks import InitDiagnosticsWarning
from keras_initdiag.diagnostics import cache, engine

RNG = np.random.default_rng(0)


def _same_stats(a, b):
    """Statistics equal, NaN ("does not apply") included."""
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _every_variable(model):
    variables = list(model.variables) + list(model.optimizer.variables)
    for metric in model.metrics:
        variables += list(metric.variables)
    return variables


def _bn_dropout_model():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(32, use_bias=False, name="dense"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Activation("relu", name="act"),
            keras.layers.Dropout(0.3, name="drop"),
            keras.layers.Dense(2, name="head"),
        ]
    )
    model.compile("adam", "mse", metrics=["mae"])
    return model


def test_training_mode_measurement_leaves_every_variable_bit_identical():
    model = _bn_dropout_model()
    x = RNG.standard_normal((64, 6)).astype("float32")
    y = RNG.standard_normal((64, 2)).astype("float32")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # everything is built
    variables = _every_variable(model)
    names = [v.path for v in variables]
    assert any("moving_mean" in n for n in names)
    assert any("seed_generator_state" in n for n in names)
    before = [np.array(v.numpy(), copy=True) for v in variables]
    report = keras_initdiag.diagnose(model, x[:32], y[:32])
    for variable, old in zip(variables, before):
        np.testing.assert_array_equal(old, variable.numpy(), err_msg=variable.path)
    assert report.training
    # Batch statistics: the normalized output has zero mean and unit variance
    # per unit (gamma and beta moved only a little in one epoch).
    assert abs(report.stats["bn"]["activation_mean"]) < 0.1
    assert report.stats["bn"]["activation_variance"] == pytest.approx(1.0, abs=0.1)


def test_dropout_uses_a_fixed_seed_and_never_moves_the_models_random_state():
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(64, activation="relu", name="dense"),
            keras.layers.Dropout(0.5, name="drop"),
            keras.layers.Dense(1, name="head"),
        ]
    )
    x = RNG.standard_normal((128, 16)).astype("float32")
    state = model.get_layer("drop").seed_generator.state
    first = keras_initdiag.diagnose(model, x)
    seed_before = state.numpy().copy()
    model(x, training=True)  # the model's own random state moves on
    assert not np.array_equal(seed_before, state.numpy())
    seed_moved = state.numpy().copy()
    second = keras_initdiag.diagnose(model, x)
    _same_stats(first.stats["drop"], second.stats["drop"])
    np.testing.assert_array_equal(seed_moved, state.numpy())

    # Kept units are scaled by 1 / (1 - rate): the second moment doubles.
    def m2(name):
        s = first.stats[name]
        return s["activation_variance"] + s["activation_mean"] ** 2

    assert m2("drop") / m2("dense") == pytest.approx(2.0, rel=0.05)
    inference = keras_initdiag.diagnose(model, x, training=False)
    assert inference.stats["drop"]["activation_variance"] == pytest.approx(
        inference.stats["dense"]["activation_variance"], rel=1e-6
    )


def test_one_trace_for_every_batch_size_with_every_statistic():
    model = keras.Sequential(
        [keras.Input((8,))]
        + [keras.layers.Dense(16, activation="relu", name=f"d{i}") for i in range(3)]
        + [keras.layers.Dense(2, name="head")]
    )
    model.compile("sgd", "mse")
    x = RNG.standard_normal((128, 8)).astype("float32")
    y = RNG.standard_normal((128, 2)).astype("float32")
    diagnoser = compiled(engine.Diagnoser(model))
    reports = [diagnoser.measure(x[:n], y[:n]) for n in (128, 64, 128)]
    assert diagnoser.probe.traces == 1
    for report in reports:
        for node in ("d0", "d1", "d2"):
            for stat in (
                "dead_fraction",
                "duplicate_unit_fraction",
                "activation_variance",
            ):
                assert np.isfinite(report.stats[node][stat]), (node, stat)
    for node in reports[0].layers:
        _same_stats(reports[0].stats[node], reports[2].stats[node])
    assert (
        reports[1].stats["d0"]["activation_variance"]
        != reports[0].stats["d0"]["activation_variance"]
    )


def test_probe_loss_is_the_compiled_training_loss():
    # Dict outputs in non-alphabetical order, loss weights, a regularizer
    # and a masked sequence: everything `fit` minimizes.
    tokens = keras.Input((7,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(30, 8, mask_zero=True, name="embed")(tokens)
    h = keras.layers.LSTM(
        8,
        return_sequences=True,
        kernel_regularizer=keras.regularizers.L2(0.1),
        name="lstm",
    )(h)
    zeta = keras.layers.Dense(3, name="zeta")(h)
    alpha = keras.layers.Dense(1, name="alpha")(h)
    model = keras.Model(tokens, {"zeta": zeta, "alpha": alpha})
    model.compile(
        "sgd",
        loss={"zeta": "mse", "alpha": "mae"},
        loss_weights={"zeta": 2.0, "alpha": 0.25},
    )
    x = RNG.integers(1, 30, size=(16, 7))
    x[:, 4:] = 0  # padding: masked out of the loss
    y = {
        "alpha": RNG.standard_normal((16, 7, 1)).astype("float32"),
        "zeta": RNG.standard_normal((16, 7, 3)).astype("float32"),
    }
    report = keras_initdiag.diagnose(model, x, y)
    mapping = [(v, v.value) for v in model.variables]
    with keras.StatelessScope(state_mapping=mapping, collect_losses=True):
        expected = float(model.compute_loss(x, y, model(x, training=True)))
    assert report.loss == pytest.approx(expected, rel=1e-5)
    # The pieces are really in it: without the mask, the weights or the
    # regularizer, the loss differs.
    preds = model(x)
    plain = float(np.mean((np.asarray(preds["zeta"]) - y["zeta"]) ** 2)) + float(
        np.mean(np.abs(np.asarray(preds["alpha"]) - y["alpha"]))
    )
    assert abs(report.loss - plain) > 1e-3


def test_explicit_loss_pairs_dict_targets_by_name():
    inputs = keras.Input((4,), name="x")
    zeta = keras.layers.Dense(3, name="zeta")(inputs)
    alpha = keras.layers.Dense(1, name="alpha")(inputs)
    model = keras.Model(inputs, {"zeta": zeta, "alpha": alpha})
    x = RNG.standard_normal((16, 4)).astype("float32")
    y = {
        "alpha": RNG.standard_normal((16, 1)).astype("float32"),
        "zeta": RNG.standard_normal((16, 3)).astype("float32"),
    }
    report = keras_initdiag.diagnose(model, x, y, loss={"zeta": "mse", "alpha": "mae"})
    preds = model(x)
    expected = float(np.mean((np.asarray(preds["zeta"]) - y["zeta"]) ** 2)) + float(
        np.mean(np.abs(np.asarray(preds["alpha"]) - y["alpha"]))
    )
    assert report.loss == pytest.approx(expected, rel=1e-5)


def test_a_deleted_model_is_freed_and_fresh_losses_do_not_pile_up():
    def build():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        return model

    model = build()
    x = RNG.standard_normal((8, 4)).astype("float32")
    y = RNG.standard_normal((8, 2)).astype("float32")
    for _ in range(6):
        keras_initdiag.diagnose(model, x, y, loss=keras.losses.MeanSquaredError())
    entry = cache._CACHE[model]
    (diagnoser,) = entry.diagnosers.values()
    assert diagnoser.probe.traces == 1
    for _ in range(10):  # closures cannot be compared: a bounded cache
        keras_initdiag.diagnose(model, x, y, loss=lambda a, b: keras.ops.mean(a - b))
    assert len(entry.diagnosers) <= cache.CACHE_SIZE
    ref = weakref.ref(model)
    del model, entry, diagnoser
    gc.collect()
    assert ref() is None


def test_integer_inputs_get_valid_token_ids_without_probe_data():
    tokens = keras.Input((12,), dtype="int32")
    h = keras.layers.Embedding(40, 8, mask_zero=True)(tokens)
    h = keras.layers.GRU(8)(h)
    model = keras.Model(tokens, keras.layers.Dense(2)(h))
    model.compile("adam", "mse")
    x = RNG.integers(1, 40, size=(64, 12))
    y = RNG.standard_normal((64, 2)).astype("float32")
    callback = keras_initdiag.InitDiagnostics(log_dir=None, on_flag="stop", verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[callback])
    notes = [
        str(w.message) for w in caught if issubclass(w.category, InitDiagnosticsWarning)
    ]
    assert any("random token ids in [1, 40)" in n for n in notes), notes
    assert not [f for f in callback.flags if f.kind == "dead"]
    assert int(np.asarray(model.optimizer.iterations)) == 8  # not stopped


def test_integer_inputs_that_feed_no_embedding_need_probe_data():
    ids = keras.Input((3,), dtype="int32")
    h = keras.layers.CategoryEncoding(num_tokens=10, output_mode="multi_hot")(ids)
    model = keras.Model(ids, keras.layers.Dense(1)(h))
    model.compile("sgd", "mse")
    callback = keras_initdiag.InitDiagnostics(log_dir=None, verbose=0)
    x = RNG.integers(0, 10, size=(16, 3))
    with pytest.raises(ValueError, match="probe_data.*does not feed an Embedding"):
        model.fit(x, np.zeros((16, 1)), epochs=1, verbose=0, callbacks=[callback])


def test_eager_calls_then_one_trace_with_the_same_numbers():
    # The first EAGER_CALLS diagnoses run eagerly (cheaper than compiling for
    # a few diagnoses); the compiled function then gives the same report.
    from keras_initdiag.diagnostics.probe import EAGER_CALLS

    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(32, activation="relu", name="d0"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dropout(0.3, name="drop"),
            keras.layers.Dense(32, activation="tanh", name="d1"),
            keras.layers.Dense(3, name="head"),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = RNG.standard_normal((64, 8)).astype("float32")
    y = RNG.integers(0, 3, 64)
    diagnoser = engine.Diagnoser(model)
    eager = [diagnoser.measure(x, y) for _ in range(EAGER_CALLS)]
    assert diagnoser.probe.traces == 0
    graph = diagnoser.measure(x, y)
    assert diagnoser.probe.traces == 1
    checked = 0
    for name in graph.layers:
        for stat, value in graph.stats[name].items():
            first = eager[0].stats[name][stat]
            assert eager[-1].stats[name][stat] == pytest.approx(first, nan_ok=True)
            assert value == pytest.approx(first, rel=1e-4, abs=1e-7, nan_ok=True), (
                name,
                stat,
            )
            checked += math.isfinite(value)
    assert checked > 50
    assert graph.loss == pytest.approx(eager[0].loss, rel=1e-5)


@pytest.mark.parametrize("stack_below", [0, 10**9])
def test_eager_stacked_and_compiled_per_tensor_reductions_agree_on_units(
    stack_below, monkeypatch
):
    """Eager calls reduce the tensors of one shape stacked; the compiled probe
    reduces large tensors alone (here: every tensor, or none). All give the
    closed-form fractions: 8 of 16 units that copy another's weights (and
    outputs), 4 of 16 all-zero units (dead, and equal by weights)."""
    from keras_initdiag.diagnostics import reduce
    from keras_initdiag.diagnostics.probe import EAGER_CALLS

    monkeypatch.setattr(reduce, "STACK_BELOW", stack_below)

    copies = RNG.standard_normal((8, 16)).astype("float32")
    copies[:, 8:12] = copies[:, 0:4]  # units 8-11 copy units 0-3: 8 of 16
    zeros = RNG.standard_normal((16, 16)).astype("float32")
    zeros[:, :4] = 0.0
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="tanh", name="copies"),
            keras.layers.Dense(16, activation="relu", name="zeros"),
            keras.layers.Dense(16, activation="relu", name="plain"),
            keras.layers.Dense(3, name="head"),
        ]
    )
    model.get_layer("copies").kernel.assign(copies)
    model.get_layer("zeros").kernel.assign(zeros)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = RNG.standard_normal((64, 8)).astype("float32")
    y = RNG.integers(0, 3, 64)
    diagnoser = engine.Diagnoser(model)
    reports = [diagnoser.measure(x, y) for _ in range(EAGER_CALLS + 1)]
    assert diagnoser.probe.traces == 1
    for report in (reports[0], reports[-1]):  # eager, then compiled
        stats = report.stats
        assert stats["copies"]["duplicate_unit_fraction"] == 0.5
        assert stats["copies"]["dead_fraction"] == 0.0
        assert stats["zeros"]["dead_fraction"] == 0.25
        assert stats["zeros"]["duplicate_unit_fraction"] == 0.25
        assert stats["plain"]["duplicate_unit_fraction"] == 0.0
    light = diagnoser.measure(x, y, searches=False)
    assert math.isnan(light.stats["copies"]["duplicate_unit_fraction"])
    assert light.stats["zeros"]["dead_fraction"] == 0.25


def _ids_and_features(order: str, dict_inputs: bool = False):
    """Token ids into an Embedding and float features into a Dense, one head.

    The ids span 1000 values (variance about 8e4): paired with the features'
    node by mistake, they make the features' Dense look like a 1e-5 collapse.
    """
    ids = keras.Input((6,), dtype="int32", name="ids")
    feats = keras.Input((8,), name="feats")
    e = keras.layers.Embedding(1000, 16, name="embed")(ids)
    e = keras.layers.GlobalAveragePooling1D(name="pool")(e)
    f = keras.layers.Dense(
        16, activation="relu", kernel_initializer="he_normal", name="dense"
    )(feats)
    h = keras.layers.Concatenate(name="concat")([e, f])
    out = keras.layers.Dense(3, name="head")(h)
    if dict_inputs:
        inputs = {"ids": ids, "feats": feats}
    else:
        inputs = [ids, feats] if order == "ids_first" else [feats, ids]
    model = keras.Model(inputs, out)
    model.compile(
        keras.optimizers.SGD(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    ids_x = RNG.integers(0, 1000, (32, 6)).astype("int32")
    feats_x = (0.5 * RNG.standard_normal((32, 8))).astype("float32")
    if dict_inputs:
        x = {"ids": ids_x, "feats": feats_x}
    else:
        x = [ids_x, feats_x] if order == "ids_first" else [feats_x, ids_x]
    return model, x, feats_x, RNG.integers(0, 3, 32)


@pytest.mark.parametrize("order", ["ids_first", "features_first", "dict"])
def test_each_input_is_paired_by_its_position_in_the_input_structure(order):
    # An integer input is not measured; pairing measured inputs with the
    # flattened batch by counting them gave the features node the ids.
    model, x, feats_x, y = _ids_and_features(order, dict_inputs=order == "dict")
    report = keras_initdiag.diagnose(model, x, y)
    assert report.stats["feats"]["activation_variance"] == pytest.approx(
        float(np.var(feats_x)), rel=1e-5
    )
    assert report.stats["feats"]["activation_mean"] == pytest.approx(
        float(np.mean(feats_x)), abs=1e-6
    )
    assert "vanishing" not in [f.kind for f in report.flags], report.flags


def test_an_input_left_out_by_layers_does_not_shift_the_next_one():
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    h = keras.layers.Concatenate()([keras.layers.Dense(4, name="da")(a), b])
    model = keras.Model([a, b], keras.layers.Dense(2, name="head")(h))
    model.compile("sgd", "mse")
    xa = (10.0 * RNG.standard_normal((32, 4))).astype("float32")
    xb = RNG.standard_normal((32, 4)).astype("float32")
    y = RNG.standard_normal((32, 2)).astype("float32")
    report = keras_initdiag.diagnose(model, [xa, xb], y, layers=["b", "head"])
    assert report.stats["b"]["activation_variance"] == pytest.approx(
        float(np.var(xb)), rel=1e-5
    )
