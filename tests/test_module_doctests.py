"""The examples of the package's pure modules run, and print what they say.

`test_docstrings.py` runs the public API's examples without comparing their
output (they show calls on a model). The modules below compute numbers
without a model, and their examples state the results: a refit of the
verdict or a changed rule that makes one false must fail here (the verdict's
`contributions` example compared floats exactly and was false under a refit
for a session before it was seen).
"""

from __future__ import annotations

import doctest
import importlib

import pytest

#: Modules whose examples need no model and state their output.
PURE = (
    "keras_initdiag._fans",
    "keras_initdiag.callbacks.schedule",
    "keras_initdiag.cli.report_formats",
    "keras_initdiag.diagnostics.chance",
    "keras_initdiag.diagnostics.judgement",
    "keras_initdiag.diagnostics.pending",
    "keras_initdiag.diagnostics.rules.checks",
    "keras_initdiag.diagnostics.rules.units",
    "keras_initdiag.diagnostics.stats",
    "keras_initdiag.diagnostics.verdict",
    "keras_initdiag.tensorboard.codec",
)


@pytest.mark.parametrize("name", PURE)
def test_the_modules_examples_print_what_they_say(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0, f"{result.failed} of {name}'s examples are false"
