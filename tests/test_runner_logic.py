"""Runner logic on an in-memory bench: every exit path ends in the safe state, with the right
outcome, and the record says so. (The same paths on the simulated bench: test_runner_sim.py.)

The bench here is a small stand-in with the Bench interface (pump, balance, clock, snapshot,
safe_state) so each exit path can be forced exactly; the runner itself is the real one.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from instruments.errors import InstrumentTimeout
from rig.engine.display import PlainDisplay
from rig.engine.operator import Confirm, Entry, Operator, OperatorAnswer
from rig.engine.params import parse_params
from rig.engine.procedure import Measurement, Parameter, Procedure, Step
from rig.engine.runner import Runner, RunResult
from rig.engine.signals import AbortFlag, abort_on_signals
from rig.errors import BenchError
from rig.record import read_record

SPEC = """
[spec]
procedure = "logic"
version = "1"
[limits.error_pct]
low = -5
high = 5
unit = "%"
requirement = "REQ-1"
"""


class ManualClock:
    virtual = True

    def __init__(self) -> None:
        self.t_s = 1000.0

    def now_s(self) -> float:
        return self.t_s

    def sleep(self, dt_s: float) -> None:
        self.t_s += max(0.0, dt_s)


class Pump:
    name = "pump"

    def __init__(self) -> None:
        self.running = False
        self.rate_ml_h = 0.0
        self.fail_with: Exception | None = None

    def set_rate_ml_h(self, rate_ml_h: float) -> None:
        if self.fail_with:
            raise self.fail_with
        self.rate_ml_h = rate_ml_h

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False


class MemoryBench:
    """Just enough Bench for the runner; safe_state stops the pump and reads it back."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.pump = Pump()
        self.balance = SimpleNamespace(read_mass_g=lambda: 1.0)
        self.daq = None
        self.station = SimpleNamespace(
            id="MEM-1", safety=SimpleNamespace(max_line_pressure_kpa=120.0),
            fluid=SimpleNamespace(density_g_ml=0.998), instruments={})
        self.safe_state_calls = 0
        self.safe_state_error: str | None = None
        self.during_safe_state: Any = None

    def snapshot(self) -> dict[str, Any]:
        return {"station": {"id": "MEM-1"}, "instruments": {
            "pump": {"serial": "P1", "calibration_due": "2020-01-01", "calibration_overdue": True}}}

    def safe_state(self) -> dict[str, Any]:
        self.safe_state_calls += 1
        if self.during_safe_state:
            self.during_safe_state()
        self.pump.stop()
        if self.safe_state_error:
            raise BenchError(self.safe_state_error)
        return {"pump": {"running": self.pump.running}}


def procedure_with(*steps: Any, tmp_path: Path, measurements: tuple = (Measurement("error_pct", "%"),),
                   **extra: Any) -> Procedure:
    source = tmp_path / "logic.py"
    source.write_text("# test procedure source\n")
    (tmp_path / "logic.spec.toml").write_text(SPEC)
    proc = Procedure(id="logic", version="1", title="Logic", requirements=("REQ-1",),
                     parameters=(Parameter("value_pct", "%", 1.0, low=-100, high=100),),
                     steps=tuple(steps), measurements=measurements, spec_file="logic.spec.toml", **extra)
    return proc.bound(source)


def run(proc: Procedure, tmp_path: Path, bench: MemoryBench | None = None, *, abort: AbortFlag | None = None,
        operator: Operator | None = None, params: list[str] = (), display: Any = None) -> tuple[RunResult, Any]:
    bench = bench or MemoryBench()
    runner = Runner(procedure=proc, spec=proc.load_spec(), params=parse_params(list(params), proc), bench=bench,
                    run_dir=tmp_path / "runs" / "r1", run_id="r1",
                    operator=operator or Operator("tester", interactive=False), abort=abort,
                    display=display, software={"version": "test", "git_sha": None})
    result = runner.run()
    return result, read_record(result.run_dir)


def start_pump(ctx: Any) -> None:
    ctx.pump.set_rate_ml_h(1.0)
    ctx.pump.start()


def measure_param(ctx: Any) -> None:
    ctx.measure("error_pct", ctx.params["value_pct"])


def assert_safe(bench: MemoryBench, record: Any) -> None:
    """The runner asked the bench for its safe state exactly once and recorded the bench's own
    read-back, confirmed, just before run_finished (the stand-in bench's safe_state stops its pump)."""
    assert bench.safe_state_calls == 1
    safe = record.of_type("safe_state")
    assert len(safe) == 1 and record.events.index(safe[0]) == len(record.events) - 2
    assert safe[0]["confirmed"] is True and safe[0]["instruments"] == {"pump": {"running": False}}
    assert record.events[-1]["type"] == "run_finished"


def test_pass_records_everything_in_order(tmp_path: Path) -> None:
    bench = MemoryBench()
    proc = procedure_with(Step("start", start_pump), Step("measure", measure_param), tmp_path=tmp_path)
    result, record = run(proc, tmp_path, bench)
    assert (result.outcome, result.exit_code, result.safe_state_confirmed) == ("PASS", 0, True)
    assert record.outcome == "PASS"
    started = record.started
    assert started["procedure"]["source_sha256"] == proc.source_sha256()
    assert started["procedure"]["spec_sha256"] == proc.load_spec().sha256
    assert started["parameters"]["value_pct"] == {"value": 1.0, "unit": "%", "source": "default"}
    assert started["operator"] == "tester"
    types = [e["type"] for e in record.events]
    assert types == ["run_started", "event", "step_started", "step_finished", "step_started", "measurement",
                     "step_finished", "safe_state", "run_finished"]
    assert "calibration of instruments.pump (serial P1) was due 2020-01-01 and is overdue" in record.events[1]["detail"]
    assert record.measurements[0]["requirement"] == "REQ-1"
    assert_safe(bench, record)


def test_fail_when_a_limit_is_violated_but_all_steps_still_run(tmp_path: Path) -> None:
    ran = []
    proc = procedure_with(Step("measure", measure_param), Step("after", lambda ctx: ran.append(1)), tmp_path=tmp_path)
    result, record = run(proc, tmp_path, params=["value_pct=7.5"])
    assert (result.outcome, result.exit_code) == ("FAIL", 1)
    assert "error_pct = 7.5 % outside [-5, 5]" in result.reason
    assert ran == [1] and record.outcome == "FAIL"


def test_unexpected_exception_is_error_with_traceback_and_safe_state(tmp_path: Path) -> None:
    bench = MemoryBench()
    proc = procedure_with(Step("start", start_pump), Step("boom", lambda ctx: 1 / 0), tmp_path=tmp_path)
    result, record = run(proc, tmp_path, bench)
    assert result.outcome == "ERROR" and result.exit_code == 3
    assert "ZeroDivisionError: division by zero" in result.reason
    finished = record.of_type("step_finished")[-1]
    assert finished["status"] == "error" and "Traceback" in finished["traceback"]
    assert_safe(bench, record)


def test_a_full_disk_is_an_error_naming_the_disk_not_an_unexpected_one(tmp_path: Path) -> None:
    import errno

    def disk_full(ctx: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "raw" / "balance.csv"))

    bench = MemoryBench()
    result, record = run(procedure_with(Step("start", start_pump), Step("write", disk_full), tmp_path=tmp_path),
                         tmp_path, bench)
    assert result.outcome == "ERROR"
    assert result.reason == f"cannot write the run's data to disk ({tmp_path / 'raw' / 'balance.csv'}): No space left on device"
    assert_safe(bench, record)


def test_instrument_timeout_is_error(tmp_path: Path) -> None:
    bench = MemoryBench()
    bench.pump.fail_with = InstrumentTimeout("pump", "RAT1MH", "no reply within 1000 ms")
    result, record = run(procedure_with(Step("start", start_pump), tmp_path=tmp_path), tmp_path, bench)
    assert result.outcome == "ERROR"
    assert result.reason == "instrument error: pump ('RAT1MH'): no reply within 1000 ms"
    assert_safe(bench, record)


def test_step_timeout_in_procedure_time_stops_at_the_deadline(tmp_path: Path) -> None:
    bench = MemoryBench()
    proc = procedure_with(Step("start", start_pump), Step("long", lambda ctx: ctx.wait(3600), timeout_s=10),
                          tmp_path=tmp_path)
    result, record = run(proc, tmp_path, bench)
    assert result.outcome == "ERROR"
    assert result.reason == "step 'long' exceeded its timeout of 10 s of procedure time"
    assert record.of_type("step_finished")[-1]["t_proc_s"] == pytest.approx(10.0, abs=1e-3)
    assert_safe(bench, record)


def test_step_timeout_in_wall_time(tmp_path: Path) -> None:
    def spin(ctx: Any) -> None:
        while True:  # a step that polls without letting procedure time pass
            ctx.check()
            time.sleep(0.01)

    bench = MemoryBench()
    proc = procedure_with(Step("start", start_pump), Step("spin", spin, timeout_s=60, wall_timeout_s=0.2),
                          tmp_path=tmp_path)
    result, record = run(proc, tmp_path, bench)
    assert result.reason == "step 'spin' exceeded its wall-time timeout of 0.2 s"  # not its 60 s of procedure time
    assert_safe(bench, record)


def test_abort_from_another_thread_mid_wait(tmp_path: Path) -> None:
    bench, abort = MemoryBench(), AbortFlag()

    def wait_long(ctx: Any) -> None:
        threading.Timer(0.05, abort.request, args=("ABORTED", "interlock tripped: test")).start()
        while True:
            ctx.wait(1.0)
            time.sleep(0.01)

    proc = procedure_with(Step("start", start_pump), Step("wait", wait_long, timeout_s=1e9), tmp_path=tmp_path)
    result, record = run(proc, tmp_path, bench, abort=abort)
    assert (result.outcome, result.reason) == ("ABORTED", "interlock tripped: test")
    assert record.of_type("step_finished")[-1]["status"] == "aborted"
    assert_safe(bench, record)


def test_double_sigint_cannot_skip_the_safe_state(tmp_path: Path) -> None:
    """First Ctrl-C mid-step aborts; another one during the safe state itself changes nothing."""
    bench, abort = MemoryBench(), AbortFlag()
    bench.during_safe_state = lambda: os.kill(os.getpid(), signal.SIGINT)
    messages: list[str] = []

    def interrupted(ctx: Any) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        ctx.wait(60)  # the pending signal is handled here; the wait notices the abort

    proc = procedure_with(Step("start", start_pump), Step("wait", interrupted), tmp_path=tmp_path)
    with abort_on_signals(abort, notify=messages.append):
        result, record = run(proc, tmp_path, bench, abort=abort)
    assert (result.outcome, result.reason) == ("ABORTED", "interrupted by SIGINT (Ctrl-C)")
    assert result.safe_state_confirmed and record.of_type("safe_state")[0]["confirmed"] is True
    assert abort.count == 2
    assert "not skipped" in messages[-1]
    assert_safe(bench, record)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_safe_state_failure_makes_any_run_an_error(tmp_path: Path) -> None:
    bench = MemoryBench()
    bench.safe_state_error = "safe state not confirmed for 1 instrument(s): pump: no reply"
    proc = procedure_with(Step("measure", measure_param), tmp_path=tmp_path)
    result, record = run(proc, tmp_path, bench)
    assert result.outcome == "ERROR" and not result.safe_state_confirmed
    assert result.reason.startswith("safe state NOT confirmed: safe state not confirmed for 1 instrument(s)")
    assert "before that the run ended PASS" in result.reason
    assert record.of_type("safe_state")[0]["confirmed"] is False


def test_missing_measurement_is_a_procedure_defect_not_a_pass(tmp_path: Path) -> None:
    result, _ = run(procedure_with(Step("nothing", lambda ctx: None), tmp_path=tmp_path), tmp_path)
    assert result.outcome == "ERROR"
    assert result.reason == "procedure finished without measuring error_pct (procedure defect)"


def test_declared_failure_skips_remaining_steps(tmp_path: Path) -> None:
    ran = []
    proc = procedure_with(Step("check", lambda ctx: ctx.fail("pump alarm 'stall'")),
                          Step("later", lambda ctx: ran.append(1)), tmp_path=tmp_path)
    result, record = run(proc, tmp_path)
    assert (result.outcome, result.reason) == ("FAIL", "pump alarm 'stall'")
    assert ran == [] and record.of_type("step_finished")[-1]["status"] == "failed"


def test_non_finite_measurement_fails_and_is_recorded_as_null(tmp_path: Path) -> None:
    proc = procedure_with(Step("m", lambda ctx: ctx.measure("error_pct", float("nan"))), tmp_path=tmp_path)
    result, record = run(proc, tmp_path)
    assert result.outcome == "FAIL"
    m = record.measurements[0]
    assert m["value"] is None and m["outcome"] == "fail" and "non-finite" in m["detail"]


def test_operator_steps_are_recorded_and_a_no_aborts(tmp_path: Path) -> None:
    proc = procedure_with(Confirm("vessel", "Vessel on the balance?"), Step("measure", measure_param),
                          tmp_path=tmp_path)
    op = Operator("carol", {"vessel": "no"}, answers_via={"vessel": "answers file a.toml"}, interactive=False)
    result, record = run(proc, tmp_path, operator=op)
    assert result.outcome == "ABORTED"
    assert "operator carol answered no to 'vessel'" in result.reason

    (tmp_path / "runs").rename(tmp_path / "runs-1")
    op = Operator("carol", {"vessel": "yes"}, answers_via={"vessel": "answers file a.toml"}, interactive=False)
    result, record = run(proc, tmp_path, operator=op)
    assert result.outcome == "PASS"
    entry = record.of_type("operator_entry")[0]
    assert (entry["answer"], entry["answered_by"], entry["via"]) == ("yes", "carol", "answers file a.toml")


def test_item_under_test_and_pre_answers_go_into_the_record(tmp_path: Path) -> None:
    proc = procedure_with(Step("measure", measure_param), tmp_path=tmp_path,
                          item_under_test=(Entry("item_serial", "Serial?"),))
    bench = MemoryBench()
    answer = OperatorAnswer("item_serial", "entry", "Serial?", "SN9", "dave", "terminal", "2025-01-01T00:00:00Z")
    runner = Runner(procedure=proc, spec=proc.load_spec(), params=parse_params([], proc), bench=bench,
                    run_dir=tmp_path / "r", run_id="r", operator=Operator("dave", interactive=False),
                    item_under_test={"item_serial": "SN9"}, pre_answers=[answer], software={})
    runner.run()
    record = read_record(tmp_path / "r")
    assert record.started["item_under_test"] == {"item_serial": "SN9"}
    assert record.events[1]["type"] == "operator_entry" and record.events[1]["answered_by"] == "dave"


def test_record_reads_back_incomplete_while_the_run_is_in_progress(tmp_path: Path) -> None:
    seen = {}

    def peek(ctx: Any) -> None:
        seen["outcome"] = read_record(tmp_path / "runs" / "r1").outcome
        ctx.measure("error_pct", 0.0)

    result, _ = run(procedure_with(Step("peek", peek), tmp_path=tmp_path), tmp_path)
    assert seen["outcome"] == "INCOMPLETE" and result.outcome == "PASS"


def test_plain_display_prints_timestamped_progress_and_outcome(tmp_path: Path) -> None:
    out = io.StringIO()
    proc = procedure_with(Step("start", start_pump),
                          Step("deliver", lambda ctx: ctx.wait(600, every_s=30), timeout_s=700, duration_s=600),
                          Step("measure", measure_param), tmp_path=tmp_path)
    display = PlainDisplay(out, live_every_s=120)
    result, _ = run(proc, tmp_path, display=display)
    text = out.getvalue()
    assert result.outcome == "PASS"
    assert "step 2/3 deliver: started" in text
    assert "measurement error_pct = 1 % [-5..5] -> PASS" in text
    assert "OUTCOME PASS" in text
    assert "deliver: 09:30 left" in text and "deliver: 07:30 left" in text  # every 120 s at most
    assert "deliver: 08:00 left" not in text
    assert text.index("run r1: logic 1") < text.index("warning: calibration of instruments.pump")
    for line in text.splitlines():
        assert line[:4].isdigit() and line[19] == "Z"  # 2025-01-01T12:00:00Z ...


class ListeningDaq:
    """A DAQ stand-in that only keeps its listeners (no acquisition): what a run leaves attached."""

    chunk_samples = 50  # the interlock's guard spans one chunk

    def __init__(self) -> None:
        self.chunk_listeners: list[Any] = []
        self.failure_listeners: list[Any] = []

    def add_chunk_listener(self, listener: Any, *, safety: bool = False) -> None:
        self.chunk_listeners.append(listener)

    def add_failure_listener(self, listener: Any) -> None:
        self.failure_listeners.append(listener)

    def listeners(self) -> tuple[list[Any], list[Any]]:
        return list(self.chunk_listeners), list(self.failure_listeners)

    def remove_listener(self, listener: Any) -> None:
        for listeners in (self.chunk_listeners, self.failure_listeners):
            while listener in listeners:
                listeners.remove(listener)


@pytest.mark.parametrize("ending", ["pass", "error"])
def test_the_interlock_and_the_steps_listeners_leave_the_daq_with_the_run(tmp_path: Path, ending: str) -> None:
    """The DAQ outlives the run (a nightly runs every procedure on one bench): a finished run's
    interlock and line monitors must not act on, or write into the record of, the next run."""
    bench = MemoryBench()
    bench.daq = daq = ListeningDaq()
    seen: dict[str, int] = {}

    def attach(ctx: Any) -> None:
        seen["during"] = len(daq.chunk_listeners)  # the interlock's
        ctx.daq.add_chunk_listener(lambda chunk: None)  # a procedure's line monitor
        seen["after_attach"] = len(daq.chunk_listeners)
        if ending == "error":
            raise RuntimeError("procedure bug")
        ctx.measure("error_pct", 0.0)

    result, _record = run(procedure_with(Step("attach", attach), tmp_path=tmp_path), tmp_path, bench)
    assert result.outcome == ("PASS" if ending == "pass" else "ERROR")
    assert seen == {"during": 1, "after_attach": 2}
    assert daq.chunk_listeners == [] and daq.failure_listeners == []


class SupervisedBench(MemoryBench):
    """A bench that can be supervised (it says how to reopen its instruments from another process)."""

    sim_child = False

    def safe_state_plan(self) -> dict[str, Any]:
        return {}


def test_no_supervisor_no_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed: if the kill -9 supervisor cannot start, no step runs; the run ends ERROR in
    its safe state and says why."""
    from rig.engine import safe_state

    def refuse(plan: dict[str, Any]) -> Any:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(safe_state.Supervisor, "start", staticmethod(refuse))
    bench = SupervisedBench()
    result, record = run(procedure_with(Step("start", start_pump), tmp_path=tmp_path), tmp_path, bench)
    assert result.outcome == "ERROR", result.reason
    assert result.reason.startswith("the safe-state supervisor did not start") and "no run without it" in result.reason
    assert record.of_type("step_started") == [] and bench.pump.rate_ml_h == 0.0  # nothing was pumped
    assert_safe(bench, record)


def test_a_started_supervisor_is_released_at_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rig.engine import safe_state

    released: list[bool] = []

    class FakeSupervisor:
        def release(self) -> str | None:
            released.append(True)
            return "the safe-state supervisor (pid 1) had exited with code 9 during the run"

    monkeypatch.setattr(safe_state.Supervisor, "start", staticmethod(lambda plan: FakeSupervisor()))
    result, record = run(procedure_with(Step("start", start_pump), tmp_path=tmp_path), tmp_path, SupervisedBench())
    assert released == [True]
    warnings = [e["detail"] for e in record.of_type("event") if e["kind"] == "warning"]
    assert any("had exited with code 9 during the run" in w and "unattended" in w for w in warnings), warnings
