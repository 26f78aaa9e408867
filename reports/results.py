"""Run record -> the results document (the content of results.json).

Why a separate model: results.json is the authoritative part of a bundle; the HTML and JUnit are
views of it. Building it once, from the record alone, keeps the three views consistent.

The overall verdict is the record's outcome, with one guard: a record that claims PASS while a
measurement failed (or has no measurement at all) is reported as ERROR, so a bundle can never show
PASS for a result that is not one. A record without ``run_finished`` is INCOMPLETE.

Validity conditions: the outcome says what was measured; the conditions say whether the measurement
can be relied on. Equipment out of calibration (or of unknown status) at the run date, a serial
number that differs from what the instrument reports on a hardware station, lab conditions outside
the station's stated limits or drifting during the run (when recorded: reports.environment), or a
record whose last line is torn each add one condition, and any condition makes the report NOT VALID FOR RELEASE
whatever the outcome. A run on the simulated bench or a virtual clock is marked ``simulated``
everywhere; it is never a measurement of real hardware.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from reports import environment
from rig.record import INCOMPLETE, RunRecord

RESULTS_SCHEMA = "rig.results/1"
FAULT_EVENT_KINDS = ("fault_injected", "alarm", "detector", "interlock")


NOT_VALID_PREFIX = "NOT VALID FOR RELEASE"


def station_identity(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Station id/name/location/mode/clock whether the snapshot nests them under "station" or not,
    and ``simulated``: anything but a hardware station on a real clock (unknown counts as simulated)."""
    inner = snapshot.get("station")
    source = inner if isinstance(inner, dict) else snapshot
    identity = {key: source.get(key) for key in ("id", "name", "location", "mode", "clock")}
    identity["simulated"] = is_simulated(identity)
    return identity


def is_simulated(station: dict[str, Any]) -> bool:
    """True unless the station says mode "hardware" and clock "real"."""
    return not (station.get("mode") == "hardware" and station.get("clock") == "real")


def release_text(conditions: list[str], simulated: bool = False) -> str:
    """The one line shown wherever the verdict is: banner, CLI, JUnit, history. Simulated data is
    never valid for release, but it is not a *condition* (nothing on the bench is wrong)."""
    reasons = list(conditions) + (["simulated data"] if simulated else [])
    return f"{NOT_VALID_PREFIX}: {'; '.join(reasons)}" if reasons else "valid for release"


def _run_date(record: RunRecord) -> _dt.date | None:
    text = str(record.started.get("t_utc", ""))[:10]
    try:
        return _dt.date.fromisoformat(text)
    except ValueError:
        return None


def calibration_status(entry: dict[str, Any], run_date: _dt.date | None) -> str:
    """'valid', 'OVERDUE' or 'unknown' on the day of the run (what counts for the result)."""
    due_text = entry.get("calibration_due")
    try:
        due = _dt.date.fromisoformat(str(due_text)[:10]) if due_text else None
    except ValueError:
        due = None
    if due is not None and run_date is not None:
        return "OVERDUE" if due < run_date else "valid"
    if entry.get("calibration_overdue") is True:
        return "OVERDUE"
    if entry.get("calibration_overdue") is False:
        return "valid"
    return "unknown"


def equipment(record: RunRecord) -> list[dict[str, Any]]:
    """One row per instrument of the station snapshot, with calibration status at the run date."""
    snapshot = record.started.get("station") or {}
    instruments = snapshot.get("instruments") or {}
    items = instruments.items() if isinstance(instruments, dict) else (
        (str(i.get("name", n)), i) for n, i in enumerate(instruments)
    )
    run_date = _run_date(record)
    rows = []
    for name, entry in items:
        if not isinstance(entry, dict):
            continue
        identity = entry.get("identity") if isinstance(entry.get("identity"), dict) else {}
        rows.append({
            "name": str(entry.get("name", name)),
            "under_test": bool(entry.get("under_test", False)),
            "kind": entry.get("kind"),
            "driver": entry.get("driver"),
            "serial": entry.get("serial"),
            "model": identity.get("model") or entry.get("model"),
            "firmware": identity.get("firmware") or entry.get("firmware"),
            "reported_serial": identity.get("serial"),
            "serial_mismatch": bool(entry.get("serial_mismatch", False)),
            "calibration_due": entry.get("calibration_due"),
            "calibration_status": calibration_status(entry, run_date),
            "error": entry.get("error"),
        })
    return sorted(rows, key=lambda r: r["name"])


def _is_number_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))


def measurement_row(event: dict[str, Any]) -> dict[str, Any]:
    """One results row. A value that is not a number (a damaged or edited record) makes the row
    an error, whatever outcome the record claims, so the verdict cannot be PASS."""
    outcome = str(event.get("outcome", "")).lower()
    if not _is_number_or_null(event.get("value")):
        outcome = "error"
    return {
        "name": event.get("name"),
        "value": event.get("value"),
        "unit": event.get("unit"),
        "low": event.get("low"),
        "high": event.get("high"),
        "requirement": event.get("requirement"),
        "outcome": outcome if outcome in ("pass", "fail") else "error",
        "uncertainty": event.get("uncertainty"),
        "decision_rule": event.get("decision_rule"),
        "acceptance": event.get("acceptance", "simple"),
        "value_type": event.get("value_type", "number"),
        "criterion": event.get("criterion"),
        "t_proc_s": event.get("t_proc_s"),
        "step": event.get("step"),
        "detail": event.get("detail"),
    }


def validity_conditions(record: RunRecord, rows: list[dict[str, Any]], station: dict[str, Any]) -> list[str]:
    """Why the result cannot be relied on for release (empty: no known reason). See the docstring."""
    conditions: list[str] = []
    for row in rows:
        if row["under_test"]:
            continue  # the item under test is what is being verified, not a reference
        if row["calibration_status"] == "OVERDUE":
            conditions.append(f"{row['name']} calibration overdue since {row['calibration_due']}")
        elif row["calibration_status"] != "valid":
            conditions.append(f"{row['name']} calibration status unknown")
    if not station.get("simulated"):
        for row in rows:
            if row["serial_mismatch"]:
                conditions.append(f"{row['name']} serial mismatch: station file says {row['serial']}, "
                                  f"instrument reports {row.get('reported_serial')}")
    conditions += environment.conditions(record.of_type("environment"))
    if record.truncated_tail:
        conditions.append("run record truncated: its last line is torn")
    return conditions


def verdict(record: RunRecord, measurements: list[dict[str, Any]],
            conditions: list[str] | None = None, *, simulated: bool = False) -> dict[str, Any]:
    """The overall verdict: the record's outcome, never PASS unless every measurement passed, with
    the validity conditions and whether the data came from the simulated bench."""
    outcome = record.outcome
    reason = record.reason
    if outcome == "PASS":
        bad = [m["name"] for m in measurements if m["outcome"] != "pass"]
        if bad:
            outcome, reason = "ERROR", f"record says PASS but measurement(s) did not pass: {', '.join(map(str, bad))}"
        elif not measurements:
            outcome, reason = "ERROR", "record says PASS but contains no measurement"
    return {
        "outcome": outcome,
        "record_outcome": record.outcome,
        "reason": reason,
        "complete": record.outcome != INCOMPLETE,
        "truncated_tail": record.truncated_tail,
        "conditions": list(conditions or []),
        "valid_for_release": not conditions and not simulated,
        "release": release_text(list(conditions or []), simulated),
        "simulated": simulated,
    }


def build_results(record: RunRecord, *, report_id: str, record_sha256: str) -> dict[str, Any]:
    """The results document for ``record`` (plain JSON types only, ready for canonical_json)."""
    started = record.started
    finished = record.finished or {}
    measurements = [measurement_row(e) for e in record.measurements]
    passed = sum(1 for m in measurements if m["outcome"] == "pass")
    snapshot = started.get("station") or {}
    station = station_identity(snapshot)
    rows = equipment(record)
    conditions = validity_conditions(record, rows, station)
    return {
        "schema": RESULTS_SCHEMA,
        "report_id": report_id,
        "verdict": verdict(record, measurements, conditions, simulated=station["simulated"]),
        "run": {
            "run_id": started.get("run_id", record.run_dir.name),
            "started_utc": started.get("t_utc"),
            "finished_utc": finished.get("t_utc"),
            "operator": started.get("operator"),
            "software": started.get("software") or {},
            "record_sha256": record_sha256,
        },
        "station": {
            **station,
            "fluid": snapshot.get("fluid"),
            "safety": snapshot.get("safety"),
            "equipment": [r for r in rows if not r["under_test"]],
        },
        "clock": started.get("clock") or {"virtual": station.get("clock") == "virtual"},
        "procedure": started.get("procedure") or {},
        "item_under_test": {
            "entered": started.get("item_under_test") or {},
            "instrument": next((r for r in rows if r["under_test"]), None),
        },
        "parameters": started.get("parameters") or {},
        "measurements": measurements,
        "summary": {
            "measurements": len(measurements),
            "passed": passed,
            "failed": sum(1 for m in measurements if m["outcome"] == "fail"),
            "errors": sum(1 for m in measurements if m["outcome"] == "error"),
        },
        "events": [
            {k: v for k, v in e.items() if k != "type"} for e in record.of_type("event")
        ],
        "operator_entries": [
            {k: v for k, v in e.items() if k != "type"} for e in record.of_type("operator_entry")
        ],
        "steps": [
            {k: v for k, v in e.items() if k != "type"} for e in record.of_type("step_finished")
        ],
        "safe_state": [
            {k: v for k, v in e.items() if k != "type"} for e in record.of_type("safe_state")
        ],
        "environment": [
            {k: v for k, v in e.items() if k != "type"} for e in record.of_type("environment")
        ],
    }
