"""The display never decides the outcome: `| head -1`, a hang-up (SIGHUP) and a tiny terminal,
through the real `rig` command on the simulated bench; `rig attach` gets the live view back.

Runs use virtual time. The hang-up test sends SIGHUP once the record shows the delivery step (a
3-hour delivery in virtual time lasts several seconds of wall time, so the run is mid-delivery).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from rig.engine.display import RunInfo
from rig.record import read_record
from tests.cli import REPO, assert_no_traceback, rig_env, run_rig, start_rig, wait_for_step

ANSWERS = ("--answer", "item_serial=NE1000-SIM-0001", "--answer", "setup=done")
SHORT = ("--param", "rate_ml_h=2", "--param", "duration_min=20", "--no-report")
LONG = ("--param", "rate_ml_h=2", "--param", "duration_min=180", "--no-report")


def _only_run(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_piping_into_head_does_not_change_the_outcome(tmp_path: Path, station_file: Any) -> None:
    station = station_file()
    script = (f'"{sys.executable}" -m rig run delivery_check --station "{station}" --out "{tmp_path / "runs"}" '
              f'{" ".join(ANSWERS + SHORT)} 2>"{tmp_path / "stderr.txt"}" | head -1; '
              'echo "rig exit ${PIPESTATUS[0]}"')
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                          env=rig_env(), cwd=REPO)
    stderr = (tmp_path / "stderr.txt").read_text()
    assert_no_traceback(done.stdout, stderr)
    assert stderr == ""  # not even "Exception ignored ... BrokenPipeError"
    first, exit_line = done.stdout.splitlines()
    assert " run " in first and "delivery_check" in first
    assert exit_line == "rig exit 0"
    record = read_record(_only_run(tmp_path / "runs"))
    assert (record.outcome, record.reason) == ("PASS", "all 7 steps completed; all 3 measurement(s) within limits")


def test_hang_up_leaves_the_run_going_and_rig_attach_follows_it(tmp_path: Path, station_file: Any) -> None:
    station = station_file()
    out = tmp_path / "runs"
    proc = start_rig("run", "delivery_check", "--station", str(station), "--out", str(out), *ANSWERS, *LONG)
    run_dir = wait_for_step(out, "deliver", proc)
    os.kill(proc.pid, signal.SIGHUP)
    attached = run_rig("attach", str(run_dir), "--plain", timeout=180)
    stdout, stderr = proc.communicate(timeout=180)
    assert_no_traceback(stdout, stderr)
    assert proc.returncode == 0, stdout + stderr
    record = read_record(run_dir)
    assert record.outcome == "PASS"
    warnings = [e["detail"] for e in record.of_type("event") if e["kind"] == "warning"]
    assert warnings == [f"the terminal hung up (SIGHUP): the run continues detached; follow it with "
                        f"`rig attach {run_dir.name}`, stop it with `kill -INT {proc.pid}`"]
    assert record.of_type("safe_state")[0]["confirmed"] is True
    # `rig attach` replayed what had happened, followed the rest, and ended with the outcome
    assert attached.returncode == 0, attached.stdout + attached.stderr
    lines = attached.stdout.splitlines()
    assert any("step 4/7 deliver: started" in line for line in lines)
    assert any("warning: the terminal hung up (SIGHUP)" in line for line in lines)
    assert "OUTCOME PASS: all 7 steps completed" in lines[-1]


def test_rig_attach_to_a_killed_run_says_incomplete(tmp_path: Path, station_file: Any) -> None:
    station = station_file()
    out = tmp_path / "runs"
    proc = start_rig("run", "delivery_check", "--station", str(station), "--out", str(out), *ANSWERS, *LONG)
    run_dir = wait_for_step(out, "deliver", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    attached = run_rig("attach", str(run_dir), "--plain", timeout=60)
    assert attached.returncode == 3
    assert "OUTCOME INCOMPLETE: the controller of this run is gone" in attached.stdout


# -- the live panel ------------------------------------------------------------------------------


def _busy_panel(width: int, height: int) -> str:
    """The rich panel mid-run with many results and alarms, rendered as a terminal would."""
    from rich.console import Console

    from rig.cli.live_display import RichDisplay

    def terminal(file: io.StringIO) -> Console:
        return Console(file=file, width=width, height=height, force_terminal=True, color_system=None)

    display = RichDisplay(console=terminal(io.StringIO()))  # event lines go there, above the panel
    display.state.info = RunInfo("RUN-1", "leak 1.0.0", "Leak detection", "SIM-BENCH-01", "tech",
                                 [("setup", 0.0), ("prepare", 600.0), ("leak", 1800.0)], True, "x")
    display.step_started(2, "leak", 600.0)
    display.tick(900.0, 12.0, None)
    display.live("pressure_upstream_kpa", 151.0, "kPa", None, 120.0)
    display.live("pressure_downstream_kpa", 12.5, "kPa", None, 120.0)
    display.live("flow_ul_min", 8.33, "uL/min")
    for i in range(20):
        display.measurement({"name": f"m{i}", "value": 1.0 + i, "unit": "mL", "low": 0.5, "high": 30.0,
                             "outcome": "pass"})
    for i in range(8):
        display.event("warning", f"warning number {i}")
    display.event("detector", "leak alarm at t = 898.0 s: ratio 0.61")
    screen = io.StringIO()
    terminal(screen).print(display.__rich__())
    return screen.getvalue()


def test_live_panel_fits_80x24_with_what_matters_visible() -> None:
    text = _busy_panel(80, 24)
    lines = text.rstrip("\n").splitlines()
    assert len(lines) <= 23, text  # one line left for the cursor
    assert all(len(line) <= 80 for line in lines)
    for needle in ("Step      3/3  leak", "Progress", "Remaining 25:00 proc (virtual)",
                   "pressure_upstream_kpa = 151 kPa [..120] OUT OF LIMITS", "flow_ul_min = 8.33 uL/min",
                   "detector: leak alarm at t = 898.0 s", "PASS m19 = 20 mL [0.5..30]",
                   "Measurements (20, "):
        assert needle in text, (needle, text)


def test_live_panel_on_a_tiny_terminal_keeps_the_step_and_time_left() -> None:
    text = _busy_panel(40, 10)
    lines = text.rstrip("\n").splitlines()
    assert len(lines) <= 10, text
    assert "Step" in text and "Remaining" in text


def test_remaining_is_zero_once_finished_even_when_the_last_step_ended_early() -> None:
    from rig.engine.display import Display

    display = Display()
    display.start(RunInfo("R", "leak 1.0.0", "", "S", "op", [("prepare", 60.0), ("leak", 1800.0)], True, "x"))
    display.step_started(1, "leak", 60.0)
    display.tick(120.0, 1.0)
    assert display.remaining_proc_s() == 1740.0
    display.step_finished(1, "leak", "done")  # the alarm came after 1 min of a 30-min budget
    assert display.remaining_proc_s() == 0.0
    display.finish("PASS", "ok")
    assert display.remaining_proc_s() == 0.0 and display.progress() == 1.0
