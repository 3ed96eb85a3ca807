"""The demo's regimes as runs of the zoo gate: what a refit says to the demo.

The demo (`keras-initdiag demo`) is the one network every user sees, and the
one healthy network the verdict watches from step 0 under momentum (SGD
0.9, no schedule): He's first gradient, taken at 3x chance (loss 4.1
against 1.39), echoes through the first twenty steps. A feature the grids
rewarded read that echo as a collapse and judged two of the demo's healthy
regimes failing (BENCHMARKS.md, "The fifteenth and sixteenth held-out
grids"). This script runs the demo as `keras-initdiag demo` does (every
regime, its `DemoConfig`, `on_flag="ignore"`, so every fit runs to its
end) and records each regime as `zoo_fit.py` records a zoo model: the
steps its verdict read, its live verdict, its flags (`zoo_gate.flags_json`),
the loss of its first batch and last epoch and its labels' entropy.
`zoo_gate.py` reads the file beside the zoo's, so `verdict.py fit` judges
a refit on the demo too, and `tests/test_zoo_gate.py` holds the installed
verdict to it.

Usage:
    python benchmarks/demo_fit.py     # writes results/demo_fit.json (~30 s)
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import zoo_gate  # noqa: E402
from trainability import label_entropy  # noqa: E402

from keras_initdiag.cli import demo  # noqa: E402
from keras_initdiag.tensorboard.codec import verdict_json  # noqa: E402

OUTPUT = HERE / "results" / "demo_fit.json"


def record(result, entropy: float) -> dict:
    """One regime's run as a zoo gate record (`zoo_gate.runs`)."""
    flags, non_advisory, acted_at = zoo_gate.flags_json(result.reports)
    early = result.early_steps
    return {
        "model": f"demo {result.regime}",
        "label_entropy": entropy,
        "loss_first_batch": float(early.losses[0]) if early else float("nan"),
        "loss_last_epoch": result.loss,
        "loss_per_epoch": result.losses,
        "flags": flags,
        "non_advisory": non_advisory,
        "acted_at": acted_at,
        "verdict": None if result.verdict is None else verdict_json(result.verdict),
        "early_steps": None if early is None else zoo_gate.early_json(early),
    }


def main() -> dict:
    config = demo.DemoConfig()
    _, y = demo.make_data(config.samples, config.features, config.classes, config.seed)
    with tempfile.TemporaryDirectory() as logdir:
        results = demo.run_demo(logdir, out=sys.stderr)
    entropy = label_entropy(np.asarray(y))
    output = {
        "config": {
            "seed": config.seed,
            "steps_per_epoch": -(-config.samples // config.batch_size),
            "epochs": config.epochs,
        },
        "records": [record(r, entropy) for r in results],
    }
    OUTPUT.write_text(json.dumps(output, indent=1) + "\n")
    for r in output["records"]:
        print(
            f"{r['model']:22s} first {r['loss_first_batch']:.3f} last "
            f"{r['loss_last_epoch']:.3f} entropy {entropy:.3f} "
            f"verdict {r['verdict'] and r['verdict']['risk']}"
        )
    return output


if __name__ == "__main__":
    main()
