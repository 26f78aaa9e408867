"""The Ismatec Reglo ICC peristaltic pump, byte for byte, on the model.

Written from the operating manual (14-036 rev. D, section 14-16 "Serial command protocol"), not
from our driver. Requests are ``<addr><command>[argument] CR``; set commands answer one
unterminated status character (``*``, ``#``, ``+``, ``-``), queries answer a data line ending
CR LF. ``@<n>`` sets the pump address (every pump on the chain hears it).

Addressing (Ref 1.1/1.2, ``~``): in legacy mode (factory) the address is the pump's (option
``address``, 1..8) and commands drive all channels together; ``~1`` switches to channel
addressing, where the address is a channel 1..``channels`` (0 for pump-wide commands). Channel 1
is the one plumbed into the rig's line (the model); the other channels keep their own settings,
run state and pumped volume on an unconnected tubing of their own. Event messages (``xE``) are
stored and reported; this emulator sends none (the rig never enables them; see docs/protocols.md).

Mechanism (what the model gets): ``rate_ml_h``, ``running``, ``infuse`` (clockwise ``J`` =
infuse), ``rollers`` and ``rpm_per_ml_h`` so the model pulsates at rollers x rpm / 60 Hz. The
head displaces ``ml_per_rev`` = tubing cross-section x an effective occluded path of 50 mm per
revolution -- an assumption of this simulation, not an Ismatec figure (0.25 mm tubing:
2.45 µL/rev). The head turns at most 100 rpm, which sets the ``?`` maximum flow; a higher rate
answers ``#`` and starting at zero rate answers ``-`` (cannot run). No minimum speed is enforced.
The ``:`` counter is the volume the pump commanded since ``W`` (see pump_mechanism).
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

from instruments.sim.emulator import Emulator
from instruments.sim.model import FluidLine
from instruments.sim.pump_mechanism import DisplacementCounter
from instruments.sim.world import SimWorld
from rig.settings import Key, Schema, int_option

EFFECTIVE_PATH_MM = 50.0  # occluded tubing length displaced per head revolution (assumed)
MAX_RPM = 100.0
DEFAULT_TUBING_MM = 0.25
DEFAULT_ROLLERS = 8
DEFAULT_CHANNELS = 4
ADDRESS = Key("int", default=1, low=1, high=8)  # Ref 1.1: pump address 1..8 (@<n>); factory: 1
SOFTWARE = "310"
PROTOCOL_VERSION = "8"  # x!: "Discrete Type 1"; the value is an assumption (not given in the manual)
OK, FAIL, YES, NO = "*", "#", "+", "-"
CRLF = "\r\n"
MODES = "LMOGQNP"  # Ref 3.1: RPM, Flow Rate, Volume (at rate), Volume (over time), Pause, Time, Time+Pause
PUMP_WIDE = frozenset({"~", "xE", "x!", "#", "xS", "-", "A", "B", "*", "0", "C"})  # per pump, not per channel
DEFAULT_SETTINGS = {"%": 0, "T": 0, '"': 0}  # backsteps, pause time (0.1 s), pump cycles


TUBING_RANGE_MM = (0.13, 3.17)  # the Reglo ICC tubing list: 0.13 to 3.17 mm inner diameter
_VOLUME2 = re.compile(r"^(\d{4})([+-]\d)$")  # 14.6.10 Volume Type 2: mmmm, signed exponent digit


def volume_type1(value: float) -> str:
    """Volume Type 1 (14.6.10): ``mmmmEse`` = m.mmm x 10^se, e.g. 0.012 -> ``1200E-2``."""
    if value <= 0:
        return "0000E+0"
    exponent = math.floor(math.log10(value))
    mantissa = round(value / 10.0**exponent, 3)
    if mantissa >= 10.0:  # rounding carried into the next decade
        mantissa, exponent = mantissa / 10.0, exponent + 1
    exponent = max(-9, min(9, exponent))
    return f"{round(mantissa * 1000):04d}E{exponent:+d}"


def volume_type2(text: str) -> float | None:
    """A Volume Type 2 argument (``mmmmse``, no ``E``), or None when it is not one."""
    match = _VOLUME2.match(text)
    if match is None:
        return None
    return int(match.group(1)) / 1000.0 * 10.0 ** int(match.group(2))


def split_command(body: str) -> tuple[str, str]:
    """(command, argument): ``x...``, ``TM`` and ``TH`` are two letters, the rest one."""
    size = 2 if body.startswith(("x", "TM", "TH")) else 1
    return body[:size], body[size:]


def ml_per_rev(tubing_mm: float) -> float:
    return math.pi / 4.0 * tubing_mm**2 * EFFECTIVE_PATH_MM / 1000.0


def _fixed4(value: float) -> str:
    """Four significant digits in fixed notation (``0.2450``, ``14.70``), as the pump prints."""
    if value <= 0:
        return "0.000"
    decimals = max(0, 3 - math.floor(math.log10(value)))
    return f"{value:.{decimals}f}"


class _Channel:
    """One channel's own state: the line's (channel 1) or an unconnected spare's."""

    def __init__(self, model: FluidLine, tubing_mm: float) -> None:
        self.model = model
        self.tubing_mm = tubing_mm
        self.counter = DisplacementCounter(model)
        self.mode = "M"
        self.flow_source = "1"  # xf: flow from flow rate (1) or RPM (0) outside RPM/flow modes


class RegloICCEmulator(Emulator):
    """Options: ``address`` (1..8, default 1), ``tubing_inner_diameter_mm`` (alias
    ``tubing_id_mm``, default 0.25), ``rollers`` (default 8), ``channels`` (default 4)."""

    kind: ClassVar[str] = "peristaltic_pump"
    request_terminator: ClassVar[bytes] = b"\r"
    SIM_OPTIONS: ClassVar[Schema] = {"channels": Key("int", default=DEFAULT_CHANNELS, low=1, high=4)}  # of the head

    def __init__(self, name: str, world: SimWorld, **kwargs: Any) -> None:
        super().__init__(name, world, **kwargs)
        opts = self.options
        self.address = int_option(opts, "address", ADDRESS, name)
        self.rollers = int(opts.get("rollers", DEFAULT_ROLLERS))
        self.channels = self.sim_options["channels"]
        self.events = "0"
        self.channel_addressing = False
        # Legacy-list settings the rig does not use, stored per pump and read back (Ref 41-48).
        self.settings: dict[str, int] = dict(DEFAULT_SETTINGS)
        self.foot_switch_grounded = False
        tubing = float(opts.get("tubing_inner_diameter_mm", opts.get("tubing_id_mm", DEFAULT_TUBING_MM)))
        with self.world.locked() as model:
            model.pump.rollers = self.rollers
            self._line = _Channel(model, tubing)
            self._active = self._line
            self._set_tubing(model, tubing)
        self._spares: dict[int, _Channel] = {}

    # The handlers below act on the addressed channel.
    tubing_mm = property(lambda self: self._active.tubing_mm)
    _counter = property(lambda self: self._active.counter)
    mode = property(lambda self: self._active.mode)

    def _spare(self, number: int) -> _Channel:
        """A channel not plumbed into the rig: its own model line, kept up with the world's time."""
        if number not in self._spares:
            model = FluidLine(self.world.model.params, seed=number)
            model.pump.kind, model.pump.rollers = "peristaltic", self.rollers
            model.advance_to(self.world.model.t_s)
            channel = _Channel(model, self._line.tubing_mm)
            model.pump.rpm_per_ml_h = 1.0 / (60.0 * ml_per_rev(channel.tubing_mm))
            self._spares[number] = channel
        channel = self._spares[number]
        if self.world.model.t_s > channel.model.t_s:
            channel.model.advance_to(self.world.model.t_s)
        return channel

    # -- state --------------------------------------------------------------------------------

    def _set_tubing(self, model: FluidLine, tubing_mm: float) -> None:
        self._active.tubing_mm = tubing_mm
        model.pump.rpm_per_ml_h = 1.0 / (60.0 * ml_per_rev(tubing_mm))

    def max_flow_ml_min(self) -> float:
        return ml_per_rev(self.tubing_mm) * MAX_RPM

    def state(self) -> dict[str, Any]:
        with self.world.locked() as model:
            self._counter.update(model)
            return {
                "address": self.address,
                "running": model.pump.running,
                "status": "running" if model.pump.running else "stopped",
                "alarm": None,
                "rate_ml_h": model.pump.rate_ml_h,
                "direction": "infuse" if model.pump.infuse else "withdraw",
                "dispensed_ml": self._counter.infused_ml + self._counter.withdrawn_ml,
                "tubing_mm": self.tubing_mm,
                "rollers": self.rollers,
                "rpm": model.pump.rpm,
                "pulsation_hz": model.pump.pulsation_hz,
                "mode": self._line.mode,
                "channel_addressing": self.channel_addressing,
                "event_messages": self.events == "1",
            }

    # -- framing ------------------------------------------------------------------------------

    def garbage(self) -> bytes:
        return b"\x15#~garbage~#\r\n"

    def handle(self, request: bytes) -> bytes | None:
        text = request.decode("ascii", "replace").strip()
        if re.fullmatch(r"@[1-8]", text):
            self.address = int(text[1])
            return OK.encode("ascii")
        if not text or not text[0].isdigit():
            return None
        address = int(text[0])
        code, arg = split_command(text[1:])
        handler = _HANDLERS.get(code)
        with self.world.locked() as line_model:
            if not self.channel_addressing:
                if address != self.address:
                    return None  # another pump on the daisy chain
                self._active = self._line
            elif code in PUMP_WIDE:
                self._active = self._line  # the address field is ignored (0 recommended)
            elif 1 <= address <= self.channels:
                self._active = self._line if address == 1 else self._spare(address)
            else:
                return FAIL.encode("ascii")  # no such channel (0 is for pump-wide commands)
            model = self._active.model
            try:
                self._active.counter.update(model)
                reply = FAIL if handler is None else handler(self, model, arg)
            finally:
                self._active = self._line
            del line_model
        return reply.encode("ascii")

    # -- commands (each returns the complete reply text) --------------------------------------

    def _start(self, model: FluidLine, arg: str) -> str:
        rate_ml_min = model.pump.rate_ml_h / 60.0
        if rate_ml_min <= 0 or rate_ml_min > self.max_flow_ml_min() * (1 + 1e-9):
            return NO  # cannot run with these settings (xe would say why)
        if not model.pump.running:
            model.pump.run_volume_ml = 0.0
        model.pump.command_start()
        return OK

    def _stop(self, model: FluidLine, arg: str) -> str:
        model.pump.command_stop(model.t_s)
        return OK

    def _clockwise(self, model: FluidLine, arg: str) -> str:
        model.pump.infuse = True
        return OK

    def _counter_clockwise(self, model: FluidLine, arg: str) -> str:
        model.pump.infuse = False
        return OK

    def _is_running(self, model: FluidLine, arg: str) -> str:
        return YES if model.pump.running else NO

    def _direction(self, model: FluidLine, arg: str) -> str:
        return ("J" if model.pump.infuse else "K") + CRLF

    def _get_mode(self, model: FluidLine, arg: str) -> str:
        return FAIL if arg else self._active.mode + CRLF

    def _pause(self, model: FluidLine, arg: str) -> str:
        """``xI``: pause (a stop in RPM or flow-rate mode)."""
        model.pump.command_stop(model.t_s)
        return OK

    def _flow_source(self, model: FluidLine, arg: str) -> str:
        if not arg:
            return self._active.flow_source + CRLF
        if arg not in ("0", "1"):
            return FAIL
        self._active.flow_source = arg
        return OK

    def _channel_addressing(self, model: FluidLine, arg: str) -> str:
        """``~``: 1 = channel addressing, 0 = legacy pump addressing (Ref 1.1/1.2)."""
        if not arg:
            return ("1" if self.channel_addressing else "0") + CRLF
        if arg not in ("0", "1"):
            return FAIL
        self.channel_addressing = arg == "1"
        return OK

    def _save(self, model: FluidLine, arg: str) -> str:
        return FAIL if arg else OK  # settings already live in the emulator for its lifetime

    def _defaults(self, model: FluidLine, arg: str) -> str:
        if arg:
            return FAIL
        self.settings = dict(DEFAULT_SETTINGS)
        return OK

    def _foot_switch(self, model: FluidLine, arg: str) -> str:
        return FAIL if arg else (YES if self.foot_switch_grounded else NO)

    def _speed(self, model: FluidLine, arg: str) -> str:
        """``S``: head speed in rpm x 100, six digits (Discrete Type 3), e.g. ``S009876`` = 98.76 rpm.
        Setting it sets the flow rate the speed gives with the current tubing."""
        if not arg:
            rpm = model.pump.rate_ml_h / 60.0 / ml_per_rev(self.tubing_mm)
            return f"{round(rpm * 100):06d}" + CRLF
        if not re.fullmatch(r"\d{6}", arg):
            return FAIL
        rpm = int(arg) / 100.0
        if rpm > MAX_RPM:
            return FAIL
        model.pump.rate_ml_h = rpm * ml_per_rev(self.tubing_mm) * 60.0
        return OK

    def _protocol_version(self, model: FluidLine, arg: str) -> str:
        return FAIL if arg else PROTOCOL_VERSION + CRLF

    def _flow(self, model: FluidLine, arg: str) -> str:
        if arg:
            rate_ml_min = volume_type2(arg)
            if rate_ml_min is None:
                return FAIL
            if rate_ml_min > self.max_flow_ml_min() * (1 + 1e-9):
                return FAIL
            model.pump.rate_ml_h = rate_ml_min * 60.0
        return volume_type1(model.pump.rate_ml_h / 60.0) + CRLF

    def _tubing(self, model: FluidLine, arg: str) -> str:
        if not arg:
            return f"{self.tubing_mm:.2f} mm" + CRLF
        if not re.fullmatch(r"\d{4}", arg):
            return FAIL
        tubing = int(arg) / 100.0
        low, high = TUBING_RANGE_MM
        if not low <= tubing <= high or model.pump.running:
            return FAIL
        self._set_tubing(model, tubing)
        return OK

    def _max_flow(self, model: FluidLine, arg: str) -> str:
        return f"{_fixed4(self.max_flow_ml_min())} ml/min" + CRLF

    def _pumped(self, model: FluidLine, arg: str) -> str:
        volume_ml = self._counter.infused_ml + self._counter.withdrawn_ml
        if volume_ml < 1.0:
            return f"{_fixed4(volume_ml * 1000.0)} ul" + CRLF
        if volume_ml < 1000.0:
            return f"{_fixed4(volume_ml)} ml" + CRLF
        return f"{_fixed4(volume_ml / 1000.0)} l" + CRLF

    def _reset_pumped(self, model: FluidLine, arg: str) -> str:
        self._counter.clear()
        return OK

    def _info(self, model: FluidLine, arg: str) -> str:
        return f"REGLO ICC {SOFTWARE} {self.channels}{self.rollers:02d}" + CRLF

    def _serial(self, model: FluidLine, arg: str) -> str:
        return self.serial + CRLF

    def _event_messages(self, model: FluidLine, arg: str) -> str:
        if not arg:
            return self.events + CRLF
        if arg not in ("0", "1"):
            return FAIL
        self.events = arg
        return OK

    def _cannot_run_cause(self, model: FluidLine, arg: str) -> str:
        return f"R {volume_type1(self.max_flow_ml_min())}" + CRLF

    def _acknowledge(self, model: FluidLine, arg: str) -> str:
        return OK  # "-" reset overload, "A"/"B" local/remote control: nothing to model


def _stored_setting(key: str, digits: int) -> Any:
    """``%`` backsteps, ``T`` pause time (0.1 s), ``"`` pump cycles: query, or set with ``digits`` digits."""

    def handler(self: RegloICCEmulator, model: FluidLine, arg: str) -> str:
        if not arg:
            return f"{self.settings[key]}" + CRLF
        if not re.fullmatch(rf"\d{{{digits}}}", arg):
            return FAIL
        self.settings[key] = int(arg)
        return OK

    return handler


def _pause_time(per_unit_s: int) -> Any:
    """``TM``/``TH``: pause time in minutes/hours (three digits), kept in 0.1 s like ``T``."""

    def handler(self: RegloICCEmulator, model: FluidLine, arg: str) -> str:
        if not re.fullmatch(r"\d{3}", arg):
            return FAIL
        self.settings["T"] = int(arg) * per_unit_s * 10
        return OK

    return handler


def _mode_setter(letter: str) -> Any:
    """``L`` ``M`` ``O`` ``G`` ``Q`` ``N`` ``P``: set the channel's operating mode (Ref 3.2-3.8)."""

    def handler(self: RegloICCEmulator, model: FluidLine, arg: str) -> str:
        if arg:
            return FAIL
        self._active.mode = letter  # reported by xM; the model is driven by the flow rate in every mode
        return OK

    return handler


_HANDLERS: dict[str, Any] = {
    "H": RegloICCEmulator._start,
    "I": RegloICCEmulator._stop,
    "J": RegloICCEmulator._clockwise,
    "K": RegloICCEmulator._counter_clockwise,
    "E": RegloICCEmulator._is_running,
    "xD": RegloICCEmulator._direction,
    **{letter: _mode_setter(letter) for letter in MODES},
    "xM": RegloICCEmulator._get_mode,
    "xI": RegloICCEmulator._pause,
    "xf": RegloICCEmulator._flow_source,
    "~": RegloICCEmulator._channel_addressing,
    "x!": RegloICCEmulator._protocol_version,
    "%": _stored_setting("%", 4),
    "T": _stored_setting("T", 4),
    '"': _stored_setting('"', 4),
    "TM": _pause_time(60),
    "TH": _pause_time(3600),
    "*": RegloICCEmulator._save,
    "0": RegloICCEmulator._defaults,
    "C": RegloICCEmulator._foot_switch,
    "S": RegloICCEmulator._speed,
    "f": RegloICCEmulator._flow,
    "+": RegloICCEmulator._tubing,
    "?": RegloICCEmulator._max_flow,
    ":": RegloICCEmulator._pumped,
    "W": RegloICCEmulator._reset_pumped,
    "#": RegloICCEmulator._info,
    "xS": RegloICCEmulator._serial,
    "xE": RegloICCEmulator._event_messages,
    "xe": RegloICCEmulator._cannot_run_cause,
    "-": RegloICCEmulator._acknowledge,
    "A": RegloICCEmulator._acknowledge,
    "B": RegloICCEmulator._acknowledge,
}
