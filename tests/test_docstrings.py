"""Every public function and class has a docstring example, and it runs.

The examples are run as written, in a fresh namespace per example, with the
names the package's docstrings may assume (as NumPy's assume `np`):
`keras`, `np`, `tf`, `keras_initdiag`; `model`, a compiled 3-class
classifier with hidden layers `dense_1` to `dense_4`; `x` and `y`, a batch
it fits; `report`, its diagnosis; and a `logs/initdiag` run in the current
directory. Output is not compared: the examples show calls, and the other
tests check the numbers.
"""

from __future__ import annotations

import inspect
import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_initdiag
import keras_initdiag.cli.demo
import keras_initdiag.plots
from keras_initdiag.diagnostics import predicted, rules


def _public() -> dict[str, object]:
    """The documented API: the package's names and its public subpackages'."""
    spaces = [
        keras_initdiag,
        keras_initdiag.initializers,
        keras_initdiag.layers,
        keras_initdiag.tensorboard,
        keras_initdiag.plots,
    ]
    found = {}
    for space in spaces:
        for name in getattr(space, "__all__", None) or dir(space):
            obj = getattr(space, name)
            if name.startswith("_") or not (
                inspect.isfunction(obj) or inspect.isclass(obj)
            ):
                continue
            if getattr(obj, "__module__", "").startswith("keras_initdiag"):
                found.setdefault(f"{obj.__module__}.{obj.__qualname__}", obj)
    for obj in (
        rules.judge,
        predicted.predicted_report,
        keras_initdiag.cli.demo.run_demo,
    ):
        found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


PUBLIC = _public()


def _example(doc: str) -> str | None:
    """The code of a docstring's `Example:` section (>>> lines or a fence)."""
    if "Example" not in doc:
        return None
    section = doc[doc.index("Example") :]
    fence = re.search(r"```python\n(.*?)```", section, re.S)
    if fence:
        return fence.group(1)
    lines = [
        line.strip()[4:]
        for line in section.splitlines()
        if line.strip().startswith((">>> ", "... ")) or line.strip() in ("...",)
    ]
    return "\n".join(lines) or None


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,))]
        + [
            keras.layers.Dense(
                16, activation="relu", kernel_initializer="he_normal", name=f"dense_{i}"
            )
            for i in range(1, 5)
        ]
        + [keras.layers.Dense(3, name="logits")]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


RNG = np.random.default_rng(0)
X = RNG.standard_normal((64, 8)).astype("float32")
Y = RNG.integers(0, 3, 64)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A directory holding `logs/initdiag`, the run of one short `fit`."""
    path = tmp_path_factory.mktemp("examples")
    callback = keras_initdiag.InitDiagnostics(
        log_dir=str(path / "logs"), probe_data=(X, Y), on_flag="ignore", verbose=0
    )
    _model().fit(X, Y, epochs=1, verbose=0, callbacks=[callback])
    return path


@pytest.fixture
def namespace(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    model = _model()
    return {
        "keras": keras,
        "np": np,
        "tf": tf,
        "keras_initdiag": keras_initdiag,
        "model": model,
        "x": X.copy(),
        "y": Y.copy(),
        "report": keras_initdiag.diagnose(model, X, Y),
    }


def test_the_public_api_is_found():
    names = {name.rsplit(".", 1)[-1] for name in PUBLIC}
    assert {"diagnose", "InitDiagnostics", "He", "Whitening", "lsuv"} <= names
    assert {"read_reports", "depth_profile_figure", "gain"} <= names
    assert len(PUBLIC) > 30


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_docstring_example_runs(name, namespace):
    code = _example(inspect.getdoc(PUBLIC[name]) or "")
    assert code, f"{name} has no docstring example"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # An example may show a warning.
        exec(compile(code, f"<example of {name}>", "exec"), namespace)
