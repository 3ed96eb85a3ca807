"""The TensorBoard plugin: the data routes of the initdiag dashboard.

Routes (under `/data/plugin/keras_initdiag/`):

- `runs`: the runs written by `InitDiagnostics` (layer order, node facts,
  statistics, diagnosis steps, notes, the latest early verdict and how many
  flags still wait for one), and the other runs of the log dir.
- `heatmap?run=R&stat=S[&points=P]`: one statistic of one run as a node x
  step matrix (float32, base64); with `points`, at most P columns, evenly
  spaced, first and last included (the page asks for one per pixel column).
- `profile?run=R&step=N[&stats=a,b]`: statistics of one run against depth at
  the latest step at or before N (default: `PROFILE_STATS`).
- `flags`: every flag of every run (with `pending`, and `resolved` when an
  early verdict cleared or confirmed it).
- `static/<file>`: the page (ES modules and CSS), from an allowlist.

Where the data comes from, and what TensorBoard's sampling does to it:

*Statistics* are the ordinary `<stat>/<node>` scalars, read with
`context.data_provider.read_scalars`. Both loaders (the Python multiplexer of
`--load_fast=false` and the Rust data server) keep up to 1000 points per tag
(`--samples_per_plugin=scalars=N`) by reservoir sampling that always keeps the
last point. Below the cap every point is kept. Above it, the sample of a tag
depends only on the sequence of points written to that tag: every reservoir
starts from the same seed (`random.Random(0)` per bucket in `reservoir.py`,
`ChaCha20Rng::seed_from_u64(0)` per time series in the Rust server), and
`read_scalars`'s own downsampling draws from `random.Random(0)` over indices.
So the nodes of one statistic, written at the same steps, keep the same steps
and stay aligned. A node with gaps (a NaN "does not apply" is not written) has
another sequence and, once sampled, keeps other steps. The matrix therefore
takes the union of the rows' steps as its columns and leaves a cell empty
where its row kept no point; it never interpolates. The response says when a
row reached the cap (`sampled`), and the page says so. The matrix of a
(run, statistic) is read once and cached until its tags change; a heatmap
narrower than its steps gets evenly spaced columns of it (the same columns
for every row), and the depth profile reads its columns at exact steps.

*Flags* come from the report record written at every diagnosis (tag
`initdiag/report_json`, JSON with the layer order, node facts and flags).
Third-party tensors are sampled much harder than scalars: the Python loader
keeps 10 per tag for any plugin missing from
`data_ingester.DEFAULT_TENSOR_SIZE_GUIDANCE` (the Text plugin included), the
Rust server 100 per tensor series. A long run would lose most of its flags.
Options weighed:

1. Flags as scalars: messages are lost, and one tag per (kind, node) fills the
   Scalars tab.
2. Reading event files from `context.logdir` directly: a second loader next to
   TensorBoard's, blind to `--logdir_spec` and remote data servers.
3. Asking users to pass `--samples_per_plugin`: most never would.

Chosen: the writer gives the report records this plugin's metadata (which also
hides them from the Text tab) with the tensor data class (the Rust server
drops series of unknown class), and the plugin's loader
(`loader.InitDiagLoader.fix_flags`) sets `samples_per_plugin[keras_initdiag]`
to 0, "keep all", unless the user chose a value. Both loaders read that flag,
so every record, and every flag, of a long run reaches the page. The cost is
memory: one record per diagnosis (about 250 bytes per node plus the flags),
small next to that diagnosis's scalars. A user may cap it with
`--samples_per_plugin=keras_initdiag=N`; the page then says when a run reached
the cap. Older logs, whose records belong to the Text plugin, keep TensorBoard's
text sampling; the page says that their flags may be incomplete and that
`keras-initdiag report` lists them all.

The plugin imports only TensorBoard, NumPy and the standard library: it lives
outside the `keras_initdiag` package so that TensorBoard can load it without
importing TensorFlow and Keras (the package imports both on import, which would
add seconds and hundreds of megabytes to every TensorBoard start).
"""

from __future__ import annotations

import base64

import numpy as np
from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.context import RequestContext
from tensorboard.data import provider
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from tensorboard_plugin_initdiag import metadata, static_files
from tensorboard_plugin_initdiag.reading import ALL, RunReader
from tensorboard_plugin_initdiag.records import RunReports, json_number
from tensorboard_plugin_initdiag.series import column_at, select_columns

#: Statistics in the order the page lists them; others follow by name.
STAT_ORDER = (
    "activation_variance",
    "activation_gradient_rms",
    "gradient_norm",
    "gradient_to_weight_ratio",
    "kernel_gradient_norm",
    "weight_variance",
    "activation_gain",
    "dead_fraction",
    "saturation_fraction",
    "duplicate_unit_fraction",
    "activation_mean",
    "nonfinite_activations",
    "nonfinite_weights",
    "nonfinite_gradients",
    *metadata.TRAIN_SERIES_TAGS,
    "update_ratio",
    "update_ratio_at_peak_lr",
    "predicted_activation_variance",
    "predicted_log_spread",
)
#: Statistics the depth profile draws (those present in the run).
PROFILE_STATS = (
    "activation_variance",
    "activation_gradient_rms",
    "weight_variance",
    "gradient_norm",
    "predicted_activation_variance",
    "predicted_log_spread",
)
# Default per-tag caps of both loaders when no --samples_per_plugin is given.
_DEFAULT_SCALAR_SAMPLES = 1000


def _stat_key(stat: str) -> tuple[int, str]:
    """Sort key: known statistics in `STAT_ORDER`, then the others by name."""
    order = STAT_ORDER.index(stat) if stat in STAT_ORDER else len(STAT_ORDER)
    return order, stat


class InitDiagPlugin(base_plugin.TBPlugin):
    """The initdiag dashboard: heatmaps, depth profiles and flags of every run.

    Args:
        context: The `base_plugin.TBContext` TensorBoard passes to plugins;
            its `data_provider` is required.

    Example:
    >>> plugin = InitDiagPlugin(context)  # normally made by `InitDiagLoader`
    """

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context):
        self._provider = context.data_provider
        hints = context.sampling_hints or {}
        self._report_cap = hints.get(metadata.PLUGIN_NAME, 0) or None
        self._scalar_cap = hints.get(
            metadata.SCALARS_PLUGIN_NAME, _DEFAULT_SCALAR_SAMPLES
        )
        self._reader = RunReader(self._provider, self._report_cap, self._scalar_cap)

    def get_plugin_apps(self):
        """The routes: data as JSON, the page's files under `/static/`."""
        return {
            "/runs": self._serve_runs,
            "/heatmap": self._serve_heatmap,
            "/profile": self._serve_profile,
            "/flags": self._serve_flags,
            "/static/*": self._serve_static,
        }

    def is_active(self):
        """Whether older logs (report records under the Text plugin) are present.

        Current logs activate the plugin through `data_plugin_names`.
        """
        if self._provider is None:
            return False
        legacy = self._provider.list_tensors(
            RequestContext(),
            experiment_id="",
            plugin_name=metadata.TEXT_PLUGIN_NAME,
            run_tag_filter=provider.RunTagFilter(tags=[metadata.REPORT_TAG]),
        )
        return any(legacy.values())

    def frontend_metadata(self):
        """An ES module loaded in TensorBoard's plugin iframe, tab "initdiag"."""
        return base_plugin.FrontendMetadata(
            es_module_path="/static/index.js", tab_name="initdiag"
        )

    # --- helpers ---------------------------------------------------------

    def _run_or_404(self, ctx, eid, run: str | None):
        """The report source of `run`; `NotFoundError` naming the runs if unknown."""
        if not run:
            raise errors.InvalidArgumentError("Argument `run` is required.")
        sources = self._reader.report_sources(ctx, eid)
        if run not in sources:
            raise errors.NotFoundError(
                f"No InitDiagnostics run named {run!r}. Runs with InitDiagnostics "
                f"data: {sorted(sources)}."
            )
        return sources[run]

    # --- routes ----------------------------------------------------------

    @wrappers.Request.application
    def _serve_runs(self, request):
        ctx = plugin_util.context(request.environ)
        eid = plugin_util.experiment_id(request.environ)
        sources = self._reader.report_sources(ctx, eid)
        scalars = self._reader.scalar_tags(ctx, eid)
        runs = []
        for run in sorted(sources):
            reports, count = self._reader.run_reports(ctx, eid, run, sources[run])
            tags = scalars.get(run, {})
            runs.append(self._describe_run(run, sources[run][0], reports, count, tags))
        all_runs = {
            r.run_name for r in self._provider.list_runs(ctx, experiment_id=eid)
        }
        body = {
            "runs": runs,
            "other_runs": sorted(all_runs.difference(sources)),
            "samples": {"reports": self._report_cap, "scalars": self._scalar_cap},
        }
        return http_util.Respond(request, body, "application/json")

    def _describe_run(self, run, plugin_name, reports, count, tags) -> dict:
        """The `runs` entry of one run, with the notes the page shows."""
        stats = set()
        for tag in tags:
            parts = metadata.split_tag(tag)
            if parts and tag not in metadata.LOSS_TAGS:
                stats.add(parts[0])
        notes = list(reports.problems)
        if plugin_name == metadata.TEXT_PLUGIN_NAME:
            notes.append(
                "Written by an older keras_initdiag: TensorBoard keeps only a sample "
                f"of its report records ({count} here), so flags of other diagnoses "
                "may be missing. `keras-initdiag report LOGDIR` lists them all."
            )
        elif self._report_cap and count >= self._report_cap:
            notes.append(
                f"TensorBoard kept {count} report records (--samples_per_plugin="
                f"{metadata.PLUGIN_NAME}={self._report_cap}): flags of other "
                "diagnoses are missing."
            )
        incomplete = _incomplete_note(reports, tags)
        if incomplete:
            notes.append(incomplete)
        return {
            "run": run,
            "layers": reports.layers,
            "info": [reports.info[name] for name in reports.layers],
            "stats": sorted(stats, key=_stat_key),
            "steps": reports.steps,
            "num_flags": len(reports.flags),
            "verdict": reports.verdicts[-1] if reports.verdicts else None,
            "num_pending": sum(
                f["pending"] and f["resolved"] is None for f in reports.flags
            ),
            "notes": notes,
        }

    @wrappers.Request.application
    def _serve_heatmap(self, request):
        ctx = plugin_util.context(request.environ)
        eid = plugin_util.experiment_id(request.environ)
        run, stat = request.args.get("run"), request.args.get("stat")
        source = self._run_or_404(ctx, eid, run)
        if not stat:
            raise errors.InvalidArgumentError("Argument `stat` is required.")
        points = _optional_int(request.args.get("points"), "points", 2, ALL)
        reports, _ = self._reader.run_reports(ctx, eid, run, source)
        tags = self._reader.scalar_tags(ctx, eid, run).get(run, {})
        matrix = self._reader.matrix(ctx, eid, run, stat, reports.layers, tags)
        if matrix is None:
            raise errors.NotFoundError(f"Run {run!r} has no statistic {stat!r}.")
        shown = matrix if points is None else select_columns(matrix, points)
        values = np.ascontiguousarray(shown.values, dtype="<f4")
        body = {
            "run": run,
            "stat": stat,
            "rows": shown.rows,
            "steps": shown.steps.tolist(),
            "values": base64.b64encode(values.tobytes()).decode("ascii"),
            "kept": matrix.kept,
            "columns": len(matrix.steps),
            "cap": self._scalar_cap,
            "sampled": bool(self._scalar_cap)
            and any(k >= self._scalar_cap for k in matrix.kept),
        }
        return http_util.Respond(request, body, "application/json")

    @wrappers.Request.application
    def _serve_profile(self, request):
        ctx = plugin_util.context(request.environ)
        eid = plugin_util.experiment_id(request.environ)
        run = request.args.get("run")
        source = self._run_or_404(ctx, eid, run)
        step = _optional_int(request.args.get("step"), "step", -(2**63), 2**63 - 1)
        step = 0 if step is None else step
        wanted = request.args.get("stats")
        stats = PROFILE_STATS if wanted is None else wanted.split(",")
        reports, _ = self._reader.run_reports(ctx, eid, run, source)
        tags = self._reader.scalar_tags(ctx, eid, run).get(run, {})
        matrices = {}
        for stat in stats:
            matrix = self._reader.matrix(ctx, eid, run, stat, reports.layers, tags)
            if matrix is not None:
                matrices[stat] = matrix
        nodes = set().union(*(m.rows for m in matrices.values()))
        layers = [n for n in reports.layers if n in nodes]
        layers += sorted(nodes.difference(layers))
        series = {}
        for stat, matrix in matrices.items():
            used, column = column_at(matrix, step)
            by_node = dict(zip(matrix.rows, column.tolist()))
            series[stat] = {
                "step": used,
                "values": [json_number(by_node.get(n, float("nan"))) for n in layers],
            }
        body = {"run": run, "step": step, "layers": layers, "series": series}
        return http_util.Respond(request, body, "application/json")

    @wrappers.Request.application
    def _serve_flags(self, request):
        ctx = plugin_util.context(request.environ)
        eid = plugin_util.experiment_id(request.environ)
        flags = []
        for run, source in sorted(self._reader.report_sources(ctx, eid).items()):
            reports, _ = self._reader.run_reports(ctx, eid, run, source)
            flags.extend({"run": run, **flag} for flag in reports.flags)
        return http_util.Respond(request, {"flags": flags}, "application/json")

    @wrappers.Request.application
    def _serve_static(self, request):
        name = request.path.rpartition(f"/{metadata.PLUGIN_NAME}/static/")[2]
        found = static_files.static_file(name)
        if found is None:
            return http_util.Respond(request, "Not found", "text/plain", code=404)
        contents, content_type = found
        return http_util.Respond(request, contents, content_type)


def _optional_int(text: str | None, name: str, low: int, high: int) -> int | None:
    """An integer query argument in [low, high], `None` when absent."""
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise errors.InvalidArgumentError(
            f"Argument `{name}` must be an integer in [{low}, {high}]. "
            f"Received: {name}={text!r}"
        )
    return value


def _incomplete_note(reports: RunReports, tags) -> str | None:
    """A note when the latest diagnosis has fewer statistics than it recorded.

    The last point of every tag is always kept, so the scalars of the latest
    diagnosis are all visible unless the event file ends early (truncated, or
    still being written).
    """
    if not reports.steps or reports.steps[-1] not in reports.expected:
        return None
    step = reports.steps[-1]
    nodes = set(reports.layers)
    found = 0
    for tag, series in tags.items():
        parts = metadata.split_tag(tag)
        if (
            parts
            and parts[0] not in metadata.TRAIN_SERIES_TAGS
            and parts[1] in nodes
            and series.max_step == step
        ):
            found += 1
    expected = reports.expected[step]
    if found >= expected:
        return None
    return (
        f"The diagnosis at step {step} is incomplete: {found} of {expected} "
        "statistics were read (the event file may be truncated, or still being "
        "written)."
    )
