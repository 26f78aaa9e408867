"""reports.daq_series: a long DAQ stream is read for the plots in bounded memory and reduced to
plot size without losing a spike (min/max per bucket) or the flow level (mean per bucket)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from instruments.daq_stream import StreamWriter
from reports import daq_series
from reports.daq_series import read_columns

RATE_HZ = 20.0


def _stream(path: Path, n: int, gap_at: int, gap: int) -> np.ndarray:
    """n scans of (upstream kPa, flow uL/min) in 1000-scan chunks; sample numbers jump by ``gap``
    after scan ``gap_at``; one pressure spike. Returns the scans (n × 2)."""
    rng = np.random.default_rng(3)
    scans = np.column_stack([10.0 + rng.normal(0.0, 0.05, n), 16.7 + rng.normal(0.0, 0.5, n)])
    scans[123_457, 0] = 95.0  # an occlusion spike of one sample
    writer = StreamWriter(path, {"channels": ["pressure_upstream", "flow_sensor"], "units": ["kPa", "uL/min"],
                                 "rate_hz": RATE_HZ})
    for start in range(0, n, 1000):
        first = start + (gap if start >= gap_at else 0)
        writer.write(first, scans[start:start + 1000].T)
    writer.close()
    return scans


def test_a_long_stream_is_reduced_keeping_spikes_levels_and_gaps(tmp_path: Path) -> None:
    n = daq_series.FULL_READ_MAX_SCANS + 100_000
    scans = _stream(tmp_path / "daq.f64", n, gap_at=200_000, gap=36_000)
    columns = read_columns(tmp_path / "daq.f64", offset_s=5.0)
    assert set(columns) == {"t_s", "pressure_upstream_kpa", "flow_ul_min"}
    assert len(columns["t_s"]) == 2 * daq_series.BUCKETS
    assert columns["pressure_upstream_kpa"].max() == 95.0  # the one-sample spike survives
    assert columns["pressure_upstream_kpa"].min() == scans[:, 0].min()
    assert np.mean(columns["flow_ul_min"]) == pytest.approx(scans[:, 1].mean(), abs=0.01)
    t = columns["t_s"]
    assert np.all(np.diff(t) >= 0)
    assert t[0] == pytest.approx(5.0) and t[-1] == pytest.approx(5.0 + (n - 1 + 36_000) / RATE_HZ)
    assert np.max(np.diff(t)) >= 36_000 / RATE_HZ  # the gap in the sample numbers is kept


def test_a_short_stream_is_read_as_it_is(tmp_path: Path) -> None:
    writer = StreamWriter(tmp_path / "d.f64", {"channels": ["pressure_upstream"], "units": ["kPa"], "rate_hz": 2.0})
    writer.write(0, np.array([[1.0, 2.0, 3.0]]))
    writer.write(5, np.array([[4.0]]))  # two samples missing
    writer.close()
    columns = read_columns(tmp_path / "d.f64")
    assert list(columns["pressure_upstream_kpa"]) == [1.0, 2.0, 3.0, 4.0]
    assert list(columns["t_s"]) == [0.0, 0.5, 1.0, 2.5]


def test_the_reduction_reads_the_file_in_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory bounded: no read asks for more than BLOCK_SCANS scans, whatever the file's size."""
    n = daq_series.FULL_READ_MAX_SCANS + 50_000
    _stream(tmp_path / "daq.f64", n, gap_at=n, gap=0)
    monkeypatch.setattr(daq_series, "BLOCK_SCANS", 4096)
    largest = []
    real_fromfile = np.fromfile

    def fromfile(*args: object, **kwargs: object) -> np.ndarray:
        data = real_fromfile(*args, **kwargs)
        largest.append(len(data))
        return data

    monkeypatch.setattr(daq_series.np, "fromfile", fromfile)
    read_columns(tmp_path / "daq.f64")
    assert max(largest) <= 4096 * 2
