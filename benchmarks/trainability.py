"""Which small networks train? Ground truth for the initialization diagnostics.

Trains a grid of small networks for real on a learnable synthetic task and
records, per network, whether (and how far) its training loss went down. A
later phase diagnoses every network at step 0 with `keras_initdiag.diagnose()`
and compares the flags with these outcomes, so every network is rebuilt
bit-identically from its `RunConfig` by `build_model` (same initial weights;
each record carries their SHA-256, `init_weights_sha256`) without retraining.

Task (`make_task`): 16 features x ~ N(0, I), 4 classes. The teacher is a
fixed random linear network of rank 2: two orthonormal random projections
p = (a0 . x, a1 . x), four logits cos(theta + k pi/2) p0 + sin(...) p1 at a
random angle theta, label = argmax; the classes are four 90-degree sectors of
the p plane, balanced by symmetry (1024 samples: 260/252/260/252, label
entropy H = 1.386 nats, the loss of predicting the class frequencies). The
conv archs get the same labels from an (8, 8, 2) image, a fixed random linear
map of the same 16 features: pixel (r, c) = m_rc . x with |m_rc| = 1 (every
pixel is exactly N(0, 1)), m_rc = 0.5 a_c + sqrt(0.75) n_rc, the n_rc
orthogonal to a_c and summing to zero over the 64 positions: the mean of
channel c is exactly 0.5 p_c, the rest of each pixel a spatially varying mix
of all 16 features.

Why not a random 2-layer tanh teacher on all 16 features: a conv net ending in
GlobalAveragePooling + Dense sums local functions over positions, and the only
linear information that survives the pooling is the channel sums (plus
zero-padding border terms), so no layout of 16 generic features into 8x8x2 is
learnable by these archs. Measured before settling on this task: random tanh
teachers with block or random-linear layouts, and random conv teachers on
noise images, left a healthy depth-2 cnn at 0.6-1.0 nats after 320 steps
(MLP at 0.2-0.9); here depth-2 nets reach 0.1-0.2 in the same time.

Healthy depth-2 nets after the 160 steps below (`evaluate` loss / accuracy on
the training set): mlp relu he sgd 0.20 / 94%, mlp relu he adam 0.35 / 90%
(the slowest: He logits start at 2.06 nats), mlp tanh xavier sgd 0.15 / 98%,
mlp_bn relu he sgd 0.27 / 93%, cnn relu he sgd 0.12 / 96%, cnn tanh xavier
adam 0.23 / 97%, cnn_bn relu he sgd 0.21 / 95%, cnn_bn tanh xavier adam
0.31 / 97%: all well under H / 2 = 0.69. zeros stays at 1.386 (only the head
bias learns). So the default learning rates are kept.

Grid: archs mlp, mlp_bn, cnn, cnn_bn (64 units or 16 3x3 "same" filters per
layer; the BN archs use bias-free layers -> BatchNormalization -> activation)
x depths 2, 6, 16, 32, 50 x activations relu, tanh x kernel inits zeros, small
(N(0, 0.01^2)), large (N(0, 1)), xavier (glorot_normal), lecun (lecun_normal),
he (he_normal), orthogonal (gain 1), one seeded instance per layer x
optimizers sgd (SGD 0.01, momentum 0.9) and adam (Adam 1e-3): 560 runs, seed 0.

Training: 1024 samples, batch 64 (16 steps per epoch), 160 optimizer steps =
10 epochs, batches from a seeded `tf.data` shuffle, `model.fit(verbose=0)`
with `TerminateOnNaN` (a diverged run stops at its first non-finite batch
loss; with 8 steps per `tf.function` call, `steps_done` is then a multiple
of 8). `loss_curve` is the per-epoch mean training loss from `fit` (10
points); `initial_*` and `final_*` are `model.evaluate` on the whole training
set (inference mode); `final_*_batch_stats` are one training-mode pass over
the whole set, which differs from `final_*` only where BatchNormalization's
moving averages (momentum 0.99) still lag after 160 steps (e.g. small or
large inits: mlp_bn-d2-relu-small-adam ends at 0.99 nats but 92% accuracy).
NaN/Inf are written as the strings "NaN", "Infinity", "-Infinity"
(`load_runs` turns them back into floats).

Budget (2 cores shared with other work; load average ~3.5 while measuring):
tracing `fit` for the 150-layer cnn_bn-d50 costs ~30 s, as much as training
it, so the networks of one (arch, depth, activation, optimizer) group share
one traced model: each run builds its own fresh model with `build_model` (its
initial weights), copies those into the group's traced model and restores the
optimizer's never-used state (`ModelCache`). Seconds per run at 160 steps,
first of its group / the others: mlp-d2 ~1.5 / ~1, mlp-d50 14 / 7,
mlp_bn-d16 7.6 / 4.0, mlp_bn-d50 20 / 15, cnn-d16 7.7 / 6.5, cnn-d50 21 /
17, cnn_bn-d16 13 / 9, cnn_bn-d50 67 / 37 (the slowest). Whole grid: ~85
minutes estimated at that load (cnn_bn ~40 min, cnn ~19, mlp_bn ~17, mlp ~9).
320 steps would have taken ~2 hours.

Usage:
    python benchmarks/trainability.py train            # the full grid, resumable
    python benchmarks/trainability.py train --only cnn_bn-d50
    python benchmarks/trainability.py train --quick --out /tmp/quick.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.metadata
import itertools
import json
import math
import os
import pathlib
import platform
import sys
import time
from collections.abc import Iterable, Sequence
from typing import ClassVar

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_initdiag.diagnostics import rules  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results"
DEFAULT_OUT = RESULTS / "trainability_runs.jsonl"
QUICK_OUT = RESULTS / "trainability_quick.jsonl"

ARCHS = ("mlp", "mlp_bn", "cnn", "cnn_bn")
#: Residual archs, not in this grid (`benchmarks/heldout.py` uses them): a
#: stem layer to the width, then blocks of two layers with an identity skip,
#: h <- act(h + f(h)) with f = layer, act, layer (each layer -> BN in `_bn`).
RESIDUAL_ARCHS = ("resmlp", "resmlp_bn", "rescnn", "rescnn_bn")
DEPTHS = (2, 6, 16, 32, 50)
ACTIVATIONS = ("relu", "tanh")
INITS = ("zeros", "small", "large", "xavier", "lecun", "he", "orthogonal")
OPTIMIZERS = ("sgd", "adam")

N_FEATURES = 16
N_CLASSES = 4
IMAGE_SHAPE = (8, 8, 2)
MLP_WIDTH = 64
CNN_FILTERS = 16
#: The grid's learning rate of each optimizer.
LEARNING_RATES = {"sgd": 0.01, "adam": 1e-3}

#: Full-grid settings: samples, batch size, optimizer steps (a whole number of
#: epochs), task seed.
N_TRAIN = 1024
BATCH_SIZE = 64
STEPS = 160
#: Optimizer steps per epoch of a grid's training (`N_TRAIN // BATCH_SIZE`).
EPOCH_STEPS = N_TRAIN // BATCH_SIZE
TASK_SEED = 0
#: Quick settings, for the test: a few seconds in total.
QUICK = {"n": 512, "steps": 96, "batch_size": 32}
QUICK_GRID = {
    "archs": ("mlp", "cnn_bn"),
    "depths": (2, 6),
    "activations": ("relu",),
    "inits": ("he", "zeros"),
    "optimizers": ("adam",),
}
#: Batches per `tf.function` call inside `fit`; only cuts Python overhead.
STEPS_PER_EXECUTION = 8
EVAL_BATCH_SIZE = 512


# -- configurations ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One network of the grid: everything needed to rebuild it."""

    arch: str
    depth: int
    activation: str
    init: str
    optimizer: str
    seed: int = 0

    #: The archs a config may name (a subclass may allow more).
    allowed_archs: ClassVar[tuple] = ARCHS

    def __post_init__(self):
        for value, allowed in (
            (self.arch, self.allowed_archs),
            (self.activation, ACTIVATIONS),
            (self.init, INITS),
            (self.optimizer, OPTIMIZERS),
        ):
            if value not in allowed:
                raise ValueError(f"{value!r} is not one of {allowed}")
        if self.depth < 1:
            raise ValueError(f"depth must be positive, got {self.depth}")
        if self.arch in RESIDUAL_ARCHS and self.depth % 2:
            raise ValueError(f"a residual depth must be even, got {self.depth}")

    @property
    def key(self) -> str:
        """Stable identifier, e.g. ``mlp-d20-relu-he-sgd-s0``."""
        return (
            f"{self.arch}-d{self.depth}-{self.activation}-{self.init}"
            f"-{self.optimizer}-s{self.seed}"
        )

    @classmethod
    def from_record(cls, record: dict) -> RunConfig:
        """The config a results record (`train`'s JSON line) was run with."""
        return cls(*(record[field.name] for field in dataclasses.fields(cls)))

    @property
    def graph_key(self) -> tuple:
        """Configs with equal graph keys differ only in their initial weights."""
        return (self.arch, self.depth, self.activation, self.optimizer)

    @property
    def units(self) -> int:
        """Units (or filters, for the conv archs) of each hidden layer."""
        return CNN_FILTERS if is_conv(self.arch) else MLP_WIDTH

    @property
    def learning_rate(self) -> float:
        """The optimizer's learning rate."""
        return LEARNING_RATES[self.optimizer]

    def rate(self):
        """What the optimizer is given: the fixed rate (a schedule in
        `practice.py`'s configs)."""
        return self.learning_rate


def grid(
    archs: Sequence[str] = ARCHS,
    depths: Sequence[int] = DEPTHS,
    activations: Sequence[str] = ACTIVATIONS,
    inits: Sequence[str] = INITS,
    optimizers: Sequence[str] = OPTIMIZERS,
    seed: int = 0,
) -> list[RunConfig]:
    """All configurations, the init varying fastest (so groups stay together)."""
    return [
        RunConfig(arch, depth, activation, init, optimizer, seed)
        for arch, depth, activation, optimizer, init in itertools.product(
            archs, depths, activations, optimizers, inits
        )
    ]


def quick_grid() -> list[RunConfig]:
    """The tiny grid of ``train --quick``."""
    return grid(**QUICK_GRID)


def is_conv(arch: str) -> bool:
    """Whether `arch` is a conv net (it reads the task's images)."""
    return arch.removeprefix("res").startswith("cnn")


# -- the task ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Task:
    """A labelled data set: the same labels as vectors and as images."""

    x: np.ndarray  # (n, 16) float32, each feature N(0, 1)
    images: np.ndarray  # (n, 8, 8, 2) float32, each pixel N(0, 1)
    y: np.ndarray  # (n,) int32 in [0, 4)
    entropy: float  # label entropy in nats: the loss of predicting frequencies
    class_counts: tuple
    seed: int

    @property
    def n(self) -> int:
        """Number of samples."""
        return len(self.y)

    def inputs(self, arch: str) -> np.ndarray:
        """The input array an architecture trains on."""
        return self.images if is_conv(arch) else self.x


def _image_map(rng: np.random.Generator, direction: np.ndarray) -> np.ndarray:
    """(64, 16) unit rows m_r = 0.5 a + sqrt(0.75) n_r, n_r ⟂ a, sum_r n_r = 0."""
    noise = rng.normal(size=(64, N_FEATURES))
    for _ in range(200):  # Alternating projections: converges to ~1e-15.
        noise -= np.outer(noise @ direction, direction)
        noise -= noise.mean(axis=0)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return 0.5 * direction + math.sqrt(0.75) * noise


def label_entropy(y) -> float:
    """The entropy of the labels' frequencies, in nats: the loss of the best
    prediction that ignores the input, the chance level every grid's outcome
    and the zoo gate's are measured against.

    Example:
    >>> round(label_entropy([0, 0, 1, 1]), 4), round(label_entropy([3, 3, 3]), 4)
    (0.6931, 0.0)
    """
    counts = np.bincount(np.asarray(y, dtype=np.int64))
    freq = counts[counts > 0] / counts.sum()
    return float(-(freq * np.log(freq)).sum() + 0.0)


def make_task(n: int = N_TRAIN, seed: int = TASK_SEED) -> Task:
    """The teacher-student task (module docstring): features, images, labels.

    The teacher depends on `seed` only, the samples on `seed` and `n` (the
    first rows do not change with `n`).
    """
    rng = np.random.default_rng(seed)
    projections, _ = np.linalg.qr(rng.normal(size=(N_FEATURES, 2)))
    maps = np.stack([_image_map(rng, projections[:, c]) for c in range(2)], -1)
    theta = rng.uniform(0.0, np.pi / 2)
    angles = theta + np.arange(N_CLASSES) * np.pi / 2
    readout = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (4, 2)

    x = np.random.default_rng([seed, 1]).normal(size=(n, N_FEATURES))
    y = np.argmax((x @ projections) @ readout.T, axis=1).astype("int32")
    images = np.einsum("nk,rkc->nrc", x, maps).reshape((n, *IMAGE_SHAPE))
    counts = np.bincount(y, minlength=N_CLASSES)
    return Task(
        x=x.astype("float32"),
        images=images.astype("float32"),
        y=y,
        entropy=label_entropy(y),
        class_counts=tuple(int(c) for c in counts),
        seed=seed,
    )


# -- models ------------------------------------------------------------------


def make_initializer(name: str, seed: int) -> keras.initializers.Initializer:
    """A fresh kernel initializer of family `name`, seeded with `seed`."""
    if name == "zeros":
        return keras.initializers.Zeros()
    if name == "small":
        return keras.initializers.RandomNormal(stddev=0.01, seed=seed)
    if name == "large":
        return keras.initializers.RandomNormal(stddev=1.0, seed=seed)
    if name == "xavier":
        return keras.initializers.GlorotNormal(seed=seed)
    if name == "lecun":
        return keras.initializers.LecunNormal(seed=seed)
    if name == "he":
        return keras.initializers.HeNormal(seed=seed)
    if name == "orthogonal":
        return keras.initializers.Orthogonal(gain=1.0, seed=seed)
    raise ValueError(f"unknown initializer {name!r}")


def make_optimizer(
    name: str, learning_rate: float | None = None
) -> keras.optimizers.Optimizer:
    """The optimizer of the grid called `name` (its grid learning rate by default)."""
    if name not in LEARNING_RATES:
        raise ValueError(f"unknown optimizer {name!r}")
    rate = LEARNING_RATES[name] if learning_rate is None else learning_rate
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=rate, momentum=0.9)
    return keras.optimizers.Adam(learning_rate=rate)


def _layer_seed(config: RunConfig, index: int) -> int:
    """Initializer seed of layer `index` (1-based; the head is depth + 1)."""
    return 1000 * config.seed + index


def _layer(config: RunConfig, h, i: int, activate: bool = True):
    """Weighted layer `i` (its own seeded kernel) applied to `h`.

    Without BN: Dense or Conv2D with a bias and the activation (none when
    `activate` is False); in the `_bn` archs: the bias-free layer ->
    BatchNormalization -> the activation (if `activate`).
    """
    init = make_initializer(config.init, _layer_seed(config, i))
    conv = is_conv(config.arch)
    bn = config.arch.endswith("_bn")
    activation = config.activation if activate and not bn else None
    if conv:
        layer = keras.layers.Conv2D(
            config.units,
            3,
            padding="same",
            activation=activation,
            use_bias=not bn,
            kernel_initializer=init,
            name=f"conv_{i}",
        )
    else:
        layer = keras.layers.Dense(
            config.units,
            activation=activation,
            use_bias=not bn,
            kernel_initializer=init,
            name=f"dense_{i}",
        )
    h = layer(h)
    if not bn:
        return h
    h = keras.layers.BatchNormalization(name=f"bn_{i}")(h)
    if activate:
        h = keras.layers.Activation(config.activation, name=f"act_{i}")(h)
    return h


def _residual_block(config: RunConfig, h, b: int):
    """Block `b` (1-based: layers 2b - 1 and 2b): h <- act(h + f(h))."""
    branch = _layer(config, h, 2 * b - 1)
    branch = _layer(config, branch, 2 * b, activate=False)
    h = keras.layers.Add(name=f"add_{b}")([h, branch])
    return keras.layers.Activation(config.activation, name=f"out_{b}")(h)


def _body(config: RunConfig, h):
    """The hidden layers applied to `h`.

    `depth` plain layers, or for the residual archs a stem layer (index 0, to
    the width) and `depth / 2` blocks.
    """
    if config.arch not in RESIDUAL_ARCHS:
        for i in range(1, config.depth + 1):
            h = _layer(config, h, i)
        return h
    h = _layer(config, h, 0)
    for b in range(1, config.depth // 2 + 1):
        h = _residual_block(config, h, b)
    return h


def build_model(config: RunConfig, steps_per_execution: int = 1) -> keras.Model:
    """The compiled network of `config`, with bit-identical initial weights.

    Every kernel initializer gets its own seed (from `config.seed` and the
    layer index), biases and BatchNormalization start at their defaults, and
    the global seeds are set to `config.seed` first.
    """
    keras.utils.set_random_seed(config.seed)
    conv = is_conv(config.arch)
    inputs = keras.Input(IMAGE_SHAPE if conv else (N_FEATURES,), name="inputs")
    h = _body(config, inputs)
    if conv:
        h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    head_init = make_initializer(config.init, _layer_seed(config, config.depth + 1))
    head = keras.layers.Dense(N_CLASSES, kernel_initializer=head_init, name="logits")
    logits = head(h)
    model = keras.Model(inputs, logits, name=config.key.replace("-", "_"))
    model.compile(
        optimizer=make_optimizer(config.optimizer, config.rate()),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=False,
        steps_per_execution=steps_per_execution,
    )
    return model


def weights_digest(model: keras.Model) -> str:
    """SHA-256 of all weights (trainable and not), in order, with shapes."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        array = np.ascontiguousarray(weight)
        digest.update(str((array.shape, array.dtype.str)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class ModelCache:
    """One traced model per group of configs that differ only in their init.

    `fit` traces its train step once per model, which for the deep nets costs
    as much as the training itself. `get` builds the config's own fresh model
    (`build_model`: its initial weights) and, when the previous config had the
    same `graph_key`, loads those weights into the already traced model and
    puts the optimizer back in its never-used state. `fresh` is the last
    config's own freshly built model (its layers carry its initializers).
    """

    def __init__(self, steps_per_execution: int = STEPS_PER_EXECUTION):
        self.steps_per_execution = steps_per_execution
        self._graph_key = None
        self._model = None
        self._optimizer_state = None
        self.fresh = None

    def get(self, config: RunConfig) -> keras.Model:
        """A compiled model of `config` in its initial state."""
        if config.graph_key != self._graph_key:
            self._model = None
            keras.backend.clear_session()
        fresh = build_model(config, self.steps_per_execution)
        self.fresh = fresh
        if self._model is None:
            fresh.optimizer.build(fresh.trainable_variables)
            self._graph_key = config.graph_key
            self._model = fresh
            self._optimizer_state = [v.numpy() for v in fresh.optimizer.variables]
            return fresh
        self._model.set_weights(fresh.get_weights())
        for variable, value in zip(
            self._model.optimizer.variables, self._optimizer_state, strict=True
        ):
            variable.assign(value)
        return self._model


# -- training ----------------------------------------------------------------


def _finite_or_string(value):
    """`value` as a float, or "NaN"/"Infinity"/"-Infinity" for JSON."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _from_json_number(value):
    """Inverse of `_finite_or_string` (lists too); other values unchanged."""
    if isinstance(value, list):
        return [_from_json_number(v) for v in value]
    if value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    return value


def versions() -> dict:
    """Versions of Python and the packages involved."""
    try:
        initdiag = importlib.metadata.version("keras_initdiag")
    except importlib.metadata.PackageNotFoundError:
        initdiag = None
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_initdiag": initdiag,
    }


def _dataset(task: Task, arch: str, batch_size: int, seed: int) -> tf.data.Dataset:
    """Training batches, reshuffled every epoch in a seeded order."""
    tf.random.set_seed(seed)
    data = tf.data.Dataset.from_tensor_slices((task.inputs(arch), task.y))
    data = data.shuffle(task.n, seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size, drop_remainder=True)


def _batch_statistics_metrics(model: keras.Model, x, y) -> tuple[float, float]:
    """Loss and accuracy with BatchNormalization on the whole set's statistics.

    One training-mode forward pass over the whole training set (no update of
    the weights; it does move BatchNormalization's moving averages, so it runs
    last). Differs from `evaluate` only for the BN archs, whose moving
    averages (momentum 0.99) still lag after a short training.
    """
    logits = model(x, training=True)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
    accuracy = np.mean(np.argmax(keras.ops.convert_to_numpy(logits), axis=1) == y)
    return float(loss), float(accuracy)


def train(
    config: RunConfig,
    task: Task,
    steps: int = STEPS,
    batch_size: int = BATCH_SIZE,
    cache: ModelCache | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> dict:
    """Train `config` on `task` for `steps` optimizer steps; a JSON-able record.

    `steps` must be a whole number of epochs (`task.n // batch_size` steps
    each). With a `cache`, consecutive configs of one group reuse one traced
    model (same initial weights as a fresh `build_model`, see `ModelCache`).
    `callbacks` are added to `fit`'s, after `TerminateOnNaN` (`midfit.py`
    attaches the diagnostics this way, to the very same training).
    """
    steps_per_epoch = task.n // batch_size
    if steps % steps_per_epoch:
        raise ValueError(f"steps={steps} is not a multiple of {steps_per_epoch}")
    start = time.perf_counter()
    model = (cache or ModelCache(steps_per_execution=1)).get(config)
    init_digest = weights_digest(model)
    x, y = task.inputs(config.arch), task.y
    initial_loss, initial_accuracy = model.evaluate(
        x, y, batch_size=EVAL_BATCH_SIZE, verbose=0
    )
    history = model.fit(
        _dataset(task, config.arch, batch_size, config.seed),
        epochs=steps // steps_per_epoch,
        shuffle=False,  # The dataset is shuffled, with a seed.
        verbose=0,
        callbacks=[keras.callbacks.TerminateOnNaN(), *callbacks],
    )
    curve = [float(v) for v in history.history["loss"]]
    stopped = bool(model.stop_training)
    steps_done = int(model.optimizer.iterations.numpy())
    curve_steps = [
        min(steps_per_epoch * (i + 1), steps_done) for i in range(len(curve))
    ]
    final_loss, final_accuracy = model.evaluate(
        x, y, batch_size=EVAL_BATCH_SIZE, verbose=0
    )
    batch_stats_loss, batch_stats_accuracy = _batch_statistics_metrics(model, x, y)
    values = [initial_loss, final_loss, *curve]
    nonfinite = stopped or not all(math.isfinite(v) for v in values)
    ratio = final_loss / task.entropy if math.isfinite(final_loss) else float("nan")
    return {
        "key": config.key,
        **dataclasses.asdict(config),
        "entropy": task.entropy,
        "initial_loss": _finite_or_string(initial_loss),
        "initial_accuracy": _finite_or_string(initial_accuracy),
        "final_loss": _finite_or_string(final_loss),
        "final_accuracy": _finite_or_string(final_accuracy),
        "final_over_entropy": _finite_or_string(ratio),
        "final_loss_batch_stats": _finite_or_string(batch_stats_loss),
        "final_accuracy_batch_stats": _finite_or_string(batch_stats_accuracy),
        "nonfinite": nonfinite,
        "terminated_on_nan": stopped,
        "loss_curve": [_finite_or_string(v) for v in curve],
        "accuracy_curve": [_finite_or_string(v) for v in history.history["accuracy"]],
        "curve_steps": curve_steps,
        "curve_kind": "mean training-mode batch loss over each epoch (fit)",
        "steps": steps,
        "steps_done": steps_done,
        "batch_size": batch_size,
        "n_train": task.n,
        "task_seed": task.seed,
        "params": int(model.count_params()),
        "init_weights_sha256": init_digest,
        "seconds": round(time.perf_counter() - start, 3),
        "versions": versions(),
    }


# -- results file ------------------------------------------------------------


def load_runs(path: str | os.PathLike) -> list[dict]:
    """Records of a JSONL results file (NaN/Inf strings back to floats).

    A truncated last line (an interrupted write) is ignored.
    """
    path = pathlib.Path(path)
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        runs.append({k: _from_json_number(v) for k, v in record.items()})
    return runs


def append_run(path: pathlib.Path, record: dict) -> None:
    """Append `record` as one standard-JSON line and flush it to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, allow_nan=False, sort_keys=False)
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def select(configs: Iterable[RunConfig], only: Sequence[str] | None):
    """The configs whose key contains any of the `only` substrings (all if none)."""
    if not only:
        return list(configs)
    return [c for c in configs if any(s in c.key for s in only)]


def _fmt(value) -> str:
    """A record number for the progress line."""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def run_grid(
    configs: Sequence[RunConfig],
    out: pathlib.Path,
    n: int = N_TRAIN,
    steps: int = STEPS,
    batch_size: int = BATCH_SIZE,
) -> int:
    """Train every config not yet in `out`, appending a line each; the count."""
    done = {r.get("key") for r in load_runs(out)}
    todo = [c for c in configs if c.key not in done]
    print(
        f"{len(configs)} configs, {len(configs) - len(todo)} already in {out}, "
        f"{len(todo)} to train ({steps} steps, batch {batch_size}, n={n})",
        flush=True,
    )
    task = make_task(n=n, seed=TASK_SEED)
    cache = ModelCache()
    for i, config in enumerate(todo, 1):
        record = train(config, task, steps=steps, batch_size=batch_size, cache=cache)
        append_run(out, record)
        print(
            f"[{i}/{len(todo)}] {config.key:36s} loss {_fmt(record['initial_loss'])}"
            f" -> {_fmt(record['final_loss'])} acc {_fmt(record['final_accuracy'])}"
            f" ({record['seconds']:.1f} s)",
            flush=True,
        )
    return len(todo)


# -- step-0 diagnoses ----------------------------------------------------------

#: The family `keras_initdiag` reads from each grid initializer.
FAMILIES = {
    "zeros": "constant",
    "small": "small_random",
    "large": "random",
    "xavier": "xavier",
    "lecun": "lecun",
    "he": "he",
    "orthogonal": "orthogonal",
}
DEFAULT_REPORTS = RESULTS / "trainability_reports.jsonl"
#: Samples of the probe batch (the first ones of the training set).
PROBE = 128


def _encode(value):
    return _finite_or_string(value) if isinstance(value, float) else value


def report_record(key: str, report) -> dict:
    """A step-0 report as a standard-JSON record (stats, layer facts, loss)."""
    return {
        "key": key,
        "layers": report.layers,
        "stats": {
            layer: {k: _encode(v) for k, v in stats.items()}
            for layer, stats in report.stats.items()
        },
        "info": {
            name: {k: _encode(v) for k, v in dataclasses.asdict(info).items()}
            for name, info in report.info.items()
        },
        "loss": _encode(report.loss),
        "optimizer": report.optimizer,
        "training": report.training,
        "chance_loss": _encode(report.chance_loss),
    }


def report_from_record(record: dict):
    """Inverse of `report_record`: a `DiagnosticReport` without flags."""
    from keras_initdiag.diagnostics.report import DiagnosticReport, LayerInfo

    info = {}
    for name, fields in record["info"].items():
        fields = {
            k: tuple(v) if isinstance(v, list) else _from_json_number(v)
            for k, v in fields.items()
        }
        info[name] = LayerInfo(**fields)
    return DiagnosticReport(
        step=0,
        layers=list(record["layers"]),
        stats={
            layer: {k: float(_from_json_number(v)) for k, v in stats.items()}
            for layer, stats in record["stats"].items()
        },
        info=info,
        loss=float(_from_json_number(record["loss"])),
        optimizer=record["optimizer"],
        training=record["training"],
        chance_loss=float(_from_json_number(record.get("chance_loss", "NaN"))),
    )


def diagnose_grid(runs_path: pathlib.Path, out: pathlib.Path) -> int:
    """Diagnose every trained network at step 0, as `fit` would see it.

    Each network is rebuilt with `build_model` (its initial weights are
    checked against the training record's SHA-256) and diagnosed with the
    package's defaults: the compiled loss, training mode, a probe batch of
    the first `PROBE` training samples. Networks of one architecture share
    one model (and one traced probe): the next network's weights are loaded
    into it, and its layer facts get the network's own initializer family.
    """
    import keras_initdiag

    runs = load_runs(runs_path)
    done = {r["key"] for r in load_runs(out)}
    todo = [r for r in runs if r["key"] not in done]
    print(f"{len(runs)} runs, {len(todo)} to diagnose", flush=True)
    task = make_task(n=N_TRAIN, seed=TASK_SEED)
    shared, shared_key = None, None
    for i, run in enumerate(todo, 1):
        config = RunConfig.from_record(run)
        start = time.perf_counter()
        fresh = build_model(config)
        if weights_digest(fresh) != run["init_weights_sha256"]:
            raise RuntimeError(f"{config.key}: initial weights differ from training")
        group = (config.arch, config.depth, config.activation)
        if group != shared_key:
            keras.backend.clear_session()
            shared, shared_key = build_model(config), group
        shared.set_weights(fresh.get_weights())
        x = task.inputs(config.arch)[:PROBE]
        report = keras_initdiag.diagnose(shared, x, task.y[:PROBE])
        report.optimizer = type(make_optimizer(config.optimizer)).__name__
        report.info = {
            name: dataclasses.replace(info, initializer=FAMILIES[config.init])
            if info.weight_shape
            else info
            for name, info in report.info.items()
        }
        append_run(out, report_record(config.key, report))
        print(
            f"[{i}/{len(todo)}] {config.key:36s} ({time.perf_counter() - start:.1f} s)",
            flush=True,
        )
    return len(todo)


# -- judging the flags against the outcomes -----------------------------------

#: Flag kinds that say "this network will not train" at step 0: every
#: non-advisory kind but `update_ratio`, which needs training steps.
SERIOUS = tuple(
    kind
    for kind in rules.FLAG_KINDS
    if kind not in rules.ADVISORY and kind != "update_ratio"
)
#: A network fails when its training loss after the budget is above this
#: fraction of the chance loss (see `failed`).
FAIL_FRACTION = 0.5


def final_loss(run: dict) -> float:
    """The run's final training loss, the better of inference and batch stats.

    BatchNormalization's moving averages may still lag after a short run
    (`evaluate` then reports a high loss for a network that learned); the
    training-mode pass over the whole set does not have that lag.
    """
    values = [run["final_loss"], run.get("final_loss_batch_stats", math.nan)]
    finite = [v for v in values if math.isfinite(v)]
    return min(finite) if finite else math.inf


def failed(run: dict) -> bool:
    """Whether a network failed to train.

    It failed when its loss went non-finite, or when after the budget (160
    steps, 10 epochs) its training loss is still above half the chance loss
    (`FAIL_FRACTION * H`, H = ln 4 = 1.39 nats): it recovered less than half
    of what predicting the class frequencies leaves. Every healthy depth-2
    network ends at 0.1-0.35 nats (90-98% accuracy) in the same budget.
    """
    if run["nonfinite"]:
        return True
    return final_loss(run) > FAIL_FRACTION * run["entropy"]


def failed_by(record: dict, epoch: int) -> bool:
    """Whether the run had not trained by the end of `epoch` (1-based).

    Read from the mean training loss of that epoch (`loss_curve`), against
    `FAIL_FRACTION` of chance; a run stopped before it (a
    non-finite loss) failed.
    """
    curve = [_from_json_number(v) for v in record["loss_curve"]]
    if record["nonfinite"] or len(curve) < epoch:
        return True
    loss = curve[epoch - 1]
    return not math.isfinite(loss) or loss > FAIL_FRACTION * record["entropy"]


def serious_flags(report, thresholds=None) -> list:
    """The report's flags of the `SERIOUS` kinds under `thresholds`."""
    return [f for f in rules.judge(report, thresholds) if f.kind in SERIOUS]


def confusion(runs: list[dict], reports: dict, thresholds=None) -> dict:
    """Counts and the lists of misses for the flags against the outcomes."""
    rows = []
    for run in runs:
        report = reports.get(run["key"])
        if report is None:
            continue
        flags = serious_flags(report, thresholds)
        rows.append((run, flags, failed(run)))
    tp = [r for r in rows if r[1] and r[2]]
    fp = [r for r in rows if r[1] and not r[2]]
    fn = [r for r in rows if not r[1] and r[2]]
    tn = [r for r in rows if not r[1] and not r[2]]
    precision = len(tp) / max(len(tp) + len(fp), 1)
    recall = len(tp) / max(len(tp) + len(fn), 1)
    return {
        "n": len(rows),
        "tp": len(tp),
        "fp": len(fp),
        "fn": len(fn),
        "tn": len(tn),
        "precision": precision,
        "recall": recall,
        "false_alarms": [
            (r[0]["key"], [f.kind for f in r[1]], final_loss(r[0])) for r in fp
        ],
        "misses": [(r[0]["key"], final_loss(r[0])) for r in fn],
    }


def kind_table(runs: list[dict], reports: dict, thresholds=None) -> dict:
    """Per flag kind: runs it flags, how many failed, and the same when alone."""
    table = {kind: [0, 0, 0, 0] for kind in SERIOUS}
    for run in runs:
        report = reports.get(run["key"])
        if report is None:
            continue
        kinds = {f.kind for f in serious_flags(report, thresholds)}
        for kind in kinds:
            row = table[kind]
            row[0] += 1
            row[1] += failed(run)
            if len(kinds) == 1:
                row[2] += 1
                row[3] += failed(run)
    return {kind: tuple(row) for kind, row in table.items() if row[0]}


def judge_grid(
    runs_path: pathlib.Path, reports_path: pathlib.Path, thresholds=None
) -> dict:
    """Print precision and recall of the step-0 flags on the grid; the summary."""
    runs = load_runs(runs_path)
    reports = {r["key"]: report_from_record(r) for r in load_runs(reports_path)}
    summary = {"all": confusion(runs, reports, thresholds)}
    for optimizer in OPTIMIZERS:
        subset = [r for r in runs if r["optimizer"] == optimizer]
        summary[optimizer] = confusion(subset, reports, thresholds)
    for family in sorted({r["key"].split("-")[0] for r in runs}):
        subset = [r for r in runs if r["key"].split("-")[0] == family]
        summary[family] = confusion(subset, reports, thresholds)
    print(
        "| networks | n | flagged & failed | flagged, trained | missed | quiet, "
        "trained | precision | recall |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, c in summary.items():
        print(
            f"| {name} | {c['n']} | {c['tp']} | {c['fp']} | {c['fn']} | {c['tn']} | "
            f"{c['precision']:.3f} | {c['recall']:.3f} |"
        )
    print()
    print(
        "| flag kind | runs flagged | of which failed | flagged by it alone | failed |"
    )
    print("|---|---|---|---|---|")
    for kind, (flagged, failed_, alone, alone_failed) in kind_table(
        runs, reports, thresholds
    ).items():
        print(f"| {kind} | {flagged} | {failed_} | {alone} | {alone_failed} |")
    c = summary["all"]
    for key, kinds, loss in c["false_alarms"]:
        print(f"false alarm: {key} flagged {kinds}, trained to {loss:.3f}")
    for key, loss in c["misses"]:
        print(f"miss: {key} ended at {loss:.3f}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``train``, ``diagnose`` and ``judge`` (see the module)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train_cmd = commands.add_parser("train", help="train the grid (resumable)")
    train_cmd.add_argument(
        "--quick", action="store_true", help="tiny grid and sizes, seconds"
    )
    train_cmd.add_argument(
        "--only", nargs="+", metavar="SUBSTRING", help="keys containing any of these"
    )
    train_cmd.add_argument("--out", type=pathlib.Path, help="JSONL results file")
    diagnose_cmd = commands.add_parser(
        "diagnose", help="diagnose every trained network at step 0 (resumable)"
    )
    judge_cmd = commands.add_parser(
        "judge", help="precision and recall of the flags against the outcomes"
    )
    for command in (diagnose_cmd, judge_cmd):
        command.add_argument("--runs", type=pathlib.Path, default=DEFAULT_OUT)
        command.add_argument("--reports", type=pathlib.Path, default=DEFAULT_REPORTS)
    args = parser.parse_args(argv)

    if args.command == "diagnose":
        diagnose_grid(args.runs, args.reports)
        return 0
    if args.command == "judge":
        judge_grid(args.runs, args.reports)
        return 0
    if args.quick:
        configs, sizes = quick_grid(), QUICK
        out = args.out or QUICK_OUT
    else:
        configs = grid()
        sizes = {"n": N_TRAIN, "steps": STEPS, "batch_size": BATCH_SIZE}
        out = args.out or DEFAULT_OUT
    run_grid(select(configs, args.only), out, **sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
