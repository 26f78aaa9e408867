"""Judging a run: each measurement against its spec limit, the verdict at the end, and the outcome
an exception stands for.

Why apart from the runner: these are the rules a reviewer checks against the procedure's
requirements (PASS only when every declared measurement was taken and is within its limits; what
counts as FAIL, ABORTED or ERROR); they read best without the lifecycle around them.
"""

from __future__ import annotations

import errno
import math
import traceback
from pathlib import Path
from typing import Any

from instruments.errors import InstrumentError
from rig.analysis.uncertainty import expanded_of
from rig.engine.display import Display
from rig.engine.operator import OperatorDeclined
from rig.engine.outcomes import FAIL, PASS, RunAborted, StepFailed, StepTimeout
from rig.engine.procedure import Procedure
from rig.engine.run_log import RunLog
from rig.engine.signals import ABORTED, ERROR, AbortFlag
from rig.engine.spec import Spec
from rig.errors import BenchError, RigError, SimulatedBenchError
from rig.station.bench import describe_error


class Judge:
    """Records measurements against the spec and decides the verdict of a completed run."""

    def __init__(self, procedure: Procedure, spec: Spec, log: RunLog, display: Display) -> None:
        self.procedure = procedure
        self.spec = spec
        self._log = log
        self._display = display
        self.measurements: list[dict[str, Any]] = []

    def measure(self, step: str, name: str, value: float | None, uncertainty: Any,
                detail: str) -> str:
        """A ``measurement`` line for a declared measurement; returns "pass" or "fail"."""
        declared = self.procedure.measurement(name)
        if declared is None:
            raise ValueError(f"procedure {self.procedure.id} declares no measurement {name!r}")
        limit = self.spec.limit(name)
        number = None if value is None else float(value)
        outcome = limit.evaluate(number, expanded_of(uncertainty))  # guarded acceptance needs U
        if number is not None and not math.isfinite(number):
            detail = (detail + "; " if detail else "") + f"non-finite value {number!r}"
            number = None
        event = self._log.append(
            "measurement", name=name, value=number, unit=declared.unit, low=limit.low, high=limit.high,
            requirement=limit.requirement, outcome=outcome, uncertainty=uncertainty,
            decision_rule=limit.decision_rule, step=step, t_proc_s=round(self._log.now_s(), 6),
            detail=detail, acceptance=limit.acceptance, value_type=limit.type, criterion=limit.description,
        )
        self.measurements.append(event)
        self._display.measurement(event)
        return outcome

    def verdict(self) -> tuple[str, str]:
        """Outcome of a run whose steps all completed."""
        taken = {m["name"] for m in self.measurements}
        missing = [m.name for m in self.procedure.measurements if m.name not in taken]
        if missing:
            return ERROR, f"procedure finished without measuring {', '.join(missing)} (procedure defect)"
        failed = [m for m in self.measurements if m["outcome"] != "pass"]
        if failed:
            shown = "; ".join(
                f"{m['name']} = {'n/a' if m['value'] is None else format(m['value'], '.4g')} {m['unit']} "
                f"outside [{'' if m['low'] is None else format(m['low'], 'g')}, "
                f"{'' if m['high'] is None else format(m['high'], 'g')}]"
                for m in failed)
            return FAIL, f"{len(failed)} of {len(self.measurements)} measurement(s) out of limits: {shown}"
        return PASS, (f"all {len(self.procedure.steps)} steps completed; all {len(self.measurements)} "
                      "measurement(s) within limits")


def step_status(exc: BaseException) -> tuple[str, dict[str, Any]]:
    """step_finished status and detail for the exception that ended a step."""
    if isinstance(exc, StepFailed):
        return "failed", {"reason": str(exc)}
    if isinstance(exc, (RunAborted, OperatorDeclined, KeyboardInterrupt)):
        return "aborted", {"reason": str(exc) or type(exc).__name__}
    if isinstance(exc, (StepTimeout, InstrumentError, RigError)):
        return "error", {"reason": describe_error(exc)}
    return "error", {"reason": describe_error(exc), "traceback": traceback.format_exc(limit=8)}


_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG})


def classify(exc: BaseException, abort: AbortFlag) -> tuple[str, str]:
    """Outcome for an exception that ended the run; an abort request that came first is the root cause."""
    request = abort.requested
    if request is not None:
        return request.outcome, request.reason
    if isinstance(exc, StepFailed):
        return FAIL, str(exc)
    if isinstance(exc, RunAborted):
        return exc.outcome, exc.reason
    if isinstance(exc, OperatorDeclined):
        return ABORTED, str(exc)
    if isinstance(exc, StepTimeout):
        return ERROR, str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return ABORTED, "interrupted (KeyboardInterrupt)"
    if isinstance(exc, SimulatedBenchError):
        return ERROR, f"simulated bench error: {exc}"
    if isinstance(exc, (InstrumentError, BenchError)):
        return ERROR, f"instrument error: {describe_error(exc)}"
    if isinstance(exc, RigError):
        return ERROR, str(exc)
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        # The run's own files could not be written: say so plainly, naming the file when known,
        # so nobody takes a full disk for a fault of the item under test.
        target = f" ({exc.filename})" if exc.filename else ""
        return ERROR, f"cannot write the run's data to disk{target}: {exc.strerror or exc}"
    if isinstance(exc, Exception):
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
        return ERROR, f"unexpected error{at}: {type(exc).__name__}: {exc}"
    return ABORTED, f"stopped by {type(exc).__name__}"


__all__ = ["Judge", "classify", "step_status"]
