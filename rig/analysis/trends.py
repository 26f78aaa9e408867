"""Drift detection and trend lines over a measurement's history.

Why: a nightly that passes today may be one worn syringe drive away from failing next week. A
measurement that moves steadily toward its limit, or that sits at the edge of its band, deserves
a look before it fails. This module decides that from the values alone (one series = one
measurement of one procedure on one station, oldest first) and draws it as a terminal sparkline.

The drift rule (``DriftRule``; defaults in brackets):

1. **Out of limits**: the latest value is outside [low, high] -> ``out_of_limits`` (a failure,
   not a trend; reported so the trend column is never "ok" for a failing run).
2. **Trend toward a limit**: over the last ``window_runs`` [8] values (at least ``min_runs`` [5]),
   fit a least-squares line value = a + b·i (i = run index). If the line, extended
   ``horizon_runs`` [5] runs past the latest, crosses a limit the slope points at, and the slope is
   significant (|b| / SE(b) ≥ ``min_t`` [2], so noise around a flat mean does not trigger it) ->
   ``drift`` toward that limit, with the projected number of runs until it crosses.
3. **Near the limit**: the last ``near_runs`` [3] values all lie in the outer ``band_fraction``
   [20 %] of the limit band on the same side (i.e. beyond 80 % of the half-band from its centre)
   -> ``near_limit``. Needs both limits (a one-sided limit has no band).
4. Otherwise ``ok``; fewer than ``min_runs`` values (and nothing out of limits) -> ``insufficient``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

OK, DRIFT, NEAR_LIMIT, OUT_OF_LIMITS, INSUFFICIENT = "ok", "drift", "near_limit", "out_of_limits", "insufficient"
SPARK_CHARS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class DriftRule:
    window_runs: int = 8
    min_runs: int = 5
    horizon_runs: int = 5
    min_t: float = 2.0
    near_runs: int = 3
    band_fraction: float = 0.20

    def describe(self) -> str:
        return (f"drift = least-squares slope over the last {self.window_runs} runs (at least {self.min_runs}), "
                f"significant at |t| >= {self.min_t:g}, projected to cross a limit within {self.horizon_runs} runs; "
                f"near limit = last {self.near_runs} values all in the outer {self.band_fraction * 100:g} % of the "
                "limit band on one side")


DEFAULT_RULE = DriftRule()


@dataclass(frozen=True)
class Assessment:
    status: str  # OK | DRIFT | NEAR_LIMIT | OUT_OF_LIMITS | INSUFFICIENT
    direction: str | None = None  # "high" | "low" (which limit) for DRIFT / NEAR_LIMIT / OUT_OF_LIMITS
    message: str = ""
    slope_per_run: float | None = None
    runs_to_limit: float | None = None  # for DRIFT: projected runs until the line crosses

    @property
    def flagged(self) -> bool:
        return self.status in (DRIFT, NEAR_LIMIT, OUT_OF_LIMITS)


def fit_line(values: Sequence[float]) -> tuple[float, float, float]:
    """Least squares over index 0..n-1: (intercept, slope, standard error of the slope).
    SE is 0 for a perfect line and inf with fewer than three points."""
    n = len(values)
    if n < 2:
        raise ValueError("a line needs at least two points")
    mean_i = (n - 1) / 2.0
    mean_v = sum(values) / n
    sxx = sum((i - mean_i) ** 2 for i in range(n))
    slope = sum((i - mean_i) * (v - mean_v) for i, v in enumerate(values)) / sxx
    intercept = mean_v - slope * mean_i
    if n < 3:
        return intercept, slope, math.inf
    ssr = sum((v - (intercept + slope * i)) ** 2 for i, v in enumerate(values))
    return intercept, slope, math.sqrt(ssr / (n - 2) / sxx)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def assess(values: Sequence[float | None], low: float | None, high: float | None,
           rule: DriftRule = DEFAULT_RULE) -> Assessment:
    """Apply the drift rule (module docstring) to a series, oldest first. None values (not taken)
    are skipped: they are failures of their own run, not points of a trend."""
    series = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not series:
        return Assessment(INSUFFICIENT, message="no values")
    latest = series[-1]
    if high is not None and latest > high:
        return Assessment(OUT_OF_LIMITS, "high", f"latest {_fmt(latest)} is above the limit {_fmt(high)}")
    if low is not None and latest < low:
        return Assessment(OUT_OF_LIMITS, "low", f"latest {_fmt(latest)} is below the limit {_fmt(low)}")
    if len(series) < rule.min_runs:
        return Assessment(INSUFFICIENT, message=f"{len(series)} run(s); the rule needs {rule.min_runs}")
    window = series[-rule.window_runs:]
    intercept, slope, se = fit_line(window)
    t = math.inf if se == 0 and slope != 0 else (0.0 if se == 0 else abs(slope) / se)
    last_i = len(window) - 1
    projected = intercept + slope * (last_i + rule.horizon_runs)
    fitted_now = intercept + slope * last_i
    toward = ("high", high) if slope > 0 else ("low", low) if slope < 0 else (None, None)
    direction, limit = toward
    if limit is not None and t >= rule.min_t:
        crosses = projected > limit if direction == "high" else projected < limit
        if crosses:
            runs = max(0.0, (limit - fitted_now) / slope)
            return Assessment(DRIFT, direction,
                              f"trending toward the {direction} limit {_fmt(limit)}: slope {slope:+.3g}/run "
                              f"(t = {'inf' if math.isinf(t) else f'{t:.1f}'}), projected to cross in "
                              f"~{runs:.1f} run(s)", slope, runs)
    if low is not None and high is not None and high > low:
        centre, half = (high + low) / 2.0, (high - low) / 2.0
        recent = [(v - centre) / half for v in series[-rule.near_runs:]]
        edge = 1.0 - rule.band_fraction
        if len(recent) == rule.near_runs:
            for direction, inside in (("high", all(r >= edge for r in recent)),
                                      ("low", all(r <= -edge for r in recent))):
                if inside:
                    limit = high if direction == "high" else low
                    return Assessment(NEAR_LIMIT, direction,
                                      f"last {rule.near_runs} values within the outer "
                                      f"{rule.band_fraction * 100:g} % of the band near the {direction} limit "
                                      f"{_fmt(limit)}", slope)
    return Assessment(OK, message=f"slope {slope:+.3g}/run over {len(window)} runs", slope_per_run=slope)


def sparkline(values: Sequence[float | None], width: int = 30) -> str:
    """The last ``width`` values as block characters (low..high of those values); a value not
    taken is a space, a flat series is a row of middle blocks."""
    recent = list(values)[-width:]
    numbers = [v for v in recent if v is not None and math.isfinite(v)]
    if not numbers:
        return ""
    lo, hi = min(numbers), max(numbers)
    span = hi - lo
    out = []
    for v in recent:
        if v is None or not math.isfinite(v):
            out.append(" ")
        elif span == 0:
            out.append(SPARK_CHARS[len(SPARK_CHARS) // 2 - 1])
        else:
            out.append(SPARK_CHARS[min(len(SPARK_CHARS) - 1, int((v - lo) / span * len(SPARK_CHARS)))])
    return "".join(out)


__all__ = [
    "DEFAULT_RULE", "DRIFT", "INSUFFICIENT", "NEAR_LIMIT", "OK", "OUT_OF_LIMITS", "Assessment", "DriftRule",
    "assess", "fit_line", "sparkline",
]
