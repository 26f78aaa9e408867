"""Measurement uncertainty per the GUM (JCGM 100:2008): budgets of standard uncertainties combined
in quadrature and expanded with k = 2 (about 95 % coverage for a near-normal result).

Why a budget and not one number: a reviewer must see *why* ± 0.3 % and not ± 0.03 %: which input
dominates (balance resolution at low flow, evaporation over long windows), where each value comes
from (the station's calibration data, the fluid, the clock), and its distribution. Every reported
measurement carries ``Budget.as_dict()`` in its ``uncertainty`` field: ``expanded`` (U), ``k``,
``u_c`` and the ``components``.

The gravimetric model (IEC 60601-2-24 flow from mass increments) for a mass gain ``m`` collected in
``T`` seconds, expressed as a relative error in % (sensitivity 100 / m per gram, 100 / T per second):

  balance resolution   two readings, each ± d/2 rectangular          u = √2 · d / √12
  repeatability        two readings, standard deviation s_r          u = √2 · s_r
  linearity            one deviation bound L, rectangular            u = L / √3
  evaporation          uncorrected rate bound e (g/h) over T         u = e · T_h / √3
  buoyancy             uncorrected air buoyancy of water against steel weights, rectangular over the
                       whole correction ρ_air (1/ρ − 1/ρ_steel)     u = 100 · c / √3 (%)
  density              fluid density bound u_ρ, rectangular         u = 100 · u_ρ / (ρ √3) (%)
  timing               two time stamps, each ± t rectangular        u = 100 · √2 · t / (√3 T) (%)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

K_DEFAULT = 2.0
AIR_DENSITY_G_ML = 0.0012  # 20 °C, 1013 hPa, 50 % RH
STEEL_WEIGHT_DENSITY_G_ML = 8.0  # OIML R 111 reference density of calibration weights


@dataclass(frozen=True)
class Component:
    """One input of a budget: its standard uncertainty already in the measurand's unit."""

    quantity: str
    source: str
    distribution: str
    u: float

    def as_dict(self) -> dict[str, Any]:
        return {"quantity": self.quantity, "source": self.source, "distribution": self.distribution, "u": self.u}


@dataclass(frozen=True)
class Budget:
    unit: str
    components: tuple[Component, ...]
    k: float = K_DEFAULT
    note: str = ""

    @property
    def u_c(self) -> float:
        return math.sqrt(math.fsum(c.u * c.u for c in self.components))

    @property
    def expanded(self) -> float:
        return self.k * self.u_c

    def as_dict(self) -> dict[str, Any]:
        out = {"expanded": self.expanded, "k": self.k, "u_c": self.u_c, "unit": self.unit,
               "method": "GUM (JCGM 100:2008), components combined in quadrature",
               "components": [c.as_dict() for c in self.components]}
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class BalanceCalibration:
    """What the station's balance calibration certificate says (``[instruments.<balance>.calibration]``)."""

    resolution_g: float = 0.0001
    repeatability_g: float = 0.0001
    linearity_g: float = 0.0002
    evaporation_g_h: float = 0.0005  # bound on the uncorrected evaporation from the weighing vessel
    timing_s: float = 0.1  # bound on a reading's time stamp (transfer latency)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> "BalanceCalibration":
        known = {k: float(v) for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


def buoyancy_fraction(density_g_ml: float) -> float:
    """Relative size of the (uncorrected) air-buoyancy correction of a liquid weighed against steel."""
    return AIR_DENSITY_G_ML * (1.0 / density_g_ml - 1.0 / STEEL_WEIGHT_DENSITY_G_ML)


def gravimetric_budget(*, mass_g: float, duration_s: float, density_g_ml: float,
                       density_u_g_ml: float, balance: BalanceCalibration, what: str = "flow error",
                       evaporation_corrected: bool = False, readings_per_end: int = 1) -> Budget:
    """Budget (in %) of a flow or volume error computed from mass ``mass_g`` gained in ``duration_s``.

    ``readings_per_end`` > 1 when each end of the interval is itself a mean (not used yet; kept
    explicit so the budget states its assumption)."""
    if mass_g <= 0 or duration_s <= 0:
        raise ValueError(f"{what}: mass {mass_g!r} g over {duration_s!r} s has no relative uncertainty")
    per_g = 100.0 / mass_g
    n = max(1, readings_per_end)
    hours = duration_s / 3600.0
    evaporation_note = "residual after correction" if evaporation_corrected else "uncorrected"
    components = (
        Component("balance resolution", f"station calibration data: d = {balance.resolution_g:g} g, two readings",
                  "rectangular", per_g * math.sqrt(2.0) * balance.resolution_g / math.sqrt(12.0) / math.sqrt(n)),
        Component("balance repeatability", f"station calibration data: s_r = {balance.repeatability_g:g} g, "
                  "two readings", "normal", per_g * math.sqrt(2.0) * balance.repeatability_g / math.sqrt(n)),
        Component("balance linearity", f"station calibration data: ± {balance.linearity_g:g} g",
                  "rectangular", per_g * balance.linearity_g / math.sqrt(3.0)),
        Component("evaporation", f"station calibration data: ± {balance.evaporation_g_h:g} g/h over "
                  f"{duration_s:g} s ({evaporation_note})", "rectangular",
                  per_g * balance.evaporation_g_h * hours / math.sqrt(3.0)),
        Component("air buoyancy", f"uncorrected: ρ_air {AIR_DENSITY_G_ML:g} g/mL, weights "
                  f"{STEEL_WEIGHT_DENSITY_G_ML:g} g/mL, fluid {density_g_ml:g} g/mL", "rectangular",
                  100.0 * buoyancy_fraction(density_g_ml) / math.sqrt(3.0)),
        Component("fluid density", f"± {density_u_g_ml:g} g/mL of {density_g_ml:g} g/mL (station [fluid])",
                  "rectangular", 100.0 * density_u_g_ml / density_g_ml / math.sqrt(3.0)),
        Component("timing", f"two time stamps, each ± {balance.timing_s:g} s, over {duration_s:g} s",
                  "rectangular", 100.0 * math.sqrt(2.0) * balance.timing_s / math.sqrt(3.0) / duration_s),
    )
    return Budget("%", components, note=f"{what}: mass {mass_g:.6g} g in {duration_s:g} s")


def scaled(budget: Budget, factor: float, unit: str, note: str = "") -> Budget:
    """The same budget for a measurand ``factor`` times this one (e.g. % of a rate -> mL/h)."""
    return Budget(unit, tuple(Component(c.quantity, c.source, c.distribution, abs(factor) * c.u)
                              for c in budget.components), budget.k, note or budget.note)


def direct_budget(unit: str, parts: Iterable[tuple[str, str, str, float]], note: str = "") -> Budget:
    """A budget from (quantity, source, distribution, standard uncertainty) rows."""
    return Budget(unit, tuple(Component(*p) for p in parts), note=note)


def expanded_of(uncertainty: Any) -> float | None:
    """U from a record's ``uncertainty`` field: a number (older records) or a budget dict."""
    if isinstance(uncertainty, Mapping):
        value = uncertainty.get("expanded")
    else:
        value = uncertainty
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def significant_decimals(u: float | None, digits: int = 2) -> int | None:
    """Decimal places that show ``u`` with ``digits`` significant digits (GUM 7.2.6): the value is
    rounded to the same place. None when there is no uncertainty."""
    if u is None or not math.isfinite(u) or u <= 0:
        return None
    return max(0, digits - 1 - math.floor(math.log10(u)))


def round_to_uncertainty(value: float | None, u: float | None, digits: int = 2) -> str:
    """``value`` as text rounded to the decimal place of its uncertainty (2 significant digits of U).
    Without an uncertainty: 4 significant digits, so the same value reads the same everywhere."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    places = significant_decimals(u, digits)
    if places is None:
        return f"{value:.4g}"
    text = f"{value:.{places}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


__all__ = ["BalanceCalibration", "Budget", "Component", "K_DEFAULT", "buoyancy_fraction", "direct_budget",
           "expanded_of", "gravimetric_budget", "round_to_uncertainty", "scaled", "significant_decimals"]
