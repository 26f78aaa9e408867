"""The runner on the simulated bench (real transports, virtual time): pass, fail by an injected
fault, an instrument that goes silent, an interlock trip, a step timeout. Safe state is checked
in the emulators' own state through the control channel, not in the drivers' memory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import procedures
from reports.audit import verify_log
from rig.engine.display import Display
from rig.engine.operator import Operator
from rig.engine.params import parse_params
from rig.engine.procedure import Procedure, Step
from rig.engine.runner import Runner, RunResult
from rig.record import read_record
from rig.station.bench import Bench
from rig.station.config import load_station

pytestmark = pytest.mark.slow
ANSWERS = {"item_serial": "SN-TEST-1", "setup": "done"}


class OnStep(Display):
    """Does something to the bench when a given step starts (fault injection at a known point)."""

    def __init__(self, step: str, action: Callable[[], None]) -> None:
        super().__init__()
        self.step, self.action = step, action

    def step_started(self, index: int, name: str, t_proc_s: float) -> None:
        super().step_started(index, name, t_proc_s)
        if name == self.step:
            self.action()


def run_on_sim(station_path: Path, tmp_path: Path, *, params: list[str] = (),
               before: Callable[[Any], None] | None = None,
               at_step: tuple[str, Callable[[Any], None]] | None = None,
               procedure: Procedure | None = None) -> tuple[RunResult, Any, dict[str, Any]]:
    """Run a procedure in-process; return the result, the record and the emulators' state."""
    proc = procedure or procedures.load("delivery_check")
    with Bench.open(load_station(station_path)) as bench:
        if before:
            before(bench.sim)
        display = OnStep(at_step[0], lambda: at_step[1](bench.sim)) if at_step else Display()
        result = Runner(procedure=proc, spec=proc.load_spec(), params=parse_params(list(params), proc),
                        bench=bench, run_dir=tmp_path / "runs" / "r", run_id="r",
                        operator=Operator("tester", ANSWERS, interactive=False), display=display,
                        item_under_test={"item_serial": "SN-TEST-1"}).run()
        state = bench.sim.state()
    return result, read_record(result.run_dir), state


def assert_pump_stopped(state: dict[str, Any]) -> None:
    assert state["model"]["pump"]["running"] is False
    assert state["instruments"]["pump"]["running"] is False


def test_delivery_check_passes_with_daq_and_interlock(station_file: Callable[..., Path], tmp_path: Path) -> None:
    station = station_file(without=("dmm",))
    rate_hz = load_station(station).instruments["daq"].options["sample_rate_hz"]
    result, record, state = run_on_sim(station, tmp_path)
    assert (result.outcome, result.safe_state_confirmed) == ("PASS", True), result.reason
    values = {m["name"]: m["value"] for m in record.measurements}
    assert abs(values["volume_error_pct"]) < 2.0
    assert abs(values["flow_rate_error_pct"]) < 2.0
    assert record.started["station"]["instruments"]["pump"]["identity"]["model"] == "NE-1000 (simulated)"
    assert any(e.get("kind") == "interlock" and "armed" in e["detail"] for e in record.of_type("event"))
    assert (result.run_dir / "raw" / "balance.csv").read_text().startswith("t_s,mass_g,stable\n")
    finished = record.finished
    assert finished["daq"]["samples"] >= 600 * rate_hz  # 10+ min at the station's rate, nothing lost
    assert finished["daq"]["error"] is None
    # The model delivered what the balance saw (within the line's stored volume).
    assert state["model"]["totals"]["delivered_ml"] == pytest.approx(1.0 * (600 / 3600), rel=0.02)
    assert_pump_stopped(state)
    # The run is in the hash-chained audit log, its final record anchored by sha256.
    log = result.run_dir.parent / "audit.jsonl"
    assert verify_log(log).ok
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["kind"] for e in entries] == ["run_started", "run_finished"]
    assert entries[1]["data"]["outcome"] == "PASS"
    assert entries[1]["data"]["record_sha256"] == hashlib.sha256((result.run_dir / "record.jsonl").read_bytes()).hexdigest()


def test_displacement_fault_fails_the_gravimetric_limits(station_file: Callable[..., Path], tmp_path: Path) -> None:
    result, record, state = run_on_sim(station_file(without=("dmm", "daq")), tmp_path,
                                       before=lambda sim: sim.pump(displacement_factor=0.8))
    assert result.outcome == "FAIL" and result.exit_code == 1
    by_name = {m["name"]: m for m in record.measurements}
    assert by_name["volume_error_pct"]["value"] == pytest.approx(-20.0, abs=1.5)
    assert by_name["volume_error_pct"]["outcome"] == "fail"
    assert by_name["pump_count_error_pct"]["outcome"] == "pass"  # the pump believes it is right
    assert "volume_error_pct" in result.reason and "outside [-5, 5]" in result.reason
    assert_pump_stopped(state)


def test_balance_going_silent_mid_run_is_error_with_pump_safe(station_file: Callable[..., Path],
                                                              tmp_path: Path) -> None:
    station = station_file(without=("dmm", "daq"), set={"instruments.balance.timeout_ms": 300})
    result, record, state = run_on_sim(station, tmp_path,
                                       at_step=("deliver", lambda sim: sim.fault("balance", "silent")))
    assert result.outcome == "ERROR" and result.exit_code == 3
    assert "instrument error: balance" in result.reason
    deliver = [e for e in record.of_type("step_finished") if e["step"] == "deliver"][0]
    assert deliver["status"] == "error"
    safe = record.of_type("safe_state")[0]
    assert safe["instruments"]["pump"]["running"] is False  # the read-back the driver got
    assert "balance" in (safe["error"] or "")  # a silent balance cannot confirm anything
    assert_pump_stopped(state)  # ... and the emulator agrees


def test_overpressure_interlock_trip_aborts(station_file: Callable[..., Path], tmp_path: Path) -> None:
    station = station_file(without=("dmm",), set={"safety.max_line_pressure_kpa": 10.0})
    result, record, state = run_on_sim(station, tmp_path,
                                       at_step=("deliver", lambda sim: sim.line(occlusion=True)))
    assert result.outcome == "ABORTED", result.reason
    assert result.reason.startswith("interlock tripped: overpressure: upstream line pressure")
    assert "exceeded the limit of 10.0 kPa" in result.reason
    trips = [e for e in record.of_type("event") if e["kind"] == "interlock" and "overpressure" in e["detail"]]
    assert len(trips) == 1
    # Occluded at 1 mL/h with C = 0.010 mL/kPa, pressure climbs ~100 kPa/h: ~5 min to 10 kPa.
    assert 120 < trips[0]["t_proc_s"] < 600
    assert result.safe_state_confirmed
    assert_pump_stopped(state)


def test_step_timeout_on_the_bench(station_file: Callable[..., Path], tmp_path: Path) -> None:
    def start(ctx: Any) -> None:
        ctx.pump.set_rate_ml_h(1.0)
        ctx.pump.start()

    (tmp_path / "hang.py").write_text("# a procedure whose second step never ends\n")
    (tmp_path / "hang.spec.toml").write_text('[spec]\nprocedure = "hang"\nversion = "1"\n')
    hang = Procedure(id="hang", version="1", title="Hang", requirements=(), parameters=(),
                     steps=(Step("start", start), Step("wait", lambda ctx: ctx.wait(3600), timeout_s=30)),
                     measurements=(), spec_file="hang.spec.toml").bound(tmp_path / "hang.py")
    result, record, state = run_on_sim(station_file(without=("dmm", "daq")), tmp_path, procedure=hang)
    assert (result.outcome, result.reason) == ("ERROR", "step 'wait' exceeded its timeout of 30 s of procedure time")
    assert record.of_type("step_finished")[-1]["t_proc_s"] == pytest.approx(30.0, abs=0.01)
    assert state["t_s"] < 60  # the sim did not run on for the hour the step asked for
    assert result.safe_state_confirmed
    assert_pump_stopped(state)
