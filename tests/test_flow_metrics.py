"""IEC 60601-2-24 gravimetric arithmetic, checked against the standard's worked example and
hand-computed cases (the arithmetic is in the comments so a reviewer can redo it)."""

from __future__ import annotations

import pytest

from rig.analysis.flow_metrics import (
    analysis_period,
    check_sample_interval,
    flow_agreement,
    flow_ml_h,
    mean_flow_error_pct,
    min_sample_interval_min,
    resample_increments,
    suggest_sample_interval_min,
    trumpet_curve,
)
from rig.errors import UsageError

# The standard's worked example: r = 6 mL/h, S = 0.5 min, volumes in mL (density 1).
WORKED_INCREMENTS_ML = [0.050, 0.055, 0.045, 0.050, 0.060, 0.040, 0.050, 0.050, 0.052, 0.048, 0.050, 0.053]


def exact(value: float) -> float:
    """Round away binary floating-point noise only (1e-9 %), nothing the standard would see."""
    return round(value, 9)


def test_worked_example_flows() -> None:
    # Qi = 60·ΔV/S = 120·ΔV: 0.050 mL -> 6.0 mL/h, 0.055 -> 6.6, 0.045 -> 5.4, 0.052 -> 6.24 ...
    flows = flow_ml_h(WORKED_INCREMENTS_ML, 0.5, density_g_ml=1.0)
    assert [exact(q) for q in flows] == [6.0, 6.6, 5.4, 6.0, 7.2, 4.8, 6.0, 6.0, 6.24, 5.76, 6.0, 6.36]


def test_worked_example_mean_error_is_plus_half_percent() -> None:
    # ΣΔV = 0.603 mL over 12·0.5 = 6 min -> Q̄ = 0.603·10 = 6.03 mL/h -> A = 100·0.03/6 = +0.5 %
    flows = flow_ml_h(WORKED_INCREMENTS_ML, 0.5, density_g_ml=1.0)
    assert exact(mean_flow_error_pct(flows, 6.0)) == 0.5


def test_worked_example_trumpet_p2() -> None:
    # P = 2 min = 4 samples; T = 6 min -> m = (6 − 2)/0.5 + 1 = 9 windows. Window sums (mL):
    # .200 .210 .195 .200 .200 .192 .200 .200 .203 -> mean flow = sum·30 mL/h:
    # 6.0 6.3 5.85 6.0 6.0 5.76 6.0 6.0 6.09 -> errors 0 +5 −2.5 0 0 −4 0 0 +1.5 %
    flows = flow_ml_h(WORKED_INCREMENTS_ML, 0.5, density_g_ml=1.0)
    p2 = trumpet_curve(flows, 6.0, 0.5, windows_min=[2.0]).point(2.0)
    assert p2.samples_per_window == 4
    assert p2.windows == 9
    assert exact(p2.max_error_pct) == 5.0
    assert exact(p2.min_error_pct) == -4.0


def test_trumpet_p5_window_count_and_values() -> None:
    # P = 5 min = 10 samples over T = 6 min -> m = (6 − 5)/0.5 + 1 = 3 windows:
    # samples 0..9: ΣΔV = 0.500 -> 6.0 mL/h (0 %); 1..10: 0.500 − 0.050 + 0.050 = 0.500 -> 0 %;
    # 2..11: 0.603 − 0.050 − 0.055 = 0.498 -> 0.498·60/5 = 5.976 mL/h (−0.4 %)
    flows = flow_ml_h(WORKED_INCREMENTS_ML, 0.5, density_g_ml=1.0)
    curve = trumpet_curve(flows, 6.0, 0.5)
    p5 = curve.point(5.0)
    assert (p5.samples_per_window, p5.windows) == (10, 3)
    assert exact(p5.max_error_pct) == 0.0
    assert exact(p5.min_error_pct) == -0.4
    # P = 11, 19, 31 min do not fit in 6 min: reported as skipped, with the reason
    assert set(curve.skipped) == {11.0, 19.0, 31.0}
    assert "longer than the analysis period" in curve.skipped[31.0]
    with pytest.raises(KeyError, match="P = 31 min"):
        curve.point(31.0)


def test_trumpet_window_count_over_the_second_hour() -> None:
    # T = 60 min at S = 0.5: m = (60 − P)/0.5 + 1 -> P=2: 117, 5: 111, 11: 99, 19: 83, 31: 59
    curve = trumpet_curve([1.0] * 120, 1.0, 0.5)
    assert [(p.window_min, p.windows) for p in curve.points] == [
        (2.0, 117), (5.0, 111), (11.0, 99), (19.0, 83), (31.0, 59)
    ]
    assert all(p.max_error_pct == p.min_error_pct == 0.0 for p in curve.points)


def test_trumpet_skips_windows_that_are_not_whole_samples() -> None:
    # S = 15 min (µL/h rates): P = 2, 5, 11 are shorter than S and 19, 31 not multiples of 15
    curve = trumpet_curve([0.01] * 8, 0.01, 15.0)
    assert curve.points == []
    assert "not a whole number" in curve.skipped[19.0]


def test_evaporation_blank_is_added_back() -> None:
    # ΔW = 0.0080 g in 0.5 min, E = 0.0012 g/h, d = 1: Q = 60·0.0080/0.5 + 0.0012 = 0.96 + 0.0012
    # = 0.9612 mL/h; without the blank 0.96 mL/h (−4 % at r = 1) becomes −3.88 %
    (q,) = flow_ml_h([0.0080], 0.5, density_g_ml=1.0, evaporation_g_h=0.0012)
    assert exact(q) == 0.9612
    assert exact(mean_flow_error_pct([q], 1.0)) == -3.88


def test_density_of_water_at_20c() -> None:
    # ΔW = 0.0499 g in 0.5 min: 60·0.0499/0.5 = 5.988 g/h; / 0.998 g/mL = 6.000 mL/h exactly,
    # while assuming d = 1 would read 5.988 mL/h (−0.2 %)
    (q,) = flow_ml_h([0.0499], 0.5, density_g_ml=0.998)
    assert exact(q) == 6.0
    (q1,) = flow_ml_h([0.0499], 0.5, density_g_ml=1.0)
    assert exact(mean_flow_error_pct([q1], 6.0)) == -0.2


def test_analysis_period_is_the_second_hour() -> None:
    flows = [float(i) for i in range(240)]  # 2 h at S = 0.5 min
    second_hour = analysis_period(flows, 0.5, 60.0, 120.0)
    assert second_hour[0] == 120.0 and second_hour[-1] == 239.0 and len(second_hour) == 120
    with pytest.raises(ValueError, match="outside the run"):
        analysis_period(flows, 0.5, 60.0, 121.0)


def test_resample_irregular_balance_series() -> None:
    # mass rises linearly 0.001 g/s, read at irregular times: interpolation recovers exact
    # increments of 0.001·30 = 0.030 g per 0.5 min
    t = [0.0, 0.7, 13.1, 29.9, 31.4, 47.0, 59.5, 60.2, 75.0, 91.0]
    m = [10.0 + 0.001 * ti for ti in t]
    inc = resample_increments(t, m, 0.5)
    assert inc.t_s == [0.0, 30.0, 60.0, 90.0]
    assert [round(x, 12) for x in inc.mass_increments_g] == [0.030, 0.030, 0.030]
    with pytest.raises(ValueError, match="strictly increasing"):
        resample_increments([0.0, 1.0, 1.0], [0.0, 0.1, 0.2], 0.01)


def test_minimum_sample_interval_and_refusal_names_a_usable_interval() -> None:
    # 0.1 mg balance, water: S_min = 60·50·0.0001/(r·0.998): r = 1 -> 0.3006 min; r = 0.01 -> 30.06 min
    assert min_sample_interval_min(1.0, 0.0001) == pytest.approx(0.300601, rel=1e-5)
    assert min_sample_interval_min(0.01, 0.0001) == pytest.approx(30.0601, rel=1e-5)
    check_sample_interval(0.5, 1.0, 0.0001)  # 0.5 min at 1 mL/h: 83 digits per sample, fine
    with pytest.raises(UsageError) as err:
        check_sample_interval(0.5, 0.01, 0.0001)  # 0.083 mg per sample: under one digit
    message = str(err.value)
    assert "0.5 min is too short at 0.01 mL/h" in message
    assert "S ≥ 30.1 min" in message and "e.g. 60 min" in message
    assert suggest_sample_interval_min(0.3006) == 0.5
    assert suggest_sample_interval_min(4.0) == 5.0


def test_flow_sensor_agreement() -> None:
    # sensor 1.02, 0.98, 1.03 vs balance 1.00, 1.00, 1.00: mean 1.01 vs 1.00 -> +1 %; worst 3 %
    agreement = flow_agreement([1.02, 0.98, 1.03], [1.0, 1.0, 1.0])
    assert round(agreement.mean_difference_pct, 9) == 1.0
    assert round(agreement.max_abs_difference_pct, 9) == 3.0


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="sample_interval_min"):
        flow_ml_h([0.1], 0.0)
    with pytest.raises(ValueError, match="evaporation_g_h"):
        flow_ml_h([0.1], 0.5, evaporation_g_h=-1.0)
    with pytest.raises(ValueError, match="rate_ml_h"):
        mean_flow_error_pct([1.0], 0.0)
