"""The JSON codec of report records: what the writer writes, what readers accept.

A report record holds everything but the statistics of a diagnosis (layer
order, layer facts, loss, flags) as standard JSON. The reader trusts nothing:
a record from an older, newer or damaged writer is checked field by field,
and anything that does not fit raises `ValueError`, so that the caller skips
that record and reports it instead of crashing on it later.
"""

from __future__ import annotations

import dataclasses
import json
import math

from keras_initdiag.diagnostics.report import DiagnosticReport, Flag, LayerInfo, Verdict

_REPORT_FORMAT = 1


def json_float(value: float) -> float | str:
    """A float as standard JSON holds it: non-finite values become strings.

    Args:
        value: Any real number.

    Returns:
        The float, or `"nan"`, `"inf"` or `"-inf"`.

    Example:
    >>> json_float(float("inf"))
    'inf'
    """
    value = float(value)
    return value if math.isfinite(value) else str(value)


def flag_json(flag: Flag) -> dict:
    """A flag as standard JSON holds it (non-finite numbers as strings).

    Example:
    >>> flag_json(Flag("dead", "d", 0, 1.0, 0.5, "m"))["pending"]
    False
    """
    return {
        **dataclasses.asdict(flag),
        "value": json_float(flag.value),
        "threshold": json_float(flag.threshold),
    }


def verdict_json(verdict: Verdict) -> dict:
    """An early verdict as standard JSON holds it.

    Example:
    >>> verdict_json(Verdict(32, 0, False, 0.1, 0.7, {}, "ok"))["risk"]
    0.1
    """
    return {
        **dataclasses.asdict(verdict),
        "risk": json_float(verdict.risk),
        "threshold": json_float(verdict.threshold),
        "features": {k: json_float(v) for k, v in verdict.features.items()},
    }


def report_to_json(report: DiagnosticReport, num_scalars: int) -> str:
    """Serialize everything but the statistics of `report` as JSON.

    The statistics travel as scalars; `num_scalars` records how many were
    written so the reader can tell a complete report from a truncated one.

    Args:
        report: The report to serialize.
        num_scalars: Number of `<stat>/<layer>` scalars written with it.

    Returns:
        A JSON string (standard JSON: non-finite floats are strings).
    """
    flags = [flag_json(flag) for flag in report.flags]
    payload = {
        "format": _REPORT_FORMAT,
        "step": int(report.step),
        "layers": list(report.layers),
        "info": {name: dataclasses.asdict(info) for name, info in report.info.items()},
        "loss": json_float(report.loss),
        "flags": flags,
        "num_scalars": num_scalars,
    }
    if report.verdict is not None:
        payload["verdict"] = verdict_json(report.verdict)
    return json.dumps(payload, ensure_ascii=False)


def report_from_json(text: str) -> tuple[DiagnosticReport, int]:
    """Rebuild a report without statistics, and the expected scalar count.

    Args:
        text: The JSON text of a report record.

    Returns:
        `(report, num_scalars)`: the report's statistics are empty dicts.

    Raises:
        ValueError: If `text` is not JSON or not a report record: a field is
            missing or has the wrong type (`"info": []`, a flag without a
            kind, a layer name that is a number).
    """
    payload = json.loads(text)
    _expect(isinstance(payload, dict), "the record", "an object", payload)
    layers = _field(payload, "layers", list)
    for layer in layers:
        _expect(isinstance(layer, str), "a layer name", "a string", layer)
    info = _field(payload, "info", dict)
    report = DiagnosticReport(
        step=_integer(_field(payload, "step", int), "step"),
        layers=layers,
        stats={layer: {} for layer in layers},
        flags=[_flag(entry) for entry in _field(payload, "flags", list)],
        info={name: _layer_info(name, fields) for name, fields in info.items()},
        loss=_number(_field(payload, "loss", (int, float, str)), "loss"),
        verdict=_verdict(payload["verdict"]) if "verdict" in payload else None,
    )
    num_scalars = _integer(_field(payload, "num_scalars", int), "num_scalars")
    return report, num_scalars


# JSON types a `LayerInfo` or `Flag` field may have, by its annotation, and
# how an error names them.
_JSON_TYPES = {
    "str": ((str,), "a string"),
    "bool": ((bool,), "true or false"),
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "tuple[int, ...]": ((list,), "a list of integers"),
    "tuple[str, ...]": ((list,), "a list of strings"),
}


def _layer_info(name: str, fields) -> LayerInfo:
    """A `LayerInfo` from its JSON fields; unknown keys (a newer writer's) dropped."""
    _expect(isinstance(fields, dict), f"info[{name!r}]", "an object", fields)
    kept = {}
    for field in dataclasses.fields(LayerInfo):
        if field.name not in fields:
            continue
        value = fields[field.name]
        what = f"info[{name!r}].{field.name}"
        _expect(_fits(value, field.type), what, _JSON_TYPES[field.type][1], value)
        # JSON turns tuples (the only sequences in LayerInfo) into lists.
        kept[field.name] = tuple(value) if isinstance(value, list) else value
    _expect("name" in kept, f"info[{name!r}]", "a name", fields)
    return LayerInfo(**kept)


def _flag(entry) -> Flag:
    """A `Flag` from its JSON object; every field without a default must be there."""
    return _record(Flag, entry, "flag")


def _verdict(entry) -> Verdict:
    """A `Verdict` from its JSON object (its features: names to numbers)."""
    _expect(isinstance(entry, dict), "the verdict", "an object", entry)
    features = entry.get("features", {})
    _expect(isinstance(features, dict), "verdict features", "an object", features)
    numbers = {
        str(k): _number(v, f"verdict feature {k!r}") for k, v in features.items()
    }
    verdict = _record(
        Verdict, {k: v for k, v in entry.items() if k != "features"}, "verdict"
    )
    return dataclasses.replace(verdict, features=numbers)


def _record(cls, entry, name: str):
    """A dataclass of scalars and string tuples from its JSON object.

    Every field without a default must be there; fields a newer writer
    added are dropped.
    """
    _expect(isinstance(entry, dict), f"a {name}", "an object", entry)
    values = {}
    for field in dataclasses.fields(cls):
        if field.type == "dict":
            values[field.name] = {}
            continue
        if field.name not in entry and field.default is not dataclasses.MISSING:
            continue
        _expect(
            field.name in entry, f"a {name}", f"a {field.name!r} field", sorted(entry)
        )
        value = entry[field.name]
        if field.type == "float":
            value = _number(value, f"{name} {field.name}")
        what = f"{name} {field.name}"
        _expect(_fits(value, field.type), what, _JSON_TYPES[field.type][1], value)
        values[field.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def _fits(value, annotation: str) -> bool:
    """Whether a JSON value has the type a field's annotation asks for."""
    types = _JSON_TYPES[annotation][0]
    if isinstance(value, bool) and bool not in types:
        return False  # JSON true is not a number.
    if not isinstance(value, types):
        return False
    if annotation.startswith("tuple["):
        item = str if annotation == "tuple[str, ...]" else int
        return all(_fits(v, item.__name__) for v in value)
    return True


def _field(payload: dict, key: str, types):
    """`payload[key]`, which must be there and of one of `types`."""
    _expect(key in payload, "the record", f"a {key!r} field", sorted(payload))
    value = payload[key]
    ok = isinstance(value, types) and not isinstance(value, bool)
    _expect(ok, repr(key), _names(types), value)
    return value


def _number(value, what: str) -> float:
    """A JSON number, or a non-finite one written as a string."""
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{what} must be a number. Received: {value!r}") from None


def _integer(value: int, what: str) -> int:
    _expect(value >= 0, what, "a non-negative integer", value)
    return value


_JSON_NAMES = {dict: "an object", list: "a list", int: "an integer", str: "a string"}


def _names(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    if float in types:
        return "a number"
    return " or ".join(_JSON_NAMES[t] for t in types)


def _expect(holds: bool, what: str, expected: str, received) -> None:
    if not holds:
        shown = repr(received)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise ValueError(f"{what} must be {expected}. Received: {shown}")
