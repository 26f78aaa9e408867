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
    raw: dict[str, Any] = field(default_factory=dict)  # the parsed TOML, for the run snapshot
    sections: dict[str, Any] = field(default_factory=dict)  # other validated sections (e.g. detection)

    def by_kind(self, kind: str) -> list[InstrumentConfig]:
        return [i for i in self.instruments.values() if i.kind == kind]
