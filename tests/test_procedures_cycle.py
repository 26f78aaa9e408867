"""procedures/reservoir_cycle.py: the programmed day and the drift by hand, then short intervals end
to end on the simulated bench (one or two days: the 42-day default is measured outside the suite,
see benchmarks/procedure_speed.py and the issue's closing note).

Hand values: the default day is 0.006 mL/h for 9 h (0.054 mL) + 0.009 mL/h for 15 h (0.135 mL) +
two 0.005 mL boluses at 0.1 mL/h (3 min each, replacing 0.009 · 0.05 = 0.00045 mL of basal) =
0.1981 mL; the full reservoir for 42 days is 42 · 0.1981 + 1 = 9.3202 mL.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from conftest import PERISTALTIC_PUMP
from procedure_runs import run_procedure

import procedures
from procedures.reservoir_cycle import (
    M_ALARM,
    M_DRIFT,
    M_FALSE,
    M_WORST,
    daily_delivered_ml,
    day_program,
    drift_of,
    fill_ml,
)
from reports.bundle import build_bundle
from rig.engine.params import parse_params
from rig.errors import UsageError

PROCEDURE = procedures.load("reservoir_cycle")
DEFAULTS = PROCEDURE.defaults()
REFILLED = {"refill": "done"}
SHORT = {"interval_days": 1, "blank_h": 2, "poll_s": 600, "balance_read_min": 60}
# Days of a slow peristaltic head: the model's step cap raised from 0.25 s (procedure_runs.sim_bench).
# The model still steps at 1/16 of the head's pulsation period (8 rollers x 10 rpm per mL/h: 5.2 s at
# 0.009 mL/h, 7.8 s at 0.006 mL/h, 0.5 s during a bolus), which is below this cap: same physics,
# ~50 000 instead of ~1 000 000 steps (the test took ~160 s, now ~17 s).
WEAR_MODEL_STEP_S = 10.0


def test_the_default_day_and_fill_by_hand() -> None:
    day = day_program(DEFAULTS)
    assert day.programmed_ml == pytest.approx(0.1981, abs=1e-12)
    assert day.changes == ((0.0, 0.006), (7 * 3600.0, 0.009), (8 * 3600.0, 0.1), (8 * 3600.0 + 180.0, 0.009),
                           (18 * 3600.0, 0.1), (18 * 3600.0 + 180.0, 0.009), (22 * 3600.0, 0.006))
    assert fill_ml(DEFAULTS) == pytest.approx(9.3202, abs=1e-12)


def test_drift_is_the_least_squares_slope_with_its_standard_uncertainty() -> None:
    # y = 1, 2, 2, 4 at x = 1..4: slope = Σ(x−2.5)(y−2.25)/Σ(x−2.5)² = 4.5/5 = 0.9, intercept
    # 2.25 − 0.9·2.5 = 0; residuals 0.1, 0.2, −0.7, 0.4 -> s² = 0.70/2 = 0.35, u = √(0.35/5) = 0.264575
    drift = drift_of([1, 2, 3, 4], [1.0, 2.0, 2.0, 4.0])
    assert drift is not None
    assert drift.slope_pct_per_day == pytest.approx(0.9)
    assert drift.u_slope_pct_per_day == pytest.approx(0.264575, abs=1e-6)
    assert drift_of([1, 2], [0.0, -1.5]).u_slope_pct_per_day is None  # type: ignore[union-attr]
    assert drift_of([1], [0.0]) is None


def test_daily_volume_adds_the_evaporation_blank_back() -> None:
    # 0.1950 g gained in 24 h while 0.0005 g/h evaporated: (0.1950 + 0.012) / 0.998 = 0.20741 mL
    assert daily_delivered_ml(10.0, 10.1950, 24.0, 0.0005, 0.998) == pytest.approx(0.207415, abs=1e-6)


def test_an_interval_the_reservoir_cannot_hold_is_refused_naming_what_fits() -> None:
    with pytest.raises(UsageError, match=r"need 18\.83 mL, more than reservoir_ml = 10 mL; at these rates at most 45 days"):
        parse_params(["interval_days=90"], PROCEDURE)


@pytest.mark.timeout(600)  # ~15 s on a quiet 2-core machine; days of virtual time under load take longer
def test_one_day_interval_passes_end_to_end(tmp_path: Path) -> None:
    run = run_procedure(tmp_path, "reservoir_cycle", SHORT, answers=REFILLED,
                        **{"sim.evaporation_g_h": 0.0005})  # the blank must take it out
    assert run.outcome == "PASS", run.failed()
    assert abs(run.value(M_WORST)) < 1.0  # the stand-in delivers what it is told
    assert run.value(M_FALSE) == 0
    # the procedure's figures are standard uncertainties: recorded as budgets whose U is k = 2 times u
    budget = run.measurements()[M_WORST]["uncertainty"]
    assert budget["k"] == 2 and budget["expanded"] == pytest.approx(2 * budget["u_c"]) and budget["u_c"] > 0
    assert len(run.events("low_reservoir")) == 1
    blank = run.events("evaporation_blank")[0]
    assert blank["evaporation_g_h"] == pytest.approx(0.0005, rel=0.2)
    daily = (run.run_dir / "raw" / "daily.csv").read_text().splitlines()
    assert daily[0].startswith("day,phase,")
    assert [row.split(",")[1] for row in daily[1:]] == ["interval", "after_refill"]
    bundle = build_bundle(run.run_dir, audit_log=tmp_path / "audit.jsonl")  # the report plots the days
    page = (bundle / "report.html").read_text(encoding="utf-8")
    assert "Daily error vs day" in page and "Cumulative volume" in page


@pytest.mark.timeout(600)
def test_tubing_wear_shows_as_drift_and_fails(tmp_path: Path) -> None:
    # Peristaltic stand-in with worn tubing: 20 % flow per 1000 head revolutions. At 0.1981 mL/day
    # and 2.45 µL per revolution the head turns ~81 times a day: the daily error falls by ~1.6 %
    # a day, −3.2 % over the 2-day interval, past the ±2 % drift limit, while each day alone is
    # still within ±5 %.
    pump = copy.deepcopy(PERISTALTIC_PUMP)
    run = run_procedure(tmp_path, "reservoir_cycle", {**SHORT, "interval_days": 2}, answers=REFILLED,
                        model_step_s=WEAR_MODEL_STEP_S,
                        **{"instruments.pump": pump, "sim.tubing_wear_pct_per_1000_rev": 20.0})
    assert run.outcome == "FAIL"
    assert M_DRIFT in run.failed()
    assert run.value(M_DRIFT) < -2.5
    assert M_ALARM not in run.failed()
