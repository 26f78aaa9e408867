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

from rig.engine.display import Display, PlainDisplay, format_duration
from rig.record import utc_now


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


__all__ = ["RichDisplay", "make_display"]
