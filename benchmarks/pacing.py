"""What share of a fit the default callback's diagnoses take, by epoch length.

`update_freq="auto"` (the default) diagnoses an epoch end only when the time
trained since the last diagnosis pays for one at 2%
(`callbacks.schedule.AUTO_OVERHEAD`); `"epoch"` diagnoses every epoch end.
This benchmark fits the overhead benchmark's models (`overhead.py`: the
20 x 256 ReLU MLP with 157-step epochs, the 8-conv net with 32-step epochs)
for several epochs with each schedule and measures, per fit, the wall time
spent inside the callback's hooks (a forwarding callback times every hook
of the `InitDiagnostics` it holds: diagnoses, the early watch's samples,
the writes) as a share of the fit's wall time, and the diagnosed steps.

The share is measured directly, not as a difference of two noisy fit times:
on this machine the step times are bimodal and a fit's ratio to a plain fit
moves by 10% between repetitions (BENCHMARKS.md, "Overhead"). It leaves
out what the callback costs outside its hooks (none by default: without
`batch_gradients` the train step is Keras's own).

Usage:
    python benchmarks/pacing.py               # both models, 24 epochs each
    python benchmarks/pacing.py --quick       # a few seconds (a test)
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))

import keras  # noqa: E402
import overhead  # noqa: E402

import keras_initdiag  # noqa: E402

OUTPUT = HERE / "results" / "pacing.json"
#: The hooks Keras calls on a training callback.
HOOKS = (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
)


class Timed(keras.callbacks.Callback):
    """Forwards every training hook to `inner` and adds up its wall time.

    Example:
    >>> timed = Timed(keras.callbacks.Callback())
    >>> timed.on_epoch_end(0)
    >>> timed.seconds["on_epoch_end"] >= 0.0
    True
    """

    def __init__(self, inner: keras.callbacks.Callback):
        super().__init__()
        self.inner = inner
        self.seconds = dict.fromkeys(HOOKS, 0.0)
        for name in HOOKS:
            setattr(self, name, self._forward(name, getattr(inner, name)))

    def _forward(self, name: str, method):
        def hook(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        return hook

    def set_model(self, model):
        super().set_model(model)
        self.inner.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.inner.set_params(params)


def run(kind: str, update_freq: str, epochs: int, sizes) -> dict:
    """One fit of `epochs` epochs with the callback at `update_freq`; the
    model, data and batch as `overhead.py` with `sizes` (its arguments)."""
    cnn = kind == "cnn"
    depth = sizes.cnn_convs if cnn else sizes.depth
    samples = sizes.cnn_samples if cnn else sizes.samples
    x, y = overhead.data(kind, samples, sizes)
    keras.utils.set_random_seed(1)
    model = overhead.build(kind, depth, sizes)
    with tempfile.TemporaryDirectory() as log_dir:
        callback = keras_initdiag.InitDiagnostics(
            log_dir=log_dir,
            probe_data=(x[: sizes.probe_batch], y[: sizes.probe_batch]),
            update_freq=update_freq,
            on_flag="ignore",
            verbose=0,
        )
        timed = Timed(callback)
        start = time.perf_counter()
        model.fit(
            x,
            y,
            batch_size=sizes.batch_size,
            epochs=epochs,
            verbose=0,
            callbacks=[timed],
            shuffle=False,
        )
        seconds = time.perf_counter() - start
    begin = timed.seconds["on_train_begin"]
    return {
        "model": model.name,
        "update_freq": update_freq,
        "epochs": epochs,
        "steps_per_epoch": -(-samples // sizes.batch_size),
        "fit_seconds": seconds,
        "hook_seconds": timed.seconds,
        # After the fit's start (binding, building the probe, step 0's
        # diagnosis: the same with either schedule).
        "share": (sum(timed.seconds.values()) - begin) / (seconds - begin),
        "diagnosed_steps": [r.step for r in callback.reports],
    }


def table(rows: list[dict]) -> str:
    """The results as a markdown table."""
    lines = [
        "| model | steps per epoch x epochs | update_freq | fit s | start s "
        "| in the callback after the start: share of the fit | diagnoses "
        "| diagnosed steps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        steps = r["diagnosed_steps"]
        lines.append(
            f"| {r['model']} | {r['steps_per_epoch']} x {r['epochs']} "
            f"| {r['update_freq']} | {r['fit_seconds']:.2f} "
            f"| {r['hook_seconds']['on_train_begin']:.2f} | {100 * r['share']:.1f}% "
            f"| {len(steps)} | {', '.join(map(str, steps))} |"
        )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a test)")
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--reps", type=int, default=1, help="fits per configuration")
    parser.add_argument("--output", default=None, help="JSON path override")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.reps = 3, 1
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    # The overhead benchmark's models and data, at its sizes.
    sizes = overhead.parse_args(["--quick"] if args.quick else [])
    rows = []
    for kind in ("mlp", "cnn"):
        # Interleaved: each repetition runs both schedules back to back.
        for _ in range(args.reps):
            for update_freq in ("epoch", "auto"):
                keras.backend.clear_session()
                rows.append(run(kind, update_freq, args.epochs, sizes))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    output = pathlib.Path(args.output) if args.output else OUTPUT
    output.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "output"}
    output.write_text(json.dumps({"settings": settings, "runs": rows}, indent=1) + "\n")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
