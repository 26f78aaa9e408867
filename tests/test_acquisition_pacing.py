"""Virtual time reads the DAQ when something needs the data, not after every clock jump
(rig.engine.acquisition.Acquisition.advance_virtual; issue 16).

Each read is a round trip to the device, so data that only gets recorded waits (at most
DAQ_PACE_S of procedure time, and never past a step's end or a look at the latest readings);
live listeners (detectors) get every jump's chunks before the procedure looks again; a jump the
clock's guard ended early (the line pressure crossed the interlock's limit) is read at once, the
chunk that ends exactly there included.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rig.engine.acquisition import DAQ_PACE_S, Acquisition
from rig.engine.display import Display
from rig.engine.signals import AbortFlag

RATE_HZ = 20.0


class Clock:
    """A virtual clock whose jumps may be cut short (``stop_at``), as the bench's guard does."""

    virtual = True

    def __init__(self) -> None:
        self.t = 0.0
        self.guard: Any = None
        self.stop_at: float | None = None

    def now_s(self) -> float:
        return self.t

    def sleep(self, dt_s: float) -> float:
        end = self.t + dt_s
        if self.stop_at is not None and self.t < self.stop_at < end:
            end, self.stop_at = self.stop_at, None
        before, self.t = self.t, end
        return end - before


class Daq:
    """Records every read the acquisition asks for (as elapsed acquisition time)."""

    rate_hz = RATE_HZ
    chunk_samples = 20

    def __init__(self) -> None:
        self.reads: list[float] = []

    def start_acquisition(self, path: Path, **options: Any) -> Path:
        return path

    def wait_for_elapsed(self, elapsed_s: float, timeout_s: float) -> bool:
        self.reads.append(elapsed_s)
        return True

    def add_chunk_listener(self, listener: Any, *, safety: bool = False) -> None:
        pass

    def listeners(self) -> tuple[list[Any], list[Any]]:
        return [], []


class Log:
    def __init__(self, raw_dir: Path) -> None:
        self.raw_dir = raw_dir
        self.t0_proc_s = 0.0


def _acquisition(tmp_path: Path) -> tuple[Acquisition, Clock, Daq]:
    clock, daq = Clock(), Daq()
    bench = SimpleNamespace(daq=daq, clock=clock, station=None, pump=None)
    acquisition = Acquisition(bench, Log(tmp_path), Display(), AbortFlag())  # type: ignore[arg-type]
    acquisition.start()
    return acquisition, clock, daq


def test_recorded_only_data_is_read_once_per_pace_and_at_a_step_end(tmp_path: Path) -> None:
    acquisition, clock, daq = _acquisition(tmp_path)
    for _ in range(int(DAQ_PACE_S / 10)):
        acquisition.advance_virtual(10.0)
    assert daq.reads == []  # 300 s of 10 s jumps, nothing looking: no round trip yet
    acquisition.advance_virtual(10.0)
    assert daq.reads == [pytest.approx(DAQ_PACE_S + 1 / RATE_HZ)]  # before the unread time would pass the pace
    acquisition.advance_virtual(20.0)
    acquisition.catch_up()  # what the runner does at every step end (and ctx.daq.latest() on demand)
    assert daq.reads[-1] == pytest.approx(clock.t + 1 / RATE_HZ)
    assert len(daq.reads) == 2


def test_a_live_listener_gets_every_jump_before_the_procedure_looks_again(tmp_path: Path) -> None:
    acquisition, clock, daq = _acquisition(tmp_path)
    acquisition.add_chunk_listener(lambda chunk: None)  # live by default: e.g. the fault detectors
    for _ in range(5):
        acquisition.advance_virtual(2.0)
    assert daq.reads == pytest.approx([2.05, 4.05, 6.05, 8.05, 10.05])


def test_a_jump_the_guard_cut_short_is_read_at_once_with_its_last_chunk(tmp_path: Path) -> None:
    acquisition, clock, daq = _acquisition(tmp_path)
    acquisition.add_chunk_listener(lambda chunk: None, live=False)  # a flow-sensor series, say
    clock.stop_at = 23.0  # the end of the chunk in which the pressure crossed the limit
    acquisition.advance_virtual(10.0)
    acquisition.advance_virtual(10.0)
    acquisition.advance_virtual(10.0)
    # one read, right at the guard's stop; one sample period more than the clock says, so the DAQ
    # hands over the chunk that ends exactly at 23.0 s (the one the interlock must see)
    assert daq.reads == [pytest.approx(23.0 + 1 / RATE_HZ)]
