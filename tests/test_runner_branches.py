"""Branches of rig/engine/runner.py (run lifecycle) that no end-to-end run takes by itself
(docs/testing.md, tests/coverage_check.py), each forced by fault injection on the in-memory bench of
tests/test_runner_logic.py and judged from the record and the bench's own read-back:

* a ``SystemExit`` inside a step is recorded (ABORTED) and safe-stated, then propagates;
* a Ctrl-C arriving while the runner classifies an exception: the outcome was never decided, the
  record says so (ABORTED), the bench is still safe-stated, and the KeyboardInterrupt propagates;
* an audit log that cannot be written: the run goes on, the record warns and carries no anchor;
* an instrument reporting another serial than the station file names: a warning at the start;
* an abort requested between two steps (during an operator question): no later step starts;
* a background thread that dies after the last step (as the DAQ stops): a PASS or FAIL computed
  while part of the rig failed becomes ERROR;
* the lab's conditions, when the station states them, are recorded at the start and the end.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from test_runner_logic import MemoryBench, measure_param, procedure_with, run, start_pump
from test_safety_branches import StreamingDaq

from rig.engine import runner as runner_module
from rig.engine.operator import Confirm, Operator, OperatorAnswer, OperatorStep
from rig.engine.params import parse_params
from rig.engine.procedure import Procedure, Step
from rig.engine.runner import Runner
from rig.engine.signals import ABORTED, AbortFlag
from rig.record import RunRecord, read_record


def _runner(proc: Procedure, tmp_path: Path, bench: MemoryBench, **extra: Any) -> Runner:
    return Runner(procedure=proc, spec=proc.load_spec(), params=parse_params([], proc), bench=bench,
                  run_dir=tmp_path / "runs" / "r1", run_id="r1", operator=Operator("tester", interactive=False),
                  software={"version": "test", "git_sha": None}, **extra)


def _warnings(record: RunRecord) -> list[str]:
    return [e["detail"] for e in record.of_type("event") if e.get("kind") == "warning"]


def _assert_safe_state_read_back(bench: MemoryBench, record: RunRecord) -> None:
    """Asked once; the bench's own read-back recorded, confirmed, just before run_finished."""
    assert bench.safe_state_calls == 1 and not bench.pump.running
    safe = record.of_type("safe_state")
    assert len(safe) == 1 and record.events.index(safe[0]) == len(record.events) - 2
    assert safe[0]["confirmed"] is True and safe[0]["instruments"] == {"pump": {"running": False}}
    assert record.events[-1]["type"] == "run_finished"


# -- exceptions that are not errors of the run ------------------------------------------------------


def test_a_system_exit_inside_a_step_is_recorded_and_safe_stated_then_propagates(tmp_path: Path) -> None:
    def exits(ctx: Any) -> None:
        raise SystemExit(4)  # e.g. a library calling sys.exit() under the procedure

    bench = MemoryBench()
    proc = procedure_with(Step("start", start_pump), Step("exit", exits), Step("never", measure_param),
                          tmp_path=tmp_path)
    runner = _runner(proc, tmp_path, bench)
    with pytest.raises(SystemExit) as raised:
        runner.run()
    assert raised.value.code == 4  # propagated unchanged, after the record was finished
    record = read_record(tmp_path / "runs" / "r1")
    assert (record.outcome, record.reason) == ("ABORTED", "stopped by SystemExit")
    assert [e["step"] for e in record.of_type("step_started")] == ["start", "exit"]
    finished = record.of_type("step_finished")[-1]
    assert (finished["step"], finished["status"], finished["reason"]) == ("exit", "error", "SystemExit: 4")
    _assert_safe_state_read_back(bench, record)


def test_a_ctrl_c_while_the_exception_is_classified_leaves_the_outcome_undecided_but_safe(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the runner's signal handlers (rig.engine.signals), Python's default SIGINT handler
    raises KeyboardInterrupt at any instruction — here inside ``classify``, so no outcome was
    decided: the record still ends, in the read-back safe state, saying so."""
    classified: list[BaseException] = []

    def ctrl_c_during_classify(exc: BaseException, abort: AbortFlag) -> tuple[str, str]:
        classified.append(exc)
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_module, "classify", ctrl_c_during_classify)
    bench = MemoryBench()
    proc = procedure_with(Step("start", start_pump), Step("boom", lambda ctx: 1 / 0), Step("never", measure_param),
                          tmp_path=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _runner(proc, tmp_path, bench).run()
    assert [type(e) for e in classified] == [ZeroDivisionError]  # the step's error reached classify
    record = read_record(tmp_path / "runs" / "r1")
    assert (record.outcome, record.reason) == ("ABORTED", "stopped before the outcome was decided")
    assert record.finished["safe_state_confirmed"] is True
    assert [e["step"] for e in record.of_type("step_started")] == ["start", "boom"]
    _assert_safe_state_read_back(bench, record)


# -- warnings at the start of a run -----------------------------------------------------------------


def test_an_audit_log_that_cannot_be_written_does_not_stop_the_run(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("a file where the audit log's folder should be")
    audit_log = tmp_path / "not-a-folder" / "audit.jsonl"
    bench = MemoryBench()
    proc = procedure_with(Step("start", start_pump), Step("measure", measure_param), tmp_path=tmp_path)
    result = _runner(proc, tmp_path, bench, audit_log=audit_log).run()
    record = read_record(result.run_dir)
    assert (result.outcome, record.outcome) == ("PASS", "PASS"), result.reason
    assert record.started["audit_anchor"] is None  # nothing to anchor to
    problems = [w for w in _warnings(record) if w.startswith("audit log not written: ")]
    assert len(problems) == 1 and "not-a-folder" in problems[0]
    assert (tmp_path / "not-a-folder").is_file() and not audit_log.exists()  # run_finished not written either
    _assert_safe_state_read_back(bench, record)


class MismatchBench(MemoryBench):
    """The pump answers with another serial than the station file names; calibration is current."""

    def snapshot(self) -> dict[str, Any]:
        return {"station": {"id": "MEM-1"}, "instruments": {
            "pump": {"serial": "P1", "calibration_due": "2099-01-01", "calibration_overdue": False,
                     "serial_mismatch": True, "identity": {"serial": "P9"}},
            "balance": {"serial": "B1", "calibration_due": "2099-01-01", "calibration_overdue": False,
                        "serial_mismatch": False, "identity": {"serial": "B1"}}}}


def test_an_instrument_reporting_another_serial_is_a_warning_at_the_start(tmp_path: Path) -> None:
    bench = MismatchBench()
    proc = procedure_with(Step("start", start_pump), Step("measure", measure_param), tmp_path=tmp_path)
    result, record = run(proc, tmp_path, bench)
    warnings = [e for e in record.of_type("event") if e.get("kind") == "warning"]
    assert [(w["detail"], w["instrument"]) for w in warnings] == [
        ("instruments.pump reports serial 'P9', station file says 'P1'", "pump")]  # no calibration warning
    assert record.events.index(warnings[0]) < record.events.index(record.of_type("step_started")[0])
    assert result.outcome == "PASS", result.reason  # a warning decides nothing
    _assert_safe_state_read_back(bench, record)


# -- an abort between two steps ---------------------------------------------------------------------


class OperatorWithSigterm(Operator):
    """Answers the question; a SIGTERM's abort request arrives while the operator answers."""

    def __init__(self, abort: AbortFlag, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._abort = abort

    def ask(self, step: OperatorStep) -> OperatorAnswer:
        answer = super().ask(step)
        self._abort.request(ABORTED, "SIGTERM received")
        return answer


def test_an_abort_requested_between_two_steps_starts_no_later_step(tmp_path: Path) -> None:
    abort, bench = AbortFlag(), MemoryBench()
    operator = OperatorWithSigterm(abort, "carol", {"vessel": "yes"}, interactive=False)
    proc = procedure_with(Step("start", start_pump), Confirm("vessel", "Vessel on the balance?"),
                          Step("measure", measure_param), tmp_path=tmp_path)
    result, record = run(proc, tmp_path, bench, abort=abort, operator=operator)
    assert (result.outcome, result.reason) == ("ABORTED", "SIGTERM received")
    assert [(e["step"], e["status"]) for e in record.of_type("step_finished")] == [("start", "done"),
                                                                                     ("vessel", "done")]
    assert [e["step"] for e in record.of_type("step_started")] == ["start", "vessel"]  # measure never started
    assert record.of_type("operator_entry")[0]["answer"] == "yes"
    assert record.measurements == []
    _assert_safe_state_read_back(bench, record)


# -- a background thread that fails after the last step ---------------------------------------------


class DaqWhoseReaderDiesOnStop(StreamingDaq):
    """Streams; when the acquisition stops, its reader thread dies on the final read."""

    def stop_acquisition(self) -> Any:
        def final_read() -> None:
            raise OSError(5, "Input/output error")

        reader = threading.Thread(target=final_read, name="daq-reader")
        reader.start()
        reader.join()
        return None


@pytest.mark.parametrize(("value_pct", "ended"), [("1.0", "PASS"), ("7.5", "FAIL")])
def test_a_background_thread_failure_after_the_last_step_turns_the_verdict_into_error(
        tmp_path: Path, value_pct: str, ended: str) -> None:
    bench = MemoryBench()
    bench.daq = DaqWhoseReaderDiesOnStop()
    proc = procedure_with(Step("start", start_pump), Step("measure", measure_param), tmp_path=tmp_path)
    result, record = run(proc, tmp_path, bench, params=[f"value_pct={value_pct}"])
    assert [e["status"] for e in record.of_type("step_finished")] == ["done", "done"]  # every step completed
    assert result.outcome == "ERROR" and record.outcome == "ERROR"
    assert result.reason.startswith("a background thread failed during the run: thread daq-reader died: "
                                    "OSError: [Errno 5] Input/output error (the procedure itself ended "
                                    f"{ended}: "), result.reason
    assert record.reason == result.reason
    errors = [e for e in record.of_type("event") if e.get("kind") == "error"]
    assert len(errors) == 1 and "thread daq-reader died" in errors[0]["detail"]
    assert "OSError" in errors[0]["traceback"]
    _assert_safe_state_read_back(bench, record)


# -- the lab's conditions ---------------------------------------------------------------------------


def test_the_labs_conditions_are_recorded_at_the_start_and_the_end(tmp_path: Path) -> None:
    readings = tmp_path / "lab.json"
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    readings.write_text(json.dumps({"temperature_c": 21.4, "t_utc": now}))
    bench = MemoryBench()
    bench.station.sections = {"environment": {"readings": str(readings), "temperature_c": [18.0, 25.0],
                                              "max_age_min": 30.0}}
    proc = procedure_with(Step("start", start_pump), Step("measure", measure_param), tmp_path=tmp_path)
    result, record = run(proc, tmp_path, bench)
    assert result.outcome == "PASS", result.reason
    env = record.of_type("environment")
    assert [(e["when"], e["readings"], e["error"], e["limits"]) for e in env] == [
        ("start", {"temperature_c": 21.4}, None, {"temperature_c": [18.0, 25.0]}),
        ("end", {"temperature_c": 21.4}, None, {"temperature_c": [18.0, 25.0]})]
    assert record.events.index(env[0]) < record.events.index(record.of_type("step_started")[0])
    assert record.events.index(env[1]) > record.events.index(record.of_type("safe_state")[0])
