"""Exceptions every driver raises; messages always name the instrument and the command.

Why distinct classes: the runner treats a timeout (instrument gone) differently from an
instrument-reported error (it answered, but refused) and from garbage on the line.
"""

from __future__ import annotations


class InstrumentError(Exception):
    """Base class: something went wrong talking to one instrument."""

    def __init__(self, instrument: str, command: str | None, detail: str) -> None:
        self.instrument = instrument
        self.command = command
        self.detail = detail
        where = f"{instrument}" + (f" ({command!r})" if command is not None else "")
        super().__init__(f"{where}: {detail}")


class InstrumentTimeout(InstrumentError):
    """No (complete) reply within the timeout."""


class MalformedReply(InstrumentError):
    """A reply arrived but does not follow the protocol (garbage, wrong framing, bad number)."""


class InstrumentReportedError(InstrumentError):
    """The instrument answered with an error or alarm (e.g. NE-1000 `?OOR`, MT-SICS `ES`)."""


class InstrumentDisconnected(InstrumentError):
    """The transport is gone (port closed, socket dropped, resource not found)."""


class SafeStateNotConfirmed(InstrumentError):
    """safe_state() was commanded but the read-back does not show the safe state."""


class InstrumentBusy(InstrumentError):
    """Another session holds the instrument's exclusive lock (a second controller on the rig)."""
