"""Who hears the DAQ's chunks and failures: the chunk format and the listener registry.

Why a module of its own: the overpressure interlock runs here, in the reader's thread, and the
rule that makes it safe is small enough to read in one place: a ``safety`` listener fails closed
(if it raises, the acquisition fails and every failure listener hears why, so the interlock trips),
any other listener's exception is logged and the acquisition goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from instruments.daq_link import log


@dataclass(frozen=True)
class DaqChunk:
    """One chunk of scaled samples as the reader delivered it."""

    first_index: int  # sample number of data[:, 0] since start_acquisition
    rate_hz: float
    channels: tuple[str, ...]
    data: np.ndarray  # channels × n, engineering units

    @property
    def n(self) -> int:
        return int(self.data.shape[1])

    def column(self, channel: str) -> np.ndarray:
        return self.data[self.channels.index(channel)]

    def t_s(self, index: int) -> float:
        """Time of sample ``index`` since the acquisition started."""
        return index / self.rate_hz


ChunkListener = Callable[[DaqChunk], None]
FailureListener = Callable[[str], None]


class DaqListeners:
    """The chunk listeners (some of them safety listeners) and failure listeners of one DAQ."""

    def __init__(self, instrument: str) -> None:
        self._instrument = instrument
        self._chunk: list[ChunkListener] = []
        self._safety: list[ChunkListener] = []  # a failure of one fails the acquisition
        self._failure: list[FailureListener] = []

    def add_chunk(self, listener: ChunkListener, *, safety: bool = False) -> None:
        self._chunk.append(listener)
        if safety:
            self._safety.append(listener)

    def add_failure(self, listener: FailureListener) -> None:
        self._failure.append(listener)

    def remove(self, listener: ChunkListener | FailureListener) -> None:
        """Stop calling ``listener`` (chunk or failure listener; absent is fine)."""
        for listeners in (self._chunk, self._safety, self._failure):
            while listener in listeners:
                listeners.remove(listener)  # type: ignore[arg-type]

    def snapshot(self) -> tuple[list[ChunkListener], list[FailureListener]]:
        """Copies of the registered (chunk, failure) listeners."""
        return list(self._chunk), list(self._failure)

    def publish(self, chunk: DaqChunk) -> str | None:
        """Hand ``chunk`` to every chunk listener. Returns why a safety listener failed, if one
        did (the reader then fails the acquisition with it: the interlock path fails closed)."""
        failure: str | None = None
        for listener in list(self._chunk):
            try:
                listener(chunk)
            except Exception as exc:  # noqa: BLE001 - only a safety listener's failure stops it
                if listener in self._safety:
                    failure = failure or f"safety check {getattr(listener, '__qualname__', listener)} failed: {exc!r}"
                else:
                    log.exception("%s: chunk listener %r failed", self._instrument, listener)
        return failure

    def tell_failure(self, message: str) -> None:
        """Tell every failure listener that the acquisition failed (the interlock trips on it)."""
        for listener in list(self._failure):
            try:
                listener(message)
            except Exception:  # noqa: BLE001
                log.exception("%s: failure listener %r failed", self._instrument, listener)


__all__ = ["ChunkListener", "DaqChunk", "DaqListeners", "FailureListener"]
