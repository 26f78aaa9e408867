"""Settings schemas: what a table of a settings file may hold, and one sentence per mistake.

Why one vocabulary at the bottom of the house: every component declares its own settings next to
its code — a driver its options, an emulator what it plays, the detectors their ``[detection]``
parameters, the station loader its own sections — and the station loader composes them, so a
technician gets the same kind of message whichever part a key belongs to: the key path, the value
as written in TOML, what is allowed, and "did you mean" for a near miss. Every problem is
collected in one pass, so a broken file is fixed in one edit.

Why not pydantic: its errors would have to be translated back into these sentences (TOML
rendering of the value, key paths with quoted keys, the allowed keys listed); the checker below is
smaller than that translation.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rig.textsafe import hidden_characters


def show(value: Any) -> str:
    """A value as the user wrote it in TOML (strings quoted, booleans lower-case, dates ISO)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        text = "[" + ", ".join(show(v) for v in value[:4]) + (", ...]" if len(value) > 4 else "]")
        return text
    return repr(value)


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, _dt.datetime):
        return "date-time"
    if isinstance(value, _dt.date):
        return "date"
    if isinstance(value, _dt.time):
        return "time"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def hint(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {show(close[0])}?)" if close else ""


# Kinds of value a key may hold. Each is (description for messages, accept(value) -> bool).
_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "str": ("a string", lambda v: isinstance(v, str)),
    "int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": (
        "a number",
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    ),
    "date": (
        "a date such as 2027-06-30 (unquoted TOML date)",
        lambda v: isinstance(v, _dt.date) and not isinstance(v, _dt.datetime),
    ),
    "table": ("a table", lambda v: isinstance(v, dict)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "list": ("a list", lambda v: isinstance(v, list)),
}


@dataclass(frozen=True)
class Key:
    """What one key of a table may hold."""

    type: str  # a key of _TYPES
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is not allowed ("> 0" rather than ">= 0")
    unit: str = ""
    check: Callable[[Any], str | None] | None = None  # extra rule: returns a problem or None
    schema: Schema | None = None  # a table: the keys it may hold, checked in turn
    validate: Callable[[dict[str, Any], str, Problems], None] | None = None  # a table: rules across keys

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(show(c) for c in self.choices)
        text = _TYPES[self.type][0]
        unit = f" {self.unit}" if self.unit else ""
        if self.low is not None and self.high is not None and not self.low_open:
            return f"{text} in {_num(self.low)}..{_num(self.high)}{unit}"
        bounds = ([f"{'>' if self.low_open else '>='} {_num(self.low)}"] if self.low is not None else []) + (
            [f"<= {_num(self.high)}"] if self.high is not None else [])
        return f"{text} {' and '.join(bounds)}{unit}" if bounds else text

    def in_range(self, value: float) -> bool:
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        return (low < value if self.low_open else low <= value) and value <= high


Schema = dict[str, Key]

NAME = re.compile(r"[a-z][a-z0-9_]*")  # names people give things in a settings file (instruments, channels)


class Problems:
    """Collects one message per problem, each starting with the key path it is about."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")

    def table(self, data: Any, path: str, spec: Schema) -> dict[str, Any]:
        """Check ``data`` against ``spec``; return the keys that passed (defaults filled in).

        A key that failed is absent from the result, so callers can skip rules that need it.
        """
        if not isinstance(data, dict):
            self.add(path, f"{show(data)} has the wrong type ({type_name(data)}); expected a table")
            return {}
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key not in spec:
                allowed = ", ".join(sorted(spec)) or "none"
                self.add(
                    join(path, key),
                    f"unknown key (value {show(value)}){hint(key, spec)}; allowed keys: {allowed}",
                )
        for key, rule in spec.items():
            where = join(path, key)
            if key not in data:
                if rule.required and rule.type == "table":
                    self.add(where, f"missing required table [{where}]")
                elif rule.required:
                    self.add(where, f"missing required key; expected {rule.describe()}")
                elif rule.default is not None:
                    out[key] = rule.default
                continue
            value = data[key]
            if self.value(value, where, rule):
                out[key] = value
        return out

    def value(self, value: Any, where: str, rule: Key) -> bool:
        """Check one value against its rule; report and return False if it fails."""
        description, accepts = _TYPES[rule.type]
        if not accepts(value):
            self.add(
                where,
                f"{show(value)} has the wrong type ({type_name(value)}); expected {description}",
            )
            return False
        hidden = hidden_characters(value) if isinstance(value, str) else ""
        if hidden:
            self.add(where, f"{show(value)} contains {hidden}; expected printable characters only")
            return False
        if rule.choices is not None and value not in rule.choices:
            allowed = ", ".join(show(c) for c in rule.choices)
            self.add(where, f"{show(value)} is not allowed{hint(str(value), rule.choices)}; "
                     f"expected one of {allowed}")
            return False
        if rule.type in ("int", "number"):
            if not math.isfinite(value):
                self.add(where, f"{show(value)} is not a finite number; expected {rule.describe()}")
                return False
            if not rule.in_range(value):
                self.add(where, f"{show(value)} is out of range; expected {rule.describe()}")
                return False
        if rule.type == "str" and rule.required and not value.strip():
            self.add(where, "is empty; expected a non-empty string")
            return False
        if rule.check is not None:
            problem = rule.check(value)
            if problem:
                self.add(where, problem)
                return False
        if rule.type == "table" and (rule.schema is not None or rule.validate is not None):
            before = len(self.items)
            checked = self.table(value, where, rule.schema) if rule.schema is not None else value
            if rule.validate is not None:
                rule.validate(checked, where, self)
            return len(self.items) == before
        return True


def join(path: str, key: str) -> str:
    if not path:
        return key
    # Keys that are not bare TOML keys are quoted, exactly as they would be written in TOML.
    return f"{path}.{key}" if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f"{path}.{show(key)}"


def check_options(options: Mapping[str, Any], schema: Schema, where: str) -> dict[str, Any]:
    """A component checking its own settings with its declared schema (the station loader has
    already done so for a station file; this guards direct construction). Keys the schema does
    not declare are left to their owner (e.g. an emulator's options in a driver's table).
    Returns the declared keys with defaults filled in; raises ValueError naming every problem."""
    problems = Problems()
    checked = problems.table({k: v for k, v in options.items() if k in schema}, where, schema)
    if problems.items:
        raise ValueError("; ".join(problems.items))
    return checked


def int_option(options: Mapping[str, Any], key: str, rule: Key, instrument: str, note: str = "") -> int:
    """One integer option a driver or emulator reads itself (an address, a watchdog), checked
    against its declared ``rule`` and with the rule's default when absent.

    Why one helper: the pump drivers and their emulators each read such options at construction
    (the station loader has checked a station file's already; this guards direct construction and
    reopening); one check keeps their messages alike: "pump: options.address must be an integer
    0..99, got 100". ``note`` follows the range, e.g. " (0 = no watchdog)".
    """
    value = options.get(key, rule.default)
    if not isinstance(value, int) or isinstance(value, bool) or not rule.in_range(value):
        bounds = f"{_num(rule.low)}..{_num(rule.high)}" if rule.low is not None and rule.high is not None else ""
        unit = f" {rule.unit}" if rule.unit else ""
        raise ValueError(f"{instrument}: options.{key} must be an integer {bounds}{unit}{note}, got {value!r}")
    return value


__all__ = ["NAME", "Key", "Problems", "Schema", "check_options", "hint", "int_option", "join", "show", "type_name"]
