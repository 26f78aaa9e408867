"""Protocol replay: a stand-in pyvisa resource that checks the exact bytes a driver sends.

Why: protocol tests must pin the bytes on the wire without any transport, so a driver change
that alters framing fails loudly (after PyMeasure's ``expected_protocol``).
"""

from __future__ import annotations

import pyvisa.constants
import pyvisa.errors


class ScriptedResource:
    """Replays a list of (expected_write, reply) byte pairs; reply None means a timeout."""

    resource_name = "scripted"

    def __init__(self, script: list[tuple[bytes, bytes | None]]) -> None:
        self.script = list(script)
        self.written: list[bytes] = []
        self._pending: bytes | None = None

    def write_raw(self, data: bytes) -> int:
        if not self.script:
            raise AssertionError(f"unexpected write {data!r}: script exhausted")
        expected, reply = self.script.pop(0)
        if data != expected:
            raise AssertionError(f"driver wrote {data!r}, expected {expected!r}")
        self.written.append(data)
        self._pending = reply
        return len(data)

    def read_raw(self) -> bytes:
        reply, self._pending = self._pending, None
        if reply is None:
            raise pyvisa.errors.VisaIOError(pyvisa.constants.StatusCode.error_timeout)
        return reply

    def read_bytes(self, count: int, *_: object, **__: object) -> bytes:
        """The first ``count`` bytes of the pending reply; the rest stays for ``read_raw``."""
        if self._pending is None:
            raise pyvisa.errors.VisaIOError(pyvisa.constants.StatusCode.error_timeout)
        chunk, self._pending = self._pending[:count], self._pending[count:]
        return chunk

    def flush(self, *_: object) -> None:
        pass

    def close(self) -> None:
        pass

    def assert_done(self) -> None:
        assert not self.script, f"script not consumed: {self.script!r}"


class WriteSpy:
    """Wraps a real (open) resource and records every write: to prove what was sent how often,
    e.g. that a state-changing command is never retried."""

    def __init__(self, res: object) -> None:
        self._res = res
        self.writes: list[bytes] = []

    def write_raw(self, data: bytes) -> int:
        self.writes.append(data)
        return self._res.write_raw(data)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._res, name)
