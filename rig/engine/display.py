"""What the runner reports while it runs, and the plain-lines renderer for logs and pipes.

Why two renderers over one state: at the bench the technician wants one glance (step, progress,
time left, live pressure/flow/mass against limits, results so far); a nightly CI log wants
timestamped lines that survive being piped to a file. The runner reports to a ``Display``; it
never decides how things look. All methods are safe from any thread (the interlock reports from
the DAQ thread).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

from rig.analysis.uncertainty import expanded_of, round_to_uncertainty
from rig.record import utc_now

RECENT_EVENTS = 6


class SafeStream:
    """A text stream that never raises: once a write fails (the reader of a pipe went away, as
    with ``| head -1``; a hung-up terminal) it drops further output and says why in ``broken``.

    Why: what a run shows must never decide its outcome. The record and the nightly log are the
    run's account; a screen or a pipe is a courtesy that may disappear at any moment."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.broken: str | None = None

    def write(self, text: str) -> int:
        if self.broken is None:
            try:
                self.stream.write(text)
            except (OSError, ValueError) as exc:  # EPIPE, EIO, a closed file
                self.broken = f"{type(exc).__name__}: {exc}"
        return len(text)

    def flush(self) -> None:
        if self.broken is None:
            try:
                self.stream.flush()
            except (OSError, ValueError) as exc:
                self.broken = f"{type(exc).__name__}: {exc}"

    def isatty(self) -> bool:
        try:
            return self.broken is None and self.stream.isatty()
        except (AttributeError, ValueError, OSError):
            return False

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, ... of the real stream
        return getattr(self.stream, name)


@dataclass
class RunInfo:
    run_id: str
    procedure: str  # "delivery_check 1.0.0"
    title: str
    station: str
    operator: str
    steps: list[tuple[str, float]]  # (name, expected procedure seconds)
    virtual: bool
    record_path: str


@dataclass
class LiveValue:
    value: float
    unit: str
    low: float | None = None
    high: float | None = None

    @property
    def in_limits(self) -> bool:
        return not ((self.low is not None and self.value < self.low)
                    or (self.high is not None and self.value > self.high))

    def text(self) -> str:
        limits = ""
        if self.low is not None or self.high is not None:
            lo = "" if self.low is None else f"{self.low:g}"
            hi = "" if self.high is None else f"{self.high:g}"
            limits = f" [{lo}..{hi}]"
        return f"{self.value:.5g} {self.unit}{limits}"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = max(0.0, seconds)
    h, rest = divmod(int(round(seconds)), 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


@dataclass
class _State:
    info: RunInfo | None = None
    step_index: int = -1
    step_name: str = ""
    step_started_proc_s: float = 0.0
    step_fraction: float | None = None
    t_proc_s: float = 0.0
    t_wall_s: float = 0.0
    live: dict[str, LiveValue] = field(default_factory=dict)
    measurements: list[dict[str, Any]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    step_done: bool = False  # the current step has finished (nothing of it remains)
    outcome: str | None = None
    reason: str = ""


class Display:
    """Base display: keeps the state and the time estimates; renders nothing (tests, library use)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.state = _State()

    # -- estimates ----------------------------------------------------------------------------

    def remaining_proc_s(self) -> float | None:
        """Expected procedure time left: unfinished steps plus the rest of the current one."""
        s = self.state
        if s.info is None:
            return None
        if s.outcome is not None:
            return 0.0  # finished (early or not): nothing remains
        steps = s.info.steps
        later = sum(exp for _, exp in steps[s.step_index + 1:]) if s.step_index >= 0 else sum(e for _, e in steps)
        current = 0.0
        if 0 <= s.step_index < len(steps) and not s.step_done:
            current = max(0.0, steps[s.step_index][1] - (s.t_proc_s - s.step_started_proc_s))
        return later + current

    def remaining_wall_s(self) -> float | None:
        """In virtual time: procedure time left scaled by the wall/procedure rate seen so far."""
        s = self.state
        remaining = self.remaining_proc_s()
        if remaining is None:
            return None
        if s.info is not None and s.info.virtual:
            if s.t_proc_s <= 0:
                return None
            return remaining * (s.t_wall_s / s.t_proc_s)
        return remaining

    def progress(self) -> float | None:
        s = self.state
        if s.info is None:
            return None
        total = sum(e for _, e in s.info.steps)
        if total <= 0:
            return None
        remaining = self.remaining_proc_s() or 0.0
        return min(1.0, max(0.0, 1.0 - remaining / total))

    # -- events from the runner ------------------------------------------------------------------

    def start(self, info: RunInfo) -> None:
        with self._lock:
            self.state.info = info
        self._render_start()

    def step_started(self, index: int, name: str, t_proc_s: float) -> None:
        with self._lock:
            s = self.state
            s.step_index, s.step_name, s.step_started_proc_s = index, name, t_proc_s
            s.step_fraction = None
            s.step_done = False
            s.t_proc_s = t_proc_s
        self._line(f"step {index + 1}/{self._n_steps()} {name}: started")

    def step_finished(self, index: int, name: str, status: str) -> None:
        with self._lock:
            if index == self.state.step_index:
                self.state.step_done = True
        self._line(f"step {index + 1}/{self._n_steps()} {name}: {status}")

    def tick(self, t_proc_s: float, t_wall_s: float, step_fraction: float | None = None) -> None:
        with self._lock:
            s = self.state
            s.t_proc_s, s.t_wall_s = t_proc_s, t_wall_s
            if step_fraction is not None:
                s.step_fraction = step_fraction
        self._render_tick()

    def live(self, name: str, value: float, unit: str, low: float | None = None,
             high: float | None = None) -> None:
        with self._lock:
            self.state.live[name] = LiveValue(value, unit, low, high)

    def measurement(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.state.measurements.append(event)
        lo = "" if event.get("low") is None else f"{event['low']:g}"
        hi = "" if event.get("high") is None else f"{event['high']:g}"
        value = event.get("value")
        u = expanded_of(event.get("uncertainty"))
        shown = "n/a" if value is None else round_to_uncertainty(value, u)
        if value is not None and event.get("value_type") == "boolean":
            shown = "yes" if value >= 0.5 else "no"
        elif u is not None:
            shown += f" ± {round_to_uncertainty(u, u)}"
        self._line(f"measurement {event['name']} = {shown} {event.get('unit', '')} "
                   f"[{lo}..{hi}] -> {str(event.get('outcome', '')).upper()}")

    def event(self, kind: str, detail: str) -> None:
        with self._lock:
            self.state.events = (self.state.events + [f"{kind}: {detail}"])[-RECENT_EVENTS:]
        self._line(f"{kind}: {detail}")

    def message(self, text: str) -> None:
        self._line(text)

    def raw_row(self, name: str, columns: list[str], values: tuple[Any, ...]) -> None:
        """A row written to raw/<name>.csv (balance readings, flow windows); terminals show the
        live values instead, the panel plots the balance from these."""

    def finish(self, outcome: str, reason: str) -> None:
        with self._lock:
            self.state.outcome, self.state.reason = outcome, reason
        self._render_finish()

    def close(self) -> None:
        """Stop rendering (idempotent)."""

    def detach(self) -> None:
        """The terminal is gone (hang-up): stop drawing on it; the run goes on (idempotent)."""
        self.close()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Suspend live rendering while the operator is asked something at the terminal."""
        yield

    # -- rendering hooks ---------------------------------------------------------------------

    def _n_steps(self) -> int:
        return len(self.state.info.steps) if self.state.info else 0

    def _line(self, text: str) -> None:
        """A notable event."""

    def _render_start(self) -> None:
        pass

    def _render_tick(self) -> None:
        pass

    def _render_finish(self) -> None:
        pass


class PlainDisplay(Display):
    """Timestamped lines (UTC) for logs; live readings at most every ``live_every_s`` of
    procedure time so a 24-hour virtual soak does not flood the CI log."""

    def __init__(self, stream: TextIO | None = None, live_every_s: float = 60.0) -> None:
        super().__init__()
        self.stream = SafeStream(stream or sys.stdout)
        self.live_every_s = live_every_s
        self._last_live_proc_s: float | None = None

    def _line(self, text: str) -> None:
        with self._lock:
            t = self.state.t_proc_s
            self.stream.write(f"{utc_now()[:19]}Z t={t:9.1f}s  {text}\n")
            self.stream.flush()

    def _render_start(self) -> None:
        info = self.state.info
        assert info is not None
        self._line(f"run {info.run_id}: {info.procedure} ({info.title}) on {info.station}, "
                   f"operator {info.operator}; record {info.record_path}")

    def _render_tick(self) -> None:
        with self._lock:
            s = self.state
            if self._last_live_proc_s is not None and s.t_proc_s - self._last_live_proc_s < self.live_every_s:
                return
            self._last_live_proc_s = s.t_proc_s
            readings = ", ".join(f"{k}={v.text()}{'' if v.in_limits else ' OUT OF LIMITS'}"
                                 for k, v in s.live.items())
            left = format_duration(self.remaining_proc_s())
        self._line(f"{s.step_name}: {left} left" + (f"; {readings}" if readings else ""))

    def _render_finish(self) -> None:
        s = self.state
        self._line(f"OUTCOME {s.outcome}: {s.reason}")


__all__ = ["Display", "LiveValue", "PlainDisplay", "RunInfo", "SafeStream", "format_duration"]
