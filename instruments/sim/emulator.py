"""Base of every protocol emulator: turns one framed request into the instrument's exact reply.

Why transport-agnostic: the same emulator runs behind a pseudo-terminal or a TCP socket
(instruments.sim.transports), and protocol tests can drive ``handle`` directly with bytes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from instruments.sim.world import SimWorld


class Emulator(ABC):
    """One emulated instrument. ``request_terminator`` frames incoming requests."""

    request_terminator: ClassVar[bytes] = b"\r\n"
    kind: ClassVar[str] = "instrument"

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
