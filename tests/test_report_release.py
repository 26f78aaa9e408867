"""Reports a QA reviewer can sign without doubt (issue 17), through the CLI on the simulated bench:
simulated data is unmistakable, and a validity condition (overdue calibration) makes a PASS
"NOT VALID FOR RELEASE" everywhere the verdict appears.

One real run (delivery_check, 6 virtual minutes) on a station whose balance calibration was due
2020-01-31 and whose policy is "warn" feeds every test of this module.
"""

from __future__ import annotations

import datetime as _dt
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from tests.cli import run_rig

from rig.station.config import load_station

REPO = Path(__file__).resolve().parents[1]
CONDITION = "balance calibration overdue since 2020-01-31"


def rig(*args: Any, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real `rig` (tests/cli.py: fails on any traceback), wide enough for rich tables."""
    return run_rig(*map(str, args), env={"COLUMNS": "200", **(env or {})}, timeout=timeout)


@pytest.fixture(scope="module")
def overdue_run(tmp_path_factory: pytest.TempPathFactory, station_writer: Any) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("release")
    station = station_writer(root, set={"station.calibration_policy": "warn",
                                        "instruments.balance.calibration_due": _dt.date(2020, 1, 31)})
    proc = rig("run", "delivery_check", "--station", station, "--param", "duration_min=6", "--plain",
               "--operator", "T. Tester", "--answer", "item_serial=NE1000-SIM-0001", "--answer", "setup=done",
               env={"RIG_AUDIT_LOG": str(root / "audit.jsonl"), "RIG_LOCK_DIR": str(root / "locks")})
    run_dir = next(p for p in (root / "runs").iterdir() if p.is_dir())
    return {"proc": proc, "root": root, "station": station, "run_dir": run_dir, "bundle": run_dir / "report"}


def test_shipped_default_policy_is_block(tmp_path: Path) -> None:
    assert load_station(REPO / "rig.toml").calibration_policy == "block"
    text = (REPO / "rig.toml").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.startswith("calibration_policy")]
    bare = tmp_path / "rig.toml"
    bare.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert load_station(bare).calibration_policy == "block"  # the default when the key is absent


def test_run_exit_code_4_names_the_condition(overdue_run: dict[str, Any]) -> None:
    proc = overdue_run["proc"]
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "PASS: all 7 steps completed" in proc.stdout  # the outcome stays what was measured
    assert f"NOT VALID FOR RELEASE: {CONDITION}; simulated data" in proc.stdout


def test_results_json_carries_mode_clock_and_condition(overdue_run: dict[str, Any]) -> None:
    results = json.loads((overdue_run["bundle"] / "results.json").read_text(encoding="utf-8"))
    verdict, station = results["verdict"], results["station"]
    assert verdict["outcome"] == "PASS" and verdict["conditions"] == [CONDITION]
    assert verdict["valid_for_release"] is False and verdict["simulated"] is True
    assert verdict["release"] == f"NOT VALID FOR RELEASE: {CONDITION}; simulated data"
    assert (station["mode"], station["clock"], station["simulated"]) == ("sim", "virtual", True)
    assert results["clock"]["virtual"] is True
    models = {e["name"]: e["model"] for e in station["equipment"]}
    assert all(m.endswith("(simulated)") for m in models.values()), models
    manifest = json.loads((overdue_run["bundle"] / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["simulated"] is True and manifest["conditions"] == [CONDITION]


def test_html_banner_watermark_and_condition(overdue_run: dict[str, Any]) -> None:
    page = (overdue_run["bundle"] / "report.html").read_text(encoding="utf-8")
    head, body = page.split("<body>", 1)
    assert "<title>SIMULATED · PASS · NOT VALID FOR RELEASE" in head
    # the banner comes before anything else in the body; the watermark is position: fixed (every page)
    assert body.index('id="simulated"') < body.index('id="verdict"') < body.index('id="release"')
    assert '<div class="watermark" aria-hidden="true">SIMULATED</div>' in body
    assert ".watermark { position: fixed;" in head
    assert f'<div class="release" id="release">NOT VALID FOR RELEASE: {CONDITION}; simulated data</div>' in body


def test_junit_properties(overdue_run: dict[str, Any]) -> None:
    root = ET.parse(overdue_run["bundle"] / "junit.xml").getroot()
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert (props["station.mode"], props["clock"], props["simulated"]) == ("sim", "virtual", "yes")
    assert props["valid_for_release"] == "no" and CONDITION in props["release"]
    assert root.get("name").endswith("SIMULATED")


def test_rig_show_prints_simulated_and_condition_exit_4(overdue_run: dict[str, Any]) -> None:
    shown = rig("show", overdue_run["run_dir"])
    assert shown.returncode == 4, shown.stdout + shown.stderr
    assert "SIMULATED: data from the simulated bench" in shown.stdout
    assert f"NOT VALID FOR RELEASE: {CONDITION}" in shown.stdout
    as_json = json.loads(rig("show", overdue_run["run_dir"], "--json").stdout)
    assert as_json["simulated"] is True and as_json["conditions"] == [CONDITION]


def test_verify_names_run_and_simulated_and_require_hardware_rejects(overdue_run: dict[str, Any]) -> None:
    bundle = overdue_run["bundle"]
    ok = rig("report", "verify", bundle, "--allow-unsigned")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"run {overdue_run['run_dir'].name}" in ok.stdout and "SIMULATED" in ok.stdout
    assert "NOT VALID FOR RELEASE" in ok.stdout
    data = json.loads(rig("report", "verify", bundle, "--allow-unsigned", "--json").stdout)
    assert data["run_id"] == overdue_run["run_dir"].name and data["simulated"] is True
    assert data["conditions"] == [CONDITION]
    hard = rig("report", "verify", bundle, "--allow-unsigned", "--require-hardware")
    assert hard.returncode == 1
    assert "simulated data (station mode sim, clock virtual): --require-hardware" in hard.stdout
    shown = rig("report", "show", bundle)
    assert shown.returncode == 4 and "NOT VALID FOR RELEASE" in shown.stdout


def test_history_rows_carry_release_and_filter(overdue_run: dict[str, Any], tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'history.sqlite'}"
    imported = rig("history", "--db", db, "--import", overdue_run["bundle"], "--allow-unsigned")
    assert imported.returncode == 0, imported.stderr
    listed = json.loads(rig("history", "--db", db, "--json").stdout)["runs"]
    assert len(listed) == 1 and listed[0]["simulated"] is True
    assert listed[0]["release"] == f"NOT VALID FOR RELEASE: {CONDITION}; simulated data"
    assert len(json.loads(rig("history", "--db", db, "--json", "--not-valid").stdout)["runs"]) == 1
    assert json.loads(rig("history", "--db", db, "--json", "--valid").stdout)["runs"] == []
    assert json.loads(rig("history", "--db", db, "--json", "--hardware").stdout)["runs"] == []
    table = rig("history", "--db", db)
    assert "SIMULATED" in table.stdout and "NOT VALID FOR RELEASE" in table.stdout
