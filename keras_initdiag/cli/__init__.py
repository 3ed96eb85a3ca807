"""The `keras-initdiag` command line: demo, report and check.

Every subcommand returns an exit code: 0 when all is well, 1 when flags were
found (`report --fail-on`, `check`), 2 for a usage or input error. Errors are
one line on stderr; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

EXIT_OK = 0
EXIT_FLAGS = 1
EXIT_USAGE = 2

_EPILOG = """\
exit codes:
  0  success (no flags of the kinds asked about)
  1  flags found: `report --fail-on KINDS` saw one of KINDS, or `check` found
     a non-advisory flag
  2  usage or input error (bad option, missing or unreadable file, data that
     does not fit the model)

examples:
  keras-initdiag demo                       # compare 9 initialization regimes
  keras-initdiag report runs/demo --format markdown
  keras-initdiag report logs --fail-on vanishing,exploding
  keras-initdiag check model.keras --data sample.npz --loss mse
"""


class InputError(Exception):
    """A usage or input error: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and raise `InputError`."""

    def error(self, message):
        raise InputError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `keras-initdiag` with its three subcommands."""
    from keras_initdiag import __version__

    parser = _Parser(
        prog="keras-initdiag",
        description=(
            "Initialization diagnostics for Keras: run the demo, read the "
            "diagnostics written by InitDiagnostics, or check a saved model."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    debug = _Parser(add_help=False)
    debug.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks and TensorFlow's log messages",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show tracebacks and TensorFlow's log messages",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser(
        "demo",
        parents=[debug],
        help="train one deep ReLU MLP under every initialization regime",
        description=(
            "Train the same deep ReLU MLP on a synthetic task with elongated, "
            "correlated features under each initialization regime, write "
            "TensorBoard runs and a summary PNG, and print a comparison."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--logdir", default="runs/demo", help="output directory (default: %(default)s)"
    )
    demo.add_argument("--epochs", type=_positive_int, help="epochs per regime")
    demo.add_argument("--depth", type=_positive_int, help="hidden ReLU layers")
    demo.add_argument(
        "--quick", action="store_true", help="small sizes: finishes in seconds"
    )
    demo.add_argument(
        "--regimes",
        type=_regimes,
        help="comma-separated subset of the regimes (default: all)",
    )
    demo.set_defaults(func=_cmd_demo)

    report = sub.add_parser(
        "report",
        parents=[debug],
        help="summarize the InitDiagnostics events under a log directory",
        description=(
            "Read the event files written by InitDiagnostics under LOGDIR and "
            "print, per run, the flags and the per-layer statistics at the "
            "first and last diagnosis. Corrupt files are reported and skipped."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("logdir", metavar="LOGDIR", help="TensorBoard log directory")
    report.add_argument(
        "--format",
        choices=("text", "markdown", "json", "csv"),
        default="text",
        help="output format (default: %(default)s)",
    )
    report.add_argument(
        "--fail-on",
        type=_kinds,
        default=(),
        metavar="KINDS",
        help="exit 1 when a flag of these comma-separated kinds was raised "
        f"({', '.join(_flag_kinds())}, or 'any')",
    )
    report.set_defaults(func=_cmd_report)

    check = sub.add_parser(
        "check",
        parents=[debug],
        help="diagnose a saved .keras model (on data, or from its architecture)",
        description=(
            "Load a .keras model (safe mode). Without --data, print the depth "
            "profile theory predicts from the architecture and the problems it "
            "predicts. With a data sample (.npy or .npz, no pickles), diagnose "
            "the model on it and print the measurement next to the prediction. "
            "Exits 1 when there are non-advisory flags."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("model", metavar="MODEL.keras", help="a saved Keras model")
    check.add_argument(
        "--data",
        default=None,
        metavar="SAMPLE",
        help=".npy array, or .npz with key 'x' (else its first array); without "
        "it, the prediction from the architecture alone",
    )
    check.add_argument(
        "--labels",
        metavar="LABELS",
        help=".npy array or .npz (key 'y', else its first array); defaults to "
        "the key 'y' of a --data .npz",
    )
    check.add_argument(
        "--loss",
        help="Keras loss name for the gradient statistics (default: the "
        "model's compiled loss)",
    )
    check.add_argument(
        "--samples",
        type=_positive_int,
        default=256,
        help="diagnose on the first N samples (default: %(default)s)",
    )
    check.set_defaults(func=_cmd_check)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _flag_kinds() -> tuple[str, ...]:
    from keras_initdiag.diagnostics.rules import FLAG_KINDS

    return FLAG_KINDS


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    if kinds == ("any",):
        return _flag_kinds()
    unknown = [k for k in kinds if k not in _flag_kinds()]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown flag kind(s) {unknown or [text]}; choose from "
            f"{', '.join(_flag_kinds())} or 'any'"
        )
    return kinds


def _regimes(text: str) -> tuple[str, ...]:
    from keras_initdiag.cli.demo import REGIMES

    regimes = tuple(r.strip() for r in text.split(",") if r.strip())
    unknown = [r for r in regimes if r not in REGIMES]
    if unknown or not regimes:
        raise argparse.ArgumentTypeError(
            f"unknown regime(s) {unknown or [text]}; choose from {', '.join(REGIMES)}"
        )
    return regimes


# -- demo ---------------------------------------------------------------------


def _cmd_demo(args) -> int:
    import dataclasses

    from keras_initdiag.cli import demo

    config = demo.QUICK if args.quick else demo.DemoConfig()
    changes = {"epochs": args.epochs, "depth": args.depth}
    config = dataclasses.replace(
        config, **{k: v for k, v in changes.items() if v is not None}
    )
    demo.run_demo(args.logdir, config, args.regimes)
    return EXIT_OK


# -- report -------------------------------------------------------------------


def _collect_runs(logdir: str):
    """(name, run_dir, reports) per run under `logdir`, and the read problems.

    Only the runs `find_runs` recognizes are read (through `tf.io.gfile`, so a
    `gs://` log directory works): a `keras.callbacks.TensorBoard` run beside
    them is looked at for its first records, never read to its end. A file
    unreadable from its start is reported: it may have been a run.
    """
    from keras_initdiag import tensorboard

    problems = []
    try:
        run_dirs = tensorboard.find_runs(logdir, problems)
    except ValueError:
        raise InputError(f"log directory not found: {logdir}") from None
    runs = []
    for directory in run_dirs:
        reports = tensorboard.read_reports(directory, problems)
        if reports:
            runs.append((_run_name(directory, logdir), directory, reports))
    return runs, problems


def _run_name(run_dir: str, logdir: str) -> str:
    """`run_dir` relative to `logdir`; plain string work, so any URL scheme fits."""
    root = logdir.rstrip("/" + os.sep)
    if run_dir == root or run_dir == logdir:
        return "."
    for sep in {os.sep, "/"}:
        if run_dir.startswith(root + sep):
            return run_dir[len(root) + 1 :]
    return run_dir


def _cmd_report(args) -> int:
    runs, problems = _collect_runs(args.logdir)
    for path, reason in problems:
        print(f"keras-initdiag: warning: skipped {path}: {reason}", file=sys.stderr)
    if not runs:
        raise InputError(
            f"no InitDiagnostics reports found under {args.logdir} (look for "
            "event files written by keras_initdiag.InitDiagnostics)"
        )
    from keras_initdiag.cli import report_formats

    sys.stdout.write(report_formats.FORMATS[args.format](runs, problems))
    from keras_initdiag.diagnostics.rules import ADVISORY, is_advisory

    # A kind named in --fail-on fails the gate, except where it is advice:
    # after step 0 for the kinds that do not predict failure during training
    # (an always-advisory kind, named explicitly, counts). A pending flag
    # counts once the run's early verdict confirmed it, as on_flag acts.
    raised = set()
    for _, _, reports in runs:
        confirmed = {c for r in reports if r.verdict for c in r.verdict.confirmed}
        raised |= {
            f.kind
            for r in reports
            for f in r.flags
            if (f.kind in ADVISORY or not is_advisory(f))
            and (not f.pending or f"{f.kind} at {f.layer}" in confirmed)
        }
    return EXIT_FLAGS if raised & set(args.fail_on) else EXIT_OK


def _cmd_check(args) -> int:
    from keras_initdiag.cli.check import run

    return run(args)


# -- entry point --------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run `keras-initdiag` and return its exit code.

    Args:
        argv: The arguments without the program name. Defaults to
            `sys.argv[1:]`.

    Returns:
        0 on success, 1 when flags were found, 2 for a usage or input error.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    restore = None if debug else _quiet_tensorflow()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return args.func(args)
    except SystemExit as e:  # --help and --version exit through argparse.
        return e.code if isinstance(e.code, int) else EXIT_OK
    except KeyboardInterrupt:
        print("keras-initdiag: interrupted", file=sys.stderr)
        return 130
    except InputError as e:
        if debug:
            traceback.print_exc()
        print(f"keras-initdiag: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ValueError, TypeError) as e:
        if debug:
            traceback.print_exc()
        print(f"keras-initdiag: error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if restore is not None:
            restore()


def _quiet_tensorflow():
    """Silence TensorFlow's Python logger; return a function that restores it."""
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    return lambda: logger.setLevel(level)
