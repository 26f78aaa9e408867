"""The job queue: runs (and nightly suites) submitted to the bench service, one at a time.

Why a queue with one worker thread: the service owns one bench; two procedures on it at once
would corrupt both (issue 13). A job is checked completely when it is submitted (the same checks
as `rig run`, so a bad parameter is refused with its field named before anything is queued), then
waits its turn. The worker runs it through ``rig.fleet.launch`` — the very code path of `rig run` —
so the record, the report and the safe-state guarantees are the same; a browser that goes away
changes nothing. Killing the service kills the run like a kill -9 of `rig run`: the run's
supervisor process puts the bench in its safe state and the record reads INCOMPLETE.
"""

from __future__ import annotations

import io
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import procedures
from rig.engine.signals import ABORTED, AbortFlag
from rig.errors import RigError, UsageError
from rig.fleet.launch import PreparedRun, ask_item, build_report, execute, prepare_run
from rig.record import read_record, utc_now
from rig.service.forms import FormCheck, check_form
from rig.service.hub import EventHub
from rig.service.live import PanelDisplay
from rig.service.panel_operator import PanelOperator
from rig.station.bench import describe_error
from rig.station.lock import StationLock
from rig.station.model import Station

QUEUED, RUNNING, FINISHED, CANCELLED = "queued", "running", "finished", "cancelled"
KEEP_STREAMS = 20  # finished jobs whose event streams stay replayable (their records stay on disk)


class FormRejected(UsageError):
    """A submission with problems; ``check`` says which field has which."""

    def __init__(self, check: FormCheck) -> None:
        parts = [*check.errors.values(), *([check.form_error] if check.form_error else [])]
        super().__init__("; ".join(parts))
        self.check = check


@dataclass
class Job:
    id: str
    kind: str  # "run" | "nightly"
    label: str  # procedure id, or the suite name
    submitted_by: str
    fields: dict[str, str] = field(default_factory=dict)
    state: str = QUEUED
    created_utc: str = field(default_factory=utc_now)
    started_utc: str | None = None
    finished_utc: str | None = None
    outcome: str | None = None
    reason: str = ""
    run_id: str | None = None
    run_dir: Path | None = None
    bundle: Path | None = None
    out_dir: Path | None = None  # a nightly's output folder
    safe_state: dict[str, Any] | None = None
    abort: AbortFlag = field(default_factory=AbortFlag)
    prepared: PreparedRun | None = None
    operator: PanelOperator | None = None
    display: PanelDisplay | None = None
    work: Callable[["Job"], None] | None = None

    def summary(self) -> dict[str, Any]:
        request = self.abort.requested
        return {
            "id": self.id, "kind": self.kind, "label": self.label, "submitted_by": self.submitted_by,
            "fields": self.fields, "state": self.state, "created_utc": self.created_utc,
            "started_utc": self.started_utc, "finished_utc": self.finished_utc,
            "outcome": self.outcome, "reason": self.reason, "run_id": self.run_id,
            "bundle": str(self.bundle) if self.bundle else None,
            "out_dir": str(self.out_dir) if self.out_dir else None,
            "abort_requested": request.reason if request else None,
            "safe_state": self.safe_state,
            "prompt": self.operator.pending if self.operator is not None else None,
        }


def read_safe_state(run_dir: Path) -> dict[str, Any] | None:
    """The run's recorded safe-state read-back (what the Abort button ends in)."""
    try:
        found = read_record(run_dir).of_type("safe_state")
    except (OSError, ValueError, RigError):
        return None
    if not found:
        return None
    last = found[-1]
    return {"confirmed": last.get("confirmed"), "instruments": last.get("instruments"),
            "error": last.get("error")}


class JobQueue:
    """Submissions, the worker thread, aborts and operator answers."""

    def __init__(self, station: Station, hub: EventHub) -> None:
        self.station = station
        self.hub = hub
        self.jobs: dict[str, Job] = {}
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._current: Job | None = None
        self._thread = threading.Thread(target=self._worker, name="rig-serve-jobs", daemon=True)
        self.after_job: Callable[[Job], None] | None = None  # e.g. refresh the station status
        self.lock: StationLock | None = None  # the station lock the service holds

    def start(self) -> None:
        self._thread.start()

    # -- submitting -----------------------------------------------------------------------------

    def _new_id(self) -> str:
        return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)

    def submit_run(self, procedure_id: str, values: dict[str, Any], user: str,
                   answers: dict[str, str] | None = None, answers_via: str = "", *,
                   operator: str | None = None) -> Job:
        """Check the form like `rig run` checks its options; FormRejected/UsageError if wrong.
        ``answers`` pre-supplies operator steps (`rig run --via URL --answer STEP=VALUE`).
        ``operator`` is the recorded operator identity (the account's printed name, which its key
        signs performed_by with); ``user`` the login that submitted."""
        procedure = procedures.load(procedure_id)
        check = check_form(procedure, values)
        if not check.ok:
            raise FormRejected(check)
        job = Job(self._new_id(), "run", procedure.id, user,
                  fields={k: str(v) for k, v in values.items() if k not in ("procedure", "csrf")})
        given = {**{str(k): str(v) for k, v in (answers or {}).items()}, **check.answers}
        via = {k: answers_via or f"pre-supplied ({user})" for k in answers or {}}
        via.update({k: f"panel form ({user})" for k in check.answers})
        job.prepared = prepare_run(
            procedure.id, check.param_items, self.station,
            lambda abort: PanelOperator(operator or user, self.hub, job.id, given, answers_via=via,
                                        abort_requested=abort.reason,
                                        before_prompt=lambda: job.display and job.display.flush_points()),
            abort=job.abort, param_source=f"panel form ({user})")
        job.operator = job.prepared.operator  # type: ignore[assignment]
        job.run_id = job.prepared.run_id
        job.run_dir = job.prepared.run_dir
        job.work = self._run_job
        return self._enqueue(job)

    def submit_nightly(self, suite_path: Path, unsigned: bool, user: str,
                       make_runner: Callable[[Job, io.TextIOBase], Any]) -> Job:
        """A nightly suite as one job; ``make_runner`` builds the NightlyRunner (checked now)."""
        job = Job(self._new_id(), "nightly", suite_path.stem, user,
                  fields={"suite": str(suite_path), "unsigned": str(unsigned).lower()})
        stream = _LineStream(self.hub, job.id)
        runner = make_runner(job, stream)
        job.out_dir = runner.out_dir
        job.work = lambda j: self._nightly_job(j, runner)
        return self._enqueue(job)

    def submit_task(self, kind: str, label: str, user: str, work: Callable[[Job], None]) -> Job:
        """Other bench work that must wait its turn (a `rig check` of the instruments)."""
        job = Job(self._new_id(), kind, label, user)
        job.work = work
        return self._enqueue(job)

    def _enqueue(self, job: Job) -> Job:
        with self._cond:
            if self._stopping:
                raise UsageError("the service is shutting down; no new jobs")
            self.jobs[job.id] = job
            self._queue.append(job)
            self._cond.notify_all()
        self.hub.publish({"type": "job", "state": job.state, "summary": job.summary()})
        return job

    # -- controlling -----------------------------------------------------------------------------

    def abort(self, job_id: str, user: str) -> Job:
        job = self.get(job_id)
        if job.state in (FINISHED, CANCELLED):
            raise LookupError(f"job {job_id} has already ended ({job.outcome})")
        reason = f"aborted from the panel by {user}"
        with self._cond:
            if job.state == QUEUED:
                self._queue.remove(job)
                job.state, job.outcome, job.reason = CANCELLED, ABORTED, reason + " before it started"
                job.finished_utc = utc_now()
        job.abort.request(ABORTED, reason)
        if job.state == CANCELLED:
            self.hub.publish({"type": "job", "state": job.state, "summary": job.summary()})
            self.hub.publish({"type": "job_done", "summary": job.summary()}, job.id)
        else:
            self.hub.publish({"type": "event", "kind": "abort", "detail": reason, "marker": True,
                              "t_proc_s": job.display.state.t_proc_s if job.display else None}, job.id)
        return job

    def answer(self, job_id: str, step: str, text: str, user: str) -> str:
        job = self.get(job_id)
        if job.operator is None or job.state != RUNNING:
            raise LookupError(f"job {job_id} is not running, nothing to answer")
        return job.operator.answer(step, text, user)

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    @property
    def current(self) -> Job | None:
        return self._current

    def queued(self) -> list[Job]:
        with self._cond:
            return list(self._queue)

    def stop(self, timeout_s: float = 120.0) -> None:
        """Shutdown: cancel queued jobs, abort the running one, wait for its safe state."""
        with self._cond:
            self._stopping = True
            waiting = list(self._queue)
            self._cond.notify_all()
        for job in waiting:
            self.abort(job.id, "the service (shutting down)")
        current = self._current
        if current is not None:
            current.abort.request(ABORTED, "the bench service is shutting down")
        self._thread.join(timeout_s)

    # -- the worker -------------------------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                job = self._queue.popleft()
                self._current = job
                job.state, job.started_utc = RUNNING, utc_now()
            self.hub.publish({"type": "job", "state": job.state, "summary": job.summary()})
            try:
                assert job.work is not None
                job.work(job)
            except RigError as exc:
                job.outcome, job.reason = "ERROR", str(exc)
            except Exception as exc:  # noqa: BLE001 - a job's failure must not stop the service
                job.outcome, job.reason = "ERROR", f"the service could not run the job: {describe_error(exc)}"
            finally:
                if self.after_job is not None:
                    try:
                        self.after_job(job)
                    except Exception:  # noqa: BLE001 - status refresh only
                        pass
                with self._cond:
                    job.state, job.finished_utc = FINISHED, utc_now()
                    self._current = None
                self.hub.publish({"type": "job", "state": job.state, "summary": job.summary()})
                self.hub.publish({"type": "job_done", "summary": job.summary()}, job.id)
                ended = [j for j in self.jobs.values() if j.state in (FINISHED, CANCELLED)]
                for old in ended[:-KEEP_STREAMS]:
                    self.hub.forget(old.id)

    def _run_job(self, job: Job) -> None:
        prepared = job.prepared
        assert prepared is not None
        display = job.display = PanelDisplay(self.hub, job.id)
        try:
            item, item_answers = ask_item(prepared, display)
            if self.lock is None:
                raise UsageError("the service does not hold the station lock; no run can start")
            try:
                result = execute(prepared, display, self.lock, item=item, item_answers=item_answers,
                                 on_bench=lambda bench: display.attach_daq(bench.daq))
            finally:
                self.lock.update(run_id=None)
        except RigError as exc:  # the bench did not open: nothing ran, nothing to safe-state
            job.outcome, job.reason = "ERROR", str(exc)
            display.message(f"the run did not start: {exc}")
            return
        job.outcome, job.reason = result.outcome, result.reason
        job.safe_state = read_safe_state(result.run_dir)
        self.hub.publish({"type": "safe_state", **(job.safe_state or {"confirmed": False})}, job.id)
        job.bundle = build_report(result)
        if job.bundle is not None:
            self.hub.publish({"type": "report", "bundle": str(job.bundle)}, job.id)

    def _nightly_job(self, job: Job, runner: Any) -> None:
        job.abort = runner.stop  # the Abort button stops the suite like SIGTERM does
        try:
            result = runner.run()
        finally:
            if runner.history is not None:
                runner.history.close()
        counts = ", ".join(f"{v} {k}" for k, v in sorted(result.counts().items()))
        job.outcome = {0: "PASS", 1: "FAIL"}.get(result.exit_code, "ERROR")
        job.reason = f"{counts}; exit {result.exit_code}"


class _LineStream(io.TextIOBase):
    """A text stream that publishes each line (the nightly log) as an event."""

    def __init__(self, hub: EventHub, job: str) -> None:
        self.hub = hub
        self.job = job
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self.hub.publish({"type": "line", "text": line}, self.job)
        return len(text)

    def isatty(self) -> bool:
        return False


__all__ = ["CANCELLED", "FINISHED", "FormRejected", "Job", "JobQueue", "QUEUED", "RUNNING", "read_safe_state"]
