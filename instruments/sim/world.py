"""The simulated bench's shared state: the model, its lock, its time, and the injected faults.

Why: every emulator thread, the NI-DAQmx server and the control channel touch the same model;
this object is the one place that decides what time it is (real or virtual) and serialises access.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from instruments.sim.model import FluidLine, LineParams

TRANSPORT_FAULTS = ("none", "silent", "garbage", "drop")


class SimWorld:
    """Model + lock + clock. In real mode model time follows the wall clock; in virtual mode it
    moves only when the control channel says ``advance``."""

    def __init__(
        self,
        *,
        virtual: bool,
        params: LineParams | None = None,
        seed: int = 1,
        pump_kind: str = "syringe",
    ) -> None:
        self.virtual = virtual
        self.model = FluidLine(params, seed=seed)
        self.model.pump.kind = pump_kind
        self.lock = threading.RLock()
        self.faults: dict[str, str] = {}  # instrument name -> transport fault
        self._wall_origin = time.monotonic()
        self.time_changed = threading.Condition(self.lock)
        # during one guarded ``advance``: {"channel", "above", "chunk_samples"} (see daq_device)
        self.guard: dict[str, Any] | None = None
        self.stopped_by: str | None = None  # why the last advance ended early (None: it did not)

    @contextmanager
    def locked(self) -> Iterator[FluidLine]:
        """Hold the lock with the model brought up to the current time."""
        with self.lock:
            self.sync()
            yield self.model

    def sync(self) -> None:
        """Real mode: bring model time up to the wall clock. Virtual mode: nothing."""
        if not self.virtual:
            with self.lock:
                target = time.monotonic() - self._wall_origin
                if target > self.model.t_s:
                    self.model.advance_to(target)
                    self.time_changed.notify_all()

    def now_s(self) -> float:
        with self.lock:
            self.sync()
            return self.model.t_s

    def advance(self, dt_s: float, guard: dict[str, Any] | None = None) -> float:
        """Virtual time: move the model on by dt_s, or less when ``guard`` stops it (the reason is
        then in ``stopped_by``). Returns the new model time."""
        if not self.virtual:
            raise RuntimeError("advance is only allowed in virtual-time mode")
        with self.lock:
            self.guard = guard
            try:
                self.stopped_by = self.model.advance(dt_s)
            finally:
                self.guard = None
            self.time_changed.notify_all()
            return self.model.t_s

    def set_fault(self, instrument: str, fault: str) -> None:
        if fault not in TRANSPORT_FAULTS:
            raise ValueError(f"fault must be one of {', '.join(TRANSPORT_FAULTS)}, got {fault!r}")
        with self.lock:
            self.faults[instrument] = fault

    def fault_of(self, instrument: str) -> str:
        return self.faults.get(instrument, "none")

    def snapshot(self) -> dict[str, Any]:
        with self.locked() as model:
            return model.snapshot()
