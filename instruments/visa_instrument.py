"""Base class of every message-based (pyvisa) driver: framing, retries, error mapping.

Why one base: timeouts, disconnects and retries must behave the same for every instrument, and
drivers should read as their protocol (commands and replies), not as I/O code.
Only idempotent queries are retried; a command that changes state is sent once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import pyvisa
import pyvisa.constants
import pyvisa.errors

from instruments.errors import (
    InstrumentBusy,
    InstrumentDisconnected,
    InstrumentError,
    InstrumentTimeout,
    MalformedReply,
)


@dataclass(frozen=True)
class Identity:
    """What the record stores about an instrument: it is the equipment's traceability."""

    model: str
    serial: str
    firmware: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


_resource_managers: dict[str, pyvisa.ResourceManager] = {}
_rm_lock = threading.Lock()


def resource_manager(backend: str = "@py") -> pyvisa.ResourceManager:
    """One ResourceManager per backend per process (opening one is slow)."""
    with _rm_lock:
        if backend not in _resource_managers:
            _resource_managers[backend] = pyvisa.ResourceManager(backend)
        return _resource_managers[backend]


class VisaInstrument:
    """A message-based instrument reached through pyvisa.

    Subclasses set the terminators and implement ``_payload`` (check framing, raise on
    instrument-reported errors, return the data part of a reply), ``identify`` and ``safe_state``.
    """

    kind: ClassVar[str] = "instrument"
    write_termination: ClassVar[bytes] = b"\r\n"
    read_termination: ClassVar[str] = "\r\n"
    encoding: ClassVar[str] = "ascii"
    baud_rate: ClassVar[int | None] = None

    def __init__(
        self,
        name: str,
        resource: str | Any,
        *,
        timeout_ms: int = 1000,
        retries: int = 2,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.options = dict(options or {})
        self._lock = threading.RLock()
        self.exclusive_lock = "not applicable"  # "held" or why not (VISA exclusive lock, see _open)
        if isinstance(resource, str):
            self.resource_name = resource
            self._res = self._open(resource)
        else:  # an already-open or scripted resource (protocol replay tests)
            self.resource_name = getattr(resource, "resource_name", repr(resource))
            self._res = resource

    def _open(self, resource: str) -> Any:
        try:
            res = resource_manager().open_resource(
                resource,
                read_termination=self.read_termination,
                timeout=self.timeout_ms,
            )
        except (pyvisa.errors.VisaIOError, OSError, ValueError) as exc:
            raise InstrumentDisconnected(self.name, None, f"cannot open {resource}: {exc}") from exc
        try:
            self.exclusive_lock = self._lock_exclusive(res, resource)
        except BaseException:
            res.close()
            raise
        if self.baud_rate is not None and resource.upper().startswith("ASRL"):
            res.baud_rate = self.baud_rate
        return res

    def _lock_exclusive(self, res: Any, resource: str) -> str:
        """A VISA exclusive lock where the backend has them (NI-VISA, Keysight): another session
        on this resource is refused until we close. pyvisa-py has none (VI_ERROR_NSUP_OPER):
        then the station lock and, for serial ports, the device-node flock are what protect it.
        Returns what was obtained, for the record."""
        try:
            res.lock_excl(timeout=0)
        except pyvisa.errors.VisaIOError as exc:
            if exc.error_code == pyvisa.constants.StatusCode.error_resource_locked:
                raise InstrumentBusy(self.name, None, f"{resource} is locked by another VISA session "
                                                      "(another controller on this rig)") from exc
            return f"not supported by this VISA backend ({exc.abbreviation})"
        except (NotImplementedError, AttributeError):
            return "not supported by this VISA backend"
        return "held"

    # -- raw exchange -------------------------------------------------------------------------

    def _frame_request(self, cmd: str) -> bytes:
        """The bytes on the wire for ``cmd``. Override for binary framing (NE-1000 Safe mode)."""
        return cmd.encode(self.encoding) + self.write_termination

    def _exchange(self, cmd: str, *, expect_reply: bool = True) -> str:
        raw = self._frame_request(cmd)
        try:
            self._res.write_raw(raw)
            if not expect_reply:
                return ""
            data = self._read_reply(cmd)
        except pyvisa.errors.VisaIOError as exc:
            if exc.error_code == pyvisa.constants.StatusCode.error_timeout:
                raise InstrumentTimeout(
                    self.name, cmd, f"no reply within {self.timeout_ms} ms"
                ) from exc
            raise InstrumentDisconnected(self.name, cmd, f"transport error: {exc}") from exc
        except (OSError, ConnectionError) as exc:
            raise InstrumentDisconnected(self.name, cmd, f"connection lost: {exc}") from exc
        try:
            text = data.decode(self.encoding)
        except UnicodeDecodeError as exc:
            raise MalformedReply(self.name, cmd, f"undecodable reply {data!r}") from exc
        if text.endswith(self.read_termination):
            text = text[: -len(self.read_termination)]
        return text

    def _read_reply(self, cmd: str) -> bytes:
        """Read one reply to ``cmd``. Override when replies are not all terminated alike (the
        Reglo ICC answers set commands with one unterminated status character)."""
        return self._res.read_raw()

    def _flush_input(self) -> None:
        try:
            self._res.flush(pyvisa.constants.BufferOperation.discard_read_buffer)
        except Exception:  # noqa: BLE001 - best effort; scripted resources have no buffer
            pass

    def query(self, cmd: str) -> str:
        """An idempotent query: retried on timeout or garbage, returns the reply payload."""
        with self._lock:
            attempt = 0
            while True:
                try:
                    return self._payload(cmd, self._exchange(cmd))
                except (InstrumentTimeout, MalformedReply):
                    attempt += 1
                    if attempt > self.retries:
                        raise
                    self._flush_input()

    def command(self, cmd: str) -> str:
        """A state-changing command: sent exactly once, never retried."""
        with self._lock:
            return self._payload(cmd, self._exchange(cmd))

    def _payload(self, cmd: str, reply: str) -> str:
        """Check a reply's framing; raise on instrument-reported errors; return its data."""
        return reply

    # -- lifecycle ----------------------------------------------------------------------------

    def identify(self) -> Identity:
        raise NotImplementedError

    def safe_state(self) -> dict[str, Any]:
        """Put the instrument in its safe state, read it back, return the read-back.

        Raises SafeStateNotConfirmed when the read-back disagrees.
        """
        raise NotImplementedError

    def close(self) -> None:
        try:
            self._res.close()
        except Exception:  # noqa: BLE001 - closing a dead transport must not mask the real error
            pass

    def __enter__(self) -> "VisaInstrument":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def in_range(name: str, low: float, high: float, unit: str) -> Callable[[Any], float]:
    """Validator: a finite number within [low, high], with a message naming what is allowed."""

    def check(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number in {low:g}..{high:g} {unit}, got {value!r}")
        if not (low <= number <= high):  # also rejects NaN
            raise ValueError(f"{name} must be in {low:g}..{high:g} {unit}, got {value!r}")
        return number

    return check


__all__ = [
    "Identity",
    "InstrumentError",
    "VisaInstrument",
    "in_range",
    "resource_manager",
]
