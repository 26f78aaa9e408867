"""Station file (rig.toml) -> validated ``rig.station.model.Station``.

Why one loader composing many schemas: each component declares its own settings next to its code
(drivers their options in instruments.drivers, emulators what they play in ``SIM_OPTIONS``, the
detectors ``[detection]`` in rig.analysis.detection, the DAQ its wiring in instruments.daq_channels);
this module holds only the station's own sections and the cross-field rules (driver vs kind,
resources vs mode, duplicate resources, a balance and a pump present). A lab technician editing
rig.toml gets ONE sentence per mistake naming the key path, the value as written and what is allowed
(rig.settings); every problem is collected in one pass, so a broken file is fixed in one edit.
"""

from __future__ import annotations

import copy
import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from instruments.drivers import DRIVERS, KINDS, PUMP_KINDS
from instruments.grpc_link import is_local, tls_problem
from instruments.sim.emulators import sim_options
from rig.analysis.detection import SETTINGS as DETECTION_SETTINGS
from rig.errors import ConfigError
from rig.settings import NAME, Key, Problems, join, show
from rig.station import environment
from rig.station.history_url import resolve_url, url_problem
from rig.station.model import (
    FluidConfig,
    InstrumentConfig,
    SafetyConfig,
    SimConfig,
    Station,
)

STATION_ENV = "RIG_STATION"
SIM_RESOURCE = "sim"  # "the simulated bench's resource for this instrument"


def default_station_path() -> Path:
    """``$RIG_STATION`` if set (how CI runners pick their station), else ./rig.toml."""
    env = os.environ.get(STATION_ENV, "").strip()
    return Path(env) if env else Path("rig.toml")


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
    "signing": Key("table"),
    "operators": Key("table"),
    "service": Key("table"),
    "environment": Key("table"),  # the lab's stated conditions (rig.station.environment)
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
    "calibration_policy": Key("str", default="block", choices=("warn", "block")),
    "runs_dir": Key("str", default="runs", check=lambda v: None if v.strip() else "is empty"),
    # the station's one audit trail (runs, keys, signatures, nightly) and its key registry; relative
    # paths are next to this file. Defaults: <runs_dir>/audit.jsonl and keys/registry.json.
    "audit_log": Key("str", check=lambda v: None if v.strip() else "is empty"),
    "key_registry": Key("str", check=lambda v: None if v.strip() else "is empty"),
}

_ADMIN_KEY_ID = re.compile(r"ed25519:[0-9a-f]{32}")
# [signing]: the root of trust of the key registry (reports.key_registry): the administrator key(s)
# whose signatures make registry entries count. Operators allowed to run procedures.
_SIGNING: dict[str, Key] = {
    "admin_keys": Key("list", check=lambda v: None if v and all(
        isinstance(x, str) and _ADMIN_KEY_ID.fullmatch(x) for x in v) else (
        "expected a list of key ids such as \"ed25519:0123456789abcdef0123456789abcdef\" "
        "(printed by `rig keys init-admin`)")),
    # an RFC 3161 time-stamp authority (reports.timestamp): signatures get a trusted time
    "tsa_url": Key("str", check=lambda v: None if re.fullmatch(r"https?://[^\s/?#]+(/[^\s]*)?", v) else (
        f"{show(v)} is not a time-stamp authority URL; expected http://host[:port]/path or https://…")),
    "tsa_certificate": Key("str", check=lambda v: None if v.strip() else "is empty; give the TSA's certificate "
                           "file (PEM or DER)"),
    "tsa_timeout_s": Key("number", default=10.0, low=0.5, high=120.0, unit="s"),
}
_OPERATORS: dict[str, Key] = {
    "names": Key("list", check=lambda v: None if all(isinstance(x, str) and x.strip() for x in v) else (
        "expected a list of non-empty printed names")),
}

_SIM: dict[str, Key] = {
    "attach": Key("str", check=lambda v: None if v.strip() else "is empty; give the resources "
                  "file written by `rig sim serve`, or remove the key to start a simulated bench"),
    "seed": Key("int", default=1, low=0, high=2**32 - 1),
    # slow effects of the simulated bench (instruments.sim.model.LineParams documents each); 0 = off
    "evaporation_g_h": Key("number", default=0.0, low=0.0, high=0.1, unit="g/h"),
    "tubing_wear_pct_per_1000_rev": Key("number", default=0.0, low=0.0, high=100.0, unit="%"),
    "stick_slip_below_ml_h": Key("number", default=0.0, low=0.0, high=10.0, unit="mL/h"),
    "stick_slip_ml": Key("number", default=0.0005, low=1e-6, high=0.1, unit="mL"),
    "temperature_drift_c_per_day": Key("number", default=0.0, low=-5.0, high=5.0, unit="°C/day"),
}
SIM_DRIFT_KEYS = ("evaporation_g_h", "tubing_wear_pct_per_1000_rev", "stick_slip_below_ml_h", "stick_slip_ml",
                  "temperature_drift_c_per_day")

_FLUID: dict[str, Key] = {
    "name": Key("str", default="water"),
    "density_g_ml": Key("number", required=True, low=0.5, high=2.5, unit="g/mL"),
    # half-width of the density's uncertainty (temperature, composition): the uncertainty budgets use it
    "density_uncertainty_g_ml": Key("number", default=0.0005, low=0, high=0.5, unit="g/mL"),
}

# [safety]: the overpressure interlock's limit (rig.engine.interlock checks its own limit with this Key).
SAFETY: dict[str, Key] = {
    "max_line_pressure_kpa": Key("number", required=True, low=1, high=1000, unit="kPa"),
}

def _history_url_problem(url: str) -> str | None:
    return url_problem(url)


# [history]: where runs and measurements are filed (rig.fleet.history); default sqlite:///<runs_dir>/history.sqlite3
_HISTORY: dict[str, Key] = {
    "url": Key("str", check=_history_url_problem),
    # copy every audit entry into the history's append-only audit_mirror table (rig.fleet.history_audit)
    "audit_mirror": Key("bool", default=False),
}

# [service]: `rig serve` (the bench service and operator panel); paths relative to this file.
_SERVICE: dict[str, Key] = {
    "port": Key("int", default=8714, low=1, high=65535),
    "accounts": Key("str", check=lambda v: None if v.strip() else "is empty; give the accounts file "
                    "written by `rig users add`, or remove the key"),
    "tls_certificate": Key("str", check=lambda v: None if v.strip() else "is empty"),
    "tls_key": Key("str", check=lambda v: None if v.strip() else "is empty"),
}

_INSTRUMENT: dict[str, Key] = {
    "kind": Key("str", required=True, choices=KINDS),
    "driver": Key("str", required=True, choices=tuple(DRIVERS)),
    "resource": Key("str", required=True),
    "serial": Key("str", required=True),
    "calibration_due": Key("date", required=True),
    "timeout_ms": Key("int", default=1000, low=10, high=600_000, unit="ms"),
    "options": Key("table"),
    # the item under test (e.g. the pump being verified): shown as the item, not as test equipment;
    # the serial entered at the start of a run must match the serial it reports (or this serial)
    "under_test": Key("bool", default=False),
    # figures from the calibration certificate that uncertainty budgets use (numbers only)
    "calibration": Key("table"),
}
_DAQ_EXTRA: dict[str, Key] = {"grpc_server": Key("str"), "grpc_tls": Key("table")}



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
    safety = problems.table(top["safety"], "safety", SAFETY) if "safety" in top else {}
    mode = st.get("mode")
    clock = st.get("clock")
    if mode == "hardware" and clock == "virtual":
        problems.add("station.clock", "\"virtual\" needs station.mode = \"sim\" (virtual time is "
                     "owned by the simulated bench); use clock = \"real\" on hardware")
    instruments = _instruments(top.get("instruments"), mode, problems, path.parent) if "instruments" in top else {}
    sections: dict[str, Any] = {}
    if "detection" in top:
        problems.table(top["detection"], "detection", DETECTION_SETTINGS)  # the detectors' own schema
        sections["detection"] = top["detection"]
    if "environment" in top:
        lab = environment.validate(top["environment"], problems, path.parent)
        if lab is not None:
            sections["environment"] = lab
    history = problems.table(top["history"], "history", _HISTORY) if "history" in top else {}
    signing = problems.table(top["signing"], "signing", _SIGNING) if "signing" in top else {}
    operators = problems.table(top["operators"], "operators", _OPERATORS) if "operators" in top else {}
    under_test = [n for n, c in instruments.items() if c.under_test]
    if len(under_test) > 1:
        problems.add("instruments", f"{', '.join(under_test)} are all marked under_test = true; "
                     "a station verifies one item at a time")
    _tsa_problems(signing, path.parent, problems)
    service = problems.table(top["service"], "service", _SERVICE) if "service" in top else {}
    if ("tls_certificate" in service) != ("tls_key" in service):
        problems.add("service.tls_key" if "tls_certificate" in service else "service.tls_certificate",
                     "TLS needs both service.tls_certificate and service.tls_key (PEM files)")
    if problems.items:
        raise ConfigError(problems.items, source=str(path))

    base = path.parent
    if "url" in history:
        sections["history"] = {"url": resolve_url(history["url"], base)}  # relative = next to this file
    if history.get("audit_mirror"):
        sections.setdefault("history", {})["audit_mirror"] = True
    if service:
        sections["service"] = {k: (_resolve(base, v) if k != "port" else v) for k, v in service.items()}
    attach = sim.get("attach")
    runs_dir = _resolve(base, st["runs_dir"])
    return Station(
        path=path,
        id=st["id"],
        name=st["name"],
        location=st["location"],
        mode=st["mode"],
        clock=st["clock"],
        calibration_policy=st["calibration_policy"],
        runs_dir=runs_dir,
        audit_log=_resolve(base, st["audit_log"]) if "audit_log" in st else runs_dir / "audit.jsonl",
        key_registry=_resolve(base, st.get("key_registry", "keys/registry.json")),
        admin_keys=tuple(signing.get("admin_keys", ())),
        tsa_url=signing.get("tsa_url"),
        tsa_certificate=_resolve(base, signing["tsa_certificate"]) if "tsa_certificate" in signing else None,
        tsa_timeout_s=float(signing.get("tsa_timeout_s", 10.0)),
        operators=tuple(n.strip() for n in operators.get("names", ())),
        sim=SimConfig(attach=_resolve(base, attach) if attach else None, seed=sim["seed"],
                      drift={k: float(sim[k]) for k in SIM_DRIFT_KEYS if k in sim}),
        fluid=FluidConfig(name=fluid["name"], density_g_ml=float(fluid["density_g_ml"]),
                          density_uncertainty_g_ml=float(fluid["density_uncertainty_g_ml"])),
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
    data: dict[str, Any], mode: str | None, problems: Problems, base: Path = Path(".")
) -> dict[str, InstrumentConfig]:
    result: dict[str, InstrumentConfig] = {}
    used: dict[tuple[str, str], str] = {}  # (server, normalised resource) -> instrument name
    for name, table in data.items():
        path = join("instruments", name)
        if not NAME.fullmatch(name):
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
        tls = None
        if "grpc_server" in cfg:
            problem = _grpc_problem(cfg["grpc_server"], mode)
            if problem:
                problems.add(f"{path}.grpc_server", problem)
            else:
                tls = _grpc_tls(cfg["grpc_server"], cfg.get("grpc_tls"), f"{path}.grpc_tls", base, problems)
        elif "grpc_tls" in cfg:
            problems.add(f"{path}.grpc_tls", "is only used with grpc_server = \"host:port\"")
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
        if all(k in cfg for k in _INSTRUMENT if k not in ("options", "calibration")):
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
                grpc_tls=tls,
                under_test=cfg["under_test"],
                calibration=_calibration(cfg.get("calibration", {}), f"{path}.calibration", problems),
            )
    kinds = [t.get("kind") for t in data.values() if isinstance(t, dict)]
    if "balance" not in kinds:
        problems.add("instruments", "no balance; a station needs one instrument with "
                     "kind = \"balance\" (flow is measured gravimetrically)")
    if not any(k in PUMP_KINDS for k in kinds):
        problems.add("instruments", "no pump; a station needs at least one instrument with "
                     "kind = \"syringe_pump\" or \"peristaltic_pump\"")
    return result


def _grpc_tls(server: str, table: Any, path: str, base: Path, problems: Problems) -> dict[str, str] | None:
    """The TLS settings of a DAQ's gRPC link with absolute paths, or None; a remote server without
    them is a problem (instruments.grpc_link: plaintext only to this host)."""
    if server == SIM_RESOURCE:
        if table is not None:
            problems.add(path, "is not used with grpc_server = \"sim\" (the simulated bench is on this host)")
        return None
    if table is None:
        if not is_local(server):
            problems.add(path.rpartition(".")[0] + ".grpc_server",
                         f"{show(server)} is not on this host: the link carries the interlock's pressures and the "
                         "valve commands, so it needs TLS; add [grpc_tls] ca_file (and cert_file + key_file for "
                         "mutual TLS), as NI's gRPC Device Server supports")
        return None
    problem = tls_problem(table, base)
    if problem:
        problems.add(path, problem)
        return None
    return {k: (str(_resolve(base, v)) if k.endswith("_file") else str(v)) for k, v in table.items()}


def _tsa_problems(signing: dict[str, Any], base: Path, problems: Problems) -> None:
    """A TSA needs both its URL and its certificate, and the certificate must be one for time-stamping:
    a token is only as good as the certificate verify checks it against."""
    from reports.timestamp import certificate_problem, load_certificate

    if ("tsa_url" in signing) != ("tsa_certificate" in signing):
        missing = "tsa_certificate" if "tsa_url" in signing else "tsa_url"
        problems.add(f"signing.{missing}", "is missing: a time-stamp authority needs both signing.tsa_url and "
                     "signing.tsa_certificate (the certificate its tokens are signed with)")
        signing.pop("tsa_url", None)
        signing.pop("tsa_certificate", None)
        return
    if "tsa_certificate" not in signing:
        return
    cert_path = _resolve(base, signing["tsa_certificate"])
    try:
        problem = certificate_problem(load_certificate(cert_path))
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or exc})"
    except ValueError as exc:
        problem = f"is not an X.509 certificate (PEM or DER): {str(exc).rpartition(': ')[2]}"
    if problem:
        problems.add("signing.tsa_certificate", f"{show(signing['tsa_certificate'])} ({cert_path}) {problem}")


def _driver_mismatch(driver: str, kind: str) -> str:
    fitting = [d for d, info in DRIVERS.items() if info.kind == kind]
    return (f"{show(driver)} drives a {DRIVERS[driver].kind}, not a {kind}; "
            f"drivers for kind {show(kind)}: {', '.join(show(d) for d in fitting)}")


def _calibration(data: dict[str, Any], path: str, problems: Problems) -> dict[str, float]:
    """Certificate figures: non-negative finite numbers, one message per bad value."""
    out: dict[str, float] = {}
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            problems.add(join(path, key), f"{show(value)} is not allowed; expected a non-negative number "
                         "(a figure from the calibration certificate)")
        else:
            out[key] = float(value)
    return out


def _options(driver: str, options: dict[str, Any], path: str, problems: Problems) -> None:
    """The options table against what the driver declares it reads, plus what its emulator reads
    (``Emulator.SIM_OPTIONS``, loaded only when the table holds a key the driver does not read)."""
    schema = DRIVERS[driver].options
    if schema is None:
        problems.add(path, f"driver {show(driver)} declares no options (instruments.drivers.DRIVERS"
                     f"[{show(driver)}].options is not set); every driver must declare the options it reads")
        return
    if set(options) - set(schema):
        schema = {**sim_options(driver), **schema}
    problems.table(options, path, schema)


__all__ = ["SAFETY", "default_station_path", "is_visa_resource", "load_station", "show"]
