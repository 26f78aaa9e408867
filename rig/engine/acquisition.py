"""The DAQ side of a run: the overpressure interlock, streaming to raw/daq.f64, pacing virtual
time so the DAQ reader keeps up, and the live line readings on the display.

Why one object: these share the bench's DAQ and must be wired and unwired together — the
interlock watches the stream the acquisition produces, and virtual time may only jump as fast
as the stream can be drained (else the interlock goes blind).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rig.engine.display import Display
from rig.engine.interlock import PRESSURE_CHANNEL, Interlock
from rig.engine.run_log import RunLog
from rig.engine.signals import ABORTED, AbortFlag
from rig.record import utc_now
from rig.station.bench import describe_error

# Longest virtual-time jump while the DAQ acquires: half the device buffer a paced acquisition
# asks for (instruments.daq_acquisition.PACED_BUFFER_SECONDS), so a jump never overflows it.
DAQ_PACE_S = 3600.0
DAQ_DRAIN_TIMEOUT_S = 10.0  # wall time allowed for the DAQ reader to catch up after a jump
STATS_FIELDS = ("samples", "chunks", "read_timeouts", "reader_cpu_s", "error")
LIVE_CHANNELS = (("pressure_upstream_kpa", "kPa", True), ("pressure_downstream_kpa", "kPa", True),
                 ("flow_ul_min", "uL/min", False))  # name, unit, limited by max_line_pressure_kpa


class Acquisition:
    """The bench DAQ for one run (a bench without a DAQ makes every method a no-op but pacing)."""

    def __init__(self, bench: Any, log: RunLog, display: Display, abort: AbortFlag) -> None:
        self._bench = bench
        self._daq = bench.daq
        self._log = log
        self._display = display
        self._abort = abort
        self._interlock: Interlock | None = None
        self._listeners: list[Any] = []  # chunk listeners the run's steps attached (line monitors)
        self._live_listeners = 0  # of those, how many decide something while the run goes (detectors)
        self._unread_s = 0.0  # virtual time acquired but not yet read (see advance_virtual)
        self._caught_up = False  # virtual time: a first read has been made (live readings exist)
        self._acquiring = False  # the DAQ streams to raw/daq.f64
        self._t0_s = 0.0  # bench clock time of DAQ sample 0
        self._live_failed = False
        # Listeners the DAQ had before this run: whatever else is registered at the end (the
        # interlock, the procedure's line monitors) belongs to this run and leaves with it.
        self._listeners_before = self._daq.listeners() if hasattr(self._daq, "listeners") else None

    def arm_interlock(self) -> None:
        """Watch the upstream pressure from now on (recorded as an ``interlock`` event)."""
        if self._daq is None:
            return
        limit = self._bench.station.safety.max_line_pressure_kpa
        self._interlock = Interlock(limit_kpa=limit, stop_pump=self._bench.pump.stop, daq=self._daq,
                                    on_trip=self._on_trip)
        chunk_samples = getattr(self._daq, "chunk_samples", None)  # a DAQ that does not stream has none
        if chunk_samples:
            self._set_guard({"channel": PRESSURE_CHANNEL, "above": limit, "chunk_samples": int(chunk_samples)})
        self._log.append("event", kind="interlock", detail=f"armed at {limit:g} kPa",
                         t_proc_s=round(self._log.now_s(), 6), t_utc=utc_now())

    def _set_guard(self, guard: dict[str, Any] | None) -> None:
        """Virtual time: while the interlock is armed no clock jump may run past the end of the DAQ
        chunk in which the line pressure crossed its limit (rig.station.clock.VirtualClock.guard),
        so the interlock acts within one chunk of the crossing, as in real time."""
        clock = self._bench.clock
        if getattr(clock, "virtual", False) and hasattr(clock, "guard"):
            clock.guard = guard

    def add_chunk_listener(self, listener: Any, *, live: bool = True) -> None:
        """A step's chunk listener (e.g. a procedure's line monitor), detached with the run.

        ``live``: the listener acts on what it sees while the run goes (fault detectors whose
        alarms the procedure polls), so in virtual time it must get every clock jump's chunks
        before the procedure looks again. A listener that only records (``live=False``: a
        flow-sensor series analysed after the step) may get them later, in fewer, larger reads."""
        self._daq.add_chunk_listener(listener)
        self._listeners.append(listener)
        self._live_listeners += bool(live)

    def disarm_interlock(self) -> None:
        """Detach the interlock and the steps' listeners from the DAQ, which outlives the run (a
        nightly runs every procedure on one bench): a finished run's detectors must not judge,
        nor write into the record of, the next run."""
        self._set_guard(None)
        interlock, self._interlock = self._interlock, None
        listeners, self._listeners = self._listeners, []
        self._live_listeners = 0
        if interlock is not None:
            interlock.detach()
        for listener in listeners:
            self._daq.remove_listener(listener)

    def release_listeners(self) -> int:
        """Remove every DAQ listener added during the run (the DAQ outlives the run: a listener
        left behind would feed a finished record from the next run's chunks). Returns how many."""
        if self._listeners_before is None:
            return 0
        chunk_before, failure_before = self._listeners_before
        chunk, failure = self._daq.listeners()
        ours = [lis for lis in chunk if lis not in chunk_before] + [lis for lis in failure if lis not in failure_before]
        for listener in ours:
            self._daq.remove_listener(listener)
        return len(ours)

    def _on_trip(self, reason: str) -> None:
        """Called by the interlock (any thread) after it has stopped the pump."""
        self._set_guard(None)
        text = str(reason) or "overpressure"
        self._abort.request(ABORTED, f"interlock tripped: {text}")
        try:
            self._log.event("interlock", text)
        except Exception:  # noqa: BLE001 - the abort request above is what matters
            pass

    def start(self, stored_hz: float | None = None) -> None:
        """Stream every AI channel to raw/daq.f64 (block means at ``stored_hz`` when given)."""
        if self._daq is not None and hasattr(self._daq, "start_acquisition"):
            path = self._log.raw_dir / "daq.f64"
            options: dict[str, Any] = {"stored_rate_hz": stored_hz} if stored_hz else {}
            if self._bench.clock.virtual:  # the clock reports every jump: one read per jump, no polling
                options["paced"] = True
            self._daq.start_acquisition(path, **options)
            self._t0_s = self._bench.clock.now_s()
            self._acquiring = True

    def started_s(self) -> float | None:
        """Procedure time of DAQ sample 0, or None when not acquiring."""
        return self._t0_s - self._log.t0_proc_s if self._acquiring else None

    def stop(self) -> dict[str, Any] | None:
        """Stop streaming; returns the acquisition statistics for run_finished."""
        if not self._acquiring:
            return None
        self.catch_up()  # a failure in what is still unread trips the interlock while it is armed
        self._acquiring = False
        stats = self._daq.stop_acquisition()
        return {f: getattr(stats, f, None) for f in STATS_FIELDS}

    def advance_virtual(self, dt_s: float) -> None:
        """Advance virtual time. While the DAQ acquires, go in slices no longer than DAQ_PACE_S
        and never let more than DAQ_PACE_S go unread: the device buffer holds only so much.

        Reads cost a round trip to the device each, so they are made only when something needs
        them (one read per DAQ_PACE_S otherwise): when a live listener is attached (detectors
        must see every jump's chunks before the procedure looks again), when a slice ended early
        because the line pressure crossed the interlock's limit (the clock's guard: the reader
        then delivers that chunk at once, the interlock trips within it, and its abort request
        ends the loop), when someone asks for the latest readings (``catch_up``), at the end of
        every step and when the acquisition stops. So the interlock still acts within one chunk
        of the crossing, as in real time; what waits is only data nobody is looking at yet."""
        clock = self._bench.clock
        if not self._acquiring:
            clock.sleep(dt_s)
            return
        remaining = dt_s
        while remaining > 1e-12 and self._abort.requested is None:
            wanted = min(DAQ_PACE_S, remaining)
            if self._unread_s + wanted > DAQ_PACE_S + 1e-9:
                self.catch_up()
            before = clock.now_s()
            clock.sleep(wanted)
            advanced = clock.now_s() - before
            self._unread_s += advanced
            if self._live_listeners or advanced < wanted - 1e-9:
                self.catch_up()
            if advanced <= 1e-9:  # a guard that cannot make progress must not hang the run
                self._set_guard(None)
            remaining -= advanced

    def catch_up(self) -> None:
        """Read every full chunk acquired up to now, handing it to the interlock and listeners
        (virtual time: the device holds what the clock jumps produced until it is read)."""
        if not self._acquiring or not self._bench.clock.virtual:
            return
        # One sample period more than the clock says: the DAQ leaves a chunk that ends exactly
        # now for the next read (in real time its last sample may still be on its way), but in
        # virtual time the clock's jump has already produced it, and a guarded jump ends exactly
        # at the end of the chunk that crossed the limit: the interlock must see that chunk now.
        elapsed_s = self._bench.clock.now_s() - self._t0_s + 1.0 / float(self._daq.rate_hz)
        # False means the acquisition failed: its failure listener trips the interlock.
        self._daq.wait_for_elapsed(elapsed_s, DAQ_DRAIN_TIMEOUT_S)
        self._unread_s = 0.0
        self._caught_up = True

    def show_live(self) -> None:
        """Pressures and flow on the display, if the bench has a DAQ (a failure is recorded once)."""
        daq = self._daq
        if daq is None or self._live_failed or not hasattr(daq, "latest"):
            return
        if self._acquiring and self._bench.clock.virtual and not self._caught_up:
            return  # nothing read yet (reads wait until something needs them: advance_virtual)
        try:
            latest = daq.latest()
        except Exception as exc:  # noqa: BLE001 - the display must not stop a run; record it once
            self._live_failed = True
            self._log.event("warning", f"live DAQ readings unavailable: {describe_error(exc)}")
            return
        if latest is None:
            return
        limit = self._bench.station.safety.max_line_pressure_kpa
        for name, unit, limited in LIVE_CHANNELS:
            value = latest.get(name) if isinstance(latest, Mapping) else getattr(latest, name, None)
            if isinstance(value, (int, float)):
                self._display.live(name, float(value), unit, None, limit if limited else None)


__all__ = ["DAQ_DRAIN_TIMEOUT_S", "DAQ_PACE_S", "Acquisition"]
