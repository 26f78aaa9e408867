"""The safe-state supervisor (rig.engine.supervisor): kill -9 of `rig run` still leaves the rig safe.

Every test runs against a simulated bench served in this process (tests/faults/harness.cell_bench)
and judges the bench from the simulated instruments' own state (the control channel), never from
what a driver or the record claims.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faults import harness

from rig.engine import supervisor as sup
from rig.errors import UsageError
from rig.record import RecordWriter, append_after_crash, read_record
from rig.station.bench import Bench
from rig.station.config import load_station

# A liveness deadline for a busy machine, not a performance claim: how fast the supervisor starts
# and acts is a benchmark figure (benchmarks/supervisor.py), never a unit-test bound.
KILL_TO_SAFE_DEADLINE_S = 60.0


@pytest.fixture
def cell(tmp_path: Path) -> Iterator[harness.CellBench]:
    with harness.cell_bench(tmp_path) as bench:
        yield bench


def delivering(cell: harness.CellBench, tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """Open the bench as a run would, start the pump and close the occlusion valve, then let go
    of every driver (as a killed process does): (supervisor plan, record path)."""
    with Bench.open(load_station(cell.station)) as bench:
        bench.pump.set_rate_ml_h(6.0)
        bench.pump.start()
        bench.daq.set_occlusion(True)
        writer = RecordWriter(tmp_path / "run")
        writer.append("run_started", run_id="run", t_utc="2026-01-01T00:00:00.000000Z")
        writer.close()
        plan = {"record": str(writer.path), "run_id": "run", "runner_pid": os.getpid(),
                "sim_child": bench.sim_child, "instruments": bench.safe_state_plan()}
    assert harness.safe_from_sim(cell.state()) == (False, False)  # pump infusing, occlusion valve closed
    return plan, writer.path


def by_supervisor(record_path: Path) -> list[dict[str, Any]]:
    return [e for e in read_record(record_path).events if e.get("by") == "supervisor"]


def test_plan_reopens_only_pump_and_daq_in_safe_state_order(cell: harness.CellBench, tmp_path: Path) -> None:
    plan, _ = delivering(cell, tmp_path)
    served = json.loads((tmp_path / "resources.json").read_text())
    assert list(plan["instruments"]) == ["pump", "daq"]  # no balance: nothing to make safe there
    assert plan["instruments"]["pump"]["resource"] == served["instruments"]["pump"]
    assert plan["instruments"]["daq"]["grpc_server"] == served["daq_grpc"]
    assert plan["sim_child"] is False  # attached: the bench outlives the runner
    json.dumps(plan, allow_nan=False)  # crosses the pipe as JSON


def test_released_supervisor_touches_neither_bench_nor_record(cell: harness.CellBench, tmp_path: Path) -> None:
    plan, record = delivering(cell, tmp_path)
    before = record.read_bytes()
    supervisor = sup.Supervisor.start(plan)
    assert supervisor.release() is None
    assert supervisor.proc.returncode == sup.EXIT_RELEASED
    assert record.read_bytes() == before
    assert harness.safe_from_sim(cell.state()) == (False, False)  # the pump still runs: untouched


def test_runner_gone_without_release_stops_pump_and_sets_valves_safe(cell: harness.CellBench, tmp_path: Path) -> None:
    plan, record = delivering(cell, tmp_path)
    supervisor = sup.Supervisor.start(plan)
    os.close(supervisor._write_fd)  # what the kernel does when the runner dies: EOF, no "done"
    supervisor._write_fd = None
    assert supervisor.proc.wait(timeout=30) == sup.EXIT_ACTED
    assert harness.safe_from_sim(cell.state()) == (True, True)
    warning, safe = by_supervisor(record)
    assert (warning["type"], warning["kind"]) == ("event", "warning")
    assert f"controller process (pid {os.getpid()}) died" in warning["detail"]
    assert safe["type"] == "safe_state" and safe["confirmed"] is True and safe["error"] is None
    assert safe["instruments"]["pump"]["running"] is False
    assert safe["instruments"]["daq"]["occlusion_valve"] is False
    assert read_record(record).outcome == "INCOMPLETE"


def test_unreachable_instrument_is_recorded_not_confirmed(cell: harness.CellBench, tmp_path: Path) -> None:
    plan, record = delivering(cell, tmp_path)
    plan["instruments"]["pump"]["resource"] = "ASRL/dev/nonexistent-pty::INSTR"
    supervisor = sup.Supervisor.start(plan)
    os.close(supervisor._write_fd)
    supervisor._write_fd = None
    assert supervisor.proc.wait(timeout=30) == sup.EXIT_ACTED
    warning, safe = by_supervisor(record)
    assert safe["confirmed"] is False and safe["error"].startswith("pump: not open, safe state unknown: ")
    assert "cannot open ASRL/dev/nonexistent-pty::INSTR" in safe["error"]
    assert "safe state NOT confirmed" in warning["detail"]
    assert harness.safe_from_sim(cell.state())[1] is True  # the DAQ was still made safe


def test_sim_child_bench_only_warns(tmp_path: Path) -> None:
    """A sim started by the runner dies with it: nothing to open, only the warning."""
    writer = RecordWriter(tmp_path / "run")
    writer.append("run_started", run_id="run")
    writer.close()
    supervisor = sup.Supervisor.start({"record": str(writer.path), "runner_pid": 1, "sim_child": True,
                                       "instruments": {"pump": {"resource": "never opened"}}})
    os.close(supervisor._write_fd)
    supervisor._write_fd = None
    assert supervisor.proc.wait(timeout=30) == sup.EXIT_ACTED
    [warning] = by_supervisor(writer.path)
    assert warning["kind"] == "warning" and "nothing to make safe" in warning["detail"]


def test_torn_last_line_then_supervisor_lines_reads(tmp_path: Path) -> None:
    path = tmp_path / "record.jsonl"
    path.write_text('{"type": "run_started", "run_id": "r"}\n{"type": "measurement", "name": "x", "val')
    append_after_crash(path, [{"type": "safe_state", "confirmed": True, "instruments": {}}])
    assert path.read_text().endswith('"val\n{"by": "supervisor", "confirmed": true, "instruments": {}, '
                                     '"type": "safe_state"}\n')
    record = read_record(path)
    assert record.truncated_tail and record.outcome == "INCOMPLETE"
    assert [e["type"] for e in record.events] == ["run_started", "safe_state"]


def test_torn_line_not_followed_by_supervisor_is_still_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "record.jsonl"
    path.write_text('{"type": "run_started"}\n{"type": "meas\n{"type": "event", "kind": "warning"}\n')
    with pytest.raises(UsageError, match="line 2 is corrupt"):
        read_record(path)
    path.write_text('{"type": "run_started"}\n{"type": "meas\n{"by": "supervisor", "type": "event"}\n{"torn')
    with pytest.raises(UsageError, match="line 2 is corrupt"):  # only one torn line is ever skipped
        read_record(path)


def test_kill9_of_rig_run_during_delivery(cell: harness.CellBench, tmp_path: Path) -> None:
    """A real `rig run` holding in delivery (pump infusing) is SIGKILLed: the supervisor stops the
    pump within a few seconds, and the record says so without ever finishing."""
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "rig", "run", "fault_matrix", "--station", str(cell.station), "--out", str(out),
           "--plain", "--no-report", "--operator", "t", "--param", "hold_phase=2", "--param", "hold_wall_s=120"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=harness.child_env(),
                            stdin=subprocess.DEVNULL, cwd=harness.REPO)
    try:
        record_path = harness.wait_for_text(lambda: list(out.glob("*/record.jsonl")), "holding in phase delivery",
                                            proc)
        assert harness.safe_from_sim(cell.state())[0] is False, "the pump should be infusing"
        os.kill(proc.pid, signal.SIGKILL)
        t_kill = time.monotonic()
        proc.communicate(timeout=30)  # the supervisor holds none of our pipes
        while not harness.safe_from_sim(cell.state())[0] and time.monotonic() - t_kill < KILL_TO_SAFE_DEADLINE_S:
            time.sleep(0.02)
        kill_to_safe_s = time.monotonic() - t_kill
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert harness.safe_from_sim(cell.state()) == (True, True), f"not safe {kill_to_safe_s:.2f} s after kill -9"
    assert harness.wait_for_supervisor(record_path.parent)
    record = read_record(record_path)
    assert record.outcome == "INCOMPLETE" and not record.of_type("run_finished")
    assert [e["type"] for e in record.events if e.get("by") == "supervisor"] == ["event", "safe_state"]
    assert {m["name"] for m in record.measurements} == {"baseline_mass_g", "early_pressure_kpa"}


def test_supervisor_that_cannot_start_means_no_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed: without its supervisor the run does not start a single step; it ends ERROR,
    the bench in its safe state (the simulated instruments' own state says so)."""
    monkeypatch.setattr(sup, "command", lambda: [str(tmp_path / "no-such-python"), "-m", "rig.engine.supervisor"])
    run = harness.run_in_process(None, None, tmp_path)
    assert run.record is not None and run.record.outcome == "ERROR"
    assert run.record.reason.startswith("the safe-state supervisor did not start") and "no run without it" in \
        run.record.reason
    assert run.record.of_type("step_started") == [] and run.record.measurements == []
    assert run.record.of_type("safe_state")[-1]["confirmed"] is True
    assert harness.safe_from_sim(run.sim_state) == (True, True)
    assert run.sim_state["model"]["totals"]["pumped_ml"] == 0.0  # the pump never ran


def test_normal_run_releases_supervisor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault-free run: the supervisor is started, released, exits without acting; record untouched."""
    released: list[sup.Supervisor] = []
    real_release = sup.Supervisor.release

    def spy(self: sup.Supervisor) -> str | None:
        released.append(self)
        return real_release(self)

    monkeypatch.setattr(sup.Supervisor, "release", spy)
    run = harness.run_in_process(None, None, tmp_path)
    assert run.record is not None and run.record.outcome == "PASS"
    [supervisor] = released
    assert supervisor.proc.returncode == sup.EXIT_RELEASED
    assert run.record.events[-1]["type"] == "run_finished"
    assert not [e for e in run.record.events if e.get("by") == "supervisor"]
    assert not [e for e in run.record.events if "supervisor" in str(e.get("detail", ""))]
