"""The result history: one row per run and one per measurement, in SQLite or PostgreSQL.

Why a database and not a folder of bundles: trends ("is flow error creeping toward its limit on
rig 3?") need every measurement of every run of every station in one query. The bundles stay the
authoritative, signed record; the history is an index over them (each row names its report id and
bundle path), so a lost database can be rebuilt with ``rig history --import BUNDLE...``.

Where it lives: ``[history] url`` in the station file, default ``sqlite:///<runs_dir>/history.sqlite3``
(one file per rig, nothing to install); ``postgresql://user@host/db`` for a lab whose rigs share one
history (psycopg 3; put the password in ``PGPASSWORD`` or ``~/.pgpass``, never in rig.toml).
``$RIG_HISTORY_URL`` overrides the station file (a CI secret).

Concurrency: several rigs (or processes) may write at once and no row may be lost. SQLite runs in
WAL mode; each run is written in one ``BEGIN IMMEDIATE`` transaction with a busy timeout and a
bounded retry. PostgreSQL writes each run in one transaction; schema creation is serialised with
an advisory lock because ``CREATE TABLE IF NOT EXISTS`` races between two first-time writers.

Timestamps are stored as ISO 8601 UTC text ("2026-01-10T09:00:00.000000Z", exactly as in the run
record): it sorts correctly as text, round-trips byte for byte, and behaves the same in both
databases; ``--since 2026-01-10`` compares as text.
"""

from __future__ import annotations

import datetime as _dt
import math
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig.errors import RigError, UsageError
from rig.station.history_url import (  # noqa: F401 - the URL rules, re-exported for callers
    DEFAULT_FILE_NAME,
    URL_ENV,
    default_url,
    redact,
    resolve_url,
    scrub,
    station_url,
    url_problem,
)

SCHEMA_VERSION = 2
ADDED_RUN_COLUMNS = (("simulated", "BOOLEAN"), ("release", "TEXT"))  # schema 2
SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_ATTEMPTS = 8  # bounded retry for "database is locked" / serialization failures
PG_SCHEMA_LOCK = 0x52494748  # advisory lock key ("RIGH") serialising schema creation


class HistoryError(RigError):
    """The history database cannot be opened, read or written (exit 3)."""


class HistoryConflict(UsageError):
    """A run id already filed from a different bundle: nothing was filed (exit 2)."""


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRow:
    """One run as the history stores it."""

    run_id: str
    station_id: str
    procedure_id: str
    outcome: str
    started_utc: str
    procedure_version: str | None = None
    spec_version: str | None = None
    reason: str | None = None
    finished_utc: str | None = None
    report_id: str | None = None
    bundle_path: str | None = None
    nightly_id: str | None = None
    suite_label: str | None = None
    software_version: str | None = None
    git_sha: str | None = None
    simulated: bool | None = None  # None: filed before the history knew (schema 1)
    release: str | None = None  # "valid for release" or "NOT VALID FOR RELEASE: ..." (reports.results)


@dataclass(frozen=True)
class MeasurementRow:
    """One measurement of one run; ``value`` None when it could not be taken."""

    name: str
    outcome: str
    value: float | None = None
    unit: str | None = None
    low: float | None = None
    high: float | None = None
    requirement: str | None = None
    uncertainty: float | None = None


@dataclass(frozen=True)
class MeasurementPoint:
    """A measurement joined with its run: what trends and `rig history` show."""

    run_id: str
    station_id: str
    procedure_id: str
    procedure_version: str | None
    started_utc: str
    run_outcome: str
    report_id: str | None
    suite_label: str | None
    name: str
    value: float | None
    unit: str | None
    low: float | None
    high: float | None
    outcome: str


@dataclass(frozen=True)
class Filters:
    """What `rig history` narrows by; None = no restriction."""

    procedure_id: str | None = None
    measurement: str | None = None
    station_id: str | None = None
    since: str | None = None  # ISO date or timestamp (UTC), compared as text
    nightly_id: str | None = None
    suite_label: str | None = None  # a nightly suite entry (same procedure, same parameters)
    valid_for_release: bool | None = None  # True: only runs valid for release; False: only runs that are not
    simulated: bool | None = None  # True: only simulated runs; False: only hardware runs


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _uncertainty(value: Any) -> float | None:
    """The expanded uncertainty as a number (records hold a number or {"expanded": U, "k": 2})."""
    if isinstance(value, Mapping):
        return _number(value.get("expanded"))
    return _number(value)


def rows_from_results(results: Mapping[str, Any], *, bundle_path: str | None = None,
                      nightly_id: str | None = None, suite_label: str | None = None,
                      ) -> tuple[RunRow, list[MeasurementRow]]:
    """A results document (reports.results / a bundle's results.json) -> history rows."""
    run = results.get("run") or {}
    procedure = results.get("procedure") or {}
    station = results.get("station") or {}
    software = run.get("software") or {}
    verdict = results.get("verdict") or {}
    run_id = run.get("run_id")
    if not run_id or not procedure.get("id") or not station.get("id") or not run.get("started_utc"):
        raise UsageError("results document lacks run id, procedure id, station id or start time; "
                         "not a run this history can file")
    row = RunRow(
        run_id=str(run_id), station_id=str(station["id"]), procedure_id=str(procedure["id"]),
        procedure_version=procedure.get("version"), spec_version=procedure.get("spec_version"),
        outcome=str(verdict.get("outcome") or "INCOMPLETE"), reason=verdict.get("reason"),
        started_utc=str(run["started_utc"]), finished_utc=run.get("finished_utc"),
        report_id=results.get("report_id") or None, bundle_path=bundle_path, nightly_id=nightly_id,
        suite_label=suite_label, software_version=software.get("version"),
        git_sha=software.get("git_sha") or software.get("git_commit"),
        simulated=bool(verdict.get("simulated", station.get("simulated", True))),
        release=str(verdict.get("release") or "unknown (report made before validity conditions)"),
    )
    measurements = [
        MeasurementRow(name=str(m.get("name")), outcome=str(m.get("outcome") or "error"),
                       value=_number(m.get("value")), unit=m.get("unit"), low=_number(m.get("low")),
                       high=_number(m.get("high")), requirement=m.get("requirement"),
                       uncertainty=_uncertainty(m.get("uncertainty")))
        for m in results.get("measurements") or []
    ]
    return row, measurements


# --------------------------------------------------------------------------------------------
# Backends: what differs between SQLite and PostgreSQL, and nothing else
# --------------------------------------------------------------------------------------------

_RUN_COLUMNS = tuple(RunRow.__dataclass_fields__)
_MEASUREMENT_COLUMNS = tuple(MeasurementRow.__dataclass_fields__)


def _schema(serial_pk: str, real: str) -> list[str]:
    return [
        "CREATE TABLE IF NOT EXISTS rig_history_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS runs (
            id {serial_pk},
            run_id TEXT NOT NULL UNIQUE,
            station_id TEXT NOT NULL,
            procedure_id TEXT NOT NULL,
            outcome TEXT NOT NULL,
            started_utc TEXT NOT NULL,
            procedure_version TEXT,
            spec_version TEXT,
            reason TEXT,
            finished_utc TEXT,
            report_id TEXT,
            bundle_path TEXT,
            nightly_id TEXT,
            suite_label TEXT,
            software_version TEXT,
            git_sha TEXT,
            simulated BOOLEAN,
            release TEXT,
            recorded_utc TEXT NOT NULL
        )""",
        f"""CREATE TABLE IF NOT EXISTS measurements (
            id {serial_pk},
            run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            name TEXT NOT NULL,
            outcome TEXT NOT NULL,
            value {real},
            unit TEXT,
            low {real},
            high {real},
            requirement TEXT,
            uncertainty {real},
            UNIQUE (run_id, seq)
        )""",
        # Which bundle a run was filed from (its manifest sha256): a second bundle with the same run
        # id but another manifest is a conflict, not a silent "first filing wins". Its own table so
        # an existing history needs no migration.
        """CREATE TABLE IF NOT EXISTS run_bundles (
            run_id TEXT PRIMARY KEY REFERENCES runs (run_id) ON DELETE CASCADE,
            manifest_sha256 TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS runs_series ON runs (station_id, procedure_id, started_utc)",
        "CREATE INDEX IF NOT EXISTS measurements_name ON measurements (name, run_id)",
    ]


class _Backend:
    """A DB-API connection plus the dialect details (placeholders, DDL types, retry rules)."""

    placeholder = "?"
    name = "?"

    def __init__(self, url: str) -> None:
        self.url = url

    def connect(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Any]:
        """One transaction; ``write`` takes the write lock up front where that matters."""
        raise NotImplementedError
        yield

    def retryable(self, exc: BaseException) -> bool:
        return False

    def sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def create_schema(self) -> None:
        raise NotImplementedError


class _SQLite(_Backend):
    name = "sqlite"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.path = Path(url[len("sqlite:///"):])
        self.conn: sqlite3.Connection | None = None

    def connect(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the
            # write lock up front (with busy_timeout) instead of failing mid-transaction.
            self.conn = sqlite3.connect(str(self.path), timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                                        isolation_level=None, check_same_thread=False)
            self.conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            mode = self._journal_mode_wal()
            if str(mode).lower() != "wal":
                raise HistoryError(f"history {self.path}: SQLite refused WAL mode (got {mode!r}); "
                                   "is it on a network file system? Use PostgreSQL for a shared history")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable at checkpoints, no corruption
        except (sqlite3.Error, OSError) as exc:
            raise HistoryError(f"history {self.path} cannot be opened: {exc}") from exc

    def _journal_mode_wal(self) -> str:
        """Switch to WAL. Switching does not wait on the busy handler: when another process is
        creating the same new database at this moment it fails at once with "locked", so retry."""
        assert self.conn is not None
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                return str(self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if attempt == WRITE_ATTEMPTS or not self.retryable(exc):
                    raise
                time.sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Any]:
        assert self.conn is not None
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield cur
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            cur.close()

    def retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and any(
            word in str(exc).lower() for word in ("locked", "busy"))

    def create_schema(self) -> None:
        with self.transaction() as cur:
            for statement in _schema("INTEGER PRIMARY KEY AUTOINCREMENT", "REAL"):
                cur.execute(statement)
            present = {row[1] for row in cur.execute("PRAGMA table_info(runs)").fetchall()}
            for column, kind in ADDED_RUN_COLUMNS:
                if column not in present:  # a schema-1 database: add what schema 2 has
                    cur.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")


class _Postgres(_Backend):
    name = "postgresql"
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.conn: Any = None

    def connect(self) -> None:
        import psycopg  # a dependency; loaded only for a PostgreSQL history (it is slow to import)

        try:
            # autocommit: every statement we issue runs inside an explicit transaction() block
            self.conn = psycopg.connect(self.url, connect_timeout=10, application_name="rig-history",
                                        autocommit=True)
        except psycopg.Error as exc:
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HistoryError(f"history {redact(self.url)} cannot be opened: {scrub(why, self.url)}") from None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Any]:
        assert self.conn is not None
        with self.conn.transaction():
            with self.conn.cursor() as cur:
                yield cur

    def retryable(self, exc: BaseException) -> bool:
        import psycopg

        return isinstance(exc, (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected,
                                psycopg.errors.LockNotAvailable))

    def create_schema(self) -> None:
        with self.transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (PG_SCHEMA_LOCK,))
            for statement in _schema("BIGSERIAL PRIMARY KEY", "DOUBLE PRECISION"):
                cur.execute(statement)
            for column, kind in ADDED_RUN_COLUMNS:
                cur.execute(f"ALTER TABLE runs ADD COLUMN IF NOT EXISTS {column} {kind}")


def _backend_for(url: str) -> _Backend:
    problem = url_problem(url, allow_password=True)
    if problem:
        raise UsageError(f"history URL {problem}")
    scheme = url.split(":", 1)[0].lower()
    return _SQLite(url) if scheme == "sqlite" else _Postgres(url)


# --------------------------------------------------------------------------------------------
# The history
# --------------------------------------------------------------------------------------------


@dataclass
class History:
    """An open history database. Use ``open_history(url)``; close when done (or ``with``)."""

    url: str
    backend: _Backend = field(repr=False)

    @property
    def kind(self) -> str:
        return self.backend.name

    def describe(self) -> str:
        return redact(self.url)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "History":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------

    def _with_retry(self, action: Callable[[], Any]) -> Any:
        """Run a write transaction, retrying lock timeouts and serialization failures with
        jittered backoff; any other error (or the last attempt's) is a HistoryError."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                return action()
            except (HistoryError, HistoryConflict):  # not a database failure: never retried or rewrapped
                raise
            except Exception as exc:  # noqa: BLE001 - DB-API errors differ per driver
                if attempt < WRITE_ATTEMPTS and self.backend.retryable(exc):
                    time.sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
                    continue
                raise HistoryError(f"history {self.describe()}: write failed: {scrub(str(exc), self.url)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def add_run(self, run: RunRow, measurements: Sequence[MeasurementRow], *,
                manifest_sha256: str | None = None) -> bool:
        """File one run with its measurements atomically. False if this run was already filed from
        the same bundle (re-importing is harmless). With ``manifest_sha256`` (the bundle it comes
        from), a run id already filed from another bundle, or without one, is a HistoryConflict:
        two different documents claim to be the same run, and neither silently wins."""
        b = self.backend
        run_cols = ", ".join(_RUN_COLUMNS + ("recorded_utc",))
        run_sql = b.sql(f"INSERT INTO runs ({run_cols}) VALUES ({', '.join('?' * (len(_RUN_COLUMNS) + 1))}) "
                        "ON CONFLICT (run_id) DO NOTHING")
        m_cols = ", ".join(("run_id", "seq") + _MEASUREMENT_COLUMNS)
        m_sql = b.sql(f"INSERT INTO measurements ({m_cols}) VALUES ({', '.join('?' * (len(_MEASUREMENT_COLUMNS) + 2))})")
        recorded = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        run_values = tuple(getattr(run, c) for c in _RUN_COLUMNS) + (recorded,)

        bundle_sql = b.sql("INSERT INTO run_bundles (run_id, manifest_sha256) VALUES (?, ?)")
        filed_sql = b.sql("SELECT manifest_sha256 FROM run_bundles WHERE run_id = ?")

        def write() -> bool:
            with b.transaction() as cur:
                cur.execute(run_sql, run_values)
                if cur.rowcount == 0:
                    if manifest_sha256 is None:
                        return False
                    cur.execute(filed_sql, (run.run_id,))
                    row = cur.fetchone()
                    if row is not None and row[0] == manifest_sha256:
                        return False
                    was = f"from the bundle with manifest sha256 {row[0]}" if row else "without a bundle (by a nightly)"
                    raise HistoryConflict(f"run id {run.run_id} is already filed {was}; this bundle (manifest "
                                          f"sha256 {manifest_sha256}) claims the same run: not filed")
                if manifest_sha256 is not None:
                    cur.execute(bundle_sql, (run.run_id, manifest_sha256))
                cur.executemany(m_sql, [(run.run_id, seq) + tuple(getattr(m, c) for c in _MEASUREMENT_COLUMNS)
                                        for seq, m in enumerate(measurements)])
                return True

        return bool(self._with_retry(write))

    def add_results(self, results: Mapping[str, Any], *, bundle_path: str | Path | None = None,
                    nightly_id: str | None = None, suite_label: str | None = None,
                    manifest_sha256: str | None = None) -> bool:
        run, measurements = rows_from_results(results, bundle_path=None if bundle_path is None else str(bundle_path),
                                              nightly_id=nightly_id, suite_label=suite_label)
        return self.add_run(run, measurements, manifest_sha256=manifest_sha256)

    def import_bundle(self, bundle: Path, *, registry: Any = None, allow_unsigned: bool = False) -> bool:
        """File a report bundle — for manual runs and for rebuilding history — only once it verifies.

        Why verify first: the trends are what reviewers trust; an edited results.json (verify:
        INVALID) must not become a point on them. ``registry`` checks the signatures (a
        ``reports.key_registry.Registry``); ``allow_unsigned`` accepts an unsigned bundle on its file
        hashes alone, as `rig report verify --allow-unsigned` does. The manifest sha256 is stored.
        """
        from reports.bundle import require_bundle_dir
        from reports.canonical import load_json_bytes
        from reports.manifest import MAX_RESULTS_BYTES
        from reports.verify import verify_bundle
        from rig.safeio import read_regular

        bundle = require_bundle_dir(Path(bundle))
        check = verify_bundle(bundle, registry, allow_unsigned=allow_unsigned)
        if not check.ok:
            raise UsageError(f"{bundle} does not verify, not filed: " + "; ".join(check.reasons()))
        path = bundle / "results.json"
        try:
            results = load_json_bytes(read_regular(path, max_bytes=MAX_RESULTS_BYTES), str(path))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{bundle}: not a report bundle with a readable results.json ({exc})") from None
        return self.add_results(results, bundle_path=bundle.resolve(), manifest_sha256=check.manifest_sha256)

    # -- reading ---------------------------------------------------------------------------------

    def _where(self, f: Filters, *, with_measurement: bool) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        for column, value in (("r.procedure_id", f.procedure_id), ("r.station_id", f.station_id),
                              ("r.nightly_id", f.nightly_id), ("r.suite_label", f.suite_label)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if f.since is not None:
            clauses.append("r.started_utc >= ?")
            args.append(f.since)
        if f.valid_for_release is not None:
            clauses.append("r.release = ?" if f.valid_for_release else "(r.release IS NULL OR r.release <> ?)")
            args.append("valid for release")
        if f.simulated is not None:
            clauses.append("r.simulated = ?")
            args.append(bool(f.simulated))
        if with_measurement and f.measurement is not None:
            clauses.append("m.name = ?")
            args.append(f.measurement)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def _query(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            with self.backend.transaction(write=False) as cur:
                cur.execute(self.backend.sql(sql), tuple(args))
                return list(cur.fetchall())
        except HistoryError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise HistoryError(f"history {self.describe()}: query failed: {scrub(str(exc), self.url)}") from None

    def runs(self, filters: Filters = Filters(), limit: int | None = None) -> list[RunRow]:
        """Runs, newest first. With a measurement filter: only runs that took that measurement."""
        where, args = self._where(filters, with_measurement=False)
        if filters.measurement is not None:
            where += (" AND " if where else " WHERE ") + \
                "EXISTS (SELECT 1 FROM measurements m WHERE m.run_id = r.run_id AND m.name = ?)"
            args.append(filters.measurement)
        cols = ", ".join(f"r.{c}" for c in _RUN_COLUMNS)
        sql = f"SELECT {cols} FROM runs r{where} ORDER BY r.started_utc DESC, r.id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        # SQLite returns a BOOLEAN as 0/1
        return [RunRow(*row[:-2], None if row[-2] is None else bool(row[-2]), row[-1])
                for row in self._query(sql, args)]

    def measurements(self, filters: Filters = Filters()) -> list[MeasurementPoint]:
        """Measurement points, oldest first (the order trends read them in)."""
        where, args = self._where(filters, with_measurement=True)
        sql = ("SELECT r.run_id, r.station_id, r.procedure_id, r.procedure_version, r.started_utc, r.outcome, "
               "r.report_id, r.suite_label, m.name, m.value, m.unit, m.low, m.high, m.outcome "
               f"FROM measurements m JOIN runs r ON r.run_id = m.run_id{where} "
               "ORDER BY r.started_utc, r.id, m.seq")
        return [MeasurementPoint(*row) for row in self._query(sql, args)]

    def measurements_of(self, run_id: str) -> list[MeasurementRow]:
        cols = ", ".join(_MEASUREMENT_COLUMNS)
        rows = self._query(f"SELECT {cols} FROM measurements WHERE run_id = ? ORDER BY seq", [run_id])
        return [MeasurementRow(*row) for row in rows]

    def count(self) -> tuple[int, int]:
        """(runs, measurements) in the database."""
        rows = self._query("SELECT (SELECT COUNT(*) FROM runs), (SELECT COUNT(*) FROM measurements)", [])
        return int(rows[0][0]), int(rows[0][1])


def _check_schema_version(history: History) -> None:
    b = history.backend

    def ensure() -> None:
        with b.transaction() as cur:
            cur.execute(b.sql("SELECT value FROM rig_history_meta WHERE key = ?"), ("schema_version",))
            row = cur.fetchone()
            if row is None:
                cur.execute(b.sql("INSERT INTO rig_history_meta (key, value) VALUES (?, ?) "
                                  "ON CONFLICT (key) DO NOTHING"), ("schema_version", str(SCHEMA_VERSION)))
            elif int(row[0]) > SCHEMA_VERSION:
                raise HistoryError(f"history {history.describe()} has schema version {row[0]}, newer than "
                                   f"this rig's {SCHEMA_VERSION}; upgrade the rig software")
            elif int(row[0]) < SCHEMA_VERSION:  # create_schema added the columns just now
                cur.execute(b.sql("UPDATE rig_history_meta SET value = ? WHERE key = ?"),
                            (str(SCHEMA_VERSION), "schema_version"))

    history._with_retry(ensure)


def open_history(url: str) -> History:
    """Open (and create on first use) the history at ``url``."""
    backend = _backend_for(url)
    backend.connect()
    history = History(url=url, backend=backend)
    try:
        history._with_retry(backend.create_schema)
        _check_schema_version(history)
    except BaseException:
        history.close()
        raise
    return history


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?Z?)?$")


def parse_since(text: str) -> str:
    """``--since`` as a comparable UTC prefix: 2026-01-10, 2026-01-10T09:00, or 7d (days ago)."""
    text = text.strip()
    days = re.fullmatch(r"(\d{1,4})d", text)
    if days:
        when = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(days=int(days.group(1)))
        return when.strftime("%Y-%m-%dT%H:%M:%S")
    if not _DATE.match(text):
        raise UsageError(f"--since {text!r}: expected a UTC date such as 2026-01-10, a time such as "
                         "2026-01-10T09:00, or a number of days such as 7d")
    try:
        _dt.date.fromisoformat(text[:10])
    except ValueError:
        raise UsageError(f"--since {text!r}: {text[:10]} is not a calendar date") from None
    return text.replace(" ", "T").rstrip("Z")


__all__ = [
    "DEFAULT_FILE_NAME", "Filters", "History", "HistoryError", "MeasurementPoint", "MeasurementRow", "RunRow",
    "URL_ENV", "default_url", "open_history", "parse_since", "redact", "resolve_url", "rows_from_results",
    "station_url", "url_problem",
]
