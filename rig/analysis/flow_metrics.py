"""Gravimetric flow analysis after IEC 60601-2-24 (infusion pumps), as pure functions.

Why pure functions: the flow-accuracy procedure, the occlusion procedure (post-occlusion bolus)
and the tests all need the same arithmetic, and the standard's worked example must be reproducible
without a bench. Nothing here touches instruments or time.

The method (IEC 60601-2-24, "accuracy tests"):

* the balance is read every sample interval S (minutes); the mass increment ΔWi (g) of sample i
  becomes a flow ``Qi = 60·ΔWi / (S·d)`` mL/h, d being the fluid density (g/mL; 0.998 for water
  at 20 °C). Water evaporating from the open weighing vessel is lost mass, so a measured
  evaporation blank rate E (g/h) is added back: ``Qi = (60·ΔWi/S + E) / d``.
* the mean flow error over the analysis period (by default the 2nd hour) is
  ``A = 100·(Q̄ − r)/r`` %, r being the set rate.
* the trumpet curve: for each observation window P (2, 5, 11, 19, 31 min) slide a window of P/S
  consecutive samples over the analysis period of length T — ``m = (T − P)/S + 1`` windows — and
  report the largest and smallest window error ``100·(mean Qi in window − r)/r`` as Ep(max) and
  Ep(min). Short windows show the pump's short-term irregularity, which matters for drugs with
  short half-lives.

Units are in every name: ``_min`` minutes, ``_s`` seconds, ``_g`` grams, ``_ml_h`` mL/h.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from rig.errors import UsageError

WATER_DENSITY_20C_G_ML = 0.998  # IEC 60601-2-24 test fluid: water at 20 °C
TRUMPET_WINDOWS_MIN: tuple[float, ...] = (2.0, 5.0, 11.0, 19.0, 31.0)  # observation windows P
# Minimum expected increment per sample, in balance digits (see check_sample_interval).
DEFAULT_MIN_DIGITS_PER_SAMPLE = 50.0
# Sample intervals offered when an interval is refused (minutes), shortest first.
NICE_SAMPLE_INTERVALS_MIN: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0)
_TOL = 1e-9


def _require_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


# -- flow per sample ----------------------------------------------------------------------------


def flow_ml_h(
    mass_increments_g: Sequence[float],
    sample_interval_min: float,
    density_g_ml: float = WATER_DENSITY_20C_G_ML,
    evaporation_g_h: float = 0.0,
) -> list[float]:
    """Flow of each sample, ``Qi = (60·ΔWi/S + E)/d`` mL/h.

    ``evaporation_g_h`` is the blank rate E measured with the pump stopped (mass lost per hour);
    adding it back removes the bias an open vessel puts on slow infusions (at 0.01 mL/h a typical
    0.5 mg/h evaporation is a 5 % error).
    """
    _require_positive("sample_interval_min", sample_interval_min)
    _require_positive("density_g_ml", density_g_ml)
    if not math.isfinite(evaporation_g_h) or evaporation_g_h < 0:
        raise ValueError(f"evaporation_g_h must be a number >= 0, got {evaporation_g_h!r}")
    return [(60.0 * dw / sample_interval_min + evaporation_g_h) / density_g_ml for dw in mass_increments_g]


def mean_flow_error_pct(flows_ml_h: Sequence[float], rate_ml_h: float) -> float:
    """Mean error A = 100·(Q̄ − r)/r over the given samples (the analysis period)."""
    _require_positive("rate_ml_h", rate_ml_h)
    if not flows_ml_h:
        raise ValueError("no flow samples in the analysis period")
    mean_ml_h = math.fsum(flows_ml_h) / len(flows_ml_h)
    return 100.0 * (mean_ml_h - rate_ml_h) / rate_ml_h


def analysis_period(
    flows_ml_h: Sequence[float], sample_interval_min: float, start_min: float, end_min: float
) -> list[float]:
    """The samples whose interval lies inside [start_min, end_min] of the run.

    Sample i covers ``[i·S, (i+1)·S]`` minutes from the first reading, so the 2nd hour at
    S = 0.5 min is samples 120..239.
    """
    _require_positive("sample_interval_min", sample_interval_min)
    if end_min <= start_min:
        raise ValueError(f"analysis period end ({end_min} min) must be after its start ({start_min} min)")
    first = math.ceil(start_min / sample_interval_min - _TOL)
    last = math.floor(end_min / sample_interval_min + _TOL)  # exclusive
    if first < 0 or last > len(flows_ml_h):
        run_min = len(flows_ml_h) * sample_interval_min
        raise ValueError(
            f"analysis period {start_min:g}..{end_min:g} min is outside the run "
            f"(0..{run_min:g} min of samples)"
        )
    return list(flows_ml_h[first:last])


# -- trumpet curve ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrumpetPoint:
    """Ep(max)/Ep(min) for one observation window P."""

    window_min: float  # P
    samples_per_window: int  # P/S
    windows: int  # m = (T − P)/S + 1
    max_error_pct: float  # Ep(max)
    min_error_pct: float  # Ep(min)


@dataclass(frozen=True)
class TrumpetCurve:
    points: list[TrumpetPoint]
    skipped: dict[float, str] = field(default_factory=dict)  # P -> why it could not be computed

    def point(self, window_min: float) -> TrumpetPoint:
        for p in self.points:
            if abs(p.window_min - window_min) < _TOL:
                return p
        reason = self.skipped.get(window_min, "not requested")
        raise KeyError(f"no trumpet point for P = {window_min:g} min ({reason})")


def trumpet_curve(
    flows_ml_h: Sequence[float],
    rate_ml_h: float,
    sample_interval_min: float,
    windows_min: Sequence[float] = TRUMPET_WINDOWS_MIN,
) -> TrumpetCurve:
    """Ep(max) and Ep(min) for each observation window P over the analysis-period samples.

    A window P must be a whole number of sample intervals and fit in the period; other windows
    are listed in ``skipped`` with the reason (e.g. P = 2 min cannot be formed from S = 15 min
    samples at µL/h rates), so the report can say why a point is missing.
    """
    _require_positive("rate_ml_h", rate_ml_h)
    _require_positive("sample_interval_min", sample_interval_min)
    period_min = len(flows_ml_h) * sample_interval_min
    points: list[TrumpetPoint] = []
    skipped: dict[float, str] = {}
    for p_min in windows_min:
        n_float = p_min / sample_interval_min
        n = round(n_float)
        if n < 1 or abs(n - n_float) > 1e-6:
            skipped[p_min] = f"P = {p_min:g} min is not a whole number of S = {sample_interval_min:g} min samples"
            continue
        if n > len(flows_ml_h):
            skipped[p_min] = f"P = {p_min:g} min is longer than the analysis period T = {period_min:g} min"
            continue
        errors = [
            100.0 * (math.fsum(flows_ml_h[j : j + n]) / n - rate_ml_h) / rate_ml_h
            for j in range(len(flows_ml_h) - n + 1)
        ]
        points.append(TrumpetPoint(p_min, n, len(errors), max(errors), min(errors)))
    return TrumpetCurve(points, skipped)


# -- balance series -> increments --------------------------------------------------------------


@dataclass(frozen=True)
class Increments:
    """Mass increments on a regular grid: ``mass_g[i+1] − mass_g[i]`` over ``[t_s[i], t_s[i+1]]``."""

    t_s: list[float]  # grid times, len = len(mass_increments_g) + 1
    mass_increments_g: list[float]


def resample_increments(
    t_s: Sequence[float],
    mass_g: Sequence[float],
    sample_interval_min: float,
    start_s: float | None = None,
    end_s: float | None = None,
) -> Increments:
    """Turn an irregular balance series into increments every S minutes.

    Why interpolate: a balance streams at its own pace (a reading every ~0.1–1 s, irregular on a
    serial line), the standard wants the mass at exact multiples of S. The mass at a grid time is
    linearly interpolated between the two readings around it; the grid starts at ``start_s``
    (default the first reading) and stops at the last grid time not after ``end_s`` (default the
    last reading).
    """
    _require_positive("sample_interval_min", sample_interval_min)
    if len(t_s) != len(mass_g):
        raise ValueError(f"t_s has {len(t_s)} readings but mass_g has {len(mass_g)}")
    if len(t_s) < 2:
        raise ValueError("need at least two balance readings")
    if any(b <= a for a, b in zip(t_s, t_s[1:])):
        raise ValueError("balance reading times must be strictly increasing")
    start = t_s[0] if start_s is None else start_s
    end = t_s[-1] if end_s is None else end_s
    if start < t_s[0] - _TOL or end > t_s[-1] + _TOL:
        raise ValueError(
            f"grid {start:g}..{end:g} s is outside the balance series {t_s[0]:g}..{t_s[-1]:g} s"
        )
    step_s = sample_interval_min * 60.0
    count = math.floor((end - start) / step_s + _TOL)
    if count < 1:
        raise ValueError(f"the series ({end - start:g} s) is shorter than one sample interval ({step_s:g} s)")
    grid = [start + k * step_s for k in range(count + 1)]
    masses = [_interpolate(t_s, mass_g, t) for t in grid]
    return Increments(grid, [b - a for a, b in zip(masses, masses[1:])])


def _interpolate(t_s: Sequence[float], values: Sequence[float], t: float) -> float:
    i = bisect.bisect_left(t_s, t)
    if i < len(t_s) and abs(t_s[i] - t) <= _TOL:
        return values[i]
    i = min(max(i, 1), len(t_s) - 1)
    t0, t1 = t_s[i - 1], t_s[i]
    return values[i - 1] + (values[i] - values[i - 1]) * (t - t0) / (t1 - t0)


# -- sample interval versus balance resolution ---------------------------------------------------


def expected_increment_g(rate_ml_h: float, sample_interval_min: float, density_g_ml: float) -> float:
    """Mass the set rate should add per sample: r·S/60·d."""
    return rate_ml_h * sample_interval_min / 60.0 * density_g_ml


def min_sample_interval_min(
    rate_ml_h: float,
    resolution_g: float,
    density_g_ml: float = WATER_DENSITY_20C_G_ML,
    min_digits_per_sample: float = DEFAULT_MIN_DIGITS_PER_SAMPLE,
) -> float:
    """Shortest S for which one sample's expected increment is ≥ ``min_digits_per_sample`` digits.

    Why 50 digits by default: an increment is the difference of two rounded readings, so its
    quantisation error is uniform-difference distributed with RMS ``resolution·√(2/12) ≈ 0.41``
    digit (worst case ±1 digit). At 50 digits that is 0.82 % RMS (< ~1 %) per sample; sums over
    trumpet windows telescope, so their quantisation error is at most ±1 digit of the whole window.
    Example: 0.1 mg balance at 1 mL/h water → S ≥ 0.30 min; at 0.01 mL/h → S ≥ 30.1 min.
    """
    _require_positive("rate_ml_h", rate_ml_h)
    _require_positive("resolution_g", resolution_g)
    _require_positive("density_g_ml", density_g_ml)
    _require_positive("min_digits_per_sample", min_digits_per_sample)
    return 60.0 * min_digits_per_sample * resolution_g / (rate_ml_h * density_g_ml)


def suggest_sample_interval_min(minimum_min: float) -> float:
    """The shortest conventional S (0.5, 1, 2, 5, 10, 15, 30, 60 min) not below ``minimum_min``."""
    for s in NICE_SAMPLE_INTERVALS_MIN:
        if s >= minimum_min - _TOL:
            return s
    return math.ceil(minimum_min / 60.0) * 60.0


def check_sample_interval(
    sample_interval_min: float,
    rate_ml_h: float,
    resolution_g: float,
    density_g_ml: float = WATER_DENSITY_20C_G_ML,
    min_digits_per_sample: float = DEFAULT_MIN_DIGITS_PER_SAMPLE,
) -> None:
    """Refuse an S too short for the balance at this rate, saying which S would do.

    Raises UsageError (a user parameter mistake), never returns a degraded result.
    """
    _require_positive("sample_interval_min", sample_interval_min)
    minimum = min_sample_interval_min(rate_ml_h, resolution_g, density_g_ml, min_digits_per_sample)
    if sample_interval_min < minimum - _TOL:
        digits = expected_increment_g(rate_ml_h, sample_interval_min, density_g_ml) / resolution_g
        raise UsageError(
            f"sample interval {sample_interval_min:g} min is too short at {rate_ml_h:g} mL/h: one "
            f"sample gains only {digits:.1f} balance digits of {resolution_g:g} g (need "
            f"≥ {min_digits_per_sample:g} for < 1 % quantisation error); use S ≥ {minimum:.3g} min, "
            f"e.g. {suggest_sample_interval_min(minimum):g} min"
        )


# -- flow sensor versus balance -----------------------------------------------------------------


def ul_min_to_ml_h(flow_ul_min: float) -> float:
    """µL/min (flow sensor unit) to mL/h (the rate unit): ×60/1000."""
    return flow_ul_min * 0.06


@dataclass(frozen=True)
class FlowAgreement:
    """How the in-line flow sensor agrees with the balance over the same sample intervals."""

    mean_sensor_ml_h: float
    mean_gravimetric_ml_h: float
    mean_difference_pct: float  # 100·(mean sensor − mean gravimetric)/mean gravimetric
    max_abs_difference_pct: float  # worst single interval, relative to the mean gravimetric flow


def flow_agreement(sensor_ml_h: Sequence[float], gravimetric_ml_h: Sequence[float]) -> FlowAgreement:
    """Compare per-interval mean sensor flow with the gravimetric Qi of the same intervals.

    The per-interval difference is taken relative to the *mean* gravimetric flow, because single
    Qi at low rates are dominated by balance quantisation and would make the ratio meaningless.
    """
    if len(sensor_ml_h) != len(gravimetric_ml_h):
        raise ValueError(f"{len(sensor_ml_h)} sensor intervals but {len(gravimetric_ml_h)} gravimetric ones")
    if not gravimetric_ml_h:
        raise ValueError("no intervals to compare")
    mean_sensor = math.fsum(sensor_ml_h) / len(sensor_ml_h)
    mean_grav = math.fsum(gravimetric_ml_h) / len(gravimetric_ml_h)
    if mean_grav <= 0:
        raise ValueError(f"mean gravimetric flow is {mean_grav:g} mL/h; cannot compare relative to it")
    worst = max(abs(s - g) for s, g in zip(sensor_ml_h, gravimetric_ml_h))
    return FlowAgreement(
        mean_sensor, mean_grav, 100.0 * (mean_sensor - mean_grav) / mean_grav, 100.0 * worst / mean_grav
    )


__all__ = [
    "DEFAULT_MIN_DIGITS_PER_SAMPLE",
    "TRUMPET_WINDOWS_MIN",
    "WATER_DENSITY_20C_G_ML",
    "FlowAgreement",
    "Increments",
    "TrumpetCurve",
    "TrumpetPoint",
    "analysis_period",
    "check_sample_interval",
    "expected_increment_g",
    "flow_agreement",
    "flow_ml_h",
    "mean_flow_error_pct",
    "min_sample_interval_min",
    "resample_increments",
    "suggest_sample_interval_min",
    "trumpet_curve",
    "ul_min_to_ml_h",
]
