"""flow_accuracy: the IEC 60601-2-24 worked example through the procedure's analysis, parameter
refusals, and end-to-end runs on the simulated bench (healthy pump passes; a pump whose real
displacement is 20 % low fails the mean error)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import write_station
from procedure_runs import run_procedure

from procedures.flow_accuracy import analyse
from rig.cli.main import main

# r = 6 mL/h, S = 0.5 min, density 1: the standard's increments (mL = g)
WORKED_INCREMENTS = [0.050, 0.055, 0.045, 0.050, 0.060, 0.040, 0.050, 0.050, 0.052, 0.048, 0.050, 0.053]
SHORT_RUN = {"run_min": 62, "analysis_start_min": 31, "analysis_end_min": 62}


def test_worked_example_through_the_procedure_analysis() -> None:
    masses = [0.0]
    for dw in WORKED_INCREMENTS:
        masses.append(masses[-1] + dw)
    times = [30.0 * i for i in range(len(masses))]
    result = analyse(times, masses, rate_ml_h=6.0, sample_interval_min=0.5, start_s=0.0, run_min=6.0,
                     analysis_start_min=0.0, analysis_end_min=6.0, density_g_ml=1.0)
    assert result.mean_error_pct == pytest.approx(0.5, abs=1e-9)
    p2 = result.trumpet.point(2.0)
    assert p2.max_error_pct == pytest.approx(5.0, abs=1e-9)
    assert p2.min_error_pct == pytest.approx(-4.0, abs=1e-9)
    assert p2.windows == 9  # m = (T - P)/S + 1 = (6 - 2)/0.5 + 1


@pytest.mark.parametrize(("params", "expected"), [
    # 0.01 mL/h on a 0.1 mg balance: one 0.5-min sample is 0.08 digits; the check names an S
    ({"rate_ml_h": "0.01"}, "sample interval 0.5 min is too short at 0.01 mL/h"),
    ({"sample_interval_min": "2"}, "cannot form the trumpet windows P = 5, 11, 19, 31 min"),
    ({"analysis_end_min": "150"}, "analysis_end_min = 150 is after the end of the run"),
    ({"analysis_start_min": "100"}, "must hold the longest trumpet window P = 31 min"),
    ({"density_g_ml": "0.1"}, "density_g_ml = 0.1 g/mL"),
    ({"rate_ml_h": "50"}, "parameter rate_ml_h: 50 is out of range"),
])
def test_bad_parameters_are_refused_before_anything_moves(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          params: dict[str, str], expected: str) -> None:
    station = write_station(tmp_path)
    argv = ["run", "flow_accuracy", "--station", str(station), "--answer", "item_serial=NE1000-SIM-0001", "--answer", "setup=done"]
    for key, value in params.items():
        argv += ["--param", f"{key}={value}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # refused before a record was started


def test_too_short_interval_names_an_interval_that_would_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    station = write_station(tmp_path)
    assert main(["run", "flow_accuracy", "--station", str(station), "--param", "rate_ml_h=0.1"]) == 2
    err = capsys.readouterr().err
    assert "use S ≥ 3.01 min, e.g. 5 min" in err


def test_healthy_pump_passes_and_every_reading_is_recorded(tmp_path: Path) -> None:
    run = run_procedure(tmp_path, "flow_accuracy", SHORT_RUN)
    assert run.exit_code == 0, run.failed()
    assert run.outcome == "PASS"
    assert abs(run.value("flow.mean_error_pct")) < 1.0
    for p in (2, 5, 11, 19, 31):
        assert run.value(f"flow.trumpet.P{p}.max_pct") >= run.value(f"flow.trumpet.P{p}.min_pct")
    assert abs(run.value("flow.sensor_vs_balance_pct")) < 5.0
    with open(run.run_dir / "raw" / "balance.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["t_s", "mass_g"]
    # tare + start + one reading every 10 s for 62 min: every reading, not only the grid ones
    assert len(rows) - 1 >= 62 * 6
    assert float(rows[-1][1]) == pytest.approx(62 / 60 * 0.998, rel=0.02)


def test_pump_displacing_20_percent_low_fails_the_mean_error(tmp_path: Path) -> None:
    run = run_procedure(tmp_path, "flow_accuracy", SHORT_RUN,
                        fault=lambda sim: sim.pump(displacement_factor=0.8))
    assert run.exit_code == 1
    assert run.value("flow.mean_error_pct") == pytest.approx(-20.0, abs=1.0)
    assert "flow.mean_error_pct" in run.failed()
    # the flow sensor sees the same low flow as the balance: it still agrees
    assert "flow.sensor_vs_balance_pct" not in run.failed()
