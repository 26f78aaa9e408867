"""A copy of the audit trail in the history database, append-only, to find a cut or rewritten file.

Why: the audit log is a file. Whoever can write it can cut entries off its end or rewrite the
whole chain with fresh hashes; anchors in bundles (reports.audit) catch that only up to the newest
anchor. A second copy elsewhere, which the same person cannot change, catches the rest: every
entry is copied into the table ``audit_mirror`` (log id = hash of the log's first entry, seq,
hash, the entry's canonical JSON) and `rig audit verify --mirror` compares the file with it: an
entry the mirror has and the file lacks is a cut, one whose hash differs is a rewrite, a mirrored
log whose first entry is gone from the file is a rewrite from entry 1.

What makes the table append-only: triggers refuse UPDATE and DELETE (SQLite, PostgreSQL) and
TRUNCATE (PostgreSQL) for everyone. On PostgreSQL the table's owner could still drop them, so the
table is created by an administrator and the rigs connect as a role that may only SELECT and
INSERT it (``POSTGRES_SETUP``, docs/security.md). On SQLite the file's owner can do anything
with the file: the mirror then only helps against someone who can write the audit log but not
the history database.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports import audit
from reports.canonical import canonical_json, load_json_bytes
from rig.fleet.history import History, HistoryError
from rig.safeio import open_regular

TABLE = "audit_mirror"
_COLUMNS = "log_id, seq, hash, entry, log_path, mirrored_utc"
_TABLE_DDL = (f"CREATE TABLE {TABLE} (log_id TEXT NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL, "
              "entry TEXT NOT NULL, log_path TEXT NOT NULL, mirrored_utc TEXT NOT NULL, PRIMARY KEY (log_id, seq))")
_SQLITE_DDL = [
    _TABLE_DDL,
    f"CREATE TRIGGER {TABLE}_no_update BEFORE UPDATE ON {TABLE} BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END",
    f"CREATE TRIGGER {TABLE}_no_delete BEFORE DELETE ON {TABLE} BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END",
]
_POSTGRES_DDL = [
    _TABLE_DDL,
    f"CREATE OR REPLACE FUNCTION {TABLE}_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN RAISE EXCEPTION '{TABLE} is append-only'; END $$",
    f"CREATE TRIGGER {TABLE}_no_change BEFORE UPDATE OR DELETE ON {TABLE} FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only()",
    f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_append_only()",
]
# What an administrator runs once on a PostgreSQL history shared by the rigs (docs/security.md):
# the table and its triggers owned by the administrator, the rigs' role may only read and append.
POSTGRES_SETUP = ";\n".join(_POSTGRES_DDL) + f""";
REVOKE ALL ON {TABLE} FROM PUBLIC;
GRANT SELECT, INSERT ON {TABLE} TO {{role}}"""


@dataclass
class MirrorCheck:
    """The file against the mirror: what was compared, appended, and what disagrees."""

    log: Path
    log_id: str | None = None
    file_entries: int = 0
    mirrored: int = 0
    appended: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _exists(history: History) -> bool:
    b = history.backend
    with b.transaction(write=False) as cur:
        if b.name == "postgresql":
            cur.execute("SELECT to_regclass(%s)", (TABLE,))
            return cur.fetchone()[0] is not None
        cur.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,))
        return cur.fetchone() is not None


def ensure_table(history: History) -> None:
    """Create the table and its append-only triggers unless it exists (on PostgreSQL an
    administrator should create it first: ``POSTGRES_SETUP``)."""
    if _exists(history):
        return
    b = history.backend

    def create() -> None:
        with b.transaction() as cur:
            if b.name == "postgresql":
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (0x52494741,))  # "RIGA": two first writers
                cur.execute("SELECT to_regclass(%s)", (TABLE,))
                if cur.fetchone()[0] is not None:
                    return
                statements = _POSTGRES_DDL
            else:
                cur.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,))
                if cur.fetchone() is not None:
                    return
                statements = _SQLITE_DDL
            for statement in statements:
                cur.execute(statement)

    history._with_retry(create)


def _file_entries(log: Path) -> list[dict[str, Any]]:
    """The log's entries, once its chain checks out (a broken file is `rig audit verify`'s report)."""
    check = audit.verify_log(log)
    if not check.ok:
        raise HistoryError(f"audit log {log} does not verify ({'; '.join(check.problems)}): not compared with the mirror")
    entries = []
    with open_regular(log, what=f"audit log {log}") as handle:
        for line in handle:
            entries.append(load_json_bytes(line.rstrip(b"\n"), f"audit log {log}"))
    return entries


def _mirrored(history: History, log_id: str | None, log_path: str) -> tuple[list[tuple[int, str]], list[str]]:
    """(seq, hash) mirrored for ``log_id``, and the other log ids mirrored for the same path."""
    b = history.backend
    with b.transaction(write=False) as cur:
        cur.execute(b.sql(f"SELECT seq, hash FROM {TABLE} WHERE log_id = ? ORDER BY seq"), (log_id or "",))
        rows = [(int(seq), str(hash_)) for seq, hash_ in cur.fetchall()]
        cur.execute(b.sql(f"SELECT DISTINCT log_id FROM {TABLE} WHERE log_path = ? AND log_id <> ?"),
                    (log_path, log_id or ""))
        others = [str(r[0]) for r in cur.fetchall()]
    return rows, others


def compare(history: History, log: Path, *, append: bool = False) -> MirrorCheck:
    """The file at ``log`` against the mirror; with ``append``, then copy the entries the mirror
    lacks (only when nothing disagrees: a cut or rewritten file is never mirrored as the truth)."""
    log = Path(log)
    ensure_table(history)
    entries = _file_entries(log)
    check = MirrorCheck(log, log_id=str(entries[0]["hash"]) if entries else None, file_entries=len(entries))
    log_path = str(log.resolve())
    rows, others = _mirrored(history, check.log_id, log_path)
    check.mirrored = len(rows)
    by_seq = {int(e["seq"]): str(e["hash"]) for e in entries}
    for seq, hash_ in rows:
        if seq not in by_seq:
            check.problems.append(f"the mirror holds entries up to {rows[-1][0]}, the file ends at entry "
                                  f"{len(entries)}: the log was cut (entry {seq} onwards is gone)")
            break
        if by_seq[seq] != hash_:
            check.problems.append(f"entry {seq} differs from the mirror's copy (hash {by_seq[seq][:16]}…, mirrored "
                                  f"{hash_[:16]}…): the log was rewritten from there")
            break
    if others and not rows:
        check.problems.append(f"the mirror knows another log at {log_path} (first entry {others[0][:16]}…) and "
                              "none of this one: the log was rewritten from its first entry, or replaced")
    if append and check.ok:
        new = entries[len(rows):]
        if new:
            _insert(history, new, check.log_id or "", log_path)
        check.appended = len(new)
    return check


def _insert(history: History, entries: list[dict[str, Any]], log_id: str, log_path: str) -> None:
    b = history.backend
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    statement = b.sql(f"INSERT INTO {TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (log_id, seq) DO NOTHING")
    rows = [(log_id, int(e["seq"]), str(e["hash"]), canonical_json(e).decode("utf-8"), log_path, now) for e in entries]

    def write() -> None:
        with b.transaction() as cur:
            cur.executemany(statement, rows)

    history._with_retry(write)


__all__ = ["POSTGRES_SETUP", "TABLE", "MirrorCheck", "compare", "ensure_table"]
