"""The simulated bench: every instrument of a station served on real transports around one model.

Why one object: the world (model + clock), the emulators on their pseudo-terminals and sockets,
the NI-DAQmx gRPC server and the control channel must start together, tell one consistent story,
and all be closed on the way out. ``resources()`` is what a controller (or third-party software)
needs to reach them: it is written to the resources file by ``rig sim serve``.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from typing import Any

from instruments.sim.control_server import ControlHandler, ControlServer
from instruments.sim.emulator import Emulator
from instruments.sim.model import LineParams
from instruments.drivers import PUMP_KINDS
from instruments.sim.emulators import DAQ_DRIVER, DAQ_SERVER, emulator_for
from instruments.sim.transports import PtyPort, TcpPort
from instruments.sim.world import SimWorld
from rig.errors import BenchError
from rig.station.model import InstrumentConfig, Station

log = logging.getLogger(__name__)

TICK_S = 0.05  # real-time mode: how often the model is brought up to the wall clock
DAQ_STOP_GRACE_S = 1.0


def _pump_kind(station: Station) -> str:
    """The model's pump mechanism from the station's pump instrument (syringe when none): the
    mechanisms are named after the kinds ("syringe_pump" -> "syringe")."""
    kinds = [i.kind.removesuffix("_pump") for i in station.instruments.values() if i.kind in PUMP_KINDS]
    return kinds[0] if kinds else "syringe"


class SimServer:
    """Serves a station's instruments. Use ``start()``/``stop()`` or as a context manager."""

    def __init__(self, station: Station) -> None:
        self.station = station
        params = LineParams(density_g_ml=station.fluid.density_g_ml, **station.sim.drift)
        self.world = SimWorld(
            virtual=station.clock == "virtual",
            params=params,
            seed=station.sim.seed,
            pump_kind=_pump_kind(station),
        )
        self.emulators: dict[str, Emulator] = {}
        self.ports: dict[str, PtyPort | TcpPort] = {}
        self.daq_name: str | None = None
        self.daq_server: Any = None
        self.daq_address: str | None = None
        self.control: ControlServer | None = None
        self._ticker: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._started = False

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> "SimServer":
        """Open every transport; on any failure close what was opened and raise BenchError."""
        if self._started:
            return self
        self._started = True
        try:
            for cfg in self.station.instruments.values():
                if cfg.driver == DAQ_DRIVER:
                    self._start_daq(cfg)
                else:
                    self._start_emulator(cfg)
            daq = (self.daq_name, self.daq_server) if self.daq_server is not None else None
            handler = ControlHandler(self.world, self.emulators, daq)
            self.control = ControlServer(handler).start()
            if not self.world.virtual:
                self._ticker = threading.Thread(target=self._tick, name="sim-ticker", daemon=True)
                self._ticker.start()
        except OSError as exc:  # no pty/port left, permission denied: the machine, not a bug
            self.stop()
            raise BenchError(f"the simulated bench cannot open its transports: {exc}") from exc
        except BaseException:
            self.stop()
            raise
        log.info("simulated bench %s up: %s", self.station.id, self.resources())
        return self

    def _start_emulator(self, cfg: InstrumentConfig) -> None:
        try:
            info = emulator_for(cfg.driver)
        except KeyError as exc:
            raise BenchError(f"instruments.{cfg.name}: {exc.args[0]}") from None
        try:
            cls = info.load()
        except (ImportError, AttributeError) as exc:
            raise BenchError(f"instruments.{cfg.name}: cannot load emulator {info.target}: {exc}") from exc
        try:
            emulator = cls(cfg.name, self.world, serial=cfg.serial, options=dict(cfg.options))
        except ValueError as exc:  # options the emulator cannot play (the station file is valid TOML)
            raise BenchError(f"instruments.{cfg.name}: the simulated {cfg.driver} refuses its options: {exc}") from exc
        port: PtyPort | TcpPort = PtyPort(emulator) if info.transport == "pty" else TcpPort(emulator)
        self.emulators[cfg.name] = emulator
        self.ports[cfg.name] = port.start()

    def _start_daq(self, cfg: InstrumentConfig) -> None:
        module_name, _, func_name = DAQ_SERVER.partition(":")
        module = importlib.import_module(module_name)  # the gRPC device server loads only when simulated
        server, address = getattr(module, func_name)(self.world, cfg)
        self.daq_name, self.daq_server, self.daq_address = cfg.name, server, address

    def _tick(self) -> None:
        """Real time: keep samplers and pumps progressing even when nobody queries."""
        while not self._stop_event.wait(TICK_S):
            try:
                self.world.sync()
            except Exception:  # a model bug must not silently freeze time: log it loudly, keep going
                log.exception("simulated bench: model sync failed")

    def stop(self) -> None:
        """Close everything this server created. Idempotent; never raises for one bad part."""
        self._stop_event.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2.0)
            self._ticker = None
        if self.control is not None:
            self.control.stop()
        for name, port in list(self.ports.items()):
            try:
                port.close()
            except Exception:
                log.exception("closing %s", name)
        self.ports.clear()
        if self.daq_server is not None:
            try:
                self.daq_server.stop(DAQ_STOP_GRACE_S)
            except Exception:
                log.exception("stopping the DAQ server")
            self.daq_server = None

    def __enter__(self) -> "SimServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what clients need ----------------------------------------------------------------------

    def resources(self) -> dict[str, Any]:
        """Addresses of everything served: the content of the resources file."""
        instruments = {name: port.resource for name, port in self.ports.items()}
        if self.daq_name is not None:
            instruments[self.daq_name] = self.station.instruments[self.daq_name].resource  # NI device name
        result: dict[str, Any] = {
            "station": self.station.id,
            "instruments": instruments,
            "serial_ports": {name: p.path for name, p in self.ports.items() if isinstance(p, PtyPort)},
            "control": self.control.address if self.control else None,
            "clock": "virtual" if self.world.virtual else "real",
            "pid": os.getpid(),
        }
        if self.daq_address is not None:
            result["daq_grpc"] = self.daq_address
        return result
