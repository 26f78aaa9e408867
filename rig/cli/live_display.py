"""The live panel on a terminal (rich), and the choice between it and plain lines.

Why separate from rig.engine.display: the engine only knows the ``Display`` interface; how a
terminal draws it is the command line's business.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from rich.markup import escape

from rig.engine.display import Display, PlainDisplay, SafeStream, format_duration
from rig.record import utc_now


class RichDisplay(Display):
    """A live panel (rich.live) redrawn a few times a second from the shared state.

    It always fits the terminal (80×24 included): one line each for step, progress, elapsed and
    time remaining, one per live reading, then as many of the latest measurements and events
    (alarms) as the height leaves, the outcome last — never taller than the screen, so nothing
    that matters scrolls away. Lines are cut, not wrapped. Writing goes through a SafeStream: a
    closed pipe or a lost terminal stops the drawing, never the run."""

    STYLE = {"PASS": "bold green", "FAIL": "bold red", "ABORTED": "bold yellow", "ERROR": "bold magenta"}
    MAX_EVENTS = 3  # the latest alarms/warnings always get this many lines when there are some

    def __init__(self, console: Any = None, stream: TextIO | None = None) -> None:
        super().__init__()
        from rich.console import Console
        from rich.live import Live

        self.console = console or Console(file=SafeStream(stream or sys.stdout))
        self._live = Live(self, console=self.console, refresh_per_second=4, transient=False,
                          vertical_overflow="crop")
        self._running = False
        self._detached = False
        self._wall0 = time.monotonic()

    def panel_lines(self, width: int, height: int) -> list[Any]:
        """The panel's content as single lines (rich Text) for a ``width``×``height`` screen."""
        from rich.text import Text

        def line(text: str, style: str = "") -> Text:
            t = Text.from_markup(text, style=style)  # every value in ``text`` is escaped
            t.no_wrap = True
            t.overflow = "ellipsis"
            t.truncate(max(10, width - 4), overflow="ellipsis")
            return t

        with self._lock:
            s = self.state
            info = s.info
            clock = "proc (virtual)" if info and info.virtual else "proc"
            n = len(info.steps) if info else 0
            out = [line(f"[bold]Step[/]      {s.step_index + 1}/{n}  {escape(s.step_name)}")]
            progress = self.progress() or 0.0
            bar_w = max(10, min(40, width - 24))
            filled = int(round(progress * bar_w))
            out.append(line(f"[bold]Progress[/]  {'█' * filled}{'░' * (bar_w - filled)} {progress * 100:3.0f} %"))
            out.append(line(f"[bold]Elapsed[/]   {format_duration(s.t_proc_s)} {clock}, "
                            f"{format_duration(s.t_wall_s)} wall"))
            out.append(line(f"[bold]Remaining[/] {format_duration(self.remaining_proc_s())} {clock}, "
                            f"~{format_duration(self.remaining_wall_s())} wall"))
            for name, v in list(s.live.items())[:4]:
                text = f"{escape(name)} = {escape(v.text())}"
                out.append(line(text if v.in_limits else f"[bold red]{text} OUT OF LIMITS[/]"))
            tail: list[Any] = []
            if s.outcome:
                tail.append(line(f"[{self.STYLE.get(s.outcome, 'bold')}]{s.outcome}[/]: {escape(s.reason)}"))
            budget = max(0, height - 3 - len(out) - len(tail))  # 2 border lines + the cursor line
            events = s.events[-min(self.MAX_EVENTS, budget):] if budget else []
            budget -= len(events)
            measurements = s.measurements
            shown = measurements[-(budget - 1):] if budget > 1 and measurements else []
            if measurements and budget >= 1:
                hidden = len(measurements) - len(shown)
                out.append(line(f"[bold]Measurements[/] ({len(measurements)}"
                                + (f", {hidden} earlier not shown" if hidden else "") + ")"))
            for m in shown:
                value = m.get("value")
                lo = "" if m.get("low") is None else f"{m['low']:g}"
                hi = "" if m.get("high") is None else f"{m['high']:g}"
                verdict = "[green]PASS[/]" if m.get("outcome") == "pass" else "[red]FAIL[/]"
                shown_value = "n/a" if value is None else f"{value:.5g} {m.get('unit', '')}"
                out.append(line(f"  {verdict} " + escape(f"{m['name']} = {shown_value} [{lo}..{hi}]")))
            for e in events:
                style = "bold red" if e.startswith(("interlock", "detector", "alarm", "error")) else "yellow"
                out.append(line(escape(e), style))
            return out + tail

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.panel import Panel

        width, height = self.console.size
        info = self.state.info
        title = f"{info.procedure} — run {info.run_id}" if info else "run"
        return Panel(Group(*self.panel_lines(width, height)), title=escape(title),
                     subtitle=escape(info.station) if info else None, height=None)

    def _line(self, text: str) -> None:
        if not self._detached:
            self.console.print(f"[dim]{utc_now()[11:19]}[/] {escape(text)}", highlight=False)

    def _render_start(self) -> None:
        if not self._running and not self._detached:
            self._live.start()
            self._running = True

    def _render_finish(self) -> None:
        if self._running:
            self._live.refresh()

    def close(self) -> None:
        if self._running:
            self._running = False
            self._live.stop()

    def detach(self) -> None:
        self._detached = True
        self.close()

    @contextmanager
    def paused(self) -> Iterator[None]:
        was = self._running
        self.close()
        try:
            yield
        finally:
            if was and not self._detached:
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
    return RichDisplay(stream=stream)


__all__ = ["RichDisplay", "make_display"]
