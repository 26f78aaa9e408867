"""Virtual time is as strict as real time for the overpressure interlock (issue 16).

The same scenario runs on the shipped station (DAQ at 20 Hz in 1 s chunks) in real time and in
virtual time: deliver 30 mL/h, pinch the line shut with the rig's kink valve, wait with the default
(coarse) tick. Occluded, the line rises at Q/C = 30 / 0.010 / 3600 = 0.83 kPa/s, i.e. 0.83 kPa per
chunk; the interlock limit is 20 kPa. In real time the interlock sees each chunk as it completes
and stops the pump within one chunk of the crossing; virtual time must do the same — the clock's
guard ends a jump at the end of the chunk that crossed — not let the pump run to the end of a
10 s tick. Compared: the trip sample counted from the kink, and the peak pressure (each within one
chunk of the other), and both peaks at most one chunk's rise above the limit.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import write_station

from instruments.daq_stream import read_stream
from rig.engine.display import Display
from rig.engine.operator import Operator
from rig.engine.params import parse_params
from rig.engine.runner import Runner
from rig.record import read_record
from rig.station.bench import Bench
from rig.station.config import load_station
from tests import interlock_timing

LIMIT_KPA = 20.0
RATE_ML_H = 30.0
RISE_KPA_PER_S = RATE_ML_H / 0.010 / 3600.0  # 0.83 kPa/s occluded
CHUNK_S = 1.0  # shipped station: 20 samples at 20 Hz
RATE_HZ = 20.0


def _run(tmp_path: Path, clock: str) -> dict[str, float]:
    station = load_station(write_station(tmp_path / clock, clock=clock, without=("dmm",),
                                         set={"safety.max_line_pressure_kpa": LIMIT_KPA}))
    procedure = interlock_timing.PROCEDURE.bound(Path(interlock_timing.__file__))
    run_dir = tmp_path / clock / "run"
    with Bench.open(station) as bench:
        result = Runner(procedure=procedure, spec=procedure.load_spec(), params=parse_params([], procedure),
                        bench=bench, run_dir=run_dir, run_id=clock, operator=Operator("test", interactive=False),
                        display=Display(), software={"version": "test", "git_sha": None}).run()
    assert result.outcome == "ABORTED", result.reason
    assert result.reason.startswith("interlock tripped: overpressure"), result.reason
    record = read_record(run_dir)
    kink = next(e for e in record.events if e.get("kind") == "kink")
    trip = next(e for e in record.events if e.get("kind") == "interlock" and "exceeded" in e["detail"])
    trip_sample = int(re.search(r"at sample (\d+)", trip["detail"]).group(1))  # type: ignore[union-attr]
    kink_sample = (kink["t_kink_s"] - kink["acquisition_started_s"]) * RATE_HZ
    pressure = read_stream(run_dir / "raw" / "daq.f64").column("pressure_upstream")
    return {"trip_from_kink": trip_sample - kink_sample, "peak_kpa": float(np.max(pressure)),
            "crossing_kpa": float(pressure[trip_sample])}


def test_interlock_trips_as_early_in_virtual_time_as_in_real_time(tmp_path: Path) -> None:
    real = _run(tmp_path, "real")
    virtual = _run(tmp_path, "virtual")
    chunk_rise = RISE_KPA_PER_S * CHUNK_S
    assert abs(real["trip_from_kink"] - virtual["trip_from_kink"]) <= CHUNK_S * RATE_HZ
    assert abs(real["peak_kpa"] - virtual["peak_kpa"]) <= chunk_rise
    for run in (real, virtual):
        assert run["crossing_kpa"] > LIMIT_KPA
        assert run["peak_kpa"] <= LIMIT_KPA + chunk_rise + 0.3, run  # + noise (σ 0.05 kPa) and stop latency
