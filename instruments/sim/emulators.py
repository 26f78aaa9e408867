"""The emulators: driver name (as in rig.toml) -> the emulator that plays that instrument, its
transport, and the options it reads.

Why a separate catalog from instruments.drivers: that one maps a driver to the code that *talks to*
an instrument; this one maps it to the code that *is* the instrument on the simulated bench.
Emulators are imported lazily by "module:Class" so a station only pays for the emulators it uses;
this module itself holds no simulator code, which is why the station loader may read it (to check
the options only an emulator reads, ``Emulator.SIM_OPTIONS``). The NI-DAQmx device is not an Emulator (it is a gRPC server); it is started by
instruments.sim.server through ``DAQ_SERVER``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

Transport = Literal["pty", "tcp"]


@dataclass(frozen=True)
class EmulatorInfo:
    target: str  # "module:Class", a subclass of instruments.sim.emulator.Emulator
    transport: Transport  # "pty" = pseudo-terminal (serial instrument), "tcp" = raw socket

    def load(self) -> type:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)


EMULATORS: dict[str, EmulatorInfo] = {
    "ne1000": EmulatorInfo("instruments.sim.ne1000_emulator:NE1000Emulator", "pty"),
    "reglo_icc": EmulatorInfo("instruments.sim.reglo_icc_emulator:RegloICCEmulator", "pty"),
    "mt_sics": EmulatorInfo("instruments.sim.mt_sics_emulator:MTSicsEmulator", "pty"),
    "scpi_dmm": EmulatorInfo("instruments.sim.scpi_dmm_emulator:ScpiDmmEmulator", "tcp"),
}

# Drivers served by something other than an Emulator on a byte transport.
DAQ_DRIVER = "nidaqmx"
DAQ_SERVER = "instruments.sim.daq_server:start_daq_server"  # (world, InstrumentConfig) -> (server, "host:port")


def emulator_for(driver: str) -> EmulatorInfo:
    """The emulator of a driver; KeyError names the drivers the simulated bench can play."""
    try:
        return EMULATORS[driver]
    except KeyError:
        known = ", ".join(sorted([*EMULATORS, DAQ_DRIVER]))
        raise KeyError(f"the simulated bench has no emulator for driver {driver!r} (it has: {known})") from None


def sim_options(driver: str) -> Any:
    """The options schema only the emulator of ``driver`` reads (``{}`` when it has no emulator).
    Loads that emulator's module: call it only when a station file may hold such options."""
    info = EMULATORS.get(driver)
    return {} if info is None else info.load().SIM_OPTIONS
