"""The line monitor: feeds the DAQ stream to the fault detectors while a procedure runs, and the
waits and guards built on it.

Why here and not in the engine: what "detected" and "latency" mean is part of the verification
method (occlusion, kink, leak, disconnect and soak all watch the line the same way). Nothing here
knows about the simulated bench: faults go through ``ctx.daq`` (the valves), time through
``ctx.wait``.

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

from rig.analysis.detection import DetectionParams, DetectorBank, Event, Sample
from rig.engine.context import StepContext
from rig.errors import BenchError

DETECTOR_RATE_HZ = 2.0  # DAQ samples are block-averaged to this rate before the detectors
# (benchmarks/detection.py characterises the detectors at 2 Hz; averaging only lowers the noise)
DAQ_CHANNELS = ("pressure_upstream", "pressure_downstream", "flow_sensor")
POLL_S = 2.0  # how often a procedure looks at alarms while it waits for one (procedure time)
SAFETY_MARGIN = 0.9  # a procedure stops the pump itself at this fraction of the interlock limit


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
        self._daq = daq
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
        # Without detectors nothing here decides anything while the run goes: the series may
        # arrive in larger reads (virtual time, rig.engine.acquisition.Acquisition.advance_virtual).
        daq.add_chunk_listener(self._on_chunk, live=bank is not None)

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
        """Stop feeding and leave the DAQ's listeners (the DAQ outlives the run)."""
        self._closed = True
        try:
            self._daq.remove_listener(self._on_chunk)
        except Exception:  # noqa: BLE001 - a closed monitor ignores chunks anyway (see _on_chunk)
            pass

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


__all__ = [
    "DAQ_CHANNELS", "DETECTOR_RATE_HZ", "LineMonitor", "detection_params", "establish_baseline",
    "guard_pressure", "monitor_of", "watch",
]
