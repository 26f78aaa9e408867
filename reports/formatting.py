"""How a measurement reads, the same in report.html, junit.xml, `rig report show` and `rig show`.

Why one module: a reviewer who sees -0.14028 in the page, -0.140281 in CI and -0.14028056112223575
in the terminal must wonder which one was judged. Every view rounds a value to its expanded
uncertainty (two significant digits of U, GUM 7.2.6) through these functions; results.json keeps
full precision. A yes/no measurement reads "yes"/"no" with its criterion in words, never "1, limits
1…1".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rig.analysis.uncertainty import expanded_of, round_to_uncertainty


def is_boolean(m: Mapping[str, Any]) -> bool:
    return m.get("value_type") == "boolean"


def value_text(m: Mapping[str, Any], *, unit: bool = True) -> str:
    """The measured value as every view prints it."""
    value = m.get("value")
    if value is None:
        return "no value"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if is_boolean(m):
        return "yes" if value >= 0.5 else "no"
    text = round_to_uncertainty(float(value), expanded_of(m.get("uncertainty")))
    return f"{text} {m.get('unit') or ''}".strip() if unit else text


def _bound(value: float) -> str:
    return f"{value:g}"


def limits_text(m: Mapping[str, Any]) -> str:
    low, high, unit = m.get("low"), m.get("high"), m.get("unit") or ""
    if is_boolean(m):
        wanted = "yes" if (low if low is not None else high or 0) >= 0.5 else "no"
        criterion = m.get("criterion") or ""
        return f"must be {wanted}" + (f": {criterion}" if criterion else "")
    if low is None and high is None:
        return "none (recorded only)"
    if low is None:
        return f"≤ {_bound(high)} {unit}".strip()
    if high is None:
        return f"≥ {_bound(low)} {unit}".strip()
    return f"{_bound(low)} … {_bound(high)} {unit}".strip()


def uncertainty_text(m: Mapping[str, Any]) -> str:
    if is_boolean(m):
        return "not applicable (yes/no)"
    u = m.get("uncertainty")
    expanded = expanded_of(u)
    if expanded is None:
        return "not evaluated"
    k = u.get("k") if isinstance(u, Mapping) else None
    text = f"± {round_to_uncertainty(expanded, expanded)} {m.get('unit') or ''}".strip()
    return f"{text} (k = {k:g})" if isinstance(k, (int, float)) else text


def budget_rows(m: Mapping[str, Any]) -> list[dict[str, str]]:
    """The components of a measurement's budget as printable rows (empty without a budget)."""
    u = m.get("uncertainty")
    if not isinstance(u, Mapping):
        return []
    unit = u.get("unit") or m.get("unit") or ""
    rows = []
    for c in u.get("components") or []:
        if isinstance(c, Mapping):
            value = c.get("u")
            shown = f"{value:.2g} {unit}".strip() if isinstance(value, (int, float)) else "?"
            rows.append({"quantity": str(c.get("quantity")), "source": str(c.get("source")),
                         "distribution": str(c.get("distribution")), "u": shown})
    return rows


def requirement_text(m: Mapping[str, Any], statements: Mapping[str, str] | None) -> str:
    req = m.get("requirement")
    if not req:
        return "—"
    statement = (statements or {}).get(str(req))
    return f"{req}: {statement}" if statement else f"{req} (no statement in the spec)"


def parameter_effective(p: Any) -> str:
    """The value the procedure used, in words: "station fluid.density_g_ml: 0.998 g/mL"."""
    if not isinstance(p, Mapping):
        return str(p)
    effective = p.get("effective")
    unit = p.get("unit") or ""
    if isinstance(effective, Mapping):
        if effective.get("value") is None:
            return str(effective.get("from"))
        return f"{effective.get('from')}: {effective['value']:g} {unit}".strip()
    value = p.get("value")
    return f"{value:g} {unit}".strip() if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


__all__ = ["budget_rows", "is_boolean", "limits_text", "parameter_effective", "requirement_text",
           "uncertainty_text", "value_text"]
