"""Emulated Mettler Toledo MT-SICS balance: the weighing vessel at the catheter outlet.

Replies follow the MT-SICS reference manuals byte for byte (see instruments.mt_sics for the
sources): ``<ID> <status> <weight right-aligned in 10 characters> <unit>`` CR LF, ``S I`` /
``Z I`` / ``T I`` when no stable weight is reached, ``S +`` / ``S -`` out of range, ``ES`` /
``ET`` / ``EL`` general errors. The weight itself (settling, noise, resolution, evaporation)
comes from the shared fluid-line model.

Why ``S`` never blocks in virtual time: a real balance holds the ``S`` reply until the weight is
stable, up to its stability timeout, and then answers ``S I``. With a virtual clock no time
passes while the client waits, so waiting could never succeed; the emulator answers ``S I`` at
once and the caller lets (virtual) time pass before asking again. In real-time mode it waits up
to ``stability_wait_s`` (option, default 1 s, below the station's 2 s reply timeout) like the
real balance.
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar

from instruments.sim.emulator import Emulator
from instruments.sim.model import FluidLine
from instruments.sim.world import SimWorld
from rig.settings import Key, Schema

WEIGHT_FIELD_CHARS = 10  # MT-SICS: weight value right-aligned in a 10-character field
GENERAL_ERRORS = ("ES", "ET", "EL")
_POLL_S = 0.02


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
        self._commands = {
            "S": self._stable_weight,
            "SI": self._immediate_weight,
            "Z": self._zero,
            "T": self._tare,
            "I2": lambda: self._text("I2", f"{self.model_name} {self._capacity_g():.{self.decimals}f} g"),
            "I3": lambda: self._text("I3", self.software),
            "I4": lambda: self._text("I4", self.serial),
            "@": self._reset,
        }

    # -- framing ------------------------------------------------------------------------------

    def handle(self, request: bytes) -> bytes:
        """Every request gets exactly one line: a reply or a general error."""
        text = request.decode("latin-1")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
            return b"ET\r\n"  # control bytes inside a command: what a parity/framing error yields
        name, _, params = text.partition(" ")
        command = self._commands.get(name)
        if command is None:
            return b"ES\r\n"  # unknown (or lower-case) command
        if params:
            return b"EL\r\n"  # these commands take no parameters
        return command()

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
        """``@``: back to the power-on state without zeroing (tare cleared); answers like I4."""
        with self.world.lock:
            self.world.model.balance_tare_g = self.zero_point_g
        return self._text("I4", self.serial)

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
            }
