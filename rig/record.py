"""The run record: an append-only JSONL file written as the run goes, plus raw data files.

Why JSONL with fsync at step boundaries: a crash or `kill -9` must leave a readable record whose
last complete line tells how far the run got. A record without a ``run_finished`` event is
INCOMPLETE and is never a pass, whatever its measurements say.

Layout: ``runs/<run_id>/record.jsonl`` and ``runs/<run_id>/raw/*``. Event types (field "type"):
  run_started    run_id, t_utc, station{...}, software{version, git_sha}, operator,
                 procedure{id, version, requirements, source_sha256, spec_sha256, spec_version},
                 parameters{name: {value, unit}}, item_under_test{...}
  step_started   step, index, t_utc, t_proc_s
  operator_entry step, prompt, answer, answered_by, t_utc
  measurement    name, value, unit, low, high, requirement, outcome ("pass"|"fail"),
                 uncertainty, decision_rule, t_proc_s
  event          kind ("fault_injected"|"alarm"|"detector"|"interlock"|"warning"|"error"), t_proc_s, detail
                 ("error": an exception in a background thread, with its traceback; the run ends ERROR)
  step_finished  step, index, status ("done"|"failed"|"aborted"|"error"), t_utc, t_proc_s
  safe_state     confirmed (bool), instruments{name: readback}, t_utc
  run_finished   outcome ("PASS"|"FAIL"|"ABORTED"|"ERROR"), reason, t_utc

Lines with ``by: "supervisor"`` were appended by rig.engine.supervisor after the controller process died
(an ``event`` of kind "warning" and a ``safe_state``): never a run_finished, so the record stays
INCOMPLETE. If the dead controller left a torn last line, the supervisor starts on a new line and
the reader skips that torn line (flagged ``truncated_tail``).
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import math
import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig.errors import UsageError
from rig.safeio import json_depth_problem, read_regular

OUTCOMES = ("PASS", "FAIL", "ABORTED", "ERROR")
# The vocabulary of ``event`` lines (``kind``): every kind a run can record, with what it means.
# The report draws each one with its own marker and legend entry (reports.plots, tested).
EVENT_KINDS: dict[str, str] = {
    "fault": "a fault put on the line by the procedure (rig valve, kink) or released",
    "fault_injected": "a fault injected over the simulated bench's control channel",
    "alarm": "the pump under test raised an alarm",
    "pump_alarm": "the pump under test raised an alarm (occlusion procedure)",
    "detector": "one of the rig's streaming detectors alarmed",
    "interlock": "the overpressure interlock: armed at the start, or tripped (pump stopped)",
    "warning": "something that did not stop the run but a reviewer must know",
    "pump_watchdog": "the pump watchdog acted (the pump was stopped because the controller went quiet)",
    "error": "something went wrong that the outcome reports (e.g. a background reader failed)",
    "program": "a programmed rate change of a multi-step infusion",
    "program_part": "one part of a programmed infusion finished",
    "fill": "the reservoir was filled at the start of a refill interval (reservoir_cycle)",
    "evaporation_blank": "the weighing vessel's evaporation rate was measured with the pump stopped",
    "low_reservoir": "the pump's low-reservoir alarm (from its dispensed-volume count)",
    "refill": "the reservoir was refilled (operator step or automated)",
}
INCOMPLETE = "INCOMPLETE"
MAX_RECORD_BYTES = 1 << 30  # a record is events, not raw data (that is in raw/): 1 GiB is far beyond any run
SUPERVISOR = "supervisor"  # the "by" of lines appended after the controller died (rig.engine.supervisor)


def new_run_id(procedure_id: str) -> str:
    """Sortable by start time, unique across rigs sharing a runs directory."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{procedure_id}-{secrets.token_hex(3)}"


def utc_now() -> str:
    """ISO 8601 UTC with microseconds and a Z suffix: sortable and unambiguous."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def writable_directory(path: Path | str, what: str) -> Path:
    """``path`` (absolute), proven writable without creating it: a file is created and removed in
    ``path`` or, when it does not exist yet, in its nearest existing parent (where it would be made).

    Why before anything starts: a run whose record cannot be written must not move the pump,
    and "cannot write" must be a clear usage error (exit 2), not an ERROR run with an internal
    message and a record path that does not exist."""
    path = Path(path).expanduser().absolute()
    where = path
    while not where.exists() and where.parent != where:
        where = where.parent
    try:
        if not where.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{where} is not a directory")
        probe = where / f".rig-write-test-{os.getpid()}-{secrets.token_hex(3)}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{what} {path} is not writable: {exc.strerror or exc}"
                         + (f" (at {where})" if where != path else "") + "; give a writable directory") from None
    return path


class RecordClosed(RuntimeError):
    """Something tried to write into a record after its run finished (a leaked listener)."""


class RecordWriter:
    """Appends events to record.jsonl. Every line is flushed; ``checkpoint`` fsyncs."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.raw_dir = self.run_dir / "raw"
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "record.jsonl"
        try:  # exclusive and never through a symlink planted in the run directory
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            raise UsageError(f"run record {self.path} already exists; refusing to overwrite it") from None
        self._file = open(fd, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def append(self, event_type: str, **fields: Any) -> dict[str, Any]:
        event = {"type": event_type, **fields}
        line = json.dumps(event, sort_keys=True, allow_nan=False, default=str)
        with self._lock:
            if self._file.closed:
                raise RecordClosed(f"run record {self.path} is finished; refusing to append a "
                                   f"{event_type!r} line to it")
            self._file.write(line + "\n")
            self._file.flush()
        return event

    def checkpoint(self) -> None:
        """fsync: called at step boundaries and at the end of the run."""
        with self._lock:
            self._file.flush()
            os.fsync(self._file.fileno())

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()


def append_after_crash(path: Path | str, events: list[dict[str, Any]]) -> None:
    """Append ``events`` (each gets ``by: "supervisor"``) to a record whose writer is dead.

    One O_APPEND write of newline-terminated lines, then fsync. If the file does not end in a
    newline (the controller was killed mid-line), the write starts with one, so the torn line
    stays a line of its own that ``read_record`` can skip instead of corrupting ours.
    """
    text = "".join(json.dumps({**e, "by": SUPERVISOR}, sort_keys=True, allow_nan=False, default=str) + "\n"
                   for e in events)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            text = "\n" + text
        data = text.encode("utf-8")
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class RunRecord:
    """A record read back. ``outcome`` is INCOMPLETE unless a run_finished event exists."""

    path: Path
    events: list[dict[str, Any]]
    truncated_tail: bool = False  # the controller's last line was cut mid-write (crash)
    started: dict[str, Any] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    @property
    def finished(self) -> dict[str, Any] | None:
        for event in reversed(self.events):
            if event.get("type") == "run_finished":
                return event
        return None

    @property
    def outcome(self) -> str:
        finished = self.finished
        return finished["outcome"] if finished else INCOMPLETE

    @property
    def reason(self) -> str:
        finished = self.finished
        if finished:
            return str(finished.get("reason", ""))
        return "the run did not finish (process killed or crashed); record is incomplete"

    @property
    def measurements(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == "measurement"]

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == event_type]


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a run record can hold (the writer never writes it)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} overflows to {value} (the writer never writes a non-finite number)")
    return value


def _parse_line(raw: bytes) -> dict[str, Any]:
    too_deep = json_depth_problem(raw, "the line")
    if too_deep:
        raise ValueError(too_deep)
    event = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    if not isinstance(event, dict) or "type" not in event:
        raise ValueError("not an event object with a 'type'")
    return event


def _only_supervisor_lines(lines: list[bytes]) -> bool:
    """True if every line parses and was appended by the supervisor after the controller died."""
    try:
        return all(_parse_line(raw).get("by") == SUPERVISOR for raw in lines)
    except (ValueError, UnicodeDecodeError):
        return False


def read_record(path: Path | str) -> RunRecord:
    """Read a record (a run directory or its record.jsonl). A torn last line of the controller
    is tolerated and flagged — it is the last line, or followed only by the supervisor's lines
    (see ``append_after_crash``); corruption anywhere else is an error naming the line."""
    path = Path(path)
    if path.is_dir():
        path = path / "record.jsonl"
    try:
        data = read_regular(path, max_bytes=MAX_RECORD_BYTES, what=f"run record {path}")
    except FileNotFoundError:
        raise UsageError(f"no run record at {path}") from None
    except OSError as exc:
        raise UsageError(f"cannot read run record {path}: {exc.strerror or exc}") from None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    events: list[dict[str, Any]] = []
    truncated = False
    for number, raw in enumerate(lines, start=1):
        try:
            event = _parse_line(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            if not truncated and _only_supervisor_lines(lines[number:]):
                truncated = True
                continue
            raise UsageError(f"run record {path} line {number} is corrupt: {exc}") from exc
        events.append(event)
    if not events or events[0].get("type") != "run_started":
        raise UsageError(f"run record {path} does not start with a run_started event")
    return RunRecord(path=path, events=events, truncated_tail=truncated, started=events[0])
