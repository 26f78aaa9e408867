"""The record of one run as it is written: record.jsonl, the raw CSV files and the run's clocks.

Why one object: every part of a run (the runner, the judge, the acquisition, a step) writes lines
to the same record and stamps them with the same procedure time; giving them this one small
interface (``append``, ``event``, ``raw``, ``checkpoint``, ``now_s``) keeps the record writer and
the clock origin out of their hands.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rig.engine.display import Display
from rig.record import RecordWriter, utc_now


class RawCsv:
    """A raw data file under raw/, one row per call, flushed per row (fsynced at step ends)."""

    def __init__(self, path: Path, columns: list[str],
                 on_row: Callable[[str, list[str], tuple[Any, ...]], None] | None = None) -> None:
        self.path = path
        self.columns = list(columns)
        self._on_row = on_row  # the display sees every raw row (the panel plots balance readings)
        self._file = open(path, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._write(self.columns)

    def row(self, *values: Any) -> None:
        if len(values) != len(self.columns):
            raise ValueError(f"{self.path.name}: {len(values)} values for columns {self.columns}")
        self._write([f"{v:.9g}" if isinstance(v, float) else v for v in values])
        if self._on_row is not None:
            self._on_row(self.path.stem, self.columns, values)

    def _write(self, cells: list[Any]) -> None:
        try:
            self._writer.writerow(cells)
            self._file.flush()
        except OSError as exc:  # name the file: a full disk must read as the disk, not as the run
            raise OSError(exc.errno, exc.strerror, str(self.path)) from exc

    def sync(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()


class RunLog:
    """record.jsonl and raw/ of one run, with procedure time counted from the record's start.

    ``clock`` is the bench clock (``now_s()``); ``t0_wall_s`` the ``time.monotonic()`` at which the
    run began (wall time includes opening the record)."""

    def __init__(self, run_dir: Path, clock: Any, display: Display, t0_wall_s: float) -> None:
        self.writer = RecordWriter(run_dir)
        self.path: Path = self.writer.path
        self.raw_dir: Path = self.writer.raw_dir
        self._clock = clock
        self._display = display
        self._t0_wall_s = t0_wall_s
        self.t0_proc_s: float = clock.now_s()
        self._raw: dict[str, RawCsv] = {}

    # -- time ----------------------------------------------------------------------------------

    def now_s(self) -> float:
        """Procedure time: bench clock seconds since the record started."""
        return self._clock.now_s() - self.t0_proc_s

    def safe_now(self) -> float | None:
        """``now_s()`` rounded for the record, or None when the clock itself is what failed."""
        try:
            return round(self.now_s(), 6)
        except Exception:  # noqa: BLE001 - the clock (sim control) may be what failed
            return None

    def wall_elapsed_s(self) -> float:
        return time.monotonic() - self._t0_wall_s

    # -- lines ---------------------------------------------------------------------------------

    def append(self, event_type: str, **fields: Any) -> dict[str, Any]:
        """One record line, returned as written."""
        return self.writer.append(event_type, **fields)

    def event(self, kind: str, detail: str, **fields: Any) -> None:
        """An ``event`` record line, also shown (thread-safe: the interlock calls this from its thread)."""
        self.writer.append("event", kind=kind, detail=detail, t_proc_s=self.safe_now(), t_utc=utc_now(), **fields)
        self._display.event(kind, detail)

    def raw(self, name: str, columns: list[str]) -> RawCsv:
        """raw/<name>.csv, created on first use (the same file for later calls)."""
        if name not in self._raw:
            self._raw[name] = RawCsv(self.raw_dir / f"{name}.csv", columns, on_row=self._show_row)
        return self._raw[name]

    def _show_row(self, name: str, columns: list[str], values: tuple[Any, ...]) -> None:
        try:
            self._display.raw_row(name, columns, values)
        except Exception:  # noqa: BLE001 - how a row is shown never decides the run
            pass

    def checkpoint(self) -> None:
        """fsync the raw files and the record (step boundaries)."""
        for raw in self._raw.values():
            raw.sync()
        self.writer.checkpoint()

    def close_raw(self) -> None:
        """Close the raw files; each is attempted (the record shows what was written)."""
        for raw in self._raw.values():
            try:
                raw.close()
            except Exception:  # noqa: BLE001 - finishing must reach the end
                pass

    def close(self) -> None:
        self.writer.close()

    @property
    def closed(self) -> bool:
        """The run has finished: nothing may be appended any more."""
        return self.writer.closed


__all__ = ["RawCsv", "RunLog"]
