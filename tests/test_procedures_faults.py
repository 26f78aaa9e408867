"""Fault procedures on the simulated bench: occlusion, kink, leak, disconnect. Each passes on a
healthy bench and fails the right measurement when its detector is disabled through the
station's [detection] table (the fault itself is always injected by the procedure, through the
DAQ valves)."""

from __future__ import annotations

from pathlib import Path

import pytest
from procedure_runs import run_procedure

# occlusion at 6 mL/h: the NE-1000 stalls near 100 kPa after C·ΔP/Q ≈ 10 min instead of an hour
OCCLUSION = {"rate_ml_h": 6, "baseline_min": 4, "max_wait_min": 15, "bolus_settle_min": 2}
DETECTOR_TIMES = ("occlusion.detector.time_to_alarm_min", "occlusion.detector.pressure_at_alarm_kpa")


def test_occlusion_pump_and_detector_alarms_and_bolus(tmp_path: Path) -> None:
    run = run_procedure(tmp_path, "occlusion", OCCLUSION)
    assert run.exit_code == 0, run.failed()
    # the stall comes where the line pressure reaches the pump's stall pressure (100 kPa)
    assert run.value("occlusion.pump.pressure_at_alarm_kpa") == pytest.approx(100.0, abs=5.0)
    assert run.value("occlusion.pump.time_to_alarm_min") == pytest.approx(0.010 * 98 / 6 * 60, rel=0.1)
    # the trend detector needs its 60 s persistence plus a short window, long before the pump
    assert 1.0 <= run.value("occlusion.detector.time_to_alarm_min") < 2.0
    assert run.value("occlusion.detector.pressure_at_alarm_kpa") < 20.0
    # stored volume C·ΔP ≈ 0.010 mL/kPa × ~98 kPa comes out on release
    assert run.value("occlusion.bolus_ml") == pytest.approx(0.98, rel=0.1)
    assert [e["alarm"] for e in run.events("pump_alarm")] == ["stall"]
    # every result carries its budget (latency in min, pressure in kPa, bolus in mL)
    for name, unit in (("occlusion.pump.time_to_alarm_min", "min"), ("occlusion.detector.pressure_at_alarm_kpa", "kPa"),
                       ("occlusion.bolus_ml", "mL")):
        u = run.measurements()[name]["uncertainty"]
        assert u["unit"] == unit and u["k"] == 2 and u["expanded"] > 0, name
    # the balance is read throughout (baseline, occlusion, release), not only at the ends
    times = sorted(float(line.split(",")[0]) for line in
                   (run.run_dir / "raw" / "balance.csv").read_text().splitlines()[1:])
    assert max(b - a for a, b in zip(times, times[1:])) <= 15.0, "a gap in the gravimetric record"


def test_occlusion_with_trend_detector_disabled_fails_only_the_detector(tmp_path: Path) -> None:
    # an occlusion trend that must persist ~12 days never alarms: the detector is effectively off.
    # The threshold backstop (70 kPa) still alarms and must NOT be counted as the occlusion detector.
    run = run_procedure(tmp_path, "occlusion", OCCLUSION, **{"detection.occlusion.persist_s": 1e6})
    assert run.exit_code == 1
    assert run.failed() == set(DETECTOR_TIMES)
    assert "occlusion_backstop" in {e["detector"] for e in run.events("detector")}
    assert run.value("occlusion.pump.pressure_at_alarm_kpa") == pytest.approx(100.0, abs=5.0)


def test_kink_graded_severities(tmp_path: Path) -> None:
    # the spec's hold of 10 min: the flow error is a compliance transient (C·R_kink ≈ 3 min at
    # 90 %), so its limits only mean something for the hold they were set for
    run = run_procedure(tmp_path, "kink", {"rate_ml_h": 1, "baseline_min": 4, "hold_min": 10})
    assert run.exit_code == 0, run.failed()
    for s in (50, 75, 90, 100):
        assert run.value(f"kink.P{s}.detected") == 1.0
        assert run.value(f"kink.P{s}.latency_min") < 2.0
    # a positive-displacement pump pushes through a partial kink; a full kink stops delivery
    assert abs(run.value("kink.P50.flow_error_pct")) < 5.0
    assert run.value("kink.P90.flow_error_pct") < run.value("kink.P75.flow_error_pct") < 0
    assert run.value("kink.P100.flow_error_pct") < -95.0


@pytest.mark.parametrize("fault", ["leak", "disconnect"])
def test_leak_and_disconnect_detected_quickly(tmp_path: Path, fault: str) -> None:
    run = run_procedure(tmp_path, fault, {"baseline_min": 4, "max_wait_min": 5})
    assert run.exit_code == 0, run.failed()
    assert run.value(f"{fault}.detected") == 1.0
    assert run.value(f"{fault}.latency_min") < 2.0


def test_leak_with_detector_disabled_fails_detection(tmp_path: Path) -> None:
    # a flow deficit of 100 % tolerated as normal: the leak detector can never alarm
    run = run_procedure(tmp_path, "leak", {"baseline_min": 4, "max_wait_min": 2},
                        **{"detection.leak.flow_deficit_allowance_pct": 100.0})
    assert run.exit_code == 1
    assert run.failed() == {"leak.detected", "leak.latency_min"}
    assert run.value("leak.detected") == 0.0
