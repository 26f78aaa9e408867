"""No-false-alarm soak: long normal delivery with every detector armed.

Method: deliver at ``rate_ml_h`` for ``duration_h`` of procedure time (default 24 h; minutes of
wall time in virtual time) with the line healthy and every detector of rig.analysis.detection armed from
the station's ``[detection]`` table. Any detector alarm, or a pump alarm, is a false alarm.

* soak.false_alarms                count of detector and pump alarms during the soak (must be 0)
* soak.closest_approach.<detector> the largest statistic/threshold the detector reached while
                                   monitoring (alarm at 1): the margin left in its false-alarm budget
"""

from __future__ import annotations

from procedures._line_monitor import LineMonitor, monitor_of, watch
from procedures._pump import pump_alarm, start_pump, stop_pump
from procedures._setup import ITEM_SERIAL, SETUP_LINE
from rig.analysis.detection import DetectorBank
from rig.engine.context import StepContext
from rig.engine.procedure import Measurement, Parameter, Procedure, Step
from rig.errors import BenchError

DETECTORS: tuple[str, ...] = tuple(d.name for d in DetectorBank().detectors)
M_FALSE = "soak.false_alarms"


def start(ctx: StepContext) -> None:
    monitor = LineMonitor.start(ctx)
    ctx.state["t_start_s"] = start_pump(ctx, ctx.params["rate_ml_h"], monitor)


def soak(ctx: StepContext) -> None:
    """Deliver; count pump alarms as they come (the pump keeps running unless it stopped)."""
    pump_alarms: list[str] = ctx.state.setdefault("pump_alarms", [])

    def look() -> bool:
        alarm = pump_alarm(ctx)
        if alarm:
            pump_alarms.append(alarm)
            ctx.event("alarm", f"pump alarm {alarm!r} during the soak", alarm=alarm)
        return False

    watch(ctx, ctx.params["duration_h"] * 3600.0, until=look, every_s=ctx.params["poll_s"])
    monitor = monitor_of(ctx)
    stop_pump(ctx, monitor)
    if monitor.error:
        raise BenchError(f"line monitor failed during the soak: {monitor.error}")


def evaluate(ctx: StepContext) -> None:
    monitor = monitor_of(ctx)
    if monitor.monitored_s <= 0:
        ctx.fail("the detectors never monitored (no baseline learnt): the soak proved nothing")
    events = monitor.events()
    pump_alarms = ctx.state.get("pump_alarms", [])
    names = [e.detector for e in events] + [f"pump:{a}" for a in pump_alarms]
    ctx.measure(M_FALSE, float(len(names)),
                detail=(f"detectors monitored {monitor.monitored_s / 3600.0:.3g} h; " +
                        ("no alarm" if not names else "alarms: " + ", ".join(names))))
    closest = monitor.closest_approach()
    for name in DETECTORS:
        ctx.measure(f"soak.closest_approach.{name}", closest.get(name),
                    detail="largest statistic/threshold while monitoring (alarm at 1)")


def _soak_s(p: dict[str, float]) -> float:
    return p["duration_h"] * 3600.0


PROCEDURE = Procedure(
    id="soak",
    version="1.0.0",
    title="No-false-alarm soak: normal delivery with every detector armed",
    requirements=("REQ-DET-FA-001", "REQ-DET-FA-002"),
    description=__doc__ or "",
    parameters=(
        Parameter("rate_ml_h", "mL/h", 0.5, low=0.01, high=10.0, description="delivery rate"),
        Parameter("duration_h", "h", 24.0, low=0.1, high=168.0, description="soak length (procedure time)"),
        Parameter("poll_s", "s", 60.0, low=1.0, high=3600.0, description="how often the pump's alarm is read"),
    ),
    item_under_test=(ITEM_SERIAL,),
    steps=(
        SETUP_LINE,
        Step("start_delivery", start, timeout_s=60.0),
        Step("soak", soak, timeout_s=lambda p: _soak_s(p) + 600.0, duration_s=_soak_s),
        Step("evaluate", evaluate, timeout_s=60.0),
    ),
    measurements=(
        Measurement(M_FALSE, "", "detector and pump alarms on the healthy line"),
        *(Measurement(f"soak.closest_approach.{name}", "", f"{name}: largest statistic/threshold (alarm at 1)")
          for name in DETECTORS),
    ),
    spec_file="soak.spec.toml",
)
