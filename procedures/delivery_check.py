"""Constant-rate delivery check: does the pump deliver what it was programmed to, by weight?

Method (gravimetric, after the IEC 60601-2-24 flow-accuracy principle, shortened to a quick check):
tare the weighing vessel, run the pump at ``rate_ml_h`` for ``duration_min``, sample the balance
every ``sample_interval_s`` (raw/balance.csv), stop, let the cell settle, and weigh.

* volume_error_pct    = 100 · (V_delivered − V_programmed) / V_programmed, with
                        V_delivered = Δm / ρ (ρ = the station's fluid density, 0.998 g/mL for
                        water at 20 °C) and V_programmed = rate × the pumping time actually elapsed.
* flow_rate_error_pct = 100 · (Q − rate) / rate, Q = least-squares slope of mass vs time over the
                        delivery after the first 10 % (line compliance fills first), ÷ ρ.
* pump_count_error_pct = the pump's own dispensed count vs programmed: a pump that counts right
                        but displaces wrong (worn syringe drive) passes this one and fails the
                        gravimetric ones — the reason the balance, not the pump, is the reference.

Evaporation from the open vessel (~0.0005 g/h) is < 0.05 % of the default delivery and is not
corrected here (the flow-accuracy procedure applies the blank correction). The programmed volume
must be ≥ 0.1 mL so the balance resolution (0.1 mg) stays below 0.1 % and the pump's volume
display (1 µL steps) below 1 %.
"""

from __future__ import annotations

from collections.abc import Mapping

from instruments.pump import PumpAlarm
from procedures._uncertainty import gravimetric_uncertainty
from rig.engine.context import StepContext
from rig.engine.operator import Entry, Instruction
from rig.engine.procedure import Measurement, Parameter, Procedure, Step

MIN_PROGRAMMED_ML = 0.1
BALANCE_RESOLUTION_G = 0.0001
EARLY_FRACTION_SKIPPED = 0.10  # of the delivery, excluded from the flow regression


def _programmed_volume(params: Mapping[str, float]) -> str | None:
    """rate_ml_h × duration_min / 60 ≥ 0.1 mL (MIN_PROGRAMMED_ML): enough for the balance to resolve."""
    volume_ml = params["rate_ml_h"] * params["duration_min"] / 60.0
    if volume_ml < MIN_PROGRAMMED_ML:
        return (f"rate_ml_h × duration_min gives {volume_ml:.3g} mL; the check needs at least "
                f"{MIN_PROGRAMMED_ML} mL to be resolved by the balance (raise the rate or the duration)")
    return None


def tare_balance(ctx: StepContext) -> None:
    """Take the empty weighing vessel out (tare), then read the stable starting mass."""
    ctx.wait(2.0)  # let the cell settle after the operator's set-up (tare retries until stable)
    ctx.state["tare_g"] = float(ctx.until_stable(ctx.balance.tare))
    ctx.state["mass_start_g"] = ctx.stable_mass_g()
    ctx.raw("balance", ["t_s", "mass_g", "stable"]).row(ctx.now_s(), ctx.state["mass_start_g"], 1)


def start_pump(ctx: StepContext) -> None:
    ctx.pump.stop()
    ctx.pump.clear_dispensed()
    ctx.pump.set_rate_ml_h(ctx.params["rate_ml_h"])
    ctx.pump.start()
    ctx.state["t_start_s"] = ctx.now_s()
    if not ctx.pump.is_running():
        ctx.fail("the pump did not start (it reads back not running after RUN)")


def deliver(ctx: StepContext) -> None:
    """Sample the balance on a fixed schedule while the pump runs; stop on a pump alarm."""
    raw = ctx.raw("balance", ["t_s", "mass_g", "stable"])
    samples: list[tuple[float, float]] = ctx.state.setdefault("samples", [])

    def sample(t_s: float) -> None:
        mass_g, stable = ctx.balance.read_mass_immediate_g()
        raw.row(t_s, mass_g, int(bool(stable)))
        samples.append((t_s, mass_g))
        ctx.live("mass_g", mass_g, "g")
        try:
            alarm = ctx.pump.alarm()
        except PumpAlarm as exc:
            alarm = exc.alarm
        if alarm:
            ctx.event("alarm", f"pump alarm {alarm!r} during delivery at t = {t_s:.1f} s", alarm=alarm)
            ctx.fail(f"pump alarm {alarm!r} during delivery")

    ctx.wait(ctx.params["duration_min"] * 60.0, every_s=ctx.params["sample_interval_s"], on_tick=sample)


def stop_pump(ctx: StepContext) -> None:
    ctx.pump.stop()
    ctx.state["t_stop_s"] = ctx.now_s()
    if ctx.pump.is_running():
        ctx.fail("the pump still reads back running after stop")
    ctx.state["dispensed_ml"] = float(ctx.pump.dispensed_ml())


def settle_and_weigh(ctx: StepContext) -> None:
    """The line drains its stored volume and the cell settles; then one stable reading."""
    raw = ctx.raw("balance", ["t_s", "mass_g", "stable"])

    def sample(t_s: float) -> None:
        mass_g, stable = ctx.balance.read_mass_immediate_g()
        raw.row(t_s, mass_g, int(bool(stable)))
        ctx.live("mass_g", mass_g, "g")

    ctx.wait(ctx.params["settle_s"], every_s=min(10.0, ctx.params["settle_s"]), on_tick=sample)
    ctx.state["mass_end_g"] = ctx.stable_mass_g()
    raw.row(ctx.now_s(), ctx.state["mass_end_g"], 1)


def _slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope (g/s); None with fewer than three points."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_m = sum(m for _, m in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var <= 0:
        return None
    return sum((t - mean_t) * (m - mean_m) for t, m in points) / var


def evaluate(ctx: StepContext) -> None:
    rate_ml_h = ctx.params["rate_ml_h"]
    density = ctx.station.fluid.density_g_ml
    pumping_h = (ctx.state["t_stop_s"] - ctx.state["t_start_s"]) / 3600.0
    programmed_ml = rate_ml_h * pumping_h
    delivered_ml = (ctx.state["mass_end_g"] - ctx.state["mass_start_g"]) / density
    # GUM budget (k = 2) of the two stable readings, from the station balance's calibration data
    ctx.measure("volume_error_pct", 100.0 * (delivered_ml - programmed_ml) / programmed_ml,
                uncertainty=gravimetric_uncertainty(
                    ctx, mass_g=programmed_ml * density, duration_s=pumping_h * 3600.0, density_g_ml=density,
                    what="delivered volume error", resolution_g=BALANCE_RESOLUTION_G),
                detail=f"delivered {delivered_ml:.5f} mL vs programmed {programmed_ml:.5f} mL")

    t_start, t_stop = ctx.state["t_start_s"], ctx.state["t_stop_s"]
    skip_until = t_start + EARLY_FRACTION_SKIPPED * (t_stop - t_start)
    slope_g_s = _slope([(t, m) for t, m in ctx.state.get("samples", []) if t >= skip_until])
    flow_ml_h = None if slope_g_s is None else slope_g_s * 3600.0 / density
    ctx.measure("flow_rate_error_pct",
                None if flow_ml_h is None else 100.0 * (flow_ml_h - rate_ml_h) / rate_ml_h,
                detail="too few samples for a slope" if flow_ml_h is None else
                f"regression flow {flow_ml_h:.5f} mL/h vs programmed {rate_ml_h:g} mL/h")

    dispensed_ml = ctx.state["dispensed_ml"]
    ctx.measure("pump_count_error_pct", 100.0 * (dispensed_ml - programmed_ml) / programmed_ml,
                detail=f"pump reports {dispensed_ml:.4f} mL vs programmed {programmed_ml:.5f} mL")


PROCEDURE = Procedure(
    id="delivery_check",
    version="1.0.0",
    title="Constant-rate delivery check (gravimetric)",
    requirements=("REQ-DEL-001", "REQ-DEL-002", "REQ-DEL-003"),
    description=__doc__ or "",
    parameters=(
        Parameter("rate_ml_h", "mL/h", 1.0, low=0.05, high=10.0,
                  description="programmed constant rate (intrathecal range tops out near 1 mL/h)"),
        Parameter("duration_min", "min", 10.0, low=1.0, high=1440.0, description="delivery time"),
        Parameter("sample_interval_s", "s", 30.0, low=1.0, high=900.0,
                  description="balance sampling interval during delivery"),
        Parameter("settle_s", "s", 30.0, low=5.0, high=600.0,
                  description="wait after stopping for the line to drain and the cell to settle"),
    ),
    checks=(_programmed_volume,),
    item_under_test=(
        Entry("item_serial", "Serial number of the pump under test", pattern=r"[A-Za-z0-9][A-Za-z0-9._/-]{0,39}",
              example="NE1000-SIM-0001"),
    ),
    steps=(
        Instruction("setup", "Prime the line and place the catheter outlet in the weighing vessel on "
                             "the balance; close the draft shield.", image="setup_line.svg"),
        Step("tare_balance", tare_balance, timeout_s=120.0, duration_s=10.0),
        Step("start_pump", start_pump, timeout_s=60.0),
        Step("deliver", deliver, timeout_s=lambda p: p["duration_min"] * 60.0 + 120.0,
             duration_s=lambda p: p["duration_min"] * 60.0),
        Step("stop_pump", stop_pump, timeout_s=60.0),
        Step("settle_and_weigh", settle_and_weigh, timeout_s=lambda p: p["settle_s"] + 120.0,
             duration_s=lambda p: p["settle_s"]),
        Step("evaluate", evaluate, timeout_s=60.0),
    ),
    measurements=(
        Measurement("volume_error_pct", "%", "gravimetric delivered volume vs programmed"),
        Measurement("flow_rate_error_pct", "%", "gravimetric flow (regression) vs programmed rate"),
        Measurement("pump_count_error_pct", "%", "pump's own dispensed count vs programmed"),
    ),
    spec_file="delivery_check.spec.toml",
)
