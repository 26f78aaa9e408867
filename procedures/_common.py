"""Pieces every verification procedure shares: pump control, the balance log, and the line monitor
that feeds the DAQ stream to the fault detectors.

Why one module: occlusion, kink, leak, disconnect and soak all do the same three things — run the
pump at a rate, watch the streaming pressures and flow with the detectors of ``rig.analysis.detection``,
and time a fault injected through the DAQ's valves. Writing that once keeps the procedures short
and makes them agree on what "detected" and "latency" mean. Nothing here knows about the
simulated bench: faults go through ``ctx.daq`` (the valves), time through ``ctx.wait``.

Time base: everything a procedure measures is in *procedure time* (``ctx.now_s()``). DAQ samples
carry their own time since acquisition start; ``ctx.acquisition_started_s()`` maps one onto the
other, so a detector event's time and a valve command's time can be subtracted.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from instruments.pump import PumpAlarm
from rig.analysis.detection import DetectionParams, DetectorBank, Event, Sample
from rig.engine.context import StepContext
from rig.engine.operator import Entry, Instruction
from rig.engine.procedure import Measurement, Parameter, Procedure, Step
from rig.errors import BenchError

DETECTOR_RATE_HZ = 2.0  # DAQ samples are block-averaged to this rate before the detectors
# (benchmarks/detection.py characterises the detectors at 2 Hz; averaging only lowers the noise)
DAQ_CHANNELS = ("pressure_upstream", "pressure_downstream", "flow_sensor")
BALANCE_COLUMNS = ["t_s", "mass_g"]
BALANCE_READ_S = 10.0  # balance read period while a gravimetric procedure waits (procedure time)
POLL_S = 2.0  # how often a procedure looks at alarms while it waits for one (procedure time)
SAFETY_MARGIN = 0.9  # a procedure stops the pump itself at this fraction of the interlock limit

# Every record names the item under test; the same entry as delivery_check, so answers files match.
ITEM_SERIAL = Entry("item_serial", "Serial number of the pump under test",
                    pattern=r"[A-Za-z0-9][A-Za-z0-9._/-]{0,39}", example="NE1000-SIM-0001")
SETUP_LINE = Instruction("setup", "Prime the line, connect the catheter through the fault valves and "
                                  "place its outlet in the weighing vessel on the balance; close the "
                                  "draft shield.", image="setup_line.svg")


# -- pump ---------------------------------------------------------------------------------------


def pump_alarm(ctx: StepContext) -> str | None:
    """The pump's alarm since the last call ("stall", ...), whichever way the driver reports it."""
    try:
        return ctx.pump.alarm()
    except PumpAlarm as exc:
        return exc.alarm


def start_pump(ctx: StepContext, rate_ml_h: float, monitor: "LineMonitor | None" = None) -> float:
    """Stop, zero the count, set the rate, run; confirm it runs. Returns the start time (s)."""
    ctx.pump.stop()
    ctx.pump.clear_dispensed()
    ctx.pump.set_rate_ml_h(rate_ml_h)
    ctx.pump.start()
    t_s = ctx.now_s()
    if monitor is not None:
        monitor.command(t_s, rate_ml_h, True)
    if not ctx.pump.is_running():
        ctx.fail(f"the pump did not start at {rate_ml_h:g} mL/h (it reads back not running after RUN)")
    return t_s


def set_rate(ctx: StepContext, rate_ml_h: float, monitor: "LineMonitor | None" = None) -> float:
    """Change the rate of a running pump (a flex-dosing step). Returns the time of the change."""
    ctx.pump.set_rate_ml_h(rate_ml_h)
    t_s = ctx.now_s()
    if monitor is not None:
        monitor.command(t_s, rate_ml_h, True)
    return t_s


def stop_pump(ctx: StepContext, monitor: "LineMonitor | None" = None) -> float:
    """Stop the pump (acknowledging a pending alarm) and confirm it stopped."""
    try:
        ctx.pump.stop()
    except PumpAlarm:  # the NE-1000 answers the first command after an alarm with the alarm
        ctx.pump.stop()
    t_s = ctx.now_s()
    if monitor is not None:
        monitor.command(t_s, 0.0, False)
    if ctx.pump.is_running():
        ctx.fail("the pump still reads back running after stop")
    return t_s


# -- balance ------------------------------------------------------------------------------------


class BalanceLog:
    """Every balance reading of the run, in memory and in raw/balance.csv (``t_s,mass_g``).

    Why every reading: the report's raw data must let anyone redo the analysis, including the
    readings the analysis did not use (tare, settling, outside the analysis window).
    """

    def __init__(self, ctx: StepContext) -> None:
        self._raw = ctx.raw("balance", BALANCE_COLUMNS)
        self.t_s: list[float] = []
        self.mass_g: list[float] = []

    @classmethod
    def of(cls, ctx: StepContext) -> "BalanceLog":
        """The run's log (one per run, shared by its steps)."""
        log = ctx.state.get("balance_log")
        if log is None:
            log = ctx.state["balance_log"] = cls(ctx)
        return log

    def _add(self, t_s: float, mass_g: float) -> float:
        self._raw.row(t_s, mass_g)
        self.t_s.append(t_s)
        self.mass_g.append(mass_g)
        return mass_g

    def read(self, ctx: StepContext) -> float:
        """The immediate reading now (settled or not: fluid keeps landing while the pump runs)."""
        t_s = ctx.now_s()
        mass_g, _stable = ctx.balance.read_mass_immediate_g()
        ctx.live("mass_g", mass_g, "g")
        return self._add(t_s, float(mass_g))

    def every(self, ctx: StepContext, period_s: float = BALANCE_READ_S) -> Callable[[float], None]:
        """An ``on_tick`` for watch/wait that reads the balance once per ``period_s``: a procedure
        that reports gravimetric values samples the balance throughout, not just at its ends."""
        def tick(_t: float) -> None:
            if not self.t_s or ctx.now_s() - self.t_s[-1] >= period_s - 1e-9:
                self.read(ctx)
        return tick

    def stable(self, ctx: StepContext) -> float:
        """A stable reading (waits while the balance says it is still settling)."""
        mass_g = ctx.stable_mass_g()
        return self._add(ctx.now_s(), mass_g)

    def series(self, start_s: float = -math.inf, end_s: float = math.inf) -> tuple[list[float], list[float]]:
        """Readings in [start_s, end_s], one per time (the last one wins), times increasing."""
        by_time: dict[float, float] = {}
        for t, m in zip(self.t_s, self.mass_g):
            if start_s - 1e-9 <= t <= end_s + 1e-9:
                by_time[t] = m
        times = sorted(by_time)
        return times, [by_time[t] for t in times]


def tare(ctx: StepContext, settle_s: float = 5.0) -> float:
    """Let the cell settle after the operator's set-up, tare the vessel, log the stable zero."""
    ctx.wait(settle_s)
    ctx.state["tare_g"] = float(ctx.until_stable(ctx.balance.tare))
    return BalanceLog.of(ctx).stable(ctx)


def density_g_ml(ctx: StepContext, override_g_ml: float = 0.0) -> float:
    """The fluid density: a procedure parameter when given (> 0), else the station's [fluid]."""
    return override_g_ml if override_g_ml > 0 else float(ctx.station.fluid.density_g_ml)


# -- the line monitor ---------------------------------------------------------------------------


def detection_params(ctx: StepContext) -> DetectionParams:
    """The station's ``[detection]`` table (defaults where it is silent)."""
    return DetectionParams.from_dict(ctx.station.sections.get("detection") or {})


@dataclass(frozen=True)
class Command:
    t_s: float
    rate_ml_h: float
    running: bool


class LineMonitor:
    """Listens to the DAQ stream: block-averages pressures and flow to ``DETECTOR_RATE_HZ``, keeps
    that series, and (with a DetectorBank) feeds every block to the detectors, recording each
    alarm as a run event the moment it happens.

    The detectors must know what the pump is told to do (a rate change is a new regime), so the
    procedure reports every pump command with ``command``; each block is judged against the
    command in force at its own sample time, even when the reader delivers it later.
    """

    def __init__(self, ctx: StepContext, bank: DetectorBank | None) -> None:
        daq = ctx.daq
        if daq is None:
            raise BenchError(f"procedure {ctx.step.name}: the station has no DAQ; pressures and "
                             "flow are read from its analog inputs")
        names = [c.name for c in getattr(daq, "ai_channels", [])]
        missing = [c for c in DAQ_CHANNELS if c not in names]
        if missing:
            raise BenchError(f"instruments.{daq.name}: no analog input channel(s) named "
                             f"{', '.join(missing)} in options.channels (needed by the detectors)")
        t0_s = ctx.acquisition_started_s()
        if t0_s is None:
            raise BenchError(f"instruments.{daq.name}: the DAQ acquisition is not running")
        self.bank = bank
        self._ctx = ctx
        self._t0_s = t0_s
        self._rate_hz = float(daq.rate_hz)
        self._block = max(1, round(self._rate_hz / DETECTOR_RATE_HZ))
        self._rows = [names.index(c) for c in DAQ_CHANNELS]
        self._pending: np.ndarray | None = None
        self._pending_first = 0
        self._lock = threading.Lock()
        self._commands: list[Command] = [Command(-math.inf, 0.0, False)]
        self._command_times: list[float] = [-math.inf]
        self._closed = False
        self.t_s: list[float] = []
        self.upstream_kpa: list[float] = []
        self.downstream_kpa: list[float] = []
        self.flow_ul_min: list[float] = []
        self.error: str | None = None
        self.monitored_s = 0.0  # procedure time the detectors spent monitoring (armed)
        daq.add_chunk_listener(self._on_chunk)

    @classmethod
    def start(cls, ctx: StepContext, *, detectors: bool = True) -> "LineMonitor":
        """Attach a monitor for this run (stored in ``ctx.state["monitor"]``)."""
        bank = DetectorBank(detection_params(ctx)) if detectors else None
        monitor = cls(ctx, bank)
        ctx.state["monitor"] = monitor
        return monitor

    # -- procedure side -------------------------------------------------------------------------

    def command(self, t_s: float, rate_ml_h: float, running: bool) -> None:
        with self._lock:
            self._commands.append(Command(t_s, rate_ml_h, running))
            self._command_times.append(t_s)

    def events(self) -> list[Event]:
        if self.bank is None:
            return []
        with self._lock:
            return list(self.bank.events)

    def first(self, detector: str, after_s: float = -math.inf) -> Event | None:
        """The first alarm of ``detector`` at or after ``after_s`` (not any detector's)."""
        return next((e for e in self.events() if e.detector == detector and e.t_s >= after_s), None)

    def phase(self) -> str:
        with self._lock:
            return "none" if self.bank is None else self.bank.phase

    def closest_approach(self) -> dict[str, float]:
        with self._lock:
            return {} if self.bank is None else dict(self.bank.closest_approach())

    def mean_flow_ul_min(self, start_s: float, end_s: float) -> float | None:
        """Mean flow-sensor reading over blocks centred in [start_s, end_s)."""
        with self._lock:
            lo = bisect.bisect_left(self.t_s, start_s)
            hi = bisect.bisect_left(self.t_s, end_s)
            if hi <= lo:
                return None
            return math.fsum(self.flow_ul_min[lo:hi]) / (hi - lo)

    def close(self) -> None:
        """Stop feeding. The run removes every DAQ listener it added when it ends, whatever the
        procedure did (rig.engine.acquisition), so a monitor never writes into a finished record."""
        self._closed = True

    # -- reader-thread side ---------------------------------------------------------------------

    def _command_at(self, t_s: float) -> Command:
        i = bisect.bisect_right(self._command_times, t_s) - 1
        return self._commands[max(0, i)]

    def _on_chunk(self, chunk: Any) -> None:
        if self._closed:
            return
        try:
            self._consume(chunk)
        except Exception as exc:  # noqa: BLE001 - recorded once; the procedure checks `error`
            if self.error is None:
                self.error = f"{type(exc).__name__}: {exc}"
                self._ctx.event("warning", f"line monitor stopped: {self.error}")
            self._closed = True

    def _consume(self, chunk: Any) -> None:
        data = chunk.data[self._rows]
        first = chunk.first_index
        if self._pending is not None and self._pending.shape[1]:
            data = np.hstack([self._pending, data])
            first = self._pending_first
        n_blocks = data.shape[1] // self._block
        used = n_blocks * self._block
        self._pending, self._pending_first = data[:, used:], first + used
        if n_blocks == 0:
            return
        means = data[:, :used].reshape(len(self._rows), n_blocks, self._block).mean(axis=2)
        centre = (self._block - 1) / 2.0
        times = self._t0_s + (first + np.arange(n_blocks) * self._block + centre) / self._rate_hz
        new_events: list[Event] = []
        with self._lock:
            for t, up, down, flow in zip(times.tolist(), *means.tolist()):
                self.t_s.append(t)
                self.upstream_kpa.append(up)
                self.downstream_kpa.append(down)
                self.flow_ul_min.append(flow)
                if self.bank is not None:
                    cmd = self._command_at(t)
                    new_events += self.bank.update(Sample(t, up, down, flow, cmd.rate_ml_h, cmd.running))
                    if self.bank.phase == "monitoring":
                        self.monitored_s += self._block / self._rate_hz
        for e in new_events:
            self._ctx.event("detector", f"{e.detector} alarm at t = {e.t_s:.1f} s: {e.detail}",
                            detector=e.detector, at_s=round(e.t_s, 3), ratio=round(e.ratio, 4),
                            pressure_upstream_kpa=round(e.pressure_upstream_kpa, 4))


def monitor_of(ctx: StepContext) -> LineMonitor:
    monitor = ctx.state.get("monitor")
    if monitor is None:
        raise RuntimeError("procedure defect: no line monitor was started in an earlier step")
    return monitor


# -- waiting ------------------------------------------------------------------------------------


def watch(ctx: StepContext, duration_s: float, until: Callable[[], bool] | None = None,
          every_s: float = POLL_S, on_tick: Callable[[float], None] | None = None) -> float | None:
    """Let up to ``duration_s`` of procedure time pass, looking every ``every_s``; returns the
    time at which ``until()`` first held (then stops waiting), or None if it never did."""
    end = ctx.now_s() + duration_s
    while True:
        now = ctx.now_s()
        if until is not None and until():
            return now
        if now >= end - 1e-9:
            return None
        ctx.wait(min(every_s, end - now), every_s=every_s)  # one clock jump per look, not 10 s ticks
        if on_tick is not None:
            on_tick(ctx.now_s())


def guard_pressure(ctx: StepContext, monitor: LineMonitor) -> bool:
    """True when the line nears the station's overpressure limit: the procedure stops the pump
    itself before the interlock has to (a pump without its own pressure alarm, e.g. peristaltic)."""
    limit = ctx.station.safety.max_line_pressure_kpa * SAFETY_MARGIN
    with monitor._lock:  # noqa: SLF001 - same module
        latest = monitor.upstream_kpa[-1] if monitor.upstream_kpa else None
    return latest is not None and latest >= limit


def establish_baseline(ctx: StepContext, monitor: LineMonitor, minimum_s: float,
                       on_tick: Callable[[float], None] | None = None) -> None:
    """Deliver for ``minimum_s`` and until the detectors monitor (settled and learnt a baseline);
    a detector alarm meanwhile is a false alarm on a healthy line and fails the run."""
    params = monitor.bank.params if monitor.bank is not None else detection_params(ctx)
    limit_s = max(minimum_s, params.settle_s + params.learn_s) + 120.0
    started = ctx.now_s()
    watch(ctx, limit_s, until=lambda: ctx.now_s() - started >= minimum_s and monitor.phase() == "monitoring",
          on_tick=on_tick)
    if monitor.error:
        raise BenchError(f"line monitor failed: {monitor.error}")
    if monitor.phase() != "monitoring":
        ctx.fail(f"the detectors did not reach monitoring within {limit_s:.0f} s of delivery "
                 f"(phase {monitor.phase()!r}; settle {params.settle_s:g} s + learn {params.learn_s:g} s)")
    false = [e for e in monitor.events() if e.t_s >= started]
    if false:
        names = ", ".join(sorted({e.detector for e in false}))
        ctx.fail(f"detector alarm(s) on the healthy line before the fault: {names}")


# -- leak and disconnect: one procedure shape, two faults ----------------------------------------


@dataclass(frozen=True)
class FaultSpec:
    """What differs between the fault-detection procedures built by ``fault_detection_procedure``."""

    fault: str  # the detector's name and the measurement prefix
    valve: str  # the Daq method that opens the fault path (set_leak / set_disconnect)
    title: str
    requirements: tuple[str, ...]
    description: str
    default_wait_min: float


def fault_detection_procedure(spec: FaultSpec) -> Procedure:
    """Deliver, let the detectors learn, open the fault path through the DAQ valve, and time the
    matching detector's alarm (events of other detectors do not count, but are recorded)."""
    detected, latency = f"{spec.fault}.detected", f"{spec.fault}.latency_min"

    def start(ctx: StepContext) -> None:
        monitor = LineMonitor.start(ctx)
        start_pump(ctx, ctx.params["rate_ml_h"], monitor)

    def baseline(ctx: StepContext) -> None:
        establish_baseline(ctx, monitor_of(ctx), ctx.params["baseline_min"] * 60.0)

    def inject(ctx: StepContext) -> None:
        monitor = monitor_of(ctx)
        getattr(ctx.daq, spec.valve)(True)
        t_fault = ctx.now_s()
        ctx.event("fault", f"{spec.valve}(True): {spec.fault} path open", fault=spec.fault)
        hit = watch(ctx, ctx.params["max_wait_min"] * 60.0,
                    until=lambda: monitor.first(spec.fault, t_fault) is not None)
        if hit is None:  # one more look: the last blocks may have arrived with the last wait
            hit = ctx.now_s() if monitor.first(spec.fault, t_fault) else None
        getattr(ctx.daq, spec.valve)(False)
        stop_pump(ctx, monitor)
        event = monitor.first(spec.fault, t_fault)
        others = sorted({e.detector for e in monitor.events() if e.t_s >= t_fault and e.detector != spec.fault})
        also = f"; other detectors alarmed: {', '.join(others)}" if others else ""
        ctx.measure(detected, 1.0 if event else 0.0,
                    detail=(f"{spec.fault} detector alarmed: {event.detail}" if event else
                            f"no {spec.fault} alarm within {ctx.params['max_wait_min']:g} min") + also)
        from procedures._uncertainty import latency_uncertainty

        ctx.measure(latency, None if event is None else (event.t_s - t_fault) / 60.0,
                    uncertainty=latency_uncertainty(ctx, alarm_step_s=1.0 / DETECTOR_RATE_HZ,
                                                    what=f"{spec.fault} path opened -> detector alarm"),
                    detail="" if event is None else f"fault at t = {t_fault:.1f} s, alarm at t = {event.t_s:.1f} s")

    wait_s = lambda p: p["max_wait_min"] * 60.0  # noqa: E731 - declaration-sized
    return Procedure(
        id=spec.fault,
        version="1.0.0",
        title=spec.title,
        requirements=spec.requirements,
        description=spec.description,
        parameters=(
            Parameter("rate_ml_h", "mL/h", 1.0, low=0.01, high=10.0, description="delivery rate"),
            Parameter("baseline_min", "min", 5.0, low=1.0, high=240.0,
                      description="healthy delivery before the fault (detectors settle and learn)"),
            Parameter("max_wait_min", "min", spec.default_wait_min, low=0.5, high=1440.0,
                      description="how long to wait for the detector after opening the fault path"),
        ),
        item_under_test=(ITEM_SERIAL,),
        steps=(
            SETUP_LINE,
            Step("start_delivery", start, timeout_s=60.0),
            Step("baseline", baseline, timeout_s=lambda p: p["baseline_min"] * 60.0 + 3600.0,
                 duration_s=lambda p: p["baseline_min"] * 60.0),
            Step(f"inject_{spec.fault}", inject, timeout_s=lambda p: wait_s(p) + 120.0,
                 duration_s=wait_s),
        ),
        measurements=(
            Measurement(detected, "", f"1 when the {spec.fault} detector alarmed, else 0"),
            Measurement(latency, "min", f"{spec.fault} path opened -> {spec.fault} detector alarm"),
        ),
        spec_file=f"{spec.fault}.spec.toml",
    )


__all__ = [
    "ITEM_SERIAL", "SETUP_LINE", "BalanceLog", "FaultSpec", "LineMonitor", "density_g_ml", "detection_params", "establish_baseline",
    "fault_detection_procedure", "guard_pressure", "monitor_of", "pump_alarm", "set_rate",
    "start_pump", "stop_pump", "tare", "watch",
]
