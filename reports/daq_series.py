"""A raw DAQ stream (instruments.daq_stream) read for a report's plots in bounded memory.

Why its own module: a refill interval or a long soak at the full DAQ rate writes gigabytes
(20 Hz, three channels: 41 MB a simulated day, 3.7 GB for 90 days), and the report builder used
to hold every sample, its time and its chunk entry at once (3.4 GB RSS for one such file). A plot
is at most a few thousand points wide, so a long stream is reduced while it is read: the file in
blocks of ``BLOCK_SCANS`` scans (never the whole of it, not even memory-mapped, whose pages would
count as resident), the chunk index line by line into two integer arrays.

The reduction keeps what each plot needs: per bucket of consecutive scans, two rows, at the
bucket's first and last sample time; a pressure channel (``*_kpa``) holds the bucket's minimum and
maximum there, in the order they occurred (so an occlusion spike survives, as in
reports.plots.envelope), every other channel the bucket's mean in both rows (the flow sensor's level,
as in reports.plots.bucket_mean). Column names and time base are those of the full read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

FULL_READ_MAX_SCANS = 200_000  # up to this the stream is read as it is (~5 MB for 3 channels)
BUCKETS = 750  # two rows each: 1500 points, reports.plots.MAX_POINTS
BLOCK_SCANS = 1 << 18  # scans read at a time (6 MB for 3 channels)


def _unit_suffix(unit: str) -> str:
    return {"kpa": "kpa", "ul/min": "ul_min"}.get(unit.strip().lower(), re.sub(r"\W+", "_", unit.strip().lower()))


def column_names(header: dict[str, object]) -> list[str]:
    """Report column names of the stream's channels (pressure_upstream_kpa, flow_ul_min, ...)."""
    names = []
    for channel, unit in zip(header["channels"], header.get("units") or []):  # type: ignore[call-overload]
        suffix = _unit_suffix(str(unit))
        names.append("flow_ul_min" if suffix == "ul_min" else f"{channel}_{suffix}")
    return names


def chunk_table(index_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(first sample number, sample count) of every chunk, read line by line."""
    firsts: list[int] = []
    counts: list[int] = []
    with open(index_path, encoding="utf-8") as handle:
        for line in handle:
            if '"first"' not in line:
                continue  # blank lines and acquisition events
            entry = json.loads(line)
            firsts.append(int(entry["first"]))
            counts.append(int(entry["count"]))
    return np.asarray(firsts, dtype=np.int64), np.asarray(counts, dtype=np.int64)


class _Positions:
    """Scan position in the file -> sample number, through the chunk table (gaps kept)."""

    def __init__(self, firsts: np.ndarray, counts: np.ndarray, n_scans: int) -> None:
        if len(firsts):
            self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            self.firsts = firsts
        else:  # no index: scan i is sample i
            self.starts = np.zeros(1, dtype=np.int64)
            self.firsts = np.zeros(1, dtype=np.int64)
        self.n_scans = n_scans

    def sample(self, positions: np.ndarray) -> np.ndarray:
        k = np.searchsorted(self.starts, positions, side="right") - 1
        k = np.clip(k, 0, len(self.starts) - 1)
        return self.firsts[k] + (positions - self.starts[k])


def read_columns(path: Path, offset_s: float = 0.0) -> dict[str, np.ndarray]:
    """The stream's columns (plus ``t_s``, procedure time: sample number / rate + ``offset_s``);
    reduced to 2·BUCKETS rows when longer than FULL_READ_MAX_SCANS scans (module docstring)."""
    header = json.loads(path.with_name(path.name + ".header.json").read_text(encoding="utf-8"))
    names = column_names(header)
    n_channels = len(header["channels"])
    rate_hz = float(header["rate_hz"])
    index_path = path.with_name(path.name + ".index.jsonl")
    firsts, counts = chunk_table(index_path) if index_path.is_file() else (np.zeros(0, np.int64),) * 2
    n_scans = path.stat().st_size // (8 * n_channels)
    if len(counts):
        n_scans = min(n_scans, int(counts.sum()))
    positions = _Positions(firsts, counts, n_scans)
    if n_scans <= FULL_READ_MAX_SCANS:
        scans = np.fromfile(path, dtype="<f8", count=n_scans * n_channels).reshape(n_scans, n_channels)
        columns = {"t_s": positions.sample(np.arange(n_scans)) / rate_hz + offset_s}
        columns.update({name: scans[:, i].astype(float) for i, name in enumerate(names)})
        return columns
    return _reduced(path, names, n_channels, n_scans, positions, rate_hz, offset_s)


def _reduced(path: Path, names: list[str], n_channels: int, n_scans: int, positions: _Positions,
             rate_hz: float, offset_s: float) -> dict[str, np.ndarray]:
    edges = np.linspace(0, n_scans, BUCKETS + 1).astype(np.int64)
    edges = np.unique(edges)
    n_buckets = len(edges) - 1
    envelope = [name.endswith("_kpa") for name in names]
    out = {name: np.empty(2 * n_buckets) for name in names}
    with open(path, "rb") as handle:
        for b in range(n_buckets):
            lo, hi = int(edges[b]), int(edges[b + 1])
            low = np.full(n_channels, np.inf)
            high = np.full(n_channels, -np.inf)
            at_low = np.zeros(n_channels, dtype=np.int64)
            at_high = np.zeros(n_channels, dtype=np.int64)
            total = np.zeros(n_channels)
            seen = 0
            handle.seek(lo * n_channels * 8)
            for start in range(lo, hi, BLOCK_SCANS):
                n = min(BLOCK_SCANS, hi - start)
                block = np.fromfile(handle, dtype="<f8", count=n * n_channels)
                n = len(block) // n_channels
                if n == 0:
                    break
                block = block[: n * n_channels].reshape(n, n_channels)
                i_min, i_max = block.argmin(axis=0), block.argmax(axis=0)
                cols = np.arange(n_channels)
                v_min, v_max = block[i_min, cols], block[i_max, cols]
                better_low, better_high = v_min < low, v_max > high
                low = np.where(better_low, v_min, low)
                at_low = np.where(better_low, start + i_min, at_low)
                high = np.where(better_high, v_max, high)
                at_high = np.where(better_high, start + i_max, at_high)
                total += block.sum(axis=0)
                seen += n
            for c, name in enumerate(names):
                if envelope[c]:
                    first, second = (low[c], high[c]) if at_low[c] <= at_high[c] else (high[c], low[c])
                    out[name][2 * b: 2 * b + 2] = (first, second)
                else:
                    out[name][2 * b: 2 * b + 2] = total[c] / seen if seen else np.nan
    ends = np.empty(2 * n_buckets, dtype=np.int64)
    ends[0::2], ends[1::2] = edges[:-1], edges[1:] - 1
    columns = {"t_s": positions.sample(ends) / rate_hz + offset_s}
    columns.update(out)
    return columns


__all__ = ["BLOCK_SCANS", "BUCKETS", "FULL_READ_MAX_SCANS", "chunk_table", "column_names", "read_columns"]
