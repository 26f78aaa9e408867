"""The DAQ's outputs: the kink valve (AO) and the fault valves (DO lines), and their safe state.

Why apart from the acquisition: the outputs make faults and must be put back to normal flow
whatever the acquisition is doing (``safe_state`` runs while the rig keeps watching pressure), so
they share nothing with it but the device link. ``kink_valve`` is an AO (0..100 % restriction =
0..10 V); the ``occlusion_valve``, ``leak_valve`` and ``disconnect_valve`` are digital lines
(high = fault). Read-backs come from the device, never from this object's memory.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from nidaqmx.constants import LineGrouping
from nidaqmx.stream_readers import DigitalMultiChannelReader
from nidaqmx.stream_writers import AnalogSingleChannelWriter, DigitalMultiChannelWriter

from instruments.daq_channels import KINK, DaqConfigError
from instruments.daq_link import AI_RANGE_V, DaqLink, close_quietly
from instruments.errors import InstrumentError, SafeStateNotConfirmed
from instruments.visa_instrument import in_range

KINK_VOLTS_PER_PCT = 0.1  # 0..100 % restriction = 0..10 V
AO_READBACK_TOLERANCE_V = 0.02


class DaqOutputs:
    """The output tasks of one DAQ, opened at construction and held until ``close``."""

    def __init__(self, link: DaqLink, kink_physical: str | None, valve_physical: dict[str, str]) -> None:
        self._link = link
        self.kink_physical = kink_physical
        self._lock = threading.RLock()
        self._valves = {v: False for v in valve_physical}
        self._ao_task: Any = None
        self._do_task: Any = None
        try:
            self._open(valve_physical)
        except BaseException:
            self.close()
            raise

    def _open(self, valve_physical: dict[str, str]) -> None:
        link = self._link
        with link.op("open outputs"):
            if self.kink_physical:
                self._ao_task = link.new_task()
                self._ao_task.ao_channels.add_ao_voltage_chan(
                    link.physical(self.kink_physical), KINK, min_val=0.0, max_val=100 * KINK_VOLTS_PER_PCT
                )
                self._ao_writer = AnalogSingleChannelWriter(self._ao_task.out_stream, auto_start=True)
            if valve_physical:
                self._do_task = link.new_task()
                for valve, physical in valve_physical.items():
                    self._do_task.do_channels.add_do_chan(
                        link.physical(physical), valve, line_grouping=LineGrouping.CHAN_PER_LINE
                    )
                self._do_writer = DigitalMultiChannelWriter(self._do_task.out_stream, auto_start=True)
                self._do_reader = DigitalMultiChannelReader(self._do_task.in_stream)

    def set_kink_pct(self, pct: float) -> None:
        """Pinch valve restriction, 0 (open) .. 100 % (closed)."""
        pct = in_range("kink_pct", 0.0, 100.0, "%")(pct)
        if self._ao_task is None:
            raise DaqConfigError(f"instruments.{self._link.name}: no {KINK} channel is configured")
        with self._lock, self._link.op(f"set_kink_pct({pct:g})"):
            self._ao_writer.write_one_sample(pct * KINK_VOLTS_PER_PCT, timeout=self._link.timeout_s)

    def set_valve(self, valve: str, high: bool) -> None:
        """Drive one fault valve's line (high = fault); the other lines keep their state."""
        if valve not in self._valves:
            raise DaqConfigError(f"instruments.{self._link.name}: no {valve} channel is configured")
        with self._lock, self._link.op(f"set {valve} {'high' if high else 'low'}"):
            states = dict(self._valves, **{valve: bool(high)})
            self._do_writer.write_one_sample_one_line(
                np.array([states[v] for v in self._valves], dtype=bool), timeout=self._link.timeout_s
            )
            self._valves = states

    def read_outputs(self) -> dict[str, Any]:
        """Read the outputs back from the device (DO registers; AO through its internal
        ``_aoN_vs_aognd`` channel), not from this driver's memory."""
        link = self._link
        out: dict[str, Any] = {}
        with self._lock:
            if self._do_task is not None:
                with link.op("read back valves"):
                    lines = np.zeros(len(self._valves), dtype=bool)
                    self._do_reader.read_one_sample_one_line(lines, timeout=link.timeout_s)
                out.update({v: bool(s) for v, s in zip(self._valves, lines)})
            if self.kink_physical:
                with link.op("read back kink valve"):
                    task = link.new_task()
                    try:
                        task.ai_channels.add_ai_voltage_chan(
                            f"{link.device}/_{self.kink_physical}_vs_aognd", min_val=-AI_RANGE_V, max_val=AI_RANGE_V
                        )
                        volts = float(task.read(timeout=link.timeout_s))
                    finally:
                        task.close()
                out[KINK] = volts / KINK_VOLTS_PER_PCT
        return out

    def safe_state(self) -> dict[str, Any]:
        """Every fault valve to normal flow and the kink valve open (0 %), then read back.

        Raises SafeStateNotConfirmed if a write fails or the read-back disagrees. Acquisition keeps
        running: the rig must keep watching pressure while it makes the line safe.
        """
        name = self._link.name
        problems: list[str] = []
        for valve in self._valves:
            try:
                self.set_valve(valve, False)
            except InstrumentError as exc:
                problems.append(str(exc))
        if self.kink_physical:
            try:
                self.set_kink_pct(0.0)
            except InstrumentError as exc:
                problems.append(str(exc))
        try:
            readback = self.read_outputs()
        except InstrumentError as exc:
            raise SafeStateNotConfirmed(name, "safe_state", f"read-back failed: {exc}") from exc
        problems += [f"{v} reads high" for v in self._valves if readback.get(v)]
        if self.kink_physical and abs(readback[KINK]) * KINK_VOLTS_PER_PCT > AO_READBACK_TOLERANCE_V:
            problems.append(f"{KINK} reads {readback[KINK]:.2f} % (expected 0)")
        if problems:
            raise SafeStateNotConfirmed(name, "safe_state", "; ".join(problems))
        return readback

    def close(self) -> None:
        """Release the output tasks (the outputs keep their state on the device)."""
        ao, do = self._ao_task, self._do_task
        self._ao_task = self._do_task = None
        close_quietly(ao)
        close_quietly(do)


__all__ = ["AO_READBACK_TOLERANCE_V", "KINK_VOLTS_PER_PCT", "DaqOutputs"]
