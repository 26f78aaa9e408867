"""History database (SQLite and a real PostgreSQL server), concurrent writers, and the drift rule.

The PostgreSQL tests use $RIG_TEST_POSTGRES_URL (a user allowed to CREATE DATABASE), else start a
throwaway cluster from Debian's server binaries (/usr/lib/postgresql/*/bin) in a temporary
directory on a loopback port — as the ``postgres`` (or ``nobody``) user when running as root —
and skip with the reason when neither is available (.ci/install-postgres.sh installs them).
"""

from __future__ import annotations

import glob
import json
import math
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from reports.bundle import build_bundle
from reports.canonical import sha256_hex
from reports.results import build_results
from reports.synthetic import write_record
from rig.analysis.trends import (
    DRIFT,
    INSUFFICIENT,
    NEAR_LIMIT,
    OK,
    OUT_OF_LIMITS,
    assess,
    fit_line,
    sparkline,
)
from rig.errors import ConfigError, UsageError
from rig.fleet.history import (
    Filters,
    HistoryError,
    MeasurementRow,
    RunRow,
    open_history,
    parse_since,
    redact,
    station_url,
    url_problem,
)
from rig.record import read_record
from rig.station.config import load_station

REPO = Path(__file__).resolve().parents[1]
PG_ENV = "RIG_TEST_POSTGRES_URL"


# --------------------------------------------------------------------------------------------
# PostgreSQL: a real server, or a clear skip
# --------------------------------------------------------------------------------------------


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user(user: str | None, argv: list[str]) -> list[str]:
    return argv if user is None else ["runuser", "-u", user, "--", *argv]


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A URL of a PostgreSQL server whose user may create databases."""
    given = os.environ.get(PG_ENV, "").strip()
    if given:
        yield given
        return
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip(f"no PostgreSQL server: no /usr/lib/postgresql/*/bin/initdb and ${PG_ENV} unset "
                    "(install the Debian 'postgresql' package: .ci/install-postgres.sh)")
    user: str | None = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        for candidate in ("postgres", "nobody"):
            try:
                pwd.getpwnam(candidate)
                user = candidate
                break
            except KeyError:
                continue
        if user is None or shutil.which("runuser") is None:
            pytest.skip("running as root without a 'postgres'/'nobody' user or runuser to start PostgreSQL as")
    base = Path(tempfile.mkdtemp(prefix="rig-pg-"))
    data = base / "data"
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    port = _free_port()
    try:
        subprocess.run(_as_user(user, [str(bindir / "initdb"), "-D", str(data), "-U", "rig", "--auth=trust",
                                       "-E", "UTF8", "--no-sync"]), check=True, capture_output=True, timeout=120)
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40"
        subprocess.run(_as_user(user, [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"),
                                       "-o", options, "-w", "-t", "60", "start"]),
                       check=True, capture_output=True, timeout=90)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        log = (base / "server.log").read_text(errors="replace") if (base / "server.log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {exc} {getattr(exc, 'stderr', b'')!r} {log[-500:]}")
    try:
        yield f"postgresql://rig@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_user(user, [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty database for one test."""
    import psycopg
    from psycopg import sql

    name = f"rig_test_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = postgres_admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same tests on both backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.sqlite3'}"
    return request.getfixturevalue("postgres_url")


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


def make_run(run_id: str, *, station: str = "RIG-A", procedure: str = "delivery_check", started: str,
             outcome: str = "PASS", label: str | None = "delivery_check") -> RunRow:
    return RunRow(run_id=run_id, station_id=station, procedure_id=procedure, outcome=outcome, started_utc=started,
                  procedure_version="1.0.0", spec_version="1.0.0", reason="all within limits",
                  finished_utc=started.replace("T09", "T10"), report_id=f"RPT-{run_id}",
                  bundle_path=f"/archive/{run_id}/report", nightly_id="N-1", suite_label=label,
                  software_version="0.1.0", git_sha="f" * 40)


def make_measurements(error_pct: float) -> list[MeasurementRow]:
    return [
        MeasurementRow("volume_error_pct", "pass", error_pct, "%", -5.0, 5.0, "REQ-DEL-001", 0.02),
        MeasurementRow("flow_rate_error_pct", "fail", None, "%", -5.0, 5.0, "REQ-DEL-002", None),
        MeasurementRow("time_to_alarm_s", "pass", 90.0, "s", None, 600.0, None, 1.0),
    ]


def test_round_trip_every_field(history_url: str) -> None:
    run = make_run("R1", started="2026-01-10T09:00:00.000000Z")
    measurements = make_measurements(1.25)
    with open_history(history_url) as h:
        assert h.add_run(run, measurements) is True
    with open_history(history_url) as h:  # a new connection reads what the first one committed
        assert h.runs() == [run]
        assert h.measurements_of("R1") == measurements
        points = h.measurements(Filters(measurement="volume_error_pct"))
        assert [(p.run_id, p.value, p.unit, p.low, p.high, p.outcome, p.report_id, p.suite_label)
                for p in points] == [("R1", 1.25, "%", -5.0, 5.0, "pass", "RPT-R1", "delivery_check")]
        assert h.count() == (1, 3)


def test_filing_a_run_twice_changes_nothing(history_url: str) -> None:
    with open_history(history_url) as h:
        assert h.add_run(make_run("R1", started="2026-01-10T09:00:00.000000Z"), make_measurements(1.0))
        assert not h.add_run(make_run("R1", started="2026-01-11T09:00:00.000000Z"), make_measurements(2.0))
        assert h.count() == (1, 3)
        assert h.runs()[0].started_utc == "2026-01-10T09:00:00.000000Z"  # the first filing wins


def test_filters_and_order(history_url: str) -> None:
    with open_history(history_url) as h:
        for day, station, procedure, label in ((10, "RIG-A", "delivery_check", "dc"), (11, "RIG-B", "delivery_check", "dc"),
                                               (12, "RIG-A", "occlusion", "occ"), (13, "RIG-A", "delivery_check", "dc-slow")):
            h.add_run(make_run(f"R{day}", station=station, procedure=procedure, label=label,
                               started=f"2026-01-{day}T09:00:00.000000Z"), make_measurements(day / 10))
        assert [r.run_id for r in h.runs()] == ["R13", "R12", "R11", "R10"]  # newest first
        assert [r.run_id for r in h.runs(limit=2)] == ["R13", "R12"]
        assert [r.run_id for r in h.runs(Filters(station_id="RIG-A"))] == ["R13", "R12", "R10"]
        assert [r.run_id for r in h.runs(Filters(procedure_id="occlusion"))] == ["R12"]
        assert [r.run_id for r in h.runs(Filters(since=parse_since("2026-01-12")))] == ["R13", "R12"]
        assert [r.run_id for r in h.runs(Filters(suite_label="dc"))] == ["R11", "R10"]
        assert [r.run_id for r in h.runs(Filters(measurement="no_such"))] == []
        points = h.measurements(Filters(procedure_id="delivery_check", measurement="volume_error_pct",
                                        station_id="RIG-A"))
        assert [(p.run_id, p.value) for p in points] == [("R10", 1.0), ("R13", 1.3)]  # oldest first


def test_bundle_import_files_the_authoritative_results(history_url: str, tmp_path: Path) -> None:
    bundle = build_bundle(write_record(tmp_path / "runs" / "run-1", "FAIL", duration_s=120.0),
                          audit_log=tmp_path / "audit.jsonl")
    with open_history(history_url) as h:
        assert h.import_bundle(bundle, allow_unsigned=True) is True
        assert h.import_bundle(bundle, allow_unsigned=True) is False
        (run,) = h.runs()
        assert (run.run_id, run.station_id, run.procedure_id, run.outcome) == ("run-1", "SIM-BENCH-01",
                                                                               "flow_accuracy", "FAIL")
        assert run.bundle_path == str(bundle.resolve()) and run.report_id.startswith("RPT-run-1-")
        stored = {m.name: m for m in h.measurements_of("run-1")}
        assert stored["flow.mean_error_pct"].value == 7.2 and stored["flow.mean_error_pct"].outcome == "fail"
        assert stored["flow.mean_error_pct"].uncertainty == 0.8  # {"expanded": 0.8, "k": 2} -> U
        assert stored["flow.trumpet.P2.ep_max"].low is None and stored["flow.trumpet.P2.ep_max"].high == 10.0
        assert len(stored) == 12


def test_results_without_a_run_id_are_refused(tmp_path: Path) -> None:
    record = read_record(write_record(tmp_path / "run", "PASS", duration_s=60.0))
    results = build_results(record, report_id="", record_sha256=sha256_hex(b""))
    results["run"]["run_id"] = None
    with open_history(f"sqlite:///{tmp_path / 'h.sqlite3'}") as h, pytest.raises(UsageError, match="run id"):
        h.add_results(results)


# --------------------------------------------------------------------------------------------
# Concurrent writers: two processes, one database, no row lost
# --------------------------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys
    from rig.fleet.history import MeasurementRow, RunRow, open_history
    url, station, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open_history(url) as h:  # both processes may be the first: the schema is created under a lock
        for i in range(n):
            run = RunRow(run_id=f"{station}-{i}", station_id=station, procedure_id="delivery_check",
                         outcome="PASS", started_utc=f"2026-01-10T09:{i // 60:02d}:{i % 60:02d}.000000Z")
            h.add_run(run, [MeasurementRow(f"m{k}", "pass", float(i + k), "%", -5.0, 5.0) for k in range(4)])
""")


def test_two_concurrent_writers_lose_no_rows(history_url: str) -> None:
    n = 60
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, history_url, station, str(n)], env=env,
                                stderr=subprocess.PIPE, text=True) for station in ("RIG-A", "RIG-B")]
    errors = [w.communicate(timeout=120)[1] for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    with open_history(history_url) as h:
        assert h.count() == (2 * n, 2 * n * 4)
        for station in ("RIG-A", "RIG-B"):
            assert len(h.runs(Filters(station_id=station), limit=1000)) == n


def test_sqlite_history_runs_in_wal_mode(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "h.sqlite3"
    open_history(f"sqlite:///{path}").close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --------------------------------------------------------------------------------------------
# URLs and the station file
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url, problem", [
    ("sqlite:///history.sqlite3", None),
    ("sqlite:////var/lib/rig/history.sqlite3", None),
    ("postgresql://rig@db.lab/history", None),
    ("postgres://rig@db.lab:5433/history", None),
    ("sqlite://history.sqlite3", "not a SQLite URL"),
    ("mysql://rig@db/history", "unsupported scheme 'mysql'"),
    ("postgresql://rig@db.lab/", "names no database"),
    ("postgresql://rig:s3cret@db.lab/history", "contains a password"),
    ("", "is empty"),
])
def test_url_rules(url: str, problem: str | None) -> None:
    found = url_problem(url)
    assert (found is None) if problem is None else (problem in found and "s3cret" not in found)


def test_redact_hides_the_password() -> None:
    assert redact("postgresql://rig:s3cret@db/h") == "postgresql://rig:***@db/h"


def test_station_history_url_default_relative_and_invalid(station_file, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RIG_HISTORY_URL", raising=False)
    station = load_station(station_file())
    assert station_url(station) == f"sqlite:///{station.runs_dir / 'history.sqlite3'}"
    relative = load_station(station_file(set={"history.url": "sqlite:///db/h.sqlite3"}, name="rel.toml"))
    assert station_url(relative) == f"sqlite:///{relative.path.parent / 'db' / 'h.sqlite3'}"
    with pytest.raises(ConfigError, match=r"history\.url: .*unsupported scheme 'mysql'"):
        load_station(station_file(set={"history.url": "mysql://x/y"}, name="bad.toml"))
    with pytest.raises(ConfigError, match=r"history\.hostname: unknown key"):
        load_station(station_file(set={"history.hostname": "db"}, name="typo.toml"))
    monkeypatch.setenv("RIG_HISTORY_URL", "postgresql://rig@db.lab/history")
    assert station_url(station) == "postgresql://rig@db.lab/history"


def test_unreachable_postgres_is_a_clear_history_error() -> None:
    with pytest.raises(HistoryError, match=r"history postgresql://rig@127\.0\.0\.1:1/none cannot be opened"):
        open_history("postgresql://rig@127.0.0.1:1/none")


@pytest.mark.parametrize("text, expected", [("2026-01-10", "2026-01-10"), ("2026-01-10T09:00", "2026-01-10T09:00"),
                                            ("2026-01-10 09:00:00Z", "2026-01-10T09:00:00")])
def test_since_accepts_dates_and_times(text: str, expected: str) -> None:
    assert parse_since(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "10/01/2026"])
def test_since_rejects_other_forms(text: str) -> None:
    with pytest.raises(UsageError, match="--since"):
        parse_since(text)


# --------------------------------------------------------------------------------------------
# The drift rule, on hand-made series
# --------------------------------------------------------------------------------------------


def test_fit_line_is_exact_on_a_line() -> None:
    intercept, slope, se = fit_line([1.0, 1.5, 2.0, 2.5])
    assert (intercept, slope, se) == (1.0, 0.5, 0.0)


def test_steady_rise_toward_the_high_limit_is_drift() -> None:
    a = assess([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5], -5.0, 5.0)  # +0.5/run: crosses 5 in 3 runs
    assert a.status == DRIFT and a.direction == "high"
    assert a.runs_to_limit == pytest.approx(3.0)
    # +0.4/run from 2.8 crosses in 5.5 runs: beyond the 5-run horizon, so not (yet) drift
    assert assess([0.0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4, 2.8], -5.0, 5.0).status == OK


def test_steady_fall_toward_the_low_limit_is_drift_with_noise() -> None:
    noise = [0.05, -0.04, 0.03, -0.05, 0.04, -0.03, 0.02, -0.02]
    a = assess([-0.5 * i + n for i, n in enumerate(noise)], -5.0, 5.0)  # ends near -3.5, slope -0.5
    assert a.status == DRIFT and a.direction == "low"


def test_a_slope_that_will_not_reach_the_limit_within_the_horizon_is_ok() -> None:
    a = assess([0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35], -5.0, 5.0)  # 0.6 after 5 more runs
    assert a.status == OK


def test_noise_around_a_flat_mean_near_nothing_is_ok() -> None:
    a = assess([0.3, -0.4, 0.5, -0.2, 0.1, -0.5, 0.4, -0.1], -5.0, 5.0)
    assert a.status == OK


def test_noisy_series_without_a_significant_slope_is_not_drift_even_close_to_the_limit() -> None:
    # Last value 4.0 with a slight upward fit, but the scatter makes the slope insignificant (t < 2).
    a = assess([3.0, 1.0, 4.2, 0.8, 3.9, 1.2, 2.0, 4.0], -5.0, 5.0)
    assert a.status == OK


def test_last_values_in_the_outer_band_are_near_limit() -> None:
    # outer 20 % of the band = beyond ±4; no trend, but every recent value at the edge
    steady_edge = assess([4.3, 4.5, 4.2, 4.4, 4.3, 4.5, 4.2, 4.4], -5.0, 5.0)  # no trend, but at the edge
    assert steady_edge.status == NEAR_LIMIT and steady_edge.direction == "high"


def test_a_step_toward_the_limit_is_flagged_as_drift() -> None:
    """A sudden shift (e.g. a new syringe lot) also fits a significant slope toward the limit."""
    up = assess([0.0, 0.1, -0.1, 0.0, 4.2, 4.4, 4.1], -5.0, 5.0)
    down = assess([0.0] * 10 + [-4.3, -4.2, -4.5], -5.0, 5.0)
    assert (up.status, up.direction, down.status, down.direction) == (DRIFT, "high", DRIFT, "low")


def test_one_value_back_inside_clears_near_limit() -> None:
    assert assess([4.3, 4.5, 4.2, 4.4, 4.3, 4.5, 2.0, 4.4], -5.0, 5.0).status == OK


def test_latest_out_of_limits_and_too_few_runs() -> None:
    assert assess([0.0, 0.1, 5.5], -5.0, 5.0).status == OUT_OF_LIMITS
    assert assess([0.0, 0.1, -5.5], -5.0, 5.0).direction == "low"
    assert assess([0.0, 1.0, 2.0, 3.0], -5.0, 5.0).status == INSUFFICIENT
    assert assess([], -5.0, 5.0).status == INSUFFICIENT


def test_one_sided_limit_and_missing_values() -> None:
    rising = [100.0, 150.0, None, 200.0, 250.0, 300.0, 350.0, 400.0]  # time to alarm creeping to 600 s
    assert assess(rising, None, 600.0).status == DRIFT
    assert assess([100.0, 110.0, 95.0, 105.0, 100.0, 102.0], None, 600.0).status == OK


def test_sparkline() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([1.0, None, 1.0]) == "▄ ▄"
    assert sparkline([]) == ""
    assert len(sparkline(list(range(100)), width=30)) == 30
    assert not math.isnan(assess([1.0] * 8, -5.0, 5.0).slope_per_run or 0.0)


# --------------------------------------------------------------------------------------------
# `rig history`
# --------------------------------------------------------------------------------------------


def test_history_command_imports_and_shows_trends(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rig.cli.main import main

    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    assert main(["history", "--db", url]) == 0
    assert "No history yet" in capsys.readouterr().out
    bundles = [str(build_bundle(write_record(tmp_path / "runs" / f"run-{i}", "PASS", duration_s=60.0, seed=i),
                                audit_log=tmp_path / "audit.jsonl")) for i in range(3)]
    assert main(["history", "--db", url, "--allow-unsigned", "--import", *bundles, bundles[0]]) == 0
    out = capsys.readouterr().out
    assert "3 of 4 bundle(s) filed" in out and "already filed" in out
    with open_history(url) as h:  # a drifting series on top: the table must flag it
        for i, value in enumerate([0.0, 0.8, 1.6, 2.4, 3.2, 4.0]):
            h.add_run(make_run(f"D{i}", started=f"2026-02-{i + 1:02d}T09:00:00.000000Z"),
                      [MeasurementRow("volume_error_pct", "pass", value, "%", -5.0, 5.0)])
    assert main(["history", "--db", url, "--procedure", "delivery_check", "--measurement", "volume_error_pct"]) == 0
    out = capsys.readouterr().out
    assert "volume_error_pct: last 6 of 6 value(s)" in out
    assert "▁▂▄▅▇█" in out and "drift high" in out and "trending toward the high limit 5" in out
    assert main(["history", "--db", url, "--procedure", "flow_accuracy", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["runs"]) == 3 and {s["measurement"] for s in data["series"]} >= {"flow.mean_error_pct"}
    assert main(["history", "--db", url, "--since", "not-a-date"]) == 2
    assert "--since 'not-a-date'" in capsys.readouterr().err


def test_example_ci_configs_run_the_nightly_and_publish_junit() -> None:
    for name in ("github-actions-nightly.yml", "gitlab-ci-nightly.yml"):
        text = (REPO / "docs" / "ci" / name).read_text(encoding="utf-8")
        assert "rig nightly --suite suites/nightly.toml --out nightly-out" in text
        assert "nightly-out/junit.xml" in text and "RIG_STATION: /etc/rig/rig.toml" in text
