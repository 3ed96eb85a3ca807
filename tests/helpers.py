"""Helpers shared by the tests: round trips, event reading, script loading.

Only public APIs are used: `keras.saving` for round trips and TensorBoard's
own event reader for logs.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import sys

import keras

ROOT = pathlib.Path(__file__).parents[1]


def load_script(relative: str):
    """Import a script of the repository, e.g. `"benchmarks/zoo.py"`.

    It is registered in `sys.modules` under its file name before it runs,
    so that the dataclasses it defines can resolve their module.
    """
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def config_round_trip(obj):
    """Serialize `obj` with `keras.saving` and deserialize it again."""
    config = keras.saving.serialize_keras_object(obj)
    return keras.saving.deserialize_keras_object(config)


def save_and_reload(model: keras.Model, directory: str) -> keras.Model:
    """Save `model` as a `.keras` file under `directory` and load it (safe mode)."""
    path = os.path.join(directory, "model.keras")
    model.save(path)
    return keras.saving.load_model(path, safe_mode=True)


# --- TensorBoard event reading and a live TensorBoard server -----------------


def event_accumulator(run_dir: str):
    """A loaded TensorBoard `EventAccumulator` keeping every tensor event."""
    from tensorboard.backend.event_processing import event_accumulator as ea

    accumulator = ea.EventAccumulator(run_dir, size_guidance={ea.TENSORS: 0})
    accumulator.Reload()
    return accumulator


def tensor_tags(accumulator, plugin_name: str | None = None) -> list[str]:
    """Tags of the tensor summaries, optionally only those of one plugin."""
    tags = accumulator.Tags()["tensors"]
    if plugin_name is None:
        return sorted(tags)
    return sorted(
        tag
        for tag in tags
        if accumulator.SummaryMetadata(tag).plugin_data.plugin_name == plugin_name
    )


def tensor_values(accumulator, tag: str) -> list[tuple[int, object]]:
    """(step, numpy value) of every event of one tensor tag, in file order."""
    from tensorboard.util import tensor_util

    return [
        (event.step, tensor_util.make_ndarray(event.tensor_proto))
        for event in accumulator.Tensors(tag)
    ]


def record_ends(path: str) -> list[tuple[int, object]]:
    """(byte offset where the record ends, parsed Event) for an event file."""
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.compat.proto import event_pb2

    ends, offset = [], 0
    for record in event_file_loader.RawEventFileLoader(path).Load():
        offset += len(record) + 16  # TFRecord framing: length, 2 CRCs
        ends.append((offset, event_pb2.Event.FromString(record)))
    return ends


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, timeout: float = 5.0):
    """GET `url` and decode its JSON body."""
    import json
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8"))


def poll_json(url: str, ready, deadline: float, interval: float = 0.5):
    """GET `url` until `ready(body)` is true or `time.monotonic() > deadline`.

    Returns the last body (or `None` if no request succeeded); the caller
    asserts on it, so a timeout fails with the data that was there.
    """
    import time
    import urllib.error

    body = None
    while True:
        try:
            body = get_json(url)
            if ready(body):
                return body
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            pass
        if time.monotonic() > deadline:
            return body
        time.sleep(interval)


class TensorBoardServer:
    """`tensorboard --logdir logdir` on a free loopback port, as a context.

    Entering starts this venv's TensorBoard (by default with the legacy Python
    data loading, so no Rust data server is needed; `load_fast="true"` uses
    the Rust data server) and returns the base URL. Leaving always
    terminates it, and kills it if it does not exit within 10 s. Its output
    goes to `log_path`.
    """

    def __init__(
        self, logdir: str, log_path: str, load_fast: str = "false", extra_args=()
    ):
        self.logdir = logdir
        self.log_path = log_path
        self.load_fast = load_fast
        self.extra_args = list(extra_args)
        self.process = None

    def __enter__(self) -> str:
        import subprocess
        import sys

        port = free_port()
        command = [
            sys.executable,
            "-m",
            "tensorboard.main",
            f"--logdir={self.logdir}",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--load_fast={self.load_fast}",
            "--reload_interval=1",
            *self.extra_args,
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT
            )
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc_info) -> None:
        import subprocess

        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def compiled(diagnoser):
    """`diagnoser` with its probe past the eager calls (tests of tracing)."""
    from keras_initdiag.diagnostics.probe import EAGER_CALLS

    diagnoser.probe.calls = max(diagnoser.probe.calls, EAGER_CALLS)
    return diagnoser
