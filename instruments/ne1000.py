"""New Era NE-1000 syringe pump over RS-232 (Basic and Safe mode), the rig's syringe stand-in.

Protocol source: New Era Pump Systems, "NE-1000 Multi-Phaser User Manual", publication #1200-01
(08/01/14), section 10 "RS-232 communications" (same text in the NE-500/NE-4000 manuals):

* 10.2.2 Basic mode: command ``<command data> CR``; response ``STX <response data> ETX``. The pump
  strips spaces/control characters and upper-cases commands; it only talks when spoken to.
* 10.2.4 common syntax: ``<command data> = [<address>] [<command>]`` (address 0..99);
  ``<response data> = <address> <status> [<data> | <command error>]`` with a 2-digit address and
  the status ``I`` infusing, ``W`` withdrawing, ``S`` program stopped, ``P`` paused, ``T`` pause
  phase, ``U`` user wait, ``X`` purging, or the alarm ``A ? <type>``: ``R`` reset (power
  interrupted), ``S`` motor stalled, ``T`` safe-mode timeout, ``E`` program error, ``O`` phase out
  of range. Sending the alarm acknowledges it; the command itself is not executed.
* 10.3 errors in ``<data>``: ``?`` not recognised, ``?NA`` not currently applicable, ``?OOR`` data
  out of range, ``?COM`` invalid packet, ``?IGN`` ignored (simultaneous phase start).
* 10.2.1 ``<float>``: at most 4 digits plus one decimal point, at most 3 digits after it.
* Commands used: ``DIA`` syringe inside diameter (mm), ``RAT <float> UM|MM|UH|MH`` rate,
  ``VOL`` volume to dispense (0 = continuous), ``DIR INF|WDR|REV``, ``RUN``, ``STP`` (pauses a
  running program; a second STP stops it), ``DIS`` -> ``I<float>W<float><UL|ML>`` volumes infused
  and withdrawn, ``CLD INF|WDR`` clear them, ``VER`` -> ``NE1000V3.928``, and the empty command
  = status query. Volume units follow the diameter: µL at or below 14.00 mm, mL above.
  Factory settings: 19200 baud 8N1, address 0.

* 10.2.3 Safe mode: ``STX <length> <command data> <CRC16 hi> <CRC16 lo> ETX`` both ways, the
  length counting the bytes after STX (4 + data), the CRC the 16-bit CCITT CRC of the data. The
  manual's packet ``02 08 'SAF0' 55 43 03`` fixes the variant (poly 0x1021, init 0: what
  ``binascii.crc_hqx(data, 0)`` computes). ``SAF <n>`` sets the communications watchdog: with no
  valid packet for n seconds the pump stops and raises ``A?T``; in Safe mode it also sends its
  alarm status unasked (which does not acknowledge the alarm).

The comms watchdog is the last line of defence when the whole controller machine dies (the
safe-state supervisor dies with it). Option ``comms_watchdog_s`` (default 10, 0 = stay in Basic
mode): before the first rate change or start the driver sends ``SAF<n>`` in Basic mode, talks Safe
mode from then on, and a keep-alive thread sends a status query whenever the line has been quiet
for a fifth of the timeout (so a run that waits for hours keeps it fed). ``close`` sends ``SAF0``
(back to Basic). Because SAF is non-volatile, a pump left in Safe mode by a dead controller
ignores Basic text: the first exchange that times out is tried once more as a Safe packet.
Alarms found by the keep-alive (or in unasked packets) go to ``add_alarm_listener`` callbacks, so
a run learns that the watchdog stopped the pump while it was frozen.

The NE-1000 reports no serial number over RS-232, so ``identify`` leaves it empty and the station
file's serial is the traceable one.
"""

from __future__ import annotations

import binascii
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pyvisa.errors

from instruments.errors import (
    InstrumentError,
    InstrumentReportedError,
    InstrumentTimeout,
    MalformedReply,
    SafeStateNotConfirmed,
)
from instruments.pump import PumpAlarm
from instruments.visa_instrument import Identity, VisaInstrument, in_range
from instruments.drivers import DRIVERS
from rig.settings import int_option

log = logging.getLogger(__name__)

STX, ETX = "\x02", "\x03"
# The pump stops this long after the controller last spoke. 10 s: at the rig's fastest rate
# (10 mL/h) a dead controller over-delivers at most ~28 µL, and keep-alives every 2 s leave 8 s
# of slack for a loaded controller machine before the pump would stop a healthy run.
KEEPALIVE_FRACTION = 5  # a status query after a fifth of the timeout without traffic

PROMPTS = {
    "I": "infusing",
    "W": "withdrawing",
    "S": "stopped",
    "P": "paused",
    "T": "pause phase",
    "U": "waiting for trigger",
    "X": "purging",
}
PUMPING = frozenset("IWX")
ALARMS = {
    "R": ("reset", "pump was reset (power was interrupted)"),
    "S": ("stall", "pump motor stalled"),
    "T": ("timeout", "safe-mode communications timed out"),
    "E": ("program_error", "pumping program error"),
    "O": ("out_of_range", "pumping program phase is out of range"),
}
COMMAND_ERRORS = {
    "": "command not recognised",
    "NA": "command not applicable now",
    "OOR": "command data out of range",
    "COM": "invalid communications packet",
    "IGN": "command ignored (a new program phase started at the same time)",
}
# Rate units and how many of them make 1 mL/h; the order is the preference among equal choices.
RATE_UNITS_PER_ML_H = {"MH": 1.0, "UH": 1000.0, "MM": 1.0 / 60.0, "UM": 1000.0 / 60.0}
VOLUME_UNITS_PER_ML = {"ML": 1.0, "UL": 1000.0}

# Limits: the diameter range the NE-1000 accepts, and its fastest pusher speed, derived from the
# brochure figure of 2100 mL/h maximum with a B-D 60 mL syringe (26.59 mm inside diameter).
OPTIONS = DRIVERS["ne1000"].options  # what it reads from the station file, declared in the catalog
DEFAULT_WATCHDOG_S = OPTIONS["comms_watchdog_s"].default  # 0 would mean Basic mode, no watchdog
DIAMETER_RANGE_MM = (OPTIONS["syringe_diameter_mm"].low, OPTIONS["syringe_diameter_mm"].high)
MAX_PUSHER_SPEED_MM_H = 2100.0 * 1000.0 / (math.pi / 4 * 26.59**2)  # ~3782 mm/h
MIN_RATE_ML_H = 0.001 / 1000.0  # smallest expressible: "0.001" µL/h

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_RATE = re.compile(rf"^{_NUMBER}(UM|MM|UH|MH)$")
_DISPENSED = re.compile(rf"^I{_NUMBER}W{_NUMBER}(UL|ML)$")
_VERSION = re.compile(r"^NE(\d+)V(\d+\.\d+)$")


class NE1000CommandError(InstrumentReportedError):
    """The pump answered a command with ``?``, ``?NA``, ``?OOR``, ``?COM`` or ``?IGN``."""

    def __init__(self, instrument: str, command: str | None, code: str, detail: str) -> None:
        self.code = code
        super().__init__(instrument, command, detail)


def format_float(value: float) -> str:
    """``value`` as an NE-1000 ``<float>``: at most 4 digits and 3 decimals, best resolution."""
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"NE-1000 numbers are finite and >= 0, got {value!r}")
    for decimals in (3, 2, 1, 0):
        text = f"{value:.{decimals}f}"
        if sum(ch.isdigit() for ch in text) <= 4:
            return text
    raise ValueError(f"{value!r} needs more than the NE-1000's 4 digits")


def encode_safe_packet(data: str) -> bytes:
    """A Safe-mode packet: ``STX <length> <data> <CRC16 hi> <CRC16 lo> ETX`` (manual 10.2.3)."""
    body = data.encode("ascii")
    crc = binascii.crc_hqx(body, 0)
    return b"\x02" + bytes([len(body) + 4]) + body + crc.to_bytes(2, "big") + b"\x03"


def decode_safe_packet(packet: bytes) -> str:
    """The data of a Safe-mode packet; ValueError naming what is wrong with it."""
    if len(packet) < 5 or packet[:1] != b"\x02" or packet[-1:] != b"\x03":
        raise ValueError(f"not a Safe-mode packet: {packet!r}")
    if packet[1] != len(packet) - 1:
        raise ValueError(f"length byte {packet[1]} does not match the packet {packet!r}")
    body, crc = packet[2:-3], int.from_bytes(packet[-3:-1], "big")
    if binascii.crc_hqx(body, 0) != crc:
        raise ValueError(f"CRC mismatch in {packet!r}")
    return body.decode("ascii", "replace")


def syringe_area_mm2(diameter_mm: float) -> float:
    return math.pi / 4.0 * diameter_mm**2


def max_rate_ml_h(diameter_mm: float) -> float:
    """Fastest rate the pusher can drive a syringe of this inside diameter."""
    return syringe_area_mm2(diameter_mm) * MAX_PUSHER_SPEED_MM_H / 1000.0


def encode_rate(rate_ml_h: float, keep_units: str | None = None) -> tuple[str, str]:
    """(number, units) closest to ``rate_ml_h`` within 4 digits.

    Why choose units: 0.002 mL/h is ``0.002MH`` but 0.0025 mL/h only fits as ``2.500UH``. The
    pump refuses to change rate units while pumping (manual 5.4.1), so ``keep_units`` pins them
    when it can still express the rate.
    """
    candidates: list[tuple[float, int, str, str]] = []
    for order, (units, per_ml_h) in enumerate(RATE_UNITS_PER_ML_H.items()):
        try:
            text = format_float(rate_ml_h * per_ml_h)
        except ValueError:
            continue
        if float(text) == 0.0:
            continue
        error = abs(float(text) / per_ml_h - rate_ml_h)
        candidates.append((error, order, text, units))
    if keep_units is not None:
        kept = [c for c in candidates if c[3] == keep_units]
        if kept and kept[0][0] <= 1e-3 * rate_ml_h:
            return kept[0][2], keep_units
    if not candidates:
        raise ValueError(f"rate {rate_ml_h!r} mL/h cannot be expressed in NE-1000 units")
    _, _, text, units = min(candidates)
    return text, units


class NE1000(VisaInstrument):
    """NE-1000 syringe pump (Basic mode). Options: ``address`` 0..99 (default 0),
    ``syringe_diameter_mm`` (applied with DIA before the first rate change or start)."""

    kind: ClassVar[str] = "syringe_pump"
    write_termination: ClassVar[bytes] = b"\r"
    read_termination: ClassVar[str] = ETX
    baud_rate: ClassVar[int | None] = 19200

    def __init__(self, name: str, resource: Any, **kwargs: Any) -> None:
        super().__init__(name, resource, **kwargs)
        watchdog = int_option(self.options, "comms_watchdog_s", OPTIONS["comms_watchdog_s"], name, " (0 = no watchdog)")
        self.watchdog_s = watchdog
        # Talking Safe-mode packets now. A second process reopening the pump during a run (the
        # safe-state supervisor) starts in Safe mode: see reopen_options.
        self._safe = bool(self.options.get("assume_safe_mode", False)) and watchdog > 0
        self._mode_settled = False  # a first exchange has succeeded (or the Safe probe was tried)
        self._watchdog_on = False
        self._last_exchange = time.monotonic()
        self._alarm_listeners: list[Callable[[str, str], None]] = []
        self._keepalive: threading.Thread | None = None
        self._keepalive_stop = threading.Event()
        self.address = int_option(self.options, "address", OPTIONS["address"], name)
        diameter = self.options.get("syringe_diameter_mm")
        self._diameter_mm: float | None = (
            None if diameter is None else self._check_diameter(diameter)
        )
        self._configured = False
        self._status: str | None = None  # prompt character of the last reply
        self._rate_units: str | None = None  # units of the last rate we set
        self._pending_alarm: str | None = None

    # -- framing ------------------------------------------------------------------------------

    def _cmd(self, body: str) -> str:
        return f"{self.address}{body}"

    def _frame_request(self, cmd: str) -> bytes:
        if self._safe:
            self._drain_unasked(cmd)
            return encode_safe_packet(cmd)
        return super()._frame_request(cmd)

    def _read_reply(self, cmd: str) -> bytes:
        if not self._safe:
            return super()._read_reply(cmd)
        return self._read_packet(cmd)

    def _read_packet(self, cmd: str) -> bytes:
        """One Safe packet, re-framed as ``STX data ETX`` for ``_payload`` once its CRC checks."""
        first = self._res.read_bytes(1)
        if first != b"\x02":
            self._flush_input()
            raise MalformedReply(self.name, cmd, f"Safe-mode reply does not start with STX: {first!r}")
        length = self._res.read_bytes(1)
        rest = self._res.read_bytes(length[0] - 1) if length[0] > 1 else b""
        try:
            data = decode_safe_packet(first + length + rest)
        except ValueError as exc:
            self._flush_input()
            raise MalformedReply(self.name, cmd, str(exc)) from None
        return (STX + data + ETX).encode("ascii")

    def _drain_unasked(self, cmd: str) -> None:
        """Read packets the pump sent unasked (auto-alarms) so they are not taken for a reply."""
        while self._bytes_waiting() > 0:
            try:
                reply = self._read_packet(cmd).decode("ascii")[:-1]
                self._payload("(unasked)", reply)
            except PumpAlarm:
                pass  # remembered as pending by _payload, listeners told
            except (InstrumentError, pyvisa.errors.VisaIOError):
                self._flush_input()
                return

    def _bytes_waiting(self) -> int:
        try:
            return int(getattr(self._res, "bytes_in_buffer", 0) or 0)
        except Exception:  # noqa: BLE001 - a transport that cannot tell has nothing we can drain
            return 0

    def _exchange(self, cmd: str, *, expect_reply: bool = True) -> str:
        """Basic or Safe; a pump left in Safe mode (SAF is non-volatile) is found on the first
        exchange that times out in Basic mode."""
        try:
            reply = super()._exchange(cmd, expect_reply=expect_reply)
        except (InstrumentTimeout, MalformedReply) as exc:
            # The first exchange tells the mode: a Safe-mode pump ignores Basic text (timeout) or
            # its unasked alarm packet arrives where a Basic reply was awaited (malformed); a
            # Basic-mode pump ignores a packet (no CR). Try once in the other mode.
            if self._mode_settled or self.watchdog_s == 0 or (self._safe and isinstance(exc, MalformedReply)):
                raise
            self._mode_settled, self._safe = True, not self._safe
            if not self._safe:
                self._end_basic_line()
            self._flush_input()
            try:
                reply = super()._exchange(cmd, expect_reply=expect_reply)
            except InstrumentError:
                self._safe = not self._safe
                raise
            log.info("%s: the pump talks %s mode", self.name, "Safe" if self._safe else "Basic")
        self._mode_settled = True
        self._last_exchange = time.monotonic()
        return reply

    def _payload(self, cmd: str, reply: str) -> str:
        if (not self._safe and not self._mode_settled and self.watchdog_s and len(reply) > 1
                and reply.startswith(STX) and reply[1] < " "):
            # A length byte after STX: a Safe-mode packet (the pump's unasked alarm) where a Basic
            # reply was awaited. The pump talks Safe mode: the retry of a query goes as a packet.
            self._mode_settled, self._safe = True, True
            self._flush_input()
            raise MalformedReply(self.name, cmd, f"Safe-mode packet {reply!r} in reply to a Basic command")
        if not reply.startswith(STX) or len(reply) < 4:
            raise MalformedReply(self.name, cmd, f"not an NE-1000 packet: {reply!r}")
        address, status, data = reply[1:3], reply[3], reply[4:]
        if not address.isdigit() or int(address) != self.address:
            raise MalformedReply(
                self.name, cmd, f"reply from address {address!r}, expected {self.address:02d}"
            )
        if status == "A":
            kind = ALARMS.get(data[1:]) if data.startswith("?") else None
            if kind is None:
                raise MalformedReply(self.name, cmd, f"unknown alarm {reply!r}")
            self._pending_alarm = kind[0]
            self._status = None
            detail = f"alarm: {kind[1]} (command not executed)"
            self._tell_listeners(kind[0], detail)
            raise PumpAlarm(self.name, cmd, kind[0], detail)
        if status not in PROMPTS:
            raise MalformedReply(self.name, cmd, f"unknown status {status!r} in {reply!r}")
        self._status = status
        if data.startswith("?"):
            code = data[1:]
            if code not in COMMAND_ERRORS:
                raise MalformedReply(self.name, cmd, f"unknown error {data!r}")
            hint = " (rate units cannot change while pumping)" if code == "NA" and "RAT" in cmd else ""
            raise NE1000CommandError(self.name, cmd, code, f"pump answered {data}: {COMMAND_ERRORS[code]}{hint}")
        return data

    def _parse(self, cmd: str, pattern: re.Pattern[str], data: str) -> re.Match[str]:
        match = pattern.match(data)
        if match is None:
            raise MalformedReply(self.name, cmd, f"cannot parse {data!r}")
        return match

    # -- configuration ------------------------------------------------------------------------

    def _check_diameter(self, diameter_mm: Any) -> float:
        low, high = DIAMETER_RANGE_MM
        return in_range("syringe_diameter_mm", low, high, "mm")(diameter_mm)

    def set_diameter_mm(self, diameter_mm: float) -> None:
        """Tell the pump the syringe's inside diameter (it converts mL to pusher travel with it)."""
        diameter = self._check_diameter(diameter_mm)
        self.command(self._cmd(f"DIA{format_float(diameter)}"))
        self._diameter_mm = diameter

    def diameter_mm(self) -> float:
        cmd = self._cmd("DIA")
        data = self.query(cmd)
        try:
            return float(data)
        except ValueError:
            raise MalformedReply(self.name, cmd, f"cannot parse diameter {data!r}") from None

    def configure(self) -> None:
        """Diameter (if the station gives one), infuse direction, continuous delivery (VOL 0).

        Done lazily before the first rate change or start, so opening the pump (``identify``)
        never changes it; the Bench may call it explicitly.
        """
        if self._diameter_mm is not None:
            self.set_diameter_mm(self._diameter_mm)
        self.command(self._cmd("DIRINF"))
        self.command(self._cmd("VOL0"))
        if self.watchdog_s > 0:
            self.enable_watchdog()
        self._configured = True

    # -- Safe mode and the communications watchdog --------------------------------------------

    def enable_watchdog(self) -> None:
        """``SAF<n>`` (switches a Basic-mode pump to Safe mode), a first Safe packet to arm the
        timer, and the keep-alive thread."""
        if self.watchdog_s == 0:
            raise ValueError(f"{self.name}: options.comms_watchdog_s is 0 (no watchdog)")
        with self._lock:
            self.command(self._cmd(f"SAF{self.watchdog_s}"))
            self._safe = True  # the reply came in the old framing; from now on Safe packets
            self.query(self._cmd(""))  # the first valid Safe packet starts the pump's timer
            self._watchdog_on = True
        if self._keepalive is None:
            self._keepalive_stop.clear()
            self._keepalive = threading.Thread(
                target=self._keep_alive, name=f"{self.name}-keepalive", daemon=True
            )
            self._keepalive.start()

    def watchdog_state(self) -> dict[str, Any]:
        """What ``rig check`` shows: the option, the mode spoken now, the pump's own SAF value."""
        cmd = self._cmd("SAF")
        data = self.query(cmd)
        if not data.isdigit():
            raise MalformedReply(self.name, cmd, f"cannot parse the SAF timeout {data!r}")
        return {
            "configured_s": self.watchdog_s,
            "mode": "safe" if self._safe else "basic",
            "pump_timeout_s": int(data),
            "armed": self._watchdog_on,
        }

    def _end_basic_line(self) -> None:
        """A Basic-mode pump kept the unanswered packet's bytes as the start of a command line: end
        that line with CR and drop its answer (``?``: the bytes are no command), so the next
        command starts clean."""
        try:
            self._res.write_raw(b"\r")
            self._res.read_raw()
        except Exception:  # noqa: BLE001 - nothing came back: nothing to drop
            pass

    def reopen_options(self) -> dict[str, Any]:
        """Options for a second process that reopens this pump while a run holds it (the
        safe-state supervisor after a kill -9): with a watchdog the pump is most likely in Safe
        mode then, so that process speaks Safe mode first (Basic is still tried if it gets no reply)."""
        return {**self.options, "assume_safe_mode": self.watchdog_s > 0}

    def add_alarm_listener(self, callback: Callable[[str, str], None]) -> None:
        """``callback(alarm, detail)`` for every alarm the pump reports, from any thread."""
        self._alarm_listeners.append(callback)

    def remove_alarm_listener(self, callback: Callable[[str, str], None]) -> None:
        if callback in self._alarm_listeners:
            self._alarm_listeners.remove(callback)

    def _tell_listeners(self, alarm: str, detail: str) -> None:
        for callback in list(self._alarm_listeners):
            try:
                callback(alarm, detail)
            except Exception:  # noqa: BLE001 - a listener must not break the pump's protocol
                log.exception("%s: alarm listener failed", self.name)

    def _keep_alive(self) -> None:
        period_s = max(0.1, self.watchdog_s / KEEPALIVE_FRACTION)
        while not self._keepalive_stop.wait(period_s / 2):
            if time.monotonic() - self._last_exchange < period_s:
                continue
            try:
                with self._lock:
                    if self._keepalive_stop.is_set() or not self._safe:
                        return
                    self.query(self._cmd(""))
            except PumpAlarm:
                pass  # remembered by _payload, listeners told
            except InstrumentError as exc:
                log.warning("%s: keep-alive failed: %s", self.name, exc)
            except Exception:  # noqa: BLE001 - a closed transport at shutdown ends the thread
                return

    def disable_watchdog(self) -> None:
        """Stop the keep-alives and send ``SAF0`` (the pump goes back to Basic mode)."""
        self._keepalive_stop.set()
        thread, self._keepalive = self._keepalive, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        if self._safe:
            with self._lock:
                try:
                    self.query(self._cmd("SAF0"))
                except PumpAlarm:
                    self.query(self._cmd("SAF0"))  # the alarm answered first and is acknowledged
                self._safe = False
        self._watchdog_on = False

    def close(self) -> None:
        """Back to Basic mode (no watchdog while nobody talks to the pump), then close."""
        try:
            if self._safe or self._keepalive is not None:
                self.disable_watchdog()
        except InstrumentError as exc:
            log.warning("%s: could not leave Safe mode: %s", self.name, exc)
        finally:
            super().close()

    def _ensure_configured(self) -> None:
        if not self._configured:
            self.configure()

    # -- the Pump interface -------------------------------------------------------------------

    def max_rate_ml_h(self) -> float:
        diameter = self._diameter_mm if self._diameter_mm is not None else 26.59
        return max_rate_ml_h(diameter)

    def set_rate_ml_h(self, rate_ml_h: float) -> None:
        rate = in_range("rate_ml_h", MIN_RATE_ML_H, self.max_rate_ml_h(), "mL/h")(rate_ml_h)
        self._ensure_configured()
        keep = self._rate_units if self._status in PUMPING else None
        number, units = encode_rate(rate, keep_units=keep)
        self.command(self._cmd(f"RAT{number}{units}"))
        self._rate_units = units

    def rate_ml_h(self) -> float:
        cmd = self._cmd("RAT")
        match = self._parse(cmd, _RATE, self.query(cmd))
        self._rate_units = match.group(2)
        return float(match.group(1)) / RATE_UNITS_PER_ML_H[match.group(2)]

    def start(self) -> None:
        self._ensure_configured()
        self.command(self._cmd("RUN"))

    def stop(self) -> None:
        self.command(self._cmd("STP"))

    def status(self) -> str:
        """The prompt character of a status query (``S``, ``P``, ``I``, ...)."""
        cmd = self._cmd("")
        self.query(cmd)
        if self._status is None:  # _payload sets it for every non-alarm reply
            raise MalformedReply(self.name, cmd, "reply carried no status")
        return self._status

    def is_running(self) -> bool:
        return self.status() in PUMPING

    def alarm(self) -> str | None:
        """The alarm reported since the last call, asking the pump if none was seen yet.

        Why remember: the NE-1000 clears an alarm once it has reported it, so an alarm that
        answered some other command must not be lost before a procedure asks for it.
        """
        if self._pending_alarm is None:
            try:
                self.status()
            except PumpAlarm:
                pass
        alarm, self._pending_alarm = self._pending_alarm, None
        return alarm

    def dispensed_ml(self) -> float:
        return self._dispensed()[0]

    def withdrawn_ml(self) -> float:
        return self._dispensed()[1]

    def _dispensed(self) -> tuple[float, float]:
        cmd = self._cmd("DIS")
        match = self._parse(cmd, _DISPENSED, self.query(cmd))
        per_ml = VOLUME_UNITS_PER_ML[match.group(3)]
        return float(match.group(1)) / per_ml, float(match.group(2)) / per_ml

    def clear_dispensed(self) -> None:
        self.command(self._cmd("CLDINF"))
        self.command(self._cmd("CLDWDR"))

    def identify(self) -> Identity:
        cmd = self._cmd("VER")
        match = self._parse(cmd, _VERSION, self.query(cmd))
        return Identity(model=f"NE-{match.group(1)}", serial="", firmware=match.group(2))

    def safe_state(self) -> dict[str, Any]:
        """STP until the pump reads back stopped or paused (never infusing/withdrawing).

        STP is safe to repeat (a paused program stops, a stopped one stays stopped), so it is
        sent as a retried query; a pending alarm answers the first STP and is acknowledged by it.
        """
        alarm = None
        try:
            self.query(self._cmd("STP"))
        except PumpAlarm as exc:
            alarm = exc.alarm
            self.query(self._cmd("STP"))
        status = self.status()
        if status not in ("S", "P"):
            raise SafeStateNotConfirmed(
                self.name, self._cmd(""), f"pump still {PROMPTS[status]} (status {status!r}) after STP"
            )
        return {"running": False, "status": status, "alarm": alarm}


__all__ = [
    "NE1000",
    "NE1000CommandError",
    "decode_safe_packet",
    "encode_rate",
    "encode_safe_packet",
    "format_float",
    "max_rate_ml_h",
]
