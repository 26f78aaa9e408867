"""`--param NAME=VALUE` parsing, strict on purpose.

Why strict: a mistyped rate on a drug-pump rig must stop the run before anything moves, with one
sentence naming the parameter and what is allowed. Values are plain numbers in the parameter's
unit; the unit may be repeated as a suffix for readability (``rate_ml_h=0.5mL/h``) but is never
converted — a different unit (``0.5mL/min``) is an error, not a guess.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rig.engine.procedure import Parameter, Procedure
from rig.errors import UsageError

# ASCII digits only: a fullwidth "１" or an Arabic-Indic digit is not what a technician means to type.
_VALUE = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(.*?)\s*$", re.ASCII)
_DECIMAL_COMMA = re.compile(r"^,\d", re.ASCII)


@dataclass(frozen=True)
class ParameterValues:
    """Every parameter's value (given or default) and where it came from."""

    values: dict[str, float]
    given: frozenset[str]
    source: str = "command line"  # where the given values came from, e.g. "suite file"

    def for_record(self, procedure: Procedure, station: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """value, unit, source, description and the effective value (see Parameter.station_default)."""
        out: dict[str, Any] = {}
        for p in procedure.parameters:
            value = self.values[p.name]
            entry: dict[str, Any] = {"value": value, "unit": p.unit,
                                     "source": self.source if p.name in self.given else "default"}
            if p.description:
                entry["description"] = p.description
            if value == 0 and p.station_default:
                found: Any = station or {}
                for part in p.station_default.split("."):
                    found = found.get(part) if isinstance(found, Mapping) else None
                if isinstance(found, (int, float)) and not isinstance(found, bool):
                    entry["effective"] = {"value": found, "unit": p.unit, "from": f"station {p.station_default}"}
            elif value == 0 and p.zero_means:
                entry["effective"] = {"value": None, "unit": p.unit, "from": p.zero_means}
            out[p.name] = entry
        return out


def _same_unit(written: str, unit: str) -> bool:
    return written.replace(" ", "").lower() == unit.replace(" ", "").lower()


def parse_value(param: Parameter, text: str) -> float | int:
    """One value for ``param``; UsageError names the parameter and the allowed range."""
    match = _VALUE.match(text)
    if not match:
        raise UsageError(
            f"parameter {param.name}: {text.strip()!r} is not a number; allowed: {param.allowed()}"
        )
    number, suffix = match.groups()
    if _DECIMAL_COMMA.match(suffix):
        raise UsageError(f"parameter {param.name}: {text.strip()!r} uses a decimal comma; write "
                         f"{number}.{suffix[1:]} (allowed: {param.allowed()})")
    if suffix and not (param.unit and _same_unit(suffix, param.unit)):
        expected = f"in {param.unit}" if param.unit else "without a unit"
        raise UsageError(
            f"parameter {param.name}: unit {suffix!r} is not accepted; give the value {expected} "
            f"(allowed: {param.allowed()})"
        )
    value = float(number)
    problem = param.problem(value)
    if problem:
        raise UsageError(f"parameter {param.name}: {text.strip()} {problem}; allowed: {param.allowed()}")
    return param.convert(value)


def parse_params(items: Iterable[str], procedure: Procedure, source: str = "command line") -> ParameterValues:
    """``["rate_ml_h=0.5", ...]`` -> values merged over the procedure's defaults; ``source`` says
    where the given values came from, for the record."""
    values: dict[str, float] = procedure.defaults()
    given: set[str] = set()
    names = [p.name for p in procedure.parameters]
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--param {item!r}: expected NAME=VALUE (e.g. --param {names[0] if names else 'name'}=1)")
        param = procedure.parameter(name)
        if param is None:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            known = ", ".join(f"{p.name} [{p.unit}]" if p.unit else p.name for p in procedure.parameters)
            raise UsageError(f"unknown parameter {name!r} for procedure {procedure.id}{hint}; "
                             f"its parameters: {known or 'none'}")
        if name in given:
            raise UsageError(f"parameter {name} is given more than once")
        values[name] = parse_value(param, text)
        given.add(name)
    problems = [problem for check in procedure.checks if (problem := check(values))]
    if len(problems) == 1:
        raise UsageError(f"parameters of {procedure.id}: {problems[0]}")
    if problems:  # every cross-rule that fails, at once
        raise UsageError(f"parameters of {procedure.id} ({len(problems)} rules not met):\n"
                         + "\n".join(f"  - {p}" for p in problems))
    return ParameterValues(values=values, given=frozenset(given), source=source)


__all__ = ["ParameterValues", "parse_params", "parse_value"]
