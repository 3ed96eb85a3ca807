"""Published architectures get no false alarm; known failures are caught.

The models come from `benchmarks/zoo.py` (small sizes, `weights=None`), fed
the inputs their documentation asks for. A false alarm on a network people
train is a bug; so is a miss on one that cannot train.
"""

import keras
import numpy as np
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


@pytest.mark.parametrize(
    "name, low, high",
    [
        ("resnet50", -123.68, 255.0 - 103.939),  # caffe: BGR, mean-centred
        ("mobilenet_v2", -1.0, 1.0),
        ("mobilenet_v3_small", 0.0, 255.0),  # preprocessing inside the model
        ("efficientnet_b0", 0.0, 255.0),  # preprocessing inside the model
        ("convnext_tiny", 0.0, 255.0),
    ],
)
def test_applications_get_the_input_range_their_documentation_asks_for(name, low, high):
    entry = next(e for e in zoo.HEALTHY if e.name == name)
    x, _ = zoo.batch(entry, n=64)
    assert x.dtype == np.float32 and x.shape == (64, 32, 32, 3)
    assert x.min() >= low - 1e-3 and x.max() <= high + 1e-3
    assert x.min() < low + 5 * (high - low) / 255
    assert x.max() > high - 5 * (high - low) / 255


@pytest.mark.slow
def test_efficientnet_fed_raw_pixels_starts_at_its_rescaling():
    # Its Rescaling(1/255) and Normalization are inside the model: fed the
    # 0..255 pixels its documentation asks for, nothing is "vanishing".
    keras.utils.set_random_seed(0)
    model = zoo.application("EfficientNetB0")()
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 255.0, (4, 32, 32, 3)).astype("float32")
    report = keras_initdiag.diagnose(model, x, rng.integers(0, 10, 4))
    assert "vanishing" not in [f.kind for f in report.flags], report.flags
    first = [n for n in report.layers if report.info[n].class_name == "Rescaling"]
    assert report.info[first[0]].kind == "preprocess"
    assert report.stats[first[0]]["activation_gain"] == pytest.approx(
        1 / 255**2, rel=1e-4
    )
