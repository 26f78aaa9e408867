"""Emulated SCPI bench DMM (like a Keysight 34465A on TCP port 5025) reading the flow sensor.

What it measures: the analog output of the line's flow sensor, ``volts_per_ul_min`` (option,
default 0.1 V per uL/min, the scale rig.toml gives the DAQ's flow channel) times
``model.flow_sensor_ul_min()``.

Protocol (IEEE 488.2 / SCPI-1999 as implemented by the Keysight Truevolt 34460A/34461A/34465A
programming guide): newline-terminated ASCII; headers match in short (upper-case part) or long
form, case-insensitive, optional nodes in brackets may be left out; several commands may share a
line separated by ``;``. Replies, newline-terminated:

* ``*IDN?`` -> ``Keysight Technologies,34465A,<serial>,A.02.14-02.40-02.14-00.49-03-01``
* ``MEAS:VOLT:DC? [<range>|AUTO|MIN|MAX|DEF]`` / ``READ?`` -> ``+1.23456789E-01`` (NR3, nine
  significant digits); beyond 120 % of a fixed range the overload value ``+9.90000000E+37``
* ``SYST:ERR?`` -> ``+0,"No error"`` or the oldest queued error, e.g. ``-113,"Undefined header"``
* ``*OPC?`` -> ``1``; ``*RST``, ``*CLS``, ``ABOR``, ``CONF:VOLT:DC [<range>]`` reply nothing.

A bad command is silent on the wire (as on a real instrument) and queues an error (20 deep;
on overflow the last entry becomes ``-350,"Error queue overflow"``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar

from instruments.sim.emulator import Emulator
from instruments.sim.world import SimWorld
from rig.settings import Key, Schema

RANGES_V = (0.1, 1.0, 10.0, 100.0, 1000.0)
OVERRANGE = 1.2  # Truevolt DMMs read to 120 % of range
OVERLOAD_READING = "+9.90000000E+37"
ERROR_QUEUE_DEPTH = 20
NO_ERROR = '+0,"No error"'

ERRORS = {
    -102: "Syntax error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -222: "Data out of range",
    -224: "Illegal parameter value",
    -350: "Error queue overflow",
    -363: "Input buffer overrun",
}


class _ScpiError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _node_matches(pattern: str, token: str) -> bool:
    """SCPI mnemonic match: the short form is the pattern's upper-case letters (plus ``*``/``?``)."""
    short = "".join(ch for ch in pattern if not ch.islower())
    return token.upper() in (short.upper(), pattern.upper())


def header_matches(pattern: str, header: str) -> bool:
    """Does ``header`` (e.g. ``meas:volt?``) match ``pattern`` (e.g. ``MEASure:VOLTage[:DC]?``)?"""
    query = pattern.endswith("?")
    if header.endswith("?") != query:
        return False
    nodes = pattern.rstrip("?").replace("[:", ":[").split(":")
    tokens = header.rstrip("?").lstrip(":").split(":")

    def match(i: int, j: int) -> bool:
        if i == len(nodes):
            return j == len(tokens)
        node = nodes[i]
        optional = node.startswith("[")
        name = node.strip("[]")
        if j < len(tokens) and _node_matches(name, tokens[j]) and match(i + 1, j + 1):
            return True
        return optional and match(i + 1, j)

    return match(0, 0)


class ScpiDmmEmulator(Emulator):
    """The DMM. Its own state: function, range, last reading, error queue, abort count."""

    kind: ClassVar[str] = "dmm"
    request_terminator: ClassVar[bytes] = b"\n"
    SIM_OPTIONS: ClassVar[Schema] = {  # how the flow sensor is wired to it, and what *IDN? reports
        "volts_per_ul_min": Key("number", default=0.1,
                                check=lambda v: None if v != 0 else "0 is not allowed; expected a non-zero number"),
        "manufacturer": Key("str", default="Keysight Technologies"),
        "model": Key("str", default="34465A"),
        "firmware": Key("str", default="A.02.14-02.40-02.14-00.49-03-01"),
    }

    def __init__(
        self,
        name: str,
        world: SimWorld,
        *,
        serial: str = "MY12345678",
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(name, world, serial=serial, options=options)
        self.volts_per_ul_min = float(self.sim_options["volts_per_ul_min"])
        self.idn = ",".join([self.sim_options["manufacturer"], self.sim_options["model"], serial,
                             self.sim_options["firmware"]])
        self.range_v: float | None = None  # None = autorange
        self.last_reading_v: float | None = None
        self.errors: list[int] = []
        self.aborts = 0
        # IEEE 488.2 status: event status register, its enable mask, service request enable mask
        self.esr = 0
        self.ese = 0
        self.sre = 0
        self._lock = threading.Lock()  # one TCP thread per client connection
        self._commands: list[tuple[str, Callable[[str], str | None]]] = [
            ("*IDN?", self._no_params(lambda: self.idn)),
            ("*RST", self._no_params(self._reset)),
            ("*CLS", self._no_params(self._clear_status)),
            ("*OPC?", self._no_params(lambda: "1")),
            ("*OPC", self._no_params(self._operation_complete)),
            ("*WAI", self._no_params(lambda: None)),  # nothing runs in the background to wait for
            ("*TST?", self._no_params(lambda: "+0")),  # self-test passed
            ("*ESR?", self._no_params(self._read_esr)),
            ("*ESE?", self._no_params(lambda: f"+{self.ese}")),
            ("*ESE", lambda params: self._set_mask("ese", params)),
            ("*SRE?", self._no_params(lambda: f"+{self.sre}")),
            ("*SRE", lambda params: self._set_mask("sre", params)),
            ("*STB?", self._no_params(self._status_byte)),
            ("ABORt", self._no_params(self._abort)),
            ("SYSTem:ERRor[:NEXT]?", self._no_params(self._next_error)),
            ("MEASure:VOLTage[:DC]?", self._measure),
            ("CONFigure:VOLTage[:DC]", self._configure),
            ("READ?", self._no_params(self._read)),
        ]

    # -- framing ------------------------------------------------------------------------------

    def handle(self, request: bytes) -> bytes | None:
        """Execute each ``;``-separated command; the replies of queries share one line."""
        with self._lock:
            return self._handle_line(request)

    def _handle_line(self, request: bytes) -> bytes | None:
        replies: list[str] = []
        try:
            text = request.decode("ascii").strip()
        except UnicodeDecodeError:
            self._queue(-102)
            return None
        for unit in (part.strip() for part in text.split(";")):
            if not unit:
                continue
            header, _, params = unit.partition(" ")
            handler = next((h for p, h in self._commands if header_matches(p, header)), None)
            try:
                if handler is None:
                    raise _ScpiError(-113)
                reply = handler(params.strip())
            except _ScpiError as err:
                self._queue(err.code)
                break  # SCPI: the rest of a line after an error is not executed
            if reply is not None:
                replies.append(reply)
        return (";".join(replies) + "\n").encode("ascii") if replies else None

    def input_overrun(self) -> None:
        """A line longer than the input buffer was discarded (called by the transport)."""
        with self._lock:
            self._queue(-363)

    def _queue(self, code: int) -> None:
        # IEEE 488.2 event status bits: 5 command error (-1xx), 4 execution error (-2xx), 3 device error
        self.esr |= 0x20 if -199 <= code <= -100 else 0x10 if -299 <= code <= -200 else 0x08
        if len(self.errors) >= ERROR_QUEUE_DEPTH:
            self.errors[-1] = -350
        else:
            self.errors.append(code)

    @staticmethod
    def _no_params(fn: Callable[[], Any]) -> Callable[[str], str | None]:
        def handler(params: str) -> str | None:
            if params:
                raise _ScpiError(-108)
            result = fn()
            return result if isinstance(result, str) else None

        return handler

    # -- commands -----------------------------------------------------------------------------

    def _clear_status(self) -> None:
        self.errors.clear()
        self.esr = 0

    def _operation_complete(self) -> None:
        self.esr |= 0x01  # OPC: every pending operation is complete (none run in the background)

    def _read_esr(self) -> str:
        value, self.esr = self.esr, 0  # reading clears it
        return f"+{value}"

    def _set_mask(self, which: str, params: str) -> None:
        try:
            value = int(float(params))
        except ValueError:
            raise _ScpiError(-224 if params else -109) from None
        if not 0 <= value <= 255:
            raise _ScpiError(-222)
        setattr(self, which, value)

    def _status_byte(self) -> str:
        """Bit 2 error queue not empty, bit 5 an enabled event (ESR & ESE), bit 6 a service request."""
        stb = (0x04 if self.errors else 0) | (0x20 if self.esr & self.ese else 0)
        if stb & self.sre:
            stb |= 0x40
        return f"+{stb}"

    def _reset(self) -> None:
        self.range_v = None
        self.last_reading_v = None

    def _abort(self) -> None:
        self.aborts += 1

    def _next_error(self) -> str:
        if not self.errors:
            return NO_ERROR
        code = self.errors.pop(0)
        return f'{code:+d},"{ERRORS[code]}"'

    @staticmethod
    def _parse_range(params: str) -> float | None:
        word = params.split(",")[0].strip().upper()  # a resolution after the comma is accepted
        if word in ("", "AUTO", "DEF", "DEFAULT"):
            return None
        if word in ("MIN", "MINIMUM"):
            return RANGES_V[0]
        if word in ("MAX", "MAXIMUM"):
            return RANGES_V[-1]
        try:
            wanted = float(word)
        except ValueError:
            raise _ScpiError(-224) from None
        for range_v in RANGES_V:  # the smallest range that holds the value, as the manual says
            if abs(wanted) <= range_v * OVERRANGE:
                return range_v
        raise _ScpiError(-222)

    def _configure(self, params: str) -> None:
        self.range_v = self._parse_range(params)
        return None

    def _measure(self, params: str) -> str:
        self._configure(params)
        return self._read()

    def _read(self) -> str:
        with self.world.locked() as model:
            volts = model.flow_sensor_ul_min() * self.volts_per_ul_min
        self.last_reading_v = volts
        if self.range_v is not None and abs(volts) > self.range_v * OVERRANGE:
            return OVERLOAD_READING
        return f"{volts:+.8E}"

    # -- control channel ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "idn": self.idn,
            "function": "VOLT:DC",
            "range_v": self.range_v,
            "last_reading_v": self.last_reading_v,
            "error_queue": [f'{c:+d},"{ERRORS[c]}"' for c in self.errors],
            "aborts": self.aborts,
            "volts_per_ul_min": self.volts_per_ul_min,
        }
