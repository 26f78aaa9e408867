"""The live plot's points events: one point per DAQ chunk, sent at once in real time and batched
in virtual time (one event per POINTS_EVERY_S of wall time), never after a later event."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from instruments.daq_listeners import DaqChunk
from rig.service import live
from rig.service.live import POINTS_EVERY_S, PanelDisplay

CHANNELS = ("pressure_upstream", "pressure_downstream", "flow_sensor", "valve_state")


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def publish(self, event: dict[str, Any], job: str | None = None) -> int:
        self.events.append(event)
        return len(self.events)


class Clock:
    """Stands in for time.monotonic in live: the test decides how much wall time passes."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


def chunk(first: int, n: int, rate_hz: float = 10.0) -> DaqChunk:
    index = np.arange(first, first + n, dtype=float)
    data = np.vstack([index, 2 * index, np.full(n, 3.0), np.zeros(n)])  # upstream = sample number
    return DaqChunk(first, rate_hz, CHANNELS, data)


@pytest.fixture
def display(monkeypatch: pytest.MonkeyPatch) -> tuple[PanelDisplay, Recorder, Clock]:
    clock = Clock()
    monkeypatch.setattr(live, "time", clock)
    hub = Recorder()
    d = PanelDisplay(hub, "job1")  # type: ignore[arg-type]
    d._chunk_samples = 5  # the device's chunk: 0.5 s at 10 Hz
    return d, hub, clock


def points(hub: Recorder) -> list[dict[str, Any]]:
    return [e for e in hub.events if e["type"] == "points"]


def test_real_time_publishes_each_chunk_as_it_arrives(display) -> None:
    d, hub, clock = display
    for k in range(3):
        clock.now += 0.5  # a chunk every 0.5 s of wall time
        d.on_chunk(chunk(5 * k, 5))
        assert len(points(hub)) == k + 1  # nothing waits for a later chunk
    batches = points(hub)
    assert [b["t"] for b in batches] == [[0.2], [0.7], [1.2]]  # each chunk's mid-sample time
    assert [b["p_up_kpa"] for b in batches] == [[2.0], [7.0], [12.0]]  # its mean
    assert [b["p_down_kpa"] for b in batches] == [[4.0], [14.0], [24.0]]
    assert batches[0]["flow_ul_min"] == [3.0] and "valve_state" not in batches[0]
    assert batches[1]["at_ms"] == 1001.0 * 1000


def test_virtual_time_batches_many_chunks_into_one_event(display) -> None:
    d, hub, clock = display
    clock.now += 1
    d.on_chunk(chunk(0, 20))  # one read delivered four device chunks: four points, one event
    assert points(hub)[0]["t"] == [0.2, 0.7, 1.2, 1.7]
    assert points(hub)[0]["p_up_kpa"] == [2.0, 7.0, 12.0, 17.0]
    first_at = clock.now * 1000
    for k in range(4, 10):  # more reads within the window: gathered, not sent
        clock.now += POINTS_EVERY_S / 10
        d.on_chunk(chunk(5 * k, 5))
    assert len(points(hub)) == 1
    clock.now += 1.5 * POINTS_EVERY_S
    d.on_chunk(chunk(50, 5))  # the window has passed: everything gathered goes out at once
    batch = points(hub)[1]
    assert batch["t"] == [2.2 + 0.5 * k for k in range(7)]
    assert batch["p_up_kpa"] == [22.0 + 5 * k for k in range(7)]
    assert batch["at_ms"] == pytest.approx(first_at + POINTS_EVERY_S / 10 * 1000)  # the oldest point's arrival


def test_gathered_points_go_out_before_any_later_event(display) -> None:
    d, hub, clock = display
    clock.now += 1
    d.on_chunk(chunk(0, 5))
    d.on_chunk(chunk(5, 5))  # within the window: gathered
    d.event("interlock", "p_up 20.1 kPa")
    assert [e["type"] for e in hub.events] == ["points", "points", "event"]
    d.on_chunk(chunk(10, 5))
    clock.now += 1.5 * POINTS_EVERY_S
    d.tick(3.0, 1.0)  # a tick after the window sends what waited
    assert hub.events[3]["type"] == "points" and hub.events[3]["t"] == [1.2]
    d.flush_points()  # nothing gathered: nothing sent
    assert len(points(hub)) == 3


def test_a_chunk_without_plotted_channels_is_not_a_point(display) -> None:
    d, hub, _ = display
    d.on_chunk(DaqChunk(0, 10.0, ("valve_state",), np.zeros((1, 5))))
    d.flush_points()
    assert hub.events == []


def test_balance_readings_are_gathered_like_points(display) -> None:
    d, hub, clock = display
    clock.now += 1
    d.raw_row("gravimetric", ["t_s", "mass_g"], (0.0, 10.5))  # sent at once
    d.raw_row("gravimetric", ["t_s", "mass_g"], (30.0, 10.6))  # same wall instant: gathered
    d.raw_row("gravimetric", ["t_s", "mass_g"], (60.0, "overload"))  # not a number: not plotted
    d.raw_row("events", ["t_s", "kind"], (60.0, "x"))  # not a balance row
    clock.now += 1.5 * POINTS_EVERY_S
    d.raw_row("gravimetric", ["t_s", "mass_g"], (90.0, 10.7))
    assert [(e["type"], e["t"], e["mass_g"]) for e in hub.events] == [
        ("balance", [0.0], [10.5]), ("balance", [30.0, 90.0], [10.6, 10.7])]
    assert "at_ms" not in hub.events[0]


def test_virtual_time_sends_points_with_the_progress_not_faster(display) -> None:
    from rig.engine.display import RunInfo
    from rig.service.live import VIRTUAL_POINTS_EVERY_S

    d, hub, clock = display
    d.start(RunInfo("r1", "leak 1.0.0", "Leak", "S1", "op", [("deliver", 60.0)], True, "/x/record.jsonl"))
    clock.now += 1
    d.on_chunk(chunk(0, 5))  # the first goes out at once
    for k in range(1, 4):
        clock.now += 1.2 * POINTS_EVERY_S  # each past the real-time window, all within the virtual one
        d.on_chunk(chunk(5 * k, 5))
    assert len(points(hub)) == 1 and 3 * 1.2 * POINTS_EVERY_S < VIRTUAL_POINTS_EVERY_S
    clock.now = 1 + VIRTUAL_POINTS_EVERY_S + 0.01
    d.tick(30.0, 1.0)  # the progress event takes the gathered points with it, ahead of itself
    kinds = [e["type"] for e in hub.events]
    assert kinds[-2:] == ["points", "tick"] and points(hub)[1]["t"] == [0.7, 1.2, 1.7]
