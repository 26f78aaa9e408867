"""Versioned spec files: the acceptance limits of a procedure, kept out of the code.

Why a separate file with a hash: limits change under document control (a new spec version) more
often than the method does, and a report must say exactly which limits it was judged against. The
sha256 of the file's bytes goes into the run record next to the procedure source's sha256.

Format (TOML)::

    [spec]
    procedure = "delivery_check"     # must match the procedure id
    version = "1.0.0"
    title = "..."
    decision_rule = "simple acceptance: ..."   # optional default for every limit

    [limits.volume_error_pct]         # one table per measurement the procedure declares
    low = -5.0                        # inclusive; omit for a one-sided limit
    high = 5.0
    unit = "%"                        # must equal the measurement's unit
    requirement = "REQ-DEL-001"
    decision_rule = "..."             # optional, overrides the spec default
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rig.errors import ConfigError


class _DeclaredMeasurement(Protocol):
    name: str
    unit: str


class DeclaringProcedure(Protocol):
    """What a spec is checked against: a procedure's id and declared measurements."""

    id: str
    measurements: Sequence[_DeclaredMeasurement]

DEFAULT_DECISION_RULE = (
    "simple acceptance (ILAC-G8 binary, no guard band): pass when low <= value <= high"
)


@dataclass(frozen=True)
class Limit:
    """Acceptance interval of one measurement (inclusive bounds; either may be open)."""

    name: str
    unit: str
    requirement: str
    low: float | None = None
    high: float | None = None
    decision_rule: str = DEFAULT_DECISION_RULE
    description: str = ""

    def evaluate(self, value: float | None) -> str:
        """"pass" or "fail"; a missing or non-finite value never passes."""
        if value is None or not math.isfinite(value):
            return "fail"
        if self.low is not None and value < self.low:
            return "fail"
        if self.high is not None and value > self.high:
            return "fail"
        return "pass"

    def describe(self) -> str:
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "+inf" if self.high is None else f"{self.high:g}"
        return f"[{lo}, {hi}] {self.unit}".rstrip()


@dataclass(frozen=True)
class Spec:
    path: Path
    procedure: str
    version: str
    title: str
    limits: dict[str, Limit]
    sha256: str

    def limit(self, name: str) -> Limit:
        return self.limits[name]


def _number(value: Any, where: str, problems: list[str]) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        problems.append(f"{where} must be a finite number, got {value!r}")
        return None
    return float(value)


def _text(table: dict[str, Any], key: str, where: str, problems: list[str], default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}.{key} must be a non-empty string" + ("" if key in table else " (missing)"))
        return ""
    return value


def load_spec(path: Path | str, procedure: DeclaringProcedure | None = None) -> Spec:
    """Read and validate a spec file; with ``procedure``, also check it covers exactly the
    procedure's measurements with matching units. ConfigError lists every problem."""
    path = Path(path)
    source = f"spec file {path}"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"cannot be read: {exc.strerror or exc}"], source=source) from None
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([f"invalid TOML: {exc}"], source=source) from None

    problems: list[str] = []
    head = raw.get("spec")
    if not isinstance(head, dict):
        raise ConfigError(["missing [spec] table (procedure, version, title)"], source=source)
    unknown_top = sorted(set(raw) - {"spec", "limits"})
    if unknown_top:
        problems.append(f"unknown table(s) {', '.join(unknown_top)} (allowed: spec, limits)")
    proc_id = _text(head, "procedure", "spec", problems)
    version = _text(head, "version", "spec", problems)
    title = _text(head, "title", "spec", problems, default=proc_id or "spec")
    default_rule = _text(head, "decision_rule", "spec", problems, default=DEFAULT_DECISION_RULE)

    limits: dict[str, Limit] = {}
    tables = raw.get("limits", {})
    if not isinstance(tables, dict):
        problems.append("limits must be a table of [limits.<measurement>] tables")
        tables = {}
    for name, table in tables.items():
        where = f"limits.{name}"
        if not isinstance(table, dict):
            problems.append(f"{where} must be a table")
            continue
        extra = sorted(set(table) - {"low", "high", "unit", "requirement", "decision_rule", "description"})
        if extra:
            problems.append(f"{where}: unknown key(s) {', '.join(extra)} "
                            "(allowed: low, high, unit, requirement, decision_rule, description)")
        low = _number(table.get("low"), f"{where}.low", problems)
        high = _number(table.get("high"), f"{where}.high", problems)
        if "low" not in table and "high" not in table:
            problems.append(f"{where} needs low and/or high")
        if low is not None and high is not None and low > high:
            problems.append(f"{where}: low {low:g} is greater than high {high:g}")
        unit = table.get("unit")
        if not isinstance(unit, str):
            problems.append(f"{where}.unit must be a string (\"\" for dimensionless)")
            unit = ""
        limits[name] = Limit(
            name=name, unit=unit,
            requirement=_text(table, "requirement", where, problems),
            low=low, high=high,
            decision_rule=_text(table, "decision_rule", where, problems, default=default_rule),
            description=str(table.get("description", "")),
        )

    if procedure is not None:
        if proc_id and proc_id != procedure.id:
            problems.append(f"spec.procedure is {proc_id!r} but the procedure is {procedure.id!r}")
        for m in procedure.measurements:
            limit = limits.get(m.name)
            if limit is None:
                problems.append(f"no [limits.{m.name}] for measurement {m.name} ({m.unit})")
            elif limit.unit != m.unit:
                problems.append(f"limits.{m.name}.unit is {limit.unit!r} but the measurement is in {m.unit!r}")
        declared = {m.name for m in procedure.measurements}
        for name in sorted(set(limits) - declared):
            problems.append(f"limits.{name}: procedure {procedure.id} has no measurement of that name")

    if problems:
        raise ConfigError(problems, source=source)
    return Spec(path=path.resolve(), procedure=proc_id, version=version, title=title, limits=limits,
                sha256=hashlib.sha256(data).hexdigest())


__all__ = ["DEFAULT_DECISION_RULE", "Limit", "Spec", "load_spec"]
