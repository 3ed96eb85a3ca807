"""What the callback keeps in memory over a long run, bounded.

A run of 1e5 steps with `update_freq=1` on a 100-layer model makes 1e5
reports of ~2,000 numbers: gigabytes if all were kept. The history keeps
what users need (the first report, the reports with flags the run had not
seen before, and the latest reports) and the first and the latest flag of
each kind and layer, with a count. Everything is also in the event files.
"""

from __future__ import annotations

import collections
import dataclasses

from keras_initdiag.diagnostics.report import DiagnosticReport, Flag

#: Latest reports kept, besides the first one and the ones with new flags.
RECENT_REPORTS = 100
#: Reports with new flags kept (the first ones).
FLAGGED_REPORTS = 100
#: Per-step gradient-norm records kept (the latest ones).
RECENT_NORMS = 10_000


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
        self.norms: collections.deque = collections.deque(maxlen=RECENT_NORMS)

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
