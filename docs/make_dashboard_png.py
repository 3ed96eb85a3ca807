"""Regenerate docs/dashboard.png: the initdiag dashboard on the demo's logs.

Runs `keras-initdiag demo` (unless `--logdir` points at its output already),
starts TensorBoard on it, opens the dashboard in Debian's chromium through
Playwright (never a downloaded browser build) and saves a screenshot of the
heatmaps and depth profiles of two runs side by side, reduced to a palette so
the PNG stays small.

Usage:
    python docs/make_dashboard_png.py            # runs the full demo first
    python docs/make_dashboard_png.py --logdir runs/demo
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUNS = ("small_random/initdiag", "he/initdiag")
OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboard.png")


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_runs(base: str, names, timeout: float = 120.0) -> None:
    """Poll the plugin until it lists every run in `names`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            url = f"{base}/data/plugin/keras_initdiag/runs"
            with urllib.request.urlopen(url, timeout=5) as response:
                listed = {run["run"] for run in json.load(response)["runs"]}
            if set(names) <= listed:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"TensorBoard did not list the runs {names} in time.")


def screenshot(base: str, path: str) -> None:
    """Show `RUNS` side by side and save the heatmaps and profiles to `path`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 1000},
        )
        page = context.new_page()
        page.goto(f"{base}/data/plugin_entry.html?name=keras_initdiag")
        page.wait_for_selector("body[data-state=ready]", timeout=60000)
        for box in page.query_selector_all(".runs input"):
            if box.is_checked() != (box.get_attribute("value") in RUNS):
                box.click()
                page.wait_for_timeout(300)
        count = len(RUNS)
        page.wait_for_function(
            "document.querySelectorAll('#profiles canvas.profile:not([hidden])')"
            f".length === {count}"
        )
        page.mouse.move(0, 0)
        top = page.query_selector("header").bounding_box()["y"]
        profiles = page.query_selector("#profiles").bounding_box()
        clip = {
            "x": 0,
            "y": top,
            "width": 1200,
            "height": profiles["y"] + profiles["height"] - top + 8,
        }
        page.screenshot(path=path, clip=clip, full_page=True)
        context.close()


def shrink(path: str, colors: int = 256) -> None:
    """Reduce the PNG to a palette of `colors` (Pillow comes with matplotlib)."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=colors, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def main(argv=None) -> int:
    """Make the screenshot; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", help="the demo's output (default: run it)")
    parser.add_argument("--output", default=OUTPUT, help="default: %(default)s")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        logdir = args.logdir
        if logdir is None:
            logdir = os.path.join(scratch, "demo")
            from keras_initdiag.cli import main as cli_main

            cli_main(["demo", "--logdir", logdir])
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "tensorboard.main",
            f"--logdir={logdir}",
            "--host=127.0.0.1",
            f"--port={port}",
        ]
        log = open(os.path.join(scratch, "tensorboard.log"), "wb")
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for_runs(base, RUNS)
            screenshot(base, args.output)
        finally:
            server.terminate()
            server.wait(timeout=10)
            log.close()
    shrink(args.output)
    print(f"{args.output}: {os.path.getsize(args.output) // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
