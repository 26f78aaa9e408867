"""The runner: executes a procedure on the bench, writes the record as it goes, and ALWAYS ends
with the bench in its safe state, read back.

Why the structure below: the safe state sits in one ``finally`` that nothing can skip — a failed
limit, an exception, an instrument that stops answering, a step timeout, an interlock trip, Ctrl-C
(twice), SIGTERM. Signals and trips never raise; they set an ``AbortFlag`` (rig.engine.signals) that
``StepContext`` checks before every instrument call and during every wait, so the procedure
stops between two instrument operations, never in the middle of one. What no ``finally`` can
survive — ``kill -9`` — is covered by a supervisor process (rig.engine.supervisor) started with the run:
if this process dies without releasing it, it stops the pump and sets the valves safe itself.

The runner is the lifecycle only; each job it sequences has its own object: ``RunLog`` (the
record and the run's clocks), ``Judge`` (measurements against the spec, the verdict, what an
exception means), ``Acquisition`` (DAQ streaming, the interlock, virtual-time pacing, live
readings) and ``SafeStateGuard`` (supervisor and safe-state read-back). Steps see them through
``RunServices`` (rig.engine.step_context), never through the runner.

Outcomes: PASS only if every step completed and every declared measurement was taken and is
within its limits; FAIL if the run completed but a limit was violated (or the procedure declared
a failure); ABORTED when stopped on purpose (operator, signal, interlock); ERROR when the rig
could not carry out the run (instrument error, timeout, procedure bug) — and also when the safe
state could not be confirmed, whatever happened before.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports import audit
from rig.engine.acquisition import Acquisition
from rig.engine.background import BackgroundFaults
from rig.engine.display import Display, RunInfo
from rig.engine.judge import Judge, classify, step_status
from rig.engine.operator import Operator, OperatorAnswer, OperatorStep
from rig.engine.outcomes import FAIL, PASS, RunAborted, StepFailed, StepTimeout
from rig.engine.params import ParameterValues
from rig.engine.procedure import Procedure, Step, step_name
from rig.engine.run_log import RunLog
from rig.engine.safe_state import SafeStateGuard
from rig.engine.signals import ABORTED, ERROR, AbortFlag
from rig.engine.spec import Spec
from rig.engine.step_context import RunServices, RunStepContext
from rig.errors import UsageError
from rig.identity import software_identity
from rig.record import utc_now
from rig.station import environment
from rig.station.bench import describe_error


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    outcome: str
    reason: str
    safe_state_confirmed: bool
    measurements: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return {PASS: 0, FAIL: 1}.get(self.outcome, 3)


def overdue_instruments(station: Any) -> list[Any]:
    """Instrument configs whose calibration is past due today."""
    return [cfg for cfg in station.instruments.values() if cfg.calibration_overdue()]


def check_calibration_policy(station: Any) -> None:
    """With calibration_policy = "block", an overdue instrument refuses the run (exit 2)."""
    if station.calibration_policy != "block":
        return
    overdue = overdue_instruments(station)
    if overdue:
        names = "; ".join(f"instruments.{c.name} (serial {c.serial}) was due {c.calibration_due.isoformat()}"
                          for c in overdue)
        raise UsageError(f"calibration overdue: {names}; station calibration_policy = \"block\" "
                         "refuses to start (recalibrate, or set calibration_policy = \"warn\")")


MAX_RECORDED_FAULTS = 20  # background failures recorded one by one per run; the rest are counted


def item_serial_problem(station: Any, identities: Mapping[str, Any], entered: Mapping[str, Any]) -> str | None:
    """Why the run must not start: the serial entered for the item under test (answer
    ``item_serial``) differs from the serial the station's under-test instrument reports (or, for
    an instrument that reports none, the serial its station file names). None when they agree or
    the station names no item under test."""
    item = next((c for c in station.instruments.values() if getattr(c, "under_test", False)), None)
    if item is None or "item_serial" not in entered:
        return None
    ident = identities.get(item.name)
    reported = str(getattr(ident, "serial", "") or "")
    expected, source = (reported, "reports") if reported else (item.serial, "is named in the station file with")
    typed = str(entered["item_serial"]).strip()
    if typed != expected:
        return (f"item under test: serial {typed!r} was entered, but instruments.{item.name} {source} serial "
                f"{expected!r}; check the pump on the bench (the run did not start)")
    return None


class Runner:
    """Runs one procedure once. Construct, then ``run()`` (returns a RunResult, never raises
    for run-time problems: they become the outcome)."""

    def __init__(
        self,
        *,
        procedure: Procedure,
        spec: Spec,
        params: ParameterValues,
        bench: Any,
        run_dir: Path,
        run_id: str,
        operator: Operator,
        display: Display | None = None,
        abort: AbortFlag | None = None,
        item_under_test: Mapping[str, Any] | None = None,
        pre_answers: list[OperatorAnswer] | None = None,
        software: Mapping[str, Any] | None = None,
        audit_log: Path | None = None,
    ) -> None:
        self.procedure = procedure
        self.spec = spec
        self.params = params
        self.bench = bench
        self.run_dir = Path(run_dir)
        self.run_id = run_id
        self.operator = operator
        self.display = display or Display()
        self.abort = abort or AbortFlag()
        self.item_under_test = dict(item_under_test or {})
        self.pre_answers = list(pre_answers or [])
        self.software = dict(software) if software is not None else dict(software_identity())
        # The hash-chained audit log (reports.audit): explicit, else $RIG_AUDIT_LOG, else
        # <runs dir>/audit.jsonl, the same log report builds go to.
        self.audit_log = audit_log
        self.state: dict[str, Any] = {}  # shared by the steps of the run
        self.guard = SafeStateGuard(bench, run_id)
        self._log: RunLog | None = None
        self._judge: Judge | None = None
        self._acquisition: Acquisition | None = None
        self.faults = BackgroundFaults(self._background_fault)

    def run(self) -> RunResult:
        """Run the procedure; the record is complete when this returns."""
        t0_wall_s = time.monotonic()
        outcome: tuple[str, str] | None = None
        confirmed = False
        with self.faults:  # background-thread failures are recorded and decide the outcome
            confirmed, outcome = self._run(t0_wall_s)
        measurements = list(self._judge.measurements) if self._judge is not None else []
        return RunResult(self.run_id, self.run_dir, outcome[0], outcome[1], confirmed, measurements)

    def _run(self, t0_wall_s: float) -> tuple[bool, tuple[str, str]]:
        outcome: tuple[str, str] | None = None
        try:
            try:
                log = self._log = RunLog(self.run_dir, self.bench.clock, self.display, t0_wall_s)
                judge = self._judge = Judge(self.procedure, self.spec, log, self.display)
                acquisition = self._acquisition = Acquisition(self.bench, log, self.display, self.abort)
                self.display.start(self._run_info(log))
                self._run_started(log)
                self.guard.watch(log)
                self.guard.watch_pump_watchdog(log, self.abort)
                acquisition.arm_interlock()
                acquisition.start(self.procedure.daq_stored_hz)
                services = RunServices(self.params.values, self.state, self.bench, self.abort, self.display,
                                       log, judge, acquisition)
                for index, step in enumerate(self.procedure.steps):
                    self._run_step(services, index, step)
                outcome = judge.verdict()
            except BaseException as exc:  # noqa: BLE001 - every exit path ends in the safe state
                outcome = classify(exc, self.abort)
                if not isinstance(exc, Exception) and not isinstance(exc, KeyboardInterrupt):
                    raise  # SystemExit & co: recorded and safe-stated in finally, then propagate
        finally:
            confirmed, outcome = self._finish(outcome)
        return confirmed, outcome

    def event(self, kind: str, detail: str, **fields: Any) -> bool:
        """Record an event from outside the procedure (any thread), e.g. the command line noting
        a hang-up. False when there is no open record (before it starts or after it finished)."""
        log = self._log
        if log is None or log.closed:
            return False
        log.event(kind, detail, **fields)
        return True

    def _background_fault(self, kind: str, detail: str, traceback_text: str | None) -> None:
        """A failure in a thread other than the procedure's (rig.engine.background): an event in
        the record (and so in the nightly log); an exception also ends the run ERROR."""
        if kind == "error":
            self.abort.request(ERROR, f"a background thread failed: {detail}")
        log = self._log
        if len(self.faults.faults) > MAX_RECORDED_FAULTS:  # a listener failing on every chunk
            return  # counted; _finish says how many were not recorded
        if log is not None and not log.closed:
            fields = {"traceback": traceback_text} if traceback_text else {}
            log.event("error" if kind == "error" else "warning", detail, **fields)

    def _run_info(self, log: RunLog) -> RunInfo:
        steps = [(step_name(s), s.expected_s(self.params.values) if isinstance(s, Step) else 0.0)
                 for s in self.procedure.steps]
        return RunInfo(self.run_id, f"{self.procedure.id} {self.procedure.version}", self.procedure.title,
                       self.bench.station.id, self.operator.name, steps, bool(self.bench.clock.virtual),
                       str(log.path))

    def _run_started(self, log: RunLog) -> None:
        snapshot = self.bench.snapshot()
        procedure = self.procedure
        # The audit entry first, so the record can anchor it (reports.audit): `rig audit verify
        # --bundle` then finds a log cut or rewritten below this entry, and checks the run_finished
        # entry against the record. The audit log must not stop a run; the record says so.
        anchor, audit_problem = None, None
        try:
            started = self._audit("run_started", procedure=f"{procedure.id} {procedure.version}",
                                  station=(snapshot.get("station") or {}).get("id"), operator=self.operator.name,
                                  record=str(log.path))
            anchor = {"log_id": audit.log_id(self._audit_path()), "seq": started["seq"], "hash": started["hash"]}
        except Exception as exc:  # noqa: BLE001 - see above
            audit_problem = f"audit log not written: {describe_error(exc)}"
        log.append(
            "run_started",
            run_id=self.run_id,
            t_utc=utc_now(),
            station=snapshot,
            software=self.software,
            operator=self.operator.name,
            procedure={
                "id": procedure.id, "version": procedure.version, "title": procedure.title,
                "requirements": list(procedure.requirements),
                "source_sha256": procedure.source_sha256(),
                "source_file": procedure.source_path.name if procedure.source_path else None,
                "spec_sha256": self.spec.sha256, "spec_version": self.spec.version,
                "spec_file": self.spec.path.name,
                "requirement_statements": dict(self.spec.requirements),
                "steps": [step_name(s) for s in procedure.steps],
            },
            parameters=self.params.for_record(procedure, snapshot),
            item_under_test=self.item_under_test,
            clock={"virtual": bool(self.bench.clock.virtual), "t0_proc_s": log.t0_proc_s},
            audit_anchor=anchor,
        )
        if audit_problem:
            log.event("warning", audit_problem)
        self._environment(log, "start")
        for answer in self.pre_answers:
            log.append("operator_entry", **answer.event_fields())
        for name, inst in snapshot.get("instruments", {}).items():
            if inst.get("calibration_overdue"):
                log.event("warning", f"calibration of instruments.{name} (serial {inst.get('serial')}) "
                                     f"was due {inst.get('calibration_due')} and is overdue",
                          instrument=name)
            if inst.get("serial_mismatch"):
                reported = (inst.get("identity") or {}).get("serial")
                log.event("warning", f"instruments.{name} reports serial {reported!r}, station file "
                                     f"says {inst.get('serial')!r}", instrument=name)
        log.checkpoint()

    def _run_step(self, services: RunServices, index: int, step: Step | OperatorStep) -> None:
        request = self.abort.requested
        if request is not None:
            raise RunAborted(request.reason, request.outcome)
        log = services.log
        name = step_name(step)
        log.append("step_started", step=name, index=index, t_utc=utc_now(), t_proc_s=round(log.now_s(), 6))
        log.checkpoint()
        self.display.step_started(index, name, log.now_s())
        status, fields = "error", {}
        try:
            if isinstance(step, OperatorStep):
                with self.display.paused():
                    answer = self.operator.ask(step)
                log.append("operator_entry", **answer.event_fields())
            else:
                proc_timeout_s, wall_timeout_s = step.timeouts(self.params.values)
                ctx = RunStepContext(services, index, step, log.now_s() + proc_timeout_s,
                                     time.monotonic() + wall_timeout_s, (proc_timeout_s, wall_timeout_s))
                step.run(ctx)
                services.acquisition.catch_up()  # the step's last chunks reach the interlock now
                ctx.check()  # a step that overran its budget without noticing still timed out
            status = "done"
        except BaseException as exc:
            status, fields = step_status(exc)
            raise
        finally:
            log.append("step_finished", step=name, index=index, status=status, t_utc=utc_now(),
                       t_proc_s=log.safe_now(), **fields)
            log.checkpoint()
            self.display.step_finished(index, name, status)

    def _finish(self, outcome: tuple[str, str] | None) -> tuple[bool, tuple[str, str]]:
        """Safe state (read back), then the closing events. Never raises."""
        if outcome is None:
            outcome = (ABORTED, "stopped before the outcome was decided")
        problems: list[str] = []
        daq_stats = None
        acquisition, log = self._acquisition, self._log
        if acquisition is not None:
            try:
                daq_stats = acquisition.stop()
            except Exception as exc:  # noqa: BLE001
                problems.append(f"stopping DAQ acquisition failed: {describe_error(exc)}")
        confirmed, readback, failure = self.guard.reach()
        _try(self.guard.unwatch_pump_watchdog)
        if acquisition is not None:
            try:
                acquisition.disarm_interlock()
            except Exception as exc:  # noqa: BLE001
                problems.append(f"detaching the interlock failed: {describe_error(exc)}")
            try:
                acquisition.release_listeners()  # e.g. the procedure's line monitors
            except Exception as exc:  # noqa: BLE001
                problems.append(f"releasing the run's DAQ listeners failed: {describe_error(exc)}")
        if log is None:
            _try(lambda: self.guard.release(None))
            return confirmed, outcome
        unrecorded = len(self.faults.faults) - MAX_RECORDED_FAULTS
        if unrecorded > 0:
            problems.append(f"{unrecorded} more background failure(s) after the first {MAX_RECORDED_FAULTS} "
                            "were not recorded one by one")
        for problem in problems:
            _try(lambda p=problem: log.event("warning", p))
        _try(lambda: log.append("safe_state", confirmed=confirmed, instruments=readback,
                                error=failure, t_utc=utc_now(), t_proc_s=log.safe_now()))
        _try(lambda: self.guard.release(log))
        failed_threads = self.faults.exceptions
        if failed_threads and outcome[0] in (PASS, FAIL):  # a result computed while part of the rig failed
            outcome = (ERROR, f"a background thread failed during the run: {failed_threads[0]} (the "
                              f"procedure itself ended {outcome[0]}: {outcome[1]})")
        if not confirmed:
            outcome = (ERROR, f"safe state NOT confirmed: {failure} (before that the run ended "
                              f"{outcome[0]}: {outcome[1]})")
        log.close_raw()
        _try(lambda: self._environment(log, "end"))
        _try(lambda: log.append("run_finished", outcome=outcome[0], reason=outcome[1],
                                t_utc=utc_now(), t_proc_s=log.safe_now(),
                                wall_s=round(log.wall_elapsed_s(), 3),
                                safe_state_confirmed=confirmed, daq=daq_stats))
        _try(log.close)
        _try(lambda: self._audit("run_finished", outcome=outcome[0], reason=outcome[1],
                                 record_sha256=hashlib.sha256(log.path.read_bytes()).hexdigest()))
        _try(lambda: self.display.finish(outcome[0], outcome[1]))
        return confirmed, outcome

    def _environment(self, log: RunLog, when: str) -> None:
        """The lab's conditions now, when the station states them (rig.station.environment)."""
        station = getattr(self.bench, "station", None)
        reading = environment.read((getattr(station, "sections", None) or {}).get("environment"), when)
        if reading is not None:
            log.append("environment", **reading)

    def _audit_path(self) -> Path:
        return audit.resolve_log_path(self.audit_log, near=self.run_dir.parent)

    def _audit(self, kind: str, **data: Any) -> dict[str, Any]:
        """One entry in the hash-chained audit log; run_finished anchors the record's final sha256,
        so a later edit of the record shows against the chain."""
        return audit.append_event(self._audit_path(), kind, run_id=self.run_id, **data)


def _try(action: Callable[[], Any]) -> None:
    try:
        action()
    except Exception:  # noqa: BLE001 - finishing must reach the end; the record shows gaps
        pass


__all__ = [
    "FAIL", "PASS", "RunAborted", "RunResult", "Runner", "StepFailed",
    "StepTimeout", "check_calibration_policy", "item_serial_problem", "overdue_instruments",
]
