"""Overhead of keras_initdiag diagnostics, side by side with the alternatives.

Measures in one run, with interleaved repetitions and warm-up excluded:

* fit time of plain `fit`, `fit` + `InitDiagnostics` (update_freq "auto",
  the default, "epoch", 10 and 1; and "epoch" with `batch_gradients=True`:
  the in-step statistics of every step, copied to the host every 32
  steps), `fit` +
  `keras.callbacks.TensorBoard(histogram_freq=1)` and `fit` + a hand-rolled
  eager reference (eager `GradientTape`, one `.numpy()` per statistic per
  layer) every 10 batches, as ratios to plain `fit`;
* one diagnosis (`Diagnoser.run`, warm; full, and light with `searches=False` as
  the callback's per-batch schedule runs it) against one
  `model.train_on_batch` on the same batch size, per tapped layer, for 20, 50
  and 100 layers, plus the eager reference and the TensorBoard writes that
  the callback adds; the same diagnoses on a smaller probe batch
  (`--small-probe`, 32 samples) against the same training step;
* the diagnoses (report records) and depth-profile images each callback
  wrote over all its fits, read back from its event files after timing;
* the number of traces of the diagnosis function (must stay 1 per model);
* per model of the zoo (`benchmarks/zoo.py`: ResNet50, MobileNetV2, a
  ResNet-20, a Transformer block, LSTM and GRU text models, and the two
  failing nets): one diagnosis, eager and compiled, and the compile, against
  one train step on 32 samples;
* extra peak memory: resident set size (VmHWM, reset through
  `/proc/self/clear_refs`) and Python-heap peak (`tracemalloc`).

Results go to `benchmarks/results/<name>.json`; a markdown table to stdout.

Usage:
    python benchmarks/overhead.py --diag-reps 10  # the published run
    python benchmarks/overhead.py --quick --name quick   # a few seconds
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_initdiag  # noqa: E402
from keras_initdiag.diagnostics.engine import Diagnoser  # noqa: E402
from keras_initdiag.diagnostics.probe import EAGER_CALLS  # noqa: E402
from keras_initdiag.tensorboard import DiagnosticsWriter  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results"
#: Per-epoch schedules: timed over whole epochs.
EPOCH_GROUP = (
    "plain",
    "initdiag_auto",
    "initdiag_epoch",
    "initdiag_batch_gradients",
    "tensorboard_hist1",
)
#: Per-batch schedules: timed over `--steps` batches.
BATCH_GROUP = (
    "plain_steps",
    "initdiag_freq10",
    "initdiag_freq1",
    "eager_reference_freq10",
)
FIT_CONFIGS = EPOCH_GROUP + BATCH_GROUP
#: The cost targets (issue 19): the default callback ("auto"), the in-step
#: statistics of every step (`batch_gradients=True`), and the probe every 10
#: and every step. The zoo's targets (a repeated diagnosis at most 1.5x a
#: train step; ResNet50's first diagnosis under 3 s) are read from its table.
TARGETS = {
    "initdiag_auto": 1.02,
    "initdiag_batch_gradients": 1.03,
    "initdiag_freq10": 1.05,
    "initdiag_freq1": 1.5,
}
DIAGNOSIS_TARGET = 0.5


# -- models and data ---------------------------------------------------------


def mlp(depth: int, width: int, features: int, classes: int) -> keras.Model:
    """`depth` Dense(width) ReLU layers and a softmax head."""
    layers = [keras.Input((features,))]
    layers += [
        keras.layers.Dense(width, activation="relu", kernel_initializer="he_normal")
        for _ in range(depth)
    ]
    layers.append(keras.layers.Dense(classes, activation="softmax"))
    return keras.Sequential(layers, name=f"mlp{depth}")


def cnn(convs: int, size: int, classes: int) -> keras.Model:
    """`convs` 3x3 convolutions, each batch-normalized then ReLU (the
    published conv-BN-ReLU block: no conv bias), pooled every second one,
    and a head. BatchNorm because issue 19 asks for a conv net with it."""
    layers = [keras.Input((size, size, 3))]
    filters = 16
    for i in range(convs):
        layers += [
            keras.layers.Conv2D(
                filters,
                3,
                padding="same",
                use_bias=False,
                kernel_initializer="he_normal",
            ),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
        ]
        if i % 2 == 1 and size > 4:
            layers.append(keras.layers.MaxPooling2D())
            size //= 2
            filters = min(2 * filters, 64)
    layers += [
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(classes, activation="softmax"),
    ]
    return keras.Sequential(layers, name=f"cnn{convs}_bn")


def compiled(model: keras.Model) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss="sparse_categorical_crossentropy",
    )
    return model


def data(kind: str, samples: int, args) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    if kind == "cnn":
        x = rng.standard_normal((samples, args.image_size, args.image_size, 3))
    else:
        x = rng.standard_normal((samples, args.features))
    y = rng.integers(0, args.classes, samples)
    return x.astype(np.float32), y.astype(np.int32)


def build(kind: str, depth: int, args) -> keras.Model:
    if kind == "cnn":
        return compiled(cnn(depth, args.image_size, args.classes))
    return compiled(mlp(depth, args.width, args.features, args.classes))


# -- the hand-rolled eager reference -------------------------------------------


class EagerReference:
    """How statistics are usually hand-rolled: eager tape, `.numpy()` per number.

    Computes, for every layer with a kernel, activation mean and variance,
    back-propagated gradient RMS, weight variance, weight-gradient norm,
    gradient-to-weight ratio, dead fraction and non-finite counts (9 of the
    probe's 12 numbers; no duplicate-unit or saturation search), one host copy
    per number.
    """

    def __init__(self, model: keras.Model):
        self.model = model
        self.layers = [layer for layer in model.layers if layer.trainable_weights]
        self.loss = keras.losses.get(model.loss)

    def __call__(self, x, y) -> dict:
        weights = [la.trainable_weights for la in self.layers]
        flat = [w.value for ws in weights for w in ws]
        with tf.GradientTape() as tape:
            # Layer by layer (Sequential models), keeping each tapped output.
            h, outputs = tf.convert_to_tensor(x), []
            for layer in self.model.layers:
                h = layer(h, training=False)
                if layer.trainable_weights:
                    tape.watch(h)
                    outputs.append(h)
            loss = tf.reduce_mean(self.loss(y, h))
        grads = tape.gradient(loss, list(outputs) + flat)
        out_grads, w_grads = grads[: len(outputs)], grads[len(outputs) :]
        result, start = {}, 0
        for layer, out, g_out, ws in zip(self.layers, outputs, out_grads, weights):
            g_w = w_grads[start : start + len(ws)]
            start += len(ws)
            kernel = ws[0].value
            norm_g = tf.sqrt(sum(tf.reduce_sum(tf.square(g)) for g in g_w))
            norm_w = tf.sqrt(sum(tf.reduce_sum(tf.square(w.value)) for w in ws))
            units = tf.reshape(out, [-1, out.shape[-1]])
            spread = tf.reduce_max(units, 0) - tf.reduce_min(units, 0)
            result[layer.name] = {
                "activation_mean": float(tf.reduce_mean(out).numpy()),
                "activation_variance": float(tf.math.reduce_variance(out).numpy()),
                # None for a softmax head: Keras's loss reads its logits.
                "activation_gradient_rms": float("nan")
                if g_out is None
                else float(tf.sqrt(tf.reduce_mean(tf.square(g_out))).numpy()),
                "weight_variance": float(tf.math.reduce_variance(kernel).numpy()),
                "gradient_norm": float(norm_g.numpy()),
                "gradient_to_weight_ratio": float((norm_g / norm_w).numpy()),
                "dead_fraction": float(
                    tf.reduce_mean(tf.cast(spread <= 0.0, tf.float32)).numpy()
                ),
                "nonfinite_activations": float(
                    tf.reduce_sum(tf.cast(~tf.math.is_finite(out), tf.float32)).numpy()
                ),
                "nonfinite_gradients": float(
                    sum(
                        tf.reduce_sum(tf.cast(~tf.math.is_finite(g), tf.float32))
                        for g in g_w
                    ).numpy()
                ),
            }
        return result


class EagerReferenceCallback(keras.callbacks.Callback):
    """Runs `EagerReference` on a fixed batch every `update_freq` batches."""

    def __init__(self, probe_data, update_freq: int):
        super().__init__()
        self.x, self.y = probe_data
        self.update_freq = update_freq
        self.reference = None
        self.count = 0

    def on_train_begin(self, logs=None):
        if self.reference is None:
            self.reference = EagerReference(self.model)

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.update_freq == 0:
            self.reference(self.x, self.y)
            self.count += 1


# -- measurement helpers -----------------------------------------------------


def _proc_status(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0  # kB -> MiB
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Resets VmHWM to the current RSS (Linux >= 4.0).
        return True
    except OSError:
        return False


def peak_rss_delta(fn):
    """Run `fn`; return `(result, extra peak RSS in MiB or None, method)`."""
    if _reset_peak_rss():
        before = _proc_status("VmRSS")
        result = fn()
        peak = _proc_status("VmHWM")
        if before is not None and peak is not None:
            return result, max(peak - before, 0.0), "VmHWM after clear_refs"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    result = fn()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return result, after - before, "ru_maxrss growth (lower bound)"


def python_heap_peak(fn) -> float:
    """Peak Python-heap allocation (MiB) of `fn`, by `tracemalloc`."""
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def summary(values: list[float]) -> dict:
    values = [float(v) for v in values]
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": values,
    }


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _traces(callback) -> int | None:
    """Traces of the callback's probe, through the public `diagnoser` handle."""
    diagnoser = getattr(callback, "diagnoser", None)
    return None if diagnoser is None else diagnoser.probe.traces


def _batch_records(callback) -> int | None:
    """Batches whose gradient norms the callback recorded (`batch_gradients`)."""
    if not getattr(callback, "batch_gradients", False):
        return None
    return len(callback.batch_gradient_norms)


def _event_counts(log_dir: str) -> dict | None:
    """Diagnoses (report records) and depth-profile images written under `log_dir`.

    Read after all timed fits of a configuration (not timed).
    """
    from keras_initdiag.tensorboard.events import DEPTH_PROFILE_TAG, REPORT_TAG

    files = sorted(pathlib.Path(log_dir).rglob("events.out.tfevents*"))
    if not files:
        return None
    counts = {"reports": 0, "depth_profile_images": 0}
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == REPORT_TAG:
                    counts["reports"] += 1
                elif value.tag.startswith(DEPTH_PROFILE_TAG):
                    counts["depth_profile_images"] += 1
    return counts


# -- fit overhead --------------------------------------------------------------


def _callbacks(config: str, probe, log_dir: str) -> list:
    def initdiag(freq, batch_gradients=False):
        return keras_initdiag.InitDiagnostics(
            log_dir=log_dir,
            probe_data=probe,
            update_freq=freq,
            on_flag="ignore",
            verbose=0,
            batch_gradients=batch_gradients,
        )

    if config.startswith("plain"):
        return []
    if config == "initdiag_auto":
        return [initdiag("auto")]
    if config == "initdiag_epoch":
        return [initdiag("epoch")]
    if config == "initdiag_batch_gradients":
        return [initdiag("epoch", batch_gradients=True)]
    if config.startswith("initdiag_freq"):
        return [initdiag(int(config[len("initdiag_freq") :]))]
    if config == "tensorboard_hist1":
        return [keras.callbacks.TensorBoard(log_dir=log_dir, histogram_freq=1)]
    if config == "eager_reference_freq10":
        return [EagerReferenceCallback(probe, 10)]
    raise ValueError(config)


def fit_benchmark(kind: str, depth: int, samples: int, args, log_root: str) -> dict:
    """Interleaved fits of every configuration on one model architecture.

    Two groups, each with its own plain-fit reference: per-epoch schedules fit
    whole epochs (`--epochs` of them); per-batch schedules fit `--steps`
    batches (`steps_per_epoch`), which is enough to measure a per-step cost.
    """
    x, y = data(kind, samples, args)
    probe = (x[: args.probe_batch], y[: args.probe_batch])
    steps_full = -(-samples // args.batch_size)
    groups = {
        "epoch": (EPOCH_GROUP, None, args.epochs),
        "batch": (BATCH_GROUP, min(args.steps, steps_full), 1),
    }
    runs = {}
    for group, (configs, _, _) in groups.items():
        for config in configs:
            keras.utils.set_random_seed(1)
            model = build(kind, depth, args)
            log_dir = os.path.join(log_root, f"{model.name}_{group}_{config}")
            callbacks = _callbacks(config, probe, log_dir)
            runs[group, config] = (model, callbacks, log_dir)
            # Warm-up (excluded): traces the train step and the probe, opens
            # the writers; the same data and arguments as the timed fits.
            model.fit(
                x,
                y,
                batch_size=args.batch_size,
                epochs=1,
                verbose=0,
                callbacks=callbacks,
                shuffle=False,
                steps_per_epoch=2,
            )
    keys = list(runs)
    times = {k: [] for k in keys}
    rss = {k: [] for k in keys}
    rss_method = None
    for rep in range(args.reps):
        shift = rep % len(keys)
        order = keys[shift:] + keys[:shift]
        if rep % 2:
            order = order[::-1]
        for key in order:
            model, callbacks, _ = runs[key]
            _, steps, epochs = groups[key[0]]

            def run(model=model, callbacks=callbacks, steps=steps, epochs=epochs):
                return timed(
                    lambda: model.fit(
                        x,
                        y,
                        batch_size=args.batch_size,
                        epochs=epochs,
                        verbose=0,
                        callbacks=callbacks,
                        shuffle=False,
                        steps_per_epoch=steps,
                    )
                )

            seconds, extra, rss_method = peak_rss_delta(run)
            times[key].append(seconds)
            rss[key].append(extra)
    result = {
        "model": runs[keys[0]][0].name,
        "samples": samples,
        "batch_size": args.batch_size,
        "steps_per_epoch": steps_full,
        "epoch_group": {"epochs_per_fit": args.epochs, "steps": steps_full},
        "batch_group": {"epochs_per_fit": 1, "steps": groups["batch"][1]},
        "peak_rss_method": rss_method,
        "configs": {},
    }
    for group, config in keys:
        plain = times[group, "plain" if group == "epoch" else "plain_steps"]
        ratios = [t / p for t, p in zip(times[group, config], plain)]
        _, callbacks, log_dir = runs[group, config]
        events = _event_counts(log_dir) if config.startswith("initdiag") else None
        result["configs"][config] = {
            "group": group,
            "fit_seconds": summary(times[group, config]),
            "ratio_to_plain": summary(ratios),
            "extra_peak_rss_mib": summary(rss[group, config]),
            "traces": _traces(callbacks[0]) if callbacks else None,
            "batch_gradient_records": _batch_records(callbacks[0])
            if callbacks
            else None,
            # Over the warm-up fit and every timed fit (1 + reps fits).
            "fits": 1 + args.reps,
            "events_written": events,
        }
    return result


# -- one diagnosis vs one training step ------------------------------------------


def diagnosis_benchmark(kind: str, depth: int, args, log_root: str) -> dict:
    """Warm `Diagnoser.run` vs warm `train_on_batch` on one batch, interleaved."""
    keras.utils.set_random_seed(2)
    x, y = data(kind, args.batch_size, args)
    model = build(kind, depth, args)
    cold_start = time.perf_counter()
    diagnoser = Diagnoser(model, loss="sparse_categorical_crossentropy")
    report = diagnoser.measure(x, y)
    cold = time.perf_counter() - cold_start
    # The probe's other eager calls, then the call that compiles it.
    eager = [timed(lambda: diagnoser.measure(x, y, validate=False))]
    while diagnoser.probe.calls < EAGER_CALLS:
        eager.append(timed(lambda: diagnoser.measure(x, y, validate=False)))
    compile_seconds = timed(lambda: diagnoser.measure(x, y, validate=False))
    light = diagnoser.measure(x, y, validate=False, searches=False)
    # The same model probed with a smaller batch (`--small-probe` samples), by
    # its own Diagnoser so that the main probe keeps one trace.
    small = None
    if 0 < args.small_probe < len(x):
        xs, ys = x[: args.small_probe], y[: args.small_probe]
        small = Diagnoser(model, loss="sparse_categorical_crossentropy")
        small.probe.calls = EAGER_CALLS  # compiled from its first call
        small.measure(xs, ys)
        small.measure(xs, ys, validate=False, searches=False)
    reference = EagerReference(model)
    reference(x, y)
    model.train_on_batch(x, y)
    writers = {
        "write_seconds": DiagnosticsWriter(log_root, subdir=f"{model.name}_w"),
        "write_no_image_seconds": DiagnosticsWriter(
            log_root, subdir=f"{model.name}_wn", depth_profile=False
        ),
        # What the callback writes per batch with an int `update_freq`: a
        # light report (no duplicate searches), no image.
        "write_light_seconds": DiagnosticsWriter(
            log_root, subdir=f"{model.name}_wl", depth_profile=False
        ),
    }
    written = {key: report for key in writers}
    written["write_light_seconds"] = light
    # Three warm-up writes (kept from the runs before the writer wrote one
    # Summary protobuf per diagnosis, when it compiled at the third write);
    # the timed writes are the steady state.
    for _ in range(3):
        for key, writer in writers.items():
            writer.write(written[key])
            writer.flush()
    tasks = {
        "diagnosis_seconds": lambda: diagnoser.measure(x, y),
        "diagnosis_unvalidated_seconds": lambda: diagnoser.measure(
            x, y, validate=False
        ),
        "diagnosis_light_seconds": lambda: diagnoser.measure(
            x, y, validate=False, searches=False
        ),
        "train_step_seconds": lambda: model.train_on_batch(x, y),
        "eager_reference_seconds": lambda: reference(x, y),
    }
    if small is not None:
        tasks["diagnosis_small_seconds"] = lambda: small.measure(xs, ys, validate=False)
        tasks["diagnosis_small_light_seconds"] = lambda: small.measure(
            xs, ys, validate=False, searches=False
        )
    for key, writer in writers.items():
        tasks[key] = lambda w=writer, r=written[key]: (w.write(r), w.flush())
    samples = {key: [] for key in tasks}
    for rep in range(args.diag_reps):
        keys = list(tasks)
        keys = keys[rep % len(keys) :] + keys[: rep % len(keys)]
        for key in keys:
            samples[key].append(timed(tasks[key]))
    for writer in writers.values():
        writer.close()
    tapped = len(report.layers)
    diag, step = samples["diagnosis_seconds"], samples["train_step_seconds"]
    full = samples["diagnosis_unvalidated_seconds"]
    light_s = samples["diagnosis_light_seconds"]
    _, diag_rss, rss_method = peak_rss_delta(lambda: diagnoser.measure(x, y))
    _, step_rss, _ = peak_rss_delta(lambda: model.train_on_batch(x, y))
    _, ref_rss, _ = peak_rss_delta(lambda: reference(x, y))
    result = {
        "model": model.name,
        "tapped_layers": tapped,
        "batch_size": args.batch_size,
        "cold_first_diagnosis_seconds": cold,
        "eager_diagnosis_seconds": summary(eager),
        "compile_and_first_compiled_seconds": compile_seconds,
        "traces": diagnoser.probe.traces,
        "ratio_to_train_step": summary([d / s for d, s in zip(diag, step)]),
        # What the callback calls: unvalidated; full at step 0 and per epoch,
        # light on the other diagnoses of an int `update_freq`.
        "full_ratio_to_train_step": summary([d / s for d, s in zip(full, step)]),
        "light_ratio_to_train_step": summary([d / s for d, s in zip(light_s, step)]),
        "seconds_per_tapped_layer": summary([d / tapped for d in diag]),
        "light_seconds_per_tapped_layer": summary([d / tapped for d in light_s]),
        "eager_reference_ratio": summary(
            [r / d for r, d in zip(samples["eager_reference_seconds"], diag)]
        ),
        "python_heap_peak_mib": {
            "diagnosis": python_heap_peak(lambda: diagnoser.measure(x, y)),
            "train_step": python_heap_peak(lambda: model.train_on_batch(x, y)),
            "eager_reference": python_heap_peak(lambda: reference(x, y)),
        },
        "extra_peak_rss_mib": {
            "method": rss_method,
            "diagnosis": diag_rss,
            "train_step": step_rss,
            "eager_reference": ref_rss,
        },
    }
    if small is not None:
        result["small_probe"] = {
            "samples": args.small_probe,
            "traces": small.probe.traces,
            "full_ratio_to_train_step": summary(
                [d / s for d, s in zip(samples["diagnosis_small_seconds"], step)]
            ),
            "light_ratio_to_train_step": summary(
                [d / s for d, s in zip(samples["diagnosis_small_light_seconds"], step)]
            ),
        }
    for key, values in samples.items():
        result[key] = summary(values)
    return result


# -- the zoo: one diagnosis vs one train step per published model ---------------


def zoo_benchmark(entries, reps: int) -> list[dict]:
    """Per zoo model: train step, eager and compiled diagnosis, the compile.

    A diagnosis runs eagerly for the probe's first `EAGER_CALLS` calls (a
    per-epoch schedule of a few epochs never compiles), then compiled.
    Batches of 32 samples; medians of `reps` warm calls.
    """
    rows = []
    for entry in entries:
        keras.backend.clear_session()
        rows.append(_zoo_row(entry, reps))
        print(f"zoo {entry.name} done", file=sys.stderr)
    return rows


def _zoo():
    """`benchmarks/zoo.py`, imported from beside this script."""
    import importlib.util

    if "zoo" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "zoo", pathlib.Path(__file__).parent / "zoo.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["zoo"] = module
        spec.loader.exec_module(module)
    return sys.modules["zoo"]


def _zoo_row(entry, reps: int) -> dict:
    zoo = _zoo()
    keras.utils.set_random_seed(0)
    model = entry.build()
    x, y = zoo.batch(entry, n=32)
    model.train_on_batch(x, y)  # traces the train step
    step = [timed(lambda: model.train_on_batch(x, y)) for _ in range(reps)]
    diagnoser = Diagnoser(model)
    first = timed(lambda: diagnoser.measure(x, y))
    eager = []
    while diagnoser.probe.calls < EAGER_CALLS:
        eager.append(timed(lambda: diagnoser.measure(x, y, validate=False)))
    compile_seconds = timed(lambda: diagnoser.measure(x, y, validate=False))
    compiled = [
        timed(lambda: diagnoser.measure(x, y, validate=False)) for _ in range(reps)
    ]
    step_s = statistics.median(step)
    return {
        "model": entry.name,
        "tapped_layers": len(diagnoser.tapset.taps),
        "parameters": model.count_params(),
        "train_step_seconds": summary(step),
        "first_diagnosis_seconds": first,
        "eager_diagnosis_seconds": summary(eager),
        "compile_and_first_compiled_seconds": compile_seconds,
        "compiled_diagnosis_seconds": summary(compiled),
        "eager_ratio_to_train_step": statistics.median(eager) / step_s,
        "compiled_ratio_to_train_step": statistics.median(compiled) / step_s,
        "traces": diagnoser.probe.traces,
    }


# -- report --------------------------------------------------------------------


def _git_state() -> dict:
    """The commit the package was measured at, and whether its files were dirty."""
    import subprocess

    root = pathlib.Path(__file__).parents[1]

    def git(*cmd):
        try:
            return subprocess.run(
                ["git", *cmd], cwd=root, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty_package_files": git("status", "--short", "keras_initdiag").splitlines(),
    }


def machine() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in f if "model name" in line),
                "",
            )
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "load_average_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_initdiag": keras_initdiag.__version__,
        "platform": platform.platform(),
        "git": _git_state(),
    }


def _fmt(s: dict, digits: int = 3) -> str:
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


def markdown(results: dict) -> str:
    lines = ["## Fit time (ratio to plain fit: median [min-max] of paired reps)", ""]
    lines.append(
        "| model | config | timed | fit s | ratio | target | extra peak RSS MiB "
        "| traces | reports / images written (all fits) |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for fit in results["fit"]:
        for config, r in fit["configs"].items():
            target = TARGETS.get(config)
            met = ""
            if target is not None:
                met = f"<= {target}x " + (
                    "met" if r["ratio_to_plain"]["median"] <= target else "MISSED"
                )
            group = fit[f"{r['group']}_group"]
            span = f"{group['epochs_per_fit']} x {group['steps']} steps"
            lines.append(
                f"| {fit['model']} | {config} | {span} | {_fmt(r['fit_seconds'], 2)} | "
                f"{_fmt(r['ratio_to_plain'])} | {met} | "
                f"{r['extra_peak_rss_mib']['median']:.1f} | {r['traces']} | "
                + (
                    f"{ev['reports']} / {ev['depth_profile_images']} "
                    f"({r['fits']} fits) |"
                    if (ev := r.get("events_written"))
                    else " |"
                )
            )
    lines += [
        "",
        "## One diagnosis vs one training step (same batch, warm)",
        "",
        "Full = `run(validate=False)` (step 0, once per epoch, the end of "
        "training); light = "
        "`run(validate=False, searches=False)` (the other diagnoses of an int "
        "`update_freq`). Ratios: median [min-max] of paired reps; target <= 0.5.",
        "",
        "| model | tapped layers | full ms | light ms | train step ms "
        "| full / step | light / step | light us per layer "
        "| eager ref / full (validated) | write ms: full (no image) / light "
        "| traces | small probe: full / step, light / step |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in results["diagnosis"]:
        ms = {
            k: d[k]["median"] * 1e3
            for k in (
                "diagnosis_unvalidated_seconds",
                "diagnosis_light_seconds",
                "train_step_seconds",
                "write_seconds",
                "write_no_image_seconds",
                "write_light_seconds",
            )
        }
        lines.append(
            f"| {d['model']} | {d['tapped_layers']} "
            f"| {ms['diagnosis_unvalidated_seconds']:.1f} "
            f"| {ms['diagnosis_light_seconds']:.1f} "
            f"| {ms['train_step_seconds']:.1f} "
            f"| {_fmt(d['full_ratio_to_train_step'], 2)} "
            f"| {_fmt(d['light_ratio_to_train_step'], 2)} "
            f"| {d['light_seconds_per_tapped_layer']['median'] * 1e6:.0f} "
            f"| {d['eager_reference_ratio']['median']:.1f}x "
            f"| {ms['write_seconds']:.1f} ({ms['write_no_image_seconds']:.1f}) / "
            f"{ms['write_light_seconds']:.1f} | {d['traces']} | "
            + (
                f"{sp['samples']}: {_fmt(sp['full_ratio_to_train_step'], 2)}, "
                f"{_fmt(sp['light_ratio_to_train_step'], 2)} |"
                if (sp := d.get("small_probe"))
                else " |"
            )
        )
    if results.get("zoo"):
        lines += [
            "",
            "## The zoo: one diagnosis vs one train step (32 samples, warm)",
            "",
            "| model | tapped nodes | params | train step ms | first diagnosis s "
            "| eager ms (/ step) | compile s | compiled ms (/ step) | traces |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for z in results["zoo"]:
            lines.append(
                f"| {z['model']} | {z['tapped_layers']} | {z['parameters']:,} "
                f"| {z['train_step_seconds']['median'] * 1e3:.0f} "
                f"| {z['first_diagnosis_seconds']:.2f} "
                f"| {z['eager_diagnosis_seconds']['median'] * 1e3:.0f} "
                f"({z['eager_ratio_to_train_step']:.1f}x) "
                f"| {z['compile_and_first_compiled_seconds']:.1f} "
                f"| {z['compiled_diagnosis_seconds']['median'] * 1e3:.0f} "
                f"({z['compiled_ratio_to_train_step']:.1f}x) | {z['traces']} |"
            )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", default="overhead", help="results/<name>.json")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a test)")
    parser.add_argument("--samples", type=int, default=20000, help="MLP samples")
    parser.add_argument("--cnn-samples", type=int, default=4096)
    parser.add_argument(
        "--deep-samples",
        type=int,
        default=5120,
        help="samples for the 100-layer MLP fit",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--probe-batch", type=int, default=128)
    parser.add_argument(
        "--small-probe",
        type=int,
        default=32,
        help="also time the diagnosis on this many samples (0: skip)",
    )
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timed fit")
    parser.add_argument("--reps", type=int, default=3, help="timed fits per config")
    parser.add_argument(
        "--steps",
        type=int,
        default=20,
        help="batches per timed fit of the per-batch schedules",
    )
    parser.add_argument("--diag-reps", type=int, default=15)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--depth", type=int, default=20, help="main MLP depth")
    parser.add_argument("--cnn-convs", type=int, default=8)
    parser.add_argument("--deep", type=int, default=100, help="deep MLP depth")
    parser.add_argument("--scaling", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--output", default=None, help="JSON path override")
    parser.add_argument(
        "--no-zoo",
        dest="zoo",
        action="store_false",
        help="skip the zoo (published models: diagnosis vs train step)",
    )
    parser.add_argument(
        "--fit-models",
        type=int,
        default=3,
        help="how many of (MLP, CNN, deep MLP) to fit",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.samples = args.cnn_samples = args.deep_samples = 64
        args.batch_size = args.probe_batch = 16
        args.small_probe = 4
        args.reps, args.diag_reps, args.epochs = 1, 2, 1
        args.width, args.features, args.image_size = 8, 8, 8
        args.depth, args.cnn_convs, args.deep = 3, 2, 4
        args.scaling, args.steps = [2], 3
        args.fit_models = 1
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    results = {
        "name": args.name,
        "command": "python benchmarks/overhead.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": vars(args),
        "machine": machine(),
        "fit": [],
        "diagnosis": [],
    }
    with tempfile.TemporaryDirectory() as log_root:
        for kind, depth, samples in (
            ("mlp", args.depth, args.samples),
            ("cnn", args.cnn_convs, args.cnn_samples),
            ("mlp", args.deep, args.deep_samples),
        )[: args.fit_models]:
            keras.backend.clear_session()
            results["fit"].append(fit_benchmark(kind, depth, samples, args, log_root))
            print(
                f"fit {kind}{depth} done at {time.perf_counter() - start:.0f}s",
                file=sys.stderr,
            )
        extra = [("cnn", args.cnn_convs)] if args.fit_models > 1 else []
        for kind, depth in [("mlp", d) for d in args.scaling] + extra:
            keras.backend.clear_session()
            results["diagnosis"].append(
                diagnosis_benchmark(kind, depth, args, log_root)
            )
            print(
                f"diagnosis {kind}{depth} done at {time.perf_counter() - start:.0f}s",
                file=sys.stderr,
            )
    if args.zoo:
        zoo = _zoo()
        entries = list(zoo.HEALTHY) + [entry for entry, _ in zoo.FAILING]
        if args.quick:
            entries = [e for e in entries if e.name in ("lstm_text", "plain_bn50")]
        results["zoo"] = zoo_benchmark(entries, reps=2 if args.quick else 5)
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    results["wall_seconds"] = time.perf_counter() - start
    path = pathlib.Path(args.output) if args.output else RESULTS / f"{args.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
