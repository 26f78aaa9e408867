"""rig.fleet.report_worker: the nightly's bundles built in a child process are the bundles built
in process; a build error comes back as that error; a dead child never costs a run its report."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from reports.audit import verify_log
from reports.synthetic import write_record
from reports.verify import verify_bundle
from rig.fleet.report_worker import ReportBuildError, ReportWorker, serve
from rig.fleet.resources import children


def test_the_child_builds_a_verifiable_bundle_and_logs_it(tmp_path: Path, monkeypatch) -> None:
    from rig.fleet import report_worker

    monkeypatch.setattr(report_worker, "REPLY_TIMEOUT_S", 20.0)  # a reply never seen fails here, not in 10 min
    audit = tmp_path / "audit.jsonl"
    runs = [write_record(tmp_path / f"run-{k}", outcome, duration_s=300.0) for k, outcome in enumerate(("PASS", "FAIL"))]
    worker = ReportWorker()
    pids = set()
    try:
        for run in runs:  # two requests in flight, as the nightly makes them (run n, then finish n-1)
            assert worker.submit(run, audit) is True
            pids.add(worker._proc.pid)  # noqa: SLF001
        deadline = time.monotonic() + 120
        while not all((run / "report").is_dir() for run in runs) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # both replies are in the pipe before the first is read
        for run in runs:
            bundle = worker.build(run, audit)
            assert bundle == run / "report" and verify_bundle(bundle, None, allow_unsigned=True).ok
            verdict = json.loads((bundle / "results.json").read_bytes())["verdict"]["outcome"]
            assert verdict == ("PASS" if run.name == "run-0" else "FAIL")
        assert len(pids) == 1 and pids <= {c["pid"] for c in children()}  # the same child for both
    finally:
        worker.close()
    assert not pids & {c["pid"] for c in children()}  # closed and reaped: nothing outlives the suite
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [e["kind"] for e in entries].count("report_built") == 2
    assert verify_log(audit).ok


def test_a_build_error_comes_back_as_the_builds_error(tmp_path: Path) -> None:
    run = write_record(tmp_path / "run", "PASS", duration_s=300.0)
    (run / "report").mkdir()
    (run / "report" / "stray").write_text("x")  # the bundle's place is taken: the build refuses
    worker = ReportWorker()
    try:
        assert worker.submit(run, tmp_path / "audit.jsonl")
        with pytest.raises(ReportBuildError, match="already exists"):
            worker.build(run, tmp_path / "audit.jsonl")
    finally:
        worker.close()


def test_a_dead_child_means_the_bundle_is_built_in_process(tmp_path: Path) -> None:
    runs = [write_record(tmp_path / f"run-{k}", "PASS", duration_s=300.0) for k in range(2)]
    worker = ReportWorker()
    try:
        assert worker.submit(runs[0], None)
        worker._proc.kill()  # noqa: SLF001 - e.g. a signal to the whole process group
        worker._proc.wait()  # noqa: SLF001
        bundle = worker.build(runs[0], tmp_path / "audit.jsonl")
        assert verify_bundle(bundle, None, allow_unsigned=True).ok
        assert worker.submit(runs[1], None) is False  # broken: later reports are built here too
        assert verify_bundle(worker.build(runs[1], tmp_path / "audit.jsonl"), None, allow_unsigned=True).ok
    finally:
        worker.close()


def test_serve_answers_each_request_on_its_own_line(tmp_path: Path) -> None:
    run = write_record(tmp_path / "run", "PASS", duration_s=300.0)
    requests = io.StringIO(json.dumps({"run_dir": str(run), "audit_log": str(tmp_path / "a.jsonl")}) + "\n"
                           + json.dumps({"run_dir": str(tmp_path / "nothing"), "audit_log": None}) + "\n")
    replies = io.StringIO()
    serve(requests, replies)
    first, second = (json.loads(line) for line in replies.getvalue().splitlines())
    assert first == {"bundle": str(run / "report")}
    assert "nothing" in second["error"] and "bundle" not in second


def test_a_hung_child_is_killed_and_the_bundle_built_in_process(tmp_path: Path, monkeypatch) -> None:
    import signal

    from rig.fleet import report_worker

    run = write_record(tmp_path / "run", "PASS", duration_s=300.0)
    monkeypatch.setattr(report_worker, "REPLY_TIMEOUT_S", 0.5)
    worker = ReportWorker()
    try:
        assert worker.submit(run, None)
        worker._proc.send_signal(signal.SIGSTOP)  # noqa: SLF001 - alive, never answering
        bundle = worker.build(run, tmp_path / "audit.jsonl")
        assert verify_bundle(bundle, None, allow_unsigned=True).ok
        assert worker._proc.wait(timeout=30) == -signal.SIGKILL  # noqa: SLF001
    finally:
        worker.close()
