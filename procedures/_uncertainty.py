"""Uncertainty budgets of gravimetric results from the station's own calibration data.

Why one helper: every procedure that reports a flow or volume error from the balance must state
the same budget (rig.analysis.uncertainty.gravimetric_budget) from the same inputs — the balance's
``[instruments.<balance>.calibration]`` certificate figures and the fluid's density uncertainty —
so the report's budget table reads the same for every procedure.
"""

from __future__ import annotations

import math
from typing import Any

from rig.analysis.uncertainty import (
    BalanceCalibration,
    direct_budget,
    gravimetric_budget,
    scaled,
)
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


DAQ_BITS = 16  # NI X-series analog input resolution over ±10 V
DEFAULT_PRESSURE_ACCURACY_KPA = 0.5  # ± bound of a line pressure sensor when the station gives none


def _daq_chunk_s(ctx: StepContext) -> float:
    daqs = ctx.station.by_kind("daq")
    options = daqs[0].options if daqs else {}
    rate = float(options.get("sample_rate_hz", 20.0))
    return float(options.get("chunk_samples", rate)) / rate


def latency_uncertainty(ctx: StepContext, *, alarm_step_s: float, what: str) -> dict[str, Any]:
    """Budget (in min) of a fault-to-alarm latency: the alarm is seen up to one evaluation step late
    and the fault reaches the line up to one DAQ output chunk after its command (both rectangular)."""
    chunk_s = _daq_chunk_s(ctx)
    return direct_budget("min", (
        ("alarm time", f"alarm seen within one evaluation step of {alarm_step_s:g} s", "rectangular",
         alarm_step_s / math.sqrt(12.0) / 60.0),
        ("fault onset", f"valve command applied within one DAQ chunk of {chunk_s:g} s (station DAQ options)",
         "rectangular", chunk_s / math.sqrt(12.0) / 60.0),
    ), note=what).as_dict()


def pressure_uncertainty(ctx: StepContext, channel: str = "pressure_upstream", *, what: str) -> dict[str, Any]:
    """Budget (in kPa) of one line pressure reading: the sensor's accuracy from the station's DAQ
    calibration data and the converter's quantisation on that channel's scale."""
    daqs = ctx.station.by_kind("daq")
    cal = daqs[0].calibration if daqs else {}
    accuracy = float(cal.get("pressure_accuracy_kpa", DEFAULT_PRESSURE_ACCURACY_KPA))
    channels = (daqs[0].options.get("channels") or {}) if daqs else {}
    scale = abs(float((channels.get(channel) or {}).get("scale_per_volt", 50.0)))
    step_kpa = scale * 20.0 / 2 ** DAQ_BITS
    source = ("station calibration data" if "pressure_accuracy_kpa" in cal
              else "default (the station gives no [instruments.daq.calibration] pressure_accuracy_kpa)")
    return direct_budget("kPa", (
        ("pressure sensor", f"± {accuracy:g} kPa, {source}", "rectangular", accuracy / math.sqrt(3.0)),
        ("converter resolution", f"{DAQ_BITS}-bit over ±10 V at {scale:g} kPa/V: {step_kpa:.3g} kPa", "rectangular",
         step_kpa / math.sqrt(12.0)),
    ), note=what).as_dict()


def volume_uncertainty(ctx: StepContext, *, volume_ml: float, duration_s: float, density_g_ml: float,
                       what: str) -> dict[str, Any] | None:
    """The gravimetric budget of a delivered volume, in mL (scaled from the relative budget)."""
    if volume_ml <= 0:
        return None
    budget = gravimetric_budget(
        mass_g=volume_ml * density_g_ml, duration_s=max(duration_s, 1.0), density_g_ml=density_g_ml,
        density_u_g_ml=float(ctx.station.fluid.density_uncertainty_g_ml), balance=balance_calibration(ctx),
        what=what)
    return scaled(budget, volume_ml / 100.0, "mL").as_dict()
