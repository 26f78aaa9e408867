"""SCPI digital multimeter on a raw TCP socket (``TCPIP::<host>::5025::SOCKET``), DC volts.

On this rig the DMM reads an analog output (the flow sensor's, or a pressure transducer's) as a
second, independent readout next to the DAQ.

Protocol source: IEEE 488.2 common commands and SCPI-1999, as in the Keysight Truevolt
(34460A/34461A/34465A) programming guide: newline-terminated ASCII on port 5025;
``*IDN?`` -> ``<manufacturer>,<model>,<serial>,<firmware>``; ``MEAS:VOLT:DC? [<range>]`` ->
NR3 (``+1.23456789E-01``), ``+9.90000000E+37`` on overload; ``SYST:ERR?`` -> ``<code>,"<text>"``
with ``+0,"No error"`` when the queue is empty. A rejected command is *silent* on the wire and
only shows up in the error queue, so this driver confirms every set command with ``SYST:ERR?``
and, when a query gets no reply, asks the queue why before reporting a timeout.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

import pyvisa.constants
import pyvisa.errors

from instruments.errors import (
    InstrumentDisconnected,
    InstrumentError,
    InstrumentReportedError,
    InstrumentTimeout,
    MalformedReply,
    SafeStateNotConfirmed,
)
from instruments.visa_instrument import Identity, VisaInstrument

RANGES_V = (0.1, 1.0, 10.0, 100.0, 1000.0)
OVERLOAD_V = 9.9e37  # SCPI's "overload" reading
MAX_QUEUED_ERRORS = 20  # 34465A queue depth; bounds the drain loop
FLUSH_READ_TIMEOUT_MS = 20

_PRINTABLE = re.compile(r"^[\x20-\x7e]+$")
_ERROR_ENTRY = re.compile(r'^(?P<code>[+-]?\d+),"(?P<text>[^"]*)"$')
_MEASURE_COMMANDS = ("MEAS:VOLT:DC?", "READ?")


class ScpiDmm(VisaInstrument):
    """A SCPI DMM reached over TCP (socket) or any other VISA resource with newline framing."""

    kind: ClassVar[str] = "dmm"
    write_termination: ClassVar[bytes] = b"\n"
    read_termination: ClassVar[str] = "\n"

    # -- reply checking -----------------------------------------------------------------------

    def _payload(self, cmd: str, reply: str) -> str:
        """Check framing and the shape of the reply for ``cmd``; garbage is retried by query."""
        if _PRINTABLE.match(reply) is None:
            raise MalformedReply(self.name, cmd, f"not a SCPI reply: {reply!r}")
        if cmd.startswith(_MEASURE_COMMANDS):
            try:
                float(reply)
            except ValueError:
                raise MalformedReply(self.name, cmd, f"not a number: {reply!r}") from None
        elif cmd == "*IDN?" and reply.count(",") != 3:
            raise MalformedReply(self.name, cmd, f"*IDN? needs 4 comma-separated fields: {reply!r}")
        elif cmd == "SYST:ERR?" and _ERROR_ENTRY.match(reply) is None:
            raise MalformedReply(self.name, cmd, f"not an error-queue entry: {reply!r}")
        return reply

    def query(self, cmd: str) -> str:
        """As VisaInstrument.query; a query that gets no reply is explained by the error queue
        when the instrument rejected it (SCPI instruments stay silent on errors)."""
        try:
            return super().query(cmd)
        except InstrumentTimeout as exc:
            try:
                errors = self.error_queue()
            except InstrumentDisconnected as gone:  # a closed socket reads as silence in pyvisa-py
                raise InstrumentDisconnected(
                    self.name, cmd, f"no reply and the connection is gone ({gone.detail})"
                ) from exc
            except InstrumentError:  # silent for the error queue too: the timeout is the story
                raise exc from None
            if errors:
                raise InstrumentReportedError(
                    self.name, cmd, f"no reply; error queue: {'; '.join(errors)}"
                ) from exc
            raise

    def _flush_input(self) -> None:
        """Discard late replies before a retry, in bounded time.

        Why not the base's flush: pyvisa-py 0.8's ``discard_read_buffer`` on a TCPIP SOCKET
        loops until select() stops reporting the socket readable, which never happens once the
        instrument has closed the connection (recv returns b"" forever) -- the retry would hang.
        """
        if "::SOCKET" not in self.resource_name.upper():
            super()._flush_input()
            return
        try:
            self._res.flush(pyvisa.constants.BufferOperation.discard_read_buffer_no_io)
            timeout_ms = self._res.timeout
            self._res.timeout = FLUSH_READ_TIMEOUT_MS
            try:
                for _ in range(MAX_QUEUED_ERRORS):  # a few late lines at most
                    self._res.read_raw()
            finally:
                self._res.timeout = timeout_ms
        except (pyvisa.errors.VisaIOError, OSError):
            pass  # nothing more to read (or the connection is gone: the retry will say so)

    def command(self, cmd: str) -> str:
        """Send a set command once (SCPI set commands have no reply), then confirm through the
        error queue that the instrument accepted it."""
        with self._lock:
            self._exchange(cmd, expect_reply=False)
            errors = self.error_queue()
        if errors:
            raise InstrumentReportedError(self.name, cmd, f"rejected: {'; '.join(errors)}")
        return ""

    def error_queue(self) -> list[str]:
        """Drain ``SYST:ERR?`` until ``+0,"No error"``; return the entries, oldest first."""
        errors: list[str] = []
        with self._lock:
            for _ in range(MAX_QUEUED_ERRORS + 1):
                entry = self._payload("SYST:ERR?", self._exchange("SYST:ERR?"))
                if int(_ERROR_ENTRY.match(entry)["code"]) == 0:  # type: ignore[index]
                    return errors
                errors.append(entry)
        raise MalformedReply(
            self.name, "SYST:ERR?", f"error queue does not empty after {MAX_QUEUED_ERRORS + 1} reads"
        )

    # -- measurement --------------------------------------------------------------------------

    def read_voltage_v(self, range_v: float | None = None) -> float:
        """One DC voltage reading. ``range_v`` None = autorange, else one of RANGES_V."""
        if range_v is None:
            cmd = "MEAS:VOLT:DC?"
        elif range_v in RANGES_V:
            cmd = f"MEAS:VOLT:DC? {range_v:g}"
        else:
            allowed = ", ".join(f"{r:g}" for r in RANGES_V)
            raise ValueError(f"range_v must be None (autorange) or one of {allowed} V, got {range_v!r}")
        volts = float(self.query(cmd))
        if abs(volts) >= OVERLOAD_V or not math.isfinite(volts):
            raise InstrumentReportedError(self.name, cmd, "overload: input beyond the measurement range")
        return volts

    # -- identity and safety ------------------------------------------------------------------

    def identify(self) -> Identity:
        manufacturer, model, serial, firmware = (f.strip() for f in self.query("*IDN?").split(","))
        return Identity(model=f"{manufacturer} {model}", serial=serial, firmware=firmware)

    def safe_state(self) -> dict[str, Any]:
        """A DMM drives nothing, so safe means idle and error-free: abort any measurement in
        progress (``ABOR``) and read back an empty error queue. No ``*RST``: it would throw away
        the configuration the operator set on the front panel for no safety gain.

        Errors queued before this call are reported, not held against the safe state."""
        with self._lock:
            earlier = self.error_queue()
            self._exchange("ABOR", expect_reply=False)
            after = self.query("SYST:ERR?")
        if int(_ERROR_ENTRY.match(after)["code"]) != 0:  # type: ignore[index]  # checked in _payload
            raise SafeStateNotConfirmed(self.name, "ABOR", f"error queue after abort: {after}")
        return {"aborted": True, "error_queue": after, "earlier_errors": earlier}


__all__ = ["RANGES_V", "ScpiDmm"]
