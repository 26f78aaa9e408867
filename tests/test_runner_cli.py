"""`rig run`, `rig list`, `rig show` as a user meets them: exit codes and the exact messages.

Everything that is wrong with the request exits 2 before the bench is touched; one real run goes
through the production path (the command starts its own simulated bench) end to end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rig.record import read_record
from tests.cli import run_rig

REPO = Path(__file__).resolve().parents[1]
ANSWERS = ["--answer", "item_serial=NE1000-SIM-0001", "--answer", "setup=done"]


def rig(*args: str, timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real `rig` process (its own interpreter, stdin not a terminal); fails on a traceback."""
    return run_rig(*args, timeout=timeout, cwd=cwd, env={"COLUMNS": "200"})


@pytest.fixture
def rig_main(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The same CLI in-process (cheaper): exit code and captured output, stdin not a terminal."""
    from rig.cli.main import main

    monkeypatch.delenv("RIG_STATION", raising=False)
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "stdin", open(os.devnull))

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse --help / usage
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return call


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["rate_ml_h=-1"], "parameter rate_ml_h: -1 is out of range; allowed: a number from 0.05 to 10 mL/h"),
        (["rate_ml_h=NaN"], "parameter rate_ml_h: 'NaN' is not a number; allowed: a number from 0.05 to 10 mL/h"),
        (["rate_ml_h=fast"], "parameter rate_ml_h: 'fast' is not a number"),
        (["rate_ml_h=1mL/min"], "parameter rate_ml_h: unit 'mL/min' is not accepted; give the value in mL/h"),
        (["speed=1"], "unknown parameter 'speed' for procedure delivery_check"),
        (["duration_min=1", "rate_ml_h=1"], "rate_ml_h × duration_min gives 0.0167 mL"),
    ],
)
def test_bad_parameters_exit_2_naming_the_parameter(params: list[str], message: str, tmp_path: Path, rig_main: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    args = [a for p in params for a in ("--param", p)]
    proc = rig_main("run", "delivery_check", *args, *ANSWERS, "--out", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing was started, no record


def test_bad_station_file_exits_2_listing_the_problem(station_file: Callable[..., Path], tmp_path: Path, rig_main: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    station = station_file(set={"station.clock": "sometimes"})
    proc = rig_main("run", "delivery_check", "--station", str(station), *ANSWERS)
    assert proc.returncode == 2
    assert "station.clock" in proc.stderr and "sometimes" in proc.stderr
    missing = rig_main("run", "delivery_check", "--station", str(tmp_path / "nope.toml"), *ANSWERS)
    assert missing.returncode == 2
    assert "nope.toml is invalid" in missing.stderr and "file not found" in missing.stderr


def test_overdue_calibration_with_block_policy_refuses_to_start(station_file: Callable[..., Path], rig_main: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    station = station_file(set={"station.calibration_policy": "block",
                                "instruments.balance.calibration_due": __import__("datetime").date(2020, 1, 31)})
    proc = rig_main("run", "delivery_check", "--station", str(station), *ANSWERS)
    assert proc.returncode == 2
    assert ("calibration overdue: instruments.balance (serial B123456789) was due 2020-01-31; "
            "station calibration_policy = \"block\" refuses to start") in proc.stderr


def test_unattended_run_without_answers_refuses_naming_the_step(tmp_path: Path, rig_main: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    proc = rig_main("run", "delivery_check", "--answer", "item_serial=SN1", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert ("operator step 'setup' ('Prime the line and place the catheter outlet in the weighing vessel "
            "on the balance; close the draft shield.') needs an answer, and this run is unattended") in proc.stderr


def test_answers_file_is_checked_before_the_bench_is_touched(tmp_path: Path, rig_main: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    answers = tmp_path / "answers.toml"
    answers.write_text('item_serial = "SN1"\nprime = "done"\n')
    proc = rig_main("run", "delivery_check", "--answers", str(answers), "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2
    assert "answer given for 'prime', but procedure delivery_check has no operator step of that name" in proc.stderr
    answers.write_text('item_serial = "bad serial!"\nsetup = "done"\n')
    proc = rig_main("run", "delivery_check", "--answers", str(answers), "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2 and "answer for operator step 'item_serial'" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_unknown_procedure_and_help(rig_main: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    proc = rig_main("run", "flow_acuracy_typo")
    assert proc.returncode == 2 and "unknown procedure 'flow_acuracy_typo'" in proc.stderr
    for command in ("run", "list", "show"):
        helped = rig_main(command, "--help")
        assert helped.returncode == 0 and "exit codes:" in helped.stdout


def test_list_shows_id_version_requirements_parameters(rig_main: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    proc = rig_main("list", "--json")
    data = json.loads(proc.stdout)
    demo = next(p for p in data["procedures"] if p["id"] == "delivery_check")
    assert demo["version"] == "1.0.0" and "REQ-DEL-001" in demo["requirements"]
    rate = next(p for p in demo["parameters"] if p["name"] == "rate_ml_h")
    assert (rate["unit"], rate["default"], rate["low"], rate["high"]) == ("mL/h", 1.0, 0.05, 10.0)
    table = rig_main("list")
    assert "delivery_check" in table.stdout and "rate_ml_h = 1 mL/h (0.05..10)" in table.stdout


@pytest.mark.slow
def test_full_run_through_the_cli_passes_and_shows(station_file: Callable[..., Path], tmp_path: Path) -> None:
    station = station_file(without=("dmm",))
    proc = rig("run", "delivery_check", "--station", str(station), *ANSWERS, "--operator", "Ann Tech",
               "--param", "duration_min=6", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS: all 7 steps completed" in proc.stdout
    record_line = next(line for line in proc.stdout.splitlines() if line.startswith("record: "))
    run_dir = Path(record_line.removeprefix("record: ")).parent
    assert run_dir.parent == tmp_path / "runs"  # the station's runs_dir, next to the station file
    record = read_record(run_dir)
    assert record.outcome == "PASS" and record.started["operator"] == "Ann Tech"
    assert record.started["parameters"]["duration_min"] == {"value": 6.0, "unit": "min", "source": "command line",
                                                            "description": "delivery time"}
    # plain lines, because stdout is not a terminal
    assert "step 4/7 deliver: started" in proc.stdout
    shown = rig("show", run_dir.name, "--station", str(station))
    assert shown.returncode == 0
    assert "OUTCOME: PASS" in shown.stdout and "Item under test: item_serial = NE1000-SIM-0001" in shown.stdout
    assert "Safe state: confirmed" in shown.stdout


def test_show_reports_missing_and_corrupt_records(tmp_path: Path, rig_main: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    proc = rig_main("show", str(tmp_path / "nope"), "--station", str(REPO / "rig.toml"))
    assert proc.returncode == 2 and "no run" in proc.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "record.jsonl").write_text('{"type": "step_started"}\n')
    proc = rig_main("show", str(tmp_path / "bad"))
    assert proc.returncode == 2 and "does not start with a run_started event" in proc.stderr
