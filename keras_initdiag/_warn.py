"""Warnings that point at the user's line, not into this library or Keras.

A warning raised inside `model.fit` (by the callback) or inside one of this
package's functions names the first frame outside this package, Keras and
TensorFlow: the user's `model.fit(...)` or `lsuv(...)` call, the line the
user can change. Python 3.12+ skips those frames itself
(`skip_file_prefixes`); before, the stack level is counted by walking the
stack.
"""

from __future__ import annotations

import os
import sys
import warnings

#: Libraries whose frames a warning skips, besides this package.
_SKIPPED_LIBRARIES = ("keras", "tensorflow")


def library_prefixes() -> tuple[str, ...]:
    """Directories (each ending in a separator) whose frames a warning skips.

    This package, and Keras and TensorFlow once imported (a warning raised
    inside `fit` belongs to the user's `fit` call).

    Example:
    >>> keras_initdiag._warn.library_prefixes()[0]
    '/.../site-packages/keras_initdiag/'
    """
    prefixes = [os.path.dirname(os.path.abspath(__file__))]
    for name in _SKIPPED_LIBRARIES:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if path:
            prefixes.append(os.path.dirname(os.path.abspath(path)))
    return tuple(os.path.join(prefix, "") for prefix in prefixes)


def _user_stacklevel(prefixes: tuple[str, ...]) -> int:
    """The `stacklevel` of the first frame outside `prefixes`, for `warn`.

    Level 1 is `warn` itself (its `warnings.warn` line); when every frame
    is a library's, the outermost one.
    """
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(prefixes):
        frame, level = frame.f_back, level + 1
    return level


def warn(message: str | Warning, category: type[Warning] = UserWarning) -> None:
    """`warnings.warn(message, category)`, attributed to the user's line.

    Args:
        message: The text, or a `Warning` instance (then `category` is its
            class).
        category: The warning class. Defaults to `UserWarning`.

    Example:
    >>> from keras_initdiag import _warn
    >>> _warn.warn("LSUV did not converge for layer 'd0'", LSUVWarning)
    """
    prefixes = library_prefixes()
    if sys.version_info >= (3, 12):
        warnings.warn(message, category, skip_file_prefixes=prefixes)
    else:
        warnings.warn(message, category, stacklevel=_user_stacklevel(prefixes))
