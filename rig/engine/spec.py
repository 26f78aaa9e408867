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
    acceptance = "simple"             # or "guarded" (ILAC-G8 guarded acceptance, w = U); optional
    type = "boolean"                  # optional: 1 = yes, 0 = no (low = high = 1: must be yes)

    [requirements]                    # every requirement the procedure names, with its statement
                                      # (when the table is present it must cover them all; every
                                      # shipped spec has one, tests/test_report_content.py checks)
    "REQ-DEL-001" = "The pump shall deliver the programmed volume within ±5 %."

Decision rules (ILAC-G8:09/2019): "simple" acceptance compares the value with the limits and
reports U beside it; "guarded" acceptance passes only when the whole interval value ± U lies within
the limits (guard band w = U), so a pass carries a low risk of false acceptance; a guarded limit
without an uncertainty cannot pass. ``[spec] acceptance`` sets the default for every limit.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
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
GUARDED_DECISION_RULE = (
    "guarded acceptance (ILAC-G8, guard band w = U, k = 2): pass when low + U <= value <= high - U"
)
ACCEPTANCE = ("simple", "guarded")
TYPES = ("number", "boolean")


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
    acceptance: str = "simple"
    type: str = "number"

    def evaluate(self, value: float | None, expanded: float | None = None) -> str:
        """"pass" or "fail"; a missing or non-finite value never passes. Guarded acceptance moves
        each limit inward by the expanded uncertainty and never passes without one."""
        if value is None or not math.isfinite(value):
            return "fail"
        guard = 0.0
        if self.acceptance == "guarded" and self.type != "boolean":
            if expanded is None or not math.isfinite(expanded):
                return "fail"
            guard = abs(expanded)
        if self.low is not None and value < self.low + guard:
            return "fail"
        if self.high is not None and value > self.high - guard:
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
    requirements: dict[str, str] = field(default_factory=dict)  # id -> statement

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
    unknown_top = sorted(set(raw) - {"spec", "limits", "requirements"})
    if unknown_top:
        problems.append(f"unknown table(s) {', '.join(unknown_top)} (allowed: spec, limits, requirements)")
    statements = raw.get("requirements", {})
    if not isinstance(statements, dict) or not all(isinstance(v, str) and v.strip() for v in statements.values()):
        problems.append("requirements must be a table of \"REQ-ID\" = \"statement\" (non-empty strings)")
        statements = {}
    default_acceptance = head.get("acceptance", "simple")
    if default_acceptance not in ACCEPTANCE:
        problems.append(f"spec.acceptance is {default_acceptance!r}; allowed: {', '.join(ACCEPTANCE)}")
        default_acceptance = "simple"
    proc_id = _text(head, "procedure", "spec", problems)
    version = _text(head, "version", "spec", problems)
    title = _text(head, "title", "spec", problems, default=proc_id or "spec")
    default_rule = _text(head, "decision_rule", "spec", problems, default=(
        GUARDED_DECISION_RULE if head.get("acceptance") == "guarded" else DEFAULT_DECISION_RULE))

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
        allowed = {"low", "high", "unit", "requirement", "decision_rule", "description", "acceptance", "type"}
        extra = sorted(set(table) - allowed)
        if extra:
            problems.append(f"{where}: unknown key(s) {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})")
        acceptance = table.get("acceptance", default_acceptance)
        if acceptance not in ACCEPTANCE:
            problems.append(f"{where}.acceptance is {acceptance!r}; allowed: {', '.join(ACCEPTANCE)}")
            acceptance = default_acceptance
        kind = table.get("type", "number")
        if kind not in TYPES:
            problems.append(f"{where}.type is {kind!r}; allowed: {', '.join(TYPES)}")
            kind = "number"
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
            decision_rule=_text(table, "decision_rule", where, problems, default=(
                GUARDED_DECISION_RULE if acceptance == "guarded" and "decision_rule" not in head else default_rule)),
            description=str(table.get("description", "")),
            acceptance=acceptance, type=kind,
        )
        requirement = limits[name].requirement
        if requirement and statements and requirement not in statements:
            problems.append(f"{where}.requirement {requirement!r} has no statement in [requirements]")

    if procedure is not None:
        if proc_id and proc_id != procedure.id:
            problems.append(f"spec.procedure is {proc_id!r} but the procedure is {procedure.id!r}")
        for m in procedure.measurements:
            limit = limits.get(m.name)
            if limit is None:
                problems.append(f"no [limits.{m.name}] for measurement {m.name} ({m.unit})")
            elif limit.unit != m.unit:
                problems.append(f"limits.{m.name}.unit is {limit.unit!r} but the measurement is in {m.unit!r}")
        for requirement in getattr(procedure, "requirements", ()) if "requirements" in raw else ():
            if requirement not in statements:
                problems.append(f"[requirements] has no statement for {requirement} (every requirement the "
                                "procedure names needs its statement, shown next to its id in reports)")
        declared = {m.name for m in procedure.measurements}
        for name in sorted(set(limits) - declared):
            problems.append(f"limits.{name}: procedure {procedure.id} has no measurement of that name")

    if problems:
        raise ConfigError(problems, source=source)
    return Spec(path=path.resolve(), procedure=proc_id, version=version, title=title, limits=limits,
                sha256=hashlib.sha256(data).hexdigest(),
                requirements={str(k): str(v).strip() for k, v in statements.items()})


__all__ = ["ACCEPTANCE", "DEFAULT_DECISION_RULE", "GUARDED_DECISION_RULE", "Limit", "Spec", "load_spec"]
