"""Lab conditions in a run record: the ``environment`` lines judged against the limits they carry.

Why in reports: whether a result can be released is decided from the record alone (the limits are
recorded with each reading by rig.station.environment), so a bundle judged years later gives the
same answer whatever the station file says by then. Each reading outside its limits, a reading
that could not be taken, and a change between the run's start and end larger than the station
allows is one validity condition (reports.results): NOT VALID FOR RELEASE.
"""

from __future__ import annotations

from typing import Any

QUANTITIES = {"temperature_c": ("lab temperature", "°C"), "humidity_pct": ("lab humidity", "%RH")}
CHANGE_KEYS = {"temperature_c": "max_temperature_change_c", "humidity_pct": "max_humidity_change_pct"}


def conditions(lines: list[dict[str, Any]]) -> list[str]:
    """Validity conditions from a record's ``environment`` lines (empty: none recorded, or all within)."""
    found: list[str] = []
    by_when: dict[str, dict[str, Any]] = {}
    for line in lines:
        when = str(line.get("when"))
        by_when[when] = line
        if line.get("error"):
            found.append(f"lab environment unknown at run {when}: {line['error']}")
            continue
        limits = line.get("limits") or {}
        for quantity, value in (line.get("readings") or {}).items():
            low_high = limits.get(quantity)
            name, unit = QUANTITIES.get(quantity, (quantity, ""))
            if isinstance(low_high, list) and len(low_high) == 2 and not low_high[0] <= value <= low_high[1]:
                found.append(f"{name} {value:g} {unit} at run {when} outside the station's limits "
                             f"{low_high[0]:g}–{low_high[1]:g} {unit}")
    start, end = by_when.get("start"), by_when.get("end")
    if start and end and not start.get("error") and not end.get("error"):
        limits = end.get("limits") or {}
        for quantity, change_key in CHANGE_KEYS.items():
            a, b = (start.get("readings") or {}).get(quantity), (end.get("readings") or {}).get(quantity)
            if a is None or b is None or change_key not in limits:
                continue
            name, unit = QUANTITIES[quantity]
            if abs(b - a) > limits[change_key]:
                found.append(f"unstable environment: {name} changed {b - a:+g} {unit} during the run "
                             f"(from {a:g} to {b:g}; the station allows {limits[change_key]:g} {unit})")
    return found


__all__ = ["CHANGE_KEYS", "QUANTITIES", "conditions"]
