"""Leak and disconnect: one procedure shape, two faults.

Why a builder: the two differ only in the valve that opens the fault path, the detector that must
alarm and their texts; one definition keeps them measuring "detected" and "latency" alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from procedures._line_monitor import LineMonitor, establish_baseline, monitor_of, watch
from procedures._pump import start_pump, stop_pump
from procedures._setup import ITEM_SERIAL, SETUP_LINE
from rig.engine.context import StepContext
from rig.engine.procedure import Measurement, Parameter, Procedure, Step


@dataclass(frozen=True)
class FaultSpec:
    """What differs between the fault-detection procedures built by ``fault_detection_procedure``."""

    fault: str  # the detector's name and the measurement prefix
    valve: str  # the Daq method that opens the fault path (set_leak / set_disconnect)
    title: str
    requirements: tuple[str, ...]
    description: str
    default_wait_min: float


def fault_detection_procedure(spec: FaultSpec) -> Procedure:
    """Deliver, let the detectors learn, open the fault path through the DAQ valve, and time the
    matching detector's alarm (events of other detectors do not count, but are recorded)."""
    detected, latency = f"{spec.fault}.detected", f"{spec.fault}.latency_min"

    def start(ctx: StepContext) -> None:
        monitor = LineMonitor.start(ctx)
        start_pump(ctx, ctx.params["rate_ml_h"], monitor)

    def baseline(ctx: StepContext) -> None:
        establish_baseline(ctx, monitor_of(ctx), ctx.params["baseline_min"] * 60.0)

    def inject(ctx: StepContext) -> None:
        monitor = monitor_of(ctx)
        getattr(ctx.daq, spec.valve)(True)
        t_fault = ctx.now_s()
        ctx.event("fault", f"{spec.valve}(True): {spec.fault} path open", fault=spec.fault)
        hit = watch(ctx, ctx.params["max_wait_min"] * 60.0,
                    until=lambda: monitor.first(spec.fault, t_fault) is not None)
        if hit is None:  # one more look: the last blocks may have arrived with the last wait
            hit = ctx.now_s() if monitor.first(spec.fault, t_fault) else None
        getattr(ctx.daq, spec.valve)(False)
        stop_pump(ctx, monitor)
        event = monitor.first(spec.fault, t_fault)
        others = sorted({e.detector for e in monitor.events() if e.t_s >= t_fault and e.detector != spec.fault})
        also = f"; other detectors alarmed: {', '.join(others)}" if others else ""
        ctx.measure(detected, 1.0 if event else 0.0,
                    detail=(f"{spec.fault} detector alarmed: {event.detail}" if event else
                            f"no {spec.fault} alarm within {ctx.params['max_wait_min']:g} min") + also)
        ctx.measure(latency, None if event is None else (event.t_s - t_fault) / 60.0,
                    detail="" if event is None else f"fault at t = {t_fault:.1f} s, alarm at t = {event.t_s:.1f} s")

    wait_s = lambda p: p["max_wait_min"] * 60.0  # noqa: E731 - declaration-sized
    return Procedure(
        id=spec.fault,
        version="1.0.0",
        title=spec.title,
        requirements=spec.requirements,
        description=spec.description,
        parameters=(
            Parameter("rate_ml_h", "mL/h", 1.0, low=0.01, high=10.0, description="delivery rate"),
            Parameter("baseline_min", "min", 5.0, low=1.0, high=240.0,
                      description="healthy delivery before the fault (detectors settle and learn)"),
            Parameter("max_wait_min", "min", spec.default_wait_min, low=0.5, high=1440.0,
                      description="how long to wait for the detector after opening the fault path"),
        ),
        item_under_test=(ITEM_SERIAL,),
        steps=(
            SETUP_LINE,
            Step("start_delivery", start, timeout_s=60.0),
            Step("baseline", baseline, timeout_s=lambda p: p["baseline_min"] * 60.0 + 3600.0,
                 duration_s=lambda p: p["baseline_min"] * 60.0),
            Step(f"inject_{spec.fault}", inject, timeout_s=lambda p: wait_s(p) + 120.0,
                 duration_s=wait_s),
        ),
        measurements=(
            Measurement(detected, "", f"1 when the {spec.fault} detector alarmed, else 0"),
            Measurement(latency, "min", f"{spec.fault} path opened -> {spec.fault} detector alarm"),
        ),
        spec_file=f"{spec.fault}.spec.toml",
    )


__all__ = ["FaultSpec", "fault_detection_procedure"]
