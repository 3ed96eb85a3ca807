"""Quiet TensorFlow's start-up notes when the package runs as a command.

TensorFlow's C++ runtime writes notes to the process's stderr when it is
first imported (oneDNN, CUDA probes, CPU features), before any logging
setting applies. On a command line they bury the one line that matters.
When `keras-initdiag` or `python -m keras_initdiag` runs (and `--debug` was
not given), the package's imports run with file descriptor 2 redirected to a
temporary file; afterwards every line that is not one of those notes is
written back, so real errors still show. Imported as a library, nothing
changes. Pure Python: it runs before TensorFlow is imported.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

COMMAND = "keras-initdiag"
#: Lines TensorFlow writes while it loads: notes, not problems.
NOISE = re.compile(
    r"All log messages before absl::InitializeLog|"
    r"^[IWE]\d{4} .*(port\.cc|cudart_stub\.cc|cpu_feature_guard\.cc|"
    r"cuda_platform\.cc|cuda_executor\.cc|cuda_dnn\.cc|cuda_fft\.cc|"
    r"cuda_blas\.cc|gpu_device\.cc)|"
    r"^To enable the following instructions:|"
    r"^WARNING: All log messages"
)


def running_as_command() -> bool:
    """Whether this process is the package's command line (without --debug)."""
    if "--debug" in sys.argv[1:] or "tensorflow" in sys.modules:
        return False
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    if program in (COMMAND, f"{COMMAND}.exe", f"{COMMAND}-script.py"):
        return True
    original = list(getattr(sys, "orig_argv", []))
    return any(
        flag == "-m" and module == "keras_initdiag"
        for flag, module in zip(original, original[1:])
    )


def keep(text: str) -> str:
    """The lines of `text` that are not start-up notes."""
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not NOISE.search(line))


@contextlib.contextmanager
def quiet_start():
    """Filter the start-up notes out of stderr around the imports, if a command.

    Example:
    >>> with quiet_start():
    ...     import tensorflow
    """
    if not running_as_command():
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            rest = keep(captured.read().decode("utf-8", "replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()
