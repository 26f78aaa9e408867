"""The fluid-line model (instruments/sim/model.py) against hand-computed physics.

Default line (LineParams): C = 0.010 mL/kPa, R_cath = 0.20 and R_valve = 0.05 kPa/(mL/h), so an
open line has R_out = 0.25 kPa/(mL/h) and a time constant R·C = 0.0025 h = 9 s; CSF back-pressure
P_sink = 1.47 kPa; leak bleed R_leak = 5 kPa/(mL/h); a disconnect leaves R_disc = 0.01 to 0 kPa.
Sensor noise is switched off unless a test is about it, so every expectation is exact arithmetic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from instruments.sim.model import FluidLine, LineParams

R_OUT = 0.25  # kPa/(mL/h), catheter 0.20 + open valve 0.05
C = 0.010  # mL/kPa
P_SINK = 1.47  # kPa
TAU_S = R_OUT * C * 3600  # 9 s


def quiet_line(kind: str = "syringe", rate_ml_h: float = 1.0, **params: float) -> FluidLine:
    """A noise-free line with the pump running at rate_ml_h."""
    prm = LineParams(balance_noise_g=0.0, pressure_noise_kpa=0.0, flow_noise_ul_min=0.0, **params)
    line = FluidLine(prm, seed=7)
    line.pump.kind = kind
    line.pump.rate_ml_h = rate_ml_h
    line.pump.running = rate_ml_h > 0
    return line


def volume_balance_error_ml(line: FluidLine) -> float:
    t = line.totals
    return t.pumped_ml - (t.delivered_ml + t.leaked_ml + t.spilled_ml + line.stored_ml())


# -- conservation --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["syringe", "peristaltic"])
def test_volume_is_conserved_over_a_long_run_with_every_fault_toggled(kind: str) -> None:
    # 1 mL/h for 2 h = 2 mL pumped; 0.1 % of that is 2 µL. The model integrates the tubing ODE
    # exactly, so the real error is rounding (~1e-12 mL); faults move volume between the sinks.
    line = quiet_line(kind, rate_ml_h=1.0)
    schedule = [  # (duration_s, line state applied at the start of the segment)
        (900, {}),
        (600, {"occlusion": True}),  # +100 kPa/h for 10 min ≈ 16.7 kPa, below the 100 kPa stall
        (600, {"occlusion": False}),  # post-occlusion bolus drains out
        (900, {"kink_pct": 90.0}),
        (600, {"kink_pct": 0.0, "leak": True}),
        (900, {"leak": False, "disconnect": True}),
        (600, {"disconnect": False}),
        (2100, {"kink_pct": 50.0, "leak": True}),
    ]
    for duration_s, changes in schedule:
        for key, value in changes.items():
            setattr(line.valves, key, value)
        line.advance(duration_s)
        assert abs(volume_balance_error_ml(line)) <= 1e-3 * max(line.totals.pumped_ml, 1e-3)
    totals = line.totals
    assert totals.pumped_ml == pytest.approx(2.0, rel=1e-6)  # 7200 s at 1 mL/h, none stalled
    assert totals.leaked_ml > 0.05 and totals.spilled_ml > 0.1  # every sink was really exercised
    assert abs(volume_balance_error_ml(line)) < 2e-6  # 0.1 % of 2 mL


# -- pump mechanisms -----------------------------------------------------------------------------


def _dominant_frequency_hz(samples: list[float], rate_hz: float) -> float:
    x = np.asarray(samples) - np.mean(samples)
    x = x - np.polyval(np.polyfit(np.arange(len(x)), x, 1), np.arange(len(x)))  # drop residual drift
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spectrum[1:])) + 1
    # parabolic interpolation of the peak between bins
    a, b, c = spectrum[k - 1], spectrum[k], spectrum[k + 1]
    shift = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + shift) * rate_hz / len(x)


@pytest.mark.parametrize(("rate_ml_h", "rollers"), [(3.0, 8), (1.2, 6)])
def test_peristaltic_pulsation_frequency_is_rollers_times_rpm_over_60(rate_ml_h: float, rollers: int) -> None:
    # Head speed 10 rpm per mL/h: 3 mL/h -> 30 rpm x 8 rollers / 60 = 4.0 Hz;
    # 1.2 mL/h -> 12 rpm x 6 rollers / 60 = 1.2 Hz. The 9 s line time constant smooths the outlet
    # but does not move the frequency; the sampled outlet flow must show it.
    line = quiet_line("peristaltic", rate_ml_h=rate_ml_h)
    line.pump.rollers = rollers
    expected_hz = rollers * rate_ml_h * line.pump.rpm_per_ml_h / 60
    assert line.pump.pulsation_hz == pytest.approx(expected_hz)
    line.advance(60)  # settle
    sample_rate_hz, window_s = 50.0, 40.0
    samples: list[float] = []
    line.add_sampler(1 / sample_rate_hz, lambda m: samples.append(m.outlet_flow_ml_h))
    line.advance(window_s)
    assert len(samples) == pytest.approx(sample_rate_hz * window_s, abs=1)
    measured_hz = _dominant_frequency_hz(samples, sample_rate_hz)
    assert measured_hz == pytest.approx(expected_hz, abs=1 / window_s)  # within one FFT bin
    assert np.mean(samples) == pytest.approx(rate_ml_h, rel=0.01)  # pulsation averages out


def test_syringe_displacement_is_quantised_to_whole_steps() -> None:
    # 1 mL/h with a coarse 1 µL (0.001 mL) stepper step: one step every 0.001 / (1/3600) = 3.6 s.
    # Totals pumped must be whole steps: 0 at 3.5 s, 1 at 3.7 s, 2 at 7.3 s and 10 s, 10 at 36.1 s.
    line = quiet_line("syringe", rate_ml_h=1.0)
    line.pump.step_volume_ml = 0.001
    for t_s, steps in [(3.5, 0), (3.7, 1), (7.1, 1), (7.3, 2), (10.0, 2), (36.1, 10)]:
        line.advance_to(t_s)
        assert line.totals.pumped_ml == pytest.approx(steps * 0.001, abs=1e-12), t_s


# -- faults --------------------------------------------------------------------------------------


def test_occlusion_pressure_rises_at_q_over_c() -> None:
    # Occluded, all pumped volume goes into the tubing: dP/dt = Q/C = 1 mL/h / 0.010 mL/kPa
    # = 100 kPa/h. A threshold alarm at ΔP = 70 kPa then takes C·ΔP/Q = 0.7 h = 42 min (DESIGN §1).
    line = quiet_line("syringe", rate_ml_h=1.0)
    line.advance(120)  # steady: P = P_sink + Q·R_out = 1.72 kPa
    assert line.pressure_kpa == pytest.approx(P_SINK + 1.0 * R_OUT, rel=1e-3)
    line.valves.occlusion = True
    p0, delivered0 = line.pressure_kpa, line.totals.delivered_ml
    line.advance(600)
    rate_kpa_h = (line.pressure_kpa - p0) / (600 / 3600)
    assert rate_kpa_h == pytest.approx(1.0 / C, rel=0.02)
    assert line.totals.delivered_ml == delivered0  # nothing reaches the balance
    t_alarm_s = 0.0
    while line.pressure_kpa - p0 < 70.0:
        line.advance(1.0)
        t_alarm_s += 1.0
    assert (600 + t_alarm_s) / 60 == pytest.approx(42.0, rel=0.02)


def test_kink_raises_upstream_pressure_and_briefly_lowers_outlet_flow() -> None:
    # 80 % kink: R_valve = 0.05 / 0.2² = 1.25, R_out = 1.45 kPa/(mL/h). At the instant of the kink
    # P is still 1.72 kPa, so outlet = 0.25 / 1.45 = 0.172 mL/h; it recovers with τ = 1.45·C h =
    # 52 s to 1 mL/h while P climbs to 1.47 + 1.45 = 2.92 kPa.
    line = quiet_line("syringe", rate_ml_h=1.0)
    line.advance(120)
    line.valves.kink_pct = 80.0
    line.advance(1.0)  # 1 − 0.828·e^(−1/52) = 0.188 mL/h
    assert line.outlet_flow_ml_h == pytest.approx(0.188, abs=0.01)
    line.advance(599.0)  # > 11 τ
    assert line.outlet_flow_ml_h == pytest.approx(1.0, rel=1e-3)
    assert line.pressure_kpa == pytest.approx(P_SINK + 1.45, rel=1e-3)
    assert line.downstream_pressure_kpa() == pytest.approx(P_SINK + 1.0 * 0.20, rel=1e-3)


def test_leak_diverts_flow_away_from_the_balance() -> None:
    # Steady state with the bleed open: 1 = (P − 1.47)/0.25 + P/5 -> P = 6.88/4.2 = 1.6381 kPa;
    # leak = 0.32762 mL/h, outlet = 0.67238 mL/h. Balance gain over 1 h:
    # 0.67238 mL · 0.998 g/mL − 0.0005 g evaporation = 0.67055 g.
    line = quiet_line("syringe", rate_ml_h=1.0)
    line.valves.leak = True
    line.advance(300)
    p_kpa = (1.0 + P_SINK / R_OUT) / (1 / R_OUT + 1 / 5.0)
    assert line.pressure_kpa == pytest.approx(p_kpa, rel=1e-3)
    mass0, leaked0 = line.true_mass_g(), line.totals.leaked_ml
    line.advance(3600)
    assert line.true_mass_g() - mass0 == pytest.approx(0.67238 * 0.998 - 0.0005, rel=1e-3)
    assert line.totals.leaked_ml - leaked0 == pytest.approx(p_kpa / 5.0, rel=1e-3)
    assert line.leak_flow_ml_h == pytest.approx(0.32762, rel=1e-3)


def test_disconnect_drops_downstream_pressure_and_stops_balance_gain() -> None:
    # Disconnected: everything spills through R_valve + R_disc = 0.06 kPa/(mL/h) to 0 kPa;
    # upstream P -> 0.06 kPa (τ = 2 s), the downstream transducer sees ~0 instead of 1.67 kPa,
    # the flow sensor reads 0 and the balance only loses evaporation (0.0005 g/h).
    line = quiet_line("syringe", rate_ml_h=1.0)
    line.advance(120)
    assert line.downstream_pressure_kpa() == pytest.approx(P_SINK + 0.20, rel=1e-3)
    line.valves.disconnect = True
    line.advance(60)
    mass0, spilled0 = line.true_mass_g(), line.totals.spilled_ml
    line.advance(3600)
    assert line.pressure_kpa == pytest.approx(0.06, rel=1e-3)
    assert line.downstream_pressure_kpa() == pytest.approx(0.0, abs=1e-9)
    assert line.flow_sensor_ul_min() == 0.0
    assert line.true_mass_g() - mass0 == pytest.approx(-0.0005, rel=1e-6)
    assert line.totals.spilled_ml - spilled0 == pytest.approx(1.0, rel=1e-3)


# -- the balance ---------------------------------------------------------------------------------


def test_evaporation_lowers_the_mass_on_an_idle_balance() -> None:
    # Pump stopped, 10 h of evaporation at 0.0005 g/h = 5.0 mg.
    line = quiet_line("syringe", rate_ml_h=0.0)
    line.advance(30)
    start_g, _ = line.balance_reading_g()
    line.advance(10 * 3600)
    end_g, stable = line.balance_reading_g()
    assert stable
    assert end_g - start_g == pytest.approx(-0.0050, abs=0.0001)  # one display digit


def test_balance_settles_with_its_time_constant_and_reports_unstable_meanwhile() -> None:
    # A 1 g load step through a first-order cell with τ = 1.5 s: after τ the display shows
    # 1 − e^−1 = 63.2 % of it; "stable" needs |true − display| < 2 digits = 0.2 mg, i.e.
    # t > 1.5 · ln(1 g / 0.0002 g) = 12.78 s.
    line = quiet_line("syringe", rate_ml_h=0.0)
    line.advance(30)
    before_g, stable = line.balance_reading_g()
    assert stable
    line.vessel_g += 1.0
    line.advance(1.5)
    reading_g, stable = line.balance_reading_g()
    assert reading_g - before_g == pytest.approx(1 - math.exp(-1), abs=0.0002)
    assert not stable
    line.advance(12.5 - 1.5)
    assert not line.balance_reading_g()[1]
    line.advance(13.5 - 12.5)
    reading_g, stable = line.balance_reading_g()
    assert stable
    assert reading_g - before_g == pytest.approx(1.0, abs=0.0002)


def test_tare_zeroes_the_net_reading() -> None:
    line = quiet_line("syringe", rate_ml_h=0.0)
    line.advance(30)
    line.balance_tare_g = line.balance_gross_g()
    assert line.balance_reading_g()[0] == pytest.approx(0.0, abs=0.0001)


def test_syringe_stalls_above_the_stall_pressure_and_stops_pumping() -> None:
    # Occluded at 1 mL/h the line reaches the 100 kPa stall pressure after (100 − 1.72) · C / Q
    # = 0.983 h; the motor stops and the pumped total freezes.
    line = quiet_line("syringe", rate_ml_h=1.0)
    line.advance(120)
    line.valves.occlusion = True
    line.advance(0.95 * 3600)
    assert line.pump.running and not line.pump.stalled
    line.advance(0.05 * 3600)
    assert line.pump.stalled and not line.pump.running
    pumped = line.totals.pumped_ml
    line.advance(600)
    assert line.totals.pumped_ml == pumped


# -- faults of the line itself (at the catheter), apart from the rig's valves -----------------------


def test_blocked_catheter_raises_pressure_and_the_downstream_transducer_sees_it() -> None:
    # A catheter that blocks by itself: the same Q/C rise as the occlusion valve (100 kPa/h at
    # 1 mL/h), but the downstream transducer sits *before* the block, so it reads the tubing
    # pressure (no flow, no drop across the open valve) instead of the CSF back-pressure.
    line = quiet_line("syringe", rate_ml_h=1.0)
    line.advance(120)
    line.faults.occlusion = True
    p0 = line.pressure_kpa
    line.advance(360)  # 6 min at 100 kPa/h = +10 kPa
    assert line.pressure_kpa - p0 == pytest.approx(10.0, rel=0.02)
    assert line.downstream_pressure_kpa() == pytest.approx(line.pressure_kpa, rel=1e-9)
    assert line.outlet_flow_ml_h == 0.0


def test_kinked_catheter_adds_its_own_resistance() -> None:
    # 50 % catheter kink: R_cath = 0.20 / 0.5² = 0.80, R_out = 0.85 kPa/(mL/h); steady at 1 mL/h
    # P = 1.47 + 0.85 = 2.32 kPa, downstream = 1.47 + 0.80 = 2.27 kPa (drop across the valve 0.05).
    line = quiet_line("syringe", rate_ml_h=1.0)
    line.faults.kink_pct = 50.0
    line.advance(600)  # > 60 τ (τ = 0.85·C h = 31 s)
    assert line.pressure_kpa == pytest.approx(2.32, rel=1e-4)
    assert line.downstream_pressure_kpa() == pytest.approx(2.27, rel=1e-4)


def test_line_leak_and_rig_leak_valve_are_two_bleeds() -> None:
    # Both open: two 5 kPa/(mL/h) bleeds in parallel = 2.5. Steady at 1 mL/h:
    # 1 = (P − 1.47)/0.25 + P/2.5 -> P = 6.88/4.4 = 1.56364 kPa; leak = 0.62545 mL/h.
    line = quiet_line("syringe", rate_ml_h=1.0)
    line.faults.leak = True
    line.valves.leak = True
    line.advance(300)
    assert line.pressure_kpa == pytest.approx(6.88 / 4.4, rel=1e-4)
    assert line.leak_flow_ml_h == pytest.approx(6.88 / 4.4 / 2.5, rel=1e-4)


def test_catheter_disconnect_spills_like_the_disconnect_valve() -> None:
    line = quiet_line("syringe", rate_ml_h=1.0)
    line.advance(120)
    line.faults.disconnect = True
    line.faults.occlusion = True  # a blocked catheter that came off: the open end wins
    line.advance(600)
    assert line.pressure_kpa == pytest.approx(0.06, rel=1e-3)
    assert line.flow_sensor_ul_min() == 0.0 and line.totals.spilled_ml > 0.15


def test_zeroing_the_rig_valves_does_not_clear_a_fault_of_the_line() -> None:
    # What the rig's safe state does to the model (every valve to normal flow) must leave an
    # injected fault in place: the pressure keeps rising until the *pump* stops.
    line = quiet_line("syringe", rate_ml_h=1.0)
    line.faults.occlusion = True
    line.faults.kink_pct = 100.0
    line.valves.kink_pct = 30.0
    line.advance(60)
    line.valves.kink_pct = 0.0
    line.valves.occlusion = False
    p0 = line.pressure_kpa
    line.advance(60)
    assert (line.faults.occlusion, line.faults.kink_pct) == (True, 100.0)
    assert line.pressure_kpa - p0 == pytest.approx(100.0 / 60, rel=0.02)
    line.pump.running = False
    p1 = line.pressure_kpa
    line.advance(60)
    assert line.pressure_kpa == pytest.approx(p1, abs=1e-12)  # nothing leaves a blocked line


def test_snapshot_keeps_valves_and_faults_apart() -> None:
    line = quiet_line("syringe", rate_ml_h=1.0)
    line.valves.kink_pct = 20.0
    line.faults.leak = True
    snap = line.snapshot()
    assert snap["valves"] == {"occlusion": False, "kink_pct": 20.0, "leak": False, "disconnect": False}
    assert snap["faults"] == {"occlusion": False, "kink_pct": 0.0, "leak": True, "disconnect": False}


def test_the_pump_says_why_it_stopped() -> None:
    # stall above 100 kPa (occluded at 1 mL/h: 100 kPa/h -> ~59 min from 1.72 kPa), a volume
    # target (0.001 mL at 1 mL/h = 3.6 s), or a stop command; the command's time is kept even when
    # the pump had already stopped, so "the rig commanded a stop" is observable after a stall.
    line = quiet_line("syringe", rate_ml_h=1.0)
    line.valves.occlusion = True
    line.advance(3600)
    assert (line.pump.running, line.pump.stalled, line.pump.stopped_by) == (False, True, "stall")
    assert line.pump.last_stop_command_t_s is None
    line.pump.command_stop(line.t_s)
    assert line.pump.stopped_by == "stall" and line.pump.last_stop_command_t_s == line.t_s
    line = quiet_line("syringe", rate_ml_h=1.0)
    line.pump.target_ml = 0.001
    line.advance(10)
    assert (line.pump.running, line.pump.stopped_by) == (False, "target")
    line.pump.target_ml = 0.0  # continuous
    line.pump.command_start()
    assert (line.pump.running, line.pump.stopped_by) == (True, None)
    line.advance(1)
    line.pump.command_stop(line.t_s)
    assert (line.pump.running, line.pump.stopped_by, line.pump.last_stop_command_t_s) == (False, "command", 11.0)


# -- long steps ----------------------------------------------------------------------------------


def test_one_long_step_tells_the_same_story_as_many_short_ones() -> None:
    # Every step is exact for constant inputs (closed-form pressure, balance lag in closed form for
    # the line's exponential transient), so a quiet minute in one step or in 240 steps of 0.25 s
    # must agree on pressure, delivered volume and what the balance displays.
    coarse, fine = quiet_line("syringe", rate_ml_h=6.0), quiet_line("syringe", rate_ml_h=6.0)
    for line in (coarse, fine):
        line.pump.step_volume_ml = 1e-9  # quantisation below rounding
    coarse.advance(60.0)
    for _ in range(240):
        fine.advance(0.25)
    fine.pump.running = coarse.pump.running = False  # the line drains its stored volume
    coarse.advance(60.0)
    for _ in range(240):
        fine.advance(0.25)
    assert coarse.pressure_kpa == pytest.approx(fine.pressure_kpa, rel=1e-9)
    assert coarse.totals.delivered_ml == pytest.approx(fine.totals.delivered_ml, abs=1e-8)  # stepper rounding
    assert coarse.balance_gross_g() == pytest.approx(fine.balance_gross_g(), abs=1e-9)
    assert coarse.balance_reading_g()[1]  # settled: stable after the drain


def test_a_long_step_stops_at_the_stall_pressure_and_at_the_volume_target() -> None:
    # Occluded at 1 mL/h from 1.72 kPa: stall at 100 kPa after (100 − 1.72)·C/Q h = 3538 s; one
    # advance of 2 h must stall there, not at the end of the step.
    line = quiet_line("syringe", rate_ml_h=1.0)
    line.advance(120)
    p0, pumped0 = line.pressure_kpa, line.totals.pumped_ml
    line.valves.occlusion = True
    line.advance(7200)
    assert line.pump.stalled
    assert line.totals.pumped_ml - pumped0 == pytest.approx((100.0 - p0) * C, rel=1e-4)
    # a 0.1 mL volume target at 6 mL/h ends the run after 60 s, inside a 600 s step
    target = quiet_line("syringe", rate_ml_h=6.0)
    target.pump.target_ml = 0.1
    target.advance(600)
    assert not target.pump.running
    assert target.totals.pumped_ml == pytest.approx(0.1, abs=1e-6)
