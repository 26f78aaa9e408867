"""The New Era NE-1000 syringe pump, byte for byte (Basic mode), driving the shared fluid model.

Protocol: see instruments/ne1000.py (NE-1000 user manual #1200-01, section 10). This emulator
answers ``STX <2-digit address> <status> [data] ETX`` to ``[address]<command> CR``, only when
addressed to its own ``address`` (or unaddressed / ``*``), with the manual's error codes.

Mechanism (what the model gets):
* ``rate_ml_h``, ``running``, ``infuse`` from RAT/RUN/STP/DIR; ``target_ml`` from VOL (0 =
  continuous); ``run_volume_ml`` restarts on RUN from stopped (not when resuming a pause).
* ``step_volume_ml`` = syringe cross-section x pusher advance per microstep. The advance is an
  assumption typical of lead-screw syringe drives, not a New Era figure: a 16 threads-per-inch
  lead screw (1.5875 mm per turn) driven by a 200-step motor at 1/16 microstepping, i.e.
  1.5875 / 3200 = 0.496 µm. With a 14.43 mm syringe that is 8.1e-5 mL per microstep.
* The fastest pusher speed follows the brochure's 2100 mL/h with a B-D 60 mL syringe
  (``instruments.ne1000.MAX_PUSHER_SPEED_MM_H``); faster rates answer ``?OOR``. No minimum is
  enforced beyond what the 4-digit format can express.
* A model stall (overpressure or the control channel's ``pump stall``) answers the next command
  with ``A?S``; sending it acknowledges the alarm (clears ``model.pump.stalled``), as the manual
  says, and the command is not executed.
* DIS reports the volume the pump *commanded* since CLD (see pump_mechanism).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from instruments.ne1000 import (
    DIAMETER_RANGE_MM,
    ETX,
    RATE_UNITS_PER_ML_H,
    STX,
    VOLUME_UNITS_PER_ML,
    format_float,
    max_rate_ml_h,
    syringe_area_mm2,
)
from instruments.sim.emulator import Emulator
from instruments.sim.model import FluidLine
from instruments.sim.pump_mechanism import DisplacementCounter
from instruments.sim.world import SimWorld
from rig.settings import Key, Schema

LEAD_SCREW_PITCH_MM = 25.4 / 16  # 16 threads per inch (assumed, see module docstring)
MICROSTEPS_PER_TURN = 200 * 16
ADVANCE_PER_MICROSTEP_MM = LEAD_SCREW_PITCH_MM / MICROSTEPS_PER_TURN
DEFAULT_DIAMETER_MM = 14.43  # B-D 10 mL plastic syringe
FIRMWARE = "3.928"
MICROLITRE_DIAMETER_LIMIT_MM = 14.0  # at or below: volumes in µL, above: mL (manual 5.6)

_ADDRESSED = re.compile(r"^(\*|\d{1,2})?(.*)$")
_COMMAND = re.compile(r"^([A-Z]{3})(.*)$")
_FLOAT = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)$")
_RATE_ARG = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(UM|MM|UH|MH)?$")


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


class NE1000Emulator(Emulator):
    """Options: ``address`` (0..99, default 0), ``syringe_diameter_mm`` (the diameter stored in
    the pump at power-up, default 14.43), ``firmware`` (default "3.928")."""

    kind: ClassVar[str] = "syringe_pump"
    request_terminator: ClassVar[bytes] = b"\r"
    SIM_OPTIONS: ClassVar[Schema] = {"firmware": Key("str", default=FIRMWARE)}  # what VER reports

    def __init__(self, name: str, world: SimWorld, **kwargs: Any) -> None:
        super().__init__(name, world, **kwargs)
        self.address = int(self.options.get("address", 0))
        self.firmware = self.sim_options["firmware"]
        self._paused = False
        self._rate_units = "MH"
        self._volume_units = "ML"
        with self.world.locked() as model:
            self._set_diameter(model, float(self.options.get("syringe_diameter_mm", DEFAULT_DIAMETER_MM)))
            self._counter = DisplacementCounter(model)

    # -- framing ------------------------------------------------------------------------------

    def _reply(self, status: str, data: str = "") -> bytes:
        return f"{STX}{self.address:02d}{status}{data}{ETX}".encode("ascii")

    def garbage(self) -> bytes:
        # ETX-terminated like a real packet, so a reader waiting for ETX gets it at once.
        return b"\x15#~garbage~#" + ETX.encode("ascii")

    def handle(self, request: bytes) -> bytes | None:
        text = "".join(ch for ch in request.decode("ascii", "replace") if ch.isprintable() and ch != " ")
        address, body = _ADDRESSED.match(text.upper()).groups()  # type: ignore[union-attr]
        if address not in (None, "*") and int(address) != self.address:
            return None  # another pump on the network
        with self.world.locked() as model:
            self._counter.update(model)
            if model.pump.stalled:
                model.pump.stalled = False  # reporting the alarm acknowledges it
                return self._reply("A", "?S")
            try:
                data = self._execute(model, body)
            except _Error as err:
                return self._reply(self._status(model), "?" + err.code)
            return self._reply(self._status(model), data)

    # -- state --------------------------------------------------------------------------------

    def _status(self, model: FluidLine) -> str:
        if model.pump.running:
            return "I" if model.pump.infuse else "W"
        return "P" if self._paused else "S"

    def _set_diameter(self, model: FluidLine, diameter_mm: float) -> None:
        self.diameter_mm = diameter_mm
        self._volume_units = "UL" if diameter_mm <= MICROLITRE_DIAMETER_LIMIT_MM else "ML"
        model.pump.step_volume_ml = syringe_area_mm2(diameter_mm) * ADVANCE_PER_MICROSTEP_MM / 1000.0

    def state(self) -> dict[str, Any]:
        with self.world.locked() as model:
            self._counter.update(model)
            return {
                "address": self.address,
                "running": model.pump.running,
                "status": "A" if model.pump.stalled else self._status(model),
                "alarm": "stall" if model.pump.stalled else None,
                "rate_ml_h": model.pump.rate_ml_h,
                "direction": "infuse" if model.pump.infuse else "withdraw",
                "dispensed_ml": self._counter.infused_ml,
                "withdrawn_ml": self._counter.withdrawn_ml,
                "diameter_mm": self.diameter_mm,
                "target_ml": model.pump.target_ml,
                "step_volume_ml": model.pump.step_volume_ml,
            }

    # -- commands -----------------------------------------------------------------------------

    def _execute(self, model: FluidLine, body: str) -> str:
        if body == "":
            return ""  # status query
        match = _COMMAND.match(body)
        if match is None:
            raise _Error("")
        name, arg = match.groups()
        handler = getattr(self, f"_cmd_{name.lower()}", None)
        if handler is None:
            raise _Error("")
        return handler(model, arg)

    def _cmd_ver(self, model: FluidLine, arg: str) -> str:
        return f"NE1000V{self.firmware}"

    def _cmd_dia(self, model: FluidLine, arg: str) -> str:
        if not arg:
            return format_float(self.diameter_mm)
        value = _number(arg)
        if model.pump.running:
            raise _Error("NA")
        low, high = DIAMETER_RANGE_MM
        if not low <= value <= high:
            raise _Error("OOR")
        self._set_diameter(model, value)
        return ""

    def _cmd_rat(self, model: FluidLine, arg: str) -> str:
        if not arg:
            return format_float(model.pump.rate_ml_h * RATE_UNITS_PER_ML_H[self._rate_units]) + self._rate_units
        match = _RATE_ARG.match(arg)
        if match is None:
            raise _Error("")
        value = _number(match.group(1))
        units = match.group(2) or self._rate_units
        if units != self._rate_units and model.pump.running:
            raise _Error("NA")  # manual 5.4.1: rate units cannot be changed while pumping
        rate_ml_h = value / RATE_UNITS_PER_ML_H[units]
        if rate_ml_h <= 0 or rate_ml_h > max_rate_ml_h(self.diameter_mm):
            raise _Error("OOR")
        model.pump.rate_ml_h = rate_ml_h
        self._rate_units = units
        return ""

    def _cmd_vol(self, model: FluidLine, arg: str) -> str:
        per_ml = VOLUME_UNITS_PER_ML[self._volume_units]
        if not arg:
            return format_float(model.pump.target_ml * per_ml) + self._volume_units
        if arg in VOLUME_UNITS_PER_ML:
            if model.pump.running:
                raise _Error("NA")
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
        else:
            raise _Error("")
        return ""

    def _cmd_run(self, model: FluidLine, arg: str) -> str:
        if arg:
            raise _Error("")
        if model.pump.rate_ml_h <= 0:
            raise _Error("OOR")
        if not self._paused:
            model.pump.run_volume_ml = 0.0  # a new run; a paused one resumes its volume target
        self._paused = False
        model.pump.command_start()
        return ""

    def _cmd_stp(self, model: FluidLine, arg: str) -> str:
        self._paused = model.pump.running
        model.pump.command_stop(model.t_s)
        return ""

    def _cmd_dis(self, model: FluidLine, arg: str) -> str:
        per_ml = VOLUME_UNITS_PER_ML[self._volume_units]
        infused = format_float(min(self._counter.infused_ml * per_ml, 9999.0))
        withdrawn = format_float(min(self._counter.withdrawn_ml * per_ml, 9999.0))
        return f"I{infused}W{withdrawn}{self._volume_units}"

    def _cmd_cld(self, model: FluidLine, arg: str) -> str:
        if arg not in ("INF", "WDR"):
            raise _Error("")
        self._counter.clear(infused=arg == "INF", withdrawn=arg == "WDR")
        return ""
