"""The safe-state supervisor: a small process that outlives a killed `rig run` and makes the bench safe.

Why a separate process: the runner ends every run in the safe state on every exit path it can see,
but ``kill -9`` (or the OOM killer, or a hard crash of the interpreter) gives it none — the pump
would keep infusing with no process left to stop it. So each run starts this supervisor
(``python -m rig.engine.supervisor``, never a user command) with a pipe as its stdin. The runner keeps
the write end: it writes the plan (one JSON line: the record path and how to reopen the pumps and
the DAQ — same drivers, same resolved resources), and at the end of the run ``done``.

* ``done`` then EOF: the run ended normally; the supervisor exits without touching anything.
* EOF without ``done``: the kernel closed the pipe because the runner died. The supervisor opens
  the pumps and the DAQ itself (a serial port/pty and a new NI gRPC session can be opened by a
  second process once the first is gone), puts them in their safe state with the drivers' own
  ``safe_state()`` (rig.station.bench.safe_state_each, the runner's code), and appends to the record a
  warning event and a ``safe_state`` event with the read-back, both ``by: "supervisor"``
  (rig.record.append_after_crash) — never a ``run_finished``: the record stays INCOMPLETE.

A simulated bench started as a child of `rig run` stops by itself when its parent dies, so there
is nothing to make safe: the supervisor then only records the warning. It runs in its own session
(a Ctrl-C or a hang-up aimed at the runner's process group does not reach it), with stdout and
stderr on /dev/null (it never holds the caller's pipes open), and imports the drivers only when
it must act, so starting it costs a fork/exec and a bare interpreter (well under 0.2 s, not waited
for). No supervisor, no run: if it cannot start, the run ends ERROR before its first step
(rig.engine.safe_state.SafeStateGuard.watch).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any, BinaryIO

from rig.secret_env import child_environment

DONE = b"done"
EXIT_RELEASED = 0  # the run ended normally: nothing touched
EXIT_ACTED = 10  # the runner died: the safe state was commanded and recorded
EXIT_BAD_PLAN = 2  # no usable plan arrived: nothing could be done
RELEASE_WAIT_S = 2.0  # how long the runner waits for a released supervisor to exit (it is quick)


class Supervisor:
    """The runner's side: start the supervisor, then ``release()`` it when the run ends normally."""

    def __init__(self, proc: subprocess.Popen[bytes], write_fd: int) -> None:
        self.proc = proc
        self._write_fd: int | None = write_fd

    @classmethod
    def start(cls, plan: dict[str, Any]) -> "Supervisor":
        """Spawn the supervisor and hand it ``plan`` (raises OSError/ValueError if it cannot)."""
        line = json.dumps(plan, sort_keys=True, allow_nan=False, default=str).encode("utf-8") + b"\n"
        read_fd, write_fd = os.pipe()  # both non-inheritable: later children never hold the write end
        try:
            proc = subprocess.Popen(command(), stdin=read_fd, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
                                    env=child_environment())  # no passphrase or database secrets
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        supervisor = cls(proc, write_fd)
        try:
            _write_all(write_fd, line)
        except BaseException:
            supervisor.release()
            raise
        return supervisor

    @property
    def pid(self) -> int:
        return self.proc.pid

    def release(self) -> str | None:
        """Tell the supervisor the run ended normally and let it exit. Idempotent.

        Returns None, or a one-line problem if the supervisor was no longer waiting (it exited
        during the run: a kill -9 then would have left the bench unattended)."""
        if self._write_fd is None:
            return None
        fd, self._write_fd = self._write_fd, None
        problem = None
        early = self.proc.poll()
        try:
            _write_all(fd, DONE + b"\n")
        except OSError as exc:
            problem = f"could not release the safe-state supervisor (pid {self.pid}): {exc.strerror or exc}"
        finally:
            os.close(fd)
        if early is not None:
            problem = f"the safe-state supervisor (pid {self.pid}) had exited with code {early} during the run"
        try:
            self.proc.wait(timeout=RELEASE_WAIT_S)  # reap it; it exits as soon as it reads EOF
        except subprocess.TimeoutExpired:
            pass  # still starting up on a loaded machine: it exits by itself on EOF
        return problem


def command() -> list[str]:
    """The supervisor's command line (a module of this package, run by this interpreter)."""
    return [sys.executable, "-m", "rig.engine.supervisor"]


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


# -- the supervisor process -----------------------------------------------------------------------


def wait_for_runner(stream: BinaryIO) -> tuple[dict[str, Any] | None, bool]:
    """Block until the runner closes the pipe; (plan, released). ``released`` is True only if
    ``done`` arrived: an EOF without it means the runner died."""
    data = stream.read()
    first, _, rest = data.partition(b"\n")
    released = DONE in rest.split(b"\n")
    try:
        plan = json.loads(first)
    except ValueError:
        return None, released
    return (plan if isinstance(plan, dict) else None), released


def make_safe(plan: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Open the plan's instruments and command their safe state: (read-backs, failures)."""
    from rig.station.bench import describe_error, open_driver, safe_state_each

    drivers: dict[str, Any] = {}
    failures: dict[str, str] = {}
    try:
        for name, entry in (plan.get("instruments") or {}).items():
            try:
                drivers[name] = open_driver(name, entry)
            except Exception as exc:  # noqa: BLE001 - the other instruments still matter
                drivers[name], failures[name] = None, describe_error(exc)
        return safe_state_each(drivers, failures)
    finally:
        for driver in drivers.values():
            try:
                if driver is not None:
                    driver.close()
            except Exception:  # noqa: BLE001 - closing must not hide what was recorded
                pass


def act(plan: dict[str, Any]) -> None:
    """The runner died: make the bench safe (unless its sim died with it) and say so in the record."""
    from rig.record import append_after_crash, utc_now

    who = f"the controller process (pid {plan.get('runner_pid')})"
    died_utc = utc_now()
    if plan.get("sim_child"):
        append_after_crash(plan["record"], [{
            "type": "event", "kind": "warning", "t_utc": died_utc, "t_proc_s": None,
            "detail": f"{who} died without finishing the run; the simulated bench it started stops with it, "
                      "so the supervisor had nothing to make safe",
        }])
        return
    readback, failed = make_safe(plan)
    confirmed = not failed
    error = "; ".join(f"{n}: {msg}" for n, msg in failed.items()) or None
    state = "the bench is in its safe state (read back)" if confirmed else f"safe state NOT confirmed: {error}"
    append_after_crash(plan["record"], [
        {"type": "event", "kind": "warning", "t_utc": died_utc, "t_proc_s": None,
         "detail": f"{who} died without finishing the run; the supervisor stopped the pump and set the valves "
                   f"safe: {state}"},
        {"type": "safe_state", "confirmed": confirmed, "instruments": readback, "error": error,
         "t_utc": utc_now(), "t_proc_s": None},
    ])


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the pipe decides; see the module docstring
    plan, released = wait_for_runner(sys.stdin.buffer)
    if released:
        return EXIT_RELEASED
    if plan is None or "record" not in plan:
        return EXIT_BAD_PLAN
    act(plan)
    return EXIT_ACTED


if __name__ == "__main__":
    sys.exit(main())
