"""The overpressure interlock acting on the simulated line through the real DAQ stack."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from instruments.daq import BUFFER_SECONDS, Daq
from instruments.daq_stream import read_stream
from instruments.sim.daq_server import DaqServer
from instruments.sim.world import SimWorld
from rig.engine.interlock import Interlock
from tests.daq_fixtures import CHUNK, RATE_HZ, run_virtual, set_pump

LIMIT_KPA = 20.0




class PumpStop:
    """What the rig passes as stop_pump: here it stops the model's pump and notes when."""

    def __init__(self, world: SimWorld) -> None:
        self.world = world
        self.at_model_s: float | None = None

    def __call__(self) -> None:
        with self.world.locked() as model:
            model.pump.command_stop(model.t_s)  # what a pump emulator does on its stop command
            self.at_model_s = model.t_s


def test_overpressure_trips_within_one_chunk_and_opens_relief_path(
    world: SimWorld, daq: Daq, server: DaqServer, tmp_path: Path
) -> None:
    stop = PumpStop(world)
    reasons: list[str] = []
    interlock = Interlock(LIMIT_KPA, stop, daq, reasons.append)
    set_pump(world, 10.0)
    world.advance(60.0)
    t0 = world.now_s()
    path = daq.start_acquisition(tmp_path / "daq.f64")
    daq.set_kink_pct(30.0)
    daq.set_occlusion(True)  # the "procedure" occludes and keeps pumping
    run_virtual(world, daq, 80.0, t0)  # ~0.28 kPa/s from ~4 kPa: crosses 20 kPa after ~58 s
    daq.stop_acquisition()

    assert interlock.tripped and len(reasons) == 1 and reasons[0].startswith("overpressure")
    pressure = read_stream(path).column("pressure_upstream")
    first_over = int(np.argmax(pressure > LIMIT_KPA))
    assert pressure[first_over] > LIMIT_KPA
    assert interlock.trip_sample_index == first_over
    # the pump stopped before the end of the chunk after the one holding the crossing
    crossing_chunk_end_s = t0 + ((first_over // CHUNK) + 1) * CHUNK / RATE_HZ
    assert stop.at_model_s is not None and stop.at_model_s <= crossing_chunk_end_s + CHUNK / RATE_HZ
    # relief path, read from the device's own registers
    outputs = server.state()["outputs"]
    assert outputs["leak_valve"]["high"] is True
    assert outputs["occlusion_valve"]["high"] is False
    assert outputs["kink_valve"]["volts"] == 0.0
    # the model pumped nothing after the stop: its own volume account, not the flag the stop set
    assert world.model.totals.pumped_ml == pytest.approx(10.0 * stop.at_model_s / 3600.0, rel=0.01)
    # and the line relieves: pressure falls after the trip
    assert pressure[-1] < LIMIT_KPA - 5
    assert np.max(pressure) < LIMIT_KPA + 1.0


def test_no_trip_below_the_limit(world: SimWorld, daq: Daq, tmp_path: Path) -> None:
    reasons: list[str] = []
    interlock = Interlock(LIMIT_KPA, PumpStop(world), daq, reasons.append)
    set_pump(world, 10.0)
    t0 = world.now_s()
    daq.start_acquisition(tmp_path / "daq.f64")
    run_virtual(world, daq, 20.0, t0)
    daq.stop_acquisition()
    assert not interlock.tripped and reasons == [] and world.model.pump.running


def test_losing_the_pressure_stream_trips_the_interlock(world: SimWorld, daq: Daq, tmp_path: Path) -> None:
    stop = PumpStop(world)
    reasons: list[str] = []
    Interlock(LIMIT_KPA, stop, daq, reasons.append)
    set_pump(world, 1.0)
    daq.start_acquisition(tmp_path / "daq.f64")
    world.advance(3 * BUFFER_SECONDS)  # nobody lets the reader drain: the device buffer overflows
    deadline = time.monotonic() + 5
    while not reasons and time.monotonic() < deadline:
        time.sleep(0.01)
    daq.stop_acquisition()
    assert reasons and reasons[0].startswith("pressure monitoring lost") and "-200279" in reasons[0]
    assert stop.at_model_s is not None and not world.model.pump.running


def test_failed_relief_actions_are_recorded(world: SimWorld, daq: Daq, tmp_path: Path) -> None:
    def broken_pump_stop() -> None:
        raise RuntimeError("pump not answering")

    reasons: list[str] = []
    Interlock(LIMIT_KPA, broken_pump_stop, daq, reasons.append)
    set_pump(world, 10.0)
    world.advance(60.0)
    t0 = world.now_s()
    daq.set_occlusion(True)
    daq.start_acquisition(tmp_path / "daq.f64")
    run_virtual(world, daq, 70.0, t0)
    daq.stop_acquisition()
    assert reasons and "stop pump failed: pump not answering" in reasons[0]
    assert world.model.valves.leak and not world.model.valves.occlusion  # the valves still acted


def test_a_detached_interlock_no_longer_acts(world: SimWorld, daq: Daq, tmp_path: Path) -> None:
    """The runner detaches the interlock when a run ends; the DAQ stays open for the next run,
    whose own interlock (not this one, with a finished run's abort flag) must be the one acting."""
    stop = PumpStop(world)
    reasons: list[str] = []
    interlock = Interlock(LIMIT_KPA, stop, daq, reasons.append)
    interlock.detach()
    interlock.detach()  # idempotent: the runner may reach its end twice on a double fault
    set_pump(world, 10.0)
    world.advance(60.0)
    t0 = world.now_s()
    daq.set_occlusion(True)
    daq.start_acquisition(tmp_path / "daq.f64")
    run_virtual(world, daq, 80.0, t0)  # crosses the limit (see the first test)
    daq.stop_acquisition()
    assert reasons == [] and not interlock.tripped and stop.at_model_s is None


class BrokenCheckInterlock(Interlock):
    """An interlock whose pressure check raises (a bug, a chunk it cannot read)."""

    def check(self, chunk: object) -> None:
        raise ValueError("pressure column unreadable")


def test_a_failing_interlock_check_trips_the_interlock(world: SimWorld, daq: Daq, server: DaqServer,
                                                         tmp_path: Path) -> None:
    """Fail closed: the check that cannot run stops the pump and opens the relief path, instead of
    being logged and skipped while the pump runs on unwatched."""
    reasons: list[str] = []
    BrokenCheckInterlock(LIMIT_KPA, PumpStop(world), daq, reasons.append)
    set_pump(world, 1.0)
    daq.start_acquisition(tmp_path / "daq.f64")
    world.advance(1.0)  # one chunk is enough: its check raises
    deadline = time.monotonic() + 60  # liveness deadline for a busy machine, not a timing claim
    while not reasons and time.monotonic() < deadline:
        time.sleep(0.01)
    daq.stop_acquisition()
    assert len(reasons) == 1 and reasons[0].startswith("pressure monitoring lost"), reasons
    assert "safety check" in reasons[0] and "pressure column unreadable" in reasons[0]
    assert world.model.pump.stopped_by == "command" and not world.model.pump.running
    assert server.state()["outputs"]["leak_valve"]["high"] is True  # the relief path
    assert read_stream(tmp_path / "daq.f64").events[0]["event"] == "error"


def test_a_failing_non_safety_listener_is_logged_and_acquisition_goes_on(world: SimWorld, daq: Daq,
                                                                         tmp_path: Path) -> None:
    failures: list[str] = []
    seen: list[int] = []
    daq.add_failure_listener(failures.append)
    daq.add_chunk_listener(lambda chunk: 1 / 0)  # e.g. the live display
    daq.add_chunk_listener(lambda chunk: seen.append(chunk.n))
    t0 = world.now_s()
    daq.start_acquisition(tmp_path / "daq.f64")
    run_virtual(world, daq, 2.0, t0)
    daq.stop_acquisition()
    assert failures == [] and sum(seen) >= int(2.0 * RATE_HZ) - 1
