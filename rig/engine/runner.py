"""The runner: executes a procedure on the bench, writes the record as it goes, and ALWAYS ends
with the bench in its safe state, read back.

Why the structure below: the safe state sits in one ``finally`` that nothing can skip — a failed
limit, an exception, an instrument that stops answering, a step timeout, an interlock trip, Ctrl-C
(twice), SIGTERM. Signals and trips never raise; they set an ``AbortFlag`` (rig.engine.signals) that
``StepContext`` checks before every instrument call and during every wait, so the procedure
stops between two instrument operations, never in the middle of one. What no ``finally`` can
survive — ``kill -9`` — is covered by a supervisor process (rig.engine.supervisor) started with the run:
if this process dies without releasing it, it stops the pump and sets the valves safe itself.

Outcomes: PASS only if every step completed and every declared measurement was taken and is
within its limits; FAIL if the run completed but a limit was violated (or the procedure declared
a failure); ABORTED when stopped on purpose (operator, signal, interlock); ERROR when the rig
could not carry out the run (instrument error, timeout, procedure bug) — and also when the safe
state could not be confirmed, whatever happened before.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instruments.errors import InstrumentError
from rig.engine.display import Display, RunInfo
from rig.engine.operator import Operator, OperatorAnswer, OperatorDeclined, OperatorStep
from rig.engine.outcomes import FAIL, PASS, RunAborted, StepFailed, StepTimeout
from rig.engine.params import ParameterValues
from rig.engine.procedure import Procedure, Step, step_name
from rig.engine.signals import ABORTED, ERROR, AbortFlag
from rig.engine.spec import Spec
from rig.engine.step_context import RawCsv, RunStepContext
from rig.errors import BenchError, RigError, SimulatedBenchError, UsageError
from rig.identity import software_identity
from rig.record import RecordWriter, utc_now
from rig.station.bench import describe_error

DAQ_PACE_S = 20.0  # longest virtual-time jump while the DAQ acquires (its buffer holds ~30 s)
DAQ_DRAIN_TIMEOUT_S = 10.0  # wall time allowed for the DAQ reader to catch up after a jump


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
        self.state: dict[str, Any] = {}
        self.measurements: list[dict[str, Any]] = []
        self._raw: dict[str, RawCsv] = {}
        self._writer: RecordWriter | None = None
        self._t0_proc_s = 0.0
        self._t0_wall_s = 0.0
        self._live_failed = False
        self._acquiring = False  # the DAQ streams to raw/daq.f64
        self._supervisor: Any = None  # rig.engine.supervisor.Supervisor watching this process
        self._acq_t0_s = 0.0  # clock time of DAQ sample 0

    # -- time ------------------------------------------------------------------------------

    def now_s(self) -> float:
        return self.bench.clock.now_s() - self._t0_proc_s

    def wall_elapsed_s(self) -> float:
        return time.monotonic() - self._t0_wall_s

    # -- record helpers ------------------------------------------------------------------------

    @property
    def writer(self) -> RecordWriter:
        assert self._writer is not None
        return self._writer

    def event(self, kind: str, detail: str, **fields: Any) -> None:
        """An ``event`` record line (thread-safe: the interlock calls this from its thread)."""
        self.writer.append("event", kind=kind, detail=detail, t_proc_s=self._safe_now(), t_utc=utc_now(), **fields)
        self.display.event(kind, detail)

    def _safe_now(self) -> float | None:
        try:
            return round(self.now_s(), 6)
        except Exception:  # noqa: BLE001 - the clock (sim control) may be what failed
            return None

    def raw(self, name: str, columns: list[str]) -> RawCsv:
        if name not in self._raw:
            self._raw[name] = RawCsv(self.writer.raw_dir / f"{name}.csv", columns)
        return self._raw[name]

    def _checkpoint(self) -> None:
        for raw in self._raw.values():
            raw.sync()
        self.writer.checkpoint()

    def measure(self, ctx: RunStepContext, name: str, value: float | None, uncertainty: float | None,
                detail: str) -> str:
        declared = self.procedure.measurement(name)
        if declared is None:
            raise ValueError(f"procedure {self.procedure.id} declares no measurement {name!r}")
        limit = self.spec.limit(name)
        number = None if value is None else float(value)
        outcome = limit.evaluate(number)
        if number is not None and not math.isfinite(number):
            detail = (detail + "; " if detail else "") + f"non-finite value {number!r}"
            number = None
        event = self.writer.append(
            "measurement", name=name, value=number, unit=declared.unit, low=limit.low, high=limit.high,
            requirement=limit.requirement, outcome=outcome, uncertainty=uncertainty,
            decision_rule=limit.decision_rule, step=ctx.step.name, t_proc_s=round(self.now_s(), 6),
            detail=detail,
        )
        self.measurements.append(event)
        self.display.measurement(event)
        return outcome

    def sample_live(self, ctx: RunStepContext) -> None:
        """Refresh time and, if the bench has a DAQ, pressures and flow for the display."""
        self.display.tick(self.now_s(), self.wall_elapsed_s(), self._step_fraction(ctx))
        daq = self.bench.daq
        if daq is None or self._live_failed or not hasattr(daq, "latest"):
            return
        try:
            latest = daq.latest()
        except Exception as exc:  # noqa: BLE001 - the display must not stop a run; record it once
            self._live_failed = True
            self.event("warning", f"live DAQ readings unavailable: {describe_error(exc)}")
            return
        if latest is None:
            return
        limit = self.bench.station.safety.max_line_pressure_kpa
        for name, unit, high in (("pressure_upstream_kpa", "kPa", limit),
                                 ("pressure_downstream_kpa", "kPa", limit),
                                 ("flow_ul_min", "uL/min", None)):
            value = latest.get(name) if isinstance(latest, Mapping) else getattr(latest, name, None)
            if isinstance(value, (int, float)):
                self.display.live(name, float(value), unit, None, high)

    def _step_fraction(self, ctx: RunStepContext) -> float | None:
        expected = ctx.step.expected_s(self.params.values)
        return min(1.0, ctx.step_elapsed_s() / expected) if expected > 0 else None

    # -- the run -------------------------------------------------------------------------------

    def _run_started(self) -> None:
        snapshot = self.bench.snapshot()
        procedure = self.procedure
        self.writer.append(
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
                "steps": [step_name(s) for s in procedure.steps],
            },
            parameters=self.params.for_record(procedure),
            item_under_test=self.item_under_test,
            clock={"virtual": bool(self.bench.clock.virtual), "t0_proc_s": self._t0_proc_s},
        )
        try:
            self._audit("run_started", procedure=f"{procedure.id} {procedure.version}",
                        station=(snapshot.get("station") or {}).get("id"), operator=self.operator.name,
                        record=str(self.writer.path))
        except Exception as exc:  # noqa: BLE001 - the audit log must not stop a run; the record says so
            self.event("warning", f"audit log not written: {describe_error(exc)}")
        for answer in self.pre_answers:
            self.writer.append("operator_entry", **answer.event_fields())
        for name, inst in snapshot.get("instruments", {}).items():
            if inst.get("calibration_overdue"):
                self.event("warning", f"calibration of instruments.{name} (serial {inst.get('serial')}) "
                                      f"was due {inst.get('calibration_due')} and is overdue",
                           instrument=name)
            if inst.get("serial_mismatch"):
                reported = (inst.get("identity") or {}).get("serial")
                self.event("warning", f"instruments.{name} reports serial {reported!r}, station file "
                                      f"says {inst.get('serial')!r}", instrument=name)
        self.writer.checkpoint()

    def run(self) -> RunResult:
        """Run the procedure; the record is complete when this returns."""
        self._t0_wall_s = time.monotonic()
        outcome: tuple[str, str] | None = None
        confirmed = False
        interlock = None
        try:
            try:
                self._writer = RecordWriter(self.run_dir)
                self._t0_proc_s = self.bench.clock.now_s()
                self.display.start(self._run_info())
                self._run_started()
                self._start_supervisor()
                interlock = self._attach_interlock()
                self._start_acquisition()
                for index, step in enumerate(self.procedure.steps):
                    self._run_step(index, step)
                outcome = self._judge()
            except BaseException as exc:  # noqa: BLE001 - every exit path ends in the safe state
                outcome = self._classify(exc)
                if not isinstance(exc, Exception) and not isinstance(exc, KeyboardInterrupt):
                    raise  # SystemExit & co: recorded and safe-stated in finally, then propagate
        finally:
            confirmed, outcome = self._finish(outcome, interlock)
        return RunResult(self.run_id, self.run_dir, outcome[0], outcome[1], confirmed, list(self.measurements))

    def _run_info(self) -> RunInfo:
        steps = [(step_name(s), s.expected_s(self.params.values) if isinstance(s, Step) else 0.0)
                 for s in self.procedure.steps]
        station = self.bench.station
        return RunInfo(self.run_id, f"{self.procedure.id} {self.procedure.version}", self.procedure.title,
                       station.id, self.operator.name, steps, bool(self.bench.clock.virtual),
                       str(self.writer.path))

    def _run_step(self, index: int, step: Step | OperatorStep) -> None:
        request = self.abort.requested
        if request is not None:
            raise RunAborted(request.reason, request.outcome)
        name = step_name(step)
        self.writer.append("step_started", step=name, index=index, t_utc=utc_now(),
                           t_proc_s=round(self.now_s(), 6))
        self._checkpoint()
        self.display.step_started(index, name, self.now_s())
        status, fields = "error", {}
        try:
            if isinstance(step, OperatorStep):
                self._operator_step(step)
            else:
                proc_timeout_s, wall_timeout_s = step.timeouts(self.params.values)
                ctx = RunStepContext(self, index, step, self.now_s() + proc_timeout_s,
                                  time.monotonic() + wall_timeout_s, (proc_timeout_s, wall_timeout_s))
                step.run(ctx)
                ctx.check()  # a step that overran its budget without noticing still timed out
            status = "done"
        except BaseException as exc:
            status, fields = self._step_status(exc)
            raise
        finally:
            self.writer.append("step_finished", step=name, index=index, status=status, t_utc=utc_now(),
                               t_proc_s=self._safe_now(), **fields)
            self._checkpoint()
            self.display.step_finished(index, name, status)

    @staticmethod
    def _step_status(exc: BaseException) -> tuple[str, dict[str, Any]]:
        """step_finished status and detail for the exception that ended a step."""
        if isinstance(exc, StepFailed):
            return "failed", {"reason": str(exc)}
        if isinstance(exc, (RunAborted, OperatorDeclined, KeyboardInterrupt)):
            return "aborted", {"reason": str(exc) or type(exc).__name__}
        if isinstance(exc, (StepTimeout, InstrumentError, RigError)):
            return "error", {"reason": describe_error(exc)}
        return "error", {"reason": describe_error(exc), "traceback": traceback.format_exc(limit=8)}

    def _operator_step(self, step: OperatorStep) -> None:
        with self.display.paused():
            answer = self.operator.ask(step)
        self.writer.append("operator_entry", **answer.event_fields())

    def _judge(self) -> tuple[str, str]:
        taken = {m["name"] for m in self.measurements}
        missing = [m.name for m in self.procedure.measurements if m.name not in taken]
        if missing:
            return ERROR, f"procedure finished without measuring {', '.join(missing)} (procedure defect)"
        failed = [m for m in self.measurements if m["outcome"] != "pass"]
        if failed:
            shown = "; ".join(
                f"{m['name']} = {'n/a' if m['value'] is None else format(m['value'], '.4g')} {m['unit']} "
                f"outside [{'' if m['low'] is None else format(m['low'], 'g')}, "
                f"{'' if m['high'] is None else format(m['high'], 'g')}]"
                for m in failed)
            return FAIL, f"{len(failed)} of {len(self.measurements)} measurement(s) out of limits: {shown}"
        return PASS, (f"all {len(self.procedure.steps)} steps completed; all {len(self.measurements)} "
                      "measurement(s) within limits")

    def _classify(self, exc: BaseException) -> tuple[str, str]:
        """Outcome for an exception; an abort request that came first is the root cause."""
        request = self.abort.requested
        if request is not None:
            return request.outcome, request.reason
        if isinstance(exc, StepFailed):
            return FAIL, str(exc)
        if isinstance(exc, RunAborted):
            return exc.outcome, exc.reason
        if isinstance(exc, OperatorDeclined):
            return ABORTED, str(exc)
        if isinstance(exc, StepTimeout):
            return ERROR, str(exc)
        if isinstance(exc, KeyboardInterrupt):
            return ABORTED, "interrupted (KeyboardInterrupt)"
        if isinstance(exc, SimulatedBenchError):
            return ERROR, f"simulated bench error: {exc}"
        if isinstance(exc, (InstrumentError, BenchError)):
            return ERROR, f"instrument error: {describe_error(exc)}"
        if isinstance(exc, RigError):
            return ERROR, str(exc)
        if isinstance(exc, Exception):
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
            return ERROR, f"unexpected error{at}: {type(exc).__name__}: {exc}"
        return ABORTED, f"stopped by {type(exc).__name__}"

    # -- the supervisor (kill -9) ------------------------------------------------------------

    def _start_supervisor(self) -> None:
        """Start the process that makes the bench safe if this one is killed (rig.engine.supervisor).

        Only a bench that can say how to reopen its pump and DAQ from another process
        (``safe_state_plan``) is supervised. Failing to start never changes the run: it is recorded."""
        plan_of = getattr(self.bench, "safe_state_plan", None)
        if plan_of is None:
            return
        try:
            from rig.engine.supervisor import Supervisor

            self._supervisor = Supervisor.start({
                "record": str(self.writer.path), "run_id": self.run_id, "runner_pid": os.getpid(),
                "sim_child": bool(getattr(self.bench, "sim_child", False)), "instruments": plan_of(),
            })
        except Exception as exc:  # noqa: BLE001 - see docstring
            self.event("warning", f"the safe-state supervisor did not start ({describe_error(exc)}): if this "
                                  "process is killed, nothing will stop the pump")

    def _release_supervisor(self) -> None:
        """The safe state is in the record: tell the supervisor to exit without acting."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is None:
            return
        problem = supervisor.release()
        if problem is not None and self._writer is not None:
            self.event("warning", f"{problem}: a kill -9 then would have left the bench unattended")

    # -- interlock and acquisition -----------------------------------------------------------

    def _on_trip(self, reason: str) -> None:
        """Called by the interlock (any thread) after it has stopped the pump."""
        text = str(reason) or "overpressure"
        self.abort.request(ABORTED, f"interlock tripped: {text}")
        try:
            self.event("interlock", text)
        except Exception:  # noqa: BLE001 - the abort request above is what matters
            pass

    def _attach_interlock(self) -> Any:
        daq = self.bench.daq
        if daq is None:
            return None
        try:
            from rig.engine.interlock import Interlock
        except ImportError:
            self.event("warning", "rig.engine.interlock is not available: no overpressure interlock this run")
            return None
        limit = self.bench.station.safety.max_line_pressure_kpa
        interlock = Interlock(limit_kpa=limit, stop_pump=self.bench.pump.stop, daq=daq, on_trip=self._on_trip)
        start = getattr(interlock, "start", None) or getattr(interlock, "__enter__", None)
        if start is not None:
            start()
        self.writer.append("event", kind="interlock", detail=f"armed at {limit:g} kPa",
                           t_proc_s=round(self.now_s(), 6), t_utc=utc_now())
        return interlock

    def _detach_interlock(self, interlock: Any) -> None:
        if interlock is None:
            return
        stop = getattr(interlock, "stop", None) or getattr(interlock, "close", None)
        if stop is not None:
            stop()
        elif hasattr(interlock, "__exit__"):
            interlock.__exit__(None, None, None)

    def _start_acquisition(self) -> None:
        daq = self.bench.daq
        if daq is not None and hasattr(daq, "start_acquisition"):
            daq.start_acquisition(self.writer.raw_dir / "daq.f64")
            self._acq_t0_s = self.bench.clock.now_s()
            self._acquiring = True

    def advance_virtual(self, dt_s: float) -> None:
        """Advance virtual time. While the DAQ acquires, go in slices no longer than
        DAQ_PACE_S and let its reader drain each one: the device buffer holds only seconds,
        and a 30 s jump would overflow it (and blind the overpressure interlock meanwhile)."""
        clock = self.bench.clock
        daq = self.bench.daq if self._acquiring else None
        if daq is None:
            clock.sleep(dt_s)
            return
        remaining = dt_s
        while remaining > 1e-12 and self.abort.requested is None:
            step = min(DAQ_PACE_S, remaining)
            clock.sleep(step)
            remaining -= step
            # False means the acquisition failed: its failure listener trips the interlock.
            daq.wait_for_elapsed(clock.now_s() - self._acq_t0_s, DAQ_DRAIN_TIMEOUT_S)

    def _stop_acquisition(self) -> dict[str, Any] | None:
        """Stop streaming; returns the acquisition statistics for run_finished."""
        if not self._acquiring:
            return None
        self._acquiring = False
        stats = self.bench.daq.stop_acquisition()
        fields = ("samples", "chunks", "read_timeouts", "reader_cpu_s", "error")
        return {f: getattr(stats, f, None) for f in fields}

    # -- the end ---------------------------------------------------------------------------

    def _finish(self, outcome: tuple[str, str] | None, interlock: Any) -> tuple[bool, tuple[str, str]]:
        """Safe state (read back), then the closing events. Never raises."""
        if outcome is None:
            outcome = (ABORTED, "stopped before the outcome was decided")
        problems: list[str] = []
        daq_stats = None
        try:
            daq_stats = self._stop_acquisition()
        except Exception as exc:  # noqa: BLE001
            problems.append(f"stopping DAQ acquisition failed: {describe_error(exc)}")
        confirmed, readback, failure = self._safe_state()
        try:
            self._detach_interlock(interlock)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"detaching the interlock failed: {describe_error(exc)}")
        if self._writer is None:
            self._try(self._release_supervisor)
            return confirmed, outcome
        for problem in problems:
            self._try(lambda p=problem: self.event("warning", p))
        self._try(lambda: self.writer.append("safe_state", confirmed=confirmed, instruments=readback,
                                             error=failure, t_utc=utc_now(), t_proc_s=self._safe_now()))
        self._try(self._release_supervisor)
        if not confirmed:
            outcome = (ERROR, f"safe state NOT confirmed: {failure} (before that the run ended "
                              f"{outcome[0]}: {outcome[1]})")
        for raw in self._raw.values():
            self._try(raw.close)
        self._try(lambda: self.writer.append("run_finished", outcome=outcome[0], reason=outcome[1],
                                             t_utc=utc_now(), t_proc_s=self._safe_now(),
                                             wall_s=round(self.wall_elapsed_s(), 3),
                                             safe_state_confirmed=confirmed, daq=daq_stats))
        self._try(self.writer.close)
        self._try(lambda: self._audit("run_finished", outcome=outcome[0], reason=outcome[1],
                                      record_sha256=hashlib.sha256(self.writer.path.read_bytes()).hexdigest()))
        self._try(lambda: self.display.finish(outcome[0], outcome[1]))
        return confirmed, outcome

    def _audit(self, kind: str, **data: Any) -> None:
        """One entry in the hash-chained audit log; run_finished anchors the record's final sha256,
        so a later edit of the record shows against the chain."""
        from reports import audit

        audit.append_event(audit.resolve_log_path(self.audit_log, near=self.run_dir.parent), kind,
                           run_id=self.run_id, **data)

    def _safe_state(self) -> tuple[bool, dict[str, Any], str | None]:
        try:
            readback = self.bench.safe_state()
            return True, dict(readback or {}), None
        except BaseException as exc:  # noqa: BLE001 - reported as the outcome, never lost
            return False, dict(getattr(exc, "results", {}) or {}), describe_error(exc)

    @staticmethod
    def _try(action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception:  # noqa: BLE001 - finishing must reach the end; the record shows gaps
            pass


__all__ = [
    "FAIL", "PASS", "RawCsv", "RunAborted", "RunResult", "Runner", "StepFailed",
    "StepTimeout", "check_calibration_policy", "overdue_instruments",
]
