"""One owner per bench (rig.station.lock): the station lock, stale locks, the simulated bench's
claim and serial-port flocks — through the real `rig` command on the simulated bench.

The two-controller test holds the first `rig run` mid-run at its set-up question (stdin is a
pseudo-terminal on which the answer is typed only after the others were refused), so they meet it
while it holds the station and the bench whatever the machine's load, then lets it finish a short
delivery.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from instruments.sim.launcher import SimProcess, start_sim
from reports.audit import verify_log
from rig.record import read_record
from rig.station.config import load_station
from rig.station.lock import (
    DeviceLock,
    Holder,
    StationBusy,
    StationLock,
    boot_id,
    lock_path,
    process_start,
    read_holder,
)
from tests.cli import assert_no_traceback, run_rig, start_rig, wait_for_step

SERIAL = ("--answer", "item_serial=NE1000-SIM-0001")
ANSWERS = (*SERIAL, "--answer", "setup=done")
LONG_RUN = ("--param", "rate_ml_h=2", "--param", "duration_min=1440", "--param", "sample_interval_s=30",
            "--no-report")  # 2 880 balance readings: still running when it is killed mid-delivery
SHORT_RUN = ("--param", "rate_ml_h=2", "--param", "duration_min=20", "--no-report")


@pytest.fixture
def served(tmp_path: Path, station_file: Any) -> Iterator[tuple[SimProcess, Path]]:
    """A running `rig sim serve` (virtual time) and a station file attached to it."""
    sim = start_sim(station_file(name="served.toml"), timeout_s=60)
    try:
        yield sim, station_file(name="attach.toml", set={"sim.attach": str(sim.resources_path)})
    finally:
        sim.stop()


# -- the lock itself -----------------------------------------------------------------------------


def test_second_holder_is_refused_naming_the_first(station_file: Any, station_lock_dir: Path) -> None:
    station = load_station(station_file())
    with StationLock.acquire(station, owner="rig run delivery_check", run_id="RUN-1") as lock:
        assert read_holder(station.id) == lock.holder
        with pytest.raises(StationBusy) as refused:
            StationLock.take(station, owner="rig check")
        message = str(refused.value)
        for part in (f"station {station.id} is in use by 'rig run delivery_check'", f"pid {os.getpid()}",
                     f"host {socket.gethostname()}", "run RUN-1", f"since {lock.holder.since_utc}"):
            assert part in message
        assert refused.value.exit_code == 2
        lock.update(run_id="RUN-2")
        assert read_holder(station.id).run_id == "RUN-2"
    assert lock_path(station.id).read_text() == ""  # a clean release names nobody
    with StationLock.acquire(station, owner="rig check") as again:
        assert again.took_over is None


def _left_by(station: Any, **changes: Any) -> Holder:
    """A lock file as a holder that never released it would have left it."""
    holder = Holder(station=station.id, station_file=str(station.path), host=socket.gethostname(), user="tech",
                    pid=os.getpid(), command="rig run soak", run_id="OLD-RUN", since_utc="2026-01-01T00:00:00Z",
                    boot_id=boot_id(), process_start=process_start(os.getpid()))
    holder = Holder(**{**holder.as_dict(), **changes})
    path = lock_path(station.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(holder.as_dict()))
    return holder


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.mark.parametrize(("changes", "reason"), [
    ({"pid": "dead"}, "is no longer running (killed or crashed)"),
    ({"boot_id": "another-boot"}, "this machine has restarted since (reboot or power loss)"),
    ({"process_start": "1"}, "now belongs to another process"),
], ids=["dead-pid", "rebooted", "pid-reused"])
def test_a_stale_lock_is_taken_over_and_says_why(station_file: Any, changes: dict[str, Any], reason: str) -> None:
    station = load_station(station_file())
    if changes.get("pid") == "dead":
        changes = {"pid": _dead_pid()}
    old = _left_by(station, **changes)
    with StationLock.acquire(station, owner="rig run delivery_check") as lock:
        assert lock.took_over == old
        assert reason in lock.stale_reason
        assert "took over the station lock of 'rig run soak'" in lock.takeover_note()


def test_a_named_holder_that_still_runs_is_refused_even_without_its_kernel_lock(station_file: Any) -> None:
    station = load_station(station_file())
    _left_by(station)  # this very process, same start time: alive, though it holds no flock
    with pytest.raises(StationBusy, match="that process still runs although its lock"):
        StationLock.take(station, owner="rig check")


def test_serial_device_node_is_flocked_while_a_bench_holds_it(sim_server: Any) -> None:
    port = Path(next(iter(sim_server.resources()["serial_ports"].values())))
    first = DeviceLock("pump", port)
    try:
        assert first.held
        with pytest.raises(StationBusy, match=rf"instruments.pump: serial port {port} is in use by pid {os.getpid()}"):
            DeviceLock("pump", port)
    finally:
        first.release()
    second = DeviceLock("pump", port)
    assert second.held
    second.release()


# -- through the command line --------------------------------------------------------------------


def test_second_rig_run_on_one_attached_bench_is_refused_and_the_first_passes(
        served: tuple[SimProcess, Path], tmp_path: Path, station_file: Any) -> None:
    sim, station = served
    terminal, typed_on = os.openpty()  # the first run's operator types the set-up answer here, later
    try:
        first = start_rig("run", "delivery_check", "--station", str(station), "--out", str(tmp_path / "a"),
                          *SERIAL, *SHORT_RUN, stdin=typed_on)
    finally:
        os.close(typed_on)
    try:
        run_dir = wait_for_step(tmp_path / "a", "setup", first)  # holding the station and the bench, asking
        second, third = _the_other_two(sim, station, tmp_path, station_file)
        still_running = first.poll() is None
        os.write(terminal, b"done\n")
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
        os.close(terminal)
    assert_no_traceback(out, err)
    assert still_running, "the first run ended before the others tried: the test proved nothing"

    assert second.returncode == 2, second.stderr
    assert (f"station SIM-BENCH-01 is in use by 'rig run delivery_check' (pid {first.pid} on host "
            f"{socket.gethostname()}") in second.stderr
    assert f"run {run_dir.name}) since 20" in second.stderr
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").glob("*/record.jsonl"))

    assert third.returncode == 2, third.stderr
    assert f"the simulated bench at {sim.resources_path}: the simulated bench is in use by another " \
           f"controller: 'rig run delivery_check' (pid {first.pid}" in third.stderr
    assert not any((tmp_path / "c").glob("*/record.jsonl"))

    assert first.returncode == 0, out + err
    record = read_record(run_dir)
    assert record.outcome == "PASS"
    assert "deliver" in [e["step"] for e in record.of_type("step_started")]  # answered, it went on to deliver
    assert [e for e in record.of_type("event") if e.get("kind") != "interlock"] == []
    lock = record.of_type("run_started")[0]["station"]["lock"]
    assert lock["holder"]["pid"] == first.pid and lock["holder"]["run_id"] == run_dir.name
    assert lock["took_over"] is None


def _the_other_two(sim: SimProcess, station: Path, tmp_path: Path,
                   station_file: Any) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """While the first run holds: a second `rig run` on the same station file, and a third on
    another station file (other id, so another station lock) attached to the same bench: the
    simulated bench itself refuses that one."""
    second = run_rig("run", "delivery_check", "--station", str(station), "--out", str(tmp_path / "b"),
                     *ANSWERS, *SHORT_RUN)
    other = station_file(name="other.toml", set={"sim.attach": str(sim.resources_path), "station.id": "sim-other"})
    third = run_rig("run", "delivery_check", "--station", str(other), "--out", str(tmp_path / "c"),
                    *ANSWERS, *SHORT_RUN)
    return second, third


def test_stale_lock_after_kill_9_is_taken_over_and_recorded(tmp_path: Path, station_file: Any) -> None:
    station = station_file()
    victim = start_rig("run", "delivery_check", "--station", str(station), "--out", str(tmp_path / "runs"),
                       *ANSWERS, *LONG_RUN)
    dead_run = wait_for_step(tmp_path / "runs", "deliver", victim)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=30)
    left = read_holder("SIM-BENCH-01")
    assert left is not None and left.pid == victim.pid and left.run_id == dead_run.name

    after = run_rig("run", "delivery_check", "--station", str(station), "--out", str(tmp_path / "runs"),
                    *ANSWERS, *SHORT_RUN)
    assert after.returncode == 0, after.stdout + after.stderr
    assert (f"rig: warning: took over the station lock of 'rig run delivery_check' (pid {victim.pid} on host "
            f"{socket.gethostname()}") in after.stderr
    assert f"process {victim.pid} is no longer running (killed or crashed)" in after.stderr
    new_run = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir() and p != dead_run)
    lock = read_record(new_run).of_type("run_started")[0]["station"]["lock"]
    assert lock["took_over"]["pid"] == victim.pid and lock["took_over"]["run_id"] == dead_run.name
    assert "no longer running" in lock["stale_reason"]
    audit = tmp_path / "runs" / "audit.jsonl"
    kinds = [json.loads(line)["kind"] for line in audit.read_text().splitlines()]
    assert "station_lock_taken_over" in kinds
    assert verify_log(audit).ok
    assert read_holder("SIM-BENCH-01") is None  # released cleanly this time


def test_rig_check_is_refused_while_a_run_holds_the_station(station_file: Any) -> None:
    station = load_station(station_file())
    with StationLock.acquire(station, owner="rig nightly nightly", run_id="NIGHTLY-7"):
        proc = run_rig("check", "--station", str(station.path))
    assert proc.returncode == 2
    assert "station SIM-BENCH-01 is in use by 'rig nightly nightly'" in proc.stderr and "run NIGHTLY-7" in proc.stderr
    assert proc.stdout == ""  # refused before the bench was started


def test_the_record_says_which_resource_locks_were_held(served: tuple[SimProcess, Path]) -> None:
    from rig.station.bench import Bench

    _, station_path = served
    station = load_station(station_path)
    with StationLock.acquire(station, owner="test") as lock, Bench.open(station, lock=lock) as bench:
        snap = bench.snapshot()
        with pytest.raises(StationBusy, match="the simulated bench is in use by another controller: 'test'"):
            Bench.open(station)  # no station lock of its own: the simulated bench's claim refuses it
    pump = snap["instruments"]["pump"]
    assert pump["device_lock"]["held"] is True and pump["device_lock"]["path"].startswith("/dev/pts/")
    # pyvisa-py has no VISA locks: the record says so rather than claiming one
    assert pump["visa_exclusive_lock"] == "not supported by this VISA backend (VI_ERROR_NSUP_OPER)"
    assert snap["lock"]["holder"]["command"] == "test"
