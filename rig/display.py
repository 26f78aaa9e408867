"""What the operator sees during a run: a rich live panel on a terminal, plain lines otherwise.

Why two renderers over one state: at the bench the technician wants one glance (step, progress,
time left, live pressure/flow/mass against limits, results so far); a nightly CI log wants
timestamped lines that survive being piped to a file. The runner reports to a ``Display``; it
never decides how things look. All methods are safe from any thread (the interlock reports from
the DAQ thread).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

from rig.record import utc_now

RECENT_EVENTS = 6


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
        steps = s.info.steps
        later = sum(exp for _, exp in steps[s.step_index + 1:]) if s.step_index >= 0 else sum(e for _, e in steps)
        current = 0.0
        if 0 <= s.step_index < len(steps):
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
            s.t_proc_s = t_proc_s
        self._line(f"step {index + 1}/{self._n_steps()} {name}: started")

    def step_finished(self, index: int, name: str, status: str) -> None:
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
        shown = "n/a" if value is None else f"{value:.5g}"
        self._line(f"measurement {event['name']} = {shown} {event.get('unit', '')} "
                   f"[{lo}..{hi}] -> {str(event.get('outcome', '')).upper()}")

    def event(self, kind: str, detail: str) -> None:
        with self._lock:
            self.state.events = (self.state.events + [f"{kind}: {detail}"])[-RECENT_EVENTS:]
        self._line(f"{kind}: {detail}")

    def message(self, text: str) -> None:
        self._line(text)

    def finish(self, outcome: str, reason: str) -> None:
        with self._lock:
            self.state.outcome, self.state.reason = outcome, reason
        self._render_finish()

    def close(self) -> None:
        """Stop rendering (idempotent)."""

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
        self.stream = stream or sys.stdout
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


class RichDisplay(Display):
    """A live panel (rich.live) redrawn a few times a second from the shared state."""

    STYLE = {"PASS": "bold green", "FAIL": "bold red", "ABORTED": "bold yellow", "ERROR": "bold magenta"}

    def __init__(self, console: Any = None) -> None:
        super().__init__()
        from rich.console import Console
        from rich.live import Live

        self.console = console or Console()
        self._live = Live(self, console=self.console, refresh_per_second=4, transient=False)
        self._running = False
        self._wall0 = time.monotonic()

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        with self._lock:
            s = self.state
            info = s.info
            head = Table.grid(padding=(0, 2))
            head.add_column(style="bold")
            head.add_column()
            if info:
                head.add_row("Step", f"{s.step_index + 1}/{len(info.steps)}  {s.step_name}")
            progress = self.progress()
            head.add_row("Progress", ProgressBar(total=1.0, completed=progress or 0.0, width=40))
            clock = "procedure (virtual)" if info and info.virtual else "procedure"
            head.add_row("Elapsed", f"{format_duration(s.t_proc_s)} {clock}, "
                                    f"{format_duration(s.t_wall_s)} wall")
            head.add_row("Remaining", f"{format_duration(self.remaining_proc_s())} {clock}, "
                                      f"~{format_duration(self.remaining_wall_s())} wall")
            live = Table(title="Live", expand=False, show_edge=False)
            for col in ("signal", "value", "limits"):
                live.add_column(col)
            for name, v in s.live.items():
                lo = "" if v.low is None else f"{v.low:g}"
                hi = "" if v.high is None else f"{v.high:g}"
                style = "" if v.in_limits else "bold red"
                live.add_row(name, f"[{style}]{v.value:.5g} {v.unit}[/]" if style else f"{v.value:.5g} {v.unit}",
                             f"{lo}..{hi}" if (lo or hi) else "")
            results = Table(title="Measurements", expand=False, show_edge=False)
            for col in ("name", "value", "limits", "result"):
                results.add_column(col)
            for m in s.measurements:
                ok = m.get("outcome") == "pass"
                value = m.get("value")
                lo = "" if m.get("low") is None else f"{m['low']:g}"
                hi = "" if m.get("high") is None else f"{m['high']:g}"
                results.add_row(m["name"], "n/a" if value is None else f"{value:.5g} {m.get('unit', '')}",
                                f"{lo}..{hi}", "[green]PASS[/]" if ok else "[red]FAIL[/]")
            parts: list[Any] = [head, live, results]
            if s.events:
                parts.append("\n".join(s.events))
            if s.outcome:
                parts.append(f"[{self.STYLE.get(s.outcome, 'bold')}]{s.outcome}[/]: {s.reason}")
            title = f"{info.procedure} — run {info.run_id}" if info else "run"
            return Panel(Group(*parts), title=title, subtitle=info.station if info else None)

    def _line(self, text: str) -> None:
        self.console.print(f"[dim]{utc_now()[11:19]}[/] {text}", highlight=False)

    def _render_start(self) -> None:
        if not self._running:
            self._live.start()
            self._running = True

    def _render_finish(self) -> None:
        self._live.refresh()

    def close(self) -> None:
        if self._running:
            self._live.stop()
            self._running = False

    @contextmanager
    def paused(self) -> Iterator[None]:
        was = self._running
        self.close()
        try:
            yield
        finally:
            if was:
                self._live.start()
                self._running = True


def make_display(stream: TextIO | None = None, plain: bool | None = None) -> Display:
    """Rich on a terminal, plain lines otherwise (nightly, CI, pipes)."""
    stream = stream or sys.stdout
    if plain is None:
        try:
            plain = not stream.isatty()
        except (AttributeError, ValueError):
            plain = True
    if plain:
        return PlainDisplay(stream)
    from rich.console import Console

    return RichDisplay(Console(file=stream))


__all__ = ["Display", "LiveValue", "PlainDisplay", "RichDisplay", "RunInfo", "format_duration", "make_display"]
