"""Procedure forms generated from the procedure's own parameter schema, checked field by field.

Why here and not in the browser: the rules (units, ranges, integers, cross-parameter rules, the
item-under-test entry patterns) live once, in the procedure; the form shows them and the service
checks a submission with the same functions `rig run` uses (``parse_value``, the procedure's
``checks``, ``Entry.normalise``) so the technician sees every problem next to its field before
anything starts, in the same words the command line would print.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rig.engine.params import parse_value
from rig.engine.procedure import Procedure
from rig.errors import UsageError


@dataclass
class FormCheck:
    """A checked submission: ``--param`` items and item answers, or the problems per field."""

    param_items: list[str] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # field -> message
    form_error: str | None = None  # a cross-parameter rule

    @property
    def ok(self) -> bool:
        return not self.errors and self.form_error is None


def form_schema(procedure: Procedure) -> dict[str, Any]:
    """What the panel (and the API) shows for one procedure."""
    return {
        "id": procedure.id, "version": procedure.version, "title": procedure.title,
        "description": procedure.description, "requirements": list(procedure.requirements),
        "parameters": [{
            "name": p.name, "unit": p.unit, "default": p.default, "low": p.low, "high": p.high,
            "integer": p.integer, "description": p.description, "allowed": p.allowed(),
        } for p in procedure.parameters],
        "item_under_test": [{"id": e.id, "prompt": e.prompt, "pattern": e.pattern or "",
                             "example": e.example} for e in procedure.item_under_test],
        "operator_steps": [{"id": s.id, "kind": s.kind, "prompt": s.prompt}
                           for s in procedure.operator_steps() if s not in procedure.item_under_test],
        "checks": [getattr(c, "__doc__", None) or c.__name__ for c in procedure.checks],
    }


def check_form(procedure: Procedure, values: Mapping[str, Any]) -> FormCheck:
    """Every field on its own, then the cross-parameter rules on the merged values."""
    result = FormCheck()
    merged = procedure.defaults()
    for param in procedure.parameters:
        text = str(values.get(param.name, "") or "").strip()
        if not text:
            continue  # the default
        try:
            merged[param.name] = parse_value(param, text)
        except UsageError as exc:
            result.errors[param.name] = str(exc)
            continue
        result.param_items.append(f"{param.name}={text}")
    for entry in procedure.item_under_test:
        text = str(values.get(entry.id, "") or "")
        try:
            result.answers[entry.id] = entry.normalise(text)
        except ValueError as exc:
            result.errors[entry.id] = f"{entry.prompt}: {exc}"
    known = {p.name for p in procedure.parameters} | {e.id for e in procedure.item_under_test}
    for name in values:
        if name not in known and name not in ("procedure", "csrf"):
            result.errors[name] = f"unknown field {name!r} for procedure {procedure.id}"
    if not result.errors:
        for rule in procedure.checks:
            problem = rule(merged)
            if problem:
                result.form_error = f"parameters of {procedure.id}: {problem}"
                break
    return result


__all__ = ["FormCheck", "check_form", "form_schema"]
