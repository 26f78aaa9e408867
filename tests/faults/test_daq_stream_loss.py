"""A fault found while building the matrix: the DAQ stream's disk fills up on its own.

The matrix's disk-full cells fill the whole filesystem of the run (record, raw data and stream
alike). Here only the DAQ stream fails (raw data on a separate volume, a quota, a bad sector): its
descriptor is pointed at /dev/full. The reader used to die silently then, leaving the overpressure
interlock blind while the pump ran on. Now the acquisition fails loudly: the interlock trips ("pressure
monitoring lost"), the run is ABORTED and run_finished carries the DAQ error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faults import harness


def test_disk_full_on_the_daq_stream_alone_trips_the_interlock(tmp_path: Path) -> None:
    def act(bench: harness.CellBench, run_dir: Path) -> Any:
        return lambda ctx: harness.redirect_run_files_to_full_disk(run_dir, "raw/daq.f64")

    run = harness.run_in_process("daq_stream_full", "delivery", tmp_path, act=act)
    assert run.record is not None
    assert run.record.finished is not None and run.record.finished["daq"]["error"], "acquisition error not recorded"
    assert run.record.outcome == "ABORTED" and "pressure monitoring lost" in run.record.reason
