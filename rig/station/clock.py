"""Procedure time: real, or virtual time shared with the simulated bench.

Why: a 2-hour flow-accuracy run or a 24-hour soak must cost seconds in the tests while going
through exactly the same procedure code. In virtual mode ``sleep`` advances the simulated bench's
model instead of waiting, so instruments and procedure agree on what time it is.
"""

from __future__ import annotations

import time
from typing import Any, Protocol


class TimeSource(Protocol):
    """What a virtual clock needs from the simulated bench's control channel."""

    def time_s(self) -> float: ...

    def advance(self, dt_s: float, guard: dict[str, Any] | None = None) -> float: ...


class Clock(Protocol):
    virtual: bool

    def now_s(self) -> float:
        """Seconds of procedure time since an arbitrary origin (monotonic)."""

    def sleep(self, dt_s: float) -> None:
        """Let dt_s of procedure time pass."""


class RealClock:
    """Wall time; sleeps for real."""

    virtual = False

    def now_s(self) -> float:
        return time.monotonic()

    def sleep(self, dt_s: float) -> None:
        if dt_s > 0:
            time.sleep(dt_s)


class VirtualClock:
    """Time owned by the simulated bench; ``sleep`` advances the model in one step.

    Callers that stream data while time jumps (the runner with a DAQ) slice their sleeps and let
    the reader drain between slices; see rig.engine.acquisition.Acquisition.advance_virtual. With a
    ``guard`` set (the armed overpressure interlock: {"channel", "above", "chunk_samples"}) a
    sleep may end early, at the end of the DAQ chunk in which the guarded channel crossed its limit,
    so the interlock sees that chunk before time moves further: ``sleep`` returns the time it
    actually let pass.
    """

    virtual = True

    def __init__(self, control: TimeSource) -> None:
        self._control = control
        self._t_s = control.time_s()
        self.guard: dict[str, Any] | None = None

    def now_s(self) -> float:
        return self._t_s

    def sleep(self, dt_s: float) -> float:
        if dt_s <= 0:
            return 0.0
        before = self._t_s
        self._t_s = self._control.advance(dt_s, self.guard) if self.guard else self._control.advance(dt_s)
        return self._t_s - before
