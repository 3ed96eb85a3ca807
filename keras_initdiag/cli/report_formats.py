"""Renderings of `keras-initdiag report`: text, markdown, JSON and CSV.

Each renderer takes `runs`, a list of `(name, run directory, reports)` with
the reports of one run in step order, and `problems`, the `(path, reason)`
pairs of event files that were skipped, and returns the whole output.
"""

from __future__ import annotations

import csv
import io
import json
import math

from keras_initdiag.tensorboard.codec import flag_json, json_float, verdict_json


def _ends(reports):
    """The first and, when different, the last report."""
    return reports[:1] if len(reports) == 1 else [reports[0], reports[-1]]


def _kind(flag) -> str:
    """The flag's kind, marked when it waits for the early verdict."""
    return f"{flag.kind} (pending)" if flag.pending else flag.kind


def _verdicts(reports) -> list:
    return [r.verdict for r in reports if r.verdict is not None]


def text(runs, problems) -> str:
    """Per run: the first and last tables, and a line per diagnosis between."""
    lines = []
    for name, run_dir, reports in runs:
        steps = [r.step for r in reports]
        lines.append(f"== {name} ({run_dir}): {len(reports)} diagnoses, steps {steps}")
        first, last = reports[0], reports[-1]
        lines.append(first.table())
        for report in reports[1:-1]:
            kinds = sorted({_kind(f) for f in report.flags})
            summary = ", ".join(kinds) if kinds else "no flags"
            lines.append(f"step {report.step}: {len(report.flags)} flag(s): {summary}")
            if report.verdict is not None:
                lines.append(str(report.verdict))
        if last is not first:
            lines.append(last.table())
        lines.append("")
    if problems:
        lines.append(f"{len(problems)} file(s) or report(s) skipped (see stderr).")
    return "\n".join(lines) + "\n"


def markdown(runs, problems) -> str:
    """Per run: a flag table and the main statistics at the first and last step."""
    from keras_initdiag.diagnostics.report import MAIN_STATS, format_value
    from keras_initdiag.tensorboard import escape_markdown

    out = []
    for name, _, reports in runs:
        out.append(f"## {escape_markdown(name)}\n")
        flags = [f for r in reports for f in r.flags]
        if flags:
            out.append("| step | kind | layer | value | threshold | message |")
            out.append("| --- | --- | --- | --- | --- | --- |")
            for f in flags:
                cells = (f.step, _kind(f), f.layer, format_value(f.value))
                cells += (format_value(f.threshold), f.message)
                out.append("| " + " | ".join(escape_markdown(c) for c in cells) + " |")
        else:
            out.append("No flags.")
        out.append("")
        for verdict in _verdicts(reports):
            out.append(escape_markdown(str(verdict)) + "\n")
        for report in _ends(reports):
            out.append(f"### Step {report.step} (loss {format_value(report.loss)})\n")
            out.append("| layer | " + " | ".join(MAIN_STATS) + " |")
            out.append("| --- |" + " --- |" * len(MAIN_STATS))
            for layer in report.layers:
                values = [
                    format_value(report.stats[layer].get(s, math.nan))
                    for s in MAIN_STATS
                ]
                out.append(f"| {escape_markdown(layer)} | " + " | ".join(values) + " |")
            out.append("")
    if problems:
        out.append(f"_{len(problems)} file(s) or report(s) skipped._\n")
    return "\n".join(out)


def as_json(runs, problems) -> str:
    """Every run's flags and first/last statistics, and the skipped files."""
    payload = {
        "runs": [
            {
                "name": name,
                "path": run_dir,
                "steps": [r.step for r in reports],
                "flags": [flag_json(f) for r in reports for f in r.flags],
                "verdicts": [verdict_json(v) for v in _verdicts(reports)],
                "diagnoses": [
                    {
                        "step": r.step,
                        "loss": json_float(r.loss),
                        "layers": {
                            layer: {s: json_float(v) for s, v in r.stats[layer].items()}
                            for layer in r.layers
                        },
                    }
                    for r in _ends(reports)
                ],
            }
            for name, run_dir, reports in runs
        ],
        "skipped": [{"path": p, "reason": why} for p, why in problems],
    }
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


# A spreadsheet reads a cell starting with one of these as a formula (OWASP,
# "CSV Injection"); a leading tab or carriage return hides one.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value):
    """A CSV cell that a spreadsheet shows as written, never runs as a formula.

    Text that starts like a formula gets a leading single quote, as OWASP
    recommends; numbers (a negative value too) are left as numbers.

    Args:
        value: The cell: a string, a number or `None`.

    Returns:
        `value`, or the text with `'` in front.

    Example:
    >>> _csv_cell("@SUM(A1:A9)")
    "'@SUM(A1:A9)"
    >>> _csv_cell(-0.5)
    -0.5
    """
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


class _SafeWriter:
    """A `csv.writer` whose text cells go through `_csv_cell`."""

    def __init__(self, buffer):
        self._writer = csv.writer(buffer, lineterminator="\n")

    def writerow(self, row) -> None:
        self._writer.writerow([_csv_cell(cell) for cell in row])


def as_csv(runs, problems) -> str:
    """One row per flag, and per (layer, statistic) at the first and last step.

    Text cells that a spreadsheet would run as a formula (a layer named
    `=HYPERLINK(...)`) start with a single quote.
    """
    buffer = io.StringIO()
    writer = _SafeWriter(buffer)
    writer.writerow(
        ["run", "step", "record", "layer", "name", "value", "threshold", "message"]
    )
    for name, _, reports in runs:
        for r in reports:
            for f in r.flags:
                row = [name, r.step, "flag", f.layer, _kind(f), f.value, f.threshold]
                writer.writerow(row + [f.message])
            if r.verdict is not None:
                v = r.verdict
                word = "failing" if v.failing else "training"
                writer.writerow(
                    [name, r.step, "verdict", "", word, v.risk, v.threshold, v.summary]
                )
        for r in _ends(reports):
            writer.writerow([name, r.step, "loss", "", "loss", r.loss, "", ""])
            for layer in r.layers:
                for stat, value in r.stats[layer].items():
                    writer.writerow([name, r.step, "stat", layer, stat, value, "", ""])
    return buffer.getvalue()


# -- check --------------------------------------------------------------------


#: Format name -> renderer.
FORMATS = {"text": text, "markdown": markdown, "json": as_json, "csv": as_csv}
