"""Overpressure interlock: stop the pump and open the relief path when line pressure is too high.

Why it lives in the DAQ reader thread and not in the procedure: it must act whatever the procedure
is doing (waiting on an operator, sleeping through a soak, stuck in a driver call), within one
acquisition chunk of the crossing. It is latched: once tripped it stays tripped (and acts once)
for the rest of the run, so a pressure oscillating around the limit cannot toggle the valves.
The runner ``detach()``es it when the run ends.

Losing the pressure stream (acquisition failure) trips it too: the rig cannot watch the line, so it
must not keep pumping into it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

from instruments.daq import Daq, DaqChunk
from rig.station.config import SAFETY

log = logging.getLogger(__name__)

PRESSURE_CHANNEL = "pressure_upstream"


class Interlock:
    """Watches ``pressure_upstream`` in every chunk; trips above ``limit_kpa``.

    A trip: ``stop_pump()``, then the relief path on the DAQ (leak/bleed valve open, occlusion valve
    released, kink 0 %), then ``on_trip(reason)`` with what happened and any action that failed.
    """

    def __init__(
        self,
        limit_kpa: float,
        stop_pump: Callable[[], None],
        daq: Daq,
        on_trip: Callable[[str], None],
    ) -> None:
        rule = SAFETY["max_line_pressure_kpa"]  # the station file's declaration: one range for both
        if isinstance(limit_kpa, bool) or not isinstance(limit_kpa, (int, float)) or not rule.in_range(limit_kpa):
            raise ValueError(f"safety.max_line_pressure_kpa must be {rule.describe()}, got {limit_kpa!r}")
        self.limit_kpa = float(limit_kpa)
        self.stop_pump = stop_pump
        self.daq = daq
        self.on_trip = on_trip
        self.reason: str | None = None
        self.trip_sample_index: int | None = None
        self._lock = threading.Lock()
        daq.add_chunk_listener(self.check, safety=True)  # if the check raises, the interlock trips
        daq.add_failure_listener(self._on_stream_lost)

    @property
    def tripped(self) -> bool:
        return self.reason is not None

    def check(self, chunk: DaqChunk) -> None:
        """Evaluate one chunk (called by the DAQ reader thread)."""
        if self.tripped or PRESSURE_CHANNEL not in chunk.channels:
            return
        pressure = chunk.column(PRESSURE_CHANNEL)
        over = np.flatnonzero(pressure > self.limit_kpa)
        if over.size == 0:
            return
        i = int(over[0])
        index = chunk.first_index + i
        self._trip(
            f"overpressure: upstream line pressure {pressure[i]:.1f} kPa exceeded the limit of "
            f"{self.limit_kpa:.1f} kPa at sample {index} (t = {chunk.t_s(index):.3f} s)",
            index,
        )

    def _on_stream_lost(self, detail: str) -> None:
        self._trip(f"pressure monitoring lost ({detail}); pump stopped as a precaution", None)

    def _trip(self, reason: str, sample_index: int | None) -> None:
        with self._lock:
            if self.tripped:
                return
            self.reason = reason
            self.trip_sample_index = sample_index
        failures: list[str] = []
        actions: list[tuple[str, Callable[[], None]]] = [
            ("stop pump", self.stop_pump),
            ("open leak/bleed valve", lambda: self.daq.set_leak(True)),
            ("release occlusion valve", lambda: self.daq.set_occlusion(False)),
            ("kink valve to 0 %", lambda: self.daq.set_kink_pct(0.0)),
        ]
        for what, action in actions:
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - every relief action must be attempted
                failures.append(f"{what} failed: {exc}")
        full = reason + ("; " + "; ".join(failures) if failures else "")
        self.reason = full
        log.error("interlock tripped: %s", full)
        self.on_trip(full)

    def detach(self) -> None:
        """Stop watching (end of the run): the DAQ outlives the run, its listeners must not."""
        self.daq.remove_listener(self.check)
        self.daq.remove_listener(self._on_stream_lost)
