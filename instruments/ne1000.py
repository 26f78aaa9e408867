"""New Era NE-1000 syringe pump over RS-232 (Basic mode), the rig's syringe stand-in for the implant.

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

The NE-1000 reports no serial number over RS-232, so ``identify`` leaves it empty and the station
file's serial is the traceable one.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

from instruments.errors import (
    InstrumentReportedError,
    MalformedReply,
    SafeStateNotConfirmed,
)
from instruments.pump import PumpAlarm
from instruments.visa_instrument import Identity, VisaInstrument, in_range
from instruments.drivers import DRIVERS

STX, ETX = "\x02", "\x03"

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
        rule = OPTIONS["address"]
        address = self.options.get("address", rule.default)
        if not isinstance(address, int) or isinstance(address, bool) or not rule.in_range(address):
            raise ValueError(f"{name}: options.address must be an integer {rule.low}..{rule.high}, got {address!r}")
        self.address = address
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

    def _payload(self, cmd: str, reply: str) -> str:
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
            raise PumpAlarm(self.name, cmd, kind[0], f"alarm: {kind[1]} (command not executed)")
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
        self._configured = True

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


__all__ = ["NE1000", "NE1000CommandError", "encode_rate", "format_float", "max_rate_ml_h"]
