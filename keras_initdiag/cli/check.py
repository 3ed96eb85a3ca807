"""`keras-initdiag check MODEL.keras [--data SAMPLE]`.

Without data: the depth profile theory predicts from the architecture
(`predicted.predicted_report`) and the problems it predicts. With a data
sample: `diagnose()` on it, the measurement next to the prediction.
"""

from __future__ import annotations

import os

import numpy as np

from keras_initdiag.cli import EXIT_FLAGS, EXIT_OK, InputError

#: Columns without data: the prediction.
PREDICTED = (
    "predicted_activation_variance",
    "predicted_log_spread",
    "activation_gain",
    "weight_variance",
    "dead_fraction",
    "duplicate_unit_fraction",
)
#: Columns with data: the measurement next to the prediction.
MEASURED = (
    "activation_variance",
    "predicted_activation_variance",
    "predicted_log_spread",
    "activation_gradient_rms",
    "gradient_norm",
    "dead_fraction",
    "duplicate_unit_fraction",
)


def _load_model(path: str):
    import keras

    if not os.path.isfile(path):
        raise InputError(f"model file not found: {path}")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - any load failure is an input error.
        first = str(e).splitlines()[0] if str(e) else ""
        raise InputError(
            f"cannot load a Keras model from {path}: {type(e).__name__}: {first}"
        ) from e


def load_array(path: str, key: str, what: str) -> np.ndarray:
    """An array from `.npy`, or `key` (else the first array) of an `.npz`."""
    if not os.path.isfile(path):
        raise InputError(f"{what} file not found: {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise InputError(
                f"{what} file {path} holds Python objects (pickled); save plain "
                "numeric arrays with numpy.save or numpy.savez"
            ) from e
        raise InputError(f"cannot read {what} file {path}: {e}") from e
    except (OSError, EOFError) as e:
        raise InputError(f"cannot read {what} file {path}: {e}") from e
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        if not loaded.files:
            raise InputError(f"{what} file {path} holds no arrays")
        name = key if key in loaded.files else loaded.files[0]
        try:
            return loaded[name]
        except ValueError as e:
            raise InputError(
                f"{what} file {path}: array {name!r} holds Python objects "
                "(pickled); save plain numeric arrays"
            ) from e


def _labels(args):
    if args.labels:
        return load_array(args.labels, "y", "labels")
    if args.data.endswith(".npz"):
        with np.load(args.data, allow_pickle=False) as archive:
            if "y" in archive.files:
                return load_array(args.data, "y", "labels")
    return None


def run(args) -> int:
    """Run `check`; the exit code (1 when there are non-advisory flags)."""
    from keras_initdiag.diagnostics.rules import is_advisory

    model = _load_model(args.model)
    if args.data is None:
        from keras_initdiag.diagnostics.predicted import predicted_report

        try:
            report = predicted_report(model, samples=args.samples)
        except (TypeError, ValueError) as e:
            raise InputError(
                f"cannot predict {args.model} from its architecture: {e} "
                "(pass --data with a sample)"
            ) from e
        print(
            "Predicted from the architecture: standard-normal inputs, the "
            "model's own weights, mean-field theory (no gradients without "
            "labels)."
        )
        print(report.table(PREDICTED))
    else:
        from keras_initdiag import diagnose

        x = load_array(args.data, "x", "data")
        y = _labels(args)
        if x.ndim == 0 or (y is not None and y.ndim == 0):
            raise InputError("data and labels must be arrays with a sample axis")
        x = x[: args.samples]
        y = None if y is None else y[: args.samples]
        try:
            report = diagnose(model, x, y, loss=args.loss)
        except (TypeError, ValueError) as e:
            raise InputError(f"cannot diagnose {args.model} on {args.data}: {e}") from e
        print(report.table(MEASURED))
    serious = [f for f in report.flags if not is_advisory(f)]
    return EXIT_FLAGS if serious else EXIT_OK
