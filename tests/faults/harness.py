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

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
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
# an interlock limit the 6 mL/h test procedure reaches ~1 min after the catheter blocks, and
# instrument timeouts short enough that a silent balance costs little wall time, long enough that
# a busy machine (make test-stress) never turns a slow reply into a fault.
STATION_SET: dict[str, Any] = {
    **FAST_DAQ,
    "safety.max_line_pressure_kpa": 15.0,
    "instruments.balance.timeout_ms": 1500,  # the silent-balance cells wait this out; a loaded machine needs it
    "instruments.pump.timeout_ms": 3000,
}
CLOCK_JUMP_S = 3600.0
TMPFS_SIZE = "32m"  # the disk-full cells' run directory: far more than a matrix run writes


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
    Fault("overpressure", "overpressure", "sim `line(occlusion=True)`: the catheter blocks by itself (a fault of "
          "the line, which nothing the rig writes can clear), pressure climbs", "in_process"),
    Fault("step_timeout", "step timeout", "the step waits without end (ctx.wait(1e6)) past its 300-600 s budget",
          "in_process"),
    Fault("sigint", "SIGINT", "SIGINT to the `rig run` child while it holds in the phase", "process"),
    Fault("sigterm", "SIGTERM", "SIGTERM to the `rig run` child while it holds in the phase", "process"),
    Fault("kill9", "kill -9", "SIGKILL to the `rig run` child while it holds in the phase", "process"),
    Fault("disk_full", "disk full", "the run directory is a small tmpfs mount; a filler file takes its last "
          "free byte: real ENOSPC (needs root to mount, as CI has; skipped otherwise)", "in_process"),
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
SUPERVISOR_WAIT_S = 20.0  # wall time allowed for the supervisor to act after a kill -9


def cells() -> list[tuple[str, str]]:
    return [(f.id, p) for f in FAULTS for p in PHASES]


# -- observations ---------------------------------------------------------------------------------


@dataclass
class Observation:
    """What one cell showed; written as JSON for docs/reliability.md."""

    fault: str
    phase: str
    status: str = "real"  # "real" | "n/a" | "skipped" (this machine cannot inject it: note says why)
    outcome: str = ""  # the record's outcome (INCOMPLETE when it has no run_finished)
    reason: str = ""
    ended_in: str | None = None  # the step that was running when the run ended
    record_safe_claim: bool | None = None  # the record's safe_state.confirmed (None: not recorded)
    pump_stopped: bool | None = None  # from the simulated bench's own state
    valves_safe: bool | None = None
    # the pump model: a stop command arrived after the fault, and why the pump last stopped
    # ("command" by the rig, "stall" by the fault itself); tells "the rig stopped it" from "it stopped"
    pump_stop_commanded: bool | None = None
    pump_stopped_by: str | None = None
    line_fault_kept: bool | None = None  # an injected fault of the line is still there at the end
    by_supervisor: list[str] | None = None  # record events appended by the safe-state supervisor
    measured_before: list[str] = field(default_factory=list)
    measurements_kept: bool | None = None
    verdict: str | None = None  # the report bundle's verdict
    signable_as_pass: bool | None = None
    record_unchanged: bool | None = None  # report cells: record.jsonl byte for byte as before
    rebuild_verifies: bool | None = None  # report cells: a rebuild after the fault verifies
    staging_left: list[str] | None = None  # report cells: staging directories left behind
    backdated_refused: bool | None = None  # clock-jump report cell
    exit_code: int | None = None
    wall_s: float = 0.0
    note: str = ""
    mutation: str | None = None  # the sabotage applied (tests/faults/sabotage.py), None: the real code
    problems: list[str] = field(default_factory=list)  # what the cell's checks found wrong

    def save(self, directory: Path | None) -> None:
        if directory is None:
            return
        directory.mkdir(parents=True, exist_ok=True)
        suffix = f"__{self.mutation}" if self.mutation else ""
        (directory / f"{self.fault}__{self.phase}{suffix}.json").write_text(json.dumps(asdict(self), indent=1))


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


_TMPFS_REASON: list[str | None] = []


def tmpfs_unavailable() -> str | None:
    """Why a small tmpfs cannot be mounted here (None: it can). Tried once per process."""
    if not _TMPFS_REASON:
        if not sys.platform.startswith("linux") or os.geteuid() != 0:
            _TMPFS_REASON.append("disk full needs a real full filesystem: a small tmpfs mount, which needs root "
                                 "on Linux (CI runs as root)")
        else:
            probe = Path(tempfile.mkdtemp(prefix="rig-tmpfs-probe-"))
            try:
                with small_tmpfs(probe, "64k"):
                    pass
                _TMPFS_REASON.append(None)
            except (OSError, subprocess.CalledProcessError) as exc:
                _TMPFS_REASON.append(f"cannot mount a tmpfs here ({exc}); disk full needs a real full filesystem")
            finally:
                probe.rmdir()
    return _TMPFS_REASON[0]


@contextmanager
def small_tmpfs(mount_point: Path, size: str = TMPFS_SIZE) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``mount_point`` for the block (unmounted even on error)."""
    mount_point.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mount_point)],
                   check=True, capture_output=True, text=True)
    try:
        yield mount_point
    finally:
        done = subprocess.run(["umount", str(mount_point)], capture_output=True)
        if done.returncode != 0:  # something still holds a file open there: detach lazily
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill_disk(mount_point: Path, leave_bytes: int = 0) -> Path:
    """Fill the filesystem of ``mount_point`` with a filler file until the kernel answers ENOSPC,
    then give back ``leave_bytes`` (rounded up to whole pages by the filesystem). From then on a
    write that needs more space fails with a real ENOSPC, as on a full disk."""
    filler = mount_point / ".filler"
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(block)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        for size in (4096, 512, 1):  # the last partial blocks
            try:
                while True:
                    handle.write(block[:size])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        if leave_bytes:
            handle.truncate(max(0, os.fstat(handle.fileno()).st_size - leave_bytes))
    return filler


def redirect_run_files_to_full_disk(run_dir: Path, under: str) -> int:
    """Point every file descriptor this process holds open under ``run_dir / under`` at /dev/full:
    from then on each write to that file fails with ENOSPC from the kernel while every other file
    of the run is still written (one file's volume full: test_daq_stream_loss.py). Returns how
    many descriptors were moved."""
    prefix = str((run_dir / under).resolve())
    moved = 0
    full = os.open("/dev/full", os.O_WRONLY)
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
        "overpressure": lambda ctx: control.line(occlusion=True),
        "step_timeout": lambda ctx: ctx.wait(1e6),
        "disk_full": lambda ctx: fill_disk(run_dir.parent),
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
    stops_before: int | None = None  # the pump model's stop-command count when the fault was injected


def measurements_on_disk(run_dir: Path) -> dict[str, float]:
    record = read_record(run_dir)
    return {m["name"]: m["value"] for m in record.measurements}


def run_in_process(fault: str | None, phase: str | None, directory: Path,
                   act: Callable[[CellBench, Path], Callable[[Any], None]] | None = None,
                   mutation: str | None = None) -> CellRun:
    """Run the test procedure with ``fault`` injected at ``phase`` (None: a fault-free run);
    ``act(bench, run_dir)`` replaces the matrix's injector for faults outside the matrix;
    ``mutation`` (tests/faults/sabotage.py) is applied for the run and undone after it."""
    if fault == "disk_full":
        with small_tmpfs(directory / "runs"):
            cell = _run_in_process(fault, phase, directory, act, mutation)
            kept = directory / "from-full-disk" / cell.run_dir.name  # what the full disk holds, before unmount
            shutil.copytree(cell.run_dir, kept)
        record, error = _read(kept)
        return replace(cell, run_dir=kept, record=record, record_error=error)
    return _run_in_process(fault, phase, directory, act, mutation)


def _run_in_process(fault: str | None, phase: str | None, directory: Path,
                    act: Callable[[CellBench, Path], Callable[[Any], None]] | None,
                    mutation: str | None) -> CellRun:
    from faults import sabotage

    proc = load_procedure()
    run_dir = directory / "runs" / "cell"
    snapshot: dict[str, float] = {}
    injected: list[float] = []
    undo = sabotage.apply(mutation) if mutation else None
    try:
        return _run_cell(fault, phase, directory, act, proc, run_dir, snapshot, injected)
    finally:
        if undo is not None:
            undo()


def _run_cell(fault: str | None, phase: str | None, directory: Path,
              act: Callable[[CellBench, Path], Callable[[Any], None]] | None, proc: Any, run_dir: Path,
              snapshot: dict[str, float], injected: list[float]) -> CellRun:
    with cell_bench(directory) as bench:
        with Bench.open(load_station(bench.station)) as rig_bench:
            runner = Runner(procedure=proc, spec=proc.load_spec(), params=parse_params([], proc), bench=rig_bench,
                            run_dir=run_dir, run_id="cell", operator=Operator("Jane Doe", interactive=False),
                            display=Display(), software={"version": "test", "git_sha": None})
            if fault is not None:
                action = act(bench, run_dir) if act is not None else injector(fault, bench, run_dir)

                def inject(at: str, ctx: Any) -> None:
                    if at != phase:
                        return
                    snapshot.update(measurements_on_disk(run_dir))
                    ctx.event("fault_injected", f"test injects {fault} in phase {phase}")
                    injected.append(bench.control.state()["model"]["pump"]["stop_commands"])
                    action(ctx)

                runner.state["inject"] = inject
            result = runner.run()
        state = bench.state()
    record, error = _read(run_dir)
    return CellRun(run_dir, record, error, state, snapshot, list(result.measurements),
                   stops_before=injected[0] if injected else None)


def _read(run_dir: Path) -> tuple[RunRecord | None, str | None]:
    try:
        return read_record(run_dir), None
    except Exception as exc:  # noqa: BLE001 - an unreadable record is an observation, judged later
        return None, f"{type(exc).__name__}: {exc}"


def child_env(mutation: str | None = None) -> dict[str, str]:
    from faults import sabotage

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]), EXTRA_ENV: PROCEDURE_MODULE}
    env.pop("RIG_STATION", None)
    env.pop(OUT_ENV, None)
    return sabotage.child_env(env, mutation)


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


def run_as_process(fault: str, phase: str, directory: Path, mutation: str | None = None) -> CellRun:
    """`rig run fault_matrix` as a child holding at ``phase``; the signal lands during the hold."""
    from faults import sabotage

    out = directory / "runs"
    with cell_bench(directory) as bench:
        cmd = [sys.executable, "-m", "rig", "run", "fault_matrix", "--station", str(bench.station), "--out", str(out),
               "--plain", "--no-report", "--operator", "Jane Doe",
               "--param", f"hold_phase={RUN_PHASES.index(phase) + 1}", "--param", "hold_wall_s=120"]
        exited = directory / "sabotaged-supervisor-exited"  # written only by supervisor_never_acts
        env = {**child_env(mutation), sabotage.SUPERVISOR_EXITED_ENV: str(exited)}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, stdin=subprocess.DEVNULL, cwd=REPO)
        try:
            record_path = wait_for_text(lambda: list(out.glob("*/record.jsonl")), f"holding in phase {phase}", proc)
            run_dir = record_path.parent
            snapshot = measurements_on_disk(run_dir)
            stops_before = bench.control.state()["model"]["pump"]["stop_commands"]
            os.kill(proc.pid, SIGNALS[fault])
            stdout, stderr = proc.communicate(timeout=60)
            if fault == "kill9":
                wait_for_supervisor(run_dir, gave_up=exited)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        state = bench.state()
    record, error = _read(run_dir)
    return CellRun(run_dir, record, error, state, snapshot, [], proc.returncode, stdout + stderr, stops_before)


def wait_for_supervisor(run_dir: Path, timeout_s: float = SUPERVISOR_WAIT_S, gave_up: Path | None = None) -> bool:
    """After a kill -9: wait until the supervisor's safe_state is in the record (True), or give
    up after ``timeout_s`` (False) and let the cell's checks of the bench's own state judge.

    ``gave_up``: a file whose existence says the supervisor has exited without acting (the
    ``supervisor_never_acts`` mutation creates it): nothing more can come, so stop waiting then."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record, _ = _read(run_dir)
        if record is not None and any(e.get("by") == "supervisor" for e in record.of_type("safe_state")):
            return True
        if gave_up is not None and gave_up.exists():
            return False
        time.sleep(0.05)
    return False


def ended_in(record: RunRecord) -> str | None:
    """The step that was running when the run ended (last step_started)."""
    started = record.of_type("step_started")
    return started[-1]["step"] if started else None
