"""Lab conditions: the station's stated limits, and readings taken at the start and end of a run.

Why: gravimetric flow measurement assumes the lab the method was validated in (water density and
evaporation follow temperature and humidity; ISO 7886 / IEC 60601-2-24 state ambient conditions).
A run made while the lab was out of its stated conditions, or drifting, measured something, but
not under the conditions the specification assumes: the result is NOT VALID FOR RELEASE
(reports.results), whatever the outcome. Only when the station says so: no ``[environment]``
section, no readings, no condition.

Where readings come from: the lab's environment logger (a calibrated thermo-hygrometer) writes
its latest reading as a small JSON file, ``{"temperature_c": 21.4, "humidity_pct": 43, "t_utc":
"2026-…Z"}``, that the station file names (``readings``). The runner reads it when the run starts
and when it ends and records each reading, with the limits it is judged against, as an
``environment`` line of the record. A reading that cannot be had (file missing, a value missing,
older than ``max_age_min``) is recorded with its error: the conditions are then unknown, which is
itself a condition, as for calibration status unknown.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import time
from pathlib import Path
from typing import Any

from reports.environment import CHANGE_KEYS, QUANTITIES
from rig.record import utc_now
from rig.safeio import read_regular
from rig.settings import Key, Problems, show

MAX_READING_BYTES = 64 * 1024


def _range_check(value: Any) -> str | None:
    ok = (isinstance(value, list) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
          and value[0] < value[1])
    return None if ok else f"{show(value)} is not allowed; expected [low, high] with low < high, e.g. [18.0, 25.0]"


# [environment] in the station file (rig.station.config composes it)
SETTINGS: dict[str, Key] = {
    "temperature_c": Key("list", check=_range_check),
    "humidity_pct": Key("list", check=_range_check),
    "max_temperature_change_c": Key("number", low=0, low_open=True, high=50, unit="°C"),
    "max_humidity_change_pct": Key("number", low=0, low_open=True, high=100, unit="%RH"),
    "readings": Key("str", required=True, check=lambda v: None if v.strip() else (
        "is empty; give the file the lab's environment logger writes its latest reading to")),
    "max_age_min": Key("number", default=30.0, low=0, low_open=True, high=24 * 60, unit="min"),
}


def validate(table: Any, problems: Problems, base: Path) -> dict[str, Any] | None:
    """The checked ``[environment]`` section with ``readings`` made absolute, or None."""
    checked = problems.table(table, "environment", SETTINGS)
    if "readings" not in checked:
        return None
    if not any(q in checked for q in QUANTITIES):
        problems.add("environment", "states no limits; give temperature_c = [low, high] and/or humidity_pct = [low, high]")
        return None
    path = Path(checked["readings"]).expanduser()
    checked["readings"] = str(path if path.is_absolute() else base / path)
    return checked


def limits_of(settings: dict[str, Any]) -> dict[str, Any]:
    """What a reading is judged against, recorded with it (the record is self-contained)."""
    return {k: settings[k] for k in (*QUANTITIES, *CHANGE_KEYS.values()) if k in settings}


def read(settings: dict[str, Any] | None, when: str) -> dict[str, Any] | None:
    """The ``environment`` record fields for a reading taken now (``when`` "start" or "end"), or
    None when the station states no lab conditions. Never raises: a failed reading is recorded
    with its ``error``. Judged by reports.environment."""
    if not settings:
        return None
    fields: dict[str, Any] = {"when": when, "t_utc": utc_now(), "source": settings["readings"],
                              "limits": limits_of(settings), "readings": {}, "error": None}
    try:
        fields["readings"] = _reading(Path(settings["readings"]), settings)
    except OSError as exc:
        fields["error"] = f"{settings['readings']}: {exc.strerror or exc}"
    except ValueError as exc:
        fields["error"] = str(exc)
    return fields


def _reading(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    data = json.loads(read_regular(path, max_bytes=MAX_READING_BYTES, what=str(path)))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object such as {{\"temperature_c\": 21.4, \"humidity_pct\": 43}}")
    if "t_utc" in data:
        taken = _dt.datetime.fromisoformat(str(data["t_utc"]).replace("Z", "+00:00"))
        if taken.tzinfo is None:
            raise ValueError(f"{path}: t_utc {data['t_utc']!r} is not UTC (suffix Z)")
        age_s = (_dt.datetime.now(_dt.timezone.utc) - taken).total_seconds()
    else:
        age_s = time.time() - path.stat().st_mtime
    if age_s > float(settings["max_age_min"]) * 60:
        raise ValueError(f"the latest reading in {path} is {age_s / 60:.0f} min old (at most {settings['max_age_min']:g} "
                         "min allowed): the environment logger has stopped")
    out: dict[str, Any] = {}
    for quantity in QUANTITIES:
        if quantity not in settings:
            continue
        value = data.get(quantity)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{path} has no {quantity} reading (got {value!r})")
        out[quantity] = float(value)
    return out


__all__ = ["SETTINGS", "read", "validate"]
