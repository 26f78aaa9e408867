"""Shared pieces of the DAQ tests: a station-like DAQ config, the sim server, a virtual-time runner,
and the fixtures ``world`` -> ``server`` -> ``daq`` (import them into a test module to use them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from instruments.daq import Daq
from instruments.sim.daq_server import DaqServer, start_daq_server
from instruments.sim.world import SimWorld
from rig.station.model import InstrumentConfig

CHANNELS: dict[str, dict[str, Any]] = {
    "pressure_upstream": {"physical": "ai0", "scale_per_volt": 50.0, "offset": -25.0, "unit": "kPa"},
    "pressure_downstream": {"physical": "ai1", "scale_per_volt": 50.0, "offset": -25.0, "unit": "kPa"},
    "flow_sensor": {"physical": "ai2", "scale_per_volt": 100.0, "offset": 0.0, "unit": "uL/min"},
    "kink_valve": {"physical": "ao0", "unit": "%"},
    "occlusion_valve": {"physical": "port0/line0"},
    "leak_valve": {"physical": "port0/line1"},
    "disconnect_valve": {"physical": "port0/line2"},
}
RATE_HZ = 100.0
CHUNK = 50


def daq_config(**options: Any) -> InstrumentConfig:
    opts = {"sample_rate_hz": RATE_HZ, "chunk_samples": CHUNK, "channels": CHANNELS, **options}
    return InstrumentConfig(
        name="daq", kind="daq", driver="nidaqmx", resource="SimDAQ1", serial="01ABCDEF",
        calibration_due=dt.date(2030, 1, 1), timeout_ms=5000, grpc_server="sim", options=opts,
    )


def open_daq(address: str, cfg: InstrumentConfig) -> Daq:
    return Daq(cfg.name, cfg.resource, timeout_ms=cfg.timeout_ms, options=dict(cfg.options), grpc_server=address)


def run_virtual(world: SimWorld, daq: Daq, seconds: float, t0_s: float, step_s: float = 0.5) -> None:
    """Advance virtual time in steps and let the reader drain each one (as the rig's clock does).

    t0_s: model time when the acquisition started (sample 0).
    """
    for _ in range(int(round(seconds / step_s))):
        t = world.advance(step_s)
        # the model accumulates sample times in floating point, so the last sample of a step may
        # land just after it: count on one sample less
        n = int(round((t - t0_s) * daq.rate_hz)) - 1
        last_full_chunk = (n // daq.chunk_samples) * daq.chunk_samples - 1
        if daq.acquiring and last_full_chunk >= 0:
            assert daq.wait_for_sample(last_full_chunk, 5.0), f"reader did not deliver sample {last_full_chunk}"


def set_pump(world: SimWorld, rate_ml_h: float, running: bool = True) -> None:
    with world.locked() as model:
        model.pump.rate_ml_h = rate_ml_h
        model.pump.running = running


@pytest.fixture
def world() -> SimWorld:
    return SimWorld(virtual=True, seed=3)


@pytest.fixture
def server(world: SimWorld) -> Iterator[DaqServer]:
    srv, _ = start_daq_server(world, daq_config())
    yield srv
    srv.stop(0)


@pytest.fixture
def daq(server: DaqServer) -> Iterator[Daq]:
    d = open_daq(server.address, daq_config())
    yield d
    d.close()
