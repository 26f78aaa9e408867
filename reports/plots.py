"""Plots for the HTML report as inline SVG: flow vs time, trumpet curve, pressure traces.

What is drawn comes from the run itself: the gravimetric flow is the procedure's own analysis
output (raw/flow_samples.csv) when the procedure wrote one, the raw balance series otherwise (and
the caption says which); every event kind of the record vocabulary (rig.record.EVENT_KINDS) has its
own marker and legend entry; "interlock armed" is a small marker, not a trip line; the pressure
axis scales to the data and a limit is drawn only where it falls in range.

Why inline SVG from matplotlib's Agg-free SVG writer: the report must be one file that opens
offline years later; vector plots stay sharp and readable without any script or external URL.
No pyplot is used, so building a report never touches a global backend. Long series are reduced
to min/max envelopes per bucket so a spike (an occlusion alarm) is never decimated away.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from reports.daq_series import read_columns

MAX_POINTS = 1500
DEFAULT_DENSITY_G_ML = 0.998  # IEC 60601-2-24: water at 20 degC
# One style per event class: (legend label, colour, line style, full-height line?)
EVENT_STYLES: dict[str, tuple[str, str, str, bool]] = {
    "fault": ("fault on the line", "#d62728", "--", True),
    "fault_injected": ("fault injected (sim)", "#ff7f0e", "--", True),
    "alarm": ("pump alarm", "#e377c2", "-.", True),
    "pump_alarm": ("pump alarm", "#e377c2", "-.", True),
    "detector": ("rig detector alarm", "#9467bd", "--", True),
    "interlock": ("interlock TRIP", "#8c564b", "-", True),
    "interlock_armed": ("interlock armed", "#7f7f7f", ":", False),
    "warning": ("warning", "#bcbd22", ":", True),
    "error": ("error", "#000000", "-", True),
    "pump_watchdog": ("pump watchdog stop", "#8c564b", "-.", True),
    "program": ("program step", "#17becf", ":", True),
    "program_part": ("program part done", "#17becf", "-.", True),
    "fill": ("reservoir filled", "#2ca02c", ":", True),
    "evaporation_blank": ("evaporation blank", "#7f7f7f", ":", True),
    "low_reservoir": ("low-reservoir alarm", "#e377c2", "--", True),
    "refill": ("refill", "#2ca02c", "-", True),
}
UNKNOWN_EVENT_STYLE = ("other event", "#000000", ":", True)
_SVG_STRIP = (
    re.compile(r"\A.*?(?=<svg)", re.S),  # XML declaration and DOCTYPE (carry URLs)
    re.compile(r"<metadata>.*?</metadata>\s*", re.S),
    re.compile(r'\s+xmlns(?::\w+)?="[^"]*"'),  # not needed for SVG inline in HTML5
)


@dataclass
class Plot:
    id: str
    title: str
    caption: str
    svg: str


def read_csv_columns(path: Path) -> dict[str, np.ndarray]:
    """A numeric CSV with a header row as {column: array}; empty dict when it has no data rows."""
    with open(path, encoding="utf-8") as handle:
        header = [h.strip() for h in handle.readline().split(",")]
        body = handle.read()
    if not body.strip():
        return {}
    try:
        data = np.loadtxt(io.StringIO(body), delimiter=",", ndmin=2)
    except ValueError:  # empty cells or words: slow path, NaN for what is not a number
        data = np.array([[_to_float(c) for c in line.split(",")] for line in body.splitlines() if line.strip()])
        if data.ndim != 2:
            raise ValueError(f"{path.name}: rows have different numbers of columns") from None
    if data.size == 0:
        return {}
    return {name: data[:, i] for i, name in enumerate(header) if i < data.shape[1]}


def _to_float(cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        return {"true": 1.0, "false": 0.0}.get(cell.strip().lower(), float("nan"))


def read_daq_stream(path: Path, run_started_utc: str | None) -> dict[str, np.ndarray]:
    """A binary DAQ stream (instruments.daq_stream: float64 scans + header + chunk index) as
    columns named like the CSV form (pressure_upstream_kpa, flow_ul_min, t_s), read in bounded
    memory and reduced to plot size when long (reports.daq_series).

    t_s is procedure time, from the sample number and the rate, shifted by the header's
    started_utc minus the run's start (whole seconds: both are recorded to the second or better).
    """
    header = json.loads(path.with_name(path.name + ".header.json").read_text(encoding="utf-8"))
    offset_s = 0.0
    if run_started_utc and header.get("started_utc"):
        from reports.key_registry import parse_utc

        try:
            offset_s = (parse_utc(str(header["started_utc"]), "started_utc")
                        - parse_utc(run_started_utc, "run start")).total_seconds()
        except ValueError:
            offset_s = 0.0
    return read_columns(path, offset_s)


def _is_stream(path: Path) -> bool:
    header = path.with_name(path.name + ".header.json")
    if not header.is_file():
        return False
    try:
        return json.loads(header.read_text(encoding="utf-8")).get("format") == "float64-le scans"
    except ValueError:
        return False


def _concat_daq(raw_dir: Path, run_started_utc: str | None = None) -> dict[str, np.ndarray]:
    """All raw/daq* data (CSV text, or binary streams with a header sidecar) in time order."""
    parts = []
    for path in sorted(raw_dir.glob("daq*")):
        if path.name.endswith((".header.json", ".index.jsonl")) or not path.is_file():
            continue
        if _is_stream(path):
            parts.append(read_daq_stream(path, run_started_utc))
        elif path.suffix == ".csv":
            parts.append(read_csv_columns(path))
    parts = [p for p in parts if "t_s" in p and len(p["t_s"])]
    if not parts:
        return {}
    names = set.intersection(*(set(p) for p in parts))
    joined = {n: np.concatenate([p[n] for p in parts]) for n in names}
    order = np.argsort(joined["t_s"], kind="stable")
    return {n: v[order] for n, v in joined.items()}


def envelope(t: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Min/max per bucket (2 points each, in time order) so peaks survive the reduction."""
    if len(t) <= max_points:
        return t, y
    edges = np.unique(np.linspace(0, len(t), max_points // 2 + 1).astype(int))
    bucket = np.repeat(np.arange(len(edges) - 1), np.diff(edges))
    starts = edges[:-1]  # stable sorts by bucket, then by value: a bucket's first is its first min (max)
    i_min, i_max = np.lexsort((y, bucket))[starts], np.lexsort((-np.asarray(y), bucket))[starts]
    picks = np.sort(np.column_stack([i_min, i_max]), axis=1).ravel()
    return np.asarray(t)[picks], np.asarray(y)[picks]


def bucket_mean(t: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Mean per bucket: for noisy signals (flow sensor) where the level, not the noise, matters."""
    if len(t) <= max_points:
        return t, y
    edges = np.linspace(0, len(t), max_points + 1).astype(int)
    keep = edges[1:] > edges[:-1]
    sums_t = np.add.reduceat(t, edges[:-1][keep])
    sums_y = np.add.reduceat(y, edges[:-1][keep])
    counts = np.diff(edges)[keep]
    return sums_t / counts, sums_y / counts


def _param(parameters: dict[str, Any], *names: str) -> float | None:
    for name in names:
        entry = parameters.get(name)
        value = entry.get("value") if isinstance(entry, dict) else entry
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def gravimetric_flow_ml_h(
    t_s: np.ndarray, mass_g: np.ndarray, density_g_ml: float, interval_s: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Q = 3600*dm/(dt*d) mL/h over sample intervals (IEC 60601-2-24: Qi = 60*dWi/(S*d)).

    ``interval_s`` is the procedure's sample interval S; without one, S is chosen so the plot has
    at most ~240 intervals (never shorter than the balance's own sample spacing).
    """
    keep = np.isfinite(t_s) & np.isfinite(mass_g)
    t_s, mass_g = t_s[keep], mass_g[keep]
    if len(t_s) < 2:
        return np.array([]), np.array([])
    span_s = float(t_s[-1] - t_s[0])
    spacing_s = span_s / (len(t_s) - 1)
    interval_s = interval_s or max(spacing_s, span_s / 240.0)
    grid = np.arange(t_s[0], t_s[-1] + 1e-9, interval_s)
    if len(grid) < 2:
        return np.array([]), np.array([])
    mass_on_grid = np.interp(grid, t_s, mass_g)
    flow = 3600.0 * np.diff(mass_on_grid) / (np.diff(grid) * density_g_ml)
    return grid[1:], flow


def _figure() -> tuple[Figure, Any]:
    """Fixed margins with room for the legend on the right: a constrained layout measures every
    text box before drawing and nearly doubled the cost of each plot (a report has three)."""
    fig = Figure(figsize=(9.5, 3.4))
    fig.subplots_adjust(left=0.075, right=0.72, bottom=0.15, top=0.96)
    return fig, fig.add_subplot()


def _error_axes(ax: Any, xlabel: str, ylabel: str, mean_label: str, mean_pct: float | None) -> None:
    """An error plot's common parts: the mean (dashed, when measured; ``mean_label`` formats it),
    zero, labels, grid, legend."""
    if mean_pct is not None:
        ax.axhline(mean_pct, color="black", linestyle="--", linewidth=1.0, label=mean_label.format(mean_pct))
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    _legend(ax)


def _legend(ax: Any) -> None:
    """The legend beside the axes, never over the data (and matplotlib's "best" placement, which
    tests every candidate spot against every plotted point, cost most of a report's build time)."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", borderaxespad=0.0)


@contextlib.contextmanager
def _svg_settings(salt: str) -> Iterator[None]:
    """The two SVG settings a report needs, restored afterwards (matplotlib.rc_context would copy
    every setting, deeply, for each plot: a tenth of a report's build time)."""
    keys = {"svg.hashsalt": salt, "svg.fonttype": "none"}
    saved = {key: matplotlib.rcParams[key] for key in keys}
    matplotlib.rcParams.update(keys)
    try:
        yield
    finally:
        matplotlib.rcParams.update(saved)


def to_svg(fig: Figure, salt: str) -> str:
    """Deterministic SVG text with no URLs (no DOCTYPE, metadata or namespace declarations)."""
    with _svg_settings(salt):
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buffer.getvalue()
    for pattern in _SVG_STRIP:
        svg = pattern.sub("", svg, count=1 if pattern.pattern.startswith(r"\A") else 0)
    return svg.strip()


def event_class(event: dict[str, Any]) -> str:
    """The style key of an event: its kind, with the interlock's "armed" line apart from a trip."""
    kind = str(event.get("kind"))
    if kind == "interlock" and str(event.get("detail", "")).startswith("armed"):
        return "interlock_armed"
    return kind


def _mark_events(ax: Any, events: list[dict[str, Any]], t_scale: float) -> list[str]:
    """Draw every event; returns the legend labels used (each class once)."""
    seen: dict[str, str] = {}
    for event in events:
        t = event.get("t_proc_s")
        if not isinstance(t, (int, float)) or isinstance(t, bool):
            continue
        key = event_class(event)
        label, colour, style, full = EVENT_STYLES.get(key, UNKNOWN_EVENT_STYLE)
        if key not in EVENT_STYLES:
            label = f"{label}: {key}"
        shown = label if label not in seen.values() else None
        seen[key] = label
        x = float(t) / t_scale
        if full:
            ax.axvline(x, color=colour, linestyle=style, linewidth=1.0, label=shown)
        else:  # a state, not an incident: a small marker on the time axis
            ax.plot([x], [0.02], marker="^", color=colour, markersize=7, linestyle="none", label=shown,
                    transform=ax.get_xaxis_transform(), clip_on=False)
    return list(dict.fromkeys(seen.values()))


def _time_scale(span_s: float) -> tuple[float, str]:
    return (3600.0, "h") if span_s > 4 * 3600 else (60.0, "min")


def flow_plot(daq: dict[str, np.ndarray], balance: dict[str, np.ndarray], results: dict[str, Any], salt: str,
              analysis: dict[str, np.ndarray] | None = None) -> Plot | None:
    if "t_s" not in balance and "flow_ul_min" not in daq and not analysis:
        return None
    params = results.get("parameters") or {}
    fluid = (results.get("station") or {}).get("fluid") or {}
    density = _param(params, "density_g_ml") or (fluid.get("density_g_ml") if isinstance(fluid, dict) else None)
    density = float(density or DEFAULT_DENSITY_G_ML)
    interval_s = _param(params, "sample_interval_s")
    interval_min = _param(params, "sample_interval_min")
    interval_s = interval_s or (interval_min * 60.0 if interval_min else None)
    fig, ax = _figure()
    span_s = max(float(balance["t_s"][-1]) if "t_s" in balance and len(balance["t_s"]) else 0.0,
                 float(daq["t_s"][-1]) if "t_s" in daq and len(daq["t_s"]) else 0.0,
                 float(analysis["t_end_s"][-1]) if analysis and "t_end_s" in analysis and len(analysis["t_end_s"]) else 0.0)
    scale, unit = _time_scale(span_s)
    if "flow_ul_min" in daq:
        t, q = bucket_mean(daq["t_s"], daq["flow_ul_min"] * 0.06)
        ax.plot(t / scale, q, color="#1f77b4", linewidth=0.8, alpha=0.7, label="flow sensor")
    source = "raw/balance.csv (Qi = 3600·ΔW/(Δt·d), the report's own resampling: this procedure wrote no analysis)"
    if analysis and {"t_end_s", "flow_ml_h"} <= set(analysis):
        ax.step(analysis["t_end_s"] / scale, analysis["flow_ml_h"], where="pre", color="#2ca02c", linewidth=1.4,
                label="gravimetric (procedure analysis)")
        source = "raw/flow_samples.csv, the procedure's own IEC 60601-2-24 analysis (per-sample Qi)"
    elif "t_s" in balance and "mass_g" in balance:
        t, q = gravimetric_flow_ml_h(balance["t_s"], balance["mass_g"], density,
                                     interval_s)
        ax.step(t / scale, q, where="pre", color="#2ca02c", linewidth=1.4, label="gravimetric")
    rate = _param(params, "rate_ml_h", "set_rate_ml_h", "programmed_rate_ml_h")
    if rate is not None:
        ax.axhline(rate, color="black", linestyle=":", linewidth=1.0, label=f"set rate {rate:g} mL/h")
    _mark_events(ax, results.get("events") or [], scale)
    ax.set_xlabel(f"time [{unit}]")
    ax.set_ylabel("flow [mL/h]")
    ax.grid(True, alpha=0.3)
    _legend(ax)
    return Plot("flow", "Flow vs time",
                f"Gravimetric flow from {source} (density {density:g} g/mL); flow sensor from raw/daq*; "
                "vertical lines: the run's events (legend).",
                to_svg(fig, f"{salt}-flow"))


_TRUMPET_NUMBER = re.compile(r"(\d+(?:\.\d+)?)")


def trumpet_points(measurements: list[dict[str, Any]]) -> dict[str, list[tuple[float, dict[str, Any]]]]:
    """flow.trumpet.* measurements as {"max"|"min": [(window_min, measurement)]}.

    Accepted names put the window P (minutes) as the first number and "max"/"min" as a separate
    token, e.g. ``flow.trumpet.P2.ep_max``, ``flow.trumpet.ep_min_5min``, ``flow.trumpet.11.max``.
    """
    points: dict[str, list[tuple[float, dict[str, Any]]]] = {"max": [], "min": []}
    for m in measurements:
        name = str(m.get("name") or "")
        if not name.startswith("flow.trumpet.") or not isinstance(m.get("value"), (int, float)):
            continue
        suffix = name[len("flow.trumpet."):]
        tokens = re.split(r"[._\-]", suffix.lower())
        kind = next((t for t in tokens if t in ("max", "min")), None)
        number = _TRUMPET_NUMBER.search(suffix)
        if kind and number:
            points[kind].append((float(number.group(1)), m))
    for kind in points:
        points[kind].sort(key=lambda p: p[0])
    return points


def trumpet_plot(results: dict[str, Any], salt: str) -> Plot | None:
    measurements = results.get("measurements") or []
    points = trumpet_points(measurements)
    if not points["max"] and not points["min"]:
        return None
    fig, ax = _figure()
    for kind, marker, colour in (("max", "^", "#d62728"), ("min", "v", "#1f77b4")):
        if not points[kind]:
            continue
        windows = [p for p, _ in points[kind]]
        ax.plot(windows, [m["value"] for _, m in points[kind]], marker=marker, color=colour, label=f"Ep({kind})")
        for bound in ("high", "low"):
            limits = [m.get(bound) for _, m in points[kind]]
            if all(isinstance(v, (int, float)) for v in limits):
                ax.plot(windows, limits, color=colour, linestyle=":", linewidth=0.9)
    mean = next((m for m in measurements if "mean_error" in str(m.get("name")) and isinstance(m.get("value"), (int, float))), None)
    a_pct = None if mean is None else float(mean["value"])
    _error_axes(ax, "observation window P [min]", "flow error [%]", "A = {:.3g} %", a_pct)
    return Plot("trumpet", "Trumpet curve",
                "Maximum and minimum flow error Ep over observation windows P (IEC 60601-2-24); dotted: limits.",
                to_svg(fig, f"{salt}-trumpet"))


def pressure_plot(daq: dict[str, np.ndarray], results: dict[str, Any], salt: str) -> Plot | None:
    columns = sorted(n for n in daq if n.endswith("_kpa"))
    if not columns:
        return None
    scale, unit = _time_scale(float(daq["t_s"][-1]) if len(daq["t_s"]) else 0.0)
    fig, ax = _figure()
    for name in columns:
        t, p = envelope(daq["t_s"], daq[name])
        ax.plot(t / scale, p, linewidth=0.9, label=name.removeprefix("pressure_").removesuffix("_kpa"))
    low, high = pressure_range(daq, columns)
    _mark_events(ax, results.get("events") or [], scale)
    limit = ((results.get("station") or {}).get("safety") or {}).get("max_line_pressure_kpa")
    limit_note = ""
    if isinstance(limit, (int, float)) and not isinstance(limit, bool):
        if low <= limit <= high + 0.5 * (high - low):
            ax.axhline(limit, color="#8c564b", linestyle=":", linewidth=1.0, label=f"interlock limit {limit:g} kPa")
            high = max(high, float(limit))
        else:
            limit_note = f" The interlock limit ({limit:g} kPa) is far above the plotted range."
    pad = 0.08 * (high - low)
    ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel(f"time [{unit}]")
    ax.set_ylabel("pressure [kPa]")
    ax.grid(True, alpha=0.3)
    _legend(ax)
    return Plot("pressure", "Line pressure",
                "Pressure traces from raw/daq* (min/max envelope), axis scaled to the data; vertical lines and "
                "markers: the run's events (legend)." + limit_note,
                to_svg(fig, f"{salt}-pressure"))


def _limits_of(results: dict[str, Any], name: str) -> tuple[float | None, float | None]:
    m = next((m for m in results.get("measurements") or [] if m.get("name") == name), None) or {}
    low, high = m.get("low"), m.get("high")
    return (float(low) if isinstance(low, (int, float)) else None,
            float(high) if isinstance(high, (int, float)) else None)


def daily_plots(daily: dict[str, np.ndarray], results: dict[str, Any], salt: str) -> list[Plot]:
    """A refill interval (reservoir_cycle): the daily error against the day, with its uncertainty
    and the worst-day limits, and the cumulative delivered volume against the programmed one —
    both from the procedure's own per-day analysis (raw/daily.csv), not recomputed here."""
    if not {"day", "error_pct", "delivered_ml", "programmed_ml"} <= set(daily) or not len(daily["day"]):
        return []
    return [
        Plot("daily_error", "Daily error vs day",
             "Delivered vs programmed volume of each day, e = 100·(V − P)/P with V = (Δm + E·24 h)/ρ, "
             "from raw/daily.csv (the procedure's own analysis); bars: expanded uncertainty U (k = 2); "
             "dotted: the worst-day limits of the spec.", to_svg(daily_error_figure(daily, results), f"{salt}-daily")),
        Plot("cumulative_volume", "Cumulative volume",
             "Sum of the daily delivered volumes (raw/daily.csv) against the sum of the programmed ones, day "
             "by day over the interval and the day after the refill.",
             to_svg(cumulative_volume_figure(daily), f"{salt}-cumulative")),
    ]


def _after_refill(daily: dict[str, np.ndarray]) -> np.ndarray:
    return daily["phase"] == 1.0 if "phase" in daily else np.zeros(len(daily["day"]), dtype=bool)


def daily_error_figure(daily: dict[str, np.ndarray], results: dict[str, Any]) -> Figure:
    """Daily error e_d against day d (± 2u), interval days and the day after the refill apart."""
    day, error, after = daily["day"], daily["error_pct"], _after_refill(daily)
    u = daily.get("u_error_pct")
    fig, ax = _figure()
    for mask, colour, label in ((~after, "#1f77b4", "day of the interval"), (after, "#2ca02c", "day after the refill")):
        if mask.any():
            ax.errorbar(day[mask], error[mask], yerr=None if u is None else 2.0 * u[mask], fmt="o", markersize=3.5,
                        color=colour, elinewidth=0.8, capsize=2, label=f"{label} (± U, k = 2)")
    low, high = _limits_of(results, "cycle.daily_error_worst_pct")
    for i, bound in enumerate(b for b in (low, high) if b is not None):
        ax.axhline(bound, color="#d62728", linestyle=":", linewidth=1.0, label="worst-day limits" if i == 0 else None)
    mean = next((m for m in results.get("measurements") or [] if m.get("name") == "cycle.daily_error_mean_pct"
                 and isinstance(m.get("value"), (int, float))), None)
    mean_pct = None if mean is None else float(mean["value"])
    _error_axes(ax, "day", "daily error [%]", "mean {:.3g} %", mean_pct)
    return fig


def cumulative_volume_figure(daily: dict[str, np.ndarray]) -> Figure:
    """Cumulative delivered volume (by weight) and cumulative programmed volume against day."""
    day, after = daily["day"], _after_refill(daily)
    fig, ax = _figure()
    ax.plot(day, np.cumsum(daily["programmed_ml"]), color="black", linestyle=":", marker=".", linewidth=1.0,
            label="programmed")
    ax.plot(day, np.cumsum(daily["delivered_ml"]), color="#1f77b4", marker="o", markersize=3, linewidth=1.2,
            label="delivered (by weight)")
    if after.any():
        ax.axvline(float(day[after][0]) - 0.5, color="#2ca02c", linestyle="-.", linewidth=1.0, label="refill")
    ax.set_xlabel("day")
    ax.set_ylabel("cumulative volume [mL]")
    ax.grid(True, alpha=0.3)
    _legend(ax)
    return fig


def read_daily_csv(path: Path) -> dict[str, np.ndarray]:
    """raw/daily.csv of reservoir_cycle as columns; its ``phase`` words become 0 (interval) or
    1 (after_refill), the only two phases it writes."""
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as handle:
        header = [h.strip() for h in handle.readline().split(",")]
        rows = [line.strip().split(",") for line in handle if line.strip()]
    columns: dict[str, np.ndarray] = {}
    for i, name in enumerate(header):
        cells = [r[i] if i < len(r) else "" for r in rows]
        if name == "phase":
            columns[name] = np.array([1.0 if c.strip() == "after_refill" else 0.0 for c in cells])
        else:
            columns[name] = np.array([_to_float(c) for c in cells])
    return columns


def pressure_range(daq: dict[str, np.ndarray], columns: list[str]) -> tuple[float, float]:
    """(low, high) of the finite pressure samples, at least 1 kPa apart so a flat trace shows its noise."""
    values = np.concatenate([daq[c][np.isfinite(daq[c])] for c in columns]) if columns else np.array([])
    if not len(values):
        return 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    if high - low < 1.0:
        middle = (high + low) / 2
        low, high = middle - 0.5, middle + 0.5
    return low, high


def _optional_csv(path: Path, notes: list[str]) -> dict[str, np.ndarray]:
    """A raw CSV's columns; empty when absent, a note when unreadable."""
    if not path.is_file():
        return {}
    try:
        return read_csv_columns(path)
    except (ValueError, OSError) as exc:
        notes.append(f"raw/{path.name} could not be plotted: {exc}")
        return {}


def build_plots(raw_dir: Path, results: dict[str, Any], salt: str) -> tuple[list[Plot], list[str]]:
    """Every plot the record has data for, in report order, plus notes on raw files that could
    not be read (a damaged raw file must not stop the report: the record is still evidence)."""
    notes: list[str] = []
    try:
        daq = _concat_daq(raw_dir, (results.get("run") or {}).get("started_utc"))
    except (ValueError, OSError, KeyError) as exc:
        daq = {}
        notes.append(f"raw/daq* could not be plotted: {exc}")
    balance = _optional_csv(raw_dir / "balance.csv", notes)
    analysis = _optional_csv(raw_dir / "flow_samples.csv", notes)  # the procedure's own analysis output
    try:
        daily = read_daily_csv(raw_dir / "daily.csv")  # a refill interval's per-day analysis
    except (ValueError, OSError) as exc:
        daily = {}
        notes.append(f"raw/daily.csv could not be plotted: {exc}")
    plots = [*daily_plots(daily, results, salt), flow_plot(daq, balance, results, salt, analysis),
             trumpet_plot(results, salt), pressure_plot(daq, results, salt)]
    return [p for p in plots if p is not None], notes
