"""Ismatec Reglo ICC peristaltic pump over RS-232, the rig's peristaltic stand-in for the implant.

Protocol source: Ismatec "REGLO ICC Operating Manual" 14-036 (rev. C/D), section 14 "Reglo ICC
serial command protocol", in the default (legacy, pump-addressed) mode:

* 9600 baud 8N1; request ``<addr><command>[argument] CR`` with the pump address 1..8 (factory 1).
* Status response, ONE character and no terminator: ``*`` executed, ``#`` not executed, and for
  some commands ``+`` / ``-`` (e.g. ``E`` running/stopped, ``H`` "-" = cannot run with the
  current settings). Data response: fields separated by spaces, then CR LF.
* Volume Type 1 (14.6.10): ``mmmmEse`` = m.mmm x 10^se, e.g. ``1200E-2``. Set commands take
  "Volume Type 2", the same without the ``E`` (``1200-2``; not spelled out in the manual, as the
  NuMat and other open drivers note). Discrete Type 2: 4 digits, zero-padded.
* Commands used: ``H`` start, ``I`` stop, ``J``/``K`` clockwise / counter-clockwise, ``E``
  running?, ``M`` flow-rate mode, ``f`` flow rate in mL/min (get -> Volume Type 1; set Volume
  Type 2 -> the accepted rate as Volume Type 1), ``+`` tubing inner diameter (get ``1.52 mm``;
  set Discrete Type 2 in 1/100 mm -> ``*``), ``?`` maximum flow with the current tubing
  (``3.700 ml/min``), ``:`` volume pumped since reset (``4.983 ml``; ul, ml or l), ``W`` reset
  it, ``#`` ``<model> <software version> <head code>`` (head code: channels digit + 2-digit
  roller count), ``xS`` serial number.

The Reglo ICC reports no alarms over RS-232 (an overloaded motor stops and shows it on the
display only), so ``alarm`` always returns None; ``is_running`` shows a stop.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, ClassVar

from instruments.errors import (
    InstrumentReportedError,
    MalformedReply,
    SafeStateNotConfirmed,
)
from instruments.visa_instrument import Identity, VisaInstrument, in_range
from instruments.drivers import DRIVERS
from rig.settings import int_option

_VOLUME1 = re.compile(r"^(\d)(\d{3})E([+-]\d)$")
_VOLUME2 = re.compile(r"^(\d)(\d{3})([+-]\d)$")
_PUMPED = re.compile(r"^(\d+(?:\.\d+)?) (ul|ml|l)$", re.IGNORECASE)
_MAX_FLOW = re.compile(r"^(\d+(?:\.\d+)?) ml/min$", re.IGNORECASE)
_TUBING = re.compile(r"^(\d+(?:\.\d+)?) mm$", re.IGNORECASE)
_HEAD = re.compile(r"^(\d)(\d{2})$")

ML_PER_UNIT = {"ul": 1e-3, "ml": 1.0, "l": 1e3}
OPTIONS = DRIVERS["reglo_icc"].options  # what it reads from the station file, declared in the catalog
TUBING_RANGE_MM = (OPTIONS["tubing_inner_diameter_mm"].low, OPTIONS["tubing_inner_diameter_mm"].high)
MIN_RATE_ML_H = 1e-6  # Volume Type 2 reaches 1.000E-9 mL/min; keep a sane floor
# Commands answered by one status character; the rest answer data lines.
STATUS_COMMANDS = frozenset({"H", "I", "J", "K", "E", "M", "L", "W", "-", "A", "B"})
SET_WITH_STATUS = frozenset({"+", "xE"})  # with an argument: a set answered by "*"/"#"


def _scientific(value: float) -> tuple[str, str]:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"Reglo ICC volumes are finite and >= 0, got {value!r}")
    if value == 0:
        return "0000", "+0"
    text = f"{value:.3e}"  # e.g. 1.200e-02
    mantissa, exponent = text.split("e")
    exp = int(exponent)
    if not -9 <= exp <= 9:
        raise ValueError(f"{value!r} is outside the Reglo ICC's one-digit exponent")
    return mantissa.replace(".", ""), f"{exp:+d}"


def format_volume_type1(value: float) -> str:
    mantissa, exponent = _scientific(value)
    return f"{mantissa}E{exponent}"


def format_volume_type2(value: float) -> str:
    mantissa, exponent = _scientific(value)
    return f"{mantissa}{exponent}"


def _parse_scientific(pattern: re.Pattern[str], text: str) -> float:
    match = pattern.match(text)
    if match is None:
        raise ValueError(f"not a Reglo ICC volume: {text!r}")
    whole, fraction, exponent = match.groups()
    return float(f"{whole}.{fraction}") * 10.0 ** int(exponent)


def parse_volume_type1(text: str) -> float:
    return _parse_scientific(_VOLUME1, text)


def parse_volume_type2(text: str) -> float:
    return _parse_scientific(_VOLUME2, text)


def command_code(body: str) -> tuple[str, str]:
    """(command, argument) of a request without its address: ``x`` starts a two-letter code."""
    size = 2 if body.startswith("x") else 1
    return body[:size], body[size:]


def answers_with_status(body: str) -> bool:
    code, arg = command_code(body)
    return code in STATUS_COMMANDS or (code in SET_WITH_STATUS and arg != "")


class RegloICC(VisaInstrument):
    """Reglo ICC in legacy pump addressing (all channels together). Options: ``address`` 1..8
    (default 1), ``tubing_inner_diameter_mm`` (alias ``tubing_id_mm``; set before the first rate
    change or start), ``rollers`` (checked against the pump head's code by ``configure``).
    ``channel`` is accepted for station-file compatibility; legacy mode drives every channel."""

    kind: ClassVar[str] = "peristaltic_pump"
    write_termination: ClassVar[bytes] = b"\r"
    read_termination: ClassVar[str] = "\r\n"
    baud_rate: ClassVar[int | None] = 9600

    def __init__(self, name: str, resource: Any, **kwargs: Any) -> None:
        super().__init__(name, resource, **kwargs)
        self.address = int_option(self.options, "address", OPTIONS["address"], name)
        tubing = self.options.get("tubing_inner_diameter_mm", self.options.get("tubing_id_mm"))
        self._tubing_mm: float | None = None if tubing is None else self._check_tubing(tubing)
        self._rollers = self.options.get("rollers")
        self._max_rate_ml_h: float | None = None
        self._configured = False

    # -- framing ------------------------------------------------------------------------------

    def _cmd(self, body: str) -> str:
        return f"{self.address}{body}"

    def _read_reply(self, cmd: str) -> bytes:
        """A status character stands alone; anything else is the first byte of a data line."""
        first = self._res.read_bytes(1)
        if answers_with_status(cmd[1:]) or first in (b"*", b"#"):
            if first not in (b"*", b"#", b"+", b"-"):
                self._flush_input()  # noise: drop the rest of it before the next exchange
            return first
        return first + self._res.read_raw()

    def _payload(self, cmd: str, reply: str) -> str:
        code, _ = command_code(cmd[1:])
        if reply == "#":
            raise InstrumentReportedError(self.name, cmd, "pump answered '#': command not executed")
        if answers_with_status(cmd[1:]):
            if code == "E" and reply in ("+", "-"):
                return reply
            if code == "H" and reply == "-":
                raise InstrumentReportedError(
                    self.name, cmd, "pump answered '-': cannot run with the current settings "
                    "(flow rate zero or above the tubing's maximum)"
                )
            if reply != "*":
                raise MalformedReply(self.name, cmd, f"expected a status character, got {reply!r}")
            return ""
        if reply in ("*", "+", "-"):
            raise MalformedReply(self.name, cmd, f"expected data, got status {reply!r}")
        return reply

    def _parsed(self, cmd: str, parse: Callable[[str], Any], data: str) -> Any:
        try:
            return parse(data)
        except ValueError as exc:
            raise MalformedReply(self.name, cmd, f"cannot parse {data!r}: {exc}") from None

    # -- configuration ------------------------------------------------------------------------

    def _check_tubing(self, diameter_mm: Any) -> float:
        low, high = TUBING_RANGE_MM
        return in_range("tubing_inner_diameter_mm", low, high, "mm")(diameter_mm)

    def set_tubing_mm(self, diameter_mm: float) -> None:
        """The tubing's inner diameter: the pump converts mL/min to head speed with it."""
        diameter = self._check_tubing(diameter_mm)
        self.command(self._cmd(f"+{round(diameter * 100):04d}"))
        self._tubing_mm = diameter
        self._max_rate_ml_h = None

    def tubing_mm(self) -> float:
        cmd = self._cmd("+")
        match = self._parsed(cmd, _matcher(_TUBING), self.query(cmd))
        return float(match.group(1))

    def head(self) -> tuple[str, str, int, int]:
        """(model, software version, channels, rollers) from the ``#`` query."""
        cmd = self._cmd("#")
        data = self.query(cmd)
        parts = data.rsplit(" ", 2)
        head = _HEAD.match(parts[-1]) if len(parts) == 3 else None
        if head is None:
            raise MalformedReply(self.name, cmd, f"cannot parse pump information {data!r}")
        return parts[0], parts[1], int(head.group(1)), int(head.group(2))

    def configure(self) -> None:
        """Flow-rate mode, clockwise (infuse) rotation, the station's tubing; check the rollers.

        Done lazily before the first rate change or start; the Bench may call it explicitly.
        """
        if self._rollers is not None:
            rollers = self.head()[3]
            if rollers != self._rollers:
                raise InstrumentReportedError(
                    self.name, self._cmd("#"),
                    f"pump head has {rollers} rollers but options.rollers = {self._rollers}",
                )
        self.command(self._cmd("M"))
        self.command(self._cmd("J"))
        if self._tubing_mm is not None:
            self.set_tubing_mm(self._tubing_mm)
        self._configured = True

    def _ensure_configured(self) -> None:
        if not self._configured:
            self.configure()

    # -- the Pump interface -------------------------------------------------------------------

    def max_rate_ml_h(self) -> float:
        """The pump's maximum flow with the current tubing (asked once per tubing)."""
        if self._max_rate_ml_h is None:
            cmd = self._cmd("?")
            match = self._parsed(cmd, _matcher(_MAX_FLOW), self.query(cmd))
            self._max_rate_ml_h = float(match.group(1)) * 60.0
        return self._max_rate_ml_h

    def set_rate_ml_h(self, rate_ml_h: float) -> None:
        self._ensure_configured()
        rate = in_range("rate_ml_h", MIN_RATE_ML_H, self.max_rate_ml_h(), "mL/h")(rate_ml_h)
        cmd = self._cmd(f"f{format_volume_type2(rate / 60.0)}")
        self._parsed(cmd, parse_volume_type1, self.command(cmd))

    def rate_ml_h(self) -> float:
        cmd = self._cmd("f")
        return self._parsed(cmd, parse_volume_type1, self.query(cmd)) * 60.0

    def start(self) -> None:
        self._ensure_configured()
        self.command(self._cmd("H"))

    def stop(self) -> None:
        self.command(self._cmd("I"))

    def is_running(self) -> bool:
        return self.query(self._cmd("E")) == "+"

    def alarm(self) -> str | None:
        """Always None: the Reglo ICC has no alarm over RS-232 (see the module docstring)."""
        return None

    def dispensed_ml(self) -> float:
        cmd = self._cmd(":")
        match = self._parsed(cmd, _matcher(_PUMPED), self.query(cmd))
        return float(match.group(1)) * ML_PER_UNIT[match.group(2).lower()]

    def clear_dispensed(self) -> None:
        self.command(self._cmd("W"))

    def identify(self) -> Identity:
        model, software, _, _ = self.head()
        serial = self.query(self._cmd("xS")).strip()
        return Identity(model=model, serial=serial, firmware=software)

    def safe_state(self) -> dict[str, Any]:
        """Stop (``I`` is safe to repeat, so it is a retried query), then read back ``E``."""
        self.query(self._cmd("I"))
        running = self.query(self._cmd("E"))
        if running != "-":
            raise SafeStateNotConfirmed(self.name, self._cmd("E"), "pump still running after stop")
        return {"running": False, "status": "stopped"}


def _matcher(pattern: re.Pattern[str]) -> Callable[[str], re.Match[str]]:
    def match(data: str) -> re.Match[str]:
        found = pattern.match(data)
        if found is None:
            raise ValueError(f"expected {pattern.pattern!r}")
        return found

    return match


__all__ = [
    "RegloICC",
    "format_volume_type1",
    "format_volume_type2",
    "parse_volume_type1",
    "parse_volume_type2",
]
