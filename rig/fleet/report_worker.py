"""Report bundles built in a child process while the next procedure of a suite runs.

Why: a nightly spent a fifth of its wall time drawing report plots (matplotlib) between runs
while one of the two cores idled; a run is round trips to the bench, a report is CPU. Why a
process and not a thread: the GIL. A report thread holding it would add up to the interpreter's
switch interval to every bench round trip of the run beside it (thousands per run). Why a plain
child on a pipe and not multiprocessing: that leaves a resource-tracker process behind for the
rest of the nightly, and the suite's own check (no child outlives a run) would rightly flag it.

The bundle is the same: the child calls the same ``reports.bundle.build_bundle`` with the same
arguments (the audit log takes concurrent writers under its lock). Signing, verifying and filing
stay in the nightly's process, in suite order. When the child cannot be used (it could not
start, it died: a signal to the whole process group) the bundle is built in process instead, so
a run never loses its report to the worker.

    python -m rig.fleet.report_worker    (one JSON request per line on stdin, one reply per line)
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import IO, Any

from rig.errors import RigError
from rig.secret_env import child_environment


REPLY_TIMEOUT_S = 600.0  # a bundle takes seconds; a child silent this long is hung, not busy


class ReportBuildError(RigError):
    """The worker could not build the bundle; the message is the build's own error."""


def _build(run_dir: Path, audit_log: Path | None) -> Path:
    from reports.bundle import build_bundle

    return build_bundle(run_dir, audit_log=audit_log)


class ReportWorker:
    """One child, started on first use and stopped by ``close`` (before the nightly counts its
    child processes). It answers requests in the order they were made, and ``build`` is asked for
    them in that order (the nightly submits run n, then finishes run n-1)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._broken = False
        self._in_flight: deque[Path] = deque()  # the runs the child is building for, oldest first

    def submit(self, run_dir: Path, audit_log: Path | None) -> bool:
        """Start building in the child; False when it cannot be used (then ``build`` works here)."""
        if self._broken:
            return False
        try:
            if self._proc is None:
                # Unbuffered: with two requests in flight, a buffered reader could hold the second
                # reply while select() waits on the empty pipe for it.
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "rig.fleet.report_worker"], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, bufsize=0, env=child_environment())  # no secrets
            assert self._proc.stdin is not None
            request = {"run_dir": str(run_dir), "audit_log": None if audit_log is None else str(audit_log)}
            self._proc.stdin.write(json.dumps(request).encode() + b"\n")
            self._in_flight.append(Path(run_dir))
            return True
        except OSError:
            self._broken = True
            return False

    def build(self, run_dir: Path, audit_log: Path | None) -> Path:
        """The bundle: the child's, if it was given this run, or built here. A build error (a bad
        record, a full disk) is raised as it would be in process."""
        submitted = bool(self._in_flight) and self._in_flight[0] == Path(run_dir)
        if submitted:
            self._in_flight.popleft()
        if submitted and self._proc is not None and self._proc.stdout is not None:
            ready, _, _ = select.select([self._proc.stdout], [], [], REPLY_TIMEOUT_S)
            line = self._proc.stdout.readline() if ready else b""
            if not ready:  # hung: an unattended suite must not wait for it forever
                self._proc.kill()
            if line:
                reply = json.loads(line)
                if "bundle" in reply:
                    return Path(reply["bundle"])
                raise ReportBuildError(reply["error"])
            self._broken = True  # the child died with the request: build it (and any after it) here
            self._in_flight.clear()
        return _build(Path(run_dir), audit_log)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # end of requests: the child exits
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()


def serve(requests: IO[str], replies: IO[str]) -> None:
    """The child: build each requested bundle, reply with its path or the build's error."""
    from rig.station.bench import describe_error

    for line in requests:
        request = json.loads(line)
        try:
            bundle = _build(Path(request["run_dir"]), None if request["audit_log"] is None else Path(request["audit_log"]))
            reply: dict[str, Any] = {"bundle": str(bundle)}
        except Exception as exc:  # noqa: BLE001 - every failure goes back as the build's error
            reply = {"error": describe_error(exc)}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def main() -> None:
    # Ctrl-C and a hang-up reach the whole process group, but what they mean (abort the suite; go
    # on detached) is the nightly's to decide, never the worker's.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # A little below the run: when the bench answers, the run beside us should get a core first.
    # Not nice 19: on a saturated machine (CI, `make test-stress`) that starved the worker to ~1 % of
    # a core and the nightly then waited minutes for its reports.
    try:
        os.nice(5)
    except OSError:
        pass
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # anything printed while building is not a reply
    sys.stdout = sys.stderr
    serve(sys.stdin, replies)


if __name__ == "__main__":
    main()


__all__ = ["ReportBuildError", "ReportWorker", "serve"]
