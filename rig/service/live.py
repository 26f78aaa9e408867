"""What a run shows on the panel: the engine's ``Display`` calls and the DAQ's chunks as events.

Why a Display: the runner already reports everything the panel needs (steps, time, live values,
measurements as they are judged, events, the outcome) through the same interface the terminal
panel uses, so a run from the panel and `rig run` are reported identically. The DAQ chunks (the
plotted pressure and flow) come from a chunk listener the job adds to the open bench; balance
readings from the raw rows the procedures write.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from rig.engine.display import Display, RunInfo
from rig.service.hub import EventHub

TICK_EVERY_S = 0.2  # wall time between progress events (virtual time calls tick() far more often)
# Wall time between points events. Real time (a chunk every 0.2-1 s) publishes each chunk as it
# arrives; virtual time delivers thousands of chunks a second, and one event per chunk made every
# viewer cost the run (89,393 events per viewer for a 24 h delivery_check): there the chunks that
# arrive within this window go out as one event of arrays. Well below the 250 ms latency target.
POINTS_EVERY_S = 0.05
# In virtual time nobody waits on a point (the latency target is for real time), and each event is
# a wake-up of every viewer's stream in the run's own process: points go out with the progress.
VIRTUAL_POINTS_EVERY_S = TICK_EVERY_S
# Which DAQ channel feeds which plotted series (the station's channel names).
PLOTTED = {"pressure_upstream": "p_up_kpa", "pressure_downstream": "p_down_kpa", "flow_sensor": "flow_ul_min"}
MARKER_KINDS = ("fault", "alarm", "pump_alarm", "detector", "interlock", "abort")


class PanelDisplay(Display):
    """Publishes every display call as an event of ``job`` on the hub (from any thread)."""

    def __init__(self, hub: EventHub, job: str) -> None:
        super().__init__()
        self.hub = hub
        self.job = job
        self._last_tick = 0.0
        self._chunk_samples = 0  # the DAQ's chunk length: one plotted point per chunk
        self._points_lock = threading.Lock()  # chunks come from the DAQ reader, flushes from the run
        # plotted, not yet published: per event type ("points", "balance") its arrays by key
        self._points: dict[str, dict[str, list[float]]] = {}
        self._points_at_ms: float | None = None  # service wall time the oldest DAQ point arrived
        self._last_points = 0.0
        self._points_every_s = POINTS_EVERY_S

    def _pub(self, event: dict[str, Any]) -> None:
        """Every other event goes out after the points before it, so markers never lead the plot."""
        self.flush_points()
        self.hub.publish(event, self.job)

    def start(self, info: RunInfo) -> None:
        super().start(info)
        self._points_every_s = VIRTUAL_POINTS_EVERY_S if info.virtual else POINTS_EVERY_S
        self._pub({"type": "run_start", "run_id": info.run_id, "procedure": info.procedure,
                   "title": info.title, "station": info.station, "operator": info.operator,
                   "steps": [{"name": n, "expected_s": e} for n, e in info.steps],
                   "virtual": info.virtual, "record": info.record_path})

    def step_started(self, index: int, name: str, t_proc_s: float) -> None:
        super().step_started(index, name, t_proc_s)
        self._pub({"type": "step", "index": index, "name": name, "status": "started", "t_proc_s": t_proc_s})

    def step_finished(self, index: int, name: str, status: str) -> None:
        super().step_finished(index, name, status)
        self._pub({"type": "step", "index": index, "name": name, "status": status,
                   "t_proc_s": self.state.t_proc_s})

    def tick(self, t_proc_s: float, t_wall_s: float, step_fraction: float | None = None) -> None:
        super().tick(t_proc_s, t_wall_s, step_fraction)
        now = time.monotonic()
        if now - self._last_points >= self._points_every_s:
            self.flush_points()
        if now - self._last_tick < TICK_EVERY_S:
            return
        self._last_tick = now
        self._pub(self.progress_event())

    def progress_event(self) -> dict[str, Any]:
        with self._lock:
            s = self.state
            return {"type": "tick", "t_proc_s": s.t_proc_s, "t_wall_s": s.t_wall_s,
                    "progress": self.progress(), "remaining_proc_s": self.remaining_proc_s(),
                    "remaining_wall_s": self.remaining_wall_s(), "step": s.step_name,
                    "live": {k: {"value": v.value, "unit": v.unit, "low": v.low, "high": v.high,
                                 "in_limits": v.in_limits} for k, v in s.live.items()}}

    def measurement(self, event: dict[str, Any]) -> None:
        super().measurement(event)
        self._pub({"type": "measurement", **{k: event.get(k) for k in (
            "name", "value", "unit", "low", "high", "outcome", "uncertainty", "step", "t_proc_s",
            "requirement")}})

    def event(self, kind: str, detail: str) -> None:
        super().event(kind, detail)
        self._pub({"type": "event", "kind": kind, "detail": detail, "t_proc_s": self.state.t_proc_s,
                   "marker": kind in MARKER_KINDS})

    def message(self, text: str) -> None:
        self._pub({"type": "message", "text": text})

    def raw_row(self, name: str, columns: list[str], values: tuple[Any, ...]) -> None:
        if "mass_g" in columns and "t_s" in columns:
            row = dict(zip(columns, values))
            try:
                reading = {"t": [float(row["t_s"])], "mass_g": [float(row["mass_g"])]}
            except (TypeError, ValueError):
                return
            self._gather("balance", reading)

    def finish(self, outcome: str, reason: str) -> None:
        super().finish(outcome, reason)
        self._pub(self.progress_event())
        self._pub({"type": "outcome", "outcome": outcome, "reason": reason})

    # -- the DAQ ---------------------------------------------------------------------------------

    def attach_daq(self, daq: Any) -> None:
        """Plot every chunk: one point per series per DAQ chunk (its mean; a 1 s chunk at 20 Hz),
        with the service's wall time of arrival so the panel's latency can be measured end to end."""
        if daq is None or not hasattr(daq, "add_chunk_listener"):
            return
        self._chunk_samples = int(getattr(daq, "chunk_samples", 0) or 0)
        daq.add_chunk_listener(self.on_chunk)

    def on_chunk(self, chunk: Any) -> None:
        """In virtual time one read may deliver many chunks' samples at once (reads are made only
        when something needs them): each device chunk still becomes its own point."""
        block = self._chunk_samples if 0 < self._chunk_samples < chunk.n else chunk.n
        starts = np.arange(0, chunk.n, block)
        counts = np.diff(np.append(starts, chunk.n))
        series: dict[str, np.ndarray] = {}
        for channel, key in PLOTTED.items():
            if channel in chunk.channels:
                series[key] = np.add.reduceat(np.asarray(chunk.column(channel), dtype=float), starts) / counts
        if not series:
            return
        mids = chunk.first_index + starts + (counts - 1) / 2
        point = {"t": [round(float(chunk.t_s(m)), 3) for m in mids],
                 **{key: np.round(values, 4).tolist() for key, values in series.items()}}
        self._gather("points", point, at_ms=round(time.time() * 1000, 1))

    def _gather(self, kind: str, arrays: dict[str, list[float]], at_ms: float | None = None) -> None:
        with self._points_lock:
            if at_ms is not None and self._points_at_ms is None:
                self._points_at_ms = at_ms
            gathered = self._points.setdefault(kind, {})
            for key, values in arrays.items():
                gathered.setdefault(key, []).extend(values)
            due = time.monotonic() - self._last_points >= self._points_every_s
        if due:
            self.flush_points()

    def flush_points(self) -> None:
        """Publish the plotted values gathered so far, one event per kind: ``points`` (``t`` and
        each DAQ series, arrays of equal length; ``at_ms`` the arrival of the oldest chunk, what the
        latency benchmark measures) and ``balance`` (``t`` and ``mass_g``)."""
        with self._points_lock:
            if not self._points:
                return
            gathered, at_ms = self._points, self._points_at_ms
            self._points, self._points_at_ms = {}, None
            self._last_points = time.monotonic()
            # published under the lock: two flushes racing must not reorder their points
            for kind, arrays in gathered.items():
                extra = {"at_ms": at_ms} if kind == "points" else {}
                self.hub.publish({"type": kind, **arrays, **extra}, self.job)


__all__ = ["MARKER_KINDS", "PLOTTED", "POINTS_EVERY_S", "VIRTUAL_POINTS_EVERY_S", "PanelDisplay"]
