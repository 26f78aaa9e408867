"""Plots tell the truth (issue 17): every event kind of the record vocabulary has its own marker
and legend entry, "interlock armed" is not drawn as a trip, the pressure axis scales to the data,
and the flow plot draws the procedure's own analysis.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from reports.plots import (
    EVENT_STYLES,
    _mark_events,
    build_plots,
    cumulative_volume_figure,
    daily_error_figure,
    event_class,
    pressure_plot,
    pressure_range,
    read_daily_csv,
)
from rig.record import EVENT_KINDS

REPO = Path(__file__).resolve().parents[1]
EVENT_CALL = re.compile(r"""\.event\(\s*["']([a-z_]+)["']|kind=["']([a-z_]+)["']|"kind":\s*"([a-z_]+)\"""")


def test_every_event_kind_has_a_marker_and_a_legend_entry() -> None:
    missing = sorted(set(EVENT_KINDS) - set(EVENT_STYLES))
    assert not missing, f"event kinds without a marker: {missing}"
    fig = Figure()
    ax = fig.add_subplot()
    events = [{"kind": kind, "t_proc_s": 10.0 * i, "detail": "tripped"} for i, kind in enumerate(EVENT_KINDS)]
    labels = _mark_events(ax, events, 1.0)
    _, legend = ax.get_legend_handles_labels()
    for kind in EVENT_KINDS:
        assert EVENT_STYLES[kind][0] in legend, kind
    assert len(labels) == len(set(labels))  # one legend entry per class


def test_every_kind_the_code_records_is_in_the_vocabulary() -> None:
    found: set[str] = set()
    for folder in ("procedures", "rig", "reports"):
        for path in (REPO / folder).rglob("*.py"):
            if "service" in path.parts:  # the web service's job kinds and live-hub messages, not record events
                continue
            for match in EVENT_CALL.finditer(path.read_text(encoding="utf-8")):
                found.add(next(g for g in match.groups() if g))
    found -= {"measurement", "event", "stable"}  # record line types; numpy argsort(kind="stable")
    unknown = sorted(k for k in found if k not in EVENT_KINDS and k not in EVENT_STYLES)
    assert not unknown, f"recorded event kinds missing from rig.record.EVENT_KINDS: {unknown}"
    assert {"fault", "pump_alarm", "alarm", "detector", "interlock"} <= found


def test_interlock_armed_is_a_marker_not_a_trip() -> None:
    armed = {"kind": "interlock", "t_proc_s": 0.0, "detail": "armed at 120 kPa"}
    trip = {"kind": "interlock", "t_proc_s": 50.0, "detail": "upstream 121 kPa"}
    assert event_class(armed) == "interlock_armed" and event_class(trip) == "interlock"
    fig = Figure()
    ax = fig.add_subplot()
    _mark_events(ax, [armed], 1.0)
    assert ax.get_lines()[0].get_xdata()[0] == 0.0 and len(ax.get_lines()[0].get_xdata()) == 1
    assert ax.get_lines()[0].get_marker() == "^"  # a marker on the axis, not a vertical line
    _, legend = ax.get_legend_handles_labels()
    assert legend == ["interlock armed"]
    _mark_events(ax, [trip], 1.0)
    assert "interlock TRIP" in ax.get_legend_handles_labels()[1]


def test_pressure_axis_scales_to_a_small_trace() -> None:
    t = np.arange(0.0, 600.0, 0.5)
    daq = {"t_s": t, "pressure_upstream_kpa": 1.0 + 0.7 * (t / t[-1]), "pressure_downstream_kpa": 1.2 + 0 * t}
    low, high = pressure_range(daq, ["pressure_downstream_kpa", "pressure_upstream_kpa"])
    assert low <= 1.0 and 1.7 <= high < 2.0  # the data, not 0..120 kPa
    results = {"station": {"safety": {"max_line_pressure_kpa": 120.0}},
               "events": [{"kind": "interlock", "t_proc_s": 0.0, "detail": "armed at 120 kPa"}]}
    plot = pressure_plot(daq, results, "salt")
    assert plot is not None
    assert "interlock limit 120 kPa" not in plot.svg  # out of range: not drawn, flattening the trace
    assert "The interlock limit (120 kPa) is far above the plotted range." in plot.caption
    near = pressure_plot({**daq, "pressure_upstream_kpa": 80.0 + 30.0 * (t / t[-1])}, results, "salt")
    assert near is not None and "interlock limit 120 kPa" in near.svg


def _daily_csv(path: Path) -> None:
    rows = ["day,phase,t_start_s,t_end_s,mass_start_g,mass_end_g,programmed_ml,delivered_ml,error_pct,u_error_pct"]
    for day, phase, delivered in ((1, "interval", 0.20), (2, "interval", 0.19), (3, "after_refill", 0.21)):
        error = 100.0 * (delivered - 0.2) / 0.2
        rows.append(f"{day},{phase},0,86400,0,{delivered},0.2,{delivered},{error},0.25")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_a_refill_interval_plots_its_daily_error_and_cumulative_volume_from_daily_csv(tmp_path: Path) -> None:
    """reservoir_cycle's report (issue 16): daily error vs day with the spec's worst-day limits,
    and the cumulative delivered volume vs the programmed, from the procedure's raw/daily.csv."""
    _daily_csv(tmp_path / "daily.csv")
    daily = read_daily_csv(tmp_path / "daily.csv")
    results = {"measurements": [{"name": "cycle.daily_error_worst_pct", "value": -5.0, "low": -5.0, "high": 5.0},
                                {"name": "cycle.daily_error_mean_pct", "value": -2.5}]}
    ax = daily_error_figure(daily, results).axes[0]
    lines = {tuple(line.get_ydata()) for line in ax.get_lines() if len(line.get_ydata()) == 2}
    plotted = sorted(float(y) for line in ax.get_lines() if line.get_marker() == "o" for y in line.get_ydata())
    assert plotted == pytest.approx(sorted([0.0, -5.0, 5.0]))  # the interval's two days and the day after
    assert (-5.0, -5.0) in lines and (5.0, 5.0) in lines and (-2.5, -2.5) in lines  # limits and mean
    assert len(ax.collections) == 2  # the uncertainty bars of both groups
    labels = ax.get_legend_handles_labels()[1]
    assert "day after the refill (± U, k = 2)" in labels and "worst-day limits" in labels
    ax = cumulative_volume_figure(daily).axes[0]
    curves = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
    assert curves["delivered (by weight)"] == pytest.approx([0.20, 0.39, 0.60])
    assert curves["programmed"] == pytest.approx([0.2, 0.4, 0.6])
    assert list(curves["refill"]) and ax.get_lines()[-1].get_xdata()[0] == pytest.approx(2.5)
    plots, notes = build_plots(tmp_path, results, salt="t")
    assert [p.id for p in plots] == ["daily_error", "cumulative_volume"] and not notes
