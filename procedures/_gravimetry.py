"""The gravimetric side of a procedure: every balance reading of the run, the tare, the density.

Why one module: the balance, not the pump, is the reference of every flow and volume measurement
(IEC 60601-2-24), so every procedure must log it the same way — every reading in raw/balance.csv,
whether the analysis uses it or not, so anyone can redo the analysis from the bundle. The flow
formula itself (Qi = (60·ΔWi/S + E)/d, with the evaporation blank E) is defined once, in
rig.analysis.flow_metrics.flow_ml_h; flow_accuracy records each interval's Qi in
raw/flow_samples.csv, which is what a report plots (no second formula there).
"""

from __future__ import annotations

import math

from rig.engine.context import RawTable, StepContext

BALANCE_COLUMNS = ["t_s", "mass_g"]


class BalanceLog:
    """Every balance reading of the run, in memory and in raw/balance.csv (``t_s,mass_g``).

    Why every reading: the report's raw data must let anyone redo the analysis, including the
    readings the analysis did not use (tare, settling, outside the analysis window).
    """

    def __init__(self, ctx: StepContext) -> None:
        self._raw: RawTable = ctx.raw("balance", BALANCE_COLUMNS)
        self.t_s: list[float] = []
        self.mass_g: list[float] = []

    @classmethod
    def of(cls, ctx: StepContext) -> "BalanceLog":
        """The run's log (one per run, shared by its steps)."""
        log = ctx.state.get("balance_log")
        if log is None:
            log = ctx.state["balance_log"] = cls(ctx)
        return log

    def _add(self, t_s: float, mass_g: float) -> float:
        self._raw.row(t_s, mass_g)
        self.t_s.append(t_s)
        self.mass_g.append(mass_g)
        return mass_g

    def read(self, ctx: StepContext) -> float:
        """The immediate reading now (settled or not: fluid keeps landing while the pump runs)."""
        t_s = ctx.now_s()
        mass_g, _stable = ctx.balance.read_mass_immediate_g()
        ctx.live("mass_g", mass_g, "g")
        return self._add(t_s, float(mass_g))

    def stable(self, ctx: StepContext) -> float:
        """A stable reading (waits while the balance says it is still settling)."""
        mass_g = ctx.stable_mass_g()
        return self._add(ctx.now_s(), mass_g)

    def series(self, start_s: float = -math.inf, end_s: float = math.inf) -> tuple[list[float], list[float]]:
        """Readings in [start_s, end_s], one per time (the last one wins), times increasing."""
        by_time: dict[float, float] = {}
        for t, m in zip(self.t_s, self.mass_g):
            if start_s - 1e-9 <= t <= end_s + 1e-9:
                by_time[t] = m
        times = sorted(by_time)
        return times, [by_time[t] for t in times]


def tare(ctx: StepContext, settle_s: float = 5.0) -> float:
    """Let the cell settle after the operator's set-up, tare the vessel, log the stable zero."""
    ctx.wait(settle_s)
    ctx.state["tare_g"] = float(ctx.until_stable(ctx.balance.tare))
    return BalanceLog.of(ctx).stable(ctx)


def density_g_ml(ctx: StepContext, override_g_ml: float = 0.0) -> float:
    """The fluid density: a procedure parameter when given (> 0), else the station's [fluid]."""
    return override_g_ml if override_g_ml > 0 else float(ctx.station.fluid.density_g_ml)


__all__ = ["BALANCE_COLUMNS", "BalanceLog", "density_g_ml", "tare"]
