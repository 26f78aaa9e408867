"""Start `rig sim serve` as a child process, or attach to a running one through its resources file.

Why a child process and not threads: the simulated bench then looks to the controller exactly
like hardware does (other processes' ptys, sockets and gRPC server), the controller's signal
handling is not shared with it, and a crash on either side is contained. The resources file is
the rendezvous: it appears (atomically) only once every transport is up.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from instruments.sim.control import SimControl
from rig.errors import BenchError, UsageError
from rig.secret_env import child_environment

EXIT_WITH_PARENT_ENV = "RIG_SIM_EXIT_WITH_PARENT"  # same name as rig.cli.commands.sim (no import cycle)
POLL_S = 0.05
LOG_TAIL_LINES = 20


def read_resources(path: Path | str) -> dict[str, Any]:
    """Read a resources file written by `rig sim serve`; clear errors when missing or corrupt."""
    path = Path(path).expanduser()
    try:
        st = os.stat(path)
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            raise BenchError(f"simulated bench resources file {path} is not yours alone (owner uid {st.st_uid}, mode "
                             f"{st.st_mode & 0o777:04o}): another user could point this controller at their own bench")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BenchError(
            f"simulated bench resources file {path} not found: is `rig sim serve` running "
            "(it writes this file once the bench is up)?"
        ) from None
    except OSError as exc:
        raise BenchError(f"cannot read simulated bench resources file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BenchError(f"simulated bench resources file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BenchError(f"simulated bench resources file {path} must hold a JSON object")
    missing = [k for k in ("instruments", "serial_ports", "control", "clock", "pid") if k not in data]
    if missing:
        raise BenchError(f"simulated bench resources file {path} lacks {', '.join(missing)}")
    if not isinstance(data["instruments"], dict) or not isinstance(data["control"], str):
        raise BenchError(f"simulated bench resources file {path} is malformed (instruments/control)")
    return data


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in tail) or "(empty log)"


class SimProcess:
    """A running `rig sim serve` child. ``stop()`` is idempotent; also a context manager."""

    def __init__(self, proc: subprocess.Popen[bytes], workdir: Path, resources_path: Path, log_path: Path) -> None:
        self.proc = proc
        self.workdir = workdir
        self.resources_path = resources_path
        self.log_path = log_path
        self.resources: dict[str, Any] = {}
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def control(self, timeout_s: float = 30.0) -> SimControl:
        """A new control-channel client (the caller closes it)."""
        return SimControl(self.resources["control"], timeout_s=timeout_s)

    def log_tail(self) -> str:
        return _tail(self.log_path)

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM, wait, SIGKILL the process group as a fallback; returns the exit code."""
        if self.returncode is None:
            if self.proc.poll() is None:
                self._signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGKILL)
                    self.proc.wait(timeout=timeout_s)
            self.returncode = self.proc.returncode
            if self.returncode == 0:  # keep the log of a bench that failed, for the post-mortem
                shutil.rmtree(self.workdir, ignore_errors=True)
        return self.returncode

    def _signal(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.proc.pid, sig)  # the child leads its own group (start_new_session)
        except ProcessLookupError:
            pass

    def __enter__(self) -> "SimProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Benches started early (start_sim_early) that no Bench has taken yet, by station file.
_early: dict[Path, SimProcess] = {}


def start_sim_early(station_path: Path | str) -> None:
    """Spawn the station's simulated bench now, without waiting; the next ``start_sim`` for the same
    station file takes it over. Why: the bench's start-up (an interpreter, numpy, gRPC, every
    transport: ~0.7 s) then overlaps the controller's own imports on the other core instead of
    following them. One never taken over is stopped at exit (and exits with us anyway)."""
    path = Path(station_path).expanduser().absolute()
    if path in _early:
        return
    if not _early:
        atexit.register(stop_early)
    _early[path] = _spawn(path)


def early_pids() -> list[int]:
    """Children started early and not taken over yet (a resource count before a run skips them)."""
    return [sim.pid for sim in _early.values()]


def stop_early() -> None:
    """Stop every bench started early that nobody took over (the command ended without opening it)."""
    while _early:
        _, sim = _early.popitem()
        sim.stop()
        shutil.rmtree(sim.workdir, ignore_errors=True)


def _spawn(station_path: Path) -> SimProcess:
    workdir = Path(tempfile.mkdtemp(prefix="rig-sim-"))
    resources_path = workdir / "resources.json"
    log_path = workdir / "sim.log"
    cmd = [sys.executable, "-m", "rig", "sim", "serve", "--station", str(station_path),
           "--resources-out", str(resources_path)]
    env = child_environment(**{EXIT_WITH_PARENT_ENV: "1", "PYTHONUNBUFFERED": "1"})  # no secrets
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    return SimProcess(proc, workdir, resources_path, log_path)


def start_sim(station_path: Path | str, *, timeout_s: float = 30.0) -> SimProcess:
    """Spawn `python -m rig sim serve` for the station (or take over the one started early for
    it); return once its resources file exists."""
    path = Path(station_path).expanduser().absolute()
    sim = _early.pop(path, None) or _spawn(path)
    try:
        _wait_until_up(sim, timeout_s)
        sim.resources = read_resources(sim.resources_path)
    except BaseException:  # including Ctrl-C while waiting: never leave the child behind
        sim.stop()
        shutil.rmtree(sim.workdir, ignore_errors=True)  # the error message already carries the log tail
        raise
    return sim


def _wait_until_up(sim: SimProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not sim.resources_path.exists():
        code = sim.proc.poll()
        if code is not None:
            error = UsageError if code == 2 else BenchError  # exit 2 = the station file is wrong
            raise error(f"the simulated bench exited with code {code} before it was up; its log:\n"
                        f"{sim.log_tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"the simulated bench was not up within {timeout_s:g} s; its log:\n"
                             f"{sim.log_tail()}")
        time.sleep(POLL_S)
