"""Station file (rig.toml) -> validated ``rig.station.model.Station``.

Why hand-written checks instead of a generic schema library: a lab technician editing rig.toml must
get ONE sentence per mistake that names the key path, shows the bad value and says what is allowed
(including the cross-field rules: driver vs kind, resources vs mode, duplicate resources, a balance and
a pump present). We collect every problem in one pass and raise them together, so a broken station
file is fixed in one edit, not one error at a time.
"""

from __future__ import annotations

import copy
import datetime as _dt
import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instruments.daq_channels import KINK, VALVES  # the output names the DAQ driver understands
from instruments.registry import DRIVERS, KINDS
from rig.errors import ConfigError
from rig.station.history_url import resolve_url, url_problem
from rig.station.model import (
    FluidConfig,
    InstrumentConfig,
    SafetyConfig,
    SimConfig,
    Station,
)
from rig.textsafe import hidden_characters

STATION_ENV = "RIG_STATION"
SIM_RESOURCE = "sim"  # "the simulated bench's resource for this instrument"
PUMP_KINDS = ("syringe_pump", "peristaltic_pump")


def default_station_path() -> Path:
    """``$RIG_STATION`` if set (how CI runners pick their station), else ./rig.toml."""
    env = os.environ.get(STATION_ENV, "").strip()
    return Path(env) if env else Path("rig.toml")


# --------------------------------------------------------------------------------------------
# Value rendering and the generic key checker
# --------------------------------------------------------------------------------------------


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


def _type_name(value: Any) -> str:
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


def _hint(word: str, options: Iterable[str]) -> str:
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
    unit: str = ""
    check: Callable[[Any], str | None] | None = None  # extra rule: returns a problem or None

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(show(c) for c in self.choices)
        text = _TYPES[self.type][0]
        if self.low is not None and self.high is not None:
            text += f" in {_num(self.low)}..{_num(self.high)}" + (f" {self.unit}" if self.unit else "")
        return text


class Problems:
    """Collects one message per problem, each starting with the key path it is about."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")

    def table(self, data: Any, path: str, spec: dict[str, Key]) -> dict[str, Any]:
        """Check ``data`` against ``spec``; return the keys that passed (defaults filled in).

        A key that failed is absent from the result, so callers can skip rules that need it.
        """
        if not isinstance(data, dict):
            self.add(path, f"{show(data)} has the wrong type ({_type_name(data)}); expected a table")
            return {}
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key not in spec:
                allowed = ", ".join(sorted(spec)) or "none"
                self.add(
                    _join(path, key),
                    f"unknown key (value {show(value)}){_hint(key, spec)}; allowed keys: {allowed}",
                )
        for key, rule in spec.items():
            where = _join(path, key)
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
                f"{show(value)} has the wrong type ({_type_name(value)}); expected {description}",
            )
            return False
        hidden = hidden_characters(value) if isinstance(value, str) else ""
        if hidden:
            self.add(where, f"{show(value)} contains {hidden}; expected printable characters only")
            return False
        if rule.choices is not None and value not in rule.choices:
            allowed = ", ".join(show(c) for c in rule.choices)
            self.add(where, f"{show(value)} is not allowed{_hint(str(value), rule.choices)}; "
                     f"expected one of {allowed}")
            return False
        if rule.type in ("int", "number"):
            if not math.isfinite(value):
                self.add(where, f"{show(value)} is not a finite number; expected {rule.describe()}")
                return False
            low = -math.inf if rule.low is None else rule.low
            high = math.inf if rule.high is None else rule.high
            if not (low <= value <= high):
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
        return True


def _join(path: str, key: str) -> str:
    if not path:
        return key
    # Keys that are not bare TOML keys are quoted, exactly as they would be written in TOML.
    return f"{path}.{key}" if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f"{path}.{show(key)}"


# --------------------------------------------------------------------------------------------
# Resource strings
# --------------------------------------------------------------------------------------------

_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]"
_PORT = r"(?:6553[0-5]|655[0-2]\d|65[0-4]\d{2}|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3})"
_VISA_PATTERNS = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"ASRL(?:\d+|COM\d+|/dev/[^\s:]+|socket://(?:" + _HOST + r"):" + _PORT + r")::INSTR",
        r"TCPIP\d*::(?:" + _HOST + r")::" + _PORT + r"::SOCKET",
        r"TCPIP\d*::(?:" + _HOST + r")(?:::[A-Za-z0-9_,\[\]]+)?::INSTR",
        r"USB\d*::(?:0x[0-9A-F]+|\d+)::(?:0x[0-9A-F]+|\d+)::[^\s:]+(?:::\d+)?::INSTR",
        r"GPIB\d*::\d{1,2}(?:::\d{1,3})?::INSTR",
    )
)
VISA_FORMS = (
    "ASRL<port number or /dev path>::INSTR, TCPIP[n]::host::port::SOCKET, "
    "TCPIP[n]::host[::name]::INSTR, USB[n]::vendor::product::serial::INSTR, "
    "GPIB[n]::address::INSTR"
)
_NI_DEVICE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*")
_HOST_PORT = re.compile(r"(?:" + _HOST + r"):" + _PORT)


def is_visa_resource(text: str) -> bool:
    """True for the VISA resource strings this rig can open (see VISA_FORMS)."""
    return any(p.fullmatch(text) for p in _VISA_PATTERNS)


def _resource_problem(resource: str, kind: str, mode: str | None) -> str | None:
    """Problem with a resource string; ``mode`` None = unknown (itself invalid), so "sim" passes."""
    if resource == SIM_RESOURCE:
        if mode == "hardware":
            return (f"{show(resource)} is only allowed when station.mode = \"sim\"; on hardware give "
                    f"the real {'NI device name' if kind == 'daq' else 'VISA resource'}")
        return None
    if kind == "daq":
        if not _NI_DEVICE.fullmatch(resource):
            return (f"{show(resource)} is not an NI-DAQmx device name; expected a name such as "
                    f"\"Dev1\" (letters, digits, _ or -)")
        return None
    if not is_visa_resource(resource):
        return f"{show(resource)} is not a VISA resource; expected {VISA_FORMS}, or \"sim\""
    return None


def _grpc_problem(server: str, mode: str | None) -> str | None:
    if server == SIM_RESOURCE:
        return None if mode != "hardware" else (
            "\"sim\" is only allowed when station.mode = \"sim\"; give the NI gRPC device "
            "server as \"host:port\", or omit grpc_server for the local NI driver"
        )
    if not _HOST_PORT.fullmatch(server):
        return (f"{show(server)} is not a gRPC server address; expected \"host:port\" (port 1..65535), "
                f"\"sim\", or omit the key for the local NI driver")
    return None


# --------------------------------------------------------------------------------------------
# Schema of the sections
# --------------------------------------------------------------------------------------------

_TOP: dict[str, Key] = {
    "station": Key("table", required=True),
    "sim": Key("table"),
    "fluid": Key("table", required=True),
    "safety": Key("table", required=True),
    "instruments": Key("table", required=True),
    "detection": Key("table"),
    "history": Key("table"),
}

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]*")

_STATION: dict[str, Key] = {
    "id": Key("str", required=True, check=lambda v: None if _ID.fullmatch(v) else (
        f"{show(v)} is not a valid station id; use letters, digits, '.', '_' or '-' "
        "(it names run records and CI runner labels)")),
    "name": Key("str", required=True),
    "location": Key("str", default=""),
    "mode": Key("str", required=True, choices=("sim", "hardware")),
    "clock": Key("str", default="real", choices=("real", "virtual")),
    "calibration_policy": Key("str", default="warn", choices=("warn", "block")),
    "runs_dir": Key("str", default="runs", check=lambda v: None if v.strip() else "is empty"),
}

_SIM: dict[str, Key] = {
    "attach": Key("str", check=lambda v: None if v.strip() else "is empty; give the resources "
                  "file written by `rig sim serve`, or remove the key to start a simulated bench"),
    "seed": Key("int", default=1, low=0, high=2**32 - 1),
}

_FLUID: dict[str, Key] = {
    "name": Key("str", default="water"),
    "density_g_ml": Key("number", required=True, low=0.5, high=2.5, unit="g/mL"),
}

_SAFETY: dict[str, Key] = {
    "max_line_pressure_kpa": Key("number", required=True, low=1, high=1000, unit="kPa"),
}

def _history_url_problem(url: str) -> str | None:
    return url_problem(url)


# [history]: where runs and measurements are filed (rig.fleet.history); default sqlite:///<runs_dir>/history.sqlite3
_HISTORY: dict[str, Key] = {
    "url": Key("str", check=_history_url_problem),
}

_INSTRUMENT: dict[str, Key] = {
    "kind": Key("str", required=True, choices=KINDS),
    "driver": Key("str", required=True, choices=tuple(DRIVERS)),
    "resource": Key("str", required=True),
    "serial": Key("str", required=True),
    "calibration_due": Key("date", required=True),
    "timeout_ms": Key("int", default=1000, low=10, high=600_000, unit="ms"),
    "options": Key("table"),
}
_DAQ_EXTRA: dict[str, Key] = {"grpc_server": Key("str")}

def _nonzero(v: float) -> str | None:
    return None if v != 0 else "0 is not allowed; expected a non-zero number "


# Options each driver understands. Unknown options are errors: a typo such as
# "syringe_diamter_mm" must not silently fall back to a default syringe.
DRIVER_OPTIONS: dict[str, dict[str, Key]] = {
    "ne1000": {
        "address": Key("int", low=0, high=99),
        "syringe_diameter_mm": Key("number", low=0.1, high=50.0, unit="mm"),
        "firmware": Key("str"),  # simulated bench only: what the emulated pump reports
    },
    "reglo_icc": {
        "address": Key("int", low=1, high=8),
        "tubing_inner_diameter_mm": Key("number", low=0.13, high=3.17, unit="mm"),
        "tubing_id_mm": Key("number", low=0.13, high=3.17, unit="mm"),  # alias the driver accepts
        "rollers": Key("int", low=1, high=16),
        "channels": Key("int", low=1, high=4),  # simulated bench only: channels of the pump head
    },
    "mt_sics": {
        # simulated bench only (instruments.sim.mt_sics_emulator): what the emulated unit reports
        "model": Key("str"),
        "software": Key("str"),
        "zero_range_pct": Key("number", low=0, high=100, unit="%"),
        "stability_wait_s": Key("number", low=0, high=60, unit="s"),
    },
    "scpi_dmm": {
        # simulated bench only (instruments.sim.scpi_dmm_emulator): flow-sensor wiring and *IDN?
        "volts_per_ul_min": Key("number", check=_nonzero),
        "manufacturer": Key("str"),
        "model": Key("str"),
        "firmware": Key("str"),
    },
    "nidaqmx": {
        "sample_rate_hz": Key("number", low=1, high=250_000, unit="Hz"),
        "chunk_samples": Key("int", low=1, high=1_000_000, unit="samples"),
        "channels": Key("table"),
    },
}

_PHYSICAL = {
    "ai": re.compile(r"ai\d{1,3}"),
    "ao": re.compile(r"ao\d{1,3}"),
    "do": re.compile(r"port\d{1,2}/line\d{1,2}"),
}


def _channel_type(physical: str) -> str | None:
    for ctype, pattern in _PHYSICAL.items():
        if pattern.fullmatch(physical):
            return ctype
    return None


_CHANNEL_PHYSICAL = Key("str", required=True, check=lambda v: None if _channel_type(v) else (
    f"{show(v)} is not a physical channel; expected \"aiN\", \"aoN\" or \"portN/lineM\" "
    "(without the device name)"))
_CHANNEL_SPECS: dict[str, dict[str, Key]] = {
    "ai": {
        "physical": _CHANNEL_PHYSICAL,
        "scale_per_volt": Key("number", required=True, check=_nonzero),
        "offset": Key("number", default=0.0),
        "unit": Key("str", required=True),
    },
    "ao": {"physical": _CHANNEL_PHYSICAL, "unit": Key("str")},
    "do": {"physical": _CHANNEL_PHYSICAL, "unit": Key("str")},
}

_NAME = re.compile(r"[a-z][a-z0-9_]*")


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_station(path: Path | str) -> Station:
    """Read, validate and resolve a station file; raise ConfigError listing every problem."""
    path = Path(path).expanduser()
    source = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [f"file not found (give --station FILE or set ${STATION_ENV})"], source=source
        ) from None
    except IsADirectoryError:
        raise ConfigError(["is a directory; expected a station TOML file"], source=source) from None
    except PermissionError:
        raise ConfigError(["cannot be read (permission denied)"], source=source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"is not UTF-8 text ({exc.reason} at byte {exc.start})"],
                          source=source) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"invalid TOML syntax: {exc}"], source=source) from None
    station = _validate(raw, path.resolve())
    return station


def _validate(raw: dict[str, Any], path: Path) -> Station:
    problems = Problems()
    top = problems.table(raw, "", _TOP)
    st = problems.table(top["station"], "station", _STATION) if "station" in top else {}
    sim = problems.table(top.get("sim", {}), "sim", _SIM)
    fluid = problems.table(top["fluid"], "fluid", _FLUID) if "fluid" in top else {}
    safety = problems.table(top["safety"], "safety", _SAFETY) if "safety" in top else {}
    mode = st.get("mode")
    clock = st.get("clock")
    if mode == "hardware" and clock == "virtual":
        problems.add("station.clock", "\"virtual\" needs station.mode = \"sim\" (virtual time is "
                     "owned by the simulated bench); use clock = \"real\" on hardware")
    instruments = _instruments(top.get("instruments"), mode, problems) if "instruments" in top else {}
    sections: dict[str, Any] = {}
    if "detection" in top:
        _numbers_only(top["detection"], "detection", problems)
        sections["detection"] = top["detection"]
    history = problems.table(top["history"], "history", _HISTORY) if "history" in top else {}
    if problems.items:
        raise ConfigError(problems.items, source=str(path))

    base = path.parent
    if "url" in history:
        sections["history"] = {"url": resolve_url(history["url"], base)}  # relative = next to this file
    attach = sim.get("attach")
    return Station(
        path=path,
        id=st["id"],
        name=st["name"],
        location=st["location"],
        mode=st["mode"],
        clock=st["clock"],
        calibration_policy=st["calibration_policy"],
        runs_dir=_resolve(base, st["runs_dir"]),
        sim=SimConfig(attach=_resolve(base, attach) if attach else None, seed=sim["seed"]),
        fluid=FluidConfig(name=fluid["name"], density_g_ml=float(fluid["density_g_ml"])),
        safety=SafetyConfig(max_line_pressure_kpa=float(safety["max_line_pressure_kpa"])),
        instruments=instruments,
        raw=raw,
        sections=sections,
    )


def _resolve(base: Path, value: str) -> Path:
    """Relative paths in a station file mean "next to the station file", not the CWD."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _instruments(
    data: dict[str, Any], mode: str | None, problems: Problems
) -> dict[str, InstrumentConfig]:
    result: dict[str, InstrumentConfig] = {}
    used: dict[tuple[str, str], str] = {}  # (server, normalised resource) -> instrument name
    for name, table in data.items():
        path = _join("instruments", name)
        if not _NAME.fullmatch(name):
            problems.add(path, f"{show(name)} is not a valid instrument name; use lower-case "
                         "letters, digits and _, starting with a letter")
        kind = table.get("kind") if isinstance(table, dict) else None
        spec = _INSTRUMENT | (_DAQ_EXTRA if kind == "daq" else {})
        if kind != "daq" and isinstance(table, dict) and "grpc_server" in table:
            problems.add(f"{path}.grpc_server", f"{show(table['grpc_server'])} is not allowed here: "
                         "only an instrument with kind = \"daq\" takes grpc_server")
            table = {k: v for k, v in table.items() if k != "grpc_server"}
        cfg = problems.table(table, path, spec)
        if not {"kind", "driver"} - cfg.keys() and DRIVERS[cfg["driver"]].kind != cfg["kind"]:
            problems.add(f"{path}.driver", _driver_mismatch(cfg["driver"], cfg["kind"]))
            cfg.pop("driver")
        if "resource" in cfg and "kind" in cfg:
            problem = _resource_problem(cfg["resource"], cfg["kind"], mode)
            if problem:
                problems.add(f"{path}.resource", problem)
                cfg.pop("resource")
        if "grpc_server" in cfg:
            problem = _grpc_problem(cfg["grpc_server"], mode)
            if problem:
                problems.add(f"{path}.grpc_server", problem)
        options = cfg.get("options", {})
        if "driver" in cfg and "options" in cfg:
            _options(cfg["driver"], options, f"{path}.options", problems)
        if "resource" in cfg and cfg["resource"] != SIM_RESOURCE:
            ident = (cfg.get("grpc_server") or "", cfg["resource"].casefold())
            if ident in used:
                problems.add(f"{path}.resource", f"{show(cfg['resource'])} is already used by "
                             f"instruments.{used[ident]}; each instrument needs its own resource")
            else:
                used[ident] = name
        if all(k in cfg for k in _INSTRUMENT if k != "options"):
            result[name] = InstrumentConfig(
                name=name,
                kind=cfg["kind"],
                driver=cfg["driver"],
                resource=cfg["resource"],
                serial=cfg["serial"],
                calibration_due=cfg["calibration_due"],
                timeout_ms=cfg["timeout_ms"],
                grpc_server=cfg.get("grpc_server"),
                options=copy.deepcopy(options),  # drivers must not edit Station.raw
            )
    kinds = [t.get("kind") for t in data.values() if isinstance(t, dict)]
    if "balance" not in kinds:
        problems.add("instruments", "no balance; a station needs one instrument with "
                     "kind = \"balance\" (flow is measured gravimetrically)")
    if not any(k in PUMP_KINDS for k in kinds):
        problems.add("instruments", "no pump; a station needs at least one instrument with "
                     "kind = \"syringe_pump\" or \"peristaltic_pump\"")
    return result


def _driver_mismatch(driver: str, kind: str) -> str:
    fitting = [d for d, info in DRIVERS.items() if info.kind == kind]
    return (f"{show(driver)} drives a {DRIVERS[driver].kind}, not a {kind}; "
            f"drivers for kind {show(kind)}: {', '.join(show(d) for d in fitting)}")


def _options(driver: str, options: dict[str, Any], path: str, problems: Problems) -> None:
    checked = problems.table(options, path, DRIVER_OPTIONS[driver])
    if driver == "nidaqmx" and "channels" in checked:
        _channels(checked["channels"], f"{path}.channels", problems)


def _channels(channels: dict[str, Any], path: str, problems: Problems) -> None:
    lines: dict[str, str] = {}
    for name, table in channels.items():
        where = _join(path, name)
        if not _NAME.fullmatch(name):
            problems.add(where, f"{show(name)} is not a valid channel name; use lower-case letters, "
                         "digits and _, starting with a letter")
        if not isinstance(table, dict):
            problems.add(where, f"{show(table)} has the wrong type ({_type_name(table)}); expected "
                         "a table such as { physical = \"ai0\", scale_per_volt = 1.0, unit = \"V\" }")
            continue
        physical = table.get("physical")
        ctype = _channel_type(physical) if isinstance(physical, str) else None
        if ctype is None:
            # Without a valid physical line we cannot tell which keys belong; check only it.
            only = {"physical": physical} if "physical" in table else {}
            problems.table(only, where, {"physical": _CHANNEL_PHYSICAL})
            continue
        problems.table(table, where, _CHANNEL_SPECS[ctype])
        role = _channel_role_problem(name, ctype)
        if role:
            problems.add(f"{where}.physical", f"{show(physical)} {role}")
        if physical in lines:
            problems.add(f"{where}.physical", f"{show(physical)} is already used by channel "
                         f"{show(lines[physical])}; each channel needs its own physical line")
        else:
            lines[physical] = name


def _channel_role_problem(name: str, ctype: str) -> str | None:
    """Outputs drive the fault valves, so their channel names say which valve (the driver's rule)."""
    if ctype == "ao" and name != KINK:
        return (f"is an analog output; the DAQ driver drives only the channel named {show(KINK)} "
                "from an AO (0..10 V = 0..100 % restriction)")
    if ctype == "do" and name not in VALVES:
        return ("is a digital line; the DAQ driver drives only valves named "
                + ", ".join(show(v) for v in VALVES))
    return None


def _numbers_only(table: dict[str, Any], path: str, problems: Problems) -> None:
    """[detection] holds tunable detector parameters: numbers (optionally in sub-tables)."""
    for key, value in table.items():
        where = _join(path, key)
        if isinstance(value, dict):
            _numbers_only(value, where, problems)
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.add(where, f"{show(value)} has the wrong type ({_type_name(value)}); "
                         "expected a number")
        elif not math.isfinite(value):
            problems.add(where, f"{show(value)} is not a finite number; expected a number")


__all__ = ["DRIVER_OPTIONS", "default_station_path", "is_visa_resource", "load_station", "show"]
