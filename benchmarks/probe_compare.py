"""One diagnosis against one train step on zoo models, for one checkout.

Run it once per checkout to compare two versions of the probe in turn (e.g.
a `git worktree` of the previous commit, then this one), on the same machine
within minutes: per model, warm and compiled, at 32 samples, the best of
`reps` interleaved calls of `train_on_batch`, a full diagnosis and a light
one (`searches=False`), wall and process CPU time in ms; and the first
compiled call (the probe's compile), in seconds: a graph that is faster
warm may compile far slower (per-tensor reductions: ResNet50 7.6 -> 30.8 s).

Usage:
    python benchmarks/probe_compare.py ROOT resnet50,conv_resnet20 7
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def timed(fn) -> tuple[float, float]:
    """Wall and process CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def best(times: list, which: int) -> float:
    """The smallest of the wall (0) or CPU (1) times, in ms."""
    return min(t[which] for t in times) * 1e3


def main(root: str, names: list[str], reps: int) -> None:
    """Time the models of `names` with the package under `root`."""
    sys.path[:0] = [root, os.path.join(root, "benchmarks")]
    import keras
    import zoo

    import keras_initdiag
    from keras_initdiag.diagnostics.engine import Diagnoser
    from keras_initdiag.diagnostics.probe import EAGER_CALLS

    if not keras_initdiag.__file__.startswith(root):
        raise RuntimeError(f"imported {keras_initdiag.__file__}, not from {root}")
    entries = {e.name: e for e in (*zoo.HEALTHY, *(e for e, _ in zoo.FAILING))}
    for name in names:
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        entry = entries[name]
        model = entry.build()
        x, y = zoo.batch(entry, n=32)
        model.train_on_batch(x, y)
        diagnoser = Diagnoser(model)
        while diagnoser.probe.calls < EAGER_CALLS:  # the eager tier
            diagnoser.measure(x, y, validate=False)
        compile_s = timed(lambda: diagnoser.measure(x, y, validate=False))[0]  # noqa: B023
        diagnoser.measure(x, y, validate=False)  # warm
        step, full, light = [], [], []
        for _ in range(reps):
            step.append(timed(lambda: model.train_on_batch(x, y)))  # noqa: B023
            full.append(timed(lambda: diagnoser.measure(x, y, validate=False)))  # noqa: B023
            light.append(
                timed(lambda: diagnoser.measure(x, y, validate=False, searches=False))  # noqa: B023
            )
        s, f, li = best(step, 0), best(full, 0), best(light, 0)
        print(
            f"{name:22s} step {s:7.1f} full {f:7.1f} ({f / s:.2f}x) light "
            f"{li:7.1f} ({li / s:.2f}x) | cpu step {best(step, 1):7.1f} full "
            f"{best(full, 1):7.1f} light {best(light, 1):7.1f} | compile "
            f"{compile_s:.1f} s",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]))
