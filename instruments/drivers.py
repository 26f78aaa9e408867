"""The drivers: names used in rig.toml -> driver classes, the kinds they serve, their options.

Why a catalog of import paths: the station file names a driver; only the drivers a station uses
get imported (nidaqmx is heavy). Each entry declares the options its driver reads (a ``rig.settings``
schema; the DAQ's live in the light ``instruments.daq_channels``). The station loader checks a
station's options against it and the driver takes its ranges from it (``DRIVERS[...].options``),
so driver and station file cannot disagree; the declaration is here rather than in the driver
module because loading rig.toml must not import pyvisa or nidaqmx. Every VISA driver is constructed as
``cls(name, resource, timeout_ms=..., options=...)``; the DAQ driver additionally takes
``grpc_server=`` ("host:port" or None for the local NI driver).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from instruments import daq_channels
from rig.settings import Key, Schema


@dataclass(frozen=True)
class DriverInfo:
    kind: str  # syringe_pump | peristaltic_pump | balance | dmm | daq
    target: str  # "module:Class"
    description: str
    # What the driver reads from its [instruments.<name>.options] table; None = not declared, which
    # the station loader reports as an error (it never guesses what a driver accepts).
    options: Schema | None = None

    def load(self) -> type:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)


_TUBING_MM = Key("number", low=0.13, high=3.17, unit="mm")  # the Reglo ICC tubing list, 0.13..3.17 mm ID

DRIVERS: dict[str, DriverInfo] = {
    "ne1000": DriverInfo("syringe_pump", "instruments.ne1000:NE1000", "New Era NE-1000 syringe pump", {
        "address": Key("int", default=0, low=0, high=99),
        "syringe_diameter_mm": Key("number", low=0.1, high=80.0, unit="mm"),  # DIA accepts 0.1..80 mm
        # Safe-mode comms watchdog (SAF): the pump stops itself this long after the controller last
        # spoke; 0 = Basic mode, no watchdog. See instruments/ne1000.py and docs/protocols.md.
        "comms_watchdog_s": Key("int", default=10, low=0, high=255, unit="s"),
    }),
    "reglo_icc": DriverInfo("peristaltic_pump", "instruments.reglo_icc:RegloICC", "Ismatec Reglo ICC peristaltic pump", {
        "address": Key("int", default=1, low=1, high=8),
        "tubing_inner_diameter_mm": _TUBING_MM,
        "tubing_id_mm": _TUBING_MM,  # alias
        "rollers": Key("int", low=1, high=16),  # checked against the pump head by configure()
    }),
    "mt_sics": DriverInfo("balance", "instruments.mt_sics:MTSicsBalance", "Mettler Toledo MT-SICS balance", {}),
    "scpi_dmm": DriverInfo("dmm", "instruments.scpi_dmm:ScpiDmm", "SCPI digital multimeter", {}),
    "nidaqmx": DriverInfo("daq", "instruments.daq:Daq", "NI multifunction DAQ via nidaqmx", daq_channels.OPTIONS),
}

PUMP_KINDS = ("syringe_pump", "peristaltic_pump")  # the kinds that deliver (and are stopped first)
KINDS = (*PUMP_KINDS, "balance", "dmm", "daq")
