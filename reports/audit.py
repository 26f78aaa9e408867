"""Hash-chained, append-only audit log (JSONL) of runs, report builds, signatures and key events.

Why a chain: each line carries the hash of the line before it and its own hash, so editing,
deleting or reordering any line breaks the chain at that line. Cutting lines off the *end* cannot
be seen from the file alone; `rig audit verify` prints the head hash and entry count so they can be
kept elsewhere (a ticket, the CI log) and checked later with ``--head``.

Location: ``--audit-log FILE`` or the environment variable RIG_AUDIT_LOG (set it to one file to get
one chain for everything); otherwise key and signature events go next to the key registry
(``<registry dir>/audit.jsonl``) and run and report-build events next to the runs
(``<runs dir>/audit.jsonl``).
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports.canonical import canonical_json, load_json_bytes, sha256_hex
from rig.record import utc_now

GENESIS = "0" * 64
ENV_VAR = "RIG_AUDIT_LOG"
FILE_NAME = "audit.jsonl"


def resolve_log_path(explicit: Path | str | None = None, *, near: Path | None = None) -> Path:
    """Explicit path, else $RIG_AUDIT_LOG, else ``near/audit.jsonl`` (registry or runs dir)."""
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return Path(near or ".") / FILE_NAME


def entry_hash(entry: dict[str, Any]) -> str:
    return sha256_hex(canonical_json({k: v for k, v in entry.items() if k != "hash"}))


def _last_line(handle: Any) -> bytes:
    """The last non-empty line of an open binary file, read backwards in blocks."""
    handle.seek(0, os.SEEK_END)
    end = handle.tell()
    tail = b""
    pos = end
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        handle.seek(pos)
        tail = handle.read(step) + tail
        stripped = tail.rstrip(b"\n")
        if b"\n" in stripped:
            return stripped.rsplit(b"\n", 1)[1]
    return tail.rstrip(b"\n")


def append_event(path: Path, kind: str, **data: Any) -> dict[str, Any]:
    """Append one event under an exclusive lock (concurrent writers keep one chain)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            last = _last_line(handle)
            if last:
                previous = load_json_bytes(last, f"last line of audit log {path}")
                seq, prev = int(previous["seq"]) + 1, str(previous["hash"])
            else:
                seq, prev = 1, GENESIS
            entry: dict[str, Any] = {"seq": seq, "t_utc": utc_now(), "kind": kind, "data": data, "prev": prev}
            entry["hash"] = entry_hash(entry)
            handle.seek(0, os.SEEK_END)
            handle.write(canonical_json(entry) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return entry


@dataclass
class AuditCheck:
    path: Path
    entries: int = 0
    head: str = GENESIS
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_log(path: Path, expect_head: str | None = None) -> AuditCheck:
    """Walk the chain; the first broken line is reported (later lines cannot be trusted)."""
    check = AuditCheck(Path(path))
    data = Path(path).read_bytes()
    if data and not data.endswith(b"\n"):
        torn = data.count(b"\n") + 1
        check.problems.append(f"line {torn}: last line is incomplete (no newline)")
        return check
    prev, seen_head = GENESIS, expect_head is None
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            entry = load_json_bytes(line, f"line {number}")
            if not isinstance(entry, dict):
                raise ValueError(f"line {number} is not an object")
        except ValueError as exc:
            check.problems.append(str(exc))
            return check
        if canonical_json(entry) != line:
            check.problems.append(f"line {number}: not in canonical form (edited by hand?)")
            return check
        if entry.get("seq") != number:
            check.problems.append(f"line {number}: sequence number {entry.get('seq')!r}, expected {number} (line deleted, inserted or moved)")
            return check
        if entry.get("prev") != prev:
            check.problems.append(f"line {number}: chain broken (prev does not match the hash of line {number - 1}; line deleted or moved)")
            return check
        if entry.get("hash") != entry_hash(entry):
            check.problems.append(f"line {number}: content does not match its hash (line edited)")
            return check
        prev = entry["hash"]
        check.entries, check.head = number, prev
        seen_head = seen_head or prev == expect_head
    if not seen_head:
        check.problems.append(f"head {expect_head} not found: the log was truncated or replaced")
    return check
