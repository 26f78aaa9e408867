"""One run of one procedure, prepared and executed the same way by every front end.

Why one module: `rig run` at a terminal and a run started from the operator panel (`rig serve`)
must be the same run — same request checks before the bench opens, same engine, same record, same
report, same safe-state guarantees. The front ends differ only in who answers operator steps (an
``Operator`` at a terminal or in a browser), how progress is shown (a ``Display``) and how an abort
is requested (signals or an Abort button, both setting the ``AbortFlag``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import procedures
from reports.bundle import build_bundle
from rig.engine.display import Display
from rig.engine.operator import Operator, OperatorAnswer
from rig.engine.params import ParameterValues, parse_params
from rig.engine.procedure import Procedure
from rig.engine.runner import Runner, RunResult, check_calibration_policy
from rig.engine.signals import AbortFlag
from rig.engine.spec import Spec
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
    """Every check of the request (procedure, spec, parameters, calibration policy, operator
    answers, a writable runs directory) before anything moves; raises UsageError (exit 2)
    naming the problem."""
    procedure = procedures.load(procedure_id)
    spec = procedure.load_spec()
    params = parse_params(param_items, procedure, source=param_source)
    check_calibration_policy(station)
    abort = abort or AbortFlag()
    operator = make_operator(abort)
    operator.preflight(procedure.operator_steps(), procedure.id)
    runs_dir = writable_directory(runs_dir or station.runs_dir,
                                  runs_dir_label or f"runs directory (station.runs_dir of {station.path})")
    return PreparedRun(procedure, spec, params, station, operator, abort, runs_dir, new_run_id(procedure.id))


def ask_item(prepared: PreparedRun, display: Display) -> tuple[dict[str, str], list[OperatorAnswer]]:
    """The item under test is named before the record starts, so run_started can carry it."""
    recorded: list[OperatorAnswer] = []
    for entry in prepared.procedure.item_under_test:
        with display.paused():
            recorded.append(prepared.operator.ask(entry))
    return {a.step: a.answer for a in recorded}, recorded


def execute(prepared: PreparedRun, display: Display, lock: StationLock, *, item: dict[str, str],
            item_answers: list[OperatorAnswer],
            on_bench: Callable[[Any], None] | None = None) -> RunResult:
    """Open the bench under the station ``lock`` the caller holds (rig.station.lock) and run; the
    Runner owns the outcome and the safe state from here on. ``on_bench`` sees the open bench
    first (the panel subscribes to the DAQ's chunks there)."""
    lock.update(run_id=prepared.run_id)  # a refused controller learns which run is in progress
    with Bench.open(prepared.station, lock=lock) as bench:
        if on_bench is not None:
            on_bench(bench)
        return Runner(procedure=prepared.procedure, spec=prepared.spec, params=prepared.params,
                      bench=bench, run_dir=prepared.run_dir, run_id=prepared.run_id,
                      operator=prepared.operator, display=display, abort=prepared.abort,
                      item_under_test=item, pre_answers=item_answers).run()


def build_report(result: RunResult) -> Path | None:
    """The report bundle is a convenience after the run: its failure never changes the outcome
    (the record is the evidence), so it is reported on stderr, not raised."""
    try:
        return build_bundle(result.run_dir)
    except Exception as exc:  # noqa: BLE001 - reported, not raised (see docstring)
        print(f"rig: warning: report bundle not built: {exc}", file=sys.stderr)
        return None


__all__ = ["PreparedRun", "ask_item", "build_report", "execute", "prepare_run"]
