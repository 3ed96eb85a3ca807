"""Published architectures get no false alarm; known failures are caught.

The models come from `benchmarks/zoo.py` (small sizes, `weights=None`). A
false alarm on a network people train is a bug; so is a miss on one that
cannot train.
"""

import keras
import pytest
from helpers import load_script

import keras_initdiag
from keras_initdiag.diagnostics.rules import ADVISORY

zoo = load_script("benchmarks/zoo.py")


@pytest.mark.slow
@pytest.mark.parametrize("entry", zoo.HEALTHY, ids=lambda e: e.name)
def test_published_architectures_have_no_serious_flag(entry):
    keras.utils.set_random_seed(0)
    model = entry.build()
    x, y = zoo.batch(entry)
    report = keras_initdiag.diagnose(model, x, y)
    serious = [str(f) for f in report.flags if f.kind not in ADVISORY]
    assert serious == []
    assert report.training and report.skipped == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "entry, kind", zoo.FAILING, ids=lambda e: getattr(e, "name", e)
)
def test_known_failures_are_flagged(entry, kind):
    keras.utils.set_random_seed(0)
    model = entry.build()
    x, y = zoo.batch(entry)
    report = keras_initdiag.diagnose(model, x, y)
    assert kind in [f.kind for f in report.flags], [str(f) for f in report.flags]


@pytest.mark.slow
def test_plain_bn_gradient_grows_as_yang_et_al_predict():
    # Back-propagated gradients through Dense-BN-ReLU layers grow by
    # sqrt(pi / (pi - 1)) ~ 1.21 per layer at initialization, so the gradient
    # energy E[x^2] E||g||^2 by pi / (pi - 1) ~ 1.47 per layer.
    keras.utils.set_random_seed(0)
    entry = zoo.FAILING[0][0]
    model = entry.build()
    x, y = zoo.batch(entry, n=256)
    report = keras_initdiag.diagnose(model, x, y)
    (flag,) = [f for f in report.flags if f.kind == "exploding"]
    per_layer = flag.value ** (1 / 49)
    assert per_layer == pytest.approx(3.14159 / (3.14159 - 1), rel=0.05)
