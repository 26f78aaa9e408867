"""No traceback reaches a user unrecorded: an exception in a background thread during a run — a
DAQ chunk listener, any other thread — is an ``error`` event in the run record (with its
traceback) and a line in the nightly log, and the run ends ERROR; through `rig nightly`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rig.record import read_record
from tests.cli import run_rig

EXTRA = {"RIG_EXTRA_PROCEDURES": "tests.lifecycle.background_fault"}


def test_background_thread_failures_are_recorded_and_decide_the_outcome(tmp_path: Path, station_file: Any) -> None:
    runs = "".join(f'\n[[run]]\nprocedure = "background_fault"\nlabel = "{label}"\nparams = {{ fail = {fail} }}\n'
                   for label, fail in (("listener", 1), ("thread", 2), ("healthy", 0)))
    suite = tmp_path / "suite.toml"
    suite.write_text(f'[suite]\nname = "lifecycle"\nbudget_min = 10\n{runs}', encoding="utf-8")
    out = tmp_path / "out"
    done = run_rig("nightly", "--station", str(station_file(without=("dmm",))), "--suite", str(suite),
                   "--unsigned", "--out", str(out), env=EXTRA)  # fails on any traceback printed
    assert done.returncode == 3, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    listener, thread, healthy = summary["entries"]
    assert listener["outcome"] == "ERROR" and "ValueError: listener bug at sample 0" in listener["reason"]
    assert thread["outcome"] == "ERROR"
    assert thread["reason"].startswith("a background thread failed: thread helper died: RuntimeError: helper thread bug")
    assert healthy["outcome"] == "PASS"  # the failing listener left with its run
    for entry, needle in ((listener, "ValueError: listener bug"), (thread, "RuntimeError: helper thread bug")):
        errors = [e for e in read_record(out / entry["run_dir"]).of_type("event") if e["kind"] == "error"]
        assert errors and needle in errors[0]["detail"]
        assert errors[0]["traceback"].startswith("Traceback (most recent call last)")
    log = (out / "nightly.log").read_text()
    # the thread that reads the DAQ: the paced reader runs in the run's own thread in virtual time
    assert re.search(r"error: instruments\.daq \(thread [\w-]+\): daq: chunk listener .* failed: ValueError: listener bug", log)
    assert "error: thread helper died: RuntimeError: helper thread bug" in log
    assert "Traceback" not in log  # in the record, not in anybody's face
