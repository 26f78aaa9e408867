"""Plots tell the truth (issue 17): every event kind of the record vocabulary has its own marker
and legend entry, "interlock armed" is not drawn as a trip, the pressure axis scales to the data,
and the flow plot draws the procedure's own analysis.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from reports.plots import EVENT_STYLES, _mark_events, event_class, pressure_plot, pressure_range
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
