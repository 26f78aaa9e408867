"""`rig nightly` on the simulated bench: injected faults, budget, signatures, JUnit, history, CLI.

The suites here use delivery_check with its shortest parameters (6 virtual minutes, ~1-2 s of wall
time each) so the whole file stays well under a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

from reports.key_registry import Registry
from reports.synthetic import make_signer
from reports.verify import verify_bundle
from rig import secret_env
from rig.fleet.history import Filters, open_history
from rig.fleet.nightly import NightlyRunner, StationSigner, load_station_signer
from rig.fleet.suite import load_suite
from rig.station.config import load_station
from tests.cli import assert_no_traceback, rig_env, run_rig

REPO = Path(__file__).resolve().parents[1]
PASSPHRASE = "correct horse battery staple"
ANSWERS = 'answers = { item_serial = "NE1000-SIM-0001", setup = "done" }'
SHORT = "params = { duration_min = 6, sample_interval_s = 60, settle_s = 5 }"


def suite_file(tmp_path: Path, labels: list[str], *, budget_min: float = 10, params: dict[str, str] | None = None,
               answers: str = ANSWERS) -> Path:
    runs = "".join(f'\n[[run]]\nprocedure = "delivery_check"\nlabel = "{label}"\n'
                   f"{(params or {}).get(label, SHORT)}\n{answers}\n" for label in labels)
    path = tmp_path / "suite.toml"
    path.write_text(f'[suite]\nname = "nightly-test"\nbudget_min = {budget_min}\n{runs}', encoding="utf-8")
    return path


@pytest.fixture
def lab(tmp_path: Path) -> dict:
    """A key registry with a station key allowed to sign as generated_by (low scrypt cost)."""
    registry = Registry(tmp_path / "keys" / "registry.json")
    key = make_signer(registry, tmp_path / "keys", "station-01", "Station RIG-NIGHT-01", ["generated_by"])
    return {"registry": registry, "key": key, "key_path": tmp_path / "keys" / "station-01.key"}


def junit_totals(path: Path) -> dict:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    return {"tests": int(root.get("tests")), "failures": int(root.get("failures")), "errors": int(root.get("errors")),
            "suites": [s.get("name") for s in root.findall("testsuite")]}


def test_nightly_with_an_injected_pump_fault(tmp_path: Path, station_file, lab: dict) -> None:
    """Entry 2 gets a worn drive (the sim pump displaces 80 % of what it counts): it fails on the
    balance, the entries around it pass, all three bundles are signed and verify, history is filed."""
    station = load_station(station_file(set={"station.id": "RIG-NIGHT-01"}))
    suite = load_suite(suite_file(tmp_path, ["before", "worn_drive", "after"]))
    url = f"sqlite:///{tmp_path / 'history.sqlite3'}"
    injected = []

    def inject(entry, bench) -> None:
        factor = 0.8 if entry.label == "worn_drive" else 1.0
        bench.sim.pump(displacement_factor=factor)
        injected.append((entry.label, factor))

    out = tmp_path / "out"
    signer = StationSigner(lab["key"], lab["registry"], lab["key_path"])
    with open_history(url) as history:
        result = NightlyRunner(station=station, suite=suite, out_dir=out, signer=signer, history=history,
                               before_entry=inject).run()
    assert injected == [("before", 1.0), ("worn_drive", 0.8), ("after", 1.0)]
    assert [(e.label, e.outcome) for e in result.entries] == [("before", "PASS"), ("worn_drive", "FAIL"), ("after", "PASS")]
    assert result.exit_code == 1
    assert all(e.safe_state_confirmed and not e.problems for e in result.entries)

    totals = junit_totals(out / "junit.xml")
    assert totals == {"tests": 9, "failures": 2, "errors": 0, "suites": ["before", "worn_drive", "after"]}
    failed = ET.parse(out / "junit.xml").getroot().find("testsuite[@name='worn_drive']")
    assert {c.get("name") for c in failed.iter("testcase") if c.find("failure") is not None} == {
        "volume_error_pct", "flow_rate_error_pct"}  # the pump's own count (pump_count_error_pct) still passes

    for e in result.entries:
        check = verify_bundle(e.bundle, lab["registry"])
        assert check.ok, check.reasons()
        assert [(s.statement["role"], s.statement["signer_id"]) for s in check.signatures] == [("generated_by", "station-01")]
        assert check.report_id == e.report_id

    with open_history(url) as history:
        runs = history.runs(Filters(nightly_id=result.nightly_id))
        assert sorted((r.suite_label, r.outcome, r.station_id) for r in runs) == [
            ("after", "PASS", "RIG-NIGHT-01"), ("before", "PASS", "RIG-NIGHT-01"), ("worn_drive", "FAIL", "RIG-NIGHT-01")]
        assert {r.bundle_path for r in runs} == {str(e.bundle.resolve()) for e in result.entries}
        assert history.count() == (3, 9)
        (worn,) = history.measurements(Filters(suite_label="worn_drive", measurement="volume_error_pct"))
        assert worn.value == pytest.approx(-20.0, abs=1.5) and worn.outcome == "fail"

    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_code"] == 1 and [e["outcome"] for e in summary["entries"]] == ["PASS", "FAIL", "PASS"]
    page = (out / "summary.html").read_text(encoding="utf-8")
    assert page.count("<svg") == 9 and "worn_drive" in page and "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert 'id="simulated"' in page and "SIMULATED: these runs used the simulated bench" in page
    assert page.count("NOT VALID FOR RELEASE: simulated data") == 3  # the release column of every entry
    log = (out / "nightly.log").read_text()
    assert "[2/3] worn_drive: FAIL" in log and "safe state confirmed (read back)" in log


def test_budget_spent_aborts_the_running_procedure_and_skips_the_rest(tmp_path: Path, station_file, lab: dict) -> None:
    """A 24-hour virtual delivery cannot finish within a 3 s budget: it ends ERROR (safe state
    confirmed, bundle signed), the two entries after it are recorded as not run (ERROR)."""
    station = load_station(station_file(without=("dmm", "daq")))
    long = "params = { duration_min = 1440, sample_interval_s = 1, settle_s = 5 }"
    suite = load_suite(suite_file(tmp_path, ["long", "next", "last"], budget_min=0.05, params={"long": long}))
    out = tmp_path / "out"
    with open_history(f"sqlite:///{tmp_path / 'h.sqlite3'}") as history:
        result = NightlyRunner(station=station, suite=suite, out_dir=out, history=history,
                               signer=StationSigner(lab["key"], lab["registry"], lab["key_path"])).run()
    long_entry, *skipped = result.entries
    assert long_entry.outcome == "ERROR" and "budget of 0.05 min was spent" in long_entry.reason
    assert long_entry.safe_state_confirmed and verify_bundle(long_entry.bundle, lab["registry"]).ok
    assert [(e.not_run, e.outcome, e.run_id) for e in skipped] == [(True, "ERROR", None)] * 2
    assert all("not run: the suite's wall-clock budget" in e.reason for e in skipped)
    assert result.exit_code == 3  # the budget, not the long run's own end, stopped it: see the reasons above
    assert junit_totals(out / "junit.xml")["errors"] >= 3
    assert "NOT_RUN" in (out / "junit.xml").read_text()


def test_an_instrument_error_does_not_stop_the_suite(tmp_path: Path, station_file) -> None:
    """The pump answers garbage in entry 1: ERROR, and its safe state cannot be confirmed (the pump
    cannot be read back); the bench is closed and reopened, and entry 2 passes."""
    station = load_station(station_file(without=("dmm", "daq")))
    suite = load_suite(suite_file(tmp_path, ["garbled", "recovered"]))

    def inject(entry, bench) -> None:
        if entry.label == "garbled":
            bench.sim.fault("pump", "garbage")

    out = tmp_path / "out"
    with open_history(f"sqlite:///{tmp_path / 'h.sqlite3'}") as history:
        result = NightlyRunner(station=station, suite=suite, out_dir=out, signer=None, history=history,
                               before_entry=inject).run()
    garbled, recovered = result.entries
    assert garbled.outcome == "ERROR" and "safe state NOT confirmed" in garbled.reason and "pump" in garbled.reason
    assert garbled.safe_state_confirmed is False
    assert recovered.outcome == "PASS" and recovered.safe_state_confirmed
    assert result.exit_code == 3
    log = (out / "nightly.log").read_text()
    assert "closing the bench (safe state not confirmed); the next procedure reopens it" in log
    assert "[1/2] garbled: safe state NOT CONFIRMED" in log
    assert all(e.verified and not e.signed for e in result.entries)  # --unsigned: integrity only


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------


def rig(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`rig` without the caller's $RIG_* settings (but with the per-test lock directory);
    fails the test on a traceback (tests/cli.py)."""
    return run_rig(*args, env=env, cwd=cwd, clean_rig_vars=True)


def test_refuses_to_start_without_a_station_key(tmp_path: Path, station_file) -> None:
    station = station_file()
    done = rig("nightly", "--station", str(station), "--suite", str(suite_file(tmp_path, ["a"])),
               "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "no station key: set $RIG_STATION_KEY" in done.stderr and "--unsigned" in done.stderr
    assert not (tmp_path / "out").exists()


def test_refuses_to_start_with_a_missing_operator_answer(tmp_path: Path, station_file) -> None:
    suite = suite_file(tmp_path, ["a"], answers='answers = { item_serial = "SN-1" }')
    done = rig("nightly", "--station", str(station_file()), "--suite", str(suite), "--unsigned",
               "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert 'run[0] (delivery_check).answers.setup: operator step "setup"' in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_refuses_a_key_the_registry_does_not_allow(tmp_path: Path, station_file) -> None:
    registry = Registry(tmp_path / "keys" / "registry.json")
    make_signer(registry, tmp_path / "keys", "jdoe", "Jane Doe", ["performed_by"])
    env = {"RIG_STATION_KEY": str(tmp_path / "keys" / "jdoe.key"), "RIG_KEY_PASSPHRASE": PASSPHRASE,
           "RIG_KEY_REGISTRY": str(registry.path)}
    station = station_file(set={"signing.admin_keys": list(registry.pinned)})
    done = rig("nightly", "--station", str(station), "--suite", str(suite_file(tmp_path, ["a"])), env=env)
    assert done.returncode == 2 and "may not sign as generated_by" in done.stderr


def test_two_stations_run_nightly_at_once_into_one_history(tmp_path: Path, station_writer, lab: dict) -> None:
    """Two `rig nightly` processes (two station files, two simulated benches) share one SQLite
    history: every run and measurement of both is there, each under its own station id."""
    url = f"sqlite:///{tmp_path / 'shared' / 'history.sqlite3'}"
    suite = suite_file(tmp_path, ["one", "two"])
    env = {"RIG_STATION_KEY": str(lab["key_path"]), "RIG_KEY_PASSPHRASE": PASSPHRASE,
           "RIG_KEY_REGISTRY": str(lab["registry"].path)}
    procs = []
    for station_id in ("RIG-A", "RIG-B"):
        station = station_writer(tmp_path / station_id, set={"station.id": station_id, "history.url": url,
                                                             "signing.admin_keys": list(lab["registry"].pinned)},
                                 without=("dmm", "daq"))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "rig", "nightly", "--station", str(station), "--suite", str(suite),
             "--out", str(tmp_path / station_id / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=rig_env(env, clean_rig_vars=True)))
    outputs = [p.communicate(timeout=120) for p in procs]
    for out, err in outputs:
        assert_no_traceback(out, err)
    assert [p.returncode for p in procs] == [0, 0], outputs
    with open_history(url) as history:
        assert history.count() == (4, 12)
        for station_id in ("RIG-A", "RIG-B"):
            runs = history.runs(Filters(station_id=station_id))
            assert sorted(r.suite_label for r in runs) == ["one", "two"]
            for run in runs:
                assert verify_bundle(Path(run.bundle_path), lab["registry"]).ok
    stdout = outputs[0][0]
    assert " nightly  [1/2] one: PASS" in stdout and " nightly  [2/2] two: report RPT-" in stdout
    shown = rig("history", "--db", url, "--station", "RIG-B", "--measurement", "volume_error_pct")
    assert shown.returncode == 0 and "RIG-B" in shown.stdout and "RIG-A" not in shown.stdout


def test_load_station_signer_checks_key_and_passphrase(tmp_path: Path, lab: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from rig.errors import UsageError

    monkeypatch.delenv("RIG_STATION_KEY", raising=False)
    monkeypatch.setenv("RIG_KEY_PASSPHRASE", PASSPHRASE)
    station = SimpleNamespace(admin_keys=lab["registry"].pinned, key_registry=None)
    signer = load_station_signer(str(lab["key_path"]), str(lab["registry"].path), station=station)
    assert signer.key.signer_id == "station-01"
    assert "RIG_KEY_PASSPHRASE" not in os.environ  # taken and scrubbed: children never inherit it
    secret_env.forget()
    monkeypatch.setenv("RIG_KEY_PASSPHRASE", PASSPHRASE)
    with pytest.raises(UsageError, match="no administrator key is pinned"):
        load_station_signer(str(lab["key_path"]), str(lab["registry"].path))  # a station without [signing]
    secret_env.forget()
    monkeypatch.delenv("RIG_KEY_PASSPHRASE", raising=False)
    with pytest.raises(UsageError, match=r"no passphrase in \$RIG_KEY_PASSPHRASE"):
        load_station_signer(str(lab["key_path"]), str(lab["registry"].path), station=station)


def test_sigterm_from_a_cancelled_ci_job_aborts_cleanly(tmp_path: Path, station_file) -> None:
    """SIGTERM mid-run: the running procedure ends ABORTED with its safe state confirmed and its
    bundle built; the rest are not run; JUnit and summary are still written; exit 3."""
    long = "params = { duration_min = 1440, sample_interval_s = 1, settle_s = 5 }"
    suite = suite_file(tmp_path, ["long", "next"], params={"long": long})
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "rig", "nightly", "--station", str(station_file(without=("dmm", "daq"))),
                             "--suite", str(suite), "--unsigned", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=rig_env(clean_rig_vars=True))
    try:
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        for line in proc.stdout:  # wait until the delivery is under way
            if "deliver: started" in line or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # a hung nightly must not outlive the test (its sim child exits with it)
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == 3, rest
    assert_no_traceback(rest)
    summary = json.loads((out / "summary.json").read_text())
    long_entry, next_entry = summary["entries"]
    assert (long_entry["outcome"], long_entry["safe_state_confirmed"], long_entry["verified"]) == ("ABORTED", True, True)
    assert "SIGTERM" in long_entry["reason"]
    assert (next_entry["outcome"], next_entry["not_run"]) == ("ABORTED", True)
    assert "NOT RUN (ABORTED)" in rest and junit_totals(out / "junit.xml")["errors"] >= 2
