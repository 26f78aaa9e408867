"""A whole refill interval: daily delivery from a full reservoir to the low-reservoir alarm, the
refill, and the first day after it (gravimetric, with an evaporation blank).

An implanted intrathecal pump is refilled every four to six weeks; between refills the programmer's
day (several basal rates by time of day plus boluses) repeats. This procedure plays that interval
day for day in procedure time (seconds of virtual time on the simulated bench):

1. ``blank``: pump stopped, the open weighing vessel is weighed at the start and after ``blank_h``;
   the loss is the evaporation rate E (g/h) added back to every day (the evaporation blank).
2. ``interval``: from a full reservoir (``fill_ml`` = the programmed volume of ``interval_days`` plus
   the ``low_reservoir_ml`` reserve) the flex-dosing day repeats — ``night_rate_ml_h`` from 0 h,
   ``day_rate_ml_h`` from ``day_start_h`` to ``day_end_h``, a bolus of ``bolus_ml`` at
   ``bolus_rate_ml_h`` at ``bolus1_h`` and at ``bolus2_h`` — until the low-reservoir alarm. The
   balance is read at every midnight (day boundaries fall in the night segment, so the line's
   compliance holds the same volume at both ends of a day) and every ``balance_read_min``.
3. ``refill`` (operator): the reservoir is emptied and refilled with ``fill_ml``.
4. ``after_refill``: one more programmed day.

The low-reservoir alarm of an implant is count-based: the pump computes what is left in the
reservoir from its own delivery count (it does not sense the fluid). The stand-in pumps have no
reservoir firmware, so the rig plays that part: every ``poll_s`` it reads the pump's own
dispensed-volume counter and raises the alarm when the count reaches ``fill_ml − low_reservoir_ml``.
Any alarm the pump itself reports during the interval is a false alarm.

Measurements (daily error e_d = 100·(V_d − P_d)/P_d, V_d = (Δm_d + E·24 h)/ρ, P_d programmed):

* cycle.daily_error_worst_pct   the day with the largest |e_d| (signed)
* cycle.daily_error_mean_pct    mean of e_d over the interval
* cycle.daily_error_drift_pct   how far the daily error moves over the whole interval: the
                                least-squares slope of e_d against day (over the interval and the
                                day after the refill) times ``interval_days``, with its standard
                                uncertainty from the residuals (needs 3 days). Judged over the
                                interval, not per day, so a 2-day run is not failed by one display
                                digit (±0.05 % of a 0.2 mL day) while 42 days resolve 0.001 %/day
* cycle.alarm_volume_error_pct  gravimetric volume delivered at the alarm vs the expected
                                ``fill_ml − low_reservoir_ml``
* cycle.refill_volume_error_pct the refill volume (what the reservoir lost from the fill to the
                                refill, by weight) vs the volume the programmer expects to refill
* cycle.first_day_after_refill_error_pct  e_d of the day after the refill
* cycle.false_alarms            pump alarms during the interval (0 expected)

raw/daily.csv has one row per day (day, phase, programmed, delivered, error and its uncertainty),
raw/balance.csv every reading (the cumulative delivered volume), for the report's plots.

Defaults and their sources: 42 days (a 4–6 week refill interval); rates 0.006/0.009 mL/h with two
0.005 mL boluses, 0.199 mL/day (intrathecal range ~0.048–24 mL/day, SynchroMed II, DESIGN.md
section 1); a 10 mL reservoir (the shipped station's 10 mL syringe plays it; SynchroMed II has
20 or 40 mL); a 1 mL low-reservoir reserve (assumption: the alarm must leave days of delivery);
a 2 h blank (0.1 mg balance: ±0.04 mg on Δm, i.e. ±2 % of E at 0.0005 g/h).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from procedures._gravimetry import BalanceLog, density_g_ml, tare
from procedures._line_monitor import watch
from procedures._pump import pump_alarm, set_rate, start_pump, stop_pump
from procedures._setup import ITEM_SERIAL, SETUP_LINE
from rig.analysis.uncertainty import direct_budget
from rig.engine.context import StepContext
from rig.engine.operator import Instruction
from rig.engine.procedure import Measurement, Parameter, Procedure, Step

DAY_S = 86400.0
M_WORST = "cycle.daily_error_worst_pct"
M_MEAN = "cycle.daily_error_mean_pct"
M_DRIFT = "cycle.daily_error_drift_pct"
M_ALARM = "cycle.alarm_volume_error_pct"
M_REFILL = "cycle.refill_volume_error_pct"
M_AFTER = "cycle.first_day_after_refill_error_pct"
M_FALSE = "cycle.false_alarms"
DAILY_COLUMNS = ["day", "phase", "t_start_s", "t_end_s", "mass_start_g", "mass_end_g", "programmed_ml",
                 "delivered_ml", "error_pct", "u_error_pct"]
REFILL_SETTLE_S = 600.0  # the line drains its stored volume before the refill is weighed


# -- the programmed day (pure; the tests check it by hand) ----------------------------------------


@dataclass(frozen=True)
class DayProgram:
    """One programmed day: rate changes (seconds from midnight, mL/h) and its volume."""

    changes: tuple[tuple[float, float], ...]
    programmed_ml: float


def _budget(u_pct: float | None, quantity: str, source: str) -> dict[str, Any] | None:
    """The record's uncertainty is a budget with its expanded U (k = 2): the figures below are
    standard uncertainties, which a plain number would be read as U."""
    if u_pct is None:
        return None
    return direct_budget("%", ((quantity, source, "normal", u_pct),)).as_dict()


def day_program(p: Mapping[str, float]) -> DayProgram:
    """The flex-dosing day: night rate, day rate from day_start_h to day_end_h, two boluses."""
    night, day = p["night_rate_ml_h"], p["day_rate_ml_h"]
    start_s, end_s = p["day_start_h"] * 3600.0, p["day_end_h"] * 3600.0
    basal = {0.0: night, start_s: day, end_s: night}

    def basal_at(t_s: float) -> float:
        return basal[max(k for k in basal if k <= t_s)]

    changes = dict(basal)
    bolus_ml = p["bolus_ml"]
    bolus_s = bolus_ml / p["bolus_rate_ml_h"] * 3600.0 if bolus_ml > 0 else 0.0
    extra_ml = 0.0
    if bolus_ml > 0:
        for hour in (p["bolus1_h"], p["bolus2_h"]):
            t = hour * 3600.0
            changes[t] = p["bolus_rate_ml_h"]
            changes[t + bolus_s] = basal_at(t)
            extra_ml += bolus_ml - basal_at(t) * bolus_s / 3600.0  # the bolus replaces basal
    basal_ml = night * (DAY_S - (end_s - start_s)) / 3600.0 + day * (end_s - start_s) / 3600.0
    return DayProgram(tuple(sorted(changes.items())), basal_ml + extra_ml)


def fill_ml(p: Mapping[str, float]) -> float:
    """The full reservoir: the interval's programmed volume plus the low-reservoir reserve."""
    return day_program(p).programmed_ml * p["interval_days"] + p["low_reservoir_ml"]


@dataclass(frozen=True)
class Drift:
    slope_pct_per_day: float
    u_slope_pct_per_day: float | None  # standard uncertainty (None with fewer than 3 days)


def drift_of(days: Sequence[float], errors_pct: Sequence[float]) -> Drift | None:
    """Least-squares slope of the daily error against the day, with its standard uncertainty
    s/√Σ(x−x̄)² where s² = Σ residual² / (n − 2)."""
    n = len(days)
    if n < 2:
        return None
    x_mean, y_mean = math.fsum(days) / n, math.fsum(errors_pct) / n
    sxx = math.fsum((x - x_mean) ** 2 for x in days)
    if sxx == 0:
        return None
    slope = math.fsum((x - x_mean) * (y - y_mean) for x, y in zip(days, errors_pct)) / sxx
    if n < 3:
        return Drift(slope, None)
    intercept = y_mean - slope * x_mean
    s2 = math.fsum((y - intercept - slope * x) ** 2 for x, y in zip(days, errors_pct)) / (n - 2)
    return Drift(slope, math.sqrt(s2 / sxx))


def daily_delivered_ml(mass_start_g: float, mass_end_g: float, duration_h: float, evaporation_g_h: float,
                       density: float) -> float:
    """V = (Δm + E·t) / ρ: what landed in the vessel, with the evaporation blank added back."""
    return (mass_end_g - mass_start_g + evaporation_g_h * duration_h) / density


# -- parameter checks -----------------------------------------------------------------------------


def _check_day(p: Mapping[str, float]) -> str | None:
    """0 < day_start_h < day_end_h < 24, and each bolus fits inside the day without overlapping the other."""
    if not 0 < p["day_start_h"] < p["day_end_h"] < 24:
        return (f"day_start_h ({p['day_start_h']:g}) and day_end_h ({p['day_end_h']:g}) must satisfy "
                "0 < day_start_h < day_end_h < 24 (midnight falls in the night segment)")
    if p["bolus_ml"] > 0:
        bolus_h = p["bolus_ml"] / p["bolus_rate_ml_h"]
        first, second = sorted((p["bolus1_h"], p["bolus2_h"]))
        for hour in (first, second):
            if not (0 < hour and hour + bolus_h < 24):
                return (f"a bolus at {hour:g} h lasting {bolus_h * 60:.3g} min must start after midnight "
                        "and end before the next one")
            edges = (p["day_start_h"], p["day_end_h"])
            if any(hour < e < hour + bolus_h or hour == e for e in edges):
                return f"the bolus at {hour:g} h must not overlap a rate change at {p['day_start_h']:g} or {p['day_end_h']:g} h"
        if first + bolus_h >= second:
            return f"the boluses at {first:g} h and {second:g} h overlap (each lasts {bolus_h * 60:.3g} min)"
    return None


def _check_reservoir(p: Mapping[str, float]) -> str | None:
    """interval_days of the programmed daily volume plus the low-reservoir reserve fit in reservoir_ml."""
    need = fill_ml(p)
    if need > p["reservoir_ml"]:
        daily = day_program(p).programmed_ml
        most = int((p["reservoir_ml"] - p["low_reservoir_ml"]) / daily) if daily > 0 else 0
        return (f"{p['interval_days']:g} days of {daily:.4g} mL/day plus the {p['low_reservoir_ml']:g} mL reserve "
                f"need {need:.4g} mL, more than reservoir_ml = {p['reservoir_ml']:g} mL; at these rates at most "
                f"{most} days fit (lower the rates or the interval, or give a larger reservoir)")
    return None


# -- steps ----------------------------------------------------------------------------------------


def blank(ctx: StepContext) -> None:
    """Tare, then weigh the idle vessel over blank_h: its loss rate is the evaporation E."""
    tare(ctx)
    log = BalanceLog.of(ctx)
    t0, m0 = ctx.now_s(), log.stable(ctx)
    ctx.wait(ctx.params["blank_h"] * 3600.0, every_s=ctx.params["balance_read_min"] * 60.0,
             on_tick=lambda _t: log.read(ctx))
    t1, m1 = ctx.now_s(), log.stable(ctx)
    hours = (t1 - t0) / 3600.0
    e_g_h = max(0.0, (m0 - m1) / hours)
    u_e = math.sqrt(2.0) * ctx.params["balance_resolution_g"] / math.sqrt(12.0) / hours
    ctx.state["evaporation"] = (e_g_h, u_e)
    ctx.event("evaporation_blank", f"evaporation blank {e_g_h * 1000:.4f} mg/h over {hours:g} h "
                                   f"(u = {u_e * 1000:.4f} mg/h)", evaporation_g_h=e_g_h, u_g_h=u_e)


class _Day:
    """Plays programmed days, reading the balance at midnight and polling the pump."""

    def __init__(self, ctx: StepContext, program: DayProgram, alarm_at_ml: float | None) -> None:
        self.ctx = ctx
        self.program = program
        self.alarm_at_ml = alarm_at_ml
        self.log = BalanceLog.of(ctx)
        self.alarm_t_s: float | None = None
        self.alarm_count_ml: float | None = None
        self._next_read_s = -math.inf

    def poll(self, _t: float = 0.0) -> None:
        ctx = self.ctx
        alarm = pump_alarm(ctx)
        if alarm:
            ctx.state["false_alarms"] = ctx.state.get("false_alarms", 0) + 1
            ctx.event("alarm", f"pump alarm {alarm!r} during the interval", alarm=alarm)
        if self.alarm_at_ml is not None and self.alarm_t_s is None:
            count = ctx.pump.dispensed_ml()
            if count >= self.alarm_at_ml - 1e-9:
                self.alarm_t_s, self.alarm_count_ml = ctx.now_s(), count
                ctx.event("low_reservoir", f"low-reservoir alarm: pump count {count:.4f} mL reached "
                                           f"{self.alarm_at_ml:.4f} mL", count_ml=count)
        if ctx.now_s() >= self._next_read_s:
            self.log.read(ctx)
            self._next_read_s = ctx.now_s() + ctx.params["balance_read_min"] * 60.0 - 1e-6

    def play(self, day_start_s: float) -> None:
        """One programmed day from ``day_start_s`` (the pump runs at the night rate at midnight),
        cut short by the low-reservoir alarm."""
        ctx = self.ctx
        poll_s = ctx.params["poll_s"]
        alarmed = lambda: self.alarm_t_s is not None  # noqa: E731
        for offset, rate in self.program.changes:
            t = day_start_s + offset
            if t > ctx.now_s():
                watch(ctx, t - ctx.now_s(), until=alarmed, every_s=poll_s, on_tick=self.poll)
            if alarmed():
                return
            if offset > 0:
                set_rate(ctx, rate)
        watch(ctx, day_start_s + DAY_S - ctx.now_s(), until=alarmed, every_s=poll_s, on_tick=self.poll)


def _record_day(ctx: StepContext, day: int, phase: str, t0: float, m0: float, t1: float, m1: float) -> None:
    program = day_program(ctx.params)
    e_g_h, u_e = ctx.state["evaporation"]
    density = density_g_ml(ctx, ctx.params["density_g_ml"])
    hours = (t1 - t0) / 3600.0
    delivered = daily_delivered_ml(m0, m1, hours, e_g_h, density)
    error = 100.0 * (delivered - program.programmed_ml) / program.programmed_ml
    u_mass = math.hypot(math.sqrt(2.0) * ctx.params["balance_resolution_g"] / math.sqrt(12.0), u_e * hours)
    u_error = 100.0 * u_mass / density / program.programmed_ml
    ctx.raw("daily", DAILY_COLUMNS).row(day, phase, t0, t1, m0, m1, program.programmed_ml, delivered, error, u_error)
    ctx.state.setdefault("days", []).append((day, phase, delivered, error, u_error))


def interval(ctx: StepContext) -> None:
    """From the full reservoir, repeat the programmed day until the low-reservoir alarm."""
    p = ctx.params
    program = day_program(p)
    alarm_at = fill_ml(p) - p["low_reservoir_ml"]
    ctx.event("fill", f"reservoir full: {fill_ml(p):.4f} mL ({program.programmed_ml:.4f} mL/day for "
                      f"{p['interval_days']:g} days + {p['low_reservoir_ml']:g} mL reserve)",
              fill_ml=fill_ml(p), daily_ml=program.programmed_ml)
    ctx.state["false_alarms"] = 0
    player = _Day(ctx, program, alarm_at)
    log = player.log
    t_start = ctx.now_s()
    ctx.state["t_fill_s"], ctx.state["m_fill_g"] = t_start, log.read(ctx)
    start_pump(ctx, program.changes[0][1])
    day, t0, m0 = 0, t_start, ctx.state["m_fill_g"]
    while player.alarm_t_s is None:
        day += 1
        if day > p["interval_days"] + 1:
            ctx.fail(f"no low-reservoir alarm after {day - 1} days (expected after {p['interval_days']:g}): "
                     f"the pump count read {ctx.pump.dispensed_ml():.4f} mL, the alarm is at {alarm_at:.4f} mL")
        player.play(t0)  # the whole day, or until the alarm
        if ctx.now_s() >= t0 + DAY_S - 1e-6:  # the day is complete (the alarm may end it exactly)
            t1, m1 = ctx.now_s(), log.read(ctx)
            _record_day(ctx, day, "interval", t0, m0, t1, m1)
            ctx.progress(min(1.0, day / p["interval_days"]))
            t0, m0 = t1, m1
        else:
            day -= 1  # a partial day is not a day of the series
    stop_pump(ctx)
    assert player.alarm_t_s is not None
    ctx.state["alarm"] = (player.alarm_t_s, log.read(ctx), player.alarm_count_ml,
                          (player.alarm_t_s - t_start) / DAY_S)


def refill_weighing(ctx: StepContext) -> None:
    """After the operator's refill: let the line drain, weigh, start the counter from zero."""
    ctx.wait(REFILL_SETTLE_S, every_s=ctx.params["poll_s"])
    ctx.state["m_refill_g"] = BalanceLog.of(ctx).stable(ctx)
    ctx.state["t_refill_s"] = ctx.now_s()
    ctx.pump.clear_dispensed()


def after_refill(ctx: StepContext) -> None:
    """One more programmed day from the refilled reservoir."""
    program = day_program(ctx.params)
    player = _Day(ctx, program, None)
    t0, m0 = ctx.now_s(), player.log.read(ctx)
    start_pump(ctx, program.changes[0][1])
    player.play(t0)
    t1, m1 = ctx.now_s(), player.log.read(ctx)
    stop_pump(ctx)
    _record_day(ctx, int(ctx.params["interval_days"]) + 1, "after_refill", t0, m0, t1, m1)


def evaluate(ctx: StepContext) -> None:
    p = ctx.params
    program = day_program(p)
    density = density_g_ml(ctx, p["density_g_ml"])
    e_g_h, u_e = ctx.state["evaporation"]
    days = [d for d in ctx.state.get("days", []) if d[1] == "interval"]
    after = [d for d in ctx.state.get("days", []) if d[1] == "after_refill"]
    errors = [d[3] for d in days]
    u_day = max((d[4] for d in days), default=None)
    if errors:
        worst = max(errors, key=abs)
        ctx.measure(M_WORST, worst, uncertainty=_budget(u_day, "daily volume", "balance resolution and "
                                                            "evaporation blank, the largest day's"),
                    detail=f"day {days[errors.index(worst)][0]} of {len(errors)}; "
                           f"programmed {program.programmed_ml:.4f} mL/day")
        ctx.measure(M_MEAN, math.fsum(errors) / len(errors),
                    uncertainty=_budget(None if u_day is None else u_day / math.sqrt(len(errors)),
                                        "mean of the daily volumes", f"largest day's u / sqrt({len(errors)})"),
                    detail=f"{len(errors)} days, evaporation blank {e_g_h * 1000:.4f} mg/h added back")
    else:
        ctx.measure(M_WORST, None, detail="no complete day before the low-reservoir alarm")
        ctx.measure(M_MEAN, None, detail="no complete day before the low-reservoir alarm")
    measured = days + after  # the day after the refill continues the series (same pump, same line)
    drift = drift_of([d[0] for d in measured], [d[3] for d in measured])
    n_days = p["interval_days"]
    if drift is None:
        ctx.measure(M_DRIFT, None, detail=f"a drift needs at least 2 days ({len(measured)} measured)")
    else:
        u = drift.u_slope_pct_per_day
        ctx.measure(M_DRIFT, drift.slope_pct_per_day * n_days,
                    uncertainty=_budget(None if u is None else u * n_days, "drift over the interval",
                                        "least-squares slope from the residuals × interval days"),
                    detail=f"slope {drift.slope_pct_per_day:.5f} %/day"
                           + ("" if u is None else f" (u = {u:.5f} %/day)")
                           + f" × {n_days:g} days; least squares over {len(measured)} days (the interval "
                           "and the day after the refill)" + ("" if u is not None else "; no uncertainty with 2 days"))
    t_alarm, m_alarm, count, alarm_day = ctx.state["alarm"]
    expected = fill_ml(p) - p["low_reservoir_ml"]
    hours = (t_alarm - ctx.state["t_fill_s"]) / 3600.0
    at_alarm = daily_delivered_ml(ctx.state["m_fill_g"], m_alarm, hours, e_g_h, density)
    u_rel = 100.0 * math.hypot(math.sqrt(2.0) * p["balance_resolution_g"] / math.sqrt(12.0), u_e * hours) / density
    ctx.measure(M_ALARM, 100.0 * (at_alarm - expected) / expected,
                uncertainty=_budget(u_rel / expected, "volume at the alarm", "balance resolution (two weighings) "
                                    "and the evaporation blank"),
                detail=f"{at_alarm:.4f} mL delivered by weight when the pump count read {count:.4f} mL "
                       f"(day {alarm_day:.3f}); expected {expected:.4f} mL")
    hours_refill = (ctx.state["t_refill_s"] - ctx.state["t_fill_s"]) / 3600.0
    refill = daily_delivered_ml(ctx.state["m_fill_g"], ctx.state["m_refill_g"], hours_refill, e_g_h, density)
    ctx.event("refill", f"refill volume {refill:.4f} mL (what left the reservoir by weight)", refill_ml=refill)
    ctx.measure(M_REFILL, 100.0 * (refill - expected) / expected,
                uncertainty=_budget(u_rel / expected, "refill volume", "balance resolution (two weighings) "
                                    "and the evaporation blank"),
                detail=f"refill {refill:.4f} mL by weight vs {expected:.4f} mL expected by the programmer")
    if after:
        ctx.measure(M_AFTER, after[0][3], uncertainty=_budget(after[0][4], "daily volume", "balance "
                                                                 "resolution and evaporation blank"),
                    detail=f"{after[0][2]:.4f} mL vs {program.programmed_ml:.4f} mL programmed")
    else:
        ctx.measure(M_AFTER, None, detail="the day after the refill was not measured")
    ctx.measure(M_FALSE, float(ctx.state.get("false_alarms", 0)),
                detail=f"pump alarms over {len(days)} days before the low-reservoir alarm")


def _interval_s(p: Mapping[str, float]) -> float:
    return p["interval_days"] * DAY_S


REFILL = Instruction("refill", "Low-reservoir alarm: empty the reservoir and refill it with the fill volume "
                               "shown in the run's 'fill' event (on the simulated bench: nothing to do).")

PROCEDURE = Procedure(
    id="reservoir_cycle",
    version="1.0.0",
    title="Refill interval: daily delivery to the low-reservoir alarm, refill, day after (gravimetric)",
    requirements=("REQ-CYCLE-001", "REQ-CYCLE-002", "REQ-CYCLE-003", "REQ-CYCLE-004", "REQ-CYCLE-005"),
    description=__doc__ or "",
    parameters=(
        Parameter("interval_days", "day", 42, low=1, high=90, integer=True,
                  description="refill interval: days of the programmed schedule until the low-reservoir alarm"),
        Parameter("night_rate_ml_h", "mL/h", 0.006, low=0.001, high=1.0, description="basal rate from midnight"),
        Parameter("day_rate_ml_h", "mL/h", 0.009, low=0.001, high=1.0,
                  description="basal rate from day_start_h to day_end_h"),
        Parameter("day_start_h", "h", 7.0, low=0.5, high=23.0, description="start of the day rate"),
        Parameter("day_end_h", "h", 22.0, low=1.0, high=23.5, description="end of the day rate"),
        Parameter("bolus_ml", "mL", 0.005, low=0.0, high=1.0, description="each bolus (0 = none)"),
        Parameter("bolus_rate_ml_h", "mL/h", 0.1, low=0.01, high=10.0, description="rate of a bolus"),
        Parameter("bolus1_h", "h", 8.0, low=0.5, high=23.5, description="time of day of the first bolus"),
        Parameter("bolus2_h", "h", 18.0, low=0.5, high=23.5, description="time of day of the second bolus"),
        Parameter("reservoir_ml", "mL", 10.0, low=0.5, high=60.0,
                  description="reservoir capacity (the stand-in's syringe)"),
        Parameter("low_reservoir_ml", "mL", 1.0, low=0.1, high=10.0,
                  description="reserve left when the low-reservoir alarm comes"),
        Parameter("blank_h", "h", 2.0, low=0.5, high=48.0, description="evaporation blank duration"),
        Parameter("balance_read_min", "min", 10.0, low=1.0, high=240.0,
                  description="balance reading interval (plus every midnight)"),
        Parameter("poll_s", "s", 300.0, low=1.0, high=3600.0,
                  description="how often the pump is polled (the low-reservoir alarm resolves to this)"),
        Parameter("balance_resolution_g", "g", 0.0001, low=1e-7, high=0.01, description="balance readability"),
        Parameter("density_g_ml", "g/mL", 0.0, low=0.0, high=2.0,
                  description="fluid density; 0 = the station's [fluid] density"),
    ),
    checks=(_check_day, _check_reservoir),
    daq_stored_hz=0.1,  # 10 s means: ~0.2 MB a simulated day on disk instead of 41 MB at 20 Hz
    item_under_test=(ITEM_SERIAL,),
    steps=(
        SETUP_LINE,
        Step("blank", blank, timeout_s=lambda p: p["blank_h"] * 3600.0 + 600.0,
             duration_s=lambda p: p["blank_h"] * 3600.0),
        Step("interval", interval, timeout_s=lambda p: _interval_s(p) + 2 * DAY_S,
             duration_s=_interval_s),
        REFILL,
        Step("refill_weighing", refill_weighing, timeout_s=REFILL_SETTLE_S + 600.0, duration_s=REFILL_SETTLE_S),
        Step("after_refill", after_refill, timeout_s=DAY_S + 3600.0, duration_s=DAY_S),
        Step("evaluate", evaluate, timeout_s=120.0),
    ),
    measurements=(
        Measurement(M_WORST, "%", "worst day: delivered vs programmed"),
        Measurement(M_MEAN, "%", "mean daily error over the interval"),
        Measurement(M_DRIFT, "%", "drift of the daily error over the interval"),
        Measurement(M_ALARM, "%", "volume at the low-reservoir alarm vs expected"),
        Measurement(M_REFILL, "%", "refill volume vs expected"),
        Measurement(M_AFTER, "%", "first day after the refill: delivered vs programmed"),
        Measurement(M_FALSE, "", "pump alarms during the interval"),
    ),
    spec_file="reservoir_cycle.spec.toml",
)
