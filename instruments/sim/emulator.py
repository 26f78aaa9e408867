"""Base of every protocol emulator: turns one framed request into the instrument's exact reply.

Why transport-agnostic: the same emulator runs behind a pseudo-terminal or a TCP socket
(instruments.sim.transports), and protocol tests can drive ``handle`` directly with bytes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from instruments.sim.world import SimWorld
from rig.settings import Schema, check_options


class Emulator(ABC):
    """One emulated instrument. ``request_terminator`` frames incoming requests."""

    request_terminator: ClassVar[bytes] = b"\r\n"
    kind: ClassVar[str] = "instrument"
    # Options only the emulator reads (what the emulated unit reports, how its head is built), in
    # the same station-file table as its driver's options; the station loader checks them too.
    SIM_OPTIONS: ClassVar[Schema] = {}
    # Drop a partly received request after this long without a byte (None: never), as instruments
    # with binary packets do (NE-1000 Safe mode: 0.5 s).
    interbyte_timeout_s: ClassVar[float | None] = None

    def __init__(
        self,
        name: str,
        world: SimWorld,
        *,
        serial: str = "SIM0001",
        options: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.world = world
        self.serial = serial
        self.options = dict(options or {})  # the station file's options table for this instrument
        # SIM_OPTIONS with their defaults (ValueError naming the option if one is out of range)
        self.sim_options = check_options(self.options, self.SIM_OPTIONS, f"instruments.{name}.options")

    def next_request(self, buffer: bytes) -> tuple[bytes | None, bytes]:
        """Split one request off the received bytes: (request without framing, rest), or
        (None, buffer) while it is incomplete. Default: text lines ending in the terminator."""
        term = self.request_terminator
        if term not in buffer:
            return None, buffer
        request, rest = buffer.split(term, 1)
        return request, rest

    def packet_framed(self) -> bool:
        """True while requests are binary packets framed by ``next_request`` (not terminated
        lines, which the transport frames itself within a bounded input buffer)."""
        return False

    def poll(self) -> bytes | None:
        """Called by the transport several times a second: bytes the instrument sends unasked
        (e.g. an alarm), or None. Most instruments only ever answer."""
        return None

    @abstractmethod
    def handle(self, request: bytes) -> bytes | None:
        """Answer one request (terminator stripped). Return the full reply bytes including any
        framing and terminator, or None when the real instrument would stay silent."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """The instrument's own state as the control channel reports it (used by tests to check
        safe state from the emulator's side, not the driver's memory)."""

    def garbage(self) -> bytes:
        """What this instrument sends when the 'garbage' fault is injected."""
        return b"\x15#~garbage~#" + self.request_terminator
