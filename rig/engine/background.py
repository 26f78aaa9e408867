"""Failures in background threads during a run: caught, recorded, and never printed unrecorded.

Why: a run has threads besides the procedure — the DAQ reader and the listeners it feeds (the
overpressure interlock, the procedures' line monitors), timers, display refreshers. An exception
there used to reach the user as a traceback on stderr (or nowhere), while the record said nothing
and the outcome stayed PASS. While a run is active, ``BackgroundFaults``:

* catches every uncaught exception of any other thread (``threading.excepthook``), and
* receives the log records of our packages (``instruments``, ``rig``, ``procedures``, ``reports``)
  at WARNING and above — the DAQ driver logs a failing chunk listener with its traceback there —

and hands each to ``on_fault(kind, detail, traceback_text)``: the runner writes it into the record
as an event (which the nightly log shows) and, for an exception, ends the run ERROR — a result
computed while part of the rig had failed cannot be vouched for. The simulated bench's own loggers
(``instruments.sim``) are left alone: they describe the bench, not the run.

Only one run is active per process at a time (the nightly runs its entries one after another).
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

WATCHED_LOGGERS = ("instruments", "rig", "procedures", "reports")
IGNORED_LOGGERS = ("instruments.sim",)
RECORDS_ITSELF = ("rig.",)  # the engine writes its own events (e.g. the interlock's trip); only its exceptions

FaultSink = Callable[[str, str, "str | None"], None]  # (kind "error"|"warning", detail, traceback)


class _Handler(logging.Handler):
    def __init__(self, owner: "BackgroundFaults") -> None:
        super().__init__(level=logging.WARNING)
        self.owner = owner

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(IGNORED_LOGGERS):
            return
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not hide the event
            message = str(record.msg)
        where = f"{record.name} (thread {record.threadName})"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text = "".join(traceback.format_exception(*record.exc_info))
            self.owner.report("error", f"{where}: {message}: {type(exc).__name__}: {exc}", text)
        elif not record.name.startswith(RECORDS_ITSELF):
            self.owner.report("warning", f"{where}: {message}", None)


class BackgroundFaults:
    """Context manager: route background failures to ``on_fault`` while a run is active."""

    def __init__(self, on_fault: FaultSink) -> None:
        self.on_fault = on_fault
        self.faults: list[tuple[str, str]] = []  # (kind, detail) of everything reported
        self._handler = _Handler(self)
        self._previous_hook: Any = None
        self._lock = threading.Lock()
        self._reporting = threading.local()

    @property
    def exceptions(self) -> list[str]:
        """Details of the exceptions (not mere warnings) seen so far."""
        return [detail for kind, detail in self.faults if kind == "error"]

    def report(self, kind: str, detail: str, text: str | None) -> None:
        if getattr(self._reporting, "active", False):
            return  # on_fault itself logged something: do not loop
        with self._lock:
            self.faults.append((kind, detail))
        self._reporting.active = True
        try:
            self.on_fault(kind, detail, text)
        except Exception:  # noqa: BLE001 - the fault is counted above; the run decides with it
            pass
        finally:
            self._reporting.active = False

    def _excepthook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        self.report("error", f"thread {name} died: {args.exc_type.__name__}: {args.exc_value}", text)

    def __enter__(self) -> "BackgroundFaults":
        self._previous_hook = threading.excepthook
        threading.excepthook = self._excepthook
        for name in WATCHED_LOGGERS:
            # With a handler here, logging's "last resort" (print on stderr) is no longer used.
            logging.getLogger(name).addHandler(self._handler)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        threading.excepthook = self._previous_hook
        for name in WATCHED_LOGGERS:
            logging.getLogger(name).removeHandler(self._handler)


__all__ = ["BackgroundFaults", "WATCHED_LOGGERS"]
