"""The validated station, as the rest of the controller sees it.

Why plain frozen dataclasses: rig.station.config does all validation once; everything downstream (bench,
sim server, runner, record snapshot) can trust these values and never re-checks raw TOML.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class InstrumentConfig:
    name: str  # the table name under [instruments], e.g. "pump"
    kind: str  # syringe_pump | peristaltic_pump | balance | dmm | daq
    driver: str  # key of instruments.drivers.DRIVERS
    resource: str  # VISA resource, NI device name, or "sim"
    serial: str
    calibration_due: _dt.date
    timeout_ms: int = 1000
    grpc_server: str | None = None  # daq only: "host:port", "sim", or None (local NI driver)
    options: dict[str, Any] = field(default_factory=dict)
    # daq only: TLS to the NI gRPC device server (instruments.grpc_link): ca_file, cert_file,
    # key_file (absolute paths), server_name; None = plaintext, allowed only to this host
    grpc_tls: dict[str, str] | None = None
    under_test: bool = False  # the item being verified, not test equipment
    calibration: dict[str, float] = field(default_factory=dict)  # certificate figures for budgets

    def calibration_overdue(self, today: _dt.date | None = None) -> bool:
        return self.calibration_due < (today or _dt.date.today())


@dataclass(frozen=True)
class SimConfig:
    attach: Path | None = None  # resources file of a running `rig sim serve`
    seed: int = 1
    drift: dict[str, float] = field(default_factory=dict)  # slow model effects (LineParams fields)


@dataclass(frozen=True)
class FluidConfig:
    name: str = "water"
    density_g_ml: float = 0.998
    density_uncertainty_g_ml: float = 0.0005  # half-width, rectangular


@dataclass(frozen=True)
class SafetyConfig:
    max_line_pressure_kpa: float = 120.0


@dataclass(frozen=True)
class Station:
    path: Path  # the station file this came from
    id: str
    name: str
    location: str
    mode: str  # "sim" | "hardware"
    clock: str  # "real" | "virtual"
    calibration_policy: str  # "warn" | "block"
    runs_dir: Path  # absolute
    sim: SimConfig
    fluid: FluidConfig
    safety: SafetyConfig
    instruments: dict[str, InstrumentConfig]
    audit_log: Path = Path("audit.jsonl")  # absolute: the station's one audit trail
    key_registry: Path = Path("keys/registry.json")  # absolute
    admin_keys: tuple[str, ...] = ()  # pinned root of trust for the key registry
    tsa_url: str | None = None  # RFC 3161 time-stamp authority ([signing] tsa_url), None = none
    tsa_certificate: Path | None = None  # absolute: the certificate its tokens must be signed with
    tsa_timeout_s: float = 10.0
    operators: tuple[str, ...] = ()  # printed names allowed to operate (besides registry signers)
    raw: dict[str, Any] = field(default_factory=dict)  # the parsed TOML, for the run snapshot
    sections: dict[str, Any] = field(default_factory=dict)  # other validated sections (e.g. detection)

    def time_stamp_authority(self) -> Any:
        """The station's RFC 3161 time-stamp authority (reports.timestamp.TimeStampAuthority), or
        None when ``[signing]`` names none. The certificate was checked when the file was loaded."""
        if self.tsa_certificate is None:
            return None
        from reports.timestamp import TimeStampAuthority, load_certificate

        return TimeStampAuthority(load_certificate(self.tsa_certificate), url=self.tsa_url, timeout_s=self.tsa_timeout_s)

    def by_kind(self, kind: str) -> list[InstrumentConfig]:
        return [i for i in self.instruments.values() if i.kind == kind]


def station_tsa(station: Any) -> Any:
    """The time-stamp authority of ``station`` (None without a station, or one that names none)."""
    method = getattr(station, "time_stamp_authority", None)
    return method() if callable(method) else None
