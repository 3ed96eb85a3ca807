"""What the callback keeps in memory over a long run, bounded.

A run of 1e5 steps with `update_freq=1` on a 100-layer model makes 1e5
reports of ~2,000 numbers: gigabytes if all were kept. The history keeps
what users need (the first report, the reports with flags the run had not
seen before, and the latest reports) and the first and the latest flag of
each kind and layer, with a count. The per-step gradient norms of the
latest `RECENT_NORMS` steps are kept as arrays (`NormHistory`): 8 MB for
200 layers, where `(step, {layer: norm})` tuples took about 115 MB.
Everything is also in the event files.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Iterator

import numpy as np

from keras_initdiag.diagnostics.report import DiagnosticReport, Flag
from keras_initdiag.diagnostics.train_grads import COLUMNS, SCALARS

#: Latest reports kept, besides the first one and the ones with new flags.
RECENT_REPORTS = 100
#: Reports with new flags kept (the first ones).
FLAGGED_REPORTS = 100
#: Per-step gradient-norm records kept (the latest ones).
RECENT_NORMS = 10_000
#: Rows a `NormHistory` allocates first; it doubles them up to its capacity.
_FIRST_ROWS = 256


@dataclasses.dataclass
class FlagCount:
    """How often one kind of flag fired at one layer.

    Args:
        first: The first such flag.
        last: The latest such flag.
        count: How many diagnoses raised it.
    """

    first: Flag
    last: Flag
    count: int = 1


class History:
    """Bounded memory of reports, flags and per-step norms.

    Example:
    >>> history = History()
    >>> history.add(report)
    >>> history.reports[0].step
    0
    """

    def __init__(self):
        self._first: DiagnosticReport | None = None
        self._flagged: list[DiagnosticReport] = []
        self._recent: collections.deque = collections.deque(maxlen=RECENT_REPORTS)
        self.flag_counts: dict[tuple[str, str], FlagCount] = {}
        self.steps = StepSeries()

    @property
    def norms(self) -> NormHistory:
        """The per-step gradient norms (`steps`' first series)."""
        return self.steps.series["gradient_norm"]

    def add(self, report: DiagnosticReport) -> None:
        """Remember a report (and count its flags)."""
        if self._first is None:
            self._first = report
        new = self.count(report.flags)
        if new and len(self._flagged) < FLAGGED_REPORTS and report is not self._first:
            self._flagged.append(report)
        self._recent.append(report)

    def count(self, flags: list[Flag]) -> bool:
        """Count flags; whether any kind and layer is new."""
        new = False
        for flag in flags:
            key = (flag.kind, flag.layer)
            if key in self.flag_counts:
                counted = self.flag_counts[key]
                counted.last, counted.count = flag, counted.count + 1
            else:
                self.flag_counts[key] = FlagCount(flag, flag)
                new = True
        return new

    @property
    def last(self) -> DiagnosticReport | None:
        """The latest report, or None before the first one."""
        return self._recent[-1] if self._recent else None

    @property
    def reports(self) -> list[DiagnosticReport]:
        """The kept reports, in step order: first, new-flag and latest ones."""
        kept = {id(r): r for r in [self._first, *self._flagged, *self._recent] if r}
        return sorted(kept.values(), key=lambda r: r.step)

    @property
    def flags(self) -> list[Flag]:
        """The first flag of each kind and layer, then its latest if later."""
        found = []
        for counted in self.flag_counts.values():
            found.append(counted.first)
            if counted.last is not counted.first:
                found.append(counted.last)
        return sorted(found, key=lambda f: f.step)


class NormHistory:
    """The latest per-step norms `(step, {layer: norm})`, kept as arrays.

    A ring buffer of `capacity` rows: the steps (int64) and one float32 row
    of norms per step, one column per layer ever seen (a record without a
    layer leaves its cell unused). Each row also records which layers its
    record had, in their order, so that a record reads back exactly as it
    was added (to float32 precision); the dicts are built only when read.
    The rows double as records arrive, up to `capacity`.

    Args:
        capacity: Records kept (the latest ones). Defaults to
            `RECENT_NORMS`.

    Raises:
        ValueError: `capacity` is not positive.

    Example:
    >>> norms = NormHistory(capacity=2)
    >>> norms.extend([(1, {"dense": 0.5}), (2, {"dense": 0.25}), (3, {})])
    >>> list(norms)
    [(2, {'dense': 0.25}), (3, {})]
    """

    def __init__(self, capacity: int = RECENT_NORMS):
        if int(capacity) < 1:
            raise ValueError(
                f"Argument `capacity` must be a positive int. Received: {capacity=}"
            )
        self.capacity = int(capacity)
        self._columns: dict[str, int] = {}
        self._layouts: dict[tuple[str, ...], int] = {}
        self._layout_columns: list[tuple[tuple[str, ...], np.ndarray]] = []
        self._steps = np.zeros(0, np.int64)
        self._layout = np.zeros(0, np.int32)
        self._values = np.zeros((0, 0), np.float32)
        self._start = 0  # The row of the oldest record.
        self._size = 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return self._steps.nbytes + self._layout.nbytes + self._values.nbytes

    def __len__(self) -> int:
        return self._size

    def extend(self, records: Iterable[tuple[int, dict[str, float]]]) -> None:
        """Append `(step, {layer: norm})` records, dropping the oldest."""
        for step, values in records:
            layout = self._layout_id(tuple(values))
            if self._size < self.capacity:
                if self._size == len(self._steps):
                    self._grow_rows()
                row = self._size
                self._size += 1
            else:
                row = self._start
                self._start = (self._start + 1) % self.capacity
            self._steps[row] = step
            self._layout[row] = layout
            self._values[row, self._layout_columns[layout][1]] = list(values.values())

    def __iter__(self) -> Iterator[tuple[int, dict[str, float]]]:
        for index in range(self._size):
            yield self._record((self._start + index) % self.capacity)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._size))]
        if not -self._size <= index < self._size:
            raise IndexError(f"index {index} out of range for {self._size} records")
        return self._record((self._start + index % self._size) % self.capacity)

    def _record(self, row: int) -> tuple[int, dict[str, float]]:
        names, columns = self._layout_columns[self._layout[row]]
        return int(self._steps[row]), dict(
            zip(names, self._values[row, columns].tolist())
        )

    def _layout_id(self, names: tuple[str, ...]) -> int:
        """The id of a record's layer names in order (new columns as needed)."""
        layout = self._layouts.get(names)
        if layout is None:
            for name in names:
                self._columns.setdefault(name, len(self._columns))
            if len(self._columns) > self._values.shape[1]:
                wider = np.full(
                    (len(self._steps), len(self._columns)), np.nan, np.float32
                )
                wider[:, : self._values.shape[1]] = self._values
                self._values = wider
            columns = np.array([self._columns[n] for n in names], np.intp)
            layout = self._layouts[names] = len(self._layout_columns)
            self._layout_columns.append((names, columns))
        return layout

    def _grow_rows(self) -> None:
        """Double the rows (up to `capacity`); only before the ring wraps."""
        rows = min(self.capacity, max(_FIRST_ROWS, 2 * len(self._steps)))
        self._steps = np.resize(self._steps, rows)
        self._layout = np.resize(self._layout, rows)
        values = np.full((rows, self._values.shape[1]), np.nan, np.float32)
        values[: len(self._values)] = self._values
        self._values = values


class StepSeries:
    """The in-step statistics, one `NormHistory` each (bounded).

    Example:
    >>> series = StepSeries(capacity=2)
    >>> series.extend({"weight_norm": [(1, {"dense": 3.0})]})
    >>> series.as_lists()["weight_norm"]
    [(1, {'dense': 3.0})]
    """

    #: What is kept: `GradientRecorder.read`'s per-layer columns, the rate
    #: and the loss.
    KEPT = (*COLUMNS, *SCALARS)

    def __init__(self, capacity: int = RECENT_NORMS):
        self.series = {name: NormHistory(capacity) for name in self.KEPT}

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return sum(s.nbytes for s in self.series.values())

    def extend(self, read: dict) -> None:
        """Append what `GradientRecorder.read` returned."""
        for name, history in self.series.items():
            history.extend(read.get(name, ()))

    def as_lists(self) -> dict:
        """`{name: [(step, {layer: value})]}`, oldest first."""
        return {name: list(history) for name, history in self.series.items()}
