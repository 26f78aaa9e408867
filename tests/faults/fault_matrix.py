"""A short, test-only procedure for the fault-injection matrix (tests/faults/test_matrix.py).

Why a procedure of its own: the matrix needs a run with four well-defined phases — setup,
delivery, the procedure's own fault-injection step, measurement — each of which *takes a
measurement before* a known injection point, so every cell can check that what was measured
before the fault is still in the record. The shipped procedures are longer and are owned
elsewhere; this one runs ~8 minutes of virtual time in about a second.

Injection point: each phase, right after its first measurement, calls ``_inject``:

* in-process tests put a callable in the runner's shared state (``runner.state["inject"]``,
  called as ``inject(phase, ctx)``) that injects the fault through the simulated bench;
* a `rig run` child (signal and kill -9 cells) is given ``--param hold_phase=N``: the phase then
  records a ``fault_injected`` event saying it is waiting, and polls the abort flag (wall time)
  until the test's signal arrives, so the signal lands in that phase deterministically.

The module is found by `rig run` through ``RIG_EXTRA_PROCEDURES=faults.fault_matrix``.

Rate 6 mL/h (the IEC 60601-2-24 worked example's rate) keeps the pressure dynamics short:
with C = 0.010 mL/kPa a blocked line rises 600 kPa/h = 0.17 kPa/s, so the matrix station's
15 kPa interlock limit trips about a minute after a full kink.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from instruments.pump import PumpAlarm
from rig.engine.context import StepContext
from rig.engine.procedure import Measurement, Parameter, Procedure, Step

PHASES = ("setup", "delivery", "fault_step", "measurement")
POLL_S = 10.0  # procedure time between balance/pump polls
HOLD_POLL_WALL_S = 0.02


def _inject(ctx: StepContext, phase: str) -> None:
    """The injection point of ``phase`` (see the module docstring)."""
    hook: Callable[[str, StepContext], None] | None = ctx.state.get("inject")
    if hook is not None:
        hook(phase, ctx)
    if int(ctx.params["hold_phase"]) == PHASES.index(phase) + 1:
        hold_s = float(ctx.params["hold_wall_s"])
        ctx.event("fault_injected", f"holding in phase {phase} for an external fault (up to {hold_s:g} s wall)",
                  phase=phase)
        deadline = time.monotonic() + hold_s
        while time.monotonic() < deadline:
            ctx.check()  # a signal's abort request ends the step here
            time.sleep(HOLD_POLL_WALL_S)


def _poller(ctx: StepContext) -> Callable[[float], None]:
    """Every tick: one balance reading into raw/balance.csv and a pump alarm check (an alarm
    fails the item under test, as in the shipped procedures)."""
    raw = ctx.raw("balance", ["t_s", "mass_g", "stable"])

    def poll(t_s: float) -> None:
        mass_g, stable = ctx.balance.read_mass_immediate_g()
        raw.row(t_s, mass_g, int(bool(stable)))
        try:
            alarm = ctx.pump.alarm()
        except PumpAlarm as exc:
            alarm = exc.alarm
        if alarm:
            ctx.event("alarm", f"pump alarm {alarm!r} at t = {t_s:.1f} s", alarm=alarm)
            ctx.fail(f"pump alarm {alarm!r}")

    return poll


def _pressure_kpa(ctx: StepContext) -> float:
    return float(ctx.daq.latest()["pressure_upstream_kpa"])


def setup(ctx: StepContext) -> None:
    ctx.pump.stop()
    ctx.pump.clear_dispensed()
    ctx.until_stable(ctx.balance.tare)
    ctx.state["mass0_g"] = ctx.stable_mass_g()
    ctx.measure("baseline_mass_g", ctx.state["mass0_g"], detail="net reading after tare")
    _inject(ctx, "setup")
    ctx.pump.set_rate_ml_h(ctx.params["rate_ml_h"])
    ctx.wait(30.0, every_s=POLL_S, on_tick=_poller(ctx))


def delivery(ctx: StepContext) -> None:
    ctx.pump.start()
    ctx.state["t_start_s"] = ctx.now_s()
    poll = _poller(ctx)
    ctx.wait(60.0, every_s=POLL_S, on_tick=poll)
    ctx.measure("early_pressure_kpa", _pressure_kpa(ctx), detail="line pressure after 60 s of delivery")
    _inject(ctx, "delivery")
    ctx.wait(120.0, every_s=POLL_S, on_tick=poll)


def fault_step(ctx: StepContext) -> None:
    """The procedure's own fault: a 20 s downstream occlusion, then release."""
    poll = _poller(ctx)
    p0_kpa = _pressure_kpa(ctx)
    ctx.daq.set_occlusion(True)
    ctx.event("fault_injected", "procedure closes the occlusion valve for 20 s")
    ctx.wait(20.0, every_s=5.0, on_tick=poll)
    ctx.measure("occlusion_rise_kpa", _pressure_kpa(ctx) - p0_kpa, detail="pressure rise over 20 s occluded")
    _inject(ctx, "fault_step")
    ctx.wait(10.0, every_s=5.0, on_tick=poll)
    ctx.daq.set_occlusion(False)
    ctx.wait(90.0, every_s=POLL_S, on_tick=poll)


def measurement(ctx: StepContext) -> None:
    poll = _poller(ctx)
    ctx.wait(20.0, every_s=POLL_S, on_tick=poll)
    density = ctx.station.fluid.density_g_ml
    m1_g = ctx.balance.read_mass_immediate_g()[0]  # fluid keeps landing: the cell never settles
    t1_s = ctx.now_s()
    ctx.measure("delivered_ml", (m1_g - ctx.state["mass0_g"]) / density, detail="gravimetric, since setup")
    _inject(ctx, "measurement")
    ctx.wait(120.0, every_s=POLL_S, on_tick=poll)
    m2_g = ctx.balance.read_mass_immediate_g()[0]
    flow_ml_h = (m2_g - m1_g) / density / ((ctx.now_s() - t1_s) / 3600.0)
    rate = ctx.params["rate_ml_h"]
    ctx.measure("final_flow_error_pct", 100.0 * (flow_ml_h - rate) / rate,
                detail=f"gravimetric {flow_ml_h:.4f} mL/h over the last 120 s")
    ctx.pump.stop()


PROCEDURE = Procedure(
    id="fault_matrix",
    version="1.0.0",
    title="Fault-matrix test procedure (test only)",
    requirements=("TEST-FAULT-001",),
    description=__doc__ or "",
    parameters=(
        Parameter("rate_ml_h", "mL/h", 6.0, low=0.5, high=10.0, description="programmed rate"),
        Parameter("hold_phase", "", 0, low=0, high=len(PHASES), integer=True,
                  description="1-4: wait at that phase's injection point for an external fault (0: none)"),
        Parameter("hold_wall_s", "s", 60.0, low=1.0, high=600.0, description="longest hold (wall time)"),
    ),
    steps=(
        Step("setup", setup, timeout_s=300.0, wall_timeout_s=900.0, duration_s=30.0),
        Step("delivery", delivery, timeout_s=600.0, wall_timeout_s=900.0, duration_s=180.0),
        Step("fault_step", fault_step, timeout_s=600.0, wall_timeout_s=900.0, duration_s=120.0),
        Step("measurement", measurement, timeout_s=600.0, wall_timeout_s=900.0, duration_s=140.0),
    ),
    measurements=(
        Measurement("baseline_mass_g", "g", "net balance reading after tare"),
        Measurement("early_pressure_kpa", "kPa", "line pressure after 60 s of delivery"),
        Measurement("occlusion_rise_kpa", "kPa", "pressure rise during the procedure's own occlusion"),
        Measurement("delivered_ml", "mL", "gravimetric volume delivered so far"),
        Measurement("final_flow_error_pct", "%", "gravimetric flow vs programmed over the last 120 s"),
    ),
    spec_file="fault_matrix.spec.toml",
)
