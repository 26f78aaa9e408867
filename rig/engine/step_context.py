"""What a procedure step sees of a run: ``StepContext`` and the exceptions that end a step.

Why a separate object from the Runner: procedure authors get a small, documented surface (params,
instruments, wait, measure, live, event, raw, fail) and cannot reach the record writer, the abort
flag or the safe state. Every instrument call and every wait passes through ``check()``, so an
abort request (Ctrl-C, SIGTERM, interlock) or a step timeout is honoured between two instrument
operations, never in the middle of one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from instruments.mt_sics import BalanceUnstable
from rig.engine.acquisition import Acquisition
from rig.engine.display import Display
from rig.engine.judge import Judge
from rig.engine.outcomes import RunAborted, StepFailed, StepTimeout
from rig.engine.procedure import Step
from rig.engine.run_log import RawCsv, RunLog
from rig.engine.signals import AbortFlag

REAL_SLICE_S = 0.2  # real-time waits are cut in slices this long so an abort is seen promptly
VIRTUAL_TICK_S = 10.0  # default tick of a virtual-time wait (live display, abort checks)
REAL_TICK_S = 1.0


@dataclass(frozen=True)
class RunServices:
    """What a run lends its steps: the whole interface between a step context and the runner.

    Built once per run by the runner; each ``RunStepContext`` uses only these public parts."""

    params: Mapping[str, float]
    state: dict[str, Any]  # shared by the steps of one run
    bench: Any  # station, pump, balance, daq, clock
    abort: AbortFlag
    display: Display
    log: RunLog
    judge: Judge
    acquisition: Acquisition


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


class _CheckedDaq(_Checked):
    """The DAQ seen through a step: a chunk listener a procedure attaches is attached through the
    run's Acquisition, which detaches it when the run ends (the DAQ outlives the run), and the
    latest readings include every chunk acquired so far."""

    def __init__(self, daq: Any, check: Callable[[], None], acquisition: Acquisition) -> None:
        super().__init__(daq, check)
        self._acquisition = acquisition

    def add_chunk_listener(self, listener: Callable[[Any], None], *, live: bool = True) -> None:
        self._check()
        self._acquisition.add_chunk_listener(listener, live=live)

    def latest(self) -> dict[str, float]:
        """The latest readings, after every chunk acquired so far has been read (virtual time
        leaves unread chunks in the device until someone looks: rig.engine.acquisition)."""
        self._check()
        self._acquisition.catch_up()
        return self._instrument.latest()


class RunStepContext:
    """What a step function gets. Procedures use only this (never bench.sim).

    ``params`` parameter values; ``state`` a dict shared by the steps of one run; ``pump``,
    ``balance``, ``daq`` the instruments (checked); ``station`` the validated station.
    """

    def __init__(self, run: RunServices, index: int, step: Step, deadline_proc_s: float,
                 deadline_wall_s: float, timeouts: tuple[float, float]) -> None:
        self._run = run
        self.index = index
        self.step = step
        self._deadline_proc_s = deadline_proc_s
        self._deadline_wall_s = deadline_wall_s
        self._timeouts = timeouts
        self._started_proc_s = run.log.now_s()
        self.params: Mapping[str, float] = run.params
        self.state: dict[str, Any] = run.state
        bench = run.bench
        self.station = bench.station
        self.pump = _Checked(bench.pump, self.check)
        self.balance = _Checked(bench.balance, self.check)
        self.daq = None if bench.daq is None else _CheckedDaq(bench.daq, self.check, run.acquisition)

    # -- time and checkpoints ------------------------------------------------------------------

    def now_s(self) -> float:
        """Procedure time since the run started."""
        return self._run.log.now_s()

    def step_elapsed_s(self) -> float:
        return self.now_s() - self._started_proc_s

    def acquisition_started_s(self) -> float | None:
        """Procedure time of DAQ sample 0 (None when the runner is not acquiring): maps a DAQ
        chunk's sample times (``DaqChunk.t_s``) onto procedure time, e.g. for detector latency."""
        return self._run.acquisition.started_s()

    def check(self) -> None:
        """Raise if an abort was requested or this step is over its time budget."""
        request = self._run.abort.requested
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
        clock = self._run.bench.clock
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
            self._show_live()
            if on_tick is not None:
                on_tick(self.now_s())

    def _sleep(self, dt_s: float) -> None:
        clock = self._run.bench.clock
        if clock.virtual:
            self._run.acquisition.advance_virtual(dt_s)
            return
        end = clock.now_s() + dt_s
        while True:
            left = end - clock.now_s()
            if left <= 0 or self._run.abort.requested is not None:
                return
            clock.sleep(min(REAL_SLICE_S, left))

    def progress(self, fraction: float) -> None:
        """Optional explicit progress of this step (0..1) for the display."""
        self._run.display.tick(self.now_s(), self._run.log.wall_elapsed_s(), min(1.0, max(0.0, fraction)))

    def _show_live(self) -> None:
        """Refresh time, this step's progress and, if the bench has a DAQ, the line readings."""
        expected = self.step.expected_s(self.params)
        fraction = min(1.0, self.step_elapsed_s() / expected) if expected > 0 else None
        self._run.display.tick(self.now_s(), self._run.log.wall_elapsed_s(), fraction)
        self._run.acquisition.show_live()

    # -- results and records -------------------------------------------------------------------

    def measure(self, name: str, value: float | None, uncertainty: "float | dict[str, Any] | None" = None,
                detail: str = "") -> str:
        """Record a measurement against its spec limit; returns "pass" or "fail"."""
        return self._run.judge.measure(self.step.name, name, value, uncertainty, detail)

    def live(self, name: str, value: float, unit: str, low: float | None = None,
             high: float | None = None) -> None:
        self._run.display.live(name, value, unit, low, high)

    def event(self, kind: str, detail: str, **fields: Any) -> None:
        self._run.log.event(kind, detail, **fields)

    def raw(self, name: str, columns: list[str]) -> RawCsv:
        """raw/<name>.csv, created on first use (the same file for later calls)."""
        return self._run.log.raw(name, columns)

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


__all__ = ["RawCsv", "RunAborted", "RunServices", "RunStepContext", "StepFailed", "StepTimeout"]
