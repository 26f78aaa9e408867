"""The Ismatec Reglo ICC peristaltic pump, byte for byte (legacy pump addressing), on the model.

Protocol: see instruments/reglo_icc.py (Reglo ICC operating manual 14-036, section 14). Requests
are ``<addr><command>[argument] CR``; set commands answer one unterminated status character
(``*``, ``#``, ``+``, ``-``), queries answer a data line ending CR LF. Only the pump's own
address (option ``address``, 1..8) is answered; ``@<n>`` changes it, as on the real pump.

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

from instruments.reglo_icc import (
    TUBING_RANGE_MM,
    command_code,
    format_volume_type1,
    parse_volume_type2,
)
from instruments.sim.emulator import Emulator
from instruments.sim.model import FluidLine
from instruments.sim.pump_mechanism import DisplacementCounter
from instruments.sim.world import SimWorld
from rig.settings import Key, Schema

EFFECTIVE_PATH_MM = 50.0  # occluded tubing length displaced per head revolution (assumed)
MAX_RPM = 100.0
DEFAULT_TUBING_MM = 0.25
DEFAULT_ROLLERS = 8
DEFAULT_CHANNELS = 4
SOFTWARE = "310"
OK, FAIL, YES, NO = "*", "#", "+", "-"
CRLF = "\r\n"


def ml_per_rev(tubing_mm: float) -> float:
    return math.pi / 4.0 * tubing_mm**2 * EFFECTIVE_PATH_MM / 1000.0


def _fixed4(value: float) -> str:
    """Four significant digits in fixed notation (``0.2450``, ``14.70``), as the pump prints."""
    if value <= 0:
        return "0.000"
    decimals = max(0, 3 - math.floor(math.log10(value)))
    return f"{value:.{decimals}f}"


class RegloICCEmulator(Emulator):
    """Options: ``address`` (1..8, default 1), ``tubing_inner_diameter_mm`` (alias
    ``tubing_id_mm``, default 0.25), ``rollers`` (default 8), ``channels`` (default 4)."""

    kind: ClassVar[str] = "peristaltic_pump"
    request_terminator: ClassVar[bytes] = b"\r"
    SIM_OPTIONS: ClassVar[Schema] = {"channels": Key("int", default=DEFAULT_CHANNELS, low=1, high=4)}  # of the head

    def __init__(self, name: str, world: SimWorld, **kwargs: Any) -> None:
        super().__init__(name, world, **kwargs)
        opts = self.options
        self.address = int(opts.get("address", 1))
        self.rollers = int(opts.get("rollers", DEFAULT_ROLLERS))
        self.channels = self.sim_options["channels"]
        self.mode = "M"
        self.events = "0"
        tubing = opts.get("tubing_inner_diameter_mm", opts.get("tubing_id_mm", DEFAULT_TUBING_MM))
        with self.world.locked() as model:
            model.pump.rollers = self.rollers
            self._set_tubing(model, float(tubing))
            self._counter = DisplacementCounter(model)

    # -- state --------------------------------------------------------------------------------

    def _set_tubing(self, model: FluidLine, tubing_mm: float) -> None:
        self.tubing_mm = tubing_mm
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
            }

    # -- framing ------------------------------------------------------------------------------

    def garbage(self) -> bytes:
        return b"\x15#~garbage~#\r\n"

    def handle(self, request: bytes) -> bytes | None:
        text = request.decode("ascii", "replace").strip()
        if re.fullmatch(r"@[1-8]", text):
            self.address = int(text[1])
            return OK.encode("ascii")
        if not text or not text[0].isdigit() or int(text[0]) != self.address:
            return None  # another pump on the daisy chain
        code, arg = command_code(text[1:])
        with self.world.locked() as model:
            self._counter.update(model)
            handler = _HANDLERS.get(code)
            reply = FAIL if handler is None else handler(self, model, arg)
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

    def _flow_rate_mode(self, model: FluidLine, arg: str) -> str:
        self.mode = "M"
        return OK

    def _rpm_mode(self, model: FluidLine, arg: str) -> str:
        self.mode = "L"  # recorded only: the model is always driven by the flow rate
        return OK

    def _flow(self, model: FluidLine, arg: str) -> str:
        if arg:
            try:
                rate_ml_min = parse_volume_type2(arg)
            except ValueError:
                return FAIL
            if rate_ml_min > self.max_flow_ml_min() * (1 + 1e-9):
                return FAIL
            model.pump.rate_ml_h = rate_ml_min * 60.0
        return format_volume_type1(model.pump.rate_ml_h / 60.0) + CRLF

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
        return f"R {format_volume_type1(self.max_flow_ml_min())}" + CRLF

    def _acknowledge(self, model: FluidLine, arg: str) -> str:
        return OK  # "-" reset overload, "A"/"B" local/remote control: nothing to model


_HANDLERS: dict[str, Any] = {
    "H": RegloICCEmulator._start,
    "I": RegloICCEmulator._stop,
    "J": RegloICCEmulator._clockwise,
    "K": RegloICCEmulator._counter_clockwise,
    "E": RegloICCEmulator._is_running,
    "xD": RegloICCEmulator._direction,
    "M": RegloICCEmulator._flow_rate_mode,
    "L": RegloICCEmulator._rpm_mode,
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
