"""Driver names used in rig.toml -> driver classes and the kinds they serve.

Why a registry of import paths: the station file names a driver; only the drivers a station uses
get imported (nidaqmx is heavy). Every VISA driver is constructed as
``cls(name, resource, timeout_ms=..., options=...)``; the DAQ driver additionally takes
``grpc_server=`` ("host:port" or None for the local NI driver).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class DriverInfo:
    kind: str  # syringe_pump | peristaltic_pump | balance | dmm | daq
    target: str  # "module:Class"
    description: str

    def load(self) -> type:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)


DRIVERS: dict[str, DriverInfo] = {
    "ne1000": DriverInfo("syringe_pump", "instruments.ne1000:NE1000", "New Era NE-1000 syringe pump"),
    "reglo_icc": DriverInfo(
        "peristaltic_pump", "instruments.reglo_icc:RegloICC", "Ismatec Reglo ICC peristaltic pump"
    ),
    "mt_sics": DriverInfo("balance", "instruments.mt_sics:MTSicsBalance", "Mettler Toledo MT-SICS balance"),
    "scpi_dmm": DriverInfo("dmm", "instruments.scpi_dmm:ScpiDmm", "SCPI digital multimeter"),
    "nidaqmx": DriverInfo("daq", "instruments.daq:Daq", "NI multifunction DAQ via nidaqmx"),
}

KINDS = ("syringe_pump", "peristaltic_pump", "balance", "dmm", "daq")
