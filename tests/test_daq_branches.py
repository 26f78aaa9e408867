"""Branches of the DAQ driver's parts that no end-to-end run takes by itself (docs/testing.md,
"Safety- and integrity-critical modules: branch coverage"): daq_link, daq_outputs, daq_acquisition.

Each is driven on the simulated NI device server (tests/daq_fixtures.py) with the fault injected
there (a device fault, a stopped server, a listener that hangs or raises), or, for the local
NI-DAQmx driver that this machine lacks, on the real nidaqmx package itself; the outcome asserted
is what the driver returns, raises, records or leaves on the device.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from instruments.daq import BUFFER_SECONDS, Daq, DaqChunk, DaqConfigError
from instruments.daq_link import DaqLink, close_quietly
from instruments.daq_stream import read_stream
from instruments.errors import (
    InstrumentDisconnected,
    InstrumentReportedError,
    InstrumentTimeout,
    SafeStateNotConfirmed,
)
from instruments.sim.daq_server import DaqServer, start_daq_server
from instruments.sim.world import SimWorld
from tests.daq_fixtures import CHANNELS, CHUNK, RATE_HZ, daq_config, open_daq

LIVENESS_S = 60.0  # a generous liveness deadline for what happens in another thread, not a bound

AI_ONLY = {k: v for k, v in CHANNELS.items() if str(v["physical"]).startswith("ai")}
VALVES_ONLY = {k: v for k, v in CHANNELS.items() if str(v["physical"]).startswith("port")}
KINK_ONLY = {"kink_valve": CHANNELS["kink_valve"]}


def wired(server: DaqServer, channels: dict[str, Any], **options: Any) -> Daq:
    """A DAQ on the sim wired with only ``channels`` (the device itself has every line)."""
    return open_daq(server.address, daq_config(channels=channels, **options))


def wired_ms(server: DaqServer, timeout_ms: int, **options: Any) -> Daq:
    cfg = daq_config(**options)
    return Daq(cfg.name, cfg.resource, timeout_ms=timeout_ms, options=dict(cfg.options), grpc_server=server.address)


# -- daq_link ------------------------------------------------------------------------------------


def test_grpc_server_sim_given_to_the_driver_directly_is_refused_with_what_to_give() -> None:
    with pytest.raises(InstrumentDisconnected, match='must be resolved to the simulated bench.s address') as info:
        Daq("daq", "SimDAQ1", options={"sample_rate_hz": RATE_HZ, "channels": CHANNELS}, grpc_server="sim")
    assert 'give "host:port" here' in str(info.value)


def test_identify_on_the_local_driver_this_machine_lacks_is_a_disconnect_saying_so() -> None:
    link = DaqLink("daq", "Dev1", timeout_ms=1000, grpc_server=None, grpc_tls=None)
    with pytest.raises(InstrumentDisconnected, match="NI-DAQmx driver is not installed") as info:
        link.identify()
    assert "identify" in str(info.value)
    link.close()  # nothing to close for the local driver; must not raise


def test_identify_on_the_local_driver_reads_the_device_and_the_local_driver_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import nidaqmx.system

    asked: list[str] = []

    class LocalDevice:  # stand-in for nidaqmx.system.Device on a machine with the driver
        def __init__(self, name: str) -> None:
            asked.append(name)
            self.product_type, self.serial_num = "USB-6343 (BNC)", 0x01ABCDEF

    class LocalSystem:
        driver_version = type("V", (), {"major_version": 23, "minor_version": 5, "update_version": 1})()

    monkeypatch.setattr(nidaqmx.system, "Device", LocalDevice)
    monkeypatch.setattr(nidaqmx.system.System, "local", staticmethod(lambda: LocalSystem()))
    ident = DaqLink("daq", "Dev1", timeout_ms=1000, grpc_server=None, grpc_tls=None).identify()
    assert asked == ["Dev1"]
    assert (ident.model, ident.serial, ident.firmware) == ("USB-6343 (BNC)", "01ABCDEF", "NI-DAQmx 23.5.1")


def test_close_quietly_swallows_a_failing_close_and_ignores_no_task() -> None:
    calls: list[str] = []

    class GoneTask:
        def close(self) -> None:
            calls.append("close")
            raise RuntimeError("server gone")

    close_quietly(GoneTask())
    close_quietly(None)
    assert calls == ["close"]


# -- daq_outputs ---------------------------------------------------------------------------------


def test_station_without_outputs_has_nothing_to_set_read_back_or_make_safe(server: DaqServer) -> None:
    daq = wired(server, AI_ONLY)
    try:
        assert daq.read_outputs() == {}
        assert daq.safe_state() == {}
        with pytest.raises(DaqConfigError, match="no kink_valve channel is configured"):
            daq.set_kink_pct(10.0)
        with pytest.raises(DaqConfigError, match="no occlusion_valve channel is configured"):
            daq.set_occlusion(True)
        state = server.state()  # nothing was opened on the device: no AO/DO task, outputs untouched
    finally:
        daq.close()
    assert state["tasks"] == {}
    assert state["outputs"]["kink_valve"]["volts"] == 0.0
    assert not state["outputs"]["occlusion_valve"]["high"]


def test_station_with_valves_but_no_kink_makes_the_valves_safe(server: DaqServer, world: SimWorld) -> None:
    daq = wired(server, VALVES_ONLY)
    try:
        daq.set_leak(True)
        assert world.model.valves.leak
        with pytest.raises(DaqConfigError, match="no kink_valve channel"):
            daq.set_kink_pct(0.0)
        readback = daq.safe_state()
    finally:
        daq.close()
    assert readback == {"occlusion_valve": False, "leak_valve": False, "disconnect_valve": False}
    assert not world.model.valves.leak
    assert [server.state()["outputs"][v]["high"] for v in VALVES_ONLY] == [False] * 3


def test_station_with_a_kink_valve_only_opens_it_and_refuses_the_valves(server: DaqServer, world: SimWorld) -> None:
    daq = wired(server, KINK_ONLY)
    try:
        daq.set_kink_pct(50.0)
        assert world.model.valves.kink_pct == pytest.approx(50.0)
        with pytest.raises(DaqConfigError, match="no leak_valve channel"):
            daq.set_leak(True)
        readback = daq.safe_state()
    finally:
        daq.close()
    assert set(readback) == {"kink_valve"} and readback["kink_valve"] == pytest.approx(0.0, abs=0.05)
    assert world.model.valves.kink_pct == 0.0
    assert server.state()["outputs"]["kink_valve"]["volts"] == 0.0


def test_kink_valve_reading_open_after_safe_state_is_not_confirmed(
    daq: Daq, server: DaqServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    daq.set_kink_pct(40.0)
    device = server.device

    def dead_dac(task: Any, values: np.ndarray) -> int:  # the AO ignores every write from now on
        return np.asarray(values, dtype=float).reshape(len(task.channels), -1).shape[1]

    monkeypatch.setattr(device, "write_analog", dead_dac)
    with pytest.raises(SafeStateNotConfirmed, match=r"kink_valve reads 40\.\d\d % \(expected 0\)") as info:
        daq.safe_state()
    assert "reads high" not in str(info.value)  # the valves did go safe; only the kink is named
    outputs = server.state()["outputs"]
    assert outputs["kink_valve"]["volts"] == pytest.approx(4.0)
    assert [outputs[v]["high"] for v in VALVES_ONLY] == [False] * 3


def test_safe_state_with_the_server_gone_is_not_confirmed_because_the_read_back_failed(
    world: SimWorld,
) -> None:
    srv, address = start_daq_server(world, daq_config())
    daq = open_daq(address, daq_config())
    try:
        srv.stop(0)
        with pytest.raises(SafeStateNotConfirmed, match="read-back failed") as info:
            daq.safe_state()
        # every write failed too (collected on the way); the failed read-back is what decides
        assert isinstance(info.value.__cause__, InstrumentDisconnected)
        assert "read back valves" in str(info.value)
    finally:
        daq.close()


# -- daq_acquisition -----------------------------------------------------------------------------


def test_starting_twice_is_refused_and_the_first_acquisition_goes_on(
    world: SimWorld, daq: Daq, tmp_path: Path
) -> None:
    t0 = world.now_s()
    daq.start_acquisition(tmp_path / "first.f64", paced=True)
    with pytest.raises(InstrumentReportedError, match="acquisition is already running"):
        daq.start_acquisition(tmp_path / "second.f64", paced=True)
    assert not (tmp_path / "second.f64").exists()
    t = world.advance(1.0)
    assert daq.wait_for_elapsed(t - t0)
    stats = daq.stop_acquisition()
    assert stats.samples == int(RATE_HZ) and stats.error is None
    assert read_stream(tmp_path / "first.f64").scans.shape[0] == int(RATE_HZ)


def test_starting_without_analog_inputs_is_a_config_error(server: DaqServer, tmp_path: Path) -> None:
    daq = wired(server, VALVES_ONLY)
    try:
        with pytest.raises(DaqConfigError, match="no analog input channels are configured"):
            daq.start_acquisition(tmp_path / "daq.f64")
        assert not daq.acquiring
        kinds = [t["kind"] for t in server.state()["tasks"].values()]
    finally:
        daq.close()
    assert not (tmp_path / "daq.f64").exists()
    assert kinds == ["do"]  # the valves' task only: no AI task was created


def test_latest_before_start_is_refused(daq: Daq) -> None:
    with pytest.raises(InstrumentReportedError, match="acquisition is not running; call start_acquisition first"):
        daq.latest()


def test_latest_of_a_paced_acquisition_before_its_first_chunk_is_a_timeout(
    world: SimWorld, daq: Daq, tmp_path: Path
) -> None:
    daq.start_acquisition(tmp_path / "daq.f64", paced=True)
    with pytest.raises(InstrumentTimeout, match="no samples within 5000 ms"):
        daq.latest()
    t0 = world.now_s()
    t = world.advance(1.0)
    assert daq.wait_for_elapsed(t - t0)  # after the first chunk, latest answers
    assert daq.latest()["sample_index"] == CHUNK - 1
    daq.stop_acquisition()


def test_a_failure_while_latest_waits_for_the_first_chunk_is_raised(
    world: SimWorld, server: DaqServer, tmp_path: Path
) -> None:
    daq = open_daq(server.address, daq_config())
    acq = daq._acquisition  # noqa: SLF001 - its condition is instrumented to order the two threads

    class SaysWhenWaiting(threading.Condition):
        """The acquisition's condition, telling when ``latest`` is inside its wait (lock released)."""

        def __init__(self) -> None:
            super().__init__()
            self.waiting = threading.Event()

        def wait(self, timeout: float | None = None) -> bool:
            self.waiting.set()
            return super().wait(timeout)

    cond = SaysWhenWaiting()
    acq._latest_cond = cond  # noqa: SLF001
    failures: list[str] = []
    daq.add_failure_listener(failures.append)

    def overflow_once_latest_waits() -> None:
        if cond.waiting.wait(LIVENESS_S):
            world.advance(3 * BUFFER_SECONDS)  # three buffers full with nobody reading: overflow

    try:
        daq.start_acquisition(tmp_path / "daq.f64")
        helper = threading.Thread(target=overflow_once_latest_waits, daemon=True)
        helper.start()
        with pytest.raises(InstrumentReportedError, match="-200279"):
            daq.latest()
        helper.join(LIVENESS_S)
        assert cond.waiting.is_set()
        assert failures and "-200279" in failures[0]
    finally:
        daq.close()


def test_read_timeouts_are_counted_and_the_reader_reads_on(server: DaqServer, world: SimWorld, tmp_path: Path) -> None:
    # 100 ms timeout, 5-sample chunks at 100 Hz: a read times out after 0.15 s of wall clock while
    # virtual time stands still (the device reports SAMPLES_NOT_YET_AVAILABLE, as DAQmx does).
    daq = wired_ms(server, 100, chunk_samples=5)
    try:
        t0 = world.now_s()
        daq.start_acquisition(tmp_path / "daq.f64")
        tick = threading.Event()  # never set: a 50 ms poll within the liveness deadline
        for _ in range(int(LIVENESS_S / 0.05)):
            if daq.stats.read_timeouts >= 1:
                break
            tick.wait(0.05)
        assert daq.stats.read_timeouts >= 1
        assert daq.acquiring and daq.stats.error is None
        world.advance(1.0)
        assert daq.wait_for_elapsed(world.now_s() - t0, LIVENESS_S)  # reader thread, not paced
        latest = daq.latest()
        stats = daq.stop_acquisition()
    finally:
        daq.close()
    assert latest["sample_index"] >= 94
    assert stats.error is None and stats.samples >= 95
    assert read_stream(tmp_path / "daq.f64").events == []


def test_wait_for_elapsed_with_a_reader_thread_waits_for_the_chunk(world: SimWorld, daq: Daq, tmp_path: Path) -> None:
    t0 = world.now_s()
    daq.start_acquisition(tmp_path / "daq.f64")
    t = world.advance(1.0)
    assert daq.wait_for_elapsed(t - t0, LIVENESS_S)
    assert daq.latest()["sample_index"] >= CHUNK - 1
    stats = daq.stop_acquisition()
    assert stats.samples >= CHUNK and stats.error is None


def test_wait_for_sample_is_false_when_not_acquiring_or_failed_or_out_of_time(
    world: SimWorld, daq: Daq, tmp_path: Path
) -> None:
    assert daq.wait_for_sample(0, 1.0) is False  # never started
    assert daq.wait_for_elapsed(1.0) is True  # nothing to wait for when nothing is acquired
    daq.start_acquisition(tmp_path / "daq.f64", paced=True)
    assert daq.wait_for_sample(0, 0.0) is False  # no time to wait, nothing delivered
    failures: list[str] = []
    daq.add_failure_listener(failures.append)

    def check(chunk: DaqChunk) -> None:
        raise ValueError("pressure column unreadable")

    daq.add_chunk_listener(check, safety=True)
    t0 = world.now_s()
    t = world.advance(1.0)
    assert daq.wait_for_elapsed(t - t0) is False  # the paced read failed on the safety listener
    assert failures and "pressure column unreadable" in failures[0]
    assert daq.wait_for_sample(10**6, LIVENESS_S) is False  # failed: returns at once, never delivered
    daq.stop_acquisition()


def test_stopping_a_paced_acquisition_saves_what_is_left_and_stops_when_that_read_fails(
    world: SimWorld, daq: Daq, tmp_path: Path
) -> None:
    daq.start_acquisition(tmp_path / "daq.f64", paced=True)
    world.advance(2.0)  # 200 samples waiting on the device, never read by wait_for_elapsed
    failures: list[str] = []
    daq.add_failure_listener(failures.append)
    heard: list[int] = []

    def check(chunk: DaqChunk) -> None:
        heard.append(chunk.n)
        raise ValueError("interlock check failed")

    daq.add_chunk_listener(check, safety=True)
    stats = daq.stop_acquisition()
    assert heard == [200]  # one read of everything left; it failed, so the loop stopped there
    assert stats.samples == 200 and stats.error is not None and "interlock check failed" in stats.error
    assert failures and "interlock check failed" in failures[0]
    data = read_stream(tmp_path / "daq.f64")
    assert data.scans.shape[0] == 200  # saved before it was handed on
    assert [e["event"] for e in data.events] == ["error"]
    assert not daq.acquiring


def test_a_reader_that_does_not_stop_is_reported_and_the_acquisition_released(
    world: SimWorld, server: DaqServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    daq = wired_ms(server, 100)  # the stop waits max(5 s, 2 x timeout) for the reader
    entered, release = threading.Event(), threading.Event()

    def hangs(chunk: DaqChunk) -> None:  # a display listener stuck in the reader thread
        entered.set()
        release.wait(LIVENESS_S)

    daq.add_chunk_listener(hangs)
    try:
        daq.start_acquisition(tmp_path / "daq.f64")
        reader = daq._acquisition._reader  # noqa: SLF001 - to see the thread end once released
        assert reader is not None
        world.advance(1.0)
        assert entered.wait(LIVENESS_S)
        with caplog.at_level(logging.WARNING, logger="instruments.daq"):
            stats = daq.stop_acquisition()
        assert "daq: reader thread did not stop" in caplog.text
        assert reader.is_alive() and not daq.acquiring
        assert stats.stopped_monotonic is not None
        release.set()
        reader.join(LIVENESS_S)
        assert not reader.is_alive()
    finally:
        release.set()
        daq.close()
    assert read_stream(tmp_path / "daq.f64").scans.shape[0] >= CHUNK  # the chunk it held was saved
