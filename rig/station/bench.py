"""The Bench: every instrument of a station, opened, identified, and always cleaned up.

Why one object: commands (`rig check`, `rig run`, `rig nightly`) and tests all need the same thing —
resolve the station's resources (starting or attaching to the simulated bench in sim mode), open one
driver per instrument, know who answered (identity, serial, calibration) and be sure that drivers
are closed and a sim child is stopped on every exit path. Production code has no sim branches
beyond this resolution step: a driver gets a resource string either way.
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
from collections.abc import Mapping
from typing import Any

from instruments.drivers import DRIVERS, PUMP_KINDS
from instruments.errors import InstrumentBusy
from instruments.sim.control import SimControl
from instruments.sim.launcher import early_pids, read_resources, start_sim, start_sim_early, stop_early
from rig.errors import BenchError, RigError, SimulatedBenchError
from rig.station.clock import Clock, RealClock, VirtualClock
from rig.station.lock import DeviceLock, StationBusy, StationLock, serial_device_path
from rig.station.model import InstrumentConfig, Station

SAFETY_KINDS = PUMP_KINDS + ("daq",)  # what must be made safe if the controller dies (rig.engine.supervisor)
SIM = "sim"


def describe_error(exc: BaseException) -> str:
    """One line for a failure; instrument errors already name the instrument and command."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, (RigError, OSError)) or type(exc).__module__.startswith("instruments"):
        return text
    return f"{type(exc).__name__}: {text}"


def start_early(station: Station) -> None:
    """Start the station's simulated bench now (if it has one to start) for the Bench.open to come:
    its start-up then overlaps the command's own imports (instruments.sim.launcher.start_sim_early)."""
    if station.mode == SIM and station.sim.attach is None:
        start_sim_early(station.path)


def stop_unopened() -> None:
    """Stop the simulated benches started early that no Bench opened (the command is over)."""
    stop_early()


def early_children() -> list[int]:
    """Pids of simulated benches started early and not opened yet: not a run's leftovers."""
    return early_pids()


def open_driver(name: str, plan: Mapping[str, Any]) -> Any:
    """Construct one driver from a plan (kind, driver, resource, grpc_server, timeout_ms, options).

    Why a function: the Bench and the safe-state supervisor (rig.engine.supervisor, another process that
    reopens the pump and DAQ after the controller died) must open drivers in exactly one way.
    """
    try:
        cls = DRIVERS[plan["driver"]].load()
    except (ImportError, AttributeError) as exc:
        raise BenchError(f"driver {plan['driver']!r} cannot be loaded: {exc}") from exc
    kwargs: dict[str, Any] = {"timeout_ms": plan["timeout_ms"], "options": dict(plan["options"])}
    if plan["kind"] == "daq":
        kwargs["grpc_server"] = plan["grpc_server"]
        kwargs["grpc_tls"] = plan.get("grpc_tls")
    return cls(name, plan["resource"], **kwargs)


def safe_state_order(kinds: Mapping[str, str]) -> list[str]:
    """Instrument names (name -> kind): pumps first (stop delivery), then the DAQ (valves to
    safe), then everything else."""
    rank = {kind: 0 for kind in PUMP_KINDS} | {"daq": 1}
    return sorted(kinds, key=lambda n: rank.get(kinds[n], 2))


def safe_state_each(drivers: Mapping[str, Any], failures: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Safe state for every driver in order, even when some fail: (read-backs, failures).

    A None driver is a failure (``failures`` says why it is not open): its state is unknown.
    """
    results: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for name, driver in drivers.items():
        try:
            if driver is None:
                raise BenchError(f"not open, safe state unknown: {failures.get(name, 'bench is closed')}")
            results[name] = driver.safe_state()
        except Exception as exc:  # noqa: BLE001 - keep going: the other instruments matter
            failed[name] = describe_error(exc)
            results[name] = {"error": failed[name]}
    return results, failed


def simulated_model(model: str) -> str:
    """An emulator answers *IDN? like the real instrument, byte for byte; the record must not let
    that pass for the real thing, so on a simulated bench the model says so."""
    return model if "simulated" in model.lower() else f"{model} (simulated)"


class Bench:
    """Open drivers of one station. Use ``Bench.open(station)`` as a context manager."""

    def __init__(self, station: Station, lock: StationLock | None = None) -> None:
        self.station = station
        self.lock = lock  # the station lock its opener holds (rig.station.lock), for the record
        self.device_locks: dict[str, DeviceLock] = {}  # name -> flock on its serial device node
        self.instruments: dict[str, Any] = {}  # name -> open driver, in station order
        self.identities: dict[str, Any] = {}  # name -> Identity(model, serial, firmware)
        self.failures: dict[str, str] = {}  # name -> why it did not open (only_check)
        self.resolved: dict[str, str] = {}  # name -> the resource actually opened
        self.resolved_grpc: dict[str, str | None] = {}  # daq name -> gRPC server actually used
        self.resources: dict[str, Any] = {}  # the simulated bench's resources (sim mode)
        self.plans: dict[str, dict[str, Any]] = {}  # name -> how its driver was opened (open_driver)
        self.sim: SimControl | None = None
        self.clock: Clock = RealClock()
        self._sim_process: Any = None  # instruments.sim.launcher.SimProcess we started
        self._closed = False

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, station: Station, *, only_check: bool = False, lock: StationLock | None = None) -> "Bench":
        """Resolve resources, open and identify every instrument.

        ``lock`` is the station lock the caller holds (every command takes it first, see
        rig.station.lock); the simulated bench is claimed in its holder's name, and each serial
        device node is flocked before its driver opens it. Another controller on the same bench
        or port raises StationBusy (exit 2), even with ``only_check``.

        With ``only_check`` an instrument that fails is recorded in ``failures`` instead of
        aborting, so `rig check` can show every problem at once. Anything that is not about one
        instrument (the simulated bench does not start, its control channel is unreachable) still
        raises BenchError. On any exception everything opened so far is closed again.
        """
        bench = cls(station, lock)
        try:
            if station.mode == SIM:
                bench._start_or_attach_sim()
            if station.clock == "virtual":
                if bench.sim is None:
                    raise BenchError("station.clock = \"virtual\" needs the simulated bench's "
                                     "control channel, but none is available")
                bench.clock = VirtualClock(bench.sim)
            for cfg in station.instruments.values():
                try:
                    bench._open_instrument(cfg)
                except StationBusy:
                    raise
                except Exception as exc:  # noqa: BLE001 - any driver failure is reported per instrument
                    reason = describe_error(exc)
                    where = bench.resolved.get(cfg.name, cfg.resource)
                    if where not in reason:  # say which resource, once
                        reason = f"{reason} (resource {where})"
                    if not only_check:
                        raise BenchError(f"instruments.{cfg.name}: {reason}") from exc
                    bench.failures[cfg.name] = reason
        except BaseException:
            bench.close()
            raise
        return bench

    def _start_or_attach_sim(self) -> None:
        attach = self.station.sim.attach
        if attach is not None:
            self.resources = read_resources(attach)
            served_clock = self.resources.get("clock")
            if served_clock != self.station.clock:
                raise BenchError(
                    f"sim.attach: the simulated bench at {attach} runs clock = {served_clock!r} but "
                    f"station.clock = {self.station.clock!r}; start `rig sim serve` with this station"
                )
        else:
            try:
                self._sim_process = start_sim(self.station.path)
            except RigError:
                raise
            except Exception as exc:  # noqa: BLE001 - the child's failure, reported as a bench error
                raise BenchError(
                    f"the simulated bench did not start: {describe_error(exc)}"
                ) from exc
            self.resources = dict(self._sim_process.resources)
        control = self.resources.get("control")
        if control:
            try:
                self.sim = SimControl(str(control))
            except (OSError, ValueError) as exc:
                raise BenchError(
                    f"cannot reach the simulated bench's control channel at {control}: {exc}"
                ) from exc
            self._claim_sim()

    def _claim_sim(self) -> None:
        """One controller per simulated bench, as on hardware: claim it before any instrument."""
        assert self.sim is not None
        owner = dict(self.lock.holder.as_dict()) if self.lock is not None else {
            "command": "rig (no station lock)", "pid": os.getpid(), "host": socket.gethostname()}
        try:
            self.sim.claim(owner)
        except SimulatedBenchError as exc:
            reply = getattr(exc, "reply", {}) or {}
            if reply.get("busy"):
                where = self.station.sim.attach or "its control channel"
                raise StationBusy(f"the simulated bench at {where}: {reply.get('error')}; "
                                  "refusing to share it") from None
            if "unknown command 'claim'" not in str(exc):  # an older bench without claims
                raise

    def _resolve(self, cfg: InstrumentConfig) -> tuple[str, str | None]:
        """The resource (and gRPC server) a driver opens; "sim" -> what the sim serves."""
        resource = cfg.resource
        if resource == SIM:
            served = self.resources.get("instruments") or {}
            if cfg.name not in served:
                names = ", ".join(sorted(served)) or "none"
                raise BenchError(
                    f"resource = \"sim\" but the simulated bench serves no instrument named "
                    f"{cfg.name!r} (it serves: {names})"
                )
            resource = str(served[cfg.name])
        grpc = cfg.grpc_server
        if grpc == SIM:
            grpc = self.resources.get("daq_grpc")
            if not grpc:
                raise BenchError("grpc_server = \"sim\" but the simulated bench serves no DAQ "
                                 "gRPC server")
        return resource, grpc

    def _open_instrument(self, cfg: InstrumentConfig) -> None:
        resource, grpc = self._resolve(cfg)
        self.resolved[cfg.name] = resource
        if cfg.kind == "daq":
            self.resolved_grpc[cfg.name] = grpc
        device = serial_device_path(resource)
        if device is not None and cfg.name not in self.device_locks:
            self.device_locks[cfg.name] = DeviceLock(cfg.name, device)  # StationBusy if in use
        plan: dict[str, Any] = {"kind": cfg.kind, "driver": cfg.driver, "resource": resource,
                                "grpc_server": grpc, "timeout_ms": cfg.timeout_ms, "options": dict(cfg.options)}
        if cfg.grpc_tls and grpc == cfg.grpc_server:  # not for the simulated bench's own local server
            plan["grpc_tls"] = dict(cfg.grpc_tls)
        try:
            driver = open_driver(cfg.name, plan)
        except InstrumentBusy as exc:
            raise StationBusy(f"instruments.{cfg.name}: {exc.detail}; refusing to share it") from None
        self.instruments[cfg.name] = driver  # registered first, so close() reaches it
        self.plans[cfg.name] = plan
        self.identities[cfg.name] = driver.identify()

    # -- accessors ----------------------------------------------------------------------------

    def _first(self, kinds: tuple[str, ...], required: bool) -> Any:
        for cfg in self.station.instruments.values():
            if cfg.kind in kinds:
                if cfg.name in self.instruments:
                    return self.instruments[cfg.name]
                raise BenchError(f"instruments.{cfg.name} is not open: "
                                 f"{self.failures.get(cfg.name, 'bench closed')}")
        if required:
            raise BenchError(f"the station has no instrument of kind {' or '.join(kinds)}")
        return None

    @property
    def pump(self) -> Any:
        """The first syringe or peristaltic pump of the station."""
        return self._first(PUMP_KINDS, required=True)

    @property
    def balance(self) -> Any:
        return self._first(("balance",), required=True)

    @property
    def dmm(self) -> Any:
        return self._first(("dmm",), required=False)

    @property
    def daq(self) -> Any:
        return self._first(("daq",), required=False)

    # -- safety -------------------------------------------------------------------------------

    def _safe_state_order(self) -> list[str]:
        return safe_state_order({name: cfg.kind for name, cfg in self.station.instruments.items()})

    def safe_state(self) -> dict[str, Any]:
        """Put EVERY instrument in its safe state, even when some fail; return the read-backs.

        Raises BenchError listing the failures (its ``results`` attribute holds the full dict) so
        the caller cannot mistake an unconfirmed safe state for a confirmed one.
        """
        drivers = {name: self.instruments.get(name) for name in self._safe_state_order()}
        results, failed = safe_state_each(drivers, self.failures)
        if failed:
            lines = "; ".join(f"{n}: {msg}" for n, msg in failed.items())
            error = BenchError(f"safe state not confirmed for {len(failed)} instrument(s): {lines}")
            error.results = results  # type: ignore[attr-defined]
            raise error
        return results

    @property
    def sim_child(self) -> bool:
        """True when this bench started its own simulated bench, which stops when we die."""
        return self._sim_process is not None

    def safe_state_plan(self) -> dict[str, dict[str, Any]]:
        """How to reopen the open pumps and the DAQ from another process (rig.engine.supervisor), in
        safe-state order: the same drivers on the SAME resolved resources, as plain JSON data."""
        kinds = {name: plan["kind"] for name, plan in self.plans.items()
                 if name in self.instruments and plan["kind"] in SAFETY_KINDS}
        plans = {}
        for name in safe_state_order(kinds):
            # A driver may say how a second process should reopen it (the NE-1000: expect Safe mode).
            reopen = getattr(self.instruments[name], "reopen_options", None)
            plans[name] = self.plans[name] if reopen is None else {**self.plans[name], "options": reopen()}
        return plans

    # -- record -------------------------------------------------------------------------------

    def snapshot(self, today: _dt.date | None = None) -> dict[str, Any]:
        """What a run record stores about the equipment: configuration AND what answered."""
        st = self.station
        today = today or _dt.date.today()
        instruments: dict[str, Any] = {}
        for name, cfg in st.instruments.items():
            ident = self.identities.get(name)
            reported = getattr(ident, "serial", "") if ident is not None else ""
            entry: dict[str, Any] = {
                "name": name,
                "kind": cfg.kind,
                "driver": cfg.driver,
                "resource": cfg.resource,
                "resolved_resource": self.resolved.get(name),
                "grpc_server": cfg.grpc_server,
                "resolved_grpc_server": self.resolved_grpc.get(name),
                "serial": cfg.serial,
                "identity": None if ident is None else {
                    "model": simulated_model(ident.model) if st.mode == "sim" else ident.model,
                    "serial": ident.serial, "firmware": ident.firmware,
                },
                "serial_mismatch": bool(reported) and reported != cfg.serial,
                "under_test": cfg.under_test,
                "calibration": dict(cfg.calibration),
                "calibration_due": cfg.calibration_due.isoformat(),
                "calibration_overdue": cfg.calibration_overdue(today),
            }
            if name in self.failures:
                entry["error"] = self.failures[name]
            driver = self.instruments.get(name)
            if driver is not None and hasattr(driver, "exclusive_lock"):
                entry["visa_exclusive_lock"] = driver.exclusive_lock
            if name in self.device_locks:
                dev = self.device_locks[name]
                entry["device_lock"] = {"path": str(dev.path), "held": dev.held, "problem": dev.problem}
            instruments[name] = entry
        return {
            "station": {
                "id": st.id, "name": st.name, "location": st.location, "mode": st.mode,
                "clock": st.clock, "calibration_policy": st.calibration_policy,
                "path": str(st.path),
            },
            "fluid": {"name": st.fluid.name, "density_g_ml": st.fluid.density_g_ml,
                      "density_uncertainty_g_ml": st.fluid.density_uncertainty_g_ml},
            "safety": {"max_line_pressure_kpa": st.safety.max_line_pressure_kpa},
            "instruments": instruments,
            "lock": None if self.lock is None else {
                "path": str(self.lock.path), "holder": self.lock.holder.as_dict(),
                "took_over": None if self.lock.took_over is None else self.lock.took_over.as_dict(),
                "stale_reason": self.lock.stale_reason,
            },
        }

    # -- cleanup ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close every driver, the control channel and a sim child we started. Idempotent.

        Does not command a safe state: that is the runner's job, because it must record the
        read-back. Errors while closing are swallowed so they never mask the error that made
        us close.
        """
        if self._closed:
            return
        self._closed = True
        try:
            for driver in reversed(list(self.instruments.values())):
                try:
                    driver.close()
                except Exception:  # noqa: BLE001 - see docstring
                    pass
            self.instruments.clear()
            if self.sim is not None:
                try:
                    self.sim.release()  # at once: the next controller may claim it right away
                except Exception:  # noqa: BLE001 - closing the connection releases it as well
                    pass
                try:
                    self.sim.close()
                except Exception:  # noqa: BLE001
                    pass
        finally:
            for device_lock in self.device_locks.values():
                device_lock.release()
            self.device_locks.clear()
            if self._sim_process is not None:
                process, self._sim_process = self._sim_process, None
                process.stop()

    def __enter__(self) -> "Bench":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Bench", "SAFETY_KINDS", "describe_error", "early_children", "open_driver", "safe_state_each",
           "safe_state_order", "start_early", "stop_unopened"]
