"""The fault-injection matrix: which faults, which phases, how each is injected, what is observed.

Why one module: the test (test_matrix.py) and the document renderer (render_reliability.py) must
agree on the cells, the n/a reasons and the observation format; both import them from here.

Each cell runs the test-only procedure ``faults.fault_matrix`` (four phases, each measuring before
its injection point) on a fresh simulated bench served in this process (~0.5 s to start: cheaper
and more honest than resetting a shared bench between cells, since a dropped connection closes the
instrument's pty for good and an occlusion leaves pressure in the line). Faults that need a real
process to be signalled or killed run `rig run` as a child attached to that bench. The bench's
own state (control channel ``state()``) — never the drivers' memory — decides whether the rig
ended safe.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conftest import write_station
from procedure_runs import FAST_DAQ

from instruments.sim.control import SimControl
from instruments.sim.server import SimServer
from rig.cli.commands.sim import write_resources
from rig.engine.display import Display
from rig.engine.operator import Operator
from rig.engine.params import parse_params
from rig.engine.runner import Runner
from rig.record import RunRecord, read_record
from rig.station.bench import Bench
from rig.station.config import load_station

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
PROCEDURE_MODULE = "faults.fault_matrix"
EXTRA_ENV = "RIG_EXTRA_PROCEDURES"
OUT_ENV = "RIG_FAULT_MATRIX_OUT"  # where observed cells are written as JSON (render_reliability.py)

PHASES = ("setup", "delivery", "fault_step", "measurement", "report")
RUN_PHASES = PHASES[:4]
# Measurements each phase takes before its injection point (the procedure's design).
MEASURED_BEFORE = {
    "setup": ("baseline_mass_g",),
    "delivery": ("baseline_mass_g", "early_pressure_kpa"),
    "fault_step": ("baseline_mass_g", "early_pressure_kpa", "occlusion_rise_kpa"),
    "measurement": ("baseline_mass_g", "early_pressure_kpa", "occlusion_rise_kpa", "delivered_ml"),
}

# The matrix station: no DMM (unused), the DAQ at 20 Hz in 2 s chunks (procedure_runs.FAST_DAQ),
# an interlock limit the 6 mL/h test procedure reaches ~1 min after a full kink, and short
# instrument timeouts so a silent instrument costs little wall time.
STATION_SET: dict[str, Any] = {
    **FAST_DAQ,
    "safety.max_line_pressure_kpa": 15.0,
    "instruments.balance.timeout_ms": 300,
    "instruments.pump.timeout_ms": 300,
}
CLOCK_JUMP_S = 3600.0
DISK_FULL = "/dev/full"  # every write to it fails with ENOSPC, from the kernel


@dataclass(frozen=True)
class Fault:
    id: str
    title: str
    how: str  # how it is injected
    kind: str  # "in_process" | "process" (needs a `rig run` child)


FAULTS: tuple[Fault, ...] = (
    Fault("silent", "instrument stops answering", "balance transport fault `silent` (requests swallowed)", "in_process"),
    Fault("garbage", "garbage reply", "balance transport fault `garbage` (noise instead of replies)", "in_process"),
    Fault("drop", "connection dropped", "balance transport fault `drop` (the pty is closed)", "in_process"),
    Fault("stall", "pump stall alarm", "sim `pump(stall=True)`: the NE-1000 motor stalls and answers `A?S`",
          "in_process"),
    Fault("daq_error", "DAQ error", "the simulated NI device server goes away (gRPC server stopped)", "in_process"),
    Fault("overpressure", "overpressure", "sim `line(kink_pct=100)`: the catheter kinks shut, pressure climbs",
          "in_process"),
    Fault("step_timeout", "step timeout", "the step waits without end (ctx.wait(1e6)) past its 300-600 s budget",
          "in_process"),
    Fault("sigint", "SIGINT", "SIGINT to the `rig run` child while it holds in the phase", "process"),
    Fault("sigterm", "SIGTERM", "SIGTERM to the `rig run` child while it holds in the phase", "process"),
    Fault("kill9", "kill -9", "SIGKILL to the `rig run` child while it holds in the phase", "process"),
    Fault("disk_full", "disk full", "every open file of the run is re-pointed (dup2) at /dev/full: real ENOSPC",
          "in_process"),
    Fault("clock_jump", "clock jump", f"the bench's clock jumps {CLOCK_JUMP_S / 3600:g} h ahead under the run "
          "(another client advances the shared virtual clock)", "in_process"),
)
FAULT_BY_ID = {f.id: f for f in FAULTS}

_REPORT_NA = ("report writing reads only the run record: the instruments are already in their safe state "
              "and closed, so an instrument fault cannot reach it")
NOT_APPLICABLE: dict[tuple[str, str], str] = {
    (fault, "report"): _REPORT_NA
    for fault in ("silent", "garbage", "drop", "stall", "daq_error", "overpressure", "step_timeout")
}
# Cells that reveal a limitation no controller code can fix; the test asserts everything else,
# then xfails with this reason (strict: a fix makes it XPASS and the mark must go). None left:
# kill -9 used to leave the pump running, until the safe-state supervisor (rig.engine.supervisor).
KNOWN_GAPS: dict[tuple[str, str], str] = {}
SUPERVISOR_WAIT_S = 20.0  # wall time allowed for the supervisor to act after a kill -9


def cells() -> list[tuple[str, str]]:
    return [(f.id, p) for f in FAULTS for p in PHASES]


# -- observations ---------------------------------------------------------------------------------


@dataclass
class Observation:
    """What one cell showed; written as JSON for docs/reliability.md."""

    fault: str
    phase: str
    status: str = "real"  # "real" | "n/a" | "xfail"
    outcome: str = ""  # the record's outcome (INCOMPLETE when it has no run_finished)
    reason: str = ""
    ended_in: str | None = None  # the step that was running when the run ended
    record_safe_claim: bool | None = None  # the record's safe_state.confirmed (None: not recorded)
    pump_stopped: bool | None = None  # from the simulated bench's own state
    valves_safe: bool | None = None
    measured_before: list[str] = field(default_factory=list)
    measurements_kept: bool | None = None
    verdict: str | None = None  # the report bundle's verdict
    signable_as_pass: bool | None = None
    wall_s: float = 0.0
    note: str = ""

    def save(self, directory: Path | None) -> None:
        if directory is None:
            return
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{self.fault}__{self.phase}.json").write_text(json.dumps(asdict(self), indent=1))


def out_dir() -> Path | None:
    value = os.environ.get(OUT_ENV)
    return Path(value) if value else None


# -- the bench --------------------------------------------------------------------------------------


@dataclass
class CellBench:
    """A simulated bench served in this process and a station file that attaches to it."""

    server: SimServer
    station: Path
    control: SimControl

    def state(self) -> dict[str, Any]:
        return self.control.state()


@contextmanager
def cell_bench(directory: Path) -> Iterator[CellBench]:
    served = write_station(directory, without=("dmm",), set=STATION_SET, name="served.toml")
    server = SimServer(load_station(served)).start()
    try:
        resources = directory / "resources.json"
        write_resources(resources, server.resources())
        attach = write_station(directory, without=("dmm",), name="attach.toml",
                               set={**STATION_SET, "sim.attach": str(resources)})
        control = SimControl(server.control.address)
        try:
            yield CellBench(server, attach, control)
        finally:
            control.close()
    finally:
        server.stop()


def safe_from_sim(state: dict[str, Any]) -> tuple[bool, bool | None]:
    """(pump stopped, valves safe) as the simulated bench itself sees them. Valves are judged from
    the NI device's output registers (all valve lines low, kink output ~0 V); None without a DAQ."""
    pump = not state["model"]["pump"]["running"] and not state["instruments"]["pump"]["running"]
    daq = state.get("daq")
    if daq is None:
        return pump, None
    outputs = daq["outputs"]
    valves = all(not o["high"] for o in outputs.values() if "high" in o)
    kink = all(abs(o["volts"]) < 0.05 for o in outputs.values() if "volts" in o)
    rig = state["model"]["valves"]  # the rig's valves only: a fault of the line stays as injected
    return pump, valves and kink and not any(rig[k] for k in ("occlusion", "leak", "disconnect")) \
        and rig["kink_pct"] == 0.0


# -- injection -----------------------------------------------------------------------------------


def redirect_run_files_to_full_disk(run_dir: Path, under: str = "") -> int:
    """Point every file descriptor this process holds open under ``run_dir`` (or only those
    under ``run_dir / under``) at /dev/full: from then on each write to the record, the raw CSVs
    and the DAQ stream fails with ENOSPC from the kernel, exactly as on a full disk, while what
    was written before stays on disk. Returns how many descriptors were moved."""
    prefix = str((run_dir / under).resolve()) if under else str(run_dir.resolve())
    moved = 0
    full = os.open(DISK_FULL, os.O_WRONLY)
    try:
        for entry in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{entry}")
            except OSError:
                continue
            if target.startswith(prefix):
                os.dup2(full, int(entry))
                moved += 1
    finally:
        os.close(full)
    return moved


def injector(fault: str, bench: CellBench, run_dir: Path) -> Callable[[Any], None]:
    """What happens at the injection point for ``fault`` (called with the step's context)."""
    control, server = bench.control, bench.server
    actions: dict[str, Callable[[Any], None]] = {
        "silent": lambda ctx: control.fault("balance", "silent"),
        "garbage": lambda ctx: control.fault("balance", "garbage"),
        "drop": lambda ctx: control.fault("balance", "drop"),
        "stall": lambda ctx: control.pump(stall=True),
        "daq_error": lambda ctx: server.daq_server.stop(0),
        "overpressure": lambda ctx: control.line(kink_pct=100.0),
        "step_timeout": lambda ctx: ctx.wait(1e6),
        "disk_full": lambda ctx: redirect_run_files_to_full_disk(run_dir),
        "clock_jump": lambda ctx: control.advance(CLOCK_JUMP_S),
    }
    return actions[fault]


def load_procedure() -> Any:
    """The test procedure through the production discovery path (RIG_EXTRA_PROCEDURES)."""
    import procedures

    previous = os.environ.get(EXTRA_ENV)
    os.environ[EXTRA_ENV] = PROCEDURE_MODULE
    try:
        return procedures.load("fault_matrix")
    finally:
        if previous is None:
            os.environ.pop(EXTRA_ENV, None)
        else:
            os.environ[EXTRA_ENV] = previous


@dataclass
class CellRun:
    """The raw material of one cell, before judging."""

    run_dir: Path
    record: RunRecord | None
    record_error: str | None
    sim_state: dict[str, Any]
    snapshot: dict[str, float]  # measurements on disk at the injection point
    in_memory: list[dict[str, Any]]  # RunResult.measurements (in-process cells)
    exit_code: int | None = None
    output: str = ""


def measurements_on_disk(run_dir: Path) -> dict[str, float]:
    record = read_record(run_dir)
    return {m["name"]: m["value"] for m in record.measurements}


def run_in_process(fault: str | None, phase: str | None, directory: Path,
                   act: Callable[[CellBench, Path], Callable[[Any], None]] | None = None) -> CellRun:
    """Run the test procedure with ``fault`` injected at ``phase`` (None: a fault-free run);
    ``act(bench, run_dir)`` replaces the matrix's injector for faults outside the matrix."""
    proc = load_procedure()
    run_dir = directory / "runs" / "cell"
    snapshot: dict[str, float] = {}
    with cell_bench(directory) as bench:
        with Bench.open(load_station(bench.station)) as rig_bench:
            runner = Runner(procedure=proc, spec=proc.load_spec(), params=parse_params([], proc), bench=rig_bench,
                            run_dir=run_dir, run_id="cell", operator=Operator("matrix", interactive=False),
                            display=Display(), software={"version": "test", "git_sha": None})
            if fault is not None:
                action = act(bench, run_dir) if act is not None else injector(fault, bench, run_dir)

                def inject(at: str, ctx: Any) -> None:
                    if at != phase:
                        return
                    snapshot.update(measurements_on_disk(run_dir))
                    ctx.event("fault_injected", f"test injects {fault} in phase {phase}")
                    action(ctx)

                runner.state["inject"] = inject
            result = runner.run()
        state = bench.state()
    record, error = _read(run_dir)
    return CellRun(run_dir, record, error, state, snapshot, list(result.measurements))


def _read(run_dir: Path) -> tuple[RunRecord | None, str | None]:
    try:
        return read_record(run_dir), None
    except Exception as exc:  # noqa: BLE001 - an unreadable record is an observation, judged later
        return None, f"{type(exc).__name__}: {exc}"


def child_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]), EXTRA_ENV: PROCEDURE_MODULE}
    env.pop("RIG_STATION", None)
    env.pop(OUT_ENV, None)
    return env


def wait_for_text(path_glob: Callable[[], list[Path]], needle: str, proc: subprocess.Popen[str],
                  timeout_s: float = 60.0) -> Path:
    """The first file from ``path_glob`` that contains ``needle`` (the child must stay alive)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"child exited {proc.returncode} before {needle!r}:\n{out}\n{err}")
        for path in path_glob():
            try:
                if needle in path.read_text(encoding="utf-8", errors="replace"):
                    return path
            except OSError:
                continue
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"{needle!r} did not appear within {timeout_s} s: {proc.communicate()}")


SIGNALS = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM, "kill9": signal.SIGKILL}


def run_as_process(fault: str, phase: str, directory: Path) -> CellRun:
    """`rig run fault_matrix` as a child holding at ``phase``; the signal lands during the hold."""
    out = directory / "runs"
    with cell_bench(directory) as bench:
        cmd = [sys.executable, "-m", "rig", "run", "fault_matrix", "--station", str(bench.station), "--out", str(out),
               "--plain", "--no-report", "--operator", "matrix",
               "--param", f"hold_phase={RUN_PHASES.index(phase) + 1}", "--param", "hold_wall_s=120"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
                                stdin=subprocess.DEVNULL, cwd=REPO)
        try:
            record_path = wait_for_text(lambda: list(out.glob("*/record.jsonl")), f"holding in phase {phase}", proc)
            run_dir = record_path.parent
            snapshot = measurements_on_disk(run_dir)
            os.kill(proc.pid, SIGNALS[fault])
            stdout, stderr = proc.communicate(timeout=60)
            if fault == "kill9":
                wait_for_supervisor(run_dir)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        state = bench.state()
    record, error = _read(run_dir)
    return CellRun(run_dir, record, error, state, snapshot, [], proc.returncode, stdout + stderr)


def wait_for_supervisor(run_dir: Path, timeout_s: float = SUPERVISOR_WAIT_S) -> bool:
    """After a kill -9: wait until the supervisor's safe_state is in the record (True), or give
    up after ``timeout_s`` (False) and let the cell's checks of the bench's own state judge."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record, _ = _read(run_dir)
        if record is not None and any(e.get("by") == "supervisor" for e in record.of_type("safe_state")):
            return True
        time.sleep(0.05)
    return False


def ended_in(record: RunRecord) -> str | None:
    """The step that was running when the run ended (last step_started)."""
    started = record.of_type("step_started")
    return started[-1]["step"] if started else None
