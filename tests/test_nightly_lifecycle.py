"""A nightly of the shipped suite through `rig nightly`: no traceback anywhere, every run's DAQ
listeners released, nothing written into a finished record, the process's threads, open files and
child processes back to where they were — and a hang-up in the middle changes nothing.

This is the clean-lifecycle check of the whole engine: many procedures in one process, one DAQ
that outlives each run. It takes about a minute (eight procedures in virtual time).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import time
import tomllib
from pathlib import Path
from typing import Any

from rig.record import read_record
from tests.cli import REPO, assert_no_traceback, start_rig

SHIPPED_SUITE = REPO / "suites" / "nightly.toml"
# The one thing a process keeps open for good after its first report: matplotlib's font cache
# (FT2Font holds its font files open; one per font, however many reports follow).
PROCESS_CACHES = ("/matplotlib/mpl-data/fonts/",)


def test_shipped_suite_nightly_is_clean_and_survives_a_hang_up(tmp_path: Path, station_file: Any) -> None:
    out = tmp_path / "nightly"
    proc = start_rig("nightly", "--station", str(station_file()), "--suite", str(SHIPPED_SUITE), "--unsigned",
                     "--out", str(out))
    log = out / "nightly.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "step 4/7 deliver: started" not in (log.read_text() if log.exists() else ""):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGHUP)  # the terminal closes during the first procedure
    stdout, stderr = proc.communicate(timeout=600)
    text = log.read_text()
    assert_no_traceback(stdout, stderr, text, what="rig nightly")
    assert proc.returncode == 0, text[-3000:]
    assert "the terminal hung up (SIGHUP): the nightly continues detached" in text

    summary = json.loads((out / "summary.json").read_text())
    shipped = tomllib.loads(SHIPPED_SUITE.read_text(encoding="utf-8"))["run"]
    assert [e["outcome"] for e in summary["entries"]] == ["PASS"] * len(shipped) and len(shipped) >= 9
    for entry in summary["entries"]:  # the record ends with run_finished: nothing wrote after it
        record = read_record(out / entry["run_dir"])
        assert record.events[-1]["type"] == "run_finished", entry["label"]
        assert not [e for e in record.of_type("event") if e.get("kind") in ("error", "warning")], entry["label"]

    resources = summary["resources"]
    before, after = resources["before"], resources["after"]
    assert resources["daq_listeners_after_each_run"] == [0] * len(shipped)
    assert after["threads"] == before["threads"], (before["thread_names"], after["thread_names"])
    assert (after["children"], after["zombies"]) == (before["children"], before["zombies"]) == (0, 0)
    added = collections.Counter(after["open_fd_targets"]) - collections.Counter(before["open_fd_targets"])
    assert all(any(cache in target for cache in PROCESS_CACHES) for target in added.elements()), added
    assert not collections.Counter(before["open_fd_targets"]) - collections.Counter(after["open_fd_targets"])
    assert f"resources before the suite: threads {before['threads']}, open fds {before['open_fds']}" in text
