"""Hash-chained, append-only audit log (JSONL) of runs, report builds, signatures and key events.

Why a chain: each line carries the hash of the line before it (``prev``, the head it extends)
and its own hash, so editing, deleting or reordering any line breaks the chain at that line.
Cutting lines off the *end*, or rewriting the whole chain with fresh hashes, cannot be seen from
the file alone: so the head is anchored outside the log. Every signature statement carries the
head at signing (``audit_anchor``: seq and hash), the signature's own entry is written *before*
the envelope (and removed again if the envelope cannot be written), and `rig audit verify
--bundle B` checks every anchor and entry a bundle implies: an anchored entry that is missing
(truncation) or different (rewrite), a signature whose entry is gone, a signature logged after
its key's revocation. `rig audit verify` also prints the head hash and entry count so they can be
kept elsewhere (a ticket, the CI log) and checked later with ``--head``.

Location: ``--audit-log FILE`` or the environment variable RIG_AUDIT_LOG (set it to one file to get
one chain for everything); otherwise key and signature events go next to the key registry
(``<registry dir>/audit.jsonl``) and run and report-build events next to the runs
(``<runs dir>/audit.jsonl``).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports.canonical import canonical_json, load_json_bytes, sha256_hex
from rig.record import utc_now
from rig.safeio import open_regular

GENESIS = "0" * 64
ENV_VAR = "RIG_AUDIT_LOG"
FILE_NAME = "audit.jsonl"
MAX_LINE_BYTES = 1 << 20  # an entry is a few hundred bytes; a longer line is not ours


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


class AuditLogError(ValueError):
    """The log cannot be extended (damaged last line, not a regular file): nothing was appended."""


def _open_log(path: Path, *, create: bool) -> Any:
    """The log opened for read + append, never through a symbolic link."""
    flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AuditLogError(f"audit log {path} is a symbolic link (not followed)") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise AuditLogError(f"audit log {path} is not a regular file")
    return open(fd, "a+b")


def _head_entry(handle: Any, path: Path) -> tuple[int, str]:
    """(seq, hash) of the last entry of an open log, (0, GENESIS) when empty; AuditLogError if damaged."""
    last = _last_line(handle)
    if not last:
        return 0, GENESIS
    try:
        previous = load_json_bytes(last, f"last line of audit log {path}")
        return int(previous["seq"]), str(previous["hash"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditLogError(f"audit log {path}: the last line is damaged ({exc}); run `rig audit verify` "
                            "and repair the log before anything else is logged") from None


def head(path: Path) -> tuple[int, str]:
    """The current head (seq, hash) of the log at ``path``; (0, GENESIS) when it does not exist yet."""
    path = Path(path)
    if not path.exists():
        return 0, GENESIS
    with _open_log(path, create=False) as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
        try:
            return _head_entry(handle, path)
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def log_id(path: Path) -> str | None:
    """The hash of the log's first entry (None when empty): which log an anchor belongs to."""
    with open_regular(path, what=f"audit log {path}") as handle:
        first = handle.readline(MAX_LINE_BYTES + 1)
    if not first:
        return None
    try:
        return str(load_json_bytes(first.rstrip(b"\n"), f"first line of audit log {path}")["hash"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditLogError(f"audit log {path}: the first line is damaged ({exc})") from None


def anchor_of(path: Path) -> dict[str, Any]:
    """What a signature statement records about the log now: ``{"log_id", "seq", "hash"}``.

    ``log_id`` is the hash of the log's first entry (None while the log is empty): it tells which
    log an anchor belongs to when a station keeps more than one.
    """
    path = Path(path)
    seq, hash_ = head(path)
    return {"log_id": log_id(path) if seq else None, "seq": seq, "hash": hash_}


def append_event(path: Path, kind: str, **data: Any) -> dict[str, Any]:
    """Append one event under an exclusive lock (concurrent writers keep one chain).

    AuditLogError (nothing appended) when the log's last line is damaged or the path is a symlink.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _open_log(path, create=True) as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            seq, prev = _head_entry(handle, path)
            seq += 1
            entry: dict[str, Any] = {"seq": seq, "t_utc": utc_now(), "kind": kind, "data": data, "prev": prev}
            entry["hash"] = entry_hash(entry)
            handle.seek(0, os.SEEK_END)
            handle.write(canonical_json(entry) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return entry


def rollback(path: Path, entry: dict[str, Any]) -> bool:
    """Remove ``entry`` again if it is still the last line (what it logged did not happen).

    Returns False (and changes nothing) when another entry has been appended since: the log is
    append-only for everyone else, so the entry then stays and says what was attempted.
    """
    line = canonical_json(entry) + b"\n"
    with _open_log(Path(path), create=False) as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            if end < len(line):
                return False
            handle.seek(end - len(line))
            if handle.read(len(line)) != line:
                return False
            os.ftruncate(handle.fileno(), end - len(line))
            os.fsync(handle.fileno())
            return True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@dataclass
class Anchor:
    """What a bundle says about the log: entry ``seq`` had ``hash`` (the head when it was signed)."""

    source: str  # e.g. "RPT-… signature #01"
    seq: int
    hash: str


@dataclass
class Expected:
    """An entry a bundle implies: kind ``kind`` whose data[``key``] == ``value`` (e.g. an envelope hash)."""

    source: str
    kind: str
    key: str
    value: str
    key_id: str | None = None  # for signatures: logged after this key's revocation is a problem
    data_equals: dict[str, Any] = field(default_factory=dict)  # e.g. the run's outcome in run_finished


@dataclass
class AuditCheck:
    path: Path
    entries: int = 0
    head: str = GENESIS
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _entry_problem(line: bytes, number: int, prev: str) -> tuple[dict[str, Any] | None, str | None]:
    """(entry, None) when line ``number`` continues the chain after ``prev``, else (None, why)."""
    try:
        entry = load_json_bytes(line, f"line {number}")
        if not isinstance(entry, dict):
            raise ValueError(f"line {number} is not an object")
    except ValueError as exc:
        return None, str(exc)
    if canonical_json(entry) != line:
        return None, f"line {number}: not in canonical form (edited by hand?)"
    if entry.get("seq") != number:
        return None, (f"line {number}: sequence number {entry.get('seq')!r}, expected {number} "
                      "(line deleted, inserted or moved)")
    if entry.get("prev") != prev:
        return None, (f"line {number}: chain broken (prev does not match the hash of line {number - 1}; "
                      "line deleted or moved)")
    if entry.get("hash") != entry_hash(entry):
        return None, f"line {number}: content does not match its hash (line edited)"
    return entry, None


def verify_log(path: Path, expect_head: str | None = None, *, anchors: list[Anchor] = (),  # type: ignore[assignment]
               expected: list[Expected] = ()) -> AuditCheck:  # type: ignore[assignment]
    """Walk the chain (streamed, each line bounded); the first broken line is reported (later lines
    cannot be trusted). ``anchors`` and ``expected`` come from bundles (``bundle_anchors``): a
    missing or different anchored entry is truncation or a rewrite; a missing expected entry was
    cut out; a signature logged after its key's revocation is reported too."""
    check = AuditCheck(Path(path))
    prev, seen_head = GENESIS, expect_head is None
    by_seq: dict[int, list[Anchor]] = {}
    for anchor in anchors:
        by_seq.setdefault(anchor.seq, []).append(anchor)
    wanted = {(e.kind, e.key, e.value): e for e in expected}
    found: dict[tuple[str, str, str], int] = {}
    revoked_at_seq: dict[str, int] = {}
    late: list[str] = []
    with open_regular(path, what=f"audit log {path}") as handle:
        number = 0
        while True:
            line = handle.readline(MAX_LINE_BYTES + 1)
            if not line:
                break
            number += 1
            if len(line) > MAX_LINE_BYTES:
                check.problems.append(f"line {number}: longer than {MAX_LINE_BYTES} bytes (not an audit entry)")
                return check
            if not line.endswith(b"\n"):
                check.problems.append(f"line {number}: last line is incomplete (no newline)")
                return check
            entry, problem = _entry_problem(line[:-1], number, prev)
            if entry is None:
                check.problems.append(str(problem))
                return check
            prev = entry["hash"]
            check.entries, check.head = number, prev
            seen_head = seen_head or prev == expect_head
            for anchor in by_seq.pop(number, []):
                if anchor.hash != prev:
                    check.problems.append(f"entry {number} is not the one {anchor.source} anchored "
                                          "(the log was rewritten up to there)")
            data = entry.get("data") if isinstance(entry.get("data"), dict) else {}
            if entry.get("kind") == "key_revoked" and isinstance(data.get("key_id"), str):
                revoked_at_seq.setdefault(data["key_id"], number)
            for key in ("envelope_sha256", "record_sha256", "manifest_sha256"):
                hit = wanted.get((str(entry.get("kind")), key, str(data.get(key))))
                if hit is not None and hit.value == data.get(key):
                    found[(hit.kind, hit.key, hit.value)] = number
                    for field_name, want in hit.data_equals.items():
                        if data.get(field_name) != want:
                            late.append(f"entry {number} ({hit.kind} of {hit.source}) says {field_name} "
                                        f"{data.get(field_name)!r}, the bundle says {want!r}: the log was rewritten")
                    if hit.key_id in revoked_at_seq:
                        late.append(f"{hit.source} was logged at entry {number}, after its key {hit.key_id} was "
                                    f"revoked at entry {revoked_at_seq[hit.key_id]}")
    if number == 0:
        check.problems.append("the log is empty: nothing was ever logged here, or it was emptied")
    for seq, missing in sorted(by_seq.items()):
        for anchor in missing:
            check.problems.append(f"{anchor.source} anchors entry {seq}, but the log ends at entry {check.entries}: "
                                  "the log was truncated")
    for key, exp in wanted.items():
        if key not in found:
            check.problems.append(f"no {exp.kind} entry for {exp.source} ({exp.key} {exp.value[:16]}…): "
                                  "it was cut out of the log, or never written")
    check.problems += late
    if not seen_head:
        check.problems.append(f"head {expect_head} not found: the log was truncated or replaced")
    return check
