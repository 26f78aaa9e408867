"""Streaming fault detectors for the infusion line: occlusion, kink, leak, disconnect.

This is the logic under verification. Each detector is fed one sample at a time (pressures,
flow-sensor reading, the rate the pump should deliver, whether it runs) and latches one alarm per
delivery regime. Why not a pressure threshold: a closed line fills its compliance C at the pump
rate Q, so pressure rises at dP/dt = Q/C and a threshold ΔP is reached after C·ΔP/Q — 42 min at
1 mL/h with C = 0.010 mL/kPa and ΔP = 70 kPa, days at intrathecal rates of 0.01 mL/h
(DESIGN.md §1). The detectors therefore work on:

* **occlusion** — the pressure *trend*: a least-squares slope of upstream pressure over a sliding
  window, compared with the slope Q/C an occlusion must produce; the window is sized from the
  measured pressure noise so that an occlusion slope is a fixed number of standard errors, hence
  short at 1 mL/h and long at 0.01 mL/h. A plain threshold stays as a backstop.
* **kink** — a partial restriction raises the pressure drop across the pinch point (upstream minus
  downstream pressure) to a new plateau ``Q·R_kink``, and the upstream pressure with it: two
  one-sided CUSUMs, both must be over threshold.
* **leak** — flow sensor below the expected flow while upstream pressure drops (fluid escapes
  before the sensor): two CUSUMs, both must be over threshold.
* **disconnect** — flow sensor ≈ 0 while the downstream pressure falls to ≈ 0 (the catheter's
  back-pressure is gone): the same two-CUSUM structure with stricter allowances.

False-alarm budget: every CUSUM's threshold h is solved from ``false_alarm_interval_h`` (mean time
between false alarms of one CUSUM on white noise, Siegmund's approximation) at the measured sample
rate, so the budget is stated in hours, not in samples, and survives a change of sample rate.

Regimes: when the pump starts, stops or changes rate the line needs a few time constants
(C·R ≈ 9 s here) to settle, so detectors are disarmed for ``settle_s``, then a baseline (mean and
noise of each channel) is learnt for ``learn_s``, then they monitor. A fault present while
learning is learnt as normal by the baseline-relative detectors (kink, leak pressure, disconnect
pressure); the occlusion trend and the backstop do not depend on the baseline level.

Every detector keeps its closest approach (largest statistic/threshold seen while monitoring) so a
soak can report its margin.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from rig.errors import ConfigError
from rig.settings import Key, Problems, Schema

S_PER_H = 3600.0
UL_MIN_PER_ML_H = 1000.0 / 60.0


# -- input and output ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One synchronous reading of the line."""

    t_s: float
    pressure_upstream_kpa: float
    pressure_downstream_kpa: float
    flow_ul_min: float
    expected_rate_ml_h: float  # what the pump is commanded to deliver now
    pump_running: bool

    @property
    def valve_drop_kpa(self) -> float:
        """Pressure drop across the pinch/occlusion valves (upstream − downstream)."""
        return self.pressure_upstream_kpa - self.pressure_downstream_kpa


@dataclass(frozen=True)
class Event:
    """A latched alarm."""

    detector: str  # "occlusion" | "occlusion_backstop" | "kink" | "leak" | "disconnect"
    t_s: float
    ratio: float  # statistic / threshold at the alarm (≥ 1)
    pressure_upstream_kpa: float
    detail: str


# -- parameters ---------------------------------------------------------------------------------


def _p(default: float, doc: str, lo: float = 0.0, lo_open: bool = True, hi: float = math.inf) -> Any:
    """A parameter field with its allowed range, checked by DetectionParams.from_dict."""
    return field(default=default, metadata={"doc": doc, "lo": lo, "lo_open": lo_open, "hi": hi})


@dataclass(frozen=True)
class OcclusionParams:
    compliance_ml_per_kpa: float = _p(0.010, "line compliance C; an occlusion raises pressure at Q/C")
    rise_ratio_min: float = _p(0.5, "smallest dP/dt, as a fraction of Q/C, taken as occlusion")
    rise_ratio_max: float = _p(3.0, "largest dP/dt, as a multiple of Q/C (C is uncertain)")
    window_z: float = _p(8.0, "window sized so rise_ratio_min·Q/C is this many slope standard errors")
    min_z: float = _p(5.0, "the slope must also be this many standard errors above zero")
    window_min_s: float = _p(10.0, "shortest slope window")
    window_max_s: float = _p(1800.0, "longest slope window (limits latency at the lowest rates)")
    persist_s: float = _p(60.0, "the trend must hold this long; rejects kinks (exponential settling)")
    backstop_pressure_kpa: float = _p(70.0, "plain threshold on upstream pressure, always armed")


@dataclass(frozen=True)
class KinkParams:
    rise_allowance_kpa: float = _p(0.05, "rise of the valve pressure drop tolerated as normal")


@dataclass(frozen=True)
class FlowLossParams:
    """Leak and disconnect: flow below expected AND a pressure below its baseline."""

    flow_deficit_allowance_pct: float = _p(20.0, "flow deficit tolerated (pump ±14.5 % + sensor)", hi=100.0)
    pressure_drop_allowance_kpa: float = _p(0.02, "pressure drop tolerated as normal")


def _leak_defaults() -> FlowLossParams:
    return FlowLossParams(20.0, 0.02)


def _disconnect_defaults() -> FlowLossParams:
    # disconnect: nearly all flow gone and the ~1.5 kPa CSF back-pressure (15 cmH2O) lost
    return FlowLossParams(60.0, 0.5)


@dataclass(frozen=True)
class DetectionParams:
    """All detector parameters; ``from_dict`` reads the station file's ``[detection]`` table."""

    settle_s: float = _p(60.0, "disarmed after a pump start/stop/rate change (≫ C·R ≈ 9 s)", lo_open=False)
    learn_s: float = _p(120.0, "baseline learning time after settling")
    baseline_uncertainty_z: float = _p(
        4.0, "allowances widened by this many standard errors of the learnt mean", lo_open=False
    )
    false_alarm_interval_h: float = _p(1.0e5, "mean time between false alarms of one CUSUM (budget)")
    pressure_noise_floor_kpa: float = _p(0.005, "lower bound on learnt pressure noise")
    flow_noise_floor_ul_min: float = _p(0.005, "lower bound on learnt flow-sensor noise")
    occlusion: OcclusionParams = field(default_factory=OcclusionParams)
    kink: KinkParams = field(default_factory=KinkParams)
    leak: FlowLossParams = field(default_factory=_leak_defaults)
    disconnect: FlowLossParams = field(default_factory=_disconnect_defaults)

    @classmethod
    def from_dict(cls, table: Mapping[str, Any], source: str = "[detection]") -> DetectionParams:
        """Build from a TOML table; raises ConfigError listing every unknown key or bad value
        (the station loader reports the same problems with ``SETTINGS`` when rig.toml loads)."""
        problems = Problems()
        problems.table(dict(table), "detection", SETTINGS)
        if problems.items:
            raise ConfigError(problems.items, source=source)
        top: dict[str, Any] = {k: float(v) for k, v in table.items() if k not in _SUB_TABLES}
        for name, default in _SUB_TABLES.items():
            top[name] = _replace(default, {k: float(v) for k, v in table.get(name, {}).items()})
        return cls(**top)

    @staticmethod
    def describe() -> dict[str, str]:
        """Every parameter with its meaning, for `rig` help and docs."""
        out: dict[str, str] = {}
        for prefix, cls_ in (("", DetectionParams), ("occlusion.", OcclusionParams),
                             ("kink.", KinkParams), ("leak.", FlowLossParams),
                             ("disconnect.", FlowLossParams)):
            for f in fields(cls_):
                if "doc" in f.metadata:
                    out[prefix + f.name] = f.metadata["doc"]
        return out


def _schema_of(cls_: type) -> Schema:
    """The numeric parameters of a parameter class, with the ranges declared on its fields."""
    return {f.name: Key("number", low=f.metadata["lo"], low_open=f.metadata["lo_open"],
                        high=None if math.isinf(f.metadata["hi"]) else f.metadata["hi"])
            for f in fields(cls_) if "doc" in f.metadata}


def _occlusion_rules(table: dict[str, Any], where: str, problems: Problems) -> None:
    """Rules across the occlusion parameters (each with its default when not given)."""
    default = OcclusionParams()
    low = table.get("rise_ratio_min", default.rise_ratio_min)
    high = table.get("rise_ratio_max", default.rise_ratio_max)
    if low >= high:
        problems.add(where, f"rise_ratio_min ({low:g}) must be below rise_ratio_max ({high:g})")
    shortest = table.get("window_min_s", default.window_min_s)
    longest = table.get("window_max_s", default.window_max_s)
    if shortest > longest:
        problems.add(where, f"window_min_s ({shortest:g}) must not exceed window_max_s ({longest:g})")


# The [detection] table of the station file: checked once when rig.toml loads (rig.station.config)
# and again by from_dict; the defaults of each sub-table are its own (leak and disconnect differ).
_SUB_TABLES: dict[str, Any] = {"occlusion": OcclusionParams(), "kink": KinkParams(),
                               "leak": _leak_defaults(), "disconnect": _disconnect_defaults()}
SETTINGS: Schema = {
    **_schema_of(DetectionParams),
    "occlusion": Key("table", schema=_schema_of(OcclusionParams), validate=_occlusion_rules),
    "kink": Key("table", schema=_schema_of(KinkParams)),
    "leak": Key("table", schema=_schema_of(FlowLossParams)),
    "disconnect": Key("table", schema=_schema_of(FlowLossParams)),
}


def _replace(obj: Any, values: dict[str, Any]) -> Any:
    return type(obj)(**{**{f.name: getattr(obj, f.name) for f in fields(obj)}, **values})


# -- statistics ---------------------------------------------------------------------------------


def cusum_threshold(reference_k: float, arl0_samples: float) -> float:
    """Threshold h of a one-sided standardised CUSUM ``S = max(0, S + x − k)`` for an in-control
    average run length of ``arl0_samples`` (x ~ N(0, 1) when nothing is wrong).

    Siegmund's approximation ARL0 ≈ (e^{2kb} − 2kb − 1)/(2k²) with b = h + 1.166, solved by
    bisection (ARL0 grows monotonically with h).
    """
    if reference_k <= 0 or arl0_samples <= 1:
        raise ValueError(f"need k > 0 and ARL0 > 1 (got k={reference_k}, ARL0={arl0_samples})")

    def arl(h: float) -> float:
        b = h + 1.166
        x = 2 * reference_k * b
        if x > 700:
            return math.inf
        return (math.exp(x) - x - 1) / (2 * reference_k**2)

    lo, hi = 0.0, 1.0
    while arl(hi) < arl0_samples:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if arl(mid) < arl0_samples else (lo, mid)
    return hi


class Cusum:
    """One-sided CUSUM on standardised increments, with its peak kept for margin reporting."""

    def __init__(self, reference_k: float, threshold_h: float) -> None:
        self.k = reference_k
        self.h = threshold_h
        self.value = 0.0
        self.peak_ratio = 0.0

    def update(self, x: float) -> bool:
        self.value = max(0.0, self.value + x - self.k)
        ratio = self.value / self.h
        self.peak_ratio = max(self.peak_ratio, ratio)
        return ratio >= 1.0

    @property
    def ratio(self) -> float:
        return self.value / self.h


class _Welford:
    """Running mean and standard deviation (numerically stable)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self._m2 = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self._m2 += d * (x - self.mean)

    @property
    def std(self) -> float:
        return math.sqrt(self._m2 / (self.n - 1)) if self.n > 1 else 0.0


class SlidingSlope:
    """Least-squares line through the samples of the last ``window_s`` seconds, O(1) per sample.

    Sums are kept relative to a reference time and recomputed exactly from the buffer every
    buffer-length updates, so 24 h of add/subtract does not erode precision.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._buf: deque[tuple[float, float]] = deque()
        self._since_rebuild = 0
        self._rebuild()

    def _rebuild(self) -> None:
        self._t0 = self._buf[0][0] if self._buf else 0.0
        self._y0 = self._buf[0][1] if self._buf else 0.0
        self._n = self._st = self._sy = self._stt = self._sty = self._syy = 0.0
        for t, y in self._buf:
            self._accumulate(t, y, 1.0)
        self._since_rebuild = 0

    def _accumulate(self, t: float, y: float, sign: float) -> None:
        dt, dy = t - self._t0, y - self._y0
        self._n += sign
        self._st += sign * dt
        self._sy += sign * dy
        self._stt += sign * dt * dt
        self._sty += sign * dt * dy
        self._syy += sign * dy * dy

    def add(self, t_s: float, y: float) -> None:
        self._buf.append((t_s, y))
        self._accumulate(t_s, y, 1.0)
        while self._buf and self._buf[0][0] < t_s - self.window_s:
            old_t, old_y = self._buf.popleft()
            self._accumulate(old_t, old_y, -1.0)
        self._since_rebuild += 1
        if self._since_rebuild >= max(64, len(self._buf)):
            self._rebuild()

    @property
    def span_s(self) -> float:
        return self._buf[-1][0] - self._buf[0][0] if len(self._buf) > 1 else 0.0

    def fit(self) -> tuple[float, float] | None:
        """(slope per second, standard error of the slope) or None with too few samples."""
        n = self._n
        if n < 3:
            return None
        stt = self._stt - self._st * self._st / n
        if stt <= 0:
            return None
        sty = self._sty - self._st * self._sy / n
        syy = self._syy - self._sy * self._sy / n
        slope = sty / stt
        residual_var = max(0.0, syy - slope * sty) / (n - 2)
        return slope, math.sqrt(residual_var / stt)


# -- baseline -----------------------------------------------------------------------------------


@dataclass
class Baseline:
    """What normal delivery looks like in the current regime, learnt after settling."""

    rate_ml_h: float
    sample_period_s: float
    upstream_kpa: float
    upstream_noise_kpa: float  # spread about the mean (what a level CUSUM sees)
    upstream_white_noise_kpa: float  # from successive differences: blind to a ramp or drift
    downstream_kpa: float
    downstream_noise_kpa: float
    valve_drop_kpa: float
    valve_drop_noise_kpa: float
    flow_ul_min: float
    flow_noise_ul_min: float
    samples: int  # how many readings the means are made of

    @property
    def expected_flow_ul_min(self) -> float:
        return self.rate_ml_h * UL_MIN_PER_ML_H


class _BaselineLearner:
    def __init__(self) -> None:
        self.channels = {name: _Welford() for name in ("up", "down", "drop", "flow")}
        self._first_t: float | None = None
        self._last_t = 0.0
        self._last_up: float | None = None
        self._diff_sq_sum = 0.0

    def add(self, s: Sample) -> None:
        self._first_t = s.t_s if self._first_t is None else self._first_t
        self._last_t = s.t_s
        self.channels["up"].add(s.pressure_upstream_kpa)
        if self._last_up is not None:
            self._diff_sq_sum += (s.pressure_upstream_kpa - self._last_up) ** 2
        self._last_up = s.pressure_upstream_kpa
        self.channels["down"].add(s.pressure_downstream_kpa)
        self.channels["drop"].add(s.valve_drop_kpa)
        self.channels["flow"].add(s.flow_ul_min)

    def result(self, rate_ml_h: float, params: DetectionParams) -> Baseline | None:
        c = self.channels
        if c["up"].n < 10 or self._first_t is None:
            return None
        period = (self._last_t - self._first_t) / (c["up"].n - 1)
        pf, ff = params.pressure_noise_floor_kpa, params.flow_noise_floor_ul_min
        # Var(x[i+1] − x[i]) = 2σ² for white noise; a ramp adds only (slope·dt)² per difference
        white = math.sqrt(self._diff_sq_sum / (2 * (c["up"].n - 1)))
        return Baseline(
            rate_ml_h, period,
            c["up"].mean, max(pf, c["up"].std), max(pf, white),
            c["down"].mean, max(pf, c["down"].std),
            c["drop"].mean, max(pf, c["drop"].std),
            c["flow"].mean, max(ff, c["flow"].std),
            c["up"].n,
        )


# -- detectors ----------------------------------------------------------------------------------


class Detector:
    """Base: armed with a baseline, fed samples, latches one alarm per regime."""

    name = "detector"

    def __init__(self, params: DetectionParams) -> None:
        self.params = params
        self.alarm: Event | None = None
        self.closest_approach = 0.0  # max statistic/threshold while monitoring, over all regimes
        self.armed = False

    def arm(self, baseline: Baseline) -> None:
        self.armed = True
        self.alarm = None

    def disarm(self) -> None:
        self.armed = False

    def update(self, s: Sample) -> Event | None:
        if not self.armed or self.alarm is not None:
            return None
        ratio, detail = self._step(s)
        self.closest_approach = max(self.closest_approach, ratio)
        if detail is not None:
            self.alarm = Event(self.name, s.t_s, ratio, s.pressure_upstream_kpa, detail)
            return self.alarm
        return None

    def _step(self, s: Sample) -> tuple[float, str | None]:
        """(statistic/threshold now, alarm detail or None)."""
        raise NotImplementedError

    def _cusum(self, baseline: Baseline, allowance_sigmas: float, *, learnt_mean: bool) -> Cusum:
        """A CUSUM whose threshold spends the false-alarm budget at this sample rate.

        Against a learnt mean the reference k is widened by ``baseline_uncertainty_z`` standard
        errors of that mean (σ/√n, in σ units): a mean learnt from 240 readings is off by
        0.065σ RMS, and an unlucky 4σ-of-the-mean error would otherwise eat most of a small
        allowance and leave the CUSUM drifting towards its threshold on a healthy line.
        """
        k = allowance_sigmas
        if learnt_mean:
            k += self.params.baseline_uncertainty_z / math.sqrt(baseline.samples)
        arl0 = self.params.false_alarm_interval_h * S_PER_H / max(baseline.sample_period_s, 1e-6)
        return Cusum(k, cusum_threshold(k, arl0))


class OcclusionTrendDetector(Detector):
    """Upstream pressure rising at ≈ Q/C for ``persist_s``: the line is closed."""

    name = "occlusion"

    def arm(self, baseline: Baseline) -> None:
        super().arm(baseline)
        p = self.params.occlusion
        self.expected_slope_kpa_s = baseline.rate_ml_h / S_PER_H / p.compliance_ml_per_kpa
        self.window_s = self.window_for(baseline)
        self._slope = SlidingSlope(self.window_s)
        self._held_since: float | None = None

    def window_for(self, baseline: Baseline) -> float:
        """Window W with slope standard error σ·√(12/(f·W³)) = rise_ratio_min·(Q/C)/window_z."""
        p = self.params.occlusion
        target = p.rise_ratio_min * self.expected_slope_kpa_s / p.window_z
        rate_hz = 1.0 / baseline.sample_period_s
        # the white (difference-based) noise: a line already occluded while learning has a huge
        # spread about its mean, which would otherwise stretch the window needlessly
        w = (12.0 * baseline.upstream_white_noise_kpa**2 / (rate_hz * target**2)) ** (1.0 / 3.0)
        return min(p.window_max_s, max(p.window_min_s, w))

    def _step(self, s: Sample) -> tuple[float, str | None]:
        p = self.params.occlusion
        self._slope.add(s.t_s, s.pressure_upstream_kpa)
        fit = self._slope.fit() if self._slope.span_s >= 0.95 * self.window_s else None
        if fit is None:
            return 0.0, None
        slope, stderr = fit
        evidence = min(
            slope / (p.rise_ratio_min * self.expected_slope_kpa_s),
            slope / (p.min_z * stderr) if stderr > 0 else math.inf,
        )
        in_band = evidence >= 1.0 and slope <= p.rise_ratio_max * self.expected_slope_kpa_s
        if not in_band:
            self._held_since = None
            return evidence, None
        if self._held_since is None:
            self._held_since = s.t_s
        if s.t_s - self._held_since >= p.persist_s:
            ratio = slope / self.expected_slope_kpa_s
            return evidence, (
                f"upstream pressure rising {slope * 60:.4g} kPa/min = {ratio:.2f}×Q/C "
                f"for {s.t_s - self._held_since:.0f} s (window {self.window_s:.0f} s)"
            )
        return evidence, None


class OcclusionBackstopDetector(Detector):
    """Plain upstream-pressure threshold: slow, but independent of every model assumption."""

    name = "occlusion_backstop"

    def _step(self, s: Sample) -> tuple[float, str | None]:
        limit = self.params.occlusion.backstop_pressure_kpa
        ratio = s.pressure_upstream_kpa / limit
        if ratio >= 1.0:
            return ratio, f"upstream pressure {s.pressure_upstream_kpa:.1f} kPa ≥ {limit:g} kPa"
        return ratio, None


@dataclass
class _Channel:
    """One CUSUM watching a signal leave its reference value in one direction."""

    label: str
    unit: str
    read: Callable[[Sample], float]
    reference: float  # learnt mean, or the value the commanded rate predicts
    sigma: float  # noise of one reading
    sign: float  # +1 alarms on a rise, −1 on a drop
    cusum: Cusum

    def update(self, s: Sample) -> bool:
        return self.cusum.update(self.sign * (self.read(s) - self.reference) / self.sigma)

    def describe(self, s: Sample) -> str:
        value = self.read(s)
        return f"{self.label} {value:.4g} {self.unit} ({value - self.reference:+.3g} vs {self.reference:.4g})"


class DualCusumDetector(Detector):
    """Alarms when two CUSUMs are over threshold at once.

    Why two: each fault has a pair of symptoms, and requiring both keeps one fault from being
    named as another (a disconnect momentarily raises the valve drop, but upstream pressure
    falls, so it is not a kink) and multiplies the protection against false alarms.
    """

    def arm(self, baseline: Baseline) -> None:
        super().arm(baseline)
        self.channels = self._channels(baseline)

    def _channels(self, b: Baseline) -> tuple[_Channel, _Channel]:
        raise NotImplementedError

    def _channel(self, b: Baseline, label: str, unit: str, read: Callable[[Sample], float],
                 reference: float, sigma: float, sign: float, allowance: float, *,
                 learnt_mean: bool = True) -> _Channel:
        return _Channel(label, unit, read, reference, sigma, sign,
                        self._cusum(b, allowance / sigma, learnt_mean=learnt_mean))

    def _step(self, s: Sample) -> tuple[float, str | None]:
        fired = [c.update(s) for c in self.channels]  # update both: no short-circuit
        ratio = min(c.cusum.ratio for c in self.channels)
        if all(fired):
            return ratio, "; ".join(c.describe(s) for c in self.channels)
        return ratio, None


def _upstream(s: Sample) -> float:
    return s.pressure_upstream_kpa


def _downstream(s: Sample) -> float:
    return s.pressure_downstream_kpa


def _valve_drop(s: Sample) -> float:
    return s.valve_drop_kpa


def _flow(s: Sample) -> float:
    return s.flow_ul_min


class KinkDetector(DualCusumDetector):
    """A restriction raises the valve pressure drop (upstream − downstream) to a new plateau
    ``Q·R_kink``, and with it the upstream pressure."""

    name = "kink"

    def _channels(self, b: Baseline) -> tuple[_Channel, _Channel]:
        allowance = self.params.kink.rise_allowance_kpa
        return (
            self._channel(b, "valve drop", "kPa", _valve_drop, b.valve_drop_kpa, b.valve_drop_noise_kpa,
                          +1.0, allowance),
            self._channel(b, "upstream", "kPa", _upstream, b.upstream_kpa, b.upstream_noise_kpa,
                          +1.0, allowance),
        )


class FlowLossDetector(DualCusumDetector):
    """Flow below what the commanded rate predicts AND a pressure below its baseline.

    Leak watches the upstream pressure (a bleed drains the line before the flow sensor),
    disconnect the downstream pressure (the catheter's back-pressure is lost). The flow is
    compared with the commanded rate, not a learnt mean, so a leak present from the start is
    still seen.
    """

    def __init__(self, params: DetectionParams, name: str) -> None:
        super().__init__(params)
        self.name = name
        self._p: FlowLossParams = getattr(params, name)

    def _channels(self, b: Baseline) -> tuple[_Channel, _Channel]:
        expected = b.expected_flow_ul_min
        flow = self._channel(b, "flow", "µL/min", _flow, expected, b.flow_noise_ul_min, -1.0,
                             self._p.flow_deficit_allowance_pct / 100.0 * expected, learnt_mean=False)
        drop = self._p.pressure_drop_allowance_kpa
        if self.name == "leak":
            pressure = self._channel(b, "upstream", "kPa", _upstream, b.upstream_kpa,
                                     b.upstream_noise_kpa, -1.0, drop)
        else:
            pressure = self._channel(b, "downstream", "kPa", _downstream, b.downstream_kpa,
                                     b.downstream_noise_kpa, -1.0, drop)
        return flow, pressure


# -- the bank -----------------------------------------------------------------------------------


class DetectorBank:
    """Runs every detector on the stream and manages regimes (settle → learn → monitor).

    ``update`` returns the events raised by this sample; ``events`` keeps them all. A new regime
    (pump started/stopped, expected rate changed) disarms and re-learns; alarms latch per regime.
    """

    def __init__(self, params: DetectionParams | None = None) -> None:
        self.params = params or DetectionParams()
        self.trend = OcclusionTrendDetector(self.params)
        self.backstop = OcclusionBackstopDetector(self.params)
        self.detectors: list[Detector] = [
            self.trend,
            self.backstop,
            KinkDetector(self.params),
            FlowLossDetector(self.params, "leak"),
            FlowLossDetector(self.params, "disconnect"),
        ]
        self.events: list[Event] = []
        self.baseline: Baseline | None = None
        self.phase = "idle"  # idle | settling | learning | monitoring
        self._regime: tuple[bool, float] | None = None
        self._regime_t_s = 0.0
        self._learner = _BaselineLearner()

    def update(self, s: Sample) -> list[Event]:
        self._track_regime(s)
        new = [e for d in self.detectors if (e := d.update(s)) is not None]
        self.events.extend(new)
        return new

    def _track_regime(self, s: Sample) -> None:
        delivering = s.pump_running and s.expected_rate_ml_h > 0
        regime = (delivering, s.expected_rate_ml_h if delivering else 0.0)
        if regime != self._regime:
            self._regime, self._regime_t_s = regime, s.t_s
            for d in self.detectors:
                d.disarm()
            self.baseline = None
            self.phase = "settling" if delivering else "idle"
            if delivering:  # the backstop needs no baseline: armed from the first sample
                self.backstop.armed, self.backstop.alarm = True, None
            return
        if not delivering:
            return
        age_s = s.t_s - self._regime_t_s
        if self.phase == "settling" and age_s >= self.params.settle_s:
            self.phase, self._learner = "learning", _BaselineLearner()
        if self.phase == "learning":
            if age_s < self.params.settle_s + self.params.learn_s:
                self._learner.add(s)
                return
            baseline = self._learner.result(regime[1], self.params)
            if baseline is None:
                self._learner.add(s)
                return
            self.baseline, self.phase = baseline, "monitoring"
            for d in self.detectors:
                if d is not self.backstop:
                    d.arm(baseline)

    def closest_approach(self) -> dict[str, float]:
        """Largest statistic/threshold each detector reached while monitoring (alarm at ≥ 1)."""
        return {d.name: d.closest_approach for d in self.detectors}

    def first(self, detector: str) -> Event | None:
        return next((e for e in self.events if e.detector == detector), None)


__all__ = [
    "Baseline",
    "Cusum",
    "DetectionParams",
    "SETTINGS",
    "Detector",
    "DualCusumDetector",
    "DetectorBank",
    "Event",
    "FlowLossDetector",
    "FlowLossParams",
    "KinkDetector",
    "KinkParams",
    "OcclusionBackstopDetector",
    "OcclusionParams",
    "OcclusionTrendDetector",
    "Sample",
    "SlidingSlope",
    "cusum_threshold",
]
