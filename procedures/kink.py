"""Kink: partial restrictions at graded severities — detected or not, detection latency, and the
delivered-flow error while kinked.

Method, for each severity of ``SEVERITIES_PCT`` (50, 75, 90, 100 % restriction of the pinch
valve, DAQ analog output): (re)start delivery at ``rate_ml_h`` so the detectors begin a fresh
regime (alarms latch per regime), deliver ``baseline_min`` until they monitor, read the balance,
set the pinch valve, hold it ``hold_min`` while watching, read the balance again, open the valve,
stop the pump and let the line relax for a minute.

* kink.P<severity>.detected        1 if a restriction alarm came during the hold, else 0. A
                                   restriction alarm is the ``kink`` detector's, or the
                                   ``occlusion`` trend detector's (a 100 % kink *is* an occlusion);
                                   which one fired is in the detail.
* kink.P<severity>.latency_min     valve set -> first restriction alarm.
* kink.P<severity>.flow_error_pct  100 · (delivered − rate × hold)/(rate × hold), delivered = balance
                                   gain over the hold ÷ density. A positive-displacement pump keeps
                                   delivering through a partial kink (the pressure rises to push the
                                   flow through), so only a full kink shows a large deficit.
"""

from __future__ import annotations

from collections.abc import Mapping

from procedures._gravimetry import BalanceLog, density_g_ml, tare
from procedures._line_monitor import establish_baseline, guard_pressure, LineMonitor, watch
from procedures._pump import start_pump, stop_pump
from procedures._setup import ITEM_SERIAL, SETUP_LINE
from rig.engine.context import StepContext
from rig.engine.procedure import Measurement, Parameter, Procedure, Step

SEVERITIES_PCT: tuple[int, ...] = (50, 75, 90, 100)
RESTRICTION_DETECTORS = ("kink", "occlusion")
# Pump stopped between severities: the line drains what a kink stored, and the detectors see the
# regime end (their alarms latch per regime, so the next severity must start a fresh one).
RELAX_S = 60.0


def _name(severity: int, what: str) -> str:
    return f"kink.P{severity}.{what}"


def prepare(ctx: StepContext) -> None:
    tare(ctx)
    LineMonitor.start(ctx)


def run_severity(ctx: StepContext, severity: int) -> None:
    monitor = ctx.state["monitor"]
    log = BalanceLog.of(ctx)
    rate = ctx.params["rate_ml_h"]
    start_pump(ctx, rate, monitor)
    establish_baseline(ctx, monitor, ctx.params["baseline_min"] * 60.0)
    mass0_g = log.read(ctx)
    ctx.daq.set_kink_pct(float(severity))
    t_kink = ctx.now_s()
    ctx.event("fault", f"pinch valve at {severity} %", fault="kink", severity_pct=severity)

    def hit() -> list:
        return [e for e in monitor.events() if e.detector in RESTRICTION_DETECTORS and e.t_s >= t_kink]

    # hold the full time (the flow error is over the whole hold), unless the line nears the limit
    watch(ctx, ctx.params["hold_min"] * 60.0, until=lambda: guard_pressure(ctx, monitor))
    t_end = ctx.now_s()
    mass1_g = log.read(ctx)
    ctx.daq.set_kink_pct(0.0)
    stop_pump(ctx, monitor)
    ctx.wait(RELAX_S)
    events = hit()
    first = min(events, key=lambda e: e.t_s) if events else None
    ctx.measure(_name(severity, "detected"), 1.0 if first else 0.0,
                detail=(f"{first.detector} alarm: {first.detail}" if first else
                        f"no restriction alarm within {(t_end - t_kink) / 60:.3g} min"))
    ctx.measure(_name(severity, "latency_min"), None if first is None else (first.t_s - t_kink) / 60.0,
                detail="" if first is None else f"kink at t = {t_kink:.1f} s, alarm at t = {first.t_s:.1f} s")
    programmed_ml = rate * (t_end - t_kink) / 3600.0
    delivered_ml = (mass1_g - mass0_g) / density_g_ml(ctx)
    ctx.measure(_name(severity, "flow_error_pct"), 100.0 * (delivered_ml - programmed_ml) / programmed_ml,
                detail=f"delivered {delivered_ml:.5f} mL vs programmed {programmed_ml:.5f} mL while kinked")


def _volume_per_hold(p: Mapping[str, float]) -> str | None:
    """rate_ml_h × hold_min / 60 ≥ 0.01 mL per hold: the flow error needs 100 balance digits."""
    volume_ml = p["rate_ml_h"] * p["hold_min"] / 60.0
    if volume_ml >= 0.01:
        return None
    return (f"rate_ml_h × hold_min gives {volume_ml:.3g} mL per hold; the flow error needs at least "
            "0.01 mL (100 balance digits): raise the rate or hold_min")


def _severity_step(severity: int) -> Step:
    def run(ctx: StepContext) -> None:
        run_severity(ctx, severity)

    run.__doc__ = f"Deliver, learn, kink {severity} %, hold, release."
    return Step(f"kink_{severity}", run,
                timeout_s=lambda p: (p["baseline_min"] + p["hold_min"]) * 60.0 + RELAX_S + 3600.0,
                duration_s=lambda p: (p["baseline_min"] + p["hold_min"]) * 60.0 + RELAX_S)


PROCEDURE = Procedure(
    id="kink",
    version="1.0.0",
    title="Kink (partial restriction) at 50/75/90/100 %: detection, latency, flow error",
    requirements=("REQ-DET-KINK-001", "REQ-DET-KINK-002", "REQ-KINK-003"),
    description=__doc__ or "",
    parameters=(
        Parameter("rate_ml_h", "mL/h", 1.0, low=0.05, high=10.0, description="delivery rate"),
        Parameter("baseline_min", "min", 5.0, low=1.0, high=240.0,
                  description="healthy delivery before each kink (detectors settle and learn)"),
        Parameter("hold_min", "min", 10.0, low=1.0, high=240.0,
                  description="how long each severity is held (detection window and flow-error period)"),
    ),
    checks=(_volume_per_hold,),
    item_under_test=(ITEM_SERIAL,),
    steps=(SETUP_LINE, Step("prepare", prepare, timeout_s=180.0, duration_s=10.0),
           *(_severity_step(s) for s in SEVERITIES_PCT)),
    measurements=tuple(
        m for s in SEVERITIES_PCT for m in (
            Measurement(_name(s, "detected"), "", f"1 when a restriction alarm came during the {s} % kink"),
            Measurement(_name(s, "latency_min"), "min", f"{s} % kink set -> first restriction alarm"),
            Measurement(_name(s, "flow_error_pct"), "%", f"delivered vs programmed volume during the {s} % kink"),
        )
    ),
    spec_file="kink.spec.toml",
)
