"""Branches of the safety-critical modules that no end-to-end run takes by itself (docs/testing.md,
tests/coverage_check.py): each is forced here by fault injection and its outcome asserted.

* procedures/_pump.py — a pump that does not start, one still running after stop, a stop answered
  with the pump's alarm (acknowledged, then stopped), the line monitor told of every command;
* rig/engine/interlock.py — a limit outside the station rule is refused before anything is
  attached to the DAQ; the interlock is latched: a second trip (stream lost after an overpressure)
  neither stops the pump again nor changes the recorded reason;
* rig/engine/supervisor.py — a supervisor that died during the run is reported when the run
  releases it (release is idempotent); the supervisor process given a garbage plan, or a plan
  without a record, exits EXIT_BAD_PLAN without touching anything;
* rig/engine/safe_state.py — the pump watchdog listener: only a ``timeout`` alarm aborts, once,
  and a record that cannot take the event does not stop the abort;
* rig/engine/signals.py — outside the main thread nothing is installed; a signal without a
  ``notify`` still requests the abort; a hang-up with ``on_hangup`` detaches stdio and calls it
  in a new thread; ``detach_stdio`` points 0/1/2 at /dev/null (in a child) and survives a failing
  ``dup2``;
* rig/record.py — an out directory under a file, a line appended to a finished record, corrupt
  lines in the middle of a record;
* rig/engine/spec.py — guarded acceptance without a finite uncertainty never passes; every problem
  of a spec file (unreadable, not TOML, no [spec], NaN limit, crossed limits, unknown keys, units,
  requirements without statements) is listed at once;
* reports/keys.py — scrypt cost out of range at creation, weakened or damaged key files (KDF
  parameters, cipher, salt), a key id that is not the key's, what is not a private key file
  (symbolic link, folder, FIFO, oversized, another format, under a file, a linked key folder,
  another owner);
* reports/audit.py — never through a link or into a FIFO, log id of an empty or damaged log,
  rollback only of its own last entry, the first broken line reported (not an object, not
  canonical, too long), an anchor to a rewritten entry;
* reports/verify.py — a manifest listing a file twice or with a stray hash scope, results.json that
  disagrees with the manifest (report id, verdict, simulated flag), a signed statement that differs
  from the bundle (verdict, simulated flag, the signer's printed name), no registry to check with;
  what a bundle anchors in the audit log (a record anchored to another log, a line that is not an
  object, a signature without anchor, one signed while the log was empty);
* rig/engine/runner.py — a DAQ that cannot be stopped, whose interlock cannot be detached and whose
  listeners cannot be released still ends the run in its read-back safe state with the failures as
  warnings; a record that cannot be created still reaches the safe state (ERROR);
* rig/engine/runner.py (start) — no interlock, no run; an overdue calibration refuses the run only under the block
  policy; the item serial is the one the item reports or, if it reports none, the station names;
  events reach only an open record, background failures are recorded up to a cap and then counted;
* rig/engine/acquisition.py — listeners left on the DAQ behind the run's back leave with it, pacing
  only in virtual time, a guard that holds time still is dropped (the run cannot hang), live
  readings: none yet, a value that is not a number, a failing read recorded once.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from instruments.pump import PumpAlarm
from procedures._pump import set_rate, start_pump, stop_pump
from rig.engine import signals as signals_module
from rig.engine import supervisor as sup
from rig.engine.interlock import Interlock
from rig.engine.outcomes import StepFailed
from rig.engine.safe_state import SafeStateGuard
from rig.engine.signals import ABORTED, ERROR, AbortFlag, abort_on_signals, detach_stdio

REPO = Path(__file__).resolve().parents[1]


# -- procedures/_pump.py ---------------------------------------------------------------------------


class Pump:
    """A pump whose faults are injected: ``starts``/``stops`` False = the read-back disagrees;
    ``alarm_on_stop`` = the next stop is answered with that alarm (the NE-1000's way)."""

    def __init__(self, *, starts: bool = True, stops: bool = True, alarm_on_stop: str | None = None) -> None:
        self.running = False
        self.commands: list[Any] = []
        self._starts, self._stops, self._alarm = starts, stops, alarm_on_stop

    def stop(self) -> None:
        self.commands.append("stop")
        if self._alarm is not None:
            alarm, self._alarm = self._alarm, None
            raise PumpAlarm("pump", "STP", alarm, f"{alarm} alarm")
        if self._stops:
            self.running = False

    def clear_dispensed(self) -> None:
        self.commands.append("clear")

    def set_rate_ml_h(self, rate_ml_h: float) -> None:
        self.commands.append(("rate", rate_ml_h))

    def start(self) -> None:
        self.commands.append("start")
        self.running = self._starts

    def is_running(self) -> bool:
        return self.running


class Ctx:
    def __init__(self, pump: Pump) -> None:
        self.pump = pump

    def now_s(self) -> float:
        return 42.0

    def fail(self, reason: str) -> None:
        raise StepFailed(reason)


class Monitor:
    def __init__(self) -> None:
        self.told: list[tuple[float, float, bool]] = []

    def command(self, t_s: float, rate_ml_h: float, running: bool) -> None:
        self.told.append((t_s, rate_ml_h, running))


def test_start_pump_confirms_it_runs_and_tells_the_monitor() -> None:
    pump, monitor = Pump(), Monitor()
    assert start_pump(Ctx(pump), 0.5, monitor) == 42.0
    assert pump.commands == ["stop", "clear", ("rate", 0.5), "start"] and pump.running
    assert monitor.told == [(42.0, 0.5, True)]


def test_a_pump_that_does_not_start_fails_the_step() -> None:
    with pytest.raises(StepFailed, match=r"the pump did not start at 0\.5 mL/h \(it reads back not running after RUN\)"):
        start_pump(Ctx(Pump(starts=False)), 0.5)


def test_set_rate_with_and_without_a_monitor() -> None:
    pump, monitor = Pump(), Monitor()
    assert set_rate(Ctx(pump), 0.2) == 42.0
    assert set_rate(Ctx(pump), 0.3, monitor) == 42.0
    assert pump.commands == [("rate", 0.2), ("rate", 0.3)]
    assert monitor.told == [(42.0, 0.3, True)]


def test_stop_answered_with_the_alarm_is_acknowledged_then_stops() -> None:
    pump, monitor = Pump(alarm_on_stop="stall"), Monitor()
    pump.running = True
    assert stop_pump(Ctx(pump), monitor) == 42.0
    assert pump.commands == ["stop", "stop"] and not pump.running  # the second stop is the one obeyed
    assert monitor.told == [(42.0, 0.0, False)]


def test_a_pump_still_running_after_stop_fails_the_step() -> None:
    pump = Pump(stops=False)
    pump.running = True
    with pytest.raises(StepFailed, match="the pump still reads back running after stop"):
        stop_pump(Ctx(pump))


# -- rig/engine/interlock.py -----------------------------------------------------------------------


class ListeningDaq:
    """Only what the interlock touches: its listeners and the relief valves (recorded)."""

    def __init__(self) -> None:
        self.chunk_listeners: list[Any] = []
        self.failure_listeners: list[Any] = []
        self.valve_writes: list[tuple[str, Any]] = []

    def add_chunk_listener(self, listener: Any, *, safety: bool = False) -> None:
        self.chunk_listeners.append((listener, safety))

    def add_failure_listener(self, listener: Any) -> None:
        self.failure_listeners.append(listener)

    def set_leak(self, on: bool) -> None:
        self.valve_writes.append(("leak", on))

    def set_occlusion(self, on: bool) -> None:
        self.valve_writes.append(("occlusion", on))

    def set_kink_pct(self, pct: float) -> None:
        self.valve_writes.append(("kink_pct", pct))


@pytest.mark.parametrize("limit", [True, "120", math.nan, -1.0, 1e9])
def test_a_limit_outside_the_station_rule_arms_nothing(limit: Any) -> None:
    daq = ListeningDaq()
    with pytest.raises(ValueError, match=r"safety\.max_line_pressure_kpa must be .*, got"):
        Interlock(limit, lambda: None, daq, lambda reason: None)  # type: ignore[arg-type]
    assert daq.chunk_listeners == [] and daq.failure_listeners == []


def test_the_interlock_is_latched_a_second_trip_does_nothing() -> None:
    daq, stops, trips = ListeningDaq(), [], []
    interlock = Interlock(20.0, lambda: stops.append(1), daq, trips.append)
    assert [safety for _, safety in daq.chunk_listeners] == [True]  # its check fails closed
    (stream_lost,) = daq.failure_listeners
    stream_lost("gRPC server gone")
    first_reason = interlock.reason
    assert interlock.tripped and len(stops) == 1 and trips == [first_reason]
    assert daq.valve_writes == [("leak", True), ("occlusion", False), ("kink_pct", 0.0)]
    stream_lost("still gone")  # a second trip: latched
    assert len(stops) == 1 and trips == [first_reason] and interlock.reason == first_reason
    assert len(daq.valve_writes) == 3
    assert first_reason is not None and first_reason.startswith("pressure monitoring lost (gRPC server gone)")


# -- rig/engine/supervisor.py ----------------------------------------------------------------------


def test_a_supervisor_that_died_during_the_run_is_reported_on_release(tmp_path: Path) -> None:
    plan = {"record": str(tmp_path / "record.jsonl"), "run_id": "r", "runner_pid": os.getpid(),
            "sim_child": True, "instruments": {}}
    supervisor = sup.Supervisor.start(plan)
    supervisor.proc.kill()  # it dies during the run (OOM killer, an operator's kill)
    supervisor.proc.wait(timeout=60)
    problem = supervisor.release()
    assert problem == (f"the safe-state supervisor (pid {supervisor.pid}) had exited with code "
                       f"{-signal.SIGKILL} during the run")
    assert supervisor.release() is None  # idempotent: nothing more to say
    assert not (tmp_path / "record.jsonl").exists()  # killed, it wrote nothing


@pytest.mark.parametrize("stdin", [b"not json\n", b'["a list"]\n', b'{"run_id": "no record"}\n', b""],
                         ids=["garbage", "not-an-object", "no-record", "nothing"])
def test_the_supervisor_given_no_usable_plan_exits_bad_plan(stdin: bytes, tmp_path: Path) -> None:
    proc = subprocess.run(sup.command(), input=stdin, capture_output=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == sup.EXIT_BAD_PLAN, proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written anywhere


def test_wait_for_runner_reads_plan_and_release() -> None:
    import io

    plan = {"record": "/x/record.jsonl"}
    assert sup.wait_for_runner(io.BytesIO(json.dumps(plan).encode() + b"\ndone\n")) == (plan, True)
    assert sup.wait_for_runner(io.BytesIO(json.dumps(plan).encode() + b"\n")) == (plan, False)
    assert sup.wait_for_runner(io.BytesIO(b"{torn")) == (None, False)


# -- rig/engine/safe_state.py: the pump's communications watchdog ----------------------------------


class AlarmPump:
    def __init__(self) -> None:
        self.listeners: list[Any] = []

    def add_alarm_listener(self, listener: Any) -> None:
        self.listeners.append(listener)

    def remove_alarm_listener(self, listener: Any) -> None:
        self.listeners.remove(listener)


class EventLog:
    def __init__(self, fails: bool = False) -> None:
        self.events: list[tuple[str, str]] = []
        self.fails = fails

    def event(self, kind: str, detail: str) -> None:
        if self.fails:
            raise OSError(28, "No space left on device")
        self.events.append((kind, detail))


@pytest.mark.parametrize("record_fails", [False, True], ids=["recorded", "record-full"])
def test_only_a_watchdog_timeout_aborts_the_run_once(record_fails: bool) -> None:
    from types import SimpleNamespace

    pump, log, abort = AlarmPump(), EventLog(fails=record_fails), AbortFlag()
    guard = SafeStateGuard(SimpleNamespace(pump=pump), "r1")
    guard.watch_pump_watchdog(log, abort)  # type: ignore[arg-type]
    (on_alarm,) = pump.listeners
    on_alarm("stall", "motor stalled")  # reaches the procedure through its own pump calls
    assert abort.requested is None and log.events == []
    on_alarm("timeout", "no packet for 2 s")
    request = abort.requested
    assert request is not None and request.outcome == ERROR
    assert request.reason.startswith("the pump's communications watchdog stopped the pump") and "2 s" in request.reason
    assert log.events == ([] if record_fails else [("pump_watchdog", request.reason)])
    on_alarm("timeout", "again")  # already aborting: nothing new
    assert abort.requested == request and len(log.events) == (0 if record_fails else 1)
    guard.unwatch_pump_watchdog()
    assert pump.listeners == []


def test_a_bench_without_a_pump_or_without_alarms_has_no_watchdog() -> None:
    from types import SimpleNamespace

    class NoPump:
        @property
        def pump(self) -> Any:
            raise KeyError("pump")

    for bench in (NoPump(), SimpleNamespace(pump=object())):
        guard = SafeStateGuard(bench, "r1")
        guard.watch_pump_watchdog(EventLog(), AbortFlag())  # type: ignore[arg-type]
        guard.unwatch_pump_watchdog()  # nothing to remove, no error


# -- rig/engine/signals.py -------------------------------------------------------------------------


def test_outside_the_main_thread_no_handler_is_installed() -> None:
    seen: list[Any] = []

    def worker() -> None:
        flag = AbortFlag()
        with abort_on_signals(flag) as yielded:
            seen.append((yielded is flag, signal.getsignal(signal.SIGINT)))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=60)
    assert seen == [(True, signal.default_int_handler)]


def test_a_signal_without_notify_still_requests_the_abort() -> None:
    flag, before = AbortFlag(), signal.getsignal(signal.SIGTERM)  # coverage.py may have its own
    with abort_on_signals(flag):
        os.kill(os.getpid(), signal.SIGTERM)
        flag.wait(60)  # the handler runs in the main thread, between bytecodes
    request = flag.requested
    assert request is not None and (request.outcome, request.reason) == (ABORTED, "interrupted by SIGTERM")
    assert signal.getsignal(signal.SIGTERM) is before  # restored


def test_a_hang_up_detaches_stdio_and_calls_on_hangup_in_a_new_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    detached: list[str] = []
    monkeypatch.setattr(signals_module, "detach_stdio", lambda: detached.append(threading.current_thread().name))
    called = threading.Event()
    threads: list[str] = []

    def on_hangup() -> None:
        threads.append(threading.current_thread().name)
        called.set()

    flag = AbortFlag()
    # only the main thread can catch it; anywhere else SIGHUP would end the test process
    assert threading.current_thread() is threading.main_thread()
    with abort_on_signals(flag, on_hangup=on_hangup):
        os.kill(os.getpid(), signal.SIGHUP)
        assert called.wait(60)
    assert detached == ["MainThread"] and threads == ["hangup"]
    assert flag.requested is None  # a hang-up does not abort: the run goes on detached


def test_detach_stdio_points_the_standard_descriptors_at_devnull() -> None:
    code = ("import os, sys; from rig.engine.signals import detach_stdio; print('before', flush=True); "
            "detach_stdio(); print('after', flush=True); os.write(2, b'lost'); "
            "sys.exit(0 if os.path.samestat(os.fstat(0), os.stat(os.devnull)) else 1)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"before\n", b"")


def test_detach_stdio_survives_a_failing_dup2() -> None:
    tried: list[int] = []
    opened: list[int] = []
    real_open = os.open

    def failing_dup2(fd: int, target: int) -> None:
        tried.append(target)
        raise OSError(9, "Bad file descriptor")

    def recording_open(*args: Any, **kwargs: Any) -> int:
        fd = real_open(*args, **kwargs)
        opened.append(fd)
        return fd

    real_dup2 = os.dup2  # patched by hand, undone at once: pytest's own capture needs os.dup2
    os.dup2, os.open = failing_dup2, recording_open  # type: ignore[assignment]
    try:
        detach_stdio()  # no exception: whatever cannot be redirected stays as it is
    finally:
        os.dup2, os.open = real_dup2, real_open
    assert tried == [0, 1, 2]
    (fd,) = opened
    with pytest.raises(OSError):
        os.fstat(fd)  # the /dev/null descriptor was closed


# -- rig/record.py ---------------------------------------------------------------------------------


def test_a_run_directory_under_a_file_is_refused_before_anything_starts(tmp_path: Path) -> None:
    from rig.errors import UsageError
    from rig.record import writable_directory

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(UsageError, match=r"runs .*/a-file/runs is not writable: .*not a directory \(at .*/a-file\)"):
        writable_directory(blocker / "runs", "runs")
    assert writable_directory(tmp_path / "new" / "runs", "runs") == tmp_path / "new" / "runs"
    assert not (tmp_path / "new").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_a_finished_record_refuses_another_line_and_closes_once(tmp_path: Path) -> None:
    from rig.record import RecordClosed, RecordWriter, read_record

    writer = RecordWriter(tmp_path / "run")
    writer.append("run_started", run_id="r")
    writer.close()
    writer.close()  # a second close is harmless
    with pytest.raises(RecordClosed, match=r"is finished; refusing to append a 'event' line"):
        writer.append("event", kind="warning", detail="a leaked listener")
    assert [e["type"] for e in read_record(tmp_path / "run").events] == ["run_started"]


@pytest.mark.parametrize("line, problem", [
    (b"[" * 200 + b"]" * 200, "the line nests more than 64 levels deep"),
    (b'{"type": "event", "value": NaN}', "NaN is not a number a run record can hold"),
    (b'{"type": "event", "value": 1e999}', "1e999 overflows to inf"),
    (b'["run_started"]', "not an event object with a 'type'"),
], ids=["too-deep", "nan", "overflow", "not-an-object"])
def test_a_corrupt_line_in_the_middle_is_an_error_naming_it(tmp_path: Path, line: bytes, problem: str) -> None:
    from rig.errors import UsageError
    from rig.record import read_record

    good = json.dumps({"type": "run_started", "run_id": "r"}).encode()
    (tmp_path / "record.jsonl").write_bytes(good + b"\n" + line + b"\n" + good + b"\n")
    with pytest.raises(UsageError) as caught:
        read_record(tmp_path)
    assert f"record.jsonl line 2 is corrupt: {problem}" in str(caught.value)


# -- rig/engine/acquisition.py ---------------------------------------------------------------------


class GuardedClock:
    """A virtual clock whose guard can hold time still (as VirtualClock's does at a crossing)."""

    virtual = True

    def __init__(self, *, stuck: bool = False) -> None:
        self.t_s = 100.0
        self.guard: Any = None
        self.stuck = stuck  # while a guard is set, time does not move

    def now_s(self) -> float:
        return self.t_s

    def sleep(self, dt_s: float) -> None:
        if not (self.stuck and self.guard is not None):
            self.t_s += dt_s


class StreamingDaq(ListeningDaq):
    chunk_samples = 50
    rate_hz = 10.0

    def __init__(self, latest: Any = None) -> None:
        super().__init__()
        self.started_with: dict[str, Any] | None = None
        self.waited_for: list[float] = []
        self._latest = latest

    def listeners(self) -> tuple[list[Any], list[Any]]:
        return [lis for lis, _ in self.chunk_listeners], list(self.failure_listeners)

    def remove_listener(self, listener: Any) -> None:
        self.chunk_listeners = [(lis, s) for lis, s in self.chunk_listeners if lis is not listener]
        self.failure_listeners = [lis for lis in self.failure_listeners if lis is not listener]

    def start_acquisition(self, path: Path, **options: Any) -> Path:
        self.started_with = options
        return path

    def wait_for_elapsed(self, elapsed_s: float, timeout_s: float) -> bool:
        self.waited_for.append(elapsed_s)
        return True

    def latest(self) -> Any:
        if isinstance(self._latest, Exception):
            raise self._latest
        return self._latest


class RunLogStandIn(EventLog):
    def __init__(self, tmp_path: Path) -> None:
        super().__init__()
        self.raw_dir = tmp_path / "raw"
        self.t0_proc_s = 0.0
        self.lines: list[dict[str, Any]] = []

    def append(self, event_type: str, **fields: Any) -> None:
        self.lines.append({"type": event_type, **fields})

    def now_s(self) -> float:
        return 0.0


def _acquisition(tmp_path: Path, daq: StreamingDaq, clock: Any) -> tuple[Any, Any, Any]:
    from types import SimpleNamespace

    from rig.engine.acquisition import Acquisition
    from rig.engine.display import Display

    bench = SimpleNamespace(daq=daq, clock=clock, pump=SimpleNamespace(stop=lambda: None),
                            station=SimpleNamespace(safety=SimpleNamespace(max_line_pressure_kpa=20.0)))
    display, log = Display(), RunLogStandIn(tmp_path)
    return Acquisition(bench, log, display, AbortFlag()), display, log  # type: ignore[arg-type]


def test_every_listener_the_run_left_on_the_daq_leaves_with_it(tmp_path: Path) -> None:
    daq = StreamingDaq()
    display_listener = object()
    daq.add_chunk_listener(display_listener)  # was there before the run: stays
    acq, _, _ = _acquisition(tmp_path, daq, GuardedClock())
    daq.add_chunk_listener(lambda chunk: None)  # attached behind the run's back (not add_chunk_listener)
    daq.add_failure_listener(lambda detail: None)
    assert acq.release_listeners() == 2
    assert daq.listeners() == ([display_listener], [])


@pytest.mark.parametrize("virtual", [True, False], ids=["virtual", "real"])
def test_the_stream_is_paced_by_jumps_only_in_virtual_time(tmp_path: Path, virtual: bool) -> None:
    clock = GuardedClock()
    clock.virtual = virtual
    daq = StreamingDaq()
    acq, _, _ = _acquisition(tmp_path, daq, clock)
    acq.start(stored_hz=2.0)
    assert daq.started_with == ({"stored_rate_hz": 2.0, "paced": True} if virtual else {"stored_rate_hz": 2.0})
    assert acq.started_s() == 100.0


def test_a_guard_that_holds_time_still_is_dropped_so_the_run_cannot_hang(tmp_path: Path) -> None:
    clock, daq = GuardedClock(stuck=True), StreamingDaq()
    acq, _, log = _acquisition(tmp_path, daq, clock)
    acq.arm_interlock()
    assert clock.guard == {"channel": "pressure_upstream", "above": 20.0, "chunk_samples": 50}
    assert [(e["kind"], e["detail"]) for e in log.lines] == [("interlock", "armed at 20 kPa")]
    acq.start()
    acq.advance_virtual(30.0)  # the first slice makes no progress: the guard goes, time moves on
    assert clock.guard is None and clock.t_s == pytest.approx(130.0)
    # the stuck slice was read at once (a guard-stopped jump delivers its chunk now); the 30 s that
    # followed wait for the next read, which gets all of it
    assert daq.waited_for == [pytest.approx(0.1)]
    acq.catch_up()
    assert daq.waited_for[-1] == pytest.approx(30.1)


@pytest.mark.parametrize("latest, shown", [
    (None, {}),
    ({"pressure_upstream_kpa": 3.5, "pressure_downstream_kpa": "n/a", "flow_ul_min": 1.25},
     {"pressure_upstream_kpa": (3.5, "kPa", 20.0), "flow_ul_min": (1.25, "uL/min", None)}),
], ids=["no-samples-yet", "one-value-not-a-number"])
def test_live_readings_show_only_numbers(tmp_path: Path, latest: Any, shown: dict[str, Any]) -> None:
    acq, display, log = _acquisition(tmp_path, StreamingDaq(latest), GuardedClock())
    acq.show_live()
    assert {k: (v.value, v.unit, v.high) for k, v in display.state.live.items()} == shown
    assert log.events == []


def test_live_readings_that_fail_are_recorded_once_and_the_run_goes_on(tmp_path: Path) -> None:
    acq, display, log = _acquisition(tmp_path, StreamingDaq(TimeoutError("no samples within 5000 ms")),
                                     GuardedClock())
    acq.show_live()
    acq.show_live()
    assert len(log.events) == 1 and log.events[0][0] == "warning"
    assert "live DAQ readings unavailable" in log.events[0][1] and display.state.live == {}


# -- rig/engine/spec.py: what PASS means ----------------------------------------------------------


def test_guarded_acceptance_never_passes_without_a_finite_uncertainty() -> None:
    from rig.engine.spec import Limit

    guarded = Limit("m", "%", "REQ-1", low=-5.0, high=5.0, acceptance="guarded")
    assert [guarded.evaluate(4.0, u) for u in (None, math.nan, 0.5, 1.5, -0.5)] == \
        ["fail", "fail", "pass", "fail", "pass"]  # 4 + |U| must stay within 5
    assert guarded.evaluate(math.inf, 0.1) == "fail" and guarded.evaluate(None, 0.1) == "fail"
    flag = Limit("ok", "", "REQ-1", low=1.0, high=1.0, acceptance="guarded", type="boolean")
    assert flag.evaluate(1.0) == "pass" and flag.evaluate(0.0) == "fail"  # a yes/no has no uncertainty
    assert Limit("m", "%", "REQ-1", high=2.0).describe() == "[-inf, 2] %"


def test_a_spec_file_that_cannot_be_read_or_parsed_is_one_clear_problem(tmp_path: Path) -> None:
    from rig.engine.spec import load_spec
    from rig.errors import ConfigError

    cases = {"missing.spec.toml": None, "binary.spec.toml": b"\xff\xfe", "toml.spec.toml": b"[spec\n",
             "headless.spec.toml": b"[limits.m]\nlow = 1\n"}
    problems = {}
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(ConfigError) as caught:
            load_spec(tmp_path / name)
        problems[name] = caught.value.problems
    assert problems["missing.spec.toml"][0].startswith("cannot be read: No such file")
    assert problems["binary.spec.toml"][0].startswith("invalid TOML")
    assert problems["toml.spec.toml"][0].startswith("invalid TOML")
    assert problems["headless.spec.toml"] == ["missing [spec] table (procedure, version, title)"]


def test_every_problem_of_a_spec_is_listed_at_once(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from rig.engine.spec import load_spec
    from rig.errors import ConfigError

    path = tmp_path / "bad.spec.toml"
    path.write_text('''
extra = 1
limits_typo = 2
[spec]
procedure = "other"
version = ""
acceptance = "lenient"
[requirements]
REQ-1 = ""
[limits.nan_low]
low = nan
unit = "%"
requirement = "REQ-1"
[limits.crossed]
low = 5
high = 1
unit = "%"
requirement = "REQ-1"
acceptance = "strict"
type = "text"
colour = "red"
[limits.open]
unit = 3
requirement = "REQ-1"
[limits.wrong_unit]
low = 0
unit = "mL"
requirement = "REQ-2"
''', encoding="utf-8")
    procedure = SimpleNamespace(id="logic", requirements=("REQ-1", "REQ-9"), measurements=(
        SimpleNamespace(name="nan_low", unit="%"), SimpleNamespace(name="wrong_unit", unit="%"),
        SimpleNamespace(name="declared_only", unit="%")))
    with pytest.raises(ConfigError) as caught:
        load_spec(path, procedure)  # type: ignore[arg-type]
    problems = caught.value.problems
    expected = [
        "unknown table(s) extra, limits_typo (allowed: spec, limits, requirements)",
        "requirements must be a table of \"REQ-ID\" = \"statement\" (non-empty strings)",
        "spec.acceptance is 'lenient'; allowed: simple, guarded",
        "spec.version must be a non-empty string",
        "limits.nan_low.low must be a finite number, got nan",
        "limits.crossed: unknown key(s) colour (allowed: acceptance, decision_rule, description, high, low, "
        "requirement, type, unit)",
        "limits.crossed.acceptance is 'strict'; allowed: simple, guarded",
        "limits.crossed.type is 'text'; allowed: number, boolean",
        "limits.crossed: low 5 is greater than high 1",
        "limits.open needs low and/or high",
        "limits.open.unit must be a string (\"\" for dimensionless)",
        "spec.procedure is 'other' but the procedure is 'logic'",
        "limits.wrong_unit.unit is 'mL' but the measurement is in '%'",
        "no [limits.declared_only] for measurement declared_only (%)",
        "[requirements] has no statement for REQ-1 (every requirement the procedure names needs its "
        "statement, shown next to its id in reports)",
        "[requirements] has no statement for REQ-9 (every requirement the procedure names needs its "
        "statement, shown next to its id in reports)",
        "limits.crossed: procedure logic has no measurement of that name",
        "limits.open: procedure logic has no measurement of that name",
    ]
    assert problems == expected


def test_limits_that_are_not_tables_and_requirements_without_statements(tmp_path: Path) -> None:
    from rig.engine.spec import load_spec
    from rig.errors import ConfigError

    path = tmp_path / "odd.spec.toml"
    path.write_text('limits = 3\n[spec]\nprocedure = "p"\nversion = "1"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_spec(path)
    assert caught.value.problems == ["limits must be a table of [limits.<measurement>] tables"]
    path.write_text('[spec]\nprocedure = "p"\nversion = "1"\n[limits]\nm = 1\n[requirements]\nREQ-1 = "Delivers."\n'
                    '[limits.n]\nlow = 0\nunit = ""\nrequirement = "REQ-2"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_spec(path)
    assert caught.value.problems == ["limits.m must be a table",
                                     "limits.n.requirement 'REQ-2' has no statement in [requirements]"]


# -- reports/keys.py: key files at rest ------------------------------------------------------------

PASSPHRASE = "a passphrase of the test"


def _key(folder: Path, name: str = "k.key") -> Path:
    from reports.keys import MIN_SCRYPT_LOG2_N, generate_key_file

    folder.mkdir(mode=0o700, exist_ok=True)
    generate_key_file(folder / name, signer_id="s", printed_name="S. Igner", passphrase=PASSPHRASE,
                      scrypt_log2_n=MIN_SCRYPT_LOG2_N)  # the cheapest cost the reader accepts
    return folder / name


def _rewrite(path: Path, **changes: Any) -> None:
    from reports.canonical import canonical_json

    document = json.loads(path.read_bytes())
    for dotted, value in changes.items():
        node = document
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    path.write_bytes(canonical_json(document) + b"\n")


@pytest.mark.parametrize("log2_n", [9, 23])
def test_a_key_is_never_made_with_a_scrypt_cost_out_of_range(tmp_path: Path, log2_n: int) -> None:
    from reports.keys import generate_key_file
    from rig.errors import UsageError

    with pytest.raises(UsageError, match=rf"scrypt cost 2\*\*{log2_n} out of range 2\*\*10\.\.2\*\*22"):
        generate_key_file(tmp_path / "k.key", signer_id="s", printed_name="S", passphrase=PASSPHRASE,
                          scrypt_log2_n=log2_n)
    assert not (tmp_path / "k.key").exists()


def test_a_key_is_never_made_with_a_short_passphrase(tmp_path: Path) -> None:
    from reports.keys import MIN_PASSPHRASE_CHARS, MIN_SCRYPT_LOG2_N, generate_key_file
    from rig.errors import UsageError

    short = "x" * (MIN_PASSPHRASE_CHARS - 1)
    with pytest.raises(UsageError, match=rf"passphrase is {len(short)} characters; use at least {MIN_PASSPHRASE_CHARS}"):
        generate_key_file(tmp_path / "k.key", signer_id="s", printed_name="S", passphrase=short,
                          scrypt_log2_n=MIN_SCRYPT_LOG2_N)
    assert not (tmp_path / "k.key").exists()


@pytest.mark.parametrize("change, problem", [
    ({"kdf__log2_n": 9}, "KDF parameters out of range"),  # weakened: cheaper to guess the passphrase
    ({"kdf__r": 1}, "KDF parameters out of range"),
    ({"kdf__p": 2}, "KDF parameters out of range"),
    ({"kdf__name": "pbkdf2"}, "unsupported KDF or cipher"),
    ({"cipher__name": "AES-128-CBC"}, "unsupported KDF or cipher"),
    ({"kdf__salt": None}, "is damaged"),
], ids=["log2_n-9", "r-1", "p-2", "pbkdf2", "cbc", "no-salt"])
def test_a_weakened_or_damaged_key_file_is_refused(tmp_path: Path, change: dict[str, Any], problem: str) -> None:
    from reports.keys import KeyFileError, load_key_file

    path = _key(tmp_path / "keys")
    _rewrite(path, **change)
    with pytest.raises(KeyFileError, match=problem):
        load_key_file(path, PASSPHRASE)


def test_a_key_file_whose_key_id_is_not_its_key_is_refused(tmp_path: Path) -> None:
    """Consistently encrypted (the header is the cipher's associated data) but naming another key id."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from reports.canonical import canonical_json
    from reports.dsse import b64, unb64
    from reports.keys import KeyFileError, _kdf, load_key_file

    path = _key(tmp_path / "keys")
    seed_key = load_key_file(path, PASSPHRASE).private_key
    seed = seed_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                  serialization.NoEncryption())
    document = json.loads(path.read_bytes())
    header = {k: v for k, v in document.items() if k != "ciphertext"}
    header["key_id"] = "0" * len(header["key_id"])
    secret = _kdf(unb64(header["kdf"]["salt"], "salt"), header["kdf"]["log2_n"]).derive(PASSPHRASE.encode())
    ciphertext = AESGCM(secret).encrypt(unb64(header["cipher"]["nonce"], "nonce"), seed, canonical_json(header))
    path.write_bytes(canonical_json({**header, "ciphertext": b64(ciphertext)}) + b"\n")
    with pytest.raises(KeyFileError, match="key id does not match the key"):
        load_key_file(path, PASSPHRASE)


def test_what_is_not_a_private_key_file_is_refused_before_reading_it(tmp_path: Path) -> None:
    from reports.keys import MAX_KEY_FILE_BYTES, KeyFileError, check_key_dir, read_key_header

    keys = tmp_path / "keys"
    real = _key(keys)
    (keys / "link.key").symlink_to(real)
    (keys / "folder.key").mkdir(mode=0o700)
    os.mkfifo(keys / "fifo.key", 0o600)
    big = keys / "big.key"
    big.write_bytes(b" " * (MAX_KEY_FILE_BYTES + 1))
    big.chmod(0o600)
    other = keys / "other.key"
    other.write_bytes(b'{"format": "something else"}\n')
    other.chmod(0o600)
    (tmp_path / "plain").write_text("a file")
    problems = {}
    for name, path in {"link": keys / "link.key", "folder": keys / "folder.key", "fifo": keys / "fifo.key",
                       "big": big, "other": other,
                       "under-a-file": tmp_path / "plain" / "k.key"}.items():
        with pytest.raises(KeyFileError) as caught:
            read_key_header(path)
        problems[name] = str(caught.value)
    assert problems["link"] == f"key file {keys / 'link.key'} is a symbolic link; give the real file"
    assert problems["folder"] == f"no key file at {keys / 'folder.key'} (not a regular file)"
    assert problems["fifo"] == f"no key file at {keys / 'fifo.key'} (not a regular file)"
    assert problems["big"] == f"{big} is larger than {MAX_KEY_FILE_BYTES} bytes: not a rig key file"
    assert problems["other"] == f"{other} is not a rig key file (format rig-ed25519-key/1 expected)"
    assert problems["under-a-file"].startswith(f"cannot open key file {tmp_path / 'plain' / 'k.key'}: Not a directory")
    (tmp_path / "linked-keys").symlink_to(keys)
    with pytest.raises(KeyFileError, match="is not a directory \\(symbolic links are not followed\\)"):
        check_key_dir(tmp_path / "linked-keys")
    with pytest.raises(KeyFileError, match="is not a directory"):
        check_key_dir(tmp_path / "plain")


def test_a_key_file_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    from reports.keys import KeyFileError, read_key_header

    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root (CI runs as root)")
    path = _key(tmp_path / "keys")
    os.chown(path, 12345, -1)
    with pytest.raises(KeyFileError, match=rf"key file {path} is owned by uid 12345, not by you \(uid 0\)"):
        read_key_header(path)


# -- reports/audit.py: the hash-chained audit log -------------------------------------------------


def test_the_audit_log_is_never_written_through_a_link_or_into_a_non_file(tmp_path: Path) -> None:
    from reports.audit import GENESIS, AuditLogError, append_event, head

    real = tmp_path / "audit.jsonl"
    append_event(real, "test", n=1)
    (tmp_path / "link.jsonl").symlink_to(real)
    (tmp_path / "folder.jsonl").mkdir()
    with pytest.raises(AuditLogError, match="is a symbolic link \\(not followed\\)"):
        append_event(tmp_path / "link.jsonl", "test", n=2)
    with pytest.raises(IsADirectoryError):  # O_RDWR on a folder: the kernel's refusal, passed on as is
        append_event(tmp_path / "folder.jsonl", "test", n=2)
    os.mkfifo(tmp_path / "fifo.jsonl")
    with pytest.raises(AuditLogError, match="is not a regular file"):
        head(tmp_path / "fifo.jsonl")
    assert head(real)[0] == 1 and head(tmp_path / "never.jsonl") == (0, GENESIS)


def test_log_id_of_an_empty_or_damaged_log(tmp_path: Path) -> None:
    from reports.audit import AuditLogError, anchor_of, log_id

    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert log_id(empty) is None
    assert anchor_of(empty)["log_id"] is None
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_bytes(b'{"seq": 1}\n')
    with pytest.raises(AuditLogError, match="the first line is damaged"):
        log_id(damaged)


def test_rollback_removes_only_its_own_last_entry(tmp_path: Path) -> None:
    from reports.audit import append_event, rollback, verify_log

    path = tmp_path / "audit.jsonl"
    first = append_event(path, "test", n=1)
    second = append_event(path, "test", n=2)
    assert rollback(path, first) is False  # not the last line: it stays
    huge = {**second, "data": {"pad": "x" * 10_000}}
    assert rollback(path, huge) is False  # longer than the whole log
    assert rollback(path, second) is True
    check = verify_log(path)
    assert check.ok and check.entries == 1 and check.head == first["hash"]


@pytest.mark.parametrize("damage, problem", [
    (lambda lines: [b"[1, 2]"], "line 1 is not an object"),
    (lambda lines: [lines[0].replace(b'"seq":1', b'"seq": 1')], "line 1: not in canonical form (edited by hand?)"),
    (lambda lines: [lines[0], b"x" * ((1 << 20) + 1)], "line 2: longer than 1048576 bytes (not an audit entry)"),
    (lambda lines: lines, "line 2: last line is incomplete (no newline)"),
], ids=["not-an-object", "not-canonical", "too-long", "torn-last-line"])
def test_verify_reports_the_first_broken_line(tmp_path: Path, damage: Any, problem: str) -> None:
    from reports.audit import append_event, verify_log

    path = tmp_path / "audit.jsonl"
    append_event(path, "test", n=1)
    append_event(path, "test", n=2)
    lines = path.read_bytes().splitlines()
    text = b"\n".join(damage(lines)) + b"\n"
    path.write_bytes(text[:-1] if problem.startswith("line 2: last line is incomplete") else text)
    check = verify_log(path)
    assert not check.ok and check.problems[0].startswith(problem), check.problems


def test_an_anchor_to_a_rewritten_entry_is_reported(tmp_path: Path) -> None:
    from reports.audit import Anchor, append_event, verify_log

    path = tmp_path / "audit.jsonl"
    append_event(path, "test", n=1)
    append_event(path, "test", n=2)
    check = verify_log(path, anchors=[Anchor("RPT-1 signature #01", 2, "f" * 64)])
    assert check.problems == ["entry 2 is not the one RPT-1 signature #01 anchored (the log was rewritten up to there)"]


# -- reports/verify.py: what makes a bundle INVALID -----------------------------------------------


@pytest.fixture
def signing_lab(tmp_path: Path) -> dict[str, Any]:
    from reports.key_registry import Registry
    from reports.synthetic import make_signer

    registry = Registry(tmp_path / "keys" / "registry.json")
    return {"root": tmp_path, "registry": registry, "audit": tmp_path / "audit.jsonl",
            "tech": make_signer(registry, tmp_path / "keys", "demo.tech", "Jane Doe", ["performed_by"])}


def _bundle(lab: dict[str, Any], name: str = "r1") -> Path:
    from reports.bundle import build_bundle
    from reports.synthetic import write_record

    return build_bundle(write_record(lab["root"] / "runs" / name, "PASS", duration_s=60.0), audit_log=lab["audit"])


def _edit_manifest(bundle: Path, change: Any) -> None:
    """What an attacker who also rewrites the manifest does: the result is still canonical."""
    from reports.bundle import load_manifest
    from reports.canonical import canonical_json

    manifest, _ = load_manifest(bundle)
    change(manifest)
    (bundle / "manifest.json").write_bytes(canonical_json(manifest))


def _edit_results(bundle: Path, change: Any) -> None:
    """results.json changed and its manifest entry re-hashed to match."""
    import hashlib

    from reports.canonical import canonical_json

    results = json.loads((bundle / "results.json").read_bytes())
    change(results)
    data = canonical_json(results)
    (bundle / "results.json").write_bytes(data)

    def rehash(manifest: dict[str, Any]) -> None:
        entry = next(e for e in manifest["files"] if e["path"] == "results.json")
        entry["sha256"], entry["size"] = hashlib.sha256(data).hexdigest(), len(data)

    _edit_manifest(bundle, rehash)


def _problems(bundle: Path, registry: Any) -> list[str]:
    from reports.verify import verify_bundle

    check = verify_bundle(bundle, registry, allow_unsigned=True)
    return check.problems + [p for s in check.signatures for p in s.problems]


def test_a_manifest_listing_a_file_twice_or_with_a_stray_hash_scope_is_invalid(signing_lab: dict[str, Any]) -> None:
    bundle = _bundle(signing_lab)
    assert _problems(bundle, signing_lab["registry"]) == []

    def twice_and_scoped(manifest: dict[str, Any]) -> None:
        entry = next(e for e in manifest["files"] if e["path"] == "results.json")
        entry["hash_scope"] = "whole file"
        manifest["files"].append(dict(entry))

    _edit_manifest(bundle, twice_and_scoped)
    problems = _problems(bundle, signing_lab["registry"])
    assert "manifest lists results.json twice" in problems
    assert "results.json: unexpected hash_scope in the manifest" in problems


@pytest.mark.parametrize("change, problem", [
    (lambda r: r.update(report_id="RPT-OTHER"), "results.json report id RPT-OTHER differs from the manifest's"),
    (lambda r: r["verdict"].update(outcome="FAIL"), "results.json verdict FAIL differs from the manifest's PASS"),
    (lambda r: r["station"].update(simulated=False),
     "results.json validity conditions or simulated flag differ from the manifest's"),
], ids=["report-id", "verdict", "simulated"])
def test_results_that_disagree_with_the_manifest_are_invalid(signing_lab: dict[str, Any], change: Any,
                                                             problem: str) -> None:
    bundle = _bundle(signing_lab)
    _edit_results(bundle, change)
    problems = _problems(bundle, signing_lab["registry"])
    assert any(p.startswith(problem) for p in problems), problems


def _signed_statement(lab: dict[str, Any], bundle: Path, **override: Any) -> None:
    """A statement signed with a registered key, ``override`` changing what it claims."""
    from reports.bundle import load_manifest
    from reports.canonical import canonical_json, sha256_hex
    from reports.dsse import sign_envelope
    from reports.verify import STATEMENT_KIND, chain_hash

    key = lab["tech"]
    manifest, manifest_bytes = load_manifest(bundle)
    statement = {
        "statement": STATEMENT_KIND, "manifest_sha256": sha256_hex(manifest_bytes),
        "report_id": manifest["report_id"], "run_id": manifest["run_id"], "verdict": manifest["verdict"],
        "role": "performed_by", "meaning": "I performed this test; verdict PASS", "signer_id": key.signer_id,
        "printed_name": key.printed_name, "key_id": key.key_id, "signed_at": "2026-01-10T10:00:00.000000Z",
        "sequence": 1, "prior_signatures_sha256": chain_hash([]),
        "simulated": manifest["simulated"], "conditions": manifest["conditions"], **override,
    }
    (bundle / "signatures").mkdir(exist_ok=True)
    (bundle / "signatures" / "01-performed_by.dsse.json").write_bytes(
        sign_envelope(canonical_json(statement), key.private_key, key.key_id))


@pytest.mark.parametrize("override, problem", [
    ({"verdict": "FAIL"}, "statement verdict FAIL differs from the bundle verdict PASS"),
    ({"simulated": False}, "statement's simulated flag or validity conditions differ from the bundle's"),
    ({"printed_name": "Someone Else"}, "belongs to demo.tech (Jane Doe), not"),
], ids=["verdict", "simulated", "printed-name"])
def test_a_signed_statement_that_differs_from_the_bundle_is_invalid(signing_lab: dict[str, Any],
                                                                    override: dict[str, Any], problem: str) -> None:
    bundle = _bundle(signing_lab)
    _signed_statement(signing_lab, bundle, **override)
    problems = _problems(bundle, signing_lab["registry"])
    assert any(problem in p for p in problems), problems


def test_a_signature_without_a_registry_is_not_checked_and_not_trusted(signing_lab: dict[str, Any]) -> None:
    bundle = _bundle(signing_lab)
    _signed_statement(signing_lab, bundle)
    assert any(p.endswith("no key registry given: signature cannot be checked") for p in _problems(bundle, None))


# -- rig/engine/runner.py: the end of a run when parts of the rig fail -----------------------------


class UnstoppableDaq(StreamingDaq):
    """A DAQ that streams but cannot be stopped, and whose listeners cannot be removed."""

    def stop_acquisition(self) -> Any:
        raise OSError(5, "Input/output error")

    def remove_listener(self, listener: Any) -> None:
        raise RuntimeError("the DAQ session is gone")


def test_a_daq_that_cannot_be_stopped_or_detached_still_ends_the_run_in_its_safe_state(tmp_path: Path) -> None:
    from test_runner_logic import MemoryBench, procedure_with, run, start_pump

    from rig.engine.procedure import Step

    bench = MemoryBench()
    bench.daq = UnstoppableDaq()
    proc = procedure_with(Step("start", start_pump), Step("measure", lambda ctx: ctx.measure("error_pct", 0.5)),
                          tmp_path=tmp_path)
    result, record = run(proc, tmp_path, bench)
    warnings = [e["detail"] for e in record.of_type("event") if e.get("kind") == "warning"]
    assert "stopping DAQ acquisition failed: [Errno 5] Input/output error" in " ".join(warnings)
    assert any(w.startswith("detaching the interlock failed: ") and "the DAQ session is gone" in w for w in warnings)
    assert any(w.startswith("releasing the run's DAQ listeners failed: ") for w in warnings)
    assert bench.safe_state_calls == 1 and record.of_type("safe_state")[0]["confirmed"] is True
    assert not bench.pump.running
    assert result.outcome == "PASS" and record.of_type("run_finished")[0]["daq"] is None


def test_a_record_that_cannot_be_created_still_reaches_the_safe_state(tmp_path: Path) -> None:
    from test_runner_logic import MemoryBench, procedure_with, start_pump

    from rig.engine.operator import Operator
    from rig.engine.params import parse_params
    from rig.engine.procedure import Step
    from rig.engine.runner import Runner

    (tmp_path / "runs").write_text("a file where the runs folder should be")
    bench = MemoryBench()
    bench.pump.running = True  # left running by whatever came before
    proc = procedure_with(Step("start", start_pump), tmp_path=tmp_path)
    result = Runner(procedure=proc, spec=proc.load_spec(), params=parse_params([], proc), bench=bench,
                    run_dir=tmp_path / "runs" / "r1", run_id="r1", operator=Operator("tester", interactive=False),
                    software={"version": "test", "git_sha": None}).run()
    assert result.outcome == "ERROR" and result.safe_state_confirmed
    assert bench.safe_state_calls == 1 and not bench.pump.running
    assert (tmp_path / "runs").is_file()  # nothing was written in its place


def test_an_abort_requested_during_a_step_skips_every_later_step(tmp_path: Path) -> None:
    from test_runner_logic import MemoryBench, procedure_with, run, start_pump

    from rig.engine.procedure import Step

    abort, bench = AbortFlag(), MemoryBench()

    def operator_presses_abort(ctx: Any) -> None:
        abort.request(ABORTED, "aborted by the operator")  # e.g. the panel's abort button; the step returns

    proc = procedure_with(Step("start", start_pump), Step("abort", operator_presses_abort),
                          Step("never", lambda ctx: ctx.measure("error_pct", 0.0)), tmp_path=tmp_path)
    result, record = run(proc, tmp_path, bench, abort=abort)
    assert (result.outcome, result.reason) == ("ABORTED", "aborted by the operator")
    assert [e["step"] for e in record.of_type("step_started")] == ["start", "abort"]
    assert record.of_type("safe_state")[0]["confirmed"] is True and not bench.pump.running


def test_what_a_bundle_anchors_in_the_audit_log(signing_lab: dict[str, Any]) -> None:
    """``rig audit verify --bundle``'s reading of a bundle: the run record's anchor and the
    signatures' anchors in this log, anchors in another log set aside, unanchored signatures named."""
    from reports.audit import GENESIS
    from reports.verify import bundle_anchors

    bundle = _bundle(signing_lab)
    this_log, other_log = "a" * 64, "b" * 64
    record = bundle / "record.jsonl"
    lines = record.read_bytes().splitlines()
    started = json.loads(lines[0])
    started["audit_anchor"] = {"log_id": other_log, "seq": 3, "hash": "c" * 64}
    record.write_bytes(b"\n".join([json.dumps(started).encode(), b"[1, 2]", *lines[1:]]) + b"\n")

    _signed_statement(signing_lab, bundle)  # signed before anchoring existed: no audit_anchor
    anchors, expected, problems = bundle_anchors(bundle, this_log)
    assert anchors == [] and expected == []
    assert problems[0].endswith("signature #01 (performed_by) carries no audit anchor (signed before anchoring): "
                                "not checked")
    assert "nothing in this bundle is anchored to this audit log" in problems[1]
    assert "run record is anchored to another audit log (first entry bbbbbbbbbbbbbbbb…)" in problems[1]

    # signed while the log was still empty: no entry to anchor to, but its own entry is expected
    _signed_statement(signing_lab, bundle, audit_anchor={"log_id": None, "seq": 0, "hash": GENESIS})
    anchors, expected, problems = bundle_anchors(bundle, this_log)
    assert anchors == [] and [(e.kind, e.key) for e in expected] == [("signature", "envelope_sha256")]
    assert problems == []


def test_require_hardware_refuses_a_simulated_bundle(signing_lab: dict[str, Any]) -> None:
    from reports.verify import verify_bundle

    bundle = _bundle(signing_lab)
    assert verify_bundle(bundle, signing_lab["registry"], allow_unsigned=True).problems == []
    problems = verify_bundle(bundle, signing_lab["registry"], allow_unsigned=True, require_hardware=True).problems
    assert len(problems) == 1 and problems[0].startswith("simulated data (station mode ")
    assert problems[0].endswith("--require-hardware accepts only a hardware station on a real clock")


# -- rig/engine/runner.py: what refuses a run, and faults from other threads ------------------------


def _station(policy: str, *, overdue: bool, under_test_serial: str | None = "P-1") -> Any:
    import datetime as dt
    from types import SimpleNamespace

    pump = SimpleNamespace(name="pump", serial=under_test_serial or "P-1", under_test=under_test_serial is not None,
                           calibration_due=dt.date(2020, 1, 1), calibration_overdue=lambda: overdue)
    return SimpleNamespace(calibration_policy=policy, instruments={"pump": pump})


def test_an_overdue_calibration_refuses_the_run_only_under_the_block_policy() -> None:
    from rig.engine.runner import check_calibration_policy
    from rig.errors import UsageError

    with pytest.raises(UsageError, match=r'calibration overdue: instruments\.pump \(serial P-1\) was due 2020-01-01; '
                                         r'station calibration_policy = "block" refuses to start'):
        check_calibration_policy(_station("block", overdue=True))
    check_calibration_policy(_station("block", overdue=False))  # nothing overdue: starts
    check_calibration_policy(_station("warn", overdue=True))  # warn: starts (the record warns)


def test_the_item_serial_must_be_the_one_the_item_reports_or_the_station_names() -> None:
    from types import SimpleNamespace

    from rig.engine.runner import item_serial_problem

    station = _station("warn", overdue=False)
    reports = {"pump": SimpleNamespace(serial="P-REPORTED")}
    silent = {"pump": SimpleNamespace(serial="")}  # e.g. the NE-1000 reports none
    assert item_serial_problem(station, reports, {"item_serial": " P-REPORTED "}) is None
    assert item_serial_problem(station, reports, {"item_serial": "P-1"}) == (
        "item under test: serial 'P-1' was entered, but instruments.pump reports serial 'P-REPORTED'; "
        "check the pump on the bench (the run did not start)")
    assert item_serial_problem(station, silent, {"item_serial": "P-1"}) is None
    assert "is named in the station file with serial 'P-1'" in str(item_serial_problem(station, silent,
                                                                                        {"item_serial": "X"}))
    assert item_serial_problem(station, reports, {}) is None  # nothing entered: nothing to compare
    assert item_serial_problem(_station("warn", overdue=False, under_test_serial=None), reports,
                               {"item_serial": "X"}) is None  # no item under test on this station


def test_events_and_background_faults_reach_only_an_open_record(tmp_path: Path) -> None:
    from test_runner_logic import MemoryBench, procedure_with

    from rig.engine.operator import Operator
    from rig.engine.params import parse_params
    from rig.engine.procedure import Step
    from rig.engine.runner import MAX_RECORDED_FAULTS, Runner
    from rig.record import read_record

    seen: dict[str, Any] = {}

    def step(ctx: Any) -> None:
        seen["during"] = runner.event("hangup", "the terminal hung up")
        for n in range(MAX_RECORDED_FAULTS + 3):  # a listener failing on every chunk
            runner.faults.report("warning", f"display listener failed ({n})", None)
        ctx.measure("error_pct", 0.0)

    proc = procedure_with(Step("s", step), tmp_path=tmp_path)
    runner = Runner(procedure=proc, spec=proc.load_spec(), params=parse_params([], proc), bench=MemoryBench(),
                    run_dir=tmp_path / "runs" / "r1", run_id="r1", operator=Operator("tester", interactive=False),
                    software={"version": "test", "git_sha": None})
    seen["before"] = runner.event("hangup", "too early")
    result = runner.run()
    seen["after"] = runner.event("hangup", "too late")
    runner.faults.report("error", "a thread failed after the run", "Traceback ...")  # past the cap, closed
    idle = Runner(procedure=proc, spec=proc.load_spec(), params=parse_params([], proc), bench=MemoryBench(),
                  run_dir=tmp_path / "runs" / "r2", run_id="r2", operator=Operator("tester", interactive=False),
                  software={"version": "test", "git_sha": None})
    idle.faults.report("error", "a thread failed before any record", "Traceback ...")  # no record to write to
    assert idle.abort.requested is not None and idle.abort.requested.outcome == "ERROR"
    assert not (tmp_path / "runs" / "r2").exists()
    assert seen == {"before": False, "during": True, "after": False}
    record = read_record(result.run_dir)
    details = [e["detail"] for e in record.of_type("event")]
    assert "the terminal hung up" in details and "too early" not in details and "too late" not in details
    recorded = [d for d in details if d.startswith("display listener failed")]
    assert len(recorded) == MAX_RECORDED_FAULTS  # recorded one by one up to the cap, then counted
    assert f"3 more background failure(s) after the first {MAX_RECORDED_FAULTS} were not recorded one by one" \
        in details
    assert result.outcome == "PASS", result.reason  # warnings from other threads decide nothing
    assert record.events[-1]["type"] == "run_finished"  # the late error was not written after it
    assert "a thread failed after the run" not in [e.get("detail") for e in read_record(result.run_dir).events]


class UnarmableDaq(StreamingDaq):
    """A DAQ on which the interlock's check cannot be registered."""

    def add_chunk_listener(self, listener: Any, *, safety: bool = False) -> None:
        raise RuntimeError("listener table full")


def test_no_interlock_no_run(tmp_path: Path) -> None:
    """Fail closed: if the interlock cannot be armed, no step runs; the run ends ERROR in its
    read-back safe state (the pump, left running before the run, is stopped)."""
    from test_runner_logic import MemoryBench, procedure_with, run, start_pump

    from rig.engine.procedure import Step

    bench = MemoryBench()
    bench.daq = UnarmableDaq()
    bench.pump.running = True
    proc = procedure_with(Step("start", start_pump), tmp_path=tmp_path)
    result, record = run(proc, tmp_path, bench)
    assert result.outcome == "ERROR" and "listener table full" in result.reason
    assert record.of_type("step_started") == []
    assert bench.safe_state_calls == 1 and not bench.pump.running
    assert record.of_type("safe_state")[0]["confirmed"] is True
    assert not [e for e in record.of_type("event") if e.get("kind") == "interlock"]  # never said it was armed


def test_a_daq_that_does_not_stream_in_chunks_arms_no_clock_guard(tmp_path: Path) -> None:
    """The interlock is still armed (its listeners are on the DAQ); only the virtual clock's guard,
    which needs the chunk length to stop a jump at the end of the crossing chunk, is not set."""
    clock, daq = GuardedClock(), ListeningDaq()  # no chunk_samples
    acq, _, log = _acquisition(tmp_path, daq, clock)  # type: ignore[arg-type]
    acq.arm_interlock()
    assert clock.guard is None
    assert [(e["kind"], e["detail"]) for e in log.lines] == [("interlock", "armed at 20 kPa")]
    assert [safety for _listener, safety in daq.chunk_listeners] == [True]  # the interlock's check, fail-closed
