"""Last-line safety: the whole controller freezes mid-delivery; the NE-1000 stops itself.

SIGSTOP freezes the `rig run` process group AND its safe-state supervisor (as a dead controller
machine would: nothing of ours runs any more). The pump's own communications watchdog (Safe mode,
``SAF``) must stop it within the watchdog time + 1 s; that is checked on the emulator's own state
through the simulated bench's control channel (the bench runs in its own process, attached).
SIGCONT: the controller notices the watchdog alarm, records it and ends the run ERROR with the
safe state read back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from instruments.sim.launcher import SimProcess
from rig.record import read_record
from test_runner_signals import bench, pump_state, wait_for_step  # noqa: F401 - bench is a fixture

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
WATCHDOG_S = 10  # the shipped default (instruments.ne1000.DEFAULT_WATCHDOG_S)


def supervisor_of(proc: subprocess.Popen[str]) -> psutil.Process:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:
                if "rig.engine.supervisor" in " ".join(child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.05)
    raise AssertionError("the safe-state supervisor did not start")


def test_frozen_controller_the_pump_stops_itself_then_the_run_ends_error(
    bench: tuple[SimProcess, Path], tmp_path: Path
) -> None:
    sim, station = bench
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "rig", "run", "delivery_check", "--station", str(station), "--out", str(tmp_path),
           "--answer", "item_serial=NE1000-SIM-0001", "--answer", "setup=done", "--no-report",
           "--param", "rate_ml_h=2", "--param", "duration_min=5", "--param", "sample_interval_s=1"]
    # Its own process group, so the whole controller can be frozen without freezing pytest.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            stdin=subprocess.DEVNULL, cwd=REPO, start_new_session=True)
    frozen: list[int] = []
    try:
        run_dir = wait_for_step(tmp_path, "deliver", proc)
        supervisor = supervisor_of(proc)
        time.sleep(0.5)
        before = pump_state(sim)["instruments"]["pump"]
        assert before["running"] is True and before["comms_mode"] == "safe"
        assert before["safe_timeout_s"] == WATCHDOG_S and before["watchdog_armed"] is True

        os.killpg(proc.pid, signal.SIGSTOP)
        os.kill(supervisor.pid, signal.SIGSTOP)
        frozen = [proc.pid, supervisor.pid]
        stopped_at = time.monotonic()
        while time.monotonic() - stopped_at < WATCHDOG_S + 10:  # generous: the verdict is below
            state = pump_state(sim)
            if not state["instruments"]["pump"]["running"]:
                break
            time.sleep(0.05)
        observed_delay_s = time.monotonic() - stopped_at
        state = pump_state(sim)  # again: one state reply takes the model before the instruments
        pump = state["instruments"]["pump"]
        assert pump["running"] is False and pump["alarm"] == "timeout", pump
        assert state["model"]["pump"]["stopped_by"] == "comms_watchdog"
        # The emulator's own measure: silence since the last valid packet when it stopped the pump.
        assert WATCHDOG_S <= pump["watchdog_tripped_after_s"] <= WATCHDOG_S + 1.0, pump
        print(f"\npump stopped {observed_delay_s:.2f} s after SIGSTOP "
              f"(emulator: {pump['watchdog_tripped_after_s']:.2f} s after the last valid packet)")

        os.killpg(proc.pid, signal.SIGCONT)
        os.kill(supervisor.pid, signal.SIGCONT)
        frozen = []
        out, err = proc.communicate(timeout=60)
    finally:
        for pid in frozen:
            try:
                os.killpg(pid, signal.SIGCONT) if pid == proc.pid else os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 3, out + err
    assert "Traceback" not in err
    record = read_record(run_dir)
    assert record.outcome == "ERROR", record.reason
    assert "communications watchdog" in record.reason
    events = [e for e in record.of_type("event") if e.get("kind") == "pump_watchdog"]
    assert events and "stopped the pump" in events[0]["detail"]
    safe = record.of_type("safe_state")[0]
    assert safe["confirmed"] is True and safe["instruments"]["pump"]["running"] is False
    after = pump_state(sim)["instruments"]["pump"]
    assert after["running"] is False and after["alarm"] is None  # acknowledged by the controller
    assert after["comms_mode"] == "basic"  # the controller closed the pump: back to Basic mode
