"""Flow accuracy, gravimetric, after IEC 60601-2-24: mean flow error and the trumpet curve.

Method: tare the weighing vessel, run the pump at ``rate_ml_h`` for ``run_min`` and read the
balance every ``balance_read_s`` (every reading goes to raw/balance.csv, ``t_s,mass_g``). The
readings are interpolated onto a grid of sample interval S = ``sample_interval_min`` from the
pump start (rig.analysis.flow_metrics), and each sample's flow is

    Qi = (60·ΔWi/S + E)/d  mL/h     (d = fluid density, E = evaporation blank rate in g/h)

Over the analysis window (default the 2nd hour, ``analysis_start_min``..``analysis_end_min``):

* flow.mean_error_pct            A = 100·(Q̄ − r)/r
* flow.trumpet.P<P>.max_pct/.min_pct  Ep(max), Ep(min) over every window of P = 2, 5, 11, 19, 31 min
* flow.sensor_vs_balance_pct     the in-line flow sensor's mean over the same intervals versus the
                                 gravimetric mean (the sensor is what the detectors rely on)

S must be long enough for the balance to resolve one sample's increment (≥ 50 digits, i.e. < 1 %
quantisation) — at intrathecal rates of a few µL/h that needs a microbalance — and every trumpet
window must be a whole number of samples; bad combinations are refused before anything moves,
naming an S (or a balance resolution) that would do. Per-sample flows and the trumpet curve are
written to raw/flow_samples.csv and raw/trumpet.csv for the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from procedures._gravimetry import BalanceLog, density_g_ml, tare
from procedures._line_monitor import LineMonitor, watch
from procedures._pump import pump_alarm, start_pump, stop_pump
from procedures._setup import ITEM_SERIAL, SETUP_LINE
from procedures._uncertainty import gravimetric_uncertainty
from rig.analysis.flow_metrics import (
    DEFAULT_MIN_DIGITS_PER_SAMPLE,
    TRUMPET_WINDOWS_MIN,
    WATER_DENSITY_20C_G_ML,
    TrumpetCurve,
    analysis_period,
    check_sample_interval,
    flow_agreement,
    flow_ml_h,
    mean_flow_error_pct,
    resample_increments,
    trumpet_curve,
    ul_min_to_ml_h,
)
from rig.engine.context import StepContext
from rig.engine.procedure import Measurement, Parameter, Procedure, Step
from rig.errors import UsageError

M_MEAN = "flow.mean_error_pct"
M_SENSOR = "flow.sensor_vs_balance_pct"


def trumpet_name(window_min: float, which: str) -> str:
    return f"flow.trumpet.P{window_min:g}.{which}_pct"


# -- parameter checks ---------------------------------------------------------------------------


def _check_density(p: Mapping[str, float]) -> str | None:
    """density_g_ml is 0 (the station's [fluid] density) or 0.5 to 2 g/mL."""
    d = p["density_g_ml"]
    if d != 0 and not 0.5 <= d <= 2.0:
        return f"density_g_ml = {d:g} g/mL: give 0 (the station's [fluid] density) or 0.5 to 2 g/mL"
    return None


def _check_resolution(p: Mapping[str, float]) -> str | None:
    """S long enough for the balance at this rate (rig.analysis.flow_metrics says which S would do)."""
    density = p["density_g_ml"] or WATER_DENSITY_20C_G_ML
    try:
        check_sample_interval(p["sample_interval_min"], p["rate_ml_h"], p["balance_resolution_g"], density)
    except UsageError as exc:
        return str(exc)
    return None


def _check_windows(p: Mapping[str, float]) -> str | None:
    """Every trumpet window P must be a whole number of samples, else it cannot be reported."""
    s = p["sample_interval_min"]
    bad = [w for w in TRUMPET_WINDOWS_MIN if abs(w / s - round(w / s)) > 1e-6]
    if not bad:
        return None
    needed_g = p["rate_ml_h"] * 1.0 / 60.0 * (p["density_g_ml"] or WATER_DENSITY_20C_G_ML) / DEFAULT_MIN_DIGITS_PER_SAMPLE
    return (f"sample_interval_min = {s:g} cannot form the trumpet windows P = "
            f"{', '.join(f'{w:g}' for w in bad)} min (each must be a whole number of samples); use "
            f"S = 0.5 or 1 min — at {p['rate_ml_h']:g} mL/h S = 1 min needs a balance resolution of "
            f"{needed_g:.2g} g or finer")


def _check_window(p: Mapping[str, float]) -> str | None:
    """analysis_start_min..analysis_end_min lies within run_min, holds the longest trumpet window,
    and starts and ends on whole sample intervals."""
    start, end, run = p["analysis_start_min"], p["analysis_end_min"], p["run_min"]
    if end > run:
        return f"analysis_end_min = {end:g} is after the end of the run (run_min = {run:g})"
    longest = max(TRUMPET_WINDOWS_MIN)
    if end - start < longest:
        return (f"the analysis window {start:g}..{end:g} min is {end - start:g} min long; it must hold the "
                f"longest trumpet window P = {longest:g} min")
    s = p["sample_interval_min"]
    for name in ("analysis_start_min", "analysis_end_min"):
        if abs(p[name] / s - round(p[name] / s)) > 1e-6:
            return f"{name} = {p[name]:g} must be a whole number of sample intervals (S = {s:g} min)"
    return None


# -- analysis (pure: the unit tests feed it the standard's worked example) -----------------------


@dataclass(frozen=True)
class FlowAnalysis:
    grid_t_s: list[float]  # sample boundaries, len = len(flows) + 1
    flows_ml_h: list[float]  # Qi of every sample of the run
    first_analysed: int  # index of the first sample inside the analysis window
    analysed_ml_h: list[float]
    mean_error_pct: float
    trumpet: TrumpetCurve
    analysed_mass_g: float  # mass gained over the analysis window (for the uncertainty)


def analyse(
    t_s: Sequence[float], mass_g: Sequence[float], *, rate_ml_h: float, sample_interval_min: float,
    start_s: float, run_min: float, analysis_start_min: float, analysis_end_min: float,
    density_g_ml: float, evaporation_g_h: float = 0.0,
) -> FlowAnalysis:
    """Balance series -> per-sample flows, the mean error A and the trumpet curve (IEC 60601-2-24)."""
    inc = resample_increments(t_s, mass_g, sample_interval_min, start_s=start_s,
                              end_s=start_s + run_min * 60.0)
    flows = flow_ml_h(inc.mass_increments_g, sample_interval_min, density_g_ml, evaporation_g_h)
    analysed = analysis_period(flows, sample_interval_min, analysis_start_min, analysis_end_min)
    first = round(analysis_start_min / sample_interval_min)
    return FlowAnalysis(
        inc.t_s, flows, first, analysed, mean_flow_error_pct(analysed, rate_ml_h),
        trumpet_curve(analysed, rate_ml_h, sample_interval_min),
        math.fsum(inc.mass_increments_g[first:first + len(analysed)]),
    )


# -- steps --------------------------------------------------------------------------------------


def prepare(ctx: StepContext) -> None:
    tare(ctx)
    LineMonitor.start(ctx, detectors=False)  # the flow sensor series, for the agreement


def deliver(ctx: StepContext) -> None:
    """Run the pump for run_min, reading the balance on schedule; a pump alarm fails the run."""
    monitor = ctx.state["monitor"]
    log = BalanceLog.of(ctx)
    ctx.state["t_start_s"] = start_pump(ctx, ctx.params["rate_ml_h"], monitor)
    log.read(ctx)

    def alarmed() -> bool:
        alarm = pump_alarm(ctx)
        if alarm:
            ctx.event("alarm", f"pump alarm {alarm!r} during delivery", alarm=alarm)
            ctx.fail(f"pump alarm {alarm!r} during delivery")
        return False

    watch(ctx, ctx.params["run_min"] * 60.0, until=alarmed, every_s=ctx.params["balance_read_s"],
          on_tick=lambda _t: log.read(ctx))
    ctx.state["t_stop_s"] = stop_pump(ctx, monitor)


def evaluate(ctx: StepContext) -> None:
    p = ctx.params
    rate, s_min = p["rate_ml_h"], p["sample_interval_min"]
    density = density_g_ml(ctx, p["density_g_ml"])
    t0 = ctx.state["t_start_s"]
    times, masses = BalanceLog.of(ctx).series(t0, ctx.state["t_stop_s"])
    result = analyse(times, masses, rate_ml_h=rate, sample_interval_min=s_min, start_s=t0,
                     run_min=p["run_min"], analysis_start_min=p["analysis_start_min"],
                     analysis_end_min=p["analysis_end_min"], density_g_ml=density,
                     evaporation_g_h=p["evaporation_g_h"])
    _write_raw(ctx, result)

    # GUM budget (k = 2) from the station balance's calibration data over the analysis window
    mean_ml_h = rate * (1 + result.mean_error_pct / 100.0)
    window_s = (p["analysis_end_min"] - p["analysis_start_min"]) * 60.0
    corrected = p["evaporation_g_h"] > 0
    ctx.measure(M_MEAN, result.mean_error_pct,
                uncertainty=gravimetric_uncertainty(
                    ctx, mass_g=result.analysed_mass_g, duration_s=window_s, density_g_ml=density,
                    what="mean flow error over the analysis window", resolution_g=p["balance_resolution_g"],
                    evaporation_corrected=corrected),
                detail=f"mean flow {mean_ml_h:.5g} mL/h vs set {rate:g} mL/h over "
                       f"{p['analysis_start_min']:g}..{p['analysis_end_min']:g} min "
                       f"({len(result.analysed_ml_h)} samples of S = {s_min:g} min, d = {density:g} g/mL, "
                       f"E = {p['evaporation_g_h']:g} g/h)")
    for window in TRUMPET_WINDOWS_MIN:
        point = result.trumpet.point(window)  # the parameter checks guarantee every window
        detail = f"{point.windows} windows of {point.samples_per_window} samples"
        # one observation window of P minutes: the mass the set rate delivers in it, over P minutes
        u_window = gravimetric_uncertainty(
            ctx, mass_g=rate * density * window / 60.0, duration_s=window * 60.0, density_g_ml=density,
            what=f"flow error of one {window:g}-min observation window", resolution_g=p["balance_resolution_g"],
            evaporation_corrected=corrected)
        ctx.measure(trumpet_name(window, "max"), point.max_error_pct, uncertainty=u_window, detail=detail)
        ctx.measure(trumpet_name(window, "min"), point.min_error_pct, uncertainty=u_window, detail=detail)

    monitor = ctx.state["monitor"]
    sensor: list[float] = []
    grav: list[float] = []
    for k, q in enumerate(result.analysed_ml_h):
        i = result.first_analysed + k
        mean_ul_min = monitor.mean_flow_ul_min(result.grid_t_s[i], result.grid_t_s[i + 1])
        if mean_ul_min is not None:
            sensor.append(ul_min_to_ml_h(mean_ul_min))
            grav.append(q)
    if not sensor:
        ctx.measure(M_SENSOR, None, detail="no flow-sensor data in the analysis window")
        return
    agreement = flow_agreement(sensor, grav)
    ctx.measure(M_SENSOR, agreement.mean_difference_pct,
                detail=f"sensor {agreement.mean_sensor_ml_h:.5g} mL/h vs balance "
                       f"{agreement.mean_gravimetric_ml_h:.5g} mL/h over {len(sensor)} intervals; worst "
                       f"interval {agreement.max_abs_difference_pct:.3g} %")


def _write_raw(ctx: StepContext, result: FlowAnalysis) -> None:
    flows = ctx.raw("flow_samples", ["t_start_s", "t_end_s", "flow_ml_h", "analysed"])
    last = result.first_analysed + len(result.analysed_ml_h)
    for i, q in enumerate(result.flows_ml_h):
        flows.row(result.grid_t_s[i], result.grid_t_s[i + 1], q, int(result.first_analysed <= i < last))
    trumpet = ctx.raw("trumpet", ["window_min", "windows", "max_error_pct", "min_error_pct"])
    for point in result.trumpet.points:
        trumpet.row(point.window_min, point.windows, point.max_error_pct, point.min_error_pct)


def _run_s(p: Mapping[str, float]) -> float:
    return p["run_min"] * 60.0


PROCEDURE = Procedure(
    id="flow_accuracy",
    version="1.0.0",
    title="Flow accuracy and trumpet curve (gravimetric, IEC 60601-2-24)",
    requirements=("REQ-FLOW-001", "REQ-FLOW-002", "REQ-FLOW-003"),
    description=__doc__ or "",
    parameters=(
        Parameter("rate_ml_h", "mL/h", 1.0, low=0.001, high=10.0,
                  description="set rate r (intrathecal: ~0.002 to 1 mL/h)"),
        Parameter("sample_interval_min", "min", 0.5, low=0.1, high=60.0,
                  description="IEC sample interval S (0.5 min at >= ~1 mL/h)"),
        Parameter("run_min", "min", 120.0, low=32.0, high=2880.0, description="total run length T"),
        Parameter("analysis_start_min", "min", 60.0, low=0.0, high=2880.0,
                  description="start of the analysis window (default: the 2nd hour)"),
        Parameter("analysis_end_min", "min", 120.0, low=31.0, high=2880.0,
                  description="end of the analysis window"),
        Parameter("density_g_ml", "g/mL", 0.0, low=0.0, high=2.0,
                  description="fluid density d; 0 = the station's [fluid] density",
                  station_default="fluid.density_g_ml"),
        Parameter("evaporation_g_h", "g/h", 0.0, low=0.0, high=0.1,
                  description="evaporation blank rate E of the open vessel, measured with the pump stopped",
                  zero_means="no evaporation correction (its bound is in the uncertainty budget)"),
        Parameter("balance_resolution_g", "g", 0.0001, low=1e-7, high=0.01,
                  description="readability of the balance (0.1 mg analytical, 1 µg micro)"),
        Parameter("balance_read_s", "s", 10.0, low=1.0, high=600.0,
                  description="how often the balance is read (every reading is recorded)"),
    ),
    checks=(_check_density, _check_window, _check_resolution, _check_windows),
    item_under_test=(ITEM_SERIAL,),
    steps=(
        SETUP_LINE,
        Step("prepare", prepare, timeout_s=180.0, duration_s=10.0),
        Step("deliver", deliver, timeout_s=lambda p: _run_s(p) + 300.0, duration_s=_run_s),
        Step("evaluate", evaluate, timeout_s=120.0),
    ),
    measurements=(
        Measurement(M_MEAN, "%", "mean flow error A over the analysis window"),
        *(Measurement(trumpet_name(w, which), "%", f"trumpet curve Ep({which}) for P = {w:g} min")
          for w in TRUMPET_WINDOWS_MIN for which in ("max", "min")),
        Measurement(M_SENSOR, "%", "flow sensor mean vs gravimetric mean over the analysis window"),
    ),
    spec_file="flow_accuracy.spec.toml",
)
