"""Abort requests: Ctrl-C, SIGTERM, interlock trips and watchdogs all become one flag.

Why a flag instead of KeyboardInterrupt: an exception can fire anywhere — inside a driver between
"stop" and its read-back, or inside the safe-state sequence itself. A signal here only *requests*
an abort; the runner notices at its next checkpoint (every instrument call and every wait goes
through one), stops the procedure and always runs the safe state. A second Ctrl-C cannot skip the
safe state because no signal ever raises; it only prints that the safe state is under way.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from rig.engine.outcomes import ABORTED, ERROR

SIGNAL_NAMES = {
    signal.SIGINT: "SIGINT (Ctrl-C)",
    signal.SIGTERM: "SIGTERM",
    signal.SIGHUP: "SIGHUP (terminal closed)",
}


@dataclass(frozen=True)
class AbortRequest:
    outcome: str  # ABORTED (operator, signal, interlock) or ERROR (watchdog, instrument)
    reason: str


class AbortFlag:
    """Thread-safe; the first request wins (it is the root cause), later ones are counted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._request: AbortRequest | None = None
        self.count = 0

    def request(self, outcome: str, reason: str) -> bool:
        """Ask for an abort. True if this was the first request."""
        with self._lock:
            self.count += 1
            if self._request is not None:
                return False
            self._request = AbortRequest(outcome, reason)
            self._event.set()
            return True

    @property
    def requested(self) -> AbortRequest | None:
        return self._request

    def reason(self) -> str | None:
        request = self._request
        return request.reason if request else None

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to ``timeout_s`` (wall), waking early on an abort request."""
        return self._event.wait(timeout_s)


def detach_stdio() -> None:
    """Point stdin, stdout and stderr at /dev/null (the terminal is gone).

    Why: after a hang-up every write to the terminal fails (EIO) and every read ends; with the
    descriptors on /dev/null whatever still prints — a display, a late warning, the interpreter
    at exit — succeeds silently, and a prompt sees end of input. Safe in a signal handler
    (only ``dup2``)."""
    fd = os.open(os.devnull, os.O_RDWR)
    try:
        for target in (0, 1, 2):
            try:
                os.dup2(fd, target)
            except OSError:
                pass
    finally:
        os.close(fd)


@contextmanager
def abort_on_signals(
    flag: AbortFlag, notify: Callable[[str], None] | None = None,
    on_hangup: Callable[[], None] | None = None,
) -> Iterator[AbortFlag]:
    """While active, SIGINT/SIGTERM (and SIGHUP, unless ``on_hangup``) request an abort instead of
    killing the process.

    ``notify`` is told what happened (first signal: abort requested; later ones: the safe state
    is still being reached). With ``on_hangup`` a hang-up (the terminal closed) does not abort:
    the descriptors move to /dev/null (``detach_stdio``) and ``on_hangup()`` is called in a new
    thread (so it may take locks the interrupted main thread holds) — the run goes on detached.
    Outside the main thread signals cannot be caught, so this is a no-op there (the caller's own
    flag still works).
    """
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def hangup(_signum: int, _frame: FrameType | None) -> None:  # installed only with on_hangup
        detach_stdio()
        threading.Thread(target=on_hangup, name="hangup", daemon=True).start()

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = SIGNAL_NAMES.get(signal.Signals(signum), signal.Signals(signum).name)
        first = flag.request(ABORTED, f"interrupted by {name}")
        if notify is None:
            return
        try:
            if first:
                notify(f"{name} received: aborting; the bench is being put in its safe state")
            else:
                notify(f"{name} received again: still putting the bench in its safe state — "
                       "this is not skipped; please wait")
        except Exception:  # noqa: BLE001 - a display problem must never break abort handling
            pass

    previous = {sig: signal.signal(sig, hangup if sig == signal.SIGHUP and on_hangup else handler)
                for sig in SIGNAL_NAMES}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


__all__ = ["ABORTED", "ERROR", "AbortFlag", "AbortRequest", "abort_on_signals", "detach_stdio"]
