"""Streaming DAQ samples to disk: raw float64 scans plus a chunk index, written as they arrive.

Why binary + index and not CSV: 4 channels at 10 kS/s is 40 000 values a second for hours; text
formatting would cost the reader thread most of a core. Each chunk is appended and flushed (so a
crash leaves every sample acquired so far), memory stays flat (nothing is kept), and the index
records each chunk's first sample number so a gap is visible as ``first != previous first + count``.

Files for a stream at ``path`` (e.g. ``raw/daq.f64``):
  path                  float64 little-endian, one row per scan, one column per channel
  path.header.json      channels, units, rate, calibration, start time
  path.index.jsonl      one line per chunk: {"first": i, "count": n, "offset": byte offset}
                        and one {"event": ...} line per acquisition problem (e.g. overflow)
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FSYNC_INTERVAL_S = 1.0


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


class StreamWriter:
    """Appends chunks (channels × samples) to the stream files; one writer per acquisition."""

    def __init__(self, path: str | os.PathLike[str], header: dict[str, Any]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.channels: list[str] = list(header["channels"])
        _sidecar(self.path, ".header.json").write_text(
            json.dumps({"format": "float64-le scans", **header}, indent=2, default=str)
        )
        self._data = open(self.path, "wb")
        self._index = open(_sidecar(self.path, ".index.jsonl"), "w", encoding="utf-8")
        self.samples_written = 0
        self._next_first: int | None = None
        self._last_sync = time.monotonic()

    def write(self, first_index: int, block: np.ndarray) -> None:
        """Append one chunk; ``block`` is channels × n in engineering units."""
        self._append(first_index, block)

    def _append(self, first_index: int, block: np.ndarray) -> None:
        n = block.shape[1]
        if n == 0:
            return
        offset = self._data.tell()
        np.ascontiguousarray(block.T, dtype="<f8").tofile(self._data)
        self._index.write(json.dumps({"first": first_index, "count": n, "offset": offset}) + "\n")
        self._data.flush()
        self._index.flush()
        self.samples_written += n
        self._next_first = first_index + n
        if time.monotonic() - self._last_sync >= FSYNC_INTERVAL_S:
            self._sync()

    def event(self, kind: str, detail: str, sample_index: int) -> None:
        """Record an acquisition problem in the index (it is part of the data's provenance)."""
        self._index.write(json.dumps({"event": kind, "detail": detail, "at_sample": sample_index}) + "\n")
        self._index.flush()

    def _sync(self) -> None:
        os.fsync(self._data.fileno())
        os.fsync(self._index.fileno())
        self._last_sync = time.monotonic()

    def close(self) -> None:
        self._close_files()

    def _close_files(self) -> None:
        if self._data.closed:
            return
        self._sync()
        self._data.close()
        self._index.close()


@dataclass
class StreamData:
    """A stream read back: header, scans (n × channels, memory-mapped) and the chunk index."""

    header: dict[str, Any]
    scans: np.ndarray
    chunks: list[dict[str, Any]]
    events: list[dict[str, Any]]

    def column(self, channel: str) -> np.ndarray:
        return self.scans[:, self.header["channels"].index(channel)]

    def gaps(self) -> list[tuple[int, int]]:
        """(expected first sample, actual first sample) for every discontinuity between chunks."""
        out = []
        expected = 0
        for chunk in self.chunks:
            if chunk["first"] != expected:
                out.append((expected, chunk["first"]))
            expected = chunk["first"] + chunk["count"]
        return out


def read_stream(path: str | os.PathLike[str]) -> StreamData:
    path = Path(path)
    header = json.loads(_sidecar(path, ".header.json").read_text())
    chunks, events = [], []
    for line in _sidecar(path, ".index.jsonl").read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            (events if "event" in entry else chunks).append(entry)
    n_channels = len(header["channels"])
    size = path.stat().st_size // 8
    if size == 0:
        scans = np.zeros((0, n_channels))
    else:
        scans = np.memmap(path, dtype="<f8", mode="r", shape=(size // n_channels, n_channels))
    return StreamData(header, scans, chunks, events)


class AveragingStreamWriter(StreamWriter):
    """Keeps the mean of every ``average`` consecutive samples instead of each sample.

    Why: a refill interval is weeks; at 20 Hz every sample is 41 MB a day (1.8 GB for 42 days),
    more than a lab keeps for a trend it reads in minutes. The listeners (interlock, detectors)
    still get every sample; only the file is reduced. The header says so (``rate_hz`` is the stored
    rate, ``averaged_samples`` and ``acquired_rate_hz`` what was acquired); the index counts stored
    samples. A last block shorter than ``average`` is not stored.
    """

    def __init__(self, path: str | os.PathLike[str], header: dict[str, Any], average: int) -> None:
        self.average = int(average)
        rate = float(header["rate_hz"])
        super().__init__(path, {**header, "rate_hz": rate / self.average, "acquired_rate_hz": rate,
                                "averaged_samples": self.average})
        self._pending: np.ndarray | None = None
        self._stored = 0

    def write(self, first_index: int, block: np.ndarray) -> None:
        data = block if self._pending is None else np.hstack([self._pending, block])
        n = data.shape[1] // self.average
        if n:
            used = n * self.average
            means = data[:, :used].reshape(data.shape[0], n, self.average).mean(axis=2)
            self._append(self._stored, means)
            self._stored += n
            data = data[:, used:]
        self._pending = data if data.shape[1] else None
