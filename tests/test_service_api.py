"""The bench service (rig serve) through its JSON API and event stream, on the simulated bench in
virtual time: a run from the service is the run `rig run` makes; bad requests are refused before
anything starts; abort ends in the read-back safe state; one job at a time; streams replay."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from reports.verify import verify_bundle
from rig.cli.main import main as rig_main
from rig.record import read_record
from rig.service.openapi import PATHS
from rig.station.lock import StationBusy, StationLock
from tests.panel_fixtures import PanelServer

# Runs on the simulated bench under a loaded machine (module fixtures included): waits are conditions.
pytestmark = pytest.mark.timeout(300)

SERIAL = {"item_serial": "NE1000-SIM-0001"}
SHORT = {"duration_min": "2", "rate_ml_h": "6", "settle_s": "5", "sample_interval_s": "10"}


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory, station_writer) -> Path:
    return station_writer(tmp_path_factory.mktemp("panel"))


@pytest.fixture(scope="module")
def panel(station: Path):
    with PanelServer(station) as server:
        yield server


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


@pytest.mark.timeout(600)  # a loaded 2-core machine: every wait is for a condition
def test_a_run_from_the_service_is_the_run_rig_run_makes(panel: PanelServer, station_writer, tmp_path: Path) -> None:
    client = panel.client()
    job = client.submit("delivery_check", **SHORT, **SERIAL)
    events = client.follow(job["id"], answers={"setup": "done"})
    seen = types(events)
    for kind in ("run_start", "step", "tick", "points", "balance", "measurement", "prompt", "prompt_answered",
                 "outcome", "safe_state", "report", "job_done"):
        assert kind in seen, f"no {kind} event in {sorted(set(seen))}"
    done = events[-1]["summary"]
    assert done["outcome"] == "PASS", done["reason"]
    batches = [e for e in events if e["type"] == "points"]
    assert all(len(b["t"]) == len(b["p_up_kpa"]) == len(b["flow_ul_min"]) > 0 for b in batches)
    t = [x for b in batches for x in b["t"]]
    values = [x for b in batches for key in ("p_up_kpa", "p_down_kpa", "flow_ul_min") for x in b[key]]
    assert all(isinstance(v, float) for v in values)
    assert t == sorted(t)
    # one point per DAQ chunk, evenly spaced, even when virtual time reads many chunks at once
    gaps = {round(b - a, 3) for a, b in zip(t, t[1:])}
    assert len(t) > 10 and len(gaps) == 1, gaps
    # ...and virtual time sends them batched: fewer events than points, each stamped with its arrival
    assert len(batches) < len(t) and all(isinstance(b["at_ms"], float) for b in batches)
    readings = [e for e in events if e["type"] == "balance"]
    assert all(len(b["t"]) == len(b["mass_g"]) > 0 for b in readings)
    safe = next(e for e in events if e["type"] == "safe_state")
    assert safe["confirmed"] is True and safe["instruments"]["pump"]

    record = read_record(panel.station.runs_dir / job["run_id"])
    assert record.outcome == "PASS"
    entries = {e["step"]: e for e in record.of_type("operator_entry")}
    user = client.get("/api/session").json()["user"]
    assert entries["setup"]["answered_by"] == user and entries["setup"]["via"] == "panel"
    assert entries["item_serial"]["answer"] == "NE1000-SIM-0001" and "panel form" in entries["item_serial"]["via"]
    params = record.of_type("run_started")[0]["parameters"]
    assert params["duration_min"]["value"] == 2.0 and "panel form" in params["duration_min"]["source"]
    bundle = panel.station.runs_dir / job["run_id"] / "report"
    assert verify_bundle(bundle, None, allow_unsigned=True).ok

    # The same procedure through `rig run` on another station file writes the same kinds of lines.
    other = station_writer(tmp_path)
    args = ["run", "delivery_check", "--station", str(other), "--plain", "--answer", "setup=done",
            "--answer", "item_serial=NE1000-SIM-0001", *[f"--param={k}={v}" for k, v in SHORT.items()]]
    assert rig_main(args) == 0
    (cli_run,) = [p for p in (other.parent / "runs").iterdir() if (p / "record.jsonl").is_file()]
    cli_types = [e["type"] for e in read_record(cli_run).events]
    assert sorted(set(cli_types)) == sorted({e["type"] for e in record.events})
    assert len(cli_types) == len(record.events)


def test_bad_parameters_are_refused_per_field_before_anything_starts(panel: PanelServer) -> None:
    client = panel.client()
    def run_folders() -> set[Path]:
        return set(panel.station.runs_dir.glob("*/record.jsonl"))

    before = run_folders()
    r = client.post("/api/jobs", {"procedure": "delivery_check",
                                  "fields": {"rate_ml_h": "0,5", "duration_min": "99999", "item_serial": "bad serial!"}})
    assert r.status_code == 422
    fields = r.json()["fields"]
    assert "decimal comma" in fields["rate_ml_h"]
    assert "out of range" in fields["duration_min"] and "1 to 1440 min" in fields["duration_min"]
    assert "does not match" in fields["item_serial"]
    r = client.post("/api/jobs", {"procedure": "delivery_check",
                                  "fields": {"rate_ml_h": "0.05", "duration_min": "1", **SERIAL}})
    assert r.status_code == 422 and "raise the rate or the duration" in r.json()["form"]
    r = client.post("/api/jobs", {"procedure": "delivery_chek", "fields": {}})
    assert r.status_code == 422 and "did you mean delivery_check" in r.json()["error"]
    r = client.post("/api/jobs", {"procedure": "delivery_check", "fields": SERIAL, "answers": {"setpu": "done"}})
    assert r.status_code == 422 and "no operator step of that name" in r.json()["error"]
    assert run_folders() == before
    assert client.get("/api/jobs").json()["jobs"] == [] or all(
        j["label"] != "delivery_chek" for j in client.get("/api/jobs").json()["jobs"])


def test_abort_ends_in_the_read_back_safe_state(panel: PanelServer) -> None:
    client = panel.client()
    job = client.submit("delivery_check", duration_min="600", **SERIAL, answers={"setup": "done"})
    events = client.follow(job["id"], abort_on="points")
    done = events[-1]["summary"]
    assert done["outcome"] == "ABORTED" and "aborted from the panel by" in done["reason"]
    safe = next(e for e in events if e["type"] == "safe_state")
    assert safe["confirmed"] is True
    assert safe["instruments"]["pump"] and safe["instruments"]["daq"]
    marker = next(e for e in events if e["type"] == "event" and e["kind"] == "abort")
    assert marker["marker"] is True
    record = read_record(panel.station.runs_dir / job["run_id"])
    assert record.outcome == "ABORTED"
    assert record.of_type("safe_state")[-1]["confirmed"] is True


def test_operator_answers_are_checked_and_the_run_keeps_waiting(panel: PanelServer) -> None:
    client = panel.client()
    job = client.submit("delivery_check", **SHORT, **SERIAL)
    replies = []
    for event in client.events(job["id"]):
        if event["type"] == "prompt":
            replies.append(client.post(f"/api/jobs/{job['id']}/answer", {"step": "setup", "answer": "maybe"}))
            replies.append(client.post(f"/api/jobs/{job['id']}/answer", {"step": "tare", "answer": "done"}))
            assert client.get(f"/api/jobs/{job['id']}").json()["prompt"]["step"] == "setup"
            replies.append(client.post(f"/api/jobs/{job['id']}/answer", {"step": "setup", "answer": "done"}))
        if event["type"] == "job_done":
            break
    assert replies[0].status_code == 422 and "acknowledge with 'done'" in replies[0].json()["error"]
    assert replies[1].status_code == 409 and "waiting for 'setup'" in replies[1].json()["error"]
    assert replies[2].status_code == 200
    assert event["summary"]["outcome"] == "PASS"


def test_jobs_run_one_at_a_time_and_a_queued_job_can_be_cancelled(panel: PanelServer) -> None:
    client = panel.client()
    first = client.submit("delivery_check", **SHORT, **SERIAL, answers={"setup": "done"})
    second = client.submit("delivery_check", **SHORT, **SERIAL, answers={"setup": "done"})
    third = client.submit("delivery_check", **SHORT, **SERIAL, answers={"setup": "done"})
    assert client.post(f"/api/jobs/{third['id']}/abort").status_code == 202
    assert client.get(f"/api/jobs/{third['id']}").json()["state"] == "cancelled"
    client.follow(second["id"])
    a, b = (client.get(f"/api/jobs/{j['id']}").json() for j in (first, second))
    assert a["outcome"] == b["outcome"] == "PASS"
    assert a["finished_utc"] <= b["started_utc"]
    assert not (panel.station.runs_dir / third["run_id"]).exists()


def test_event_stream_replays_after_last_event_id(panel: PanelServer) -> None:
    client = panel.client()
    job = client.submit("delivery_check", **SHORT, **SERIAL, answers={"setup": "done"})
    every = client.follow(job["id"])
    middle = every[len(every) // 2]["seq"]
    rest = []
    with client.http.stream("GET", f"/api/events?job={job['id']}", headers={"Last-Event-ID": str(middle)}) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                rest.append(json.loads(line[6:]))
                if rest[-1]["type"] == "job_done":
                    break
    assert [e["seq"] for e in rest if e.get("job")] == [e["seq"] for e in every if e["seq"] > middle and e.get("job")]


def test_a_client_going_away_does_not_touch_the_run(panel: PanelServer) -> None:
    client = panel.client()
    job = client.submit("delivery_check", **SHORT, **SERIAL, answers={"setup": "done"})
    for event in client.events(job["id"]):
        if event["type"] == "points":
            break  # the stream is closed here, mid-run
    client.http.close()
    watcher = panel.client()
    assert watcher.follow(job["id"])[-1]["summary"]["outcome"] == "PASS"


def test_openapi_describes_every_api_route(panel: PanelServer) -> None:
    from starlette.routing import Route

    from rig.service import api

    spec = panel.client().get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    routes = {(r.path, m.lower()) for r in api.routes(panel.service) if isinstance(r, Route)
              for m in r.methods or () if m != "HEAD"}
    described = {(p, m) for p, ops in PATHS.items() for m in ops if m in ("get", "post")}
    assert routes == described


def test_a_second_owner_of_the_station_is_refused(panel: PanelServer, capsys, monkeypatch) -> None:
    monkeypatch.setenv("RIG_LOCK_DIR", str(panel.lock_dir))  # the module's service took it there
    with pytest.raises(StationBusy) as err:
        with StationLock.acquire(panel.station, owner="another rig serve"):
            pass
    assert f"rig serve {panel.url}" in str(err.value)
    code = rig_main(["run", "delivery_check", "--station", str(panel.station.path), "--answer", "setup=done",
                     "--answer", "item_serial=SN-2"])
    assert code == 2 and f"rig serve {panel.url}" in capsys.readouterr().err


def test_station_status_shows_instruments_calibration_and_lock(panel: PanelServer) -> None:
    status = panel.client().get("/api/station").json()
    assert status["station"]["id"] == panel.station.id and status["station"]["mode"] == "sim"
    assert status["lock"]["pid"] > 0
    names = {i["name"] for i in status["instruments"]}
    assert names == set(panel.station.instruments)
    assert all("calibration_overdue" in i for i in status["instruments"])


def test_rig_run_via_url_shows_the_run_and_returns_its_exit_code(panel: PanelServer, capsys) -> None:
    args = ["run", "delivery_check", "--via", panel.url, "--plain", "--answer", "setup=done",
            "--answer", "item_serial=NE1000-SIM-0001", *[f"--param={k}={v}" for k, v in SHORT.items()]]
    code = rig_main(args)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "submitted job" in out and "step 2/7 tare_balance: started" in out and "PASS:" in out
    assert "measurement delivered_volume_ml" in out or "measurement " in out
    r = rig_main(["run", "delivery_check", "--via", panel.url, "--param", "rate_ml_h=fast",
                  "--answer", "item_serial=NE1000-SIM-0001"])
    assert r == 2
    assert "rate_ml_h" in capsys.readouterr().err


def test_nightly_via_url_runs_the_suite_on_the_service(panel: PanelServer, tmp_path: Path, capsys) -> None:
    suites = panel.station.path.parent / "suites"
    suites.mkdir(exist_ok=True)
    (suites / "tiny.toml").write_text(
        '[suite]\nname = "tiny"\nbudget_min = 30\n\n[[run]]\nprocedure = "delivery_check"\n'
        '[run.params]\nduration_min = 2\nrate_ml_h = 6\nsettle_s = 5\n'
        '[run.answers]\nitem_serial = "NE1000-SIM-0001"\nsetup = "done"\n')
    code = rig_main(["nightly", "--via", panel.url, "--suite", "tiny.toml", "--unsigned"])
    captured = capsys.readouterr()
    out = captured.out
    assert "nightly" in out and "delivery_check" in out, captured.err
    assert code == 0, out


@pytest.mark.timeout(600)  # a loaded 2-core machine: every wait is for a condition
def test_stopping_the_service_aborts_the_running_procedure_to_its_safe_state(tmp_path: Path, station_writer) -> None:
    import signal
    import socket
    import subprocess
    import sys
    import time

    from tests.panel_fixtures import PanelClient

    station = station_writer(tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "rig", "serve", "--station", str(station), "--port", str(port),
                             "--no-check"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 240  # a loaded 2-core machine starts Python slowly
        while True:
            try:
                client = PanelClient(url)
                if client.csrf:
                    break
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "rig serve did not come up"
            time.sleep(0.2)
        job = client.submit("delivery_check", duration_min="600", **SERIAL, answers={"setup": "done"})
        for event in client.events(job["id"]):
            if event["type"] == "points":
                break
        client.http.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    record = read_record(tmp_path / "runs" / job["run_id"])
    assert record.outcome == "ABORTED" and "shutting down" in record.reason
    assert record.of_type("safe_state")[-1]["confirmed"] is True


def test_every_page_renders(panel: PanelServer) -> None:
    client = panel.client()
    job = client.submit("delivery_check", **SHORT, **SERIAL, answers={"setup": "done"})
    client.follow(job["id"])
    pages = {
        "/": ["SIM-BENCH-01", "delivery_check", "Calibration due"],
        "/procedures/delivery_check": ["rate_ml_h", "mL/h", "a number from 0.05 to 10 mL/h", "Serial number"],
        f"/jobs/{job['id']}": ["ABORT", "plot-pressure", "prompt"],
        "/runs": [job["run_id"], "PASS"],
        f"/runs/{job['run_id']}": ["volume_error_pct", "Open report", "Verify"],
        "/trends?procedure=delivery_check": ["delivery_check · volume_error_pct", "data-trend"],
    }
    for path, texts in pages.items():
        r = client.get(path)
        assert r.status_code == 200, path
        assert "content-security-policy" in r.headers
        for text in texts:
            assert text in r.text, f"{path}: no {text!r}"
    report = client.get(f"/runs/{job['run_id']}/files/report/report.html")
    assert report.status_code == 200 and "delivery_check" in report.text
    assert client.get(f"/runs/{job['run_id']}/files/../../rig.toml").status_code == 404
    assert client.get("/procedure-images/setup_line.svg").headers["content-type"].startswith("image/svg")
    assert client.get("/static/vendor/uplot/uPlot.iife.min.js").status_code == 200
