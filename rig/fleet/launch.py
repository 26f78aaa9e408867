"""One run of one procedure, prepared and executed the same way by every front end.

Why one module: `rig run` at a terminal and a run started from the operator panel (`rig serve`)
must be the same run — same request checks before the bench opens, same engine, same record, same
report, same safe-state guarantees. The front ends differ only in who answers operator steps (an
``Operator`` at a terminal or in a browser), how progress is shown (a ``Display``) and how an abort
is requested (signals or an Abort button, both setting the ``AbortFlag``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import procedures
from reports.audit import ENV_VAR as AUDIT_ENV_VAR
from rig.engine.display import Display
from rig.engine.operator import Operator, OperatorAnswer
from rig.engine.params import ParameterValues, parse_params
from rig.engine.procedure import Procedure
from rig.engine.runner import Runner, RunResult, check_calibration_policy, item_serial_problem
from rig.engine.signals import AbortFlag
from rig.engine.spec import Spec
from rig.errors import UsageError
from rig.record import new_run_id, writable_directory
from rig.station.bench import Bench
from rig.station.lock import StationLock
from rig.station.model import Station


@dataclass
class PreparedRun:
    """A run whose request has been checked completely; nothing has touched the bench yet."""

    procedure: Procedure
    spec: Spec
    params: ParameterValues
    station: Station
    operator: Operator
    abort: AbortFlag
    runs_dir: Path
    run_id: str

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.run_id


def prepare_run(procedure_id: str, param_items: list[str], station: Station,
                make_operator: Callable[[AbortFlag], Operator], *, runs_dir: Path | None = None,
                runs_dir_label: str | None = None, abort: AbortFlag | None = None,
                param_source: str = "command line") -> PreparedRun:
    """Every check of the request (procedure, spec, parameters and their cross-rules, calibration
    policy, the operator's identity, every operator answer, a writable runs directory) before
    anything moves, with EVERY problem in one UsageError (exit 2)."""
    procedure = procedures.load(procedure_id)
    spec = procedure.load_spec()
    problems: list[str] = []

    def check(action: Callable[[], Any]) -> Any:
        try:
            return action()
        except UsageError as exc:
            problems.append(str(exc))
            return None

    params = check(lambda: parse_params(param_items, procedure, source=param_source))
    check(lambda: check_calibration_policy(station))
    abort = abort or AbortFlag()
    operator = check(lambda: make_operator(abort))
    if operator is not None:
        problems += operator.problems(procedure.operator_steps(), procedure.id)
    runs_dir = check(lambda: writable_directory(
        runs_dir or station.runs_dir, runs_dir_label or f"runs directory (station.runs_dir of {station.path})"))
    if len(problems) == 1:
        raise UsageError(problems[0])
    if problems:
        raise UsageError(f"rig run {procedure.id} refused before starting ({len(problems)} problems):\n"
                         + "\n".join("  - " + p.replace("\n", "\n    ") for p in problems))
    return PreparedRun(procedure, spec, params, station, operator, abort, runs_dir, new_run_id(procedure.id))


def station_audit_log(station: Any) -> Path:
    """$RIG_AUDIT_LOG, else the station's one audit trail (station.audit_log)."""
    return Path(os.environ[AUDIT_ENV_VAR]) if os.environ.get(AUDIT_ENV_VAR) else Path(station.audit_log)


def ask_item(prepared: PreparedRun, display: Display) -> tuple[dict[str, str], list[OperatorAnswer]]:
    """The item under test is named before the record starts, so run_started can carry it."""
    recorded: list[OperatorAnswer] = []
    for entry in prepared.procedure.item_under_test:
        with display.paused():
            recorded.append(prepared.operator.ask(entry))
    return {a.step: a.answer for a in recorded}, recorded


def execute(prepared: PreparedRun, display: Display, lock: StationLock, *, item: dict[str, str],
            item_answers: list[OperatorAnswer],
            on_bench: Callable[[Any], None] | None = None,
            on_runner: Callable[[Runner], None] | None = None) -> RunResult:
    """Open the bench under the station ``lock`` the caller holds (rig.station.lock) and run; the
    Runner owns the outcome and the safe state from here on. ``on_bench`` sees the open bench
    first (the panel subscribes to the DAQ's chunks there)."""
    lock.update(run_id=prepared.run_id)  # a refused controller learns which run is in progress
    with Bench.open(prepared.station, lock=lock) as bench:
        problem = item_serial_problem(prepared.station, bench.identities, item)
        if problem:
            raise UsageError(problem)
        if on_bench is not None:
            on_bench(bench)
        runner = Runner(procedure=prepared.procedure, spec=prepared.spec, params=prepared.params,
                        bench=bench, run_dir=prepared.run_dir, run_id=prepared.run_id,
                        operator=prepared.operator, display=display, abort=prepared.abort,
                        item_under_test=item, pre_answers=item_answers,
                        audit_log=station_audit_log(prepared.station))
        if on_runner is not None:
            on_runner(runner)
        return runner.run()


def build_report(result: RunResult, audit_log: Path | None = None) -> Path | None:
    """The report bundle is a convenience after the run: its failure never changes the outcome
    (the record is the evidence), so it is reported on stderr, not raised. Imported here: the
    report's plotting (matplotlib, ~0.4 s) is not needed to start a run, and `rig nightly` builds
    its bundles in rig.fleet.report_worker's process."""
    from reports.bundle import build_bundle

    try:
        return build_bundle(result.run_dir, audit_log=audit_log)
    except Exception as exc:  # noqa: BLE001 - reported, not raised (see docstring)
        print(f"rig: warning: report bundle not built: {exc}", file=sys.stderr)
        return None


__all__ = ["PreparedRun", "ask_item", "build_report", "execute", "prepare_run", "station_audit_log"]
