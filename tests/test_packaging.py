"""The package as a user meets it: README commands, CI, public surface."""

import dataclasses
import os
import re
import subprocess
import sys

import pytest

import keras_initdiag

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_commands():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_commands():
    commands = readme_commands()
    assert len(commands) == 2
    assert "keras-initdiag demo" in commands[0]
    assert "pytest" in commands[1] and '".[test]"' in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = f.read()
    assert f"TEST_COMMAND='{readme_commands()[1]}'" in ci
    assert "rm -rf .venv" in ci  # a fresh virtual environment every run
    assert '"$rc" -eq 5' in ci  # pytest's "no tests collected" is a failure


def test_version_and_public_surface():
    assert re.fullmatch(r"\d+\.\d+\.\d+", keras_initdiag.__version__)
    for name in (
        "diagnose",
        "InitDiagnostics",
        "DiagnosticReport",
        "Flag",
        "Thresholds",
        "Whitening",
        "He",
        "Xavier",
        "LeCun",
        "SmallRandom",
        "Orthogonal",
        "DeltaOrthogonal",
        "gain",
        "for_activation",
    ):
        assert hasattr(keras_initdiag, name), name


def test_import_registers_names_in_a_fresh_process():
    code = (
        "import keras, keras_initdiag;"
        "print(type(keras.initializers.get('keras_initdiag>He')).__name__);"
        "print(keras.saving.get_registered_object('keras_initdiag>Whitening').__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    ).stdout.split()
    assert out[-2:] == ["He", "Whitening"]


def test_no_private_framework_imports():
    pattern = re.compile(r"^\s*(from|import)\s+(keras\.src|tensorflow\.python)", re.M)
    offenders = []
    for folder in ("keras_initdiag", "examples", "benchmarks"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    with open(path, encoding="utf-8") as f:
                        if pattern.search(f.read()):
                            offenders.append(path)
    assert offenders == []


def test_flag_is_frozen():
    flag = keras_initdiag.Flag("dead", "d", 0, 1.0, 0.5, "m")
    with pytest.raises(dataclasses.FrozenInstanceError):
        flag.kind = "other"
