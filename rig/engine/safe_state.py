"""The safe-state guard of a run: the kill -9 supervisor while the run goes, the pump's own
communications watchdog as the last line, the bench's safe state (read back) when it ends.

Why its own object: "every exit path ends in the safe state" is the rig's first promise; the two
halves of keeping it — the supervisor process for the exits no ``finally`` sees, and the read-back
of the bench's safe state for all the others — sit together here, apart from running steps.
"""

from __future__ import annotations

import os
from typing import Any

from rig.engine.outcomes import ERROR
from rig.engine.run_log import RunLog
from rig.engine.signals import AbortFlag
from rig.engine.supervisor import Supervisor
from rig.errors import RigError
from rig.station.bench import describe_error


class SafeStateGuardError(RigError):
    """The run's safe-state guard could not be set up: the run must not start (exit 3)."""

    exit_code = 3


class SafeStateGuard:
    """``watch()`` when the record exists, ``reach()`` at the end, then ``release()``."""

    def __init__(self, bench: Any, run_id: str) -> None:
        self._bench = bench
        self._run_id = run_id
        self._supervisor: Supervisor | None = None
        self._alarm_pump: Any = None
        self._alarm_listener: Any = None

    def watch(self, log: RunLog) -> None:
        """Start the process that makes the bench safe if this one is killed (rig.engine.supervisor).

        Only a bench that can say how to reopen its pump and DAQ from another process
        (``safe_state_plan``) is supervised. Fails closed: if the supervisor cannot be started,
        raises SafeStateGuardError before any step runs, so the run ends ERROR in its safe state
        instead of running unsupervised (a kill -9 then would leave the pump infusing)."""
        plan_of = getattr(self._bench, "safe_state_plan", None)
        if plan_of is None:
            return
        try:
            self._supervisor = Supervisor.start({
                "record": str(log.path), "run_id": self._run_id, "runner_pid": os.getpid(),
                "sim_child": bool(getattr(self._bench, "sim_child", False)), "instruments": plan_of(),
            })
        except Exception as exc:  # noqa: BLE001 - any reason is one: no supervisor, no run
            raise SafeStateGuardError(f"the safe-state supervisor did not start ({describe_error(exc)}): no run "
                                      "without it (if this process were killed, nothing would stop the pump)") from exc

    def watch_pump_watchdog(self, log: RunLog, abort: AbortFlag) -> None:
        """A pump with a communications watchdog (NE-1000 Safe mode) stops itself when this
        controller goes silent (frozen, or its machine dead with the supervisor). If that happened
        the run cannot be trusted: it ends ERROR, the stop is recorded, and the safe state is read
        back as on every exit path."""
        try:
            pump = self._bench.pump
        except Exception:  # noqa: BLE001 - no pump, nothing to watch
            return
        add = getattr(pump, "add_alarm_listener", None)
        if add is None:
            return

        def on_alarm(alarm: str, detail: str) -> None:  # any thread, e.g. the pump's keep-alive
            if alarm != "timeout":
                return  # stalls and the like reach the procedure through its own pump calls
            reason = ("the pump's communications watchdog stopped the pump: the controller sent it nothing "
                      f"for longer than its timeout ({detail})")
            if abort.request(ERROR, reason):
                try:
                    log.event("pump_watchdog", reason)
                except Exception:  # noqa: BLE001 - the abort request above is what matters
                    pass

        add(on_alarm)
        self._alarm_pump, self._alarm_listener = pump, on_alarm

    def unwatch_pump_watchdog(self) -> None:
        pump, listener = self._alarm_pump, self._alarm_listener
        self._alarm_pump = self._alarm_listener = None
        remove = getattr(pump, "remove_alarm_listener", None)
        if remove is not None:
            remove(listener)

    def reach(self) -> tuple[bool, dict[str, Any], str | None]:
        """Command the bench's safe state: (confirmed, read-back per instrument, failure). Never raises."""
        try:
            readback = self._bench.safe_state()
            return True, dict(readback or {}), None
        except BaseException as exc:  # noqa: BLE001 - reported as the outcome, never lost
            return False, dict(getattr(exc, "results", {}) or {}), describe_error(exc)

    def release(self, log: RunLog | None) -> None:
        """The safe state is in the record: tell the supervisor to exit without acting."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is None:
            return
        problem = supervisor.release()
        if problem is not None and log is not None:
            log.event("warning", f"{problem}: a kill -9 then would have left the bench unattended")


__all__ = ["SafeStateGuard", "SafeStateGuardError"]
