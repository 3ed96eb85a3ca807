"""The dashboard's own files (ES modules and CSS), served from an allowlist.

The allowlist is made once, at import, from the regular files directly inside
`static/`. A request names a file; it is answered only when that exact name is
in the allowlist. No path is ever built from the request, so `..`, its
percent-encoded forms, absolute paths and symlinks cannot reach anything else.
"""

from __future__ import annotations

import os
import re

_STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]+\.(js|css)$")


def _allowlist(directory: str) -> dict[str, tuple[str, str]]:
    """File name -> (absolute path, content type) of the servable files."""
    files = {}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if _SAFE_NAME.match(name) and os.path.isfile(path) and not os.path.islink(path):
            files[name] = (path, _CONTENT_TYPES[os.path.splitext(name)[1]])
    return files


STATIC_FILES = _allowlist(_STATIC_DIR)


def static_file(name: str) -> tuple[bytes, str] | None:
    """The contents and content type of an allowlisted file, `None` for any other.

    Args:
        name: What the request asked for, after `/static/` (already
            percent-decoded).

    Returns:
        `(contents, content type)`, or `None` when `name` is not exactly one
        of the files in `static/`.

    Example:
    >>> static_file("index.js")[1]
    'text/javascript'
    >>> static_file("../plugin.py") is None
    True
    """
    entry = STATIC_FILES.get(name)
    if entry is None:
        return None
    path, content_type = entry
    with open(path, "rb") as f:
        return f.read(), content_type
