"""The dashboard in a real headless chromium (Debian's, driven by Playwright).

The tests assert what the page shows: the tooltip under the mouse, the pixels
of the canvas, the text of the page. CI installs chromium (`.ci/run`) and sets
`INITDIAG_REQUIRE_BROWSER=1`, so there a missing browser fails instead of
skipping.
"""

import os
import shutil
import time

import pytest
from dashboard_fixtures import (
    HOSTILE_MESSAGE,
    SYNTHETIC_LAYERS,
    VERDICT_FAIL,
    VERDICT_LAYERS,
    VERDICT_OK,
    wait_for_runs,
)
from dashboard_logs import HOSTILE_NAMES, write_run
from helpers import TensorBoardServer, get_json

from keras_initdiag import Flag

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
PAGE = "/data/plugin_entry.html?name=keras_initdiag"
FLAG_RED = (0xFF, 0x17, 0x44)
HIGHLIGHT_BLUE = (0x00, 0xB0, 0xFF)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A chromium context with a fresh profile; skipped only without chromium."""
    if not os.path.exists(CHROMIUM):
        reason = f"{CHROMIUM} is absent (apt-get install chromium); CI installs it"
        if os.environ.get("INITDIAG_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()


class Dashboard:
    """One page of the dashboard, with what went wrong on it recorded."""

    def __init__(self, context, url: str):
        self.page = context.new_page()
        self.errors, self.dialogs, self.failed = [], [], []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on(
            "response",
            lambda r: (
                self.failed.append((r.status, r.url))
                if r.status >= 400 and "/keras_initdiag/" in r.url
                else None
            ),
        )
        self.page.goto(url)
        self.wait_state()
        self.page.evaluate(
            "window.__renders = 0; document.addEventListener("
            "'initdiag-rendered', () => window.__renders++)"
        )

    def wait_state(self, states=("ready", "empty", "error")):
        selector = ", ".join(f"body[data-state={s}]" for s in states)
        self.page.wait_for_selector(selector, timeout=30000)
        return self.page.get_attribute("body", "data-state")

    def renders(self) -> int:
        return self.page.evaluate("window.__renders")

    def wait_renders(self, count: int):
        self.page.wait_for_function(f"window.__renders >= {count}", timeout=30000)

    def show_runs(self, *runs):
        """Check exactly `runs` in the run selector; wait for their heatmaps."""
        for box in self.page.query_selector_all(".runs input"):
            wanted = box.get_attribute("value") in runs
            if box.is_checked() != wanted:
                before = self.renders()
                box.click()
                self.wait_renders(before + 1)
        self.page.wait_for_function(
            f"document.querySelectorAll('#profiles canvas.profile:not([hidden])')"
            f".length === {len(runs)}"
        )

    def panel(self, run):
        return self.page.query_selector(f'#heatmaps .panel[data-run="{run}"]')

    def geometry(self, run) -> dict:
        canvas = self.panel(run).query_selector("canvas")
        box = canvas.bounding_box()
        data = {
            k: float(v) for k, v in canvas.evaluate("c => ({...c.dataset})").items()
        }
        return {"x": box["x"], "y": box["y"], **data}

    def cell_point(self, run, row: int, column_x: float = 2.0):
        """Page coordinates inside a cell: `column_x` px into the plot."""
        g = self.geometry(run)
        x = g["x"] + g["plotLeft"] + column_x
        y = g["y"] + g["plotTop"] + (row + 0.5) * g["rowHeight"]
        return x, y

    def hover(self, x, y) -> str:
        self.page.mouse.move(x, y)
        self.page.wait_for_selector(".tooltip:not([hidden])")
        return self.page.text_content(".tooltip")

    def pixel(self, run, x_css: float, y_css: float):
        """The RGB of a canvas pixel, in the canvas's CSS coordinates."""
        canvas = self.panel(run).query_selector("canvas")
        return tuple(
            canvas.evaluate(
                "(c, [x, y]) => { const r = window.devicePixelRatio || 1;"
                " return Array.from(c.getContext('2d').getImageData("
                "Math.round(x * r), Math.round(y * r), 1, 1).data).slice(0, 3); }",
                [x_css, y_css],
            )
        )

    def check_clean(self):
        """Nothing went wrong on the page; then close it."""
        assert self.errors == [] and self.dialogs == [] and self.failed == []
        assert self.page.evaluate("window.__pwned") is None
        self.page.close()


def test_dashboard_shows_layers_in_order_flagged_cells_and_step_0(
    browser, dashboard_server, dashboard_logs, tmp_path
):
    reports = dashboard_logs.model_reports
    board = Dashboard(browser, dashboard_server + PAGE)
    board.show_runs("model/initdiag", "synthetic/initdiag")
    run = "model/initdiag"

    # The rows are the layers in forward order (read back through the tooltip).
    g = board.geometry(run)
    assert int(g["rows"]) == len(reports[-1].layers)
    rows = []
    for row in range(int(g["rows"])):
        text = board.hover(*board.cell_point(run, row))
        rows.append(text.split("layer: ")[1].split("\n")[0])
        assert "step: 0" in text
    assert rows == reports[-1].layers

    # The flagged cell ("dead" at step 0) is outlined in red and explains itself.
    row = reports[0].layers.index("dead")
    x, y = board.cell_point(run, row)
    text = board.hover(x, y)
    for flag in (f for f in reports[0].flags if f.layer == "dead"):
        assert f"\u2691 {flag.kind}: {flag.message}" in text
    outline_x = g["plotLeft"] + 1
    middle_y = g["plotTop"] + (row + 0.5) * g["rowHeight"]
    assert board.pixel(run, outline_x, middle_y) == FLAG_RED
    clean_y = g["plotTop"] + (reports[0].layers.index("norm") + 0.5) * g["rowHeight"]
    assert board.pixel(run, outline_x, clean_y) != FLAG_RED  # never flagged
    caption = board.panel(run).query_selector(".caption").text_content()
    # Steps 0, 3 (after the first updates), 4 and 8.
    assert caption.startswith(f"{len(rows)} layers \u00d7 4 steps")

    # The depth profile starts at step 0, and marks the merge and the norm.
    assert board.page.text_content("#profile-step-label") == "step 0"
    profile = board.page.query_selector('#profiles .panel[data-run="model/initdiag"]')
    assert profile.get_attribute("data-step") == "0"
    assert profile.query_selector(".panel-title").text_content().endswith("step 0")
    # Zeros cannot sit on a log axis: they are drawn under it, and said so.
    caption = profile.query_selector(".caption").text_content()
    assert "activation variance: zeros drawn as \u25bc" in caption
    synthetic = board.page.query_selector(
        '#profiles .panel[data-run="synthetic/initdiag"] .caption'
    )
    assert "prediction" in synthetic.text_content()
    merge_row = SYNTHETIC_LAYERS.index("add_3")
    text = board.hover(*board.cell_point("synthetic/initdiag", merge_row))
    assert "layer: add_3\nmerge \u00b7 Dense \u00b7 relu\ninputs: stem, norm\n" in text

    # Clicking a row of the flag table highlights its cell.
    board.page.fill(".flag-filter", "model/initdiag")
    fourth = next(r for r in reports if r.step == 4)
    flag = fourth.flags[0]  # a flag of the diagnosis at the first epoch's end
    before = board.renders()
    board.page.click(
        f'table.flags tbody tr:has(td.col-layer:text-is("{flag.layer}"))'
        f':has(td.col-kind:text-is("{flag.kind}"))'
        f':has(td.col-step:text-is("{fourth.step}"))'
    )
    board.wait_renders(before + 1)
    selection = board.panel(run).query_selector(".selection").text_content()
    assert selection.startswith(f"Selected: {flag.kind} at {flag.layer}, step 4")
    g = board.geometry(run)
    column = g["plotLeft"] + g["plotWidth"] * 4 / 12 + 2  # steps 0, 4, 8; end 12
    row_top = g["plotTop"] + fourth.layers.index(flag.layer) * g["rowHeight"]
    assert board.pixel(run, column, row_top - 3) == HIGHLIGHT_BLUE

    # The in-step statistics at per-step resolution: every one of the 8 steps.
    # Relative updates exist for dense_in and head; the zero kernels of
    # branch and dead never move (0 / 0), and BatchNorm has no main kernel.
    before = board.renders()
    board.page.select_option("#stat", "train_update_ratio")
    board.wait_renders(before + 1)
    caption = board.panel(run).query_selector(".caption").text_content()
    assert caption.startswith("2 layers \u00d7 8 steps"), caption

    shot = tmp_path / "dashboard.png"
    board.page.screenshot(path=str(shot), full_page=True)
    print(f"dashboard screenshot: {shot}")
    board.check_clean()


def test_hostile_names_and_messages_are_shown_as_text(browser, dashboard_server):
    board = Dashboard(browser, dashboard_server + PAGE)
    board.show_runs("hostile/initdiag")
    run = "hostile/initdiag"
    for row, name in enumerate(HOSTILE_NAMES):
        assert f"layer: {name}\n" in board.hover(*board.cell_point(run, row))
    board.page.fill(".flag-filter", "hostile")
    cells = board.page.query_selector_all("table.flags tbody tr td")
    texts = [cell.text_content() for cell in cells]
    assert HOSTILE_NAMES[0] in texts and HOSTILE_MESSAGE in texts
    assert board.page.evaluate("document.querySelectorAll('img').length") == 0
    assert board.page.evaluate("document.querySelectorAll('script').length") == 1
    board.check_clean()


def test_early_verdicts_and_pending_flags_are_shown(browser, dashboard_server):
    board = Dashboard(browser, dashboard_server + PAGE)
    lines = {
        item.get_attribute("data-run"): item
        for item in board.page.query_selector_all("#flag-section #verdicts li")
    }
    # One line per run with a verdict or pending flags; none for the others.
    assert sorted(lines) == [f"verdict_{n}/initdiag" for n in ("fail", "ok", "wait")]
    ok = lines["verdict_ok/initdiag"].text_content()
    assert ok.startswith(
        "verdict_ok/initdiag: Early verdict at step 32: training (risk 0.03) "
        + VERDICT_OK.summary
    )
    assert "Cleared the pending dead at d1, vanishing at d2." in ok
    fail = lines["verdict_fail/initdiag"]
    assert fail.text_content().startswith(
        "verdict_fail/initdiag: Early verdict at step 32: likely to fail (risk 0.91) "
        + VERDICT_FAIL.summary
    )
    assert fail.get_attribute("class") == "failing"
    assert lines["verdict_wait/initdiag"].text_content() == (
        "verdict_wait/initdiag: no early verdict yet (2 pending flags)"
    )

    # The table: a badge per held flag, explained in its title.
    def badges(run):
        board.page.fill(".flag-filter", run)
        return [
            (
                row.query_selector("td.col-kind").text_content(),
                row.query_selector("td.col-status").text_content(),
                row.get_attribute("data-status"),
                badge.get_attribute("title") if badge else None,
            )
            for row in board.page.query_selector_all("table.flags tbody tr")
            for badge in [row.query_selector("td.col-status .badge")]
        ]

    waiting = badges("verdict_wait/")
    assert [row[:3] for row in waiting] == [
        ("dead", "pending", "pending"),
        ("vanishing", "pending", "pending"),
        ("initial_loss", "", None),
    ]
    assert "held until the early verdict confirms or clears it" in waiting[0][3]
    cleared = badges("verdict_ok/")
    assert [row[1] for row in cleared] == ["cleared", "cleared", ""]
    assert "cleared this flag" in cleared[0][3]
    assert [row[1] for row in badges("verdict_fail/")] == [
        "confirmed",
        "confirmed",
        "",
        "",  # the verdict's own flag
    ]
    # The filter finds flags by their status too (and the failing verdict's
    # flag, whose message names the pending flags it confirms).
    assert [row[:2] for row in badges("pending")] == [
        ("verdict", ""),
        ("dead", "pending"),
        ("vanishing", "pending"),
    ]

    # The heatmap's tooltip says the flag is pending.
    board.page.fill(".flag-filter", "")
    board.show_runs("verdict_wait/initdiag")
    row = VERDICT_LAYERS.index("d1")
    text = board.hover(*board.cell_point("verdict_wait/initdiag", row))
    assert "\u2691 dead (pending): d1 is dead" in text
    board.check_clean()


def test_truncated_and_foreign_runs_get_a_clear_message(browser, dashboard_server):
    board = Dashboard(browser, dashboard_server + PAGE)
    notes = board.page.text_content("ul.notes")
    assert "truncated/initdiag: The diagnosis at step 2 is incomplete" in notes
    assert "Runs without InitDiagnostics data: other" in notes
    board.show_runs("truncated/initdiag")
    panel = board.panel("truncated/initdiag")
    assert "incomplete" in panel.query_selector(".notes").text_content()
    assert (
        panel.query_selector(".caption")
        .text_content()
        .startswith("2 layers \u00d7 2 steps")
    )
    board.check_clean()


@pytest.mark.slow
def test_empty_log_dir_then_a_foreign_run_say_so(browser, tmp_path):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    with TensorBoardServer(str(logdir), str(tmp_path / "tb.log")) as base:
        wait_for_runs(base, lambda body: body["runs"] == [])
        listing = get_json(f"{base}/data/plugins_listing")
        assert listing["keras_initdiag"]["enabled"] is False
        board = Dashboard(browser, base + PAGE)
        assert board.wait_state() == "empty"
        status = board.page.text_content(".status")
        assert status == "No InitDiagnostics runs in this log directory."
        assert "<log_dir>/initdiag" in board.page.text_content("main")

        from dashboard_fixtures import write_other_run

        write_other_run(str(logdir / "foreign"))
        wait_for_runs(base, lambda body: body["other_runs"] == ["foreign"])
        board.page.click("header button")
        board.wait_state(("empty",))
        board.page.wait_for_selector("text=Runs without InitDiagnostics data: foreign")
        board.check_clean()


def test_the_dashboard_is_a_tab_of_tensorboard(browser, dashboard_server):
    page = browser.new_page()
    page.goto(f"{dashboard_server}/#keras_initdiag")
    frame = None
    deadline = time.monotonic() + 30
    while frame is None and time.monotonic() < deadline:
        frame = next((f for f in page.frames if "plugin_entry.html" in f.url), None)
        page.wait_for_timeout(200)
    assert frame is not None, [f.url for f in page.frames]
    frame.wait_for_selector("body[data-state=ready]", timeout=30000)
    assert frame.text_content("h1") == "initdiag"
    page.close()


# --- scale: 150 layers x 1000 steps x 9 runs ------------------------------------

SCALE_LAYERS = [f"block_{i // 3}/dense_{i}" for i in range(150)]
SCALE_STEPS = 1000
SCALE_RUNS = 9
REPORT_EVERY = 8  # 126 report records per run: more than the Rust server's 100


@pytest.fixture(scope="module")
def scale_logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("scale")
    first = logdir / "run_0" / "initdiag"
    flags = {0: [Flag("vanishing", SCALE_LAYERS[-1], 0, 1e-4, 1e-3, "vanishes")]}
    write_run(
        first,
        SCALE_LAYERS,
        report_steps=[*range(0, SCALE_STEPS, REPORT_EVERY), SCALE_STEPS - 1],
        series_steps=range(SCALE_STEPS),
        flags=flags,
    )
    for i in range(1, SCALE_RUNS):  # the same events, under other run names
        shutil.copytree(first, logdir / f"run_{i}" / "initdiag")
    return str(logdir)


ALL_RUNS_TIMING = """() => new Promise((resolve) => {
  // The longest gap between timer ticks: how long the page could not answer.
  let last = performance.now();
  let longest = 0;
  const ticks = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
  }, 5);
  document.addEventListener('initdiag-rendered', (e) => {
    if (e.detail.runs !== 9) return;
    clearInterval(ticks);
    resolve({...e.detail, blocked: Math.max(longest, performance.now() - last)});
  });
  document.getElementById('all-runs').click();
})"""
HOVER_LATENCY = """([x, y]) => new Promise((resolve) => {
  const t0 = performance.now();
  const tip = document.querySelector('.tooltip');
  const seen = new MutationObserver(() => {
    seen.disconnect();
    resolve(performance.now() - t0);
  });
  seen.observe(tip, {childList: true, characterData: true, subtree: true});
  document.querySelectorAll('#heatmaps canvas')[8].dispatchEvent(
      new MouseEvent('mousemove', {clientX: x, clientY: y, bubbles: true}));
})"""


def open_and_show_all_runs(browser, base):
    """Open the page (two runs), then show all nine; the page's timings."""
    page = browser.new_page()
    # Wide enough that every panel asks for all 1000 steps (one per pixel).
    page.set_viewport_size({"width": 2600, "height": 1400})
    page.goto(base + PAGE)
    page.wait_for_selector("body[data-state=ready]", timeout=60000)
    first = page.evaluate("window.initdiagDashboard.timing")
    return page, first, page.evaluate(ALL_RUNS_TIMING)


@pytest.mark.slow
def test_150_layers_by_1000_steps_by_9_runs_render_fast(
    browser, scale_logdir, tmp_path
):
    reports = len(range(0, SCALE_STEPS, REPORT_EVERY)) + 1

    def loaded(body):
        return len(body["runs"]) == SCALE_RUNS and all(
            len(run["steps"]) == reports and not run["notes"] for run in body["runs"]
        )

    log = str(tmp_path / "tb.log")
    with TensorBoardServer(scale_logdir, log, load_fast="true") as base:
        wait_for_runs(base, loaded, timeout=120)  # the Rust server kept all 126
        # A cold TensorBoard: the other seven runs are read while the page waits.
        page, first, cold = open_and_show_all_runs(browser, base)
        page.close()
        # TensorBoard has read them (its cache is warm), the page starts afresh.
        page, _, warm = open_and_show_all_runs(browser, base)
        canvas = page.query_selector_all("#heatmaps canvas")[8].bounding_box()
        point = [canvas["x"] + canvas["width"] / 2, canvas["y"] + 50]
        hover = page.evaluate(HOVER_LATENCY, point)
        shot = tmp_path / "scale.png"
        page.screenshot(path=str(shot))
        print(
            f"\n150 x 1000 x 9: first page (2 runs) {first}\n  all 9, cold "
            f"TensorBoard: {cold}\n  all 9, warm TensorBoard: {warm}\n  hover "
            f"{hover:.1f} ms; screenshot {shot}"
        )
        for timing in (cold, warm):
            assert timing["cells"] == SCALE_RUNS * len(SCALE_LAYERS) * SCALE_STEPS
            assert timing["points"] >= SCALE_STEPS  # every step fetched and drawn
            assert timing["draw"] < 2000  # decoding, colouring and painting
            assert timing["blocked"] < 500  # the page keeps answering
        assert warm["total"] < 2000  # from the click, fetching included
        assert cold["total"] < 10000  # bounded by TensorBoard's Python reads
        assert hover < 100
        page.close()
