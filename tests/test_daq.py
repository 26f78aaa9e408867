"""The DAQ layer end to end: instruments.daq -> the real nidaqmx package -> gRPC -> simulated device."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import nidaqmx
import numpy as np
import pytest
from nidaqmx.constants import AcquisitionType
from nidaqmx.error_codes import DAQmxErrors

from instruments.daq import BUFFER_SECONDS, Daq
from instruments.daq_stream import read_stream
from instruments.errors import (
    InstrumentDisconnected,
    InstrumentReportedError,
    SafeStateNotConfirmed,
)
from instruments.sim.daq_server import DaqServer, start_daq_server
from instruments.sim.world import SimWorld
from tests.daq_fixtures import (
    CHANNELS,
    CHUNK,
    RATE_HZ,
    daq_config,
    open_daq,
    run_virtual,
    set_pump,
)


@pytest.fixture
def raw_task(server: DaqServer) -> Iterator[nidaqmx.Task]:
    """A bare nidaqmx task on the sim, for the error cases the driver would never provoke."""
    channel = grpc.insecure_channel(server.address)
    task = nidaqmx.Task(grpc_options=nidaqmx.GrpcSessionOptions(channel, ""))
    yield task
    task.close()
    channel.close()


def test_identify_comes_from_the_device(daq: Daq) -> None:
    ident = daq.identify()
    assert ident.model.startswith("USB-6343")
    assert ident.serial == "01ABCDEF"
    assert ident.firmware == "NI-DAQmx 24.8.0"


def test_stream_has_every_sample_and_scales_round_trip(world: SimWorld, daq: Daq, tmp_path: Path) -> None:
    t0 = world.now_s()
    path = daq.start_acquisition(tmp_path / "daq.f64")
    run_virtual(world, daq, 5.0, t0)
    assert daq.wait_for_sample(499, 5.0)
    latest = daq.latest()
    stats = daq.stop_acquisition()
    data = read_stream(path)
    assert stats.samples == int(5.0 * RATE_HZ) == data.scans.shape[0]
    assert data.gaps() == [] and data.events == []
    assert latest["sample_index"] == stats.samples - 1
    assert latest["t_s"] == pytest.approx((stats.samples - 1) / RATE_HZ)
    assert set(latest) >= {"pressure_upstream_kpa", "pressure_downstream_kpa", "flow_ul_min"}
    # pump stopped: the line sits at the CSF back-pressure, the flow sensor reads ~0
    back = world.model.params.back_pressure_kpa
    assert np.mean(data.column("pressure_upstream")) == pytest.approx(back, abs=0.02)
    assert np.std(data.column("pressure_upstream")) == pytest.approx(world.model.params.pressure_noise_kpa, rel=0.2)
    assert abs(np.mean(data.column("flow_sensor"))) < 0.01


def test_occlusion_raises_pressure_at_q_over_c(world: SimWorld, daq: Daq, tmp_path: Path) -> None:
    rate_ml_h = 10.0
    set_pump(world, rate_ml_h)
    world.advance(60.0)  # settle to the delivery steady state before acquiring
    t0 = world.now_s()
    path = daq.start_acquisition(tmp_path / "daq.f64")
    run_virtual(world, daq, 2.0, t0)
    daq.set_occlusion(True)
    assert world.model.valves.occlusion
    t_occl = world.now_s() - t0
    run_virtual(world, daq, 20.0, t0)
    daq.stop_acquisition()
    data = read_stream(path)
    t = np.arange(data.scans.shape[0]) / RATE_HZ
    window = (t > t_occl + 1.0) & (t < t_occl + 19.0)
    slope_kpa_s = np.polyfit(t[window], data.column("pressure_upstream")[window], 1)[0]
    expected = rate_ml_h / world.model.params.compliance_ml_per_kpa / 3600.0
    assert slope_kpa_s == pytest.approx(expected, rel=0.03)
    # the outlet sees no flow while occluded
    assert abs(np.mean(data.column("flow_sensor")[window])) < 1.0


def test_kink_cuts_outlet_flow_transiently_and_raises_upstream_pressure(
    world: SimWorld, daq: Daq, tmp_path: Path
) -> None:
    set_pump(world, 10.0)
    world.advance(60.0)
    t0 = world.now_s()
    path = daq.start_acquisition(tmp_path / "daq.f64")
    run_virtual(world, daq, 2.0, t0)
    daq.set_kink_pct(90.0)
    assert world.model.valves.kink_pct == pytest.approx(90.0)
    run_virtual(world, daq, 10.0, t0)
    daq.stop_acquisition()
    data = read_stream(path)
    flow, upstream = data.column("flow_sensor"), data.column("pressure_upstream")
    before = np.mean(flow[:150])
    assert before == pytest.approx(10.0 * 1000 / 60, rel=0.02)  # 10 mL/h = 166.7 µL/min
    assert np.mean(flow[210:400]) < 0.5 * before  # outflow collapses while the tubing charges
    assert np.mean(upstream[-100:]) > np.mean(upstream[:150]) + 2.0


def test_safe_state_is_read_back_from_the_device(daq: Daq, server: DaqServer, world: SimWorld) -> None:
    daq.set_occlusion(True)
    daq.set_leak(True)
    daq.set_disconnect(True)
    daq.set_kink_pct(40.0)
    assert server.state()["outputs"]["kink_valve"]["volts"] == pytest.approx(4.0)
    readback = daq.safe_state()
    assert readback == {"occlusion_valve": False, "leak_valve": False, "disconnect_valve": False,
                        "kink_valve": pytest.approx(0.0, abs=0.05)}
    outputs = server.state()["outputs"]
    assert [outputs[v]["high"] for v in ("occlusion_valve", "leak_valve", "disconnect_valve")] == [False] * 3
    assert outputs["kink_valve"]["volts"] == 0.0
    line = world.model.valves
    assert (line.occlusion, line.leak, line.disconnect, line.kink_pct) == (False, False, False, 0.0)


def test_safe_state_not_confirmed_when_a_valve_is_stuck(daq: Daq, server: DaqServer) -> None:
    server.device.stuck_lines["port0/line0"] = True  # welded occlusion relay
    with pytest.raises(SafeStateNotConfirmed, match="occlusion_valve reads high"):
        daq.safe_state()


def test_kink_out_of_range_is_refused_before_io(daq: Daq, server: DaqServer) -> None:
    with pytest.raises(ValueError, match=r"kink_pct must be in 0\.\.100 %"):
        daq.set_kink_pct(150)
    assert server.state()["outputs"]["kink_valve"]["volts"] == 0.0


# -- genuine DAQmx errors through the nidaqmx package -----------------------------------------------


def test_unknown_device_raises_daqmx_invalid_device(server: DaqServer) -> None:
    cfg = daq_config()
    with pytest.raises(InstrumentReportedError, match="DAQmx error -200220") as info:
        Daq("daq", "NoSuchDev", options=dict(cfg.options), grpc_server=server.address)
    assert info.value.daqmx_error_code == DAQmxErrors.INVALID_DEVICE_ID
    assert isinstance(info.value.__cause__, nidaqmx.DaqError)


def test_unknown_channel_raises_daqmx_error(raw_task: nidaqmx.Task) -> None:
    with pytest.raises(nidaqmx.DaqError) as info:
        raw_task.ai_channels.add_ai_voltage_chan("SimDAQ1/ai99")
    assert info.value.error_code == DAQmxErrors.PHYSICAL_CHAN_DOES_NOT_EXIST


def test_ao_value_out_of_range_raises_daqmx_error(raw_task: nidaqmx.Task) -> None:
    raw_task.ao_channels.add_ao_voltage_chan("SimDAQ1/ao0", min_val=0.0, max_val=10.0)
    with pytest.raises(nidaqmx.DaqError) as info:
        raw_task.write(12.0)
    assert info.value.error_code == DAQmxErrors.INVALID_AO_DATA_WRITE


def test_buffer_overflow_when_the_client_reads_too_slowly(raw_task: nidaqmx.Task, world: SimWorld) -> None:
    raw_task.ai_channels.add_ai_voltage_chan("SimDAQ1/ai0")
    raw_task.timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.CONTINUOUS, samps_per_chan=1000)
    raw_task.start()
    world.advance(1000 / RATE_HZ + 1.0)  # one second more than the buffer holds
    with pytest.raises(nidaqmx.DaqError) as info:
        raw_task.read(number_of_samples_per_channel=10, timeout=1.0)
    assert info.value.error_code == DAQmxErrors.SAMPLES_NO_LONGER_AVAILABLE


def test_reading_a_stopped_task_raises_daqmx_error(raw_task: nidaqmx.Task, world: SimWorld) -> None:
    raw_task.ai_channels.add_ai_voltage_chan("SimDAQ1/ai0")
    raw_task.timing.cfg_samp_clk_timing(RATE_HZ, sample_mode=AcquisitionType.CONTINUOUS)
    raw_task.start()
    world.advance(0.5)
    assert len(raw_task.read(number_of_samples_per_channel=50, timeout=1.0)) == 50
    raw_task.stop()
    with pytest.raises(nidaqmx.DaqError) as info:
        raw_task.read(number_of_samples_per_channel=10, timeout=1.0)
    assert info.value.error_code == DAQmxErrors.CANNOT_READ_WHEN_AUTO_START_FALSE_AND_TASK_NOT_RUNNING_OR_COMMITTED


def test_driver_reports_overflow_as_acquisition_failure(world: SimWorld, daq: Daq, tmp_path: Path) -> None:
    failures: list[str] = []
    daq.add_failure_listener(failures.append)
    daq.start_acquisition(tmp_path / "daq.f64")
    world.advance(3 * BUFFER_SECONDS)  # three buffers full of samples with nobody reading in between
    deadline = time.monotonic() + 5
    while not failures and time.monotonic() < deadline:
        time.sleep(0.01)
    assert failures and "-200279" in failures[0]
    with pytest.raises(InstrumentReportedError, match="-200279"):
        daq.latest()
    daq.stop_acquisition()
    assert read_stream(tmp_path / "daq.f64").events[0]["event"] == "error"


# -- connection problems ---------------------------------------------------------------------------


def test_no_driver_and_no_server_is_one_clear_sentence() -> None:
    with pytest.raises(InstrumentDisconnected) as info:
        Daq("daq", "Dev1", options={"channels": CHANNELS}, grpc_server=None)
    message = str(info.value)
    assert "NI-DAQmx driver is not installed" in message
    assert 'grpc_server = "host:port"' in message and 'mode = "sim"' in message
    assert "\n" not in message and message.count(". ") == 0


def test_unreachable_server_is_a_disconnect(tmp_path: Path) -> None:
    with pytest.raises(InstrumentDisconnected, match="NI gRPC device server 127.0.0.1:9"):
        Daq("daq", "SimDAQ1", options={"channels": CHANNELS}, grpc_server="127.0.0.1:9")


# -- real time -------------------------------------------------------------------------------------


def test_real_time_acquisition_keeps_pace_with_the_wall_clock(tmp_path: Path) -> None:
    world = SimWorld(virtual=False)
    cfg = daq_config(sample_rate_hz=1000.0, chunk_samples=100)
    srv, address = start_daq_server(world, cfg)
    daq = open_daq(address, cfg)
    try:
        started = time.monotonic()
        daq.start_acquisition(tmp_path / "rt.f64")
        assert daq.wait_for_sample(999, timeout_s=5.0)
        elapsed = time.monotonic() - started
        stats = daq.stop_acquisition()
    finally:
        daq.close()
        srv.stop(0)
    assert 0.9 < elapsed < 2.5
    data = read_stream(tmp_path / "rt.f64")
    assert data.gaps() == [] and stats.samples == data.scans.shape[0] >= 1000
    assert stats.error is None


def test_guarded_advance_stops_at_the_end_of_the_chunk_that_crossed(world: SimWorld, daq: Daq, tmp_path: Path) -> None:
    # Delivering 60 mL/h the line sits at 1.47 + 60 · 0.25 = 16.5 kPa; occluded it rises
    # 60 / 0.010 / 3600 = 1.67 kPa/s, so a 30 kPa guard is crossed ~8.1 s in. One guarded advance of 120 s must end at the end of the 0.5 s chunk (50 samples at
    # 100 Hz) holding the first sample above 30 kPa, exactly as the driver scales it.
    set_pump(world, 60.0)
    world.advance(60.0)
    t0 = world.now_s()
    path = daq.start_acquisition(tmp_path / "daq.f64", paced=True)
    world.model.valves.occlusion = True
    guard = {"channel": "pressure_upstream", "above": 30.0, "chunk_samples": CHUNK}
    t = world.advance(120.0, guard)
    assert world.stopped_by is not None and "pressure_upstream above 30" in world.stopped_by
    assert daq.wait_for_elapsed(t - t0, 5.0)
    daq.stop_acquisition()
    upstream = read_stream(path).column("pressure_upstream")
    first_over = int(np.flatnonzero(upstream > 30.0)[0])
    chunk_end = (first_over // CHUNK + 1) * CHUNK  # samples taken when that chunk is complete
    assert round((t - t0) * RATE_HZ) == chunk_end
    assert upstream.size == chunk_end  # the reader has exactly that chunk and nothing later
    assert 7.0 < (t - t0) < 9.5


def test_paced_reader_reads_each_jump_in_one_call(world: SimWorld, daq: Daq, tmp_path: Path) -> None:
    t0 = world.now_s()
    daq.start_acquisition(tmp_path / "daq.f64", paced=True)
    for _ in range(10):
        t = world.advance(10.0)
        assert daq.wait_for_elapsed(t - t0, 5.0)
    stats = daq.stop_acquisition()
    assert stats.samples == 10 * 10 * int(RATE_HZ)
    assert stats.read_timeouts == 0
    assert stats.chunks <= 10 + 1  # one read per jump (+ what is left at stop)


def test_averaging_stream_keeps_block_means_and_says_so(tmp_path: Path) -> None:
    # average 4 over chunks of 3 and 6 samples (9 in all): means of 0..3 and 4..7 are stored
    # (1.5 and 5.5; the second channel ten times that), the last lone sample is not.
    from instruments.daq_stream import AveragingStreamWriter

    header = {"channels": ["a", "b"], "rate_hz": 20.0, "units": ["kPa", "kPa"]}
    writer = AveragingStreamWriter(tmp_path / "s.f64", header, 4)
    data = np.vstack([np.arange(9.0), 10 * np.arange(9.0)])
    writer.write(0, data[:, :3])
    writer.write(3, data[:, 3:])
    writer.close()
    stream = read_stream(tmp_path / "s.f64")
    assert stream.column("a").tolist() == [1.5, 5.5]
    assert stream.column("b").tolist() == [15.0, 55.0]
    assert stream.header["rate_hz"] == 5.0 and stream.header["acquired_rate_hz"] == 20.0
    assert stream.header["averaged_samples"] == 4 and stream.gaps() == []
