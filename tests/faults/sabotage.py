"""Mutations for the fault matrix: break the very thing a cell guards, and the cell must fail.

Why: a cell that passes whatever the code does proves nothing (a stall stops the pump by itself, so
a stall cell that only looks at "pump stopped" cannot see a rig that never stops it). Each mutation
here sabotages one guarantee; tests/faults/test_mutations.py runs cells with it and requires the
cell's own checks (test_matrix.problems) to name what went wrong.

In process: ``apply(name)`` patches and returns an undo. In a child (`rig run`, the report hold,
and the safe-state supervisor those start): ``child_env(name)`` puts ``sabotage_site/`` on
PYTHONPATH, whose ``sitecustomize`` calls ``apply`` at interpreter start-up.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENV = "RIG_FAULT_MATRIX_SABOTAGE"
SITE = Path(__file__).resolve().parent / "sabotage_site"


def _patch(owner: Any, name: str, value: Any) -> Callable[[], None]:
    original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
    setattr(owner, name, value)
    return lambda: setattr(owner, name, original)


def pump_never_stopped() -> Callable[[], None]:
    """The pump driver's stop() sends nothing, and its safe_state() claims a stopped pump without
    commanding or reading anything: a lying driver. Only the bench's own state can tell."""
    from instruments.ne1000 import NE1000

    undo = [_patch(NE1000, "stop", lambda self: None),
            _patch(NE1000, "safe_state", lambda self: {"running": False, "status": "S", "alarm": None})]
    return lambda: [u() for u in undo] and None


def record_drops_last_event() -> Callable[[], None]:
    """The record writer silently drops run_finished, the event that states how the run ended."""
    from rig.record import RecordWriter

    original = RecordWriter.append

    def append(self: Any, event_type: str, **fields: Any) -> dict[str, Any]:
        if event_type == "run_finished":
            return {"type": event_type, **fields}
        return original(self, event_type, **fields)

    return _patch(RecordWriter, "append", append)


def record_unflushed() -> Callable[[], None]:
    """The record writer keeps lines in its buffer (no flush, no fsync) until it is closed."""
    from rig.record import RecordWriter

    def append(self: Any, event_type: str, **fields: Any) -> dict[str, Any]:
        import json

        event = {"type": event_type, **fields}
        with self._lock:
            self._file.write(json.dumps(event, sort_keys=True, allow_nan=False, default=str) + "\n")
        return event

    undo = [_patch(RecordWriter, "append", append), _patch(RecordWriter, "checkpoint", lambda self: None)]
    return lambda: [u() for u in undo] and None


SUPERVISOR_EXITED_ENV = "RIG_FAULT_MATRIX_SUPERVISOR_EXITED"
# The sabotaged supervisor reads its pipe to the end (the runner died) and exits without acting;
# when the harness names a file in $RIG_FAULT_MATRIX_SUPERVISOR_EXITED it then creates it, so a
# cell knows nothing more can come instead of waiting out the whole supervisor deadline.
_NEVER_ACTS = ("import os, sys; sys.stdin.buffer.read(); marker = os.environ.get(%r); "
               "marker and open(marker, 'w').close()" % SUPERVISOR_EXITED_ENV)


def supervisor_never_acts() -> Callable[[], None]:
    """The safe-state supervisor is started and fed its plan, but only reads: it never acts."""
    from rig.engine import supervisor

    return _patch(supervisor, "command", lambda: [sys.executable, "-c", _NEVER_ACTS])


def bundle_built_in_place() -> Callable[[], None]:
    """No staging directory: the bundle is written straight into its final directory."""
    from reports import bundle

    def in_place(out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        return out_dir

    return _patch(bundle, "staging_dir", in_place)


def bundle_not_cleaned_up() -> Callable[[], None]:
    """A failed or interrupted build leaves its staging directory behind."""
    from reports import bundle

    return _patch(bundle, "discard_staging", lambda partial: None)


def signing_ignores_clock() -> Callable[[], None]:
    """Signing no longer compares its clock with the previous signature's signed_at."""
    from reports import signing

    return _patch(signing, "clock_problem", lambda existing, signed_at: None)


MUTATIONS: dict[str, tuple[str, Callable[[], Callable[[], None]]]] = {
    "pump_never_stopped": ("the pump driver's stop and safe state send nothing and claim a stopped pump",
                           pump_never_stopped),
    "record_drops_last_event": ("the record writer drops run_finished", record_drops_last_event),
    "record_unflushed": ("the record writer neither flushes nor fsyncs until it closes", record_unflushed),
    "supervisor_never_acts": ("the safe-state supervisor never acts", supervisor_never_acts),
    "bundle_built_in_place": ("the bundle is built in its final directory (no staging)", bundle_built_in_place),
    "bundle_not_cleaned_up": ("a failed or interrupted build leaves its staging directory", bundle_not_cleaned_up),
    "signing_ignores_clock": ("signing ignores a clock behind the previous signature", signing_ignores_clock),
}


def apply(name: str) -> Callable[[], None]:
    if name not in MUTATIONS:
        raise ValueError(f"unknown mutation {name!r} (known: {', '.join(MUTATIONS)})")
    return MUTATIONS[name][1]()


def child_env(env: dict[str, str], name: str | None) -> dict[str, str]:
    """``env`` for a child process, with mutation ``name`` applied at its start-up (None: none)."""
    env = dict(env)
    env.pop(ENV, None)
    if name is not None:
        if name not in MUTATIONS:
            raise ValueError(f"unknown mutation {name!r}")
        env[ENV] = name
        env["PYTHONPATH"] = os.pathsep.join([str(SITE), env.get("PYTHONPATH", "")])
    return env
