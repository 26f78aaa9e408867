"""Station status for the panel: instruments, identities, calibration, the lock holder, the job.

Why identities come from the last time the bench was opened: asking the instruments means opening
the bench, which only the job worker may do (one owner). The service checks the bench when it
starts and on request (a "check" job, like `rig check`), and every run's record has a fresh
snapshot; the panel shows the newest of those and says when it was taken.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from rig.record import utc_now
from rig.station.bench import Bench, describe_error


def check_bench(station: Any, lock: Any) -> dict[str, Any]:
    """Open every instrument like `rig check` (failures per instrument) under the service's
    station ``lock``, snapshot, close."""
    try:
        with Bench.open(station, only_check=True, lock=lock) as bench:
            snap = bench.snapshot()
    except Exception as exc:  # noqa: BLE001 - shown on the status page, never raised
        return {"t_utc": utc_now(), "error": describe_error(exc), "instruments": {}}
    return {"t_utc": utc_now(), "error": None, "instruments": snap["instruments"]}


def station_status(service: Any) -> dict[str, Any]:
    st = service.station
    today = _dt.date.today()
    checked = service.last_check or {}
    seen = checked.get("instruments", {})
    instruments = []
    for name, cfg in st.instruments.items():
        entry = seen.get(name, {})
        instruments.append({
            "name": name, "kind": cfg.kind, "driver": cfg.driver, "resource": cfg.resource,
            "serial": cfg.serial, "identity": entry.get("identity"), "error": entry.get("error"),
            "serial_mismatch": entry.get("serial_mismatch", False),
            "calibration_due": cfg.calibration_due.isoformat(),
            "calibration_overdue": cfg.calibration_overdue(today),
        })
    current = service.jobs.current
    return {
        "station": {"id": st.id, "name": st.name, "location": st.location, "mode": st.mode,
                    "clock": st.clock, "calibration_policy": st.calibration_policy, "path": str(st.path),
                    "max_line_pressure_kpa": st.safety.max_line_pressure_kpa},
        "lock": service.lock_holder,
        "checked_utc": checked.get("t_utc"), "check_error": checked.get("error"),
        "instruments": instruments,
        "current_job": current.summary() if current else None,
        "queued": [j.summary() for j in service.jobs.queued()],
        "auth_required": service.auth_required,
    }


__all__ = ["check_bench", "station_status"]
