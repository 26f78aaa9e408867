"""Uncertainty budgets of gravimetric results from the station's own calibration data.

Why one helper: every procedure that reports a flow or volume error from the balance must state
the same budget (rig.analysis.uncertainty.gravimetric_budget) from the same inputs — the balance's
``[instruments.<balance>.calibration]`` certificate figures and the fluid's density uncertainty —
so the report's budget table reads the same for every procedure.
"""

from __future__ import annotations

from typing import Any

from rig.analysis.uncertainty import BalanceCalibration, gravimetric_budget
from rig.engine.context import StepContext


def balance_calibration(ctx: StepContext, resolution_g: float | None = None) -> BalanceCalibration:
    """The station balance's certificate figures; ``resolution_g`` (a procedure parameter) is used
    only where the station gives no resolution."""
    balances = ctx.station.by_kind("balance")
    figures = dict(balances[0].calibration) if balances else {}
    if resolution_g and "resolution_g" not in figures:
        figures["resolution_g"] = resolution_g
    return BalanceCalibration.from_mapping(figures)


def gravimetric_uncertainty(ctx: StepContext, *, mass_g: float, duration_s: float, density_g_ml: float,
                            what: str, resolution_g: float | None = None,
                            evaporation_corrected: bool = False) -> dict[str, Any] | None:
    """The budget dict for a measurement (None when no mass was collected: nothing to relate to)."""
    if mass_g <= 0 or duration_s <= 0:
        return None
    return gravimetric_budget(
        mass_g=mass_g, duration_s=duration_s, density_g_ml=density_g_ml,
        density_u_g_ml=float(ctx.station.fluid.density_uncertainty_g_ml),
        balance=balance_calibration(ctx, resolution_g), what=what,
        evaporation_corrected=evaporation_corrected).as_dict()
