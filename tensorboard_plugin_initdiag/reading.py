"""Reading a run's data through TensorBoard's data provider, with caches.

`RunReader` asks `context.data_provider` for the report records and the
`<stat>/<node>` scalars of a run and keeps what it parsed until the run's
time series change (their last step or wall time). See `plugin.py` for how
TensorBoard's sampling shapes what it gets.
"""

from __future__ import annotations

import collections
import threading

import numpy as np
from tensorboard.data import provider

from tensorboard_plugin_initdiag import metadata
from tensorboard_plugin_initdiag.records import RunReports, parse_reports
from tensorboard_plugin_initdiag.series import Matrix, build_matrix, points_to_arrays

#: `downsample` argument meaning "everything the loader kept".
ALL = 10**9
_CACHE_SIZE = 64


class _Cache:
    """A small thread-safe LRU map (TensorBoard serves requests on threads)."""

    def __init__(self, size: int):
        self._size = size
        self._items = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


class RunReader:
    """Reads report records and statistic matrices of runs, and caches them.

    Args:
        data_provider: The `tensorboard.data.provider.DataProvider` from the
            plugin's context.
        report_cap: The `--samples_per_plugin` value for this plugin's report
            records, `None` for "keep all".
        scalar_cap: The most points per scalar tag the loader keeps (0: all).
    """

    def __init__(self, data_provider, report_cap: int | None, scalar_cap: int):
        self._provider = data_provider
        self._report_cap = report_cap
        self._scalar_cap = scalar_cap
        self._reports = _Cache(_CACHE_SIZE)
        self._matrices = _Cache(_CACHE_SIZE)

    def report_sources(self, ctx, eid) -> dict[str, tuple[str, object]]:
        """Run -> (plugin that owns its report records, their time series)."""
        sources = {}
        tag_filter = provider.RunTagFilter(tags=[metadata.REPORT_TAG])
        # Older logs first, so a run with both formats reads the current one.
        for plugin_name in (metadata.TEXT_PLUGIN_NAME, metadata.PLUGIN_NAME):
            listing = self._provider.list_tensors(
                ctx,
                experiment_id=eid,
                plugin_name=plugin_name,
                run_tag_filter=tag_filter,
            )
            for run, tags in listing.items():
                if metadata.REPORT_TAG in tags:
                    sources[run] = (plugin_name, tags[metadata.REPORT_TAG])
        return sources

    def run_reports(self, ctx, eid, run: str, source) -> tuple[RunReports, int]:
        """The parsed report records of one run and how many were kept.

        Cached until the run's records change (their last step or wall time).
        """
        plugin_name, series = source
        key = (eid, run, plugin_name, series.max_step, series.max_wall_time)
        cached = self._reports.get(key)
        if cached is not None:
            return cached
        data = self._provider.read_tensors(
            ctx,
            experiment_id=eid,
            plugin_name=plugin_name,
            downsample=self._report_cap or ALL,
            run_tag_filter=provider.RunTagFilter(
                runs=[run], tags=[metadata.REPORT_TAG]
            ),
        )
        datums = data.get(run, {}).get(metadata.REPORT_TAG, [])
        records = [(d.step, d.wall_time, _text(d.numpy)) for d in datums]
        reports = parse_reports(records)
        self._reports.put(key, (reports, len(records)))
        return reports, len(records)

    def scalar_tags(self, ctx, eid, run: str | None = None):
        """Run -> tag -> `ScalarTimeSeries` of the scalars plugin."""
        tag_filter = provider.RunTagFilter(runs=[run]) if run is not None else None
        return self._provider.list_scalars(
            ctx,
            experiment_id=eid,
            plugin_name=metadata.SCALARS_PLUGIN_NAME,
            run_tag_filter=tag_filter,
        )

    def matrix(self, ctx, eid, run: str, stat: str, layers, tags) -> Matrix | None:
        """One statistic of one run as a `Matrix`, `None` when it has no tag.

        Everything the loader kept is read once and cached until the tags
        change: the heatmap (at any width) and the profile (at any step) are
        cut from the same matrix.
        """
        prefix = stat + "/"
        names = sorted(tag for tag in tags if tag.startswith(prefix))
        if not names:
            return None
        version = tuple((t, tags[t].max_step, tags[t].max_wall_time) for t in names)
        key = (eid, run, stat, hash(version), tuple(layers))
        cached = self._matrices.get(key)
        if cached is not None:
            return cached
        data = self._provider.read_scalars(
            ctx,
            experiment_id=eid,
            plugin_name=metadata.SCALARS_PLUGIN_NAME,
            downsample=self._scalar_cap or ALL,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=names),
        )
        series = {
            tag[len(prefix) :]: points_to_arrays(points)
            for tag, points in data.get(run, {}).items()
        }
        matrix = build_matrix(series, layers)
        self._matrices.put(key, matrix)
        return matrix


def _text(array) -> str:
    """The string in a scalar string tensor (bytes are decoded as UTF-8)."""
    value = np.asarray(array).reshape(-1)[0] if np.size(array) else b""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
