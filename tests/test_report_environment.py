"""Issue 17, validity conditions: an unstable or out-of-limits lab environment, when recorded.

The station file states the lab's conditions (``[environment]``: temperature and humidity limits,
the file the lab's environment logger writes its latest reading to); the runner records a reading
at the start and at the end of every run. A reading outside the limits, one that cannot be taken,
or a drift between start and end beyond what the station allows makes the verdict NOT VALID FOR
RELEASE (exit 4), with the outcome still what was measured. Through the CLI on the simulated bench.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from reports.environment import conditions
from rig.errors import ConfigError
from rig.station.config import load_station
from tests.cli import run_rig
from tests.test_runner_sim import run_on_sim

LIMITS = {"environment.temperature_c": [18.0, 25.0], "environment.humidity_pct": [30.0, 70.0],
          "environment.max_temperature_change_c": 1.0}


def rig(*args: Any, root: Path) -> subprocess.CompletedProcess[str]:
    return run_rig(*map(str, args), env={"COLUMNS": "200", "RIG_AUDIT_LOG": str(root / "audit.jsonl")})


def lab_station(root: Path, station_writer: Any, reading: dict | None) -> Path:
    readings = root / "ambient.json"
    if reading is not None:
        readings.write_text(json.dumps(reading), encoding="utf-8")
    return station_writer(root, set={**LIMITS, "environment.readings": str(readings)})


def run(root: Path, station: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    proc = rig("run", "delivery_check", "--station", station, "--param", "duration_min=6", "--plain",
               "--operator", "T. Tester", "--answer", "item_serial=NE1000-SIM-0001", "--answer", "setup=done", root=root)
    return proc, next(p for p in (root / "runs").iterdir() if p.is_dir())


def test_a_lab_out_of_its_stated_conditions_makes_the_pass_not_valid_for_release(tmp_path: Path, station_writer: Any) -> None:
    station = lab_station(tmp_path, station_writer, {"temperature_c": 27.5, "humidity_pct": 45})
    proc, run_dir = run(tmp_path, station)
    condition = "lab temperature 27.5 °C at run start outside the station's limits 18–25 °C"
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout and condition in proc.stdout
    results = json.loads((run_dir / "report" / "results.json").read_text())
    assert results["verdict"]["outcome"] == "PASS" and not results["verdict"]["valid_for_release"]
    assert condition in results["verdict"]["conditions"]
    assert "lab temperature 27.5 °C at run end outside the station's limits 18–25 °C" in results["verdict"]["conditions"]
    assert [(e["when"], e["readings"]) for e in results["environment"]] == [
        ("start", {"temperature_c": 27.5, "humidity_pct": 45.0}), ("end", {"temperature_c": 27.5, "humidity_pct": 45.0})]
    shown = rig("show", run_dir, root=tmp_path)
    assert shown.returncode == 4 and condition in " ".join(shown.stdout.split())
    bundle = rig("report", "show", run_dir / "report", root=tmp_path)
    assert bundle.returncode == 4 and condition in " ".join(bundle.stdout.split())
    assert condition in (run_dir / "report" / "junit.xml").read_text(encoding="utf-8")
    page = (run_dir / "report" / "report.html").read_text(encoding="utf-8")
    assert '<section id="environment">' in page and "27.5" in page and "18.0–25.0 °C, drift ≤ 1.0 °C; 30.0–70.0 %RH" in page


def test_within_its_conditions_the_lab_adds_no_condition(tmp_path: Path, station_writer: Any) -> None:
    station = lab_station(tmp_path, station_writer, {"temperature_c": 21.0, "humidity_pct": 45})
    proc, run_dir = run(tmp_path, station)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # simulated data alone keeps exit 0
    results = json.loads((run_dir / "report" / "results.json").read_text())
    assert results["verdict"]["conditions"] == [] and len(results["environment"]) == 2


def test_a_reading_that_cannot_be_taken_is_an_unknown_environment(tmp_path: Path, station_writer: Any) -> None:
    station = lab_station(tmp_path, station_writer, None)  # the logger never wrote its file
    proc, _ = run(tmp_path, station)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert f"lab environment unknown at run start: {tmp_path / 'ambient.json'}: No such file or directory" in proc.stdout


def test_a_stale_reading_is_an_unknown_environment(tmp_path: Path, station_writer: Any) -> None:
    station = lab_station(tmp_path, station_writer, {"temperature_c": 21.0, "humidity_pct": 45,
                                                     "t_utc": "2020-01-01T00:00:00Z"})
    proc, _ = run(tmp_path, station)
    assert proc.returncode == 4 and "min old" in proc.stdout and "the environment logger has stopped" in proc.stdout


def test_a_lab_that_drifts_during_the_run_is_unstable(tmp_path: Path, station_writer: Any) -> None:
    """The logger's reading changes by 2 °C while the pump delivers (the station allows 1 °C)."""
    station = lab_station(tmp_path, station_writer, {"temperature_c": 20.0, "humidity_pct": 45})
    warmer = lambda sim: (tmp_path / "ambient.json").write_text(json.dumps({"temperature_c": 22.0, "humidity_pct": 45}))  # noqa: E731
    result, record, _ = run_on_sim(station, tmp_path, params=["duration_min=6"], at_step=("deliver", warmer))
    assert result.outcome == "PASS", result.reason
    found = conditions(record.of_type("environment"))
    assert found == ["unstable environment: lab temperature changed +2 °C during the run (from 20 to 22; "
                     "the station allows 1 °C)"]


def test_the_environment_section_is_checked(tmp_path: Path, station_writer: Any) -> None:
    bad = station_writer(tmp_path, set={"environment.temperature_c": [25.0, 18.0], "environment.readings": "a.json"})
    with pytest.raises(ConfigError, match=r"environment.temperature_c.*low < high"):
        load_station(bad)
    no_limits = station_writer(tmp_path, name="n.toml", set={"environment.readings": "a.json"})
    with pytest.raises(ConfigError, match="states no limits"):
        load_station(no_limits)
    no_file = station_writer(tmp_path, name="f.toml", set={"environment.temperature_c": [18.0, 25.0]})
    with pytest.raises(ConfigError, match="environment.readings"):
        load_station(no_file)
