"""Emulated Mettler Toledo MT-SICS balance: the weighing vessel at the catheter outlet.

Written from the MT-SICS reference manuals (Excellence/New Classic editions, e.g. 11780711),
not from our driver: ``<ID> <status> <weight right-aligned in 10 characters> <unit>`` CR LF,
``S I`` / ``Z I`` / ``T I`` when no stable weight is reached, ``S +`` / ``S -`` out of range,
``ES`` / ``ET`` / ``EL`` general errors, ``L`` for a command understood with a wrong parameter.
The weight itself (settling, noise, resolution, evaporation) comes from the shared fluid-line
model. Every level 0 and level 1 command is served (docs/protocols.md lists their bytes):

* level 0: ``@`` reset, ``I0`` command list, ``I1`` level and versions, ``I2`` balance data,
  ``I3`` software, ``I4`` serial, ``S`` stable weight, ``SI`` immediate weight, ``SIR`` immediate
  weight repeated, ``Z`` zero, ``ZI`` zero immediately;
* level 1: ``D`` display text, ``DW`` weight display, ``K`` keys mode, ``SR`` send on weight
  change, ``T`` tare, ``TA`` tare value (query / preset), ``TAC`` clear tare, ``TI`` tare
  immediately.

Repeat commands (``SIR``, ``SR``) keep sending from the transport's idle poll until stopped by
``@``, ``S``, ``SI``, ``SIR`` or ``SR`` (the commands the manual names as ending them).

Why ``S`` never blocks in virtual time: a real balance holds the ``S`` reply until the weight is
stable, up to its stability timeout, and then answers ``S I``. With a virtual clock no time
passes while the client waits, so waiting could never succeed; the emulator answers ``S I`` at
once and the caller lets (virtual) time pass before asking again. In real-time mode it waits up
to ``stability_wait_s`` (option, default 1 s, below the station's 2 s reply timeout) like the
real balance.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any, ClassVar

from instruments.sim.emulator import Emulator
from instruments.sim.model import FluidLine
from instruments.sim.world import SimWorld
from rig.settings import Key, Schema

WEIGHT_FIELD_CHARS = 10  # MT-SICS: weight value right-aligned in a 10-character field
GENERAL_ERRORS = ("ES", "ET", "EL")
_POLL_S = 0.02
LEVELS = {  # command -> MT-SICS level, in the order I0 lists them
    "@": 0, "I0": 0, "I1": 0, "I2": 0, "I3": 0, "I4": 0, "S": 0, "SI": 0, "SIR": 0, "Z": 0, "ZI": 0,
    "D": 1, "DW": 1, "K": 1, "SR": 1, "T": 1, "TA": 1, "TAC": 1, "TI": 1,
}
LEVEL_VERSIONS = ("01", "2.20", "2.20", "", "")  # I1: levels implemented, version of level 0..3 (assumed)
DISPLAY_CHARS = 20  # D: longer texts are refused with "D L" (assumption: a 20-character display line)
SR_DEFAULT_DIGITS = 30  # SR without a preset: a change of 30 display digits (assumption)
STOPS_REPEAT = frozenset({"@", "S", "SI", "SIR", "SR"})
_TA_ARG = re.compile(r"^(-?\d+(?:\.\d+)?) (g|mg|kg)$")
_SR_ARG = _TA_ARG
UNIT_G = {"g": 1.0, "mg": 1e-3, "kg": 1e3}


def format_weight_line(reply_id: str, status: str, value_g: float, decimals: int) -> bytes:
    """One MT-SICS weight reply line, e.g. ``S S   100.0000 g`` CR LF."""
    value_g = round(value_g, decimals) + 0.0  # no "-0.0000"
    number = f"{value_g:.{decimals}f}".rjust(WEIGHT_FIELD_CHARS)
    return f"{reply_id} {status} {number} g\r\n".encode("ascii")


class MTSicsEmulator(Emulator):
    """A balance like a Mettler Toledo XS205DU on a serial line; tare and zero live in the model."""

    kind: ClassVar[str] = "balance"
    request_terminator: ClassVar[bytes] = b"\r\n"
    SIM_OPTIONS: ClassVar[Schema] = {  # what the emulated unit reports and how it settles
        "model": Key("str", default="XS205DU"),
        "software": Key("str", default="3.10 10.28.0.493.142"),
        "zero_range_pct": Key("number", default=2.0, low=0, high=100, unit="%"),
        "stability_wait_s": Key("number", default=1.0, low=0, high=60, unit="s"),
    }

    def __init__(
        self,
        name: str,
        world: SimWorld,
        *,
        serial: str = "B123456789",
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(name, world, serial=serial, options=options)
        self.model_name = self.sim_options["model"]
        self.software = self.sim_options["software"]
        self.zero_range_pct = float(self.sim_options["zero_range_pct"])
        self.stability_wait_s = float(self.sim_options["stability_wait_s"])
        # The zero point (gross g) set by Z; the model's balance_tare_g = zero point + tare, so
        # a T after a Z reports the tare relative to the zero point, as the real balance does.
        self.zero_point_g = 0.0
        resolution_g = world.model.params.balance_resolution_g
        self.decimals = max(0, -math.floor(math.log10(resolution_g) + 1e-9))
        self.display_text: str | None = None  # D text shown instead of the weight (None: weight)
        self.keys_mode = 1  # K: 1 = keys act normally (power-on default)
        self._repeat: str | None = None  # "SIR" or "SR" while a repeat command runs
        self._sr_threshold_g = 0.0
        self._sr_last_g: float | None = None
        self._sr_moving = False
        self._commands = {
            "S": self._stable_weight,
            "SI": self._immediate_weight,
            "Z": self._zero,
            "ZI": self._zero_immediately,
            "T": self._tare,
            "TI": self._tare_immediately,
            "TAC": self._clear_tare,
            "DW": self._weight_display,
            "I0": self._command_list,
            "I1": lambda: "I1 A " + " ".join(f'"{v}"' for v in LEVEL_VERSIONS) + "\r\n",
            "I2": lambda: self._text("I2", f"{self.model_name} {self._capacity_g():.{self.decimals}f} g"),
            "I3": lambda: self._text("I3", self.software),
            "I4": lambda: self._text("I4", self.serial),
            "@": self._reset,
            "SIR": self._start_sir,
        }
        self._with_params = {"D": self._display, "K": self._keys, "TA": self._tare_value, "SR": self._start_sr}

    # -- framing ------------------------------------------------------------------------------

    def handle(self, request: bytes) -> bytes:
        """Every request gets exactly one line: a reply or a general error."""
        text = request.decode("latin-1")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
            return b"ET\r\n"  # control bytes inside a command: what a parity/framing error yields
        name, _, params = text.partition(" ")
        if name in STOPS_REPEAT:
            self._repeat = None
        if name in self._with_params:
            reply = self._with_params[name](params)
        else:
            command = self._commands.get(name)
            if command is None:
                return b"ES\r\n"  # unknown (or lower-case) command
            if params:
                return b"EL\r\n"  # these commands take no parameters
            reply = command()
        return reply.encode("latin-1") if isinstance(reply, str) else reply

    @staticmethod
    def _text(reply_id: str, text: str) -> bytes:
        return f'{reply_id} A "{text}"\r\n'.encode("latin-1")

    def _capacity_g(self) -> float:
        return self.world.model.params.balance_capacity_g

    # -- weighing -----------------------------------------------------------------------------

    def _out_of_range(self, model: FluidLine) -> str | None:
        gross_g = model.balance_gross_g()
        if gross_g > model.params.balance_capacity_g:
            return "+"
        if gross_g < 0.0:
            return "-"
        return None

    def _settled(self) -> tuple[str | None, float, bool, float]:
        """(out-of-range status, net reading, stable, gross) -- waiting for stability only in
        real-time mode and only up to ``stability_wait_s``."""
        deadline = time.monotonic() + self.stability_wait_s
        while True:
            with self.world.locked() as model:
                net_g, stable = model.balance_reading_g()
                limit, gross_g = self._out_of_range(model), model.balance_gross_g()
            if limit or stable or self.world.virtual or time.monotonic() >= deadline:
                return limit, net_g, stable, gross_g
            time.sleep(_POLL_S)

    def _stable_weight(self) -> bytes:
        limit, net_g, stable, _ = self._settled()
        if limit:
            return f"S {limit}\r\n".encode()
        if not stable:
            return b"S I\r\n"
        return format_weight_line("S", "S", net_g, self.decimals)

    def _immediate_weight(self) -> bytes:
        with self.world.locked() as model:
            limit = self._out_of_range(model)
            net_g, stable = model.balance_reading_g()
        if limit:
            return f"S {limit}\r\n".encode()
        return format_weight_line("S", "S" if stable else "D", net_g, self.decimals)

    def _zero(self) -> bytes:
        """Zero only within +-zero_range_pct of capacity around the power-on zero (empty pan)."""
        limit, _, stable, gross_g = self._settled()
        zero_range_g = self._capacity_g() * self.zero_range_pct / 100.0
        if limit or abs(gross_g) > zero_range_g:
            return b"Z +\r\n" if (limit == "+" or gross_g > 0) else b"Z -\r\n"
        if not stable:
            return b"Z I\r\n"
        self.zero_point_g = gross_g
        with self.world.lock:
            self.world.model.balance_tare_g = gross_g  # new zero, tare cleared: net reads 0
        return b"Z A\r\n"

    def _tare(self) -> bytes:
        """The stable gross load becomes the tare (replacing any previous tare)."""
        limit, _, stable, gross_g = self._settled()
        if limit:
            return f"T {limit}\r\n".encode()
        if not stable:
            return b"T I\r\n"
        tare_g = round(gross_g - self.zero_point_g, self.decimals)
        with self.world.lock:
            self.world.model.balance_tare_g = self.zero_point_g + tare_g
        return format_weight_line("T", "S", tare_g, self.decimals)

    def _reset(self) -> bytes:
        """``@``: back to the power-on state without zeroing (tare cleared, display and keys
        back, repeat commands stopped); answers like I4."""
        with self.world.lock:
            self.world.model.balance_tare_g = self.zero_point_g
        self.display_text, self.keys_mode, self._repeat = None, 1, None
        return self._text("I4", self.serial)

    def _zero_immediately(self) -> bytes:
        """``ZI``: zero now, stable or not (``ZI S`` / ``ZI D``), within the zero-setting range."""
        with self.world.locked() as model:
            limit, gross_g = self._out_of_range(model), model.balance_gross_g()
            _, stable = model.balance_reading_g()
            zero_range_g = self._capacity_g() * self.zero_range_pct / 100.0
            if limit or abs(gross_g) > zero_range_g:
                return b"ZI +\r\n" if (limit == "+" or gross_g > 0) else b"ZI -\r\n"
            self.zero_point_g = gross_g
            model.balance_tare_g = gross_g
        return b"ZI S\r\n" if stable else b"ZI D\r\n"

    def _tare_immediately(self) -> bytes:
        """``TI``: the gross load now becomes the tare, stable or not (``TI S`` / ``TI D``)."""
        with self.world.locked() as model:
            limit, gross_g = self._out_of_range(model), model.balance_gross_g()
            _, stable = model.balance_reading_g()
            if limit:
                return f"TI {limit}\r\n".encode()
            tare_g = round(gross_g - self.zero_point_g, self.decimals)
            model.balance_tare_g = self.zero_point_g + tare_g
        return format_weight_line("TI", "S" if stable else "D", tare_g, self.decimals)

    def _tare_value(self, params: str) -> bytes:
        """``TA``: the tare value; ``TA <value> <unit>`` presets it (0 .. capacity, else ``TA L``)."""
        if params:
            match = _TA_ARG.match(params)
            if match is None:
                return b"TA L\r\n"
            tare_g = float(match.group(1)) * UNIT_G[match.group(2)]
            if not 0.0 <= tare_g <= self._capacity_g():
                return b"TA L\r\n"
            with self.world.lock:
                self.world.model.balance_tare_g = self.zero_point_g + round(tare_g, self.decimals)
        with self.world.lock:
            tare_g = self.world.model.balance_tare_g - self.zero_point_g
        return format_weight_line("TA", "A", tare_g, self.decimals)

    def _clear_tare(self) -> bytes:
        with self.world.lock:
            self.world.model.balance_tare_g = self.zero_point_g
        return b"TAC A\r\n"

    def _display(self, params: str) -> bytes:
        """``D "text"`` shows a text instead of the weight (``D ""`` clears it)."""
        if len(params) < 2 or not (params.startswith('"') and params.endswith('"')):
            return b"EL\r\n"
        text = params[1:-1]
        if len(text) > DISPLAY_CHARS or '"' in text:
            return b"D L\r\n"
        self.display_text = text
        return b"D A\r\n"

    def _weight_display(self) -> bytes:
        self.display_text = None
        return b"DW A\r\n"

    def _keys(self, params: str) -> bytes:
        """``K <1..4>``: keys normal (1), inhibited (2), inhibited and reported (3, 4)."""
        if params not in ("1", "2", "3", "4"):
            return b"K L\r\n" if params else b"EL\r\n"
        self.keys_mode = int(params)
        return b"K A\r\n"

    def _command_list(self) -> bytes:
        """``I0``: one line per command, ``I0 B`` for all but the last (``I0 A``)."""
        names = list(LEVELS)
        lines = [f'I0 {"A" if i == len(names) - 1 else "B"} {LEVELS[n]} "{n}"\r\n' for i, n in enumerate(names)]
        return "".join(lines).encode("ascii")

    def _start_sir(self) -> bytes:
        self._repeat = "SIR"
        return self._immediate_weight()

    def _start_sr(self, params: str) -> bytes:
        """``SR [<preset> <unit>]``: the stable weight now, then a dynamic value once the weight
        moves by the preset and the next stable value, until stopped."""
        if params:
            match = _SR_ARG.match(params)
            if match is None or float(match.group(1)) <= 0:
                return b"SR L\r\n"
            threshold_g = float(match.group(1)) * UNIT_G[match.group(2)]
        else:
            threshold_g = SR_DEFAULT_DIGITS * self.world.model.params.balance_resolution_g
        self._repeat, self._sr_threshold_g, self._sr_moving = "SR", threshold_g, False
        reply = self._stable_weight()
        with self.world.locked() as model:
            self._sr_last_g = model.balance_reading_g()[0]
        return reply

    def poll(self) -> bytes | None:
        """The next line of a running ``SIR`` / ``SR``."""
        if self._repeat == "SIR":
            return self._immediate_weight()
        if self._repeat != "SR" or self._sr_last_g is None:
            return None
        with self.world.locked() as model:
            limit = self._out_of_range(model)
            net_g, stable = model.balance_reading_g()
        if limit:
            return f"S {limit}\r\n".encode()
        if not self._sr_moving and abs(net_g - self._sr_last_g) >= self._sr_threshold_g:
            self._sr_moving = True
            return format_weight_line("S", "D", net_g, self.decimals)
        if self._sr_moving and stable:
            self._sr_moving, self._sr_last_g = False, net_g
            return format_weight_line("S", "S", net_g, self.decimals)
        return None

    # -- control channel ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        with self.world.locked() as model:
            net_g, stable = model.balance_reading_g()
            return {
                "model": self.model_name,
                "serial": self.serial,
                "capacity_g": model.params.balance_capacity_g,
                "net_g": net_g,
                "gross_g": model.balance_gross_g(),
                "zero_point_g": self.zero_point_g,
                "tare_g": model.balance_tare_g - self.zero_point_g,
                "stable": stable,
                "out_of_range": self._out_of_range(model),
                "display_text": self.display_text,
                "keys_mode": self.keys_mode,
                "repeating": self._repeat,
            }
