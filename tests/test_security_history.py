"""Attack tests, issue 18 findings 5 (unverified imports) and 6 (secrets in history URLs).

Finding 5: an edited bundle is not filed, a second bundle claiming a filed run id is refused, and
the nightly says ``history_filed`` only when the run was filed. Finding 6: a password in the URL
(user info or ``?password=``) never reaches stdout, stderr, the nightly's files or `ps`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reports.bundle import build_bundle, load_manifest
from reports.key_registry import Registry
from reports.signing import sign_bundle
from reports.synthetic import make_signer, write_record
from rig.cli.main import main
from rig.errors import UsageError
from rig.fleet.history import open_history
from rig.station.history_url import redact, url_problem

SECRET = "hunter2-s3cret"
QUERY_URL = f"postgresql://rig@127.0.0.1:1/rig?password={SECRET}&connect_timeout=1"
USERINFO_URL = f"postgresql://rig:{SECRET}@127.0.0.1:1/rig?connect_timeout=1"


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("RIG_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.delenv("RIG_HISTORY_URL", raising=False)
    registry = Registry(tmp_path / "keys" / "registry.json")
    key = make_signer(registry, tmp_path / "keys", "jdoe", "Jane Doe", ["performed_by"])
    return {"root": tmp_path, "registry": registry, "key": key, "url": f"sqlite:///{tmp_path / 'h.sqlite3'}"}


def signed_bundle(lab: dict, name: str = "r1", outcome: str = "PASS") -> Path:
    run = write_record(lab["root"] / "runs" / name, outcome, duration_s=60.0)
    bundle = build_bundle(run)
    sign_bundle(bundle, lab["key"], "performed_by", lab["registry"])
    return bundle


def history_import(lab: dict, *bundles: Path) -> int:
    return main(["history", "--db", lab["url"], "--registry", str(lab["registry"].path),
                 "--admin-key-id", lab["registry"].pinned[0], "--import", *map(str, bundles)])


# -- finding 5 ---------------------------------------------------------------------------------------


def test_edited_results_are_not_filed(lab: dict, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = signed_bundle(lab, outcome="FAIL")
    results = json.loads((bundle / "results.json").read_text())
    results["verdict"]["outcome"] = "PASS"  # the attack: make a failed run look good in the trends
    (bundle / "results.json").write_text(json.dumps(results))
    assert history_import(lab, bundle) == 1
    out = capsys.readouterr().out
    assert "does not verify, not filed" in out and "0 of 1 bundle(s) filed" in out
    with open_history(lab["url"]) as history:
        assert history.runs() == []


def test_valid_bundle_is_filed_with_its_manifest_hash(lab: dict) -> None:
    import hashlib
    import sqlite3

    bundle = signed_bundle(lab)
    assert history_import(lab, bundle, bundle) == 0
    _, manifest_bytes = load_manifest(bundle)
    with sqlite3.connect(lab["url"][len("sqlite:///"):]) as db:
        rows = db.execute("SELECT run_id, manifest_sha256 FROM run_bundles").fetchall()
    assert rows == [("r1", hashlib.sha256(manifest_bytes).hexdigest())]


def test_unsigned_bundle_needs_allow_unsigned(lab: dict, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = build_bundle(write_record(lab["root"] / "runs" / "u1", "PASS", duration_s=60.0))
    assert history_import(lab, bundle) == 1
    assert "no signatures" in capsys.readouterr().out
    assert main(["history", "--db", lab["url"], "--allow-unsigned", "--import", str(bundle)]) == 0


def test_conflicting_run_id_is_an_error_not_first_filing_wins(lab: dict, capsys: pytest.CaptureFixture[str]) -> None:
    first = signed_bundle(lab)
    assert history_import(lab, first) == 0
    other = write_record(lab["root"] / "elsewhere" / "r1", "FAIL", duration_s=60.0, run_id="r1", seed=9)
    second = build_bundle(other)
    sign_bundle(second, lab["key"], "performed_by", lab["registry"])
    capsys.readouterr()
    assert history_import(lab, second) == 1
    assert "run id r1 is already filed from the bundle" in capsys.readouterr().out
    with open_history(lab["url"]) as history:
        assert [r.outcome for r in history.runs()] == ["PASS"]


def test_nightly_marks_history_filed_only_when_filed(tmp_path: Path, station_file, monkeypatch: pytest.MonkeyPatch) -> None:
    from rig.fleet import nightly
    from rig.fleet.nightly import NightlyRunner
    from rig.fleet.suite import load_suite
    from rig.station.config import load_station
    from tests.test_history import make_run
    from tests.test_nightly import suite_file

    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    with open_history(url) as history:  # a run id that is already in the history
        history.add_run(make_run("DUP-1", started="2026-01-10T09:00:00.000000Z"), [])
    monkeypatch.setattr(nightly, "new_run_id", lambda procedure_id: "DUP-1")
    station = load_station(station_file())
    with open_history(url) as history:
        result = NightlyRunner(station=station, suite=load_suite(suite_file(tmp_path, ["dc"])), out_dir=tmp_path / "out",
                               signer=None, history=history).run()
    (entry,) = result.entries
    assert entry.history_filed is False
    assert any("not filed in the history" in p for p in entry.problems)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["entries"][0]["history_filed"] is False


# -- finding 6 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [QUERY_URL, USERINFO_URL])
def test_password_in_url_is_refused_in_the_station_file_and_redacted(url: str) -> None:
    assert "password" in str(url_problem(url))
    assert SECRET not in redact(url) and "***" in redact(url)


@pytest.mark.parametrize("url", [QUERY_URL, USERINFO_URL])
def test_password_on_the_command_line_is_refused_without_echoing_it(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "--db", url]) == 2
    err = capsys.readouterr().err
    assert "ps" in err and SECRET not in err


@pytest.mark.parametrize("url", [QUERY_URL, USERINFO_URL])
def test_password_from_the_environment_is_never_printed(url: str, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RIG_HISTORY_URL", url)
    code = main(["history"])
    captured = capsys.readouterr()
    assert code in (2, 3)  # unreachable database (or psycopg missing): an error, never a traceback
    assert SECRET not in captured.out + captured.err and "Traceback" not in captured.err


def test_nightly_writes_no_secret_anywhere(tmp_path: Path, station_file, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_nightly import suite_file

    monkeypatch.setenv("RIG_HISTORY_URL", QUERY_URL)
    out = tmp_path / "out"
    code = main(["nightly", "--station", str(station_file()), "--suite", str(suite_file(tmp_path, ["dc"])),
                 "--out", str(out), "--unsigned"])
    captured = capsys.readouterr()
    assert code == 3  # the history problem is reported
    assert SECRET not in captured.out + captured.err
    written = {p.name: p.read_text(encoding="utf-8", errors="replace") for p in out.rglob("*")
               if p.is_file() and p.suffix in (".log", ".json", ".html", ".xml")}
    assert {"nightly.log", "summary.json", "summary.html", "junit.xml"} <= set(written)
    assert [name for name, text in written.items() if SECRET in text] == []
    assert "***" in written["summary.json"] or "password" not in written["summary.json"]


def test_history_url_from_the_environment_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from rig.station.history_url import station_url

    monkeypatch.setenv("RIG_HISTORY_URL", USERINFO_URL)
    assert station_url(None) == USERINFO_URL
    assert "RIG_HISTORY_URL" not in os.environ  # children (bench, supervisor) never see it
    with pytest.raises(UsageError, match="ps"):
        station_url(None, QUERY_URL)
