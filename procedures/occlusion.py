"""Occlusion: time to alarm and pressure at alarm, for the pump's own alarm and for the rig's
detector separately, then the post-occlusion bolus (IEC 60601-2-24 occlusion test, adapted).

Method: tare the weighing vessel; deliver at ``rate_ml_h`` until the detectors have settled and
learnt the healthy line (``baseline_min``); close the DAQ's downstream occlusion valve and keep the
pump running. Two alarms are timed from the valve closing, each on its own:

* the **pump's** alarm — the item under test reporting it cannot deliver (NE-1000: motor stall,
  PumpAlarm "stall"); pressure at alarm = upstream line pressure when the alarm is seen;
* the **rig's** ``occlusion`` detector (pressure trend, rig.analysis.detection) — its own event, not the
  first event of any detector (the threshold backstop or a kink alarm do not count).

The wait ends when both have alarmed or after ``max_wait_min``. If the line approaches the
station's overpressure limit first (a pump without a pressure alarm) the procedure stops the pump
itself, so the interlock never has to. Then the pump is stopped, the balance read stable, the valve
released, and after ``bolus_settle_min`` the balance read stable again: the post-occlusion bolus is
the mass gained ÷ density — the volume the line's compliance stored under pressure (≈ C·ΔP).

A pressure threshold needs C·ΔP/Q to alarm (≈ 42 min at 1 mL/h for ΔP = 70 kPa); the times here
are for the rate given, so the spec limits are stated for the default 1 mL/h and the tests run
faster rates where they say so.
"""

from __future__ import annotations

from procedures._gravimetry import BalanceLog, density_g_ml, tare
from procedures._line_monitor import establish_baseline, guard_pressure, LineMonitor, monitor_of, watch
from procedures._pump import pump_alarm, start_pump, stop_pump
from procedures._setup import ITEM_SERIAL, SETUP_LINE
from rig.engine.context import StepContext
from rig.engine.procedure import Measurement, Parameter, Procedure, Step

M_PUMP_TIME, M_PUMP_P = "occlusion.pump.time_to_alarm_min", "occlusion.pump.pressure_at_alarm_kpa"
M_DET_TIME, M_DET_P = "occlusion.detector.time_to_alarm_min", "occlusion.detector.pressure_at_alarm_kpa"
M_BOLUS = "occlusion.bolus_ml"


def prepare(ctx: StepContext) -> None:
    tare(ctx)
    monitor = LineMonitor.start(ctx)
    start_pump(ctx, ctx.params["rate_ml_h"], monitor)


def baseline(ctx: StepContext) -> None:
    establish_baseline(ctx, monitor_of(ctx), ctx.params["baseline_min"] * 60.0)


def occlude(ctx: StepContext) -> None:
    """Close the valve; watch both alarms until both came, the wait ran out, or the line nears
    the overpressure limit."""
    monitor = monitor_of(ctx)
    ctx.daq.set_occlusion(True)
    t_occ = ctx.now_s()
    ctx.state["t_occlusion_s"] = t_occ
    ctx.event("fault", "occlusion valve closed", fault="occlusion")
    pump: dict[str, float] = {}

    def done() -> bool:
        if not pump:
            alarm = pump_alarm(ctx)
            if alarm is not None:
                t = ctx.now_s()
                pressure = ctx.daq.latest().get("pressure_upstream_kpa")
                pump.update(t_s=t, pressure_kpa=float("nan") if pressure is None else float(pressure))
                ctx.event("pump_alarm", f"pump alarm {alarm!r} at t = {t:.1f} s", alarm=alarm)
        if not pump and guard_pressure(ctx, monitor):
            ctx.event("warning", "line pressure near the overpressure limit without a pump alarm: "
                                 "stopping the pump")
            return True
        return bool(pump) and monitor.first("occlusion", t_occ) is not None

    watch(ctx, ctx.params["max_wait_min"] * 60.0, until=done)
    stop_pump(ctx, monitor)
    detector = monitor.first("occlusion", t_occ)
    wait = f"no alarm within {ctx.params['max_wait_min']:g} min of the occlusion"
    ctx.measure(M_PUMP_TIME, (pump["t_s"] - t_occ) / 60.0 if pump else None,
                detail=f"pump alarm at t = {pump['t_s']:.1f} s" if pump else wait)
    ctx.measure(M_PUMP_P, pump.get("pressure_kpa"),
                detail="upstream pressure when the pump alarm was seen" if pump else wait)
    ctx.measure(M_DET_TIME, None if detector is None else (detector.t_s - t_occ) / 60.0,
                detail=detector.detail if detector else wait + " (occlusion detector)")
    ctx.measure(M_DET_P, None if detector is None else detector.pressure_upstream_kpa,
                detail="upstream pressure at the detector alarm" if detector else wait)


def release_and_weigh_bolus(ctx: StepContext) -> None:
    log = BalanceLog.of(ctx)
    before_g = log.stable(ctx)
    ctx.daq.set_occlusion(False)
    ctx.event("fault", "occlusion valve released", fault="none")
    ctx.wait(ctx.params["bolus_settle_min"] * 60.0, every_s=10.0, on_tick=lambda _t: log.read(ctx))
    after_g = log.stable(ctx)
    density = density_g_ml(ctx)
    bolus_ml = (after_g - before_g) / density
    ctx.measure(M_BOLUS, bolus_ml,
                detail=f"balance {before_g:.4f} g -> {after_g:.4f} g after release, ÷ {density:g} g/mL")


def _wait_s(p: dict[str, float]) -> float:
    return p["max_wait_min"] * 60.0


PROCEDURE = Procedure(
    id="occlusion",
    version="1.0.0",
    title="Occlusion: time and pressure to alarm (pump and rig detector), post-occlusion bolus",
    requirements=("REQ-OCC-001", "REQ-OCC-002", "REQ-DET-OCC-001", "REQ-DET-OCC-002", "REQ-OCC-003"),
    description=__doc__ or "",
    parameters=(
        Parameter("rate_ml_h", "mL/h", 1.0, low=0.01, high=10.0, description="delivery rate"),
        Parameter("baseline_min", "min", 5.0, low=1.0, high=240.0,
                  description="healthy delivery before the occlusion (detectors settle and learn)"),
        Parameter("max_wait_min", "min", 120.0, low=1.0, high=2880.0,
                  description="longest wait for both alarms after closing the valve"),
        Parameter("bolus_settle_min", "min", 5.0, low=0.5, high=60.0,
                  description="after releasing the occlusion, time for the stored volume to drain"),
    ),
    item_under_test=(ITEM_SERIAL,),
    steps=(
        SETUP_LINE,
        Step("prepare", prepare, timeout_s=180.0, duration_s=10.0),
        Step("baseline", baseline, timeout_s=lambda p: p["baseline_min"] * 60.0 + 3600.0,
             duration_s=lambda p: p["baseline_min"] * 60.0),
        Step("occlude", occlude, timeout_s=lambda p: _wait_s(p) + 300.0, duration_s=_wait_s),
        Step("release_and_weigh_bolus", release_and_weigh_bolus,
             timeout_s=lambda p: p["bolus_settle_min"] * 60.0 + 300.0,
             duration_s=lambda p: p["bolus_settle_min"] * 60.0),
    ),
    measurements=(
        Measurement(M_PUMP_TIME, "min", "valve closed -> the pump's own occlusion alarm"),
        Measurement(M_PUMP_P, "kPa", "upstream line pressure at the pump's alarm"),
        Measurement(M_DET_TIME, "min", "valve closed -> the rig's occlusion detector alarm"),
        Measurement(M_DET_P, "kPa", "upstream line pressure at the detector alarm"),
        Measurement(M_BOLUS, "mL", "volume delivered after releasing the occlusion (gravimetric)"),
    ),
    spec_file="occlusion.spec.toml",
)
