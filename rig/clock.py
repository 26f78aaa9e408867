"""Procedure time: real, or virtual time shared with the simulated bench.

Why: a 2-hour flow-accuracy run or a 24-hour soak must cost seconds in the tests while going
through exactly the same procedure code. In virtual mode ``sleep`` advances the simulated bench's
model instead of waiting, so instruments and procedure agree on what time it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from instruments.sim.control import SimControl


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


Barrier = Callable[[float], None]


class VirtualClock:
    """Time owned by the simulated bench; ``sleep`` advances the model.

    Long sleeps advance in slices of at most ``max_step_s``, and after each slice every barrier
    runs with the new time. Why: a streaming DAQ reader must drain the device buffer as time
    passes, exactly as it would in real time; one huge jump would overflow it.
    """

    virtual = True

    def __init__(self, control: SimControl, max_step_s: float = 2.0) -> None:
        self._control = control
        self._t_s = control.time_s()
        self.max_step_s = max_step_s
        self._barriers: list[Barrier] = []

    def add_barrier(self, barrier: Barrier) -> None:
        self._barriers.append(barrier)

    def remove_barrier(self, barrier: Barrier) -> None:
        if barrier in self._barriers:
            self._barriers.remove(barrier)

    def now_s(self) -> float:
        return self._t_s

    def sleep(self, dt_s: float) -> None:
        target = self._t_s + dt_s
        while target - self._t_s > 1e-9:
            step = min(self.max_step_s, target - self._t_s) if self._barriers else target - self._t_s
            self._t_s = self._control.advance(step)
            for barrier in list(self._barriers):
                barrier(self._t_s)
