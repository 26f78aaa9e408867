"""What a procedure step sees of a run: ``StepContext`` and the exceptions that end a step.

Why a separate object from the Runner: procedure authors get a small, documented surface (params,
instruments, wait, measure, live, event, raw, fail) and cannot reach the record writer, the abort
flag or the safe state. Every instrument call and every wait passes through ``check()``, so an
abort request (Ctrl-C, SIGTERM, interlock) or a step timeout is honoured between two instrument
operations, never in the middle of one.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from instruments.mt_sics import BalanceUnstable
from rig.engine.outcomes import RunAborted, StepFailed, StepTimeout
from rig.engine.procedure import Step

REAL_SLICE_S = 0.2  # real-time waits are cut in slices this long so an abort is seen promptly
VIRTUAL_TICK_S = 10.0  # default tick of a virtual-time wait (live display, abort checks)
REAL_TICK_S = 1.0


class RawCsv:
    """A raw data file under raw/, one row per call, flushed per row (fsynced at step ends)."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = list(columns)
        self._file = open(path, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.columns)
        self._file.flush()

    def row(self, *values: Any) -> None:
        if len(values) != len(self.columns):
            raise ValueError(f"{self.path.name}: {len(values)} values for columns {self.columns}")
        self._writer.writerow([f"{v:.9g}" if isinstance(v, float) else v for v in values])
        self._file.flush()

    def sync(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()


class _Checked:
    """An instrument seen through a step: every method call is an abort/timeout checkpoint."""

    def __init__(self, instrument: Any, check: Callable[[], None]) -> None:
        self._instrument = instrument
        self._check = check

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._instrument, name)
        if not callable(attr):
            return attr

        def checked(*args: Any, **kwargs: Any) -> Any:
            self._check()
            return attr(*args, **kwargs)

        return checked


class RunStepContext:
    """What a step function gets. Procedures use only this (never bench.sim).

    ``params`` parameter values; ``state`` a dict shared by the steps of one run; ``pump``,
    ``balance``, ``daq`` the instruments (checked); ``station`` the validated station.
    """

    def __init__(self, runner: Any, index: int, step: Step, deadline_proc_s: float,
                 deadline_wall_s: float, timeouts: tuple[float, float]) -> None:
        self._runner = runner
        self.index = index
        self.step = step
        self._deadline_proc_s = deadline_proc_s
        self._deadline_wall_s = deadline_wall_s
        self._timeouts = timeouts
        self._started_proc_s = runner.now_s()
        self.params: Mapping[str, float] = runner.params.values
        self.state: dict[str, Any] = runner.state
        self.station = runner.bench.station
        bench = runner.bench
        self.pump = _Checked(bench.pump, self.check)
        self.balance = _Checked(bench.balance, self.check)
        daq = bench.daq
        self.daq = None if daq is None else _Checked(daq, self.check)

    # -- time and checkpoints ------------------------------------------------------------------

    def now_s(self) -> float:
        """Procedure time since the run started."""
        return self._runner.now_s()

    def step_elapsed_s(self) -> float:
        return self.now_s() - self._started_proc_s

    def acquisition_started_s(self) -> float | None:
        """Procedure time of DAQ sample 0 (None when the runner is not acquiring): maps a DAQ
        chunk's sample times (``DaqChunk.t_s``) onto procedure time, e.g. for detector latency."""
        runner = self._runner
        if not runner._acquiring:
            return None
        return runner._acq_t0_s - runner._t0_proc_s

    def check(self) -> None:
        """Raise if an abort was requested or this step is over its time budget."""
        request = self._runner.abort.requested
        if request is not None:
            raise RunAborted(request.reason, request.outcome)
        if self.now_s() > self._deadline_proc_s + 1e-9:
            raise StepTimeout(f"step {self.step.name!r} exceeded its timeout of "
                              f"{self._timeouts[0]:g} s of procedure time")
        if time.monotonic() > self._deadline_wall_s:
            raise StepTimeout(f"step {self.step.name!r} exceeded its wall-time timeout of "
                              f"{self._timeouts[1]:g} s")

    def wait(self, duration_s: float, every_s: float | None = None,
             on_tick: Callable[[float], None] | None = None) -> None:
        """Let ``duration_s`` of procedure time pass, calling ``on_tick(t_proc_s)`` every
        ``every_s``; checks aborts and timeouts throughout and refreshes the live display."""
        clock = self._runner.bench.clock
        tick = every_s or (VIRTUAL_TICK_S if clock.virtual else REAL_TICK_S)
        end = self.now_s() + max(0.0, duration_s)
        while True:
            self.check()
            now = self.now_s()
            if now >= end - 1e-9:
                return
            dt = min(tick, end - now)
            if now + dt > self._deadline_proc_s:  # stop exactly at the deadline, then time out
                dt = max(0.0, self._deadline_proc_s - now) + 1e-6
            self._sleep(dt)
            self._runner.sample_live(self)
            if on_tick is not None:
                on_tick(self.now_s())

    def _sleep(self, dt_s: float) -> None:
        clock = self._runner.bench.clock
        if clock.virtual:
            self._runner.advance_virtual(dt_s)
            return
        end = clock.now_s() + dt_s
        while True:
            left = end - clock.now_s()
            if left <= 0 or self._runner.abort.requested is not None:
                return
            clock.sleep(min(REAL_SLICE_S, left))

    def progress(self, fraction: float) -> None:
        """Optional explicit progress of this step (0..1) for the display."""
        self._runner.display.tick(self.now_s(), self._runner.wall_elapsed_s(), min(1.0, max(0.0, fraction)))

    # -- results and records -------------------------------------------------------------------

    def measure(self, name: str, value: float | None, uncertainty: float | None = None,
                detail: str = "") -> str:
        """Record a measurement against its spec limit; returns "pass" or "fail"."""
        return self._runner.measure(self, name, value, uncertainty, detail)

    def live(self, name: str, value: float, unit: str, low: float | None = None,
             high: float | None = None) -> None:
        self._runner.display.live(name, value, unit, low, high)

    def event(self, kind: str, detail: str, **fields: Any) -> None:
        self._runner.event(kind, detail, **fields)

    def raw(self, name: str, columns: list[str]) -> RawCsv:
        """raw/<name>.csv, created on first use (the same file for later calls)."""
        return self._runner.raw(name, columns)

    def fail(self, reason: str) -> None:
        """Declare that the item under test failed; remaining steps are skipped (FAIL)."""
        raise StepFailed(reason)

    def until_stable(self, action: Callable[[], Any], retry_s: float = 1.0) -> Any:
        """``action()`` (a balance read, tare or zero), repeated while the balance says it is not
        stable yet, letting procedure time pass in between. Bounded by the step's timeouts, so
        a balance that never settles ends as a step timeout, not a hang."""
        while True:
            try:
                return action()
            except BalanceUnstable:
                self.wait(retry_s)

    def stable_mass_g(self, retry_s: float = 1.0) -> float:
        """A stable balance reading (g)."""
        return float(self.until_stable(self.balance.read_mass_g, retry_s))


__all__ = ["RawCsv", "RunAborted", "RunStepContext", "StepFailed", "StepTimeout"]
