"""The New Era NE-1000 syringe pump, byte for byte, Basic and Safe mode, driving the shared model.

Written from the manual, not from our driver (no import from instruments.ne1000): New Era Pump
Systems, "NE-1000 Multi-Phaser User Manual", publication #1200-01 (08/01/14), section 10. Where a
client and this emulator agree it is because both follow the manual; docs/protocols.md lists every
command, its bytes, and what is assumed where the manual is silent.

Framing (10.2):
* Basic mode (factory): ``<command data> CR`` -> ``STX <response data> ETX``. Spaces and control
  characters are stripped, text upper-cased (10.2.2).
* Safe mode (10.2.3): ``STX <length> <command data> <CRC16> ETX`` both ways; ``<length>`` counts the
  bytes after STX including itself (so 4 + data); the CRC is the 16-bit CCITT CRC of the data, high
  byte first. The manual's own packet ``02 08 'SAF0' 55 43 03`` pins the variant: polynomial
  0x1021, initial value 0 (XMODEM). A packet with a bad CRC, length or ETX answers ``?COM`` and does
  not feed the watchdog; an incomplete packet is dropped after 0.5 s between bytes.
* ``SAF<n>`` (n seconds, 1..255 assumed) sent in Basic mode is answered in Basic framing, then the
  pump talks Safe mode; ``SAF0`` in a Safe packet answers in Safe framing, then Basic mode. In Safe
  mode Basic text (no STX) is ignored. The SAF value is non-volatile: option
  ``safe_mode_timeout_s`` is what the pump powers up with (0 = Basic).
* The communications watchdog: once a valid Safe packet has been received with SAF > 0, no further
  valid packet within SAF seconds stops the pump and the program and raises alarm ``A?T``; the timer
  restarts only with the next valid packet. The watchdog counts wall-clock seconds in both clock
  modes: it guards against a frozen or dead controller, which is a wall-clock event. It trips only
  from the transport's idle poll (the line really silent), never while packets wait for the model.
* Auto-alarm (Safe mode only): when an alarm occurs the pump sends its alarm status packet unasked.
  That message does not acknowledge the alarm; the reply to the next valid command does (and that
  command is not executed).

Mechanism (what the model gets):
* ``rate_ml_h``, ``running``, ``infuse`` from RAT/RUN/STP/DIR/PUR; ``target_ml`` from VOL (0 =
  continuous); ``run_volume_ml`` restarts on RUN from stopped (not when resuming a pause).
* ``step_volume_ml`` = syringe cross-section x pusher advance per microstep. The advance is an
  assumption typical of lead-screw syringe drives, not a New Era figure: a 16 threads-per-inch
  lead screw (1.5875 mm per turn) driven by a 200-step motor at 1/16 microstepping, i.e.
  1.5875 / 3200 = 0.496 µm. With a 14.43 mm syringe that is 8.1e-5 mL per microstep.
* The fastest pusher speed follows the brochure's 2100 mL/h with a B-D 60 mL syringe; faster rates
  answer ``?OOR``. No minimum is enforced beyond what the 4-digit format can express.
* A model stall answers the next command with ``A?S`` (and is sent unasked in Safe mode).
* DIS reports the volume the pump *commanded* since CLD (see pump_mechanism).
* Program phases (PHN/FUN) are stored and read back; RUN executes the current phase's rate (a
  multi-phase program is not stepped through: the rig never sends one).
"""

from __future__ import annotations

import math
import re
import time
from typing import Any, ClassVar

from instruments.sim.emulator import Emulator
from instruments.sim.model import FluidLine
from instruments.sim.pump_mechanism import DisplacementCounter
from instruments.sim.world import SimWorld
from rig.settings import Key, Schema, int_option

STX, ETX, CR = 0x02, 0x03, b"\r"
LEAD_SCREW_PITCH_MM = 25.4 / 16  # 16 threads per inch (assumed, see module docstring)
MICROSTEPS_PER_TURN = 200 * 16
ADVANCE_PER_MICROSTEP_MM = LEAD_SCREW_PITCH_MM / MICROSTEPS_PER_TURN
DEFAULT_DIAMETER_MM = 14.43  # B-D 10 mL plastic syringe
FIRMWARE = "3.928"
MICROLITRE_DIAMETER_LIMIT_MM = 14.0  # at or below: volumes in µL, above: mL (manual 5.6)
DIAMETER_RANGE_MM = (0.1, 80.0)
MAX_PUSHER_MM_H = 2100.0 * 1000.0 / (math.pi / 4 * 26.59**2)  # brochure: 2100 mL/h, 26.59 mm syringe
RATE_PER_ML_H = {"MH": 1.0, "UH": 1000.0, "MM": 1.0 / 60.0, "UM": 1000.0 / 60.0}  # 10.2.1 <rate units>
VOLUME_PER_ML = {"ML": 1.0, "UL": 1000.0}
PHASES = 41  # 10.2.1 <phase data>: 1 to 41
ADDRESS_RANGE = (0, 99)  # 10.2.4 <address>; factory settings: 0
ADDRESS = Key("int", default=0, low=ADDRESS_RANGE[0], high=ADDRESS_RANGE[1])
SAFE_TIMEOUT_MAX_S = 255  # assumption: one byte of seconds
INTERBYTE_TIMEOUT_S = 0.5  # 10.2.3
# 9.1 / DB-9 pin 2 trigger modes (NE-500/NE-1000 family manual, "TRG")
TRIGGERS = ("FT", "FH", "F2", "LE", "ST", "T2", "SP", "P2", "RL", "RH", "SL", "SH", "ET", "BT")
ON_OFF_SETTINGS = ("LOC", "ALR", "PF", "DIN", "ROM", "BP")  # <on-off> setup commands, 0|1
_FUNCTION = re.compile(r"^(RAT|INC|DEC|STP|PRI|LPS|LPE|EVR|BEP|JMP\d{1,2}|PRL\d{1,2}|LP\d{1,2}"
                       r"|PS\d{1,2}|EVN\d{1,2}|EVS\d{1,2}|OUT[01])$")
_ADDRESSED = re.compile(r"^(\*|\d{1,2})?(.*)$")
_COMMAND = re.compile(r"^(\*RESET|[A-Z]{2,3})(.*)$")
_FLOAT = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)$")
_RATE_ARG = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(UM|MM|UH|MH)?$")


def crc16_ccitt(data: bytes) -> int:
    """16-bit CCITT CRC (poly 0x1021, init 0, no reflection), as the manual's SAF0 packet shows."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def safe_packet(data: bytes) -> bytes:
    """``STX <length> <data> <CRC hi> <CRC lo> ETX``."""
    crc = crc16_ccitt(data)
    return bytes([STX, len(data) + 4]) + data + bytes([crc >> 8, crc & 0xFF, ETX])


def _float_text(value: float) -> str:
    """A ``<float>`` reply: at most 4 digits, at most 3 after the point, best resolution."""
    for decimals in (3, 2, 1, 0):
        text = f"{value:.{decimals}f}"
        if len(text.replace(".", "")) <= 4:
            return text
    return "9999"


class _Error(Exception):
    """One of the manual's command errors; ``code`` is what follows the ``?``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _number(text: str) -> float:
    """A ``<float>`` argument: syntax error -> ``?``, too many digits -> ``?OOR``."""
    if not _FLOAT.match(text):
        raise _Error("")
    digits_after = len(text.split(".", 1)[1]) if "." in text else 0
    if sum(ch.isdigit() for ch in text) > 4 or digits_after > 3:
        raise _Error("OOR")
    return float(text)


def _integer(text: str, low: int, high: int) -> int:
    if not text.isdigit():
        raise _Error("")
    value = int(text)
    if not low <= value <= high:
        raise _Error("OOR")
    return value


class NE1000Emulator(Emulator):
    """Options: ``address`` (0..99, default 0), ``syringe_diameter_mm`` (the diameter stored in
    the pump at power-up, default 14.43), ``firmware`` (default "3.928"), ``safe_mode_timeout_s``
    (the SAF value stored at power-up, default 0 = Basic mode)."""

    kind: ClassVar[str] = "syringe_pump"
    request_terminator: ClassVar[bytes] = CR
    SIM_OPTIONS: ClassVar[Schema] = {
        "firmware": Key("str", default=FIRMWARE),  # what VER reports
        "safe_mode_timeout_s": Key("int", default=0, low=0, high=SAFE_TIMEOUT_MAX_S, unit="s"),  # SAF at power-up
    }

    def __init__(self, name: str, world: SimWorld, **kwargs: Any) -> None:
        super().__init__(name, world, **kwargs)
        self.address = int_option(self.options, "address", ADDRESS, name)
        self.firmware = self.sim_options["firmware"]
        self.safe_timeout_s = int(self.sim_options["safe_mode_timeout_s"])
        self.safe_mode = self.safe_timeout_s > 0
        self._watchdog_deadline: float | None = None  # armed by the first valid Safe packet
        self._last_valid: float | None = None  # when the last valid Safe packet arrived
        self.watchdog_tripped_after_s: float | None = None  # silence before the last watchdog stop
        self._alarm: str | None = None  # "T" (comms timeout); a stall lives in the model
        self._auto_sent: str | None = None  # the alarm already sent unasked (Safe mode)
        self._switch_to: bool | None = None  # Basic/Safe switch requested by SAF
        self._paused = False
        self._purging = False
        self._rate_units = "MH"
        self._volume_units = "ML"
        self._phase = 1
        self._functions = {1: "RAT"}
        self.settings: dict[str, Any] = {key: 0 for key in ON_OFF_SETTINGS}
        self.settings.update({"TRG": "FT", "BUZ": "0", "OUT": "0"})
        with self.world.locked() as model:
            self._set_diameter(model, float(self.options.get("syringe_diameter_mm", DEFAULT_DIAMETER_MM)))
            self._counter = DisplacementCounter(model)

    # -- framing ------------------------------------------------------------------------------

    def next_request(self, buffer: bytes) -> tuple[bytes | None, bytes]:
        """Basic mode: up to CR. Safe mode: one ``STX <length> ...`` packet; bytes before an STX
        are not a packet and are dropped."""
        if not self.safe_mode:
            return super().next_request(buffer)
        start = buffer.find(bytes([STX]))
        if start < 0:
            return None, b""
        buffer = buffer[start:]
        if len(buffer) < 2:
            return None, buffer
        total = 1 + buffer[1]
        if buffer[1] < 4:  # cannot even hold the CRC and ETX: not a packet start
            return buffer[:2], buffer[2:]
        if len(buffer) < total:
            return None, buffer
        return buffer[:total], buffer[total:]

    interbyte_timeout_s: ClassVar[float | None] = INTERBYTE_TIMEOUT_S

    def packet_framed(self) -> bool:
        return self.safe_mode

    def _frame(self, status: str, data: str, safe: bool) -> bytes:
        body = f"{self.address:02d}{status}{data}".encode("ascii")
        return safe_packet(body) if safe else bytes([STX]) + body + bytes([ETX])

    def garbage(self) -> bytes:
        # ETX-terminated like a real packet, so a reader waiting for ETX gets it at once.
        return b"\x15#~garbage~#\x03"

    def handle(self, request: bytes) -> bytes | None:
        safe = self.safe_mode
        if safe:
            text = self._unpack(request)
            if text is None:
                return self._frame(self._status_now(), "?COM", True)
        else:
            text = request.decode("ascii", "replace")
        text = "".join(ch for ch in text if ch.isprintable() and ch != " ").upper()
        address, body = _ADDRESSED.match(text).groups()  # type: ignore[union-attr]
        if address not in (None, "*") and int(address) != self.address:
            return None  # another pump on the network
        arrived = time.monotonic()  # before waiting for the model: the packet is here now
        with self.world.locked() as model:
            self._counter.update(model)
            if safe:  # a valid packet feeds the watchdog; only the idle line can trip it (poll)
                self._last_valid = arrived
                if self.safe_timeout_s > 0:
                    self._watchdog_deadline = arrived + self.safe_timeout_s
            alarm = self._pending_alarm(model)
            if alarm is not None:  # reporting the alarm acknowledges it; the command is not executed
                self._acknowledge(model)
                return self._frame("A", "?" + alarm, safe)
            try:
                data = self._execute(model, body)
                reply = self._frame(self._status(model), data, safe)
            except _Error as err:
                reply = self._frame(self._status(model), "?" + err.code, safe)
            if self._switch_to is not None:  # SAF: the reply went out in the mode it arrived in
                self.safe_mode, self._switch_to = self._switch_to, None
            return reply

    def _unpack(self, packet: bytes) -> str | None:
        """The command data of a valid Safe packet, None for an invalid one."""
        if len(packet) < 5 or packet[0] != STX or packet[-1] != ETX or packet[1] != len(packet) - 1:
            return None
        data, crc = packet[2:-3], packet[-3:-1]
        if crc16_ccitt(data) != (crc[0] << 8 | crc[1]):
            return None
        return data.decode("ascii", "replace")

    # -- alarms and the communications watchdog -------------------------------------------------

    def _pending_alarm(self, model: FluidLine) -> str | None:
        if self._alarm is not None:
            return self._alarm
        return "S" if model.pump.stalled else None

    def _acknowledge(self, model: FluidLine) -> None:
        self._alarm = None
        self._auto_sent = None
        model.pump.stalled = False

    def _check_watchdog(self, model: FluidLine, silent_until: float) -> None:
        """Trip if the line was silent (no valid packet) from the deadline to ``silent_until``."""
        deadline = self._watchdog_deadline
        if deadline is None or silent_until < deadline:
            return
        self._watchdog_deadline = None  # restarts only with the next valid packet
        if self._last_valid is not None:
            self.watchdog_tripped_after_s = silent_until - self._last_valid
        if model.pump.running:  # stops the pump and the Pumping Program
            model.pump.running = False
            model.pump.stopped_by = "comms_watchdog"
        self._paused = self._purging = False
        self._alarm = "T"

    def poll(self) -> bytes | None:
        """Called by the transport a few times a second: enforce the watchdog, send auto-alarms.

        Why the time is taken before the model lock: the transport has just seen no bytes, so the
        line was silent until now; a long virtual-time advance holding the model must not count
        as silence (packets wait in the buffer meanwhile and feed the watchdog when handled)."""
        silent_until = time.monotonic()
        with self.world.locked() as model:
            self._counter.update(model)
            self._check_watchdog(model, silent_until)
            alarm = self._pending_alarm(model)
            if not self.safe_mode or alarm is None or self._auto_sent == alarm:
                return None
            self._auto_sent = alarm
            return self._frame("A", "?" + alarm, True)

    # -- state --------------------------------------------------------------------------------

    def _status(self, model: FluidLine) -> str:
        if model.pump.running:
            if self._purging:
                return "X"
            return "I" if model.pump.infuse else "W"
        return "P" if self._paused else "S"

    def _status_now(self) -> str:
        with self.world.locked() as model:
            return self._status(model)

    def _set_diameter(self, model: FluidLine, diameter_mm: float) -> None:
        self.diameter_mm = diameter_mm
        self._volume_units = "UL" if diameter_mm <= MICROLITRE_DIAMETER_LIMIT_MM else "ML"
        area_mm2 = math.pi / 4.0 * diameter_mm**2
        model.pump.step_volume_ml = area_mm2 * ADVANCE_PER_MICROSTEP_MM / 1000.0

    def _max_rate_ml_h(self) -> float:
        return math.pi / 4.0 * self.diameter_mm**2 * MAX_PUSHER_MM_H / 1000.0

    def state(self) -> dict[str, Any]:
        with self.world.locked() as model:
            self._counter.update(model)
            alarm = self._pending_alarm(model)
            return {
                "address": self.address,
                "running": model.pump.running,
                "status": "A" if alarm else self._status(model),
                "alarm": {"S": "stall", "T": "timeout"}.get(alarm or ""),
                "rate_ml_h": model.pump.rate_ml_h,
                "direction": "infuse" if model.pump.infuse else "withdraw",
                "dispensed_ml": self._counter.infused_ml,
                "withdrawn_ml": self._counter.withdrawn_ml,
                "diameter_mm": self.diameter_mm,
                "target_ml": model.pump.target_ml,
                "step_volume_ml": model.pump.step_volume_ml,
                "comms_mode": "safe" if self.safe_mode else "basic",
                "safe_timeout_s": self.safe_timeout_s,
                "watchdog_armed": self._watchdog_deadline is not None,
                "watchdog_tripped_after_s": self.watchdog_tripped_after_s,
            }

    # -- commands -----------------------------------------------------------------------------

    def _execute(self, model: FluidLine, body: str) -> str:
        if body == "":
            return ""  # status query
        match = _COMMAND.match(body)
        if match is None:
            raise _Error("")
        name, arg = match.groups()
        if name in ON_OFF_SETTINGS:
            return self._on_off(name, arg)
        handler = getattr(self, f"_cmd_{name.lower().lstrip('*')}", None)
        if handler is None:
            raise _Error("")
        return handler(model, arg)

    def _on_off(self, name: str, arg: str) -> str:
        if not arg:
            return str(self.settings[name])
        if arg not in ("0", "1"):
            raise _Error("OOR" if arg.isdigit() else "")
        self.settings[name] = int(arg)
        return ""

    def _stopped_only(self, model: FluidLine) -> None:
        if model.pump.running:
            raise _Error("NA")

    def _cmd_ver(self, model: FluidLine, arg: str) -> str:
        return f"NE1000V{self.firmware}"

    def _cmd_dia(self, model: FluidLine, arg: str) -> str:
        if not arg:
            return _float_text(self.diameter_mm)
        value = _number(arg)
        self._stopped_only(model)
        low, high = DIAMETER_RANGE_MM
        if not low <= value <= high:
            raise _Error("OOR")
        self._set_diameter(model, value)
        return ""

    def _cmd_rat(self, model: FluidLine, arg: str) -> str:
        if not arg:
            return _float_text(model.pump.rate_ml_h * RATE_PER_ML_H[self._rate_units]) + self._rate_units
        match = _RATE_ARG.match(arg)
        if match is None:
            raise _Error("")
        value = _number(match.group(1))
        units = match.group(2) or self._rate_units
        if units != self._rate_units and model.pump.running:
            raise _Error("NA")  # manual 5.4.1: rate units cannot be changed while pumping
        rate_ml_h = value / RATE_PER_ML_H[units]
        if rate_ml_h <= 0 or rate_ml_h > self._max_rate_ml_h():
            raise _Error("OOR")
        model.pump.rate_ml_h = rate_ml_h
        self._rate_units = units
        return ""

    def _cmd_vol(self, model: FluidLine, arg: str) -> str:
        per_ml = VOLUME_PER_ML[self._volume_units]
        if not arg:
            return _float_text(model.pump.target_ml * per_ml) + self._volume_units
        if arg in VOLUME_PER_ML:
            self._stopped_only(model)
            self._volume_units = arg
            return ""
        model.pump.target_ml = _number(arg) / per_ml
        return ""

    def _cmd_dir(self, model: FluidLine, arg: str) -> str:
        if not arg:
            return "INF" if model.pump.infuse else "WDR"
        if arg == "INF":
            model.pump.infuse = True
        elif arg == "WDR":
            model.pump.infuse = False
        elif arg == "REV":
            model.pump.infuse = not model.pump.infuse
        elif arg == "STK":  # sticky direction: only while stopped; first phase follows the DIR pin (low)
            self._stopped_only(model)
            model.pump.infuse = True
        else:
            raise _Error("")
        return ""

    def _cmd_phn(self, model: FluidLine, arg: str) -> str:
        if not arg:
            return f"{self._phase:02d}"
        self._stopped_only(model)
        self._phase = _integer(arg, 1, PHASES)
        return ""

    def _cmd_fun(self, model: FluidLine, arg: str) -> str:
        if not arg:
            return self._functions.get(self._phase, "RAT")
        if not _FUNCTION.match(arg):
            raise _Error("")
        self._stopped_only(model)
        self._functions[self._phase] = arg
        return ""

    def _cmd_run(self, model: FluidLine, arg: str) -> str:
        if arg:
            self._stopped_only(model)
            self._phase = _integer(arg, 1, PHASES)
            self._paused = False
        if model.pump.rate_ml_h <= 0:
            raise _Error("OOR")
        if not self._paused:
            model.pump.run_volume_ml = 0.0  # a new run; a paused one resumes its volume target
        self._paused = self._purging = False
        model.pump.command_start()
        return ""

    def _cmd_pur(self, model: FluidLine, arg: str) -> str:
        if arg:
            raise _Error("")
        self._purging = True
        self._paused = False
        model.pump.rate_ml_h = self._max_rate_ml_h()
        model.pump.target_ml = 0.0
        model.pump.command_start()
        return ""

    def _cmd_stp(self, model: FluidLine, arg: str) -> str:
        if arg:
            raise _Error("")
        self._paused = model.pump.running and not self._purging  # a purge stops outright
        self._purging = False
        model.pump.command_stop(model.t_s)
        return ""

    def _cmd_dis(self, model: FluidLine, arg: str) -> str:
        if arg:
            raise _Error("")
        per_ml = VOLUME_PER_ML[self._volume_units]
        infused = _float_text(min(self._counter.infused_ml * per_ml, 9999.0))
        withdrawn = _float_text(min(self._counter.withdrawn_ml * per_ml, 9999.0))
        return f"I{infused}W{withdrawn}{self._volume_units}"

    def _cmd_cld(self, model: FluidLine, arg: str) -> str:
        if arg not in ("INF", "WDR"):
            raise _Error("")
        self._counter.clear(infused=arg == "INF", withdrawn=arg == "WDR")
        return ""

    def _cmd_saf(self, model: FluidLine, arg: str) -> str:
        if not arg:
            return str(self.safe_timeout_s)
        self.safe_timeout_s = _integer(arg, 0, SAFE_TIMEOUT_MAX_S)
        # The switch takes effect after this reply, which goes out in the mode it arrived in.
        self._switch_to = self.safe_timeout_s > 0
        if self.safe_timeout_s == 0:
            self._watchdog_deadline = None
        return ""

    def _cmd_trg(self, model: FluidLine, arg: str) -> str:
        if not arg:
            return str(self.settings["TRG"])
        if arg not in TRIGGERS:
            raise _Error("")
        self.settings["TRG"] = arg
        return ""

    def _cmd_buz(self, model: FluidLine, arg: str) -> str:
        if not arg:
            return str(self.settings["BUZ"])
        if not re.fullmatch(r"[01]\d{0,2}", arg):
            raise _Error("")
        self.settings["BUZ"] = arg
        return ""

    def _cmd_in(self, model: FluidLine, arg: str) -> str:
        if arg:
            raise _Error("")
        return "1"  # program input (pin 6) pulled up, nothing connected on the bench

    def _cmd_out(self, model: FluidLine, arg: str) -> str:
        if not arg:
            return str(self.settings["OUT"])
        if arg not in ("0", "1"):
            raise _Error("")
        self.settings["OUT"] = arg
        return ""

    def _cmd_adr(self, model: FluidLine, arg: str) -> str:
        if not arg:
            return f"{self.address:02d}"
        self.address = _integer(arg, *ADDRESS_RANGE)
        return ""

    def _cmd_reset(self, model: FluidLine, arg: str) -> str:
        """``*RESET``: factory defaults (stopped, program cleared, settings off)."""
        if arg:
            raise _Error("")
        model.pump.command_stop(model.t_s)
        self._paused = self._purging = False
        self._phase, self._functions = 1, {1: "RAT"}
        self.settings.update({key: 0 for key in ON_OFF_SETTINGS})
        self.settings.update({"TRG": "FT", "BUZ": "0", "OUT": "0"})
        return ""
