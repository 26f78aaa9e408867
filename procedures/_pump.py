"""Pump control as every procedure does it: start, change rate, stop, each confirmed by reading back,
and the pump's own alarm whichever way its driver reports it.

Why shared: every procedure must agree on what "started" and "stopped" mean (the pump reads back
running / not running), and tell the line monitor about each command (a rate change is a new
regime for the detectors). The monitor is optional: flow-only procedures pass none.
"""

from __future__ import annotations

from typing import Protocol

from instruments.pump import PumpAlarm
from rig.engine.context import StepContext


class CommandListener(Protocol):
    """What is told about each pump command (procedures._line_monitor.LineMonitor)."""

    def command(self, t_s: float, rate_ml_h: float, running: bool) -> None: ...


def pump_alarm(ctx: StepContext) -> str | None:
    """The pump's alarm since the last call ("stall", ...), whichever way the driver reports it."""
    try:
        return ctx.pump.alarm()
    except PumpAlarm as exc:
        return exc.alarm


def start_pump(ctx: StepContext, rate_ml_h: float, monitor: CommandListener | None = None) -> float:
    """Stop, zero the count, set the rate, run; confirm it runs. Returns the start time (s)."""
    ctx.pump.stop()
    ctx.pump.clear_dispensed()
    ctx.pump.set_rate_ml_h(rate_ml_h)
    ctx.pump.start()
    t_s = ctx.now_s()
    if monitor is not None:
        monitor.command(t_s, rate_ml_h, True)
    if not ctx.pump.is_running():
        ctx.fail(f"the pump did not start at {rate_ml_h:g} mL/h (it reads back not running after RUN)")
    return t_s


def set_rate(ctx: StepContext, rate_ml_h: float, monitor: CommandListener | None = None) -> float:
    """Change the rate of a running pump (a flex-dosing step). Returns the time of the change."""
    ctx.pump.set_rate_ml_h(rate_ml_h)
    t_s = ctx.now_s()
    if monitor is not None:
        monitor.command(t_s, rate_ml_h, True)
    return t_s


def stop_pump(ctx: StepContext, monitor: CommandListener | None = None) -> float:
    """Stop the pump (acknowledging a pending alarm) and confirm it stopped."""
    try:
        ctx.pump.stop()
    except PumpAlarm:  # the NE-1000 answers the first command after an alarm with the alarm
        ctx.pump.stop()
    t_s = ctx.now_s()
    if monitor is not None:
        monitor.command(t_s, 0.0, False)
    if ctx.pump.is_running():
        ctx.fail("the pump still reads back running after stop")
    return t_s


__all__ = ["CommandListener", "pump_alarm", "set_rate", "start_pump", "stop_pump"]
