"""`python -m keras_initdiag`: the same as the `keras-initdiag` command."""

import os
import sys

# TensorFlow's C++ start-up notes are noise on a command line; --debug keeps them.
if "--debug" not in sys.argv[1:]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_initdiag.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
