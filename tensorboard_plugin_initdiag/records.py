"""Report records (the JSON written at every diagnosis) to layers, facts and flags.

Pure Python: the functions take what the data provider returned, so they are
tested with literal records. Fields a newer writer adds are passed through;
fields an older writer lacks get defaults, so old and new logs both load.

Pending flags and the early verdict: `InitDiagnostics` holds flags of the
kinds that are uncertain at step 0 as `"pending"` until its early verdict,
which a later record carries (`"verdict"`) with the pending flags it
`"confirmed"` or `"cleared"` (as `"kind at layer"`). Each flag says how the
first verdict at or after its step resolved it (`"resolved"`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable

# Node kinds the writer records in `info[node]["kind"]`. For older logs
# without it, the class name gives a best guess (a display hint only).
_NORM_CLASSES = frozenset(
    {
        "BatchNormalization",
        "LayerNormalization",
        "GroupNormalization",
        "UnitNormalization",
        "RMSNormalization",
    }
)
_MERGE_CLASSES = frozenset(
    {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"}
)
_INPUT_CLASSES = frozenset({"InputLayer"})
# Facts of `info[node]` passed to the page (the rest is for the rules).
_INFO_FIELDS = ("class_name", "activation", "initializer", "weight_shape", "is_output")


@dataclasses.dataclass
class RunReports:
    """What the report records of one run say.

    Args:
        steps: Diagnosis steps, sorted.
        layers: Node names in forward order (from the latest record).
        info: Node -> display facts (`kind`, `class_name`, `inputs`, ...).
        flags: Every flag of every diagnosis, as dicts, sorted by step; each
            with `pending` and `resolved` (`"cleared"`, `"confirmed"` or
            `None`, see `resolve_pending`).
        verdicts: The early verdicts, as dicts, sorted by step (usually one).
        expected: Step -> number of `<stat>/<node>` scalars written with it.
        problems: Records that could not be read, and why.
    """

    steps: list[int] = dataclasses.field(default_factory=list)
    layers: list[str] = dataclasses.field(default_factory=list)
    info: dict[str, dict] = dataclasses.field(default_factory=dict)
    flags: list[dict] = dataclasses.field(default_factory=list)
    verdicts: list[dict] = dataclasses.field(default_factory=list)
    expected: dict[int, int] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)


def node_kind(facts: dict) -> str:
    """The kind of a node: `info["kind"]` when written, else a guess from its class.

    Args:
        facts: One node's `info` entry from a report record.

    Returns:
        `"input"`, `"layer"`, `"norm"`, `"merge"`, `"op"` or any other kind a
        newer writer recorded.

    Example:
    >>> node_kind({"class_name": "BatchNormalization"})
    'norm'
    """
    kind = facts.get("kind")
    if isinstance(kind, str) and kind:
        return kind
    class_name = facts.get("class_name", "")
    if class_name in _NORM_CLASSES:
        return "norm"
    if class_name in _MERGE_CLASSES:
        return "merge"
    if class_name in _INPUT_CLASSES:
        return "input"
    return "layer"


def json_number(value) -> float | str | None:
    """A float for JSON: finite as is, NaN as `None`, infinities as strings."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _display_facts(name: str, facts) -> dict:
    """The page's view of one node's facts; tolerant of missing or odd fields."""
    facts = facts if isinstance(facts, dict) else {}
    out = {key: facts[key] for key in _INFO_FIELDS if key in facts}
    inputs = facts.get("inputs")
    out["inputs"] = [str(i) for i in inputs] if isinstance(inputs, list) else []
    out["kind"] = node_kind(facts)
    out["name"] = name
    return out


def _flag(entry, step: int) -> dict | None:
    """One flag record for the page, `None` when it is not a flag object."""
    if not isinstance(entry, dict):
        return None
    flag_step = entry.get("step", step)
    return {
        "kind": str(entry.get("kind", "")),
        "layer": str(entry.get("layer", "")),
        "step": int(flag_step) if isinstance(flag_step, (int, float)) else step,
        "value": json_number(entry.get("value")),
        "threshold": json_number(entry.get("threshold")),
        "message": str(entry.get("message", "")),
        # Older writers have no `pending`: false. Anything but `true` is false.
        "pending": entry.get("pending") is True,
        "resolved": None,
    }


def _expect(holds: bool, what: str, expected: str, received) -> None:
    """Raise `ValueError` saying what must hold and what was received."""
    if not holds:
        shown = repr(received)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise ValueError(f"{what} must be {expected}. Received: {shown}")


def _verdict_number(value, what: str) -> float | str | None:
    """A verdict's number as the page gets it (`json_number`); raises if none."""
    ok = isinstance(value, (int, float, str)) and not isinstance(value, bool)
    if isinstance(value, str):
        try:
            float(value)  # Non-finite numbers are written as "nan", "inf".
        except ValueError:
            ok = False
    _expect(ok, what, "a number", value)
    return json_number(value)


def _verdict_strings(entry: dict, key: str) -> list[str]:
    """A verdict's list of strings (`confirmed`, `cleared`); absent is empty."""
    value = entry.get(key, [])
    ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    _expect(ok, f"verdict {key}", "a list of strings", value)
    return list(value)


def parse_verdict(entry) -> dict:
    """The early verdict of a report record, checked as the package's reader does.

    Args:
        entry: The record's `"verdict"` value.

    Returns:
        `{"step", "start", "failing", "risk", "threshold", "features",
        "summary", "confirmed", "cleared"}`, numbers as `json_number` gives
        them (NaN as `None`).

    Raises:
        ValueError: If a field is missing or of the wrong type; the caller
            skips the verdict (not the record) and says why.

    Example:
    >>> parse_verdict({"step": 32, "start": 0, "failing": False, "risk": 0.03,
    ...     "threshold": 0.67, "summary": "trains"})["risk"]
    0.03
    """
    _expect(isinstance(entry, dict), "verdict", "an object", entry)
    for key in ("step", "start"):
        value = entry.get(key)
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        _expect(ok, f"verdict {key}", "a non-negative integer", value)
    failing, summary = entry.get("failing"), entry.get("summary")
    _expect(isinstance(failing, bool), "verdict failing", "true or false", failing)
    _expect(isinstance(summary, str), "verdict summary", "a string", summary)
    features = entry.get("features", {})
    _expect(isinstance(features, dict), "verdict features", "an object", features)
    return {
        "step": entry["step"],
        "start": entry["start"],
        "failing": failing,
        "risk": _verdict_number(entry.get("risk"), "verdict risk"),
        "threshold": _verdict_number(entry.get("threshold"), "verdict threshold"),
        "features": {
            str(k): _verdict_number(v, f"verdict feature {k!r}")
            for k, v in features.items()
        },
        "summary": summary,
        "confirmed": _verdict_strings(entry, "confirmed"),
        "cleared": _verdict_strings(entry, "cleared"),
    }


def resolve_pending(flags: list[dict], verdicts: list[dict]) -> None:
    """Set each pending flag's `resolved` from the first verdict at or after it.

    That verdict names the flag (`"kind at layer"`) among those it cleared or
    confirmed; a flag it does not name, or that no verdict follows yet, stays
    `None` (still pending).

    Args:
        flags: Flag dicts of one run (changed in place).
        verdicts: Verdict dicts of the same run, sorted by step.
    """
    for flag in flags:
        if not flag["pending"]:
            continue
        verdict = next((v for v in verdicts if v["step"] >= flag["step"]), None)
        if verdict is None:
            continue
        name = f"{flag['kind']} at {flag['layer']}"
        if name in verdict["cleared"]:
            flag["resolved"] = "cleared"
        elif name in verdict["confirmed"]:
            flag["resolved"] = "confirmed"


def parse_reports(records: Iterable[tuple[int, float, bytes | str]]) -> RunReports:
    """Read the report records of one run.

    When a step was written more than once (a resumed run), the latest write
    wins, as in `keras_initdiag.tensorboard.read_reports`.

    Args:
        records: `(step, wall_time, JSON text)` of every record TensorBoard
            kept, in any order.

    Returns:
        A `RunReports`; unreadable records are listed in `problems`.
    """
    latest: dict[int, tuple[float, dict]] = {}
    problems = []
    for step, wall_time, text in records:
        try:
            if isinstance(text, bytes):
                text = text.decode("utf-8")
            payload = json.loads(text)
            if not isinstance(payload, dict) or not isinstance(
                payload.get("layers", []), list
            ):
                raise ValueError("not a report object")
        except (UnicodeDecodeError, ValueError) as e:
            problems.append(f"step {step}: unreadable report record ({e})")
            continue
        if step not in latest or wall_time >= latest[step][0]:
            latest[step] = (wall_time, payload)
    result = RunReports(steps=sorted(latest), problems=problems)
    for step in result.steps:
        payload = latest[step][1]
        flags = (_flag(f, step) for f in payload.get("flags") or [])
        result.flags.extend(f for f in flags if f is not None)
        count = payload.get("num_scalars")
        if isinstance(count, int):
            result.expected[step] = count
        if "verdict" in payload:
            try:
                result.verdicts.append(parse_verdict(payload["verdict"]))
            except ValueError as e:
                result.problems.append(f"step {step}: early verdict skipped ({e})")
    result.verdicts.sort(key=lambda v: v["step"])
    resolve_pending(result.flags, result.verdicts)
    if result.steps:
        last = latest[result.steps[-1]][1]
        result.layers = [str(name) for name in last.get("layers", [])]
        info = last.get("info") if isinstance(last.get("info"), dict) else {}
        result.info = {
            name: _display_facts(name, info.get(name)) for name in result.layers
        }
    return result
