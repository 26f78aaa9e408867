"""bolus_program (hand-computed volumes, end-to-end) and soak (healthy passes; an over-sensitive
detector configuration fails the false-alarm count)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_station
from procedure_runs import run_procedure

from procedures.bolus_program import PROCEDURE as BOLUS
from procedures.bolus_program import build_program
from rig.cli.main import main

# A 30-minute compressed day: 0.6 mL/h, then 1.2 mL/h from 10 min with a 0.05 mL bolus at 6 mL/h
# at 14 min, then 0.6 mL/h from 20 min to 30 min. (Rate steps stay small against the segment
# volumes: each step of ΔQ moves C·R·ΔQ ≈ 0.0025 mL per mL/h between neighbouring segments.)
PROGRAM = {"rate1_ml_h": 0.6, "start2_min": 10, "rate2_ml_h": 1.2, "start3_min": 20, "rate3_ml_h": 0.6,
           "end_min": 30, "bolus_ml": 0.05, "bolus_rate_ml_h": 6.0, "bolus_at_min": 14, "tail_s": 60}
# By hand: the bolus runs 0.05/6 h = 0.5 min (14..14.5), its window with the 1-min tail is 14..15.5.
#   segment1: 0.6 mL/h × 10 min                 = 0.1 mL
#   segment2: 1.2 mL/h × (10 − 1.5) min         = 0.17 mL
#   segment3: 0.6 mL/h × 10 min                 = 0.1 mL
#   bolus:    0.05 mL
HAND = {"segment1": 0.1, "segment2": 0.17, "segment3": 0.1, "bolus": 0.05}


def test_programmed_volumes_match_hand_computation() -> None:
    params = {**BOLUS.defaults(), **PROGRAM}
    program = build_program(params)
    assert {p.name: p.programmed_ml for p in program.parts} == pytest.approx(HAND)
    assert program.bolus_window_min == pytest.approx((14.0, 15.5))
    assert [m for m, _ in program.changes] == pytest.approx([0, 10, 14, 14.5, 20, 30])
    assert [r for _, r in program.changes] == [0.6, 1.2, 6.0, 1.2, 0.6, 0.0]


def test_bolus_program_delivers_what_was_programmed(tmp_path: Path) -> None:
    run = run_procedure(tmp_path, "bolus_program", PROGRAM)
    assert run.exit_code == 0, run.failed()
    parts = {e["part"]: e for e in run.events("program_part")}
    for name, volume_ml in HAND.items():
        assert parts[name]["programmed_ml"] == pytest.approx(volume_ml)
        assert parts[name]["delivered_ml"] == pytest.approx(volume_ml, rel=0.05)
    assert abs(run.value("program.bolus.volume_error_pct")) < 2.0


@pytest.mark.parametrize(("params", "expected"), [
    ({"bolus_at_min": "39.5"}, "must lie inside one segment"),
    ({"start3_min": "10"}, "segment starts must increase"),
    ({"rate3_ml_h": "0.02"}, "segment3 is programmed to deliver only 0.00667 mL"),
])
def test_bad_programs_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  params: dict[str, str], expected: str) -> None:
    argv = ["run", "bolus_program", "--station", str(write_station(tmp_path))]
    for key, value in params.items():
        argv += ["--param", f"{key}={value}"]
    assert main(argv) == 2
    assert expected in capsys.readouterr().err


def test_soak_healthy_line_has_no_false_alarm_and_reports_margins(tmp_path: Path) -> None:
    run = run_procedure(tmp_path, "soak", {"duration_h": 0.5, "poll_s": 120})
    assert run.exit_code == 0, run.failed()
    assert run.value("soak.false_alarms") == 0.0
    margins = {n: m["value"] for n, m in run.measurements().items() if n.startswith("soak.closest_approach.")}
    assert set(margins) == {f"soak.closest_approach.{d}" for d in
                            ("occlusion", "occlusion_backstop", "kink", "leak", "disconnect")}
    assert all(0.0 <= v < 1.0 for v in margins.values())
    assert margins["soak.closest_approach.occlusion_backstop"] > 0  # ~1.6 of 70 kPa


def test_soak_with_an_over_sensitive_detector_fails_the_false_alarm_count(tmp_path: Path) -> None:
    # a backstop threshold (1 kPa) below the healthy line's ~1.6 kPa alarms on normal delivery
    run = run_procedure(tmp_path, "soak", {"duration_h": 0.2, "poll_s": 120},
                        **{"detection.occlusion.backstop_pressure_kpa": 1.0})
    assert run.exit_code == 1
    assert run.failed() == {"soak.false_alarms", "soak.closest_approach.occlusion_backstop"}
    assert run.value("soak.false_alarms") == 1.0  # alarms latch once per delivery regime
    assert run.value("soak.closest_approach.occlusion_backstop") > 1.0
