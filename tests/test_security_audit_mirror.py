"""Issue 18, finding 4 completed: the audit trail mirrored into the history database, append-only.

Attacks on the file that the chain alone cannot see — the last entries cut off, the chain
rewritten with fresh hashes, the whole log replaced — are found by `rig audit verify` against the
mirror (exit 1, naming what happened), and `rig audit mirror` refuses to copy a file that
disagrees. The table refuses UPDATE and DELETE (SQLite and PostgreSQL triggers); on PostgreSQL the
rigs' role may only SELECT and INSERT it (a real server; skipped with the reason when absent).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from reports import audit
from reports.canonical import canonical_json
from rig.cli.main import main
from rig.fleet.history_audit import POSTGRES_SETUP, TABLE, compare
from tests.test_history import postgres_admin_url, postgres_url  # noqa: F401 - the PostgreSQL fixtures


def rig(*argv: Any) -> int:
    return main([str(a) for a in argv])


@pytest.fixture
def trail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, station_writer: Any) -> dict[str, Any]:
    """A station whose audit trail is mirrored into its SQLite history; five entries, mirrored."""
    for var in ("RIG_AUDIT_LOG", "RIG_HISTORY_URL", "RIG_STATION"):
        monkeypatch.delenv(var, raising=False)
    log, db = tmp_path / "audit.jsonl", tmp_path / "history.sqlite3"
    for n in range(5):
        audit.append_event(log, "run_finished", run_id=f"r{n}", outcome="PASS")
    station = station_writer(tmp_path, set={"station.audit_log": str(log), "history.url": f"sqlite:///{db}",
                                            "history.audit_mirror": True})
    assert rig("audit", "mirror", "--station", station) == 0
    return {"log": log, "db": db, "station": station}


def rewrite(log: Path, keep: int, change: dict[str, Any] | None = None, *, from_first: bool = False) -> None:
    """The attacker's tool: entries after ``keep`` re-chained with fresh hashes (and an edit)."""
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    prev = audit.GENESIS if from_first else entries[keep - 1]["hash"]
    start = 0 if from_first else keep
    out = entries[:start]
    for entry in entries[start:]:
        entry = {**entry, "prev": prev, "data": {**entry["data"], **(change or {})}}
        if from_first:
            entry["t_utc"] = "2020-01-01T00:00:00.000000Z"
        entry["hash"] = audit.entry_hash(entry)
        prev = entry["hash"]
        out.append(entry)
    log.write_bytes(b"".join(canonical_json(e) + b"\n" for e in out))


def verify(trail: dict[str, Any], capsys: pytest.CaptureFixture[str], *extra: Any) -> tuple[int, str]:
    capsys.readouterr()
    code = rig("audit", "verify", "--station", trail["station"], *extra)
    return code, capsys.readouterr().out


def test_mirrored_log_verifies_and_new_entries_are_copied(trail: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out = verify(trail, capsys)
    assert code == 0 and "mirror sqlite:///" in out and "5 entries agree" in out
    audit.append_event(trail["log"], "signature", envelope_sha256="0" * 64)
    assert rig("audit", "mirror", "--station", trail["station"]) == 0
    assert "1 new entries copied" in capsys.readouterr().out
    with sqlite3.connect(trail["db"]) as db:
        assert db.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0] == 6


def test_a_cut_log_is_found(trail: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    lines = trail["log"].read_bytes().splitlines(keepends=True)
    trail["log"].write_bytes(b"".join(lines[:-2]))  # head -n -2
    assert rig("audit", "verify", trail["log"]) == 0  # the file alone still chains: the old hole
    code, out = verify(trail, capsys)
    assert code == 1 and "the mirror holds entries up to 5, the file ends at entry 3: the log was cut" in out
    assert rig("audit", "mirror", "--station", trail["station"]) == 1
    assert "nothing was copied" in capsys.readouterr().out


def test_a_rewritten_chain_is_found(trail: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    rewrite(trail["log"], keep=3, change={"outcome": "FAIL"})  # run_finished of r3, r4 turned into FAIL
    assert rig("audit", "verify", trail["log"]) == 0
    code, out = verify(trail, capsys)
    assert code == 1 and "entry 4 differs from the mirror's copy" in out and "rewritten from there" in out


def test_a_log_rewritten_from_its_first_entry_is_found(trail: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    rewrite(trail["log"], keep=0, from_first=True)
    assert rig("audit", "verify", trail["log"]) == 0
    code, out = verify(trail, capsys)
    assert code == 1 and "rewritten from its first entry, or replaced" in out


def test_the_mirror_table_refuses_update_and_delete(trail: dict[str, Any]) -> None:
    with sqlite3.connect(trail["db"]) as db:
        for statement in (f"UPDATE {TABLE} SET hash = 'x' WHERE seq = 5", f"DELETE FROM {TABLE} WHERE seq > 3"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                db.execute(statement)
        assert db.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0] == 5


def test_signing_and_key_events_are_copied_to_the_mirror(trail: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                 station_writer: Any, tmp_path: Path) -> None:
    """`rig report sign` and `rig keys` at a mirrored station copy their entries at once."""
    from reports.bundle import build_bundle
    from reports.key_registry import Registry
    from reports.synthetic import make_signer, write_record

    registry = Registry(tmp_path / "keys" / "registry.json")
    make_signer(registry, tmp_path / "keys", "demo.tech", "Jane Doe", ["performed_by"])
    station = station_writer(tmp_path, name="signing.toml", set={
        "station.audit_log": str(trail["log"]), "history.url": f"sqlite:///{trail['db']}", "history.audit_mirror": True,
        "station.key_registry": str(registry.path), "signing.admin_keys": list(registry.pinned)})
    monkeypatch.setenv("RIG_KEY_PASSPHRASE", "correct horse battery staple")
    bundle = build_bundle(write_record(tmp_path / "runs" / "r1", "PASS", duration_s=60.0), audit_log=trail["log"])
    assert rig("report", "sign", bundle, "--role", "performed_by", "--key", tmp_path / "keys" / "demo.tech.key",
               "--station", station) == 0
    with sqlite3.connect(trail["db"]) as db:
        kinds = [json.loads(e)["kind"] for (e,) in db.execute(f"SELECT entry FROM {TABLE} ORDER BY seq")]
    assert kinds[-1] == "signature" and len(kinds) == len(trail["log"].read_text().splitlines())
    # a registry event (`rig keys revoke`) is copied at once too
    monkeypatch.setenv("RIG_ADMIN_PASSPHRASE", "correct horse battery staple")
    assert rig("keys", "revoke", "demo.tech", "--reason", "left the lab", "--admin-key",
               tmp_path / "keys" / "registry-admin.key", "--station", station) == 0
    with sqlite3.connect(trail["db"]) as db:
        last = db.execute(f"SELECT entry FROM {TABLE} ORDER BY seq DESC LIMIT 1").fetchone()[0]
    assert json.loads(last)["kind"] == "key_revoked"


# -- PostgreSQL: the rigs' role without UPDATE/DELETE -----------------------------------------------


def test_postgres_mirror_role_can_only_append(postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    import psycopg

    from rig.fleet.history import open_history

    base, _, db = postgres_url.rpartition("/")
    station_url = f"{base.replace('rig@', 'rig_station@')}/{db}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:  # the administrator, once
        admin.execute("CREATE ROLE rig_station LOGIN")
        admin.execute("GRANT CREATE ON SCHEMA public TO rig_station")  # the rigs own their history tables
        for statement in POSTGRES_SETUP.format(role="rig_station").split(";\n"):
            admin.execute(statement)
    log = tmp_path / "audit.jsonl"
    for n in range(4):
        audit.append_event(log, "run_finished", run_id=f"r{n}", outcome="PASS")
    assert rig("audit", "mirror", log, "--history", station_url) == 0
    with psycopg.connect(station_url, autocommit=True) as rig_role:
        assert rig_role.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0] == 4
        for statement in (f"UPDATE {TABLE} SET hash = 'x'", f"DELETE FROM {TABLE}", f"TRUNCATE {TABLE}",
                          f"DROP TRIGGER {TABLE}_no_change ON {TABLE}", f"DROP TABLE {TABLE}"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                rig_role.execute(statement)
    with psycopg.connect(postgres_url, autocommit=True) as owner:  # even its owner meets the triggers
        for statement in (f"UPDATE {TABLE} SET hash = 'x'", f"DELETE FROM {TABLE}", f"TRUNCATE {TABLE}"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                owner.execute(statement)
    log.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[:2]))  # cut
    capsys.readouterr()
    assert rig("audit", "verify", log, "--mirror", "--history", station_url) == 1
    assert "the log was cut" in capsys.readouterr().out
    with open_history(station_url) as history:
        assert not compare(history, log).ok


def test_a_run_copies_its_entries_to_the_mirror(tmp_path: Path, station_writer: Any) -> None:
    """`rig run` at a mirrored station: run_started, run_finished and the report build reach the
    mirror when the command ends (so a cut right after a run is found)."""
    from tests.cli import run_rig

    log, db = tmp_path / "audit.jsonl", tmp_path / "history.sqlite3"
    station = station_writer(tmp_path, set={"station.audit_log": str(log), "history.url": f"sqlite:///{db}",
                                            "history.audit_mirror": True})
    done = run_rig("run", "delivery_check", "--station", str(station), "--param", "duration_min=6", "--plain",
                   "--operator", "T. Tester", "--answer", "item_serial=NE1000-SIM-0001", "--answer", "setup=done",
                   clean_rig_vars=True)
    assert done.returncode == 0, done.stdout + done.stderr
    with sqlite3.connect(db) as conn:
        kinds = [json.loads(e)["kind"] for (e,) in conn.execute(f"SELECT entry FROM {TABLE} ORDER BY seq")]
    assert kinds[:2] == ["run_started", "run_finished"] and len(kinds) == len(log.read_text().splitlines())
