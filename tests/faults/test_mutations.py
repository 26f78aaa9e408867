"""Mutation checks: each cell of the fault matrix, run with the guarantee it guards sabotaged, fails.

A cell that passes whatever the code does proves nothing. For every cell, one mutation from
sabotage.py breaks the very thing that cell is there to catch, and the cell's own checks
(cells.run_problems / cells.report_problems, the same the matrix requires to be empty) must then
report the problem named here. Which mutation per fault, and why:

* ``record_drops_last_event`` where the cell's point is a truthful ending written by the runner
  (instrument faults, step timeout, signals, clock jump): without run_finished the ending is lost;
* ``pump_never_stopped`` where the fault could stop the pump by itself or the pump must be stopped
  despite a dead instrument (stall, DAQ error, an injected line occlusion): a lying driver that
  claims a stopped pump must be caught by the bench's own state — no stop command arrived, or the
  pump stopped by stalling, not by the rig;
* ``supervisor_never_acts`` for kill -9: nothing but the supervisor can stop the pump then;
* ``record_unflushed`` for a full disk: what was measured before must already be on disk;
* report cells: a build without staging (SIGTERM, kill -9: the rebuild is blocked by a half bundle),
  a build that does not clean up (Ctrl-C, full disk), signing that ignores a clock set back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from faults import cells, harness
from faults.harness import CellRun

RUN_MUTATION = {
    "silent": "record_drops_last_event", "garbage": "record_drops_last_event", "drop": "record_drops_last_event",
    "stall": "pump_never_stopped", "daq_error": "pump_never_stopped", "overpressure": "pump_never_stopped",
    "step_timeout": "record_drops_last_event", "sigint": "record_drops_last_event",
    "sigterm": "record_drops_last_event", "kill9": "supervisor_never_acts", "disk_full": "record_unflushed",
    "clock_jump": "record_drops_last_event",
}
REPORT_MUTATION = {"sigint": "bundle_not_cleaned_up", "sigterm": "bundle_built_in_place",
                   "kill9": "bundle_built_in_place", "disk_full": "bundle_not_cleaned_up",
                   "clock_jump": "signing_ignores_clock"}
# What the cell must then report (a substring of one of its problems).
CAUGHT_BY = {
    "record_drops_last_event": "untruthful or unexpected ending",
    "pump_never_stopped": "the pump got no stop command after the fault",
    "supervisor_never_acts": "supervisor events in the record: []",
    "record_unflushed": "a measurement the phase took before the fault was not on disk",
    "bundle_not_cleaned_up": "staging directory left behind",
    "bundle_built_in_place": "the bundle built after the fault does not verify",
    "signing_ignores_clock": "a signature dated before the previous one was accepted",
}
RUN_CELLS = [(f, p) for f, p in harness.cells() if p != "report"]
REPORT_CELLS = [(f, p) for f, p in harness.cells() if p == "report" and (f, p) not in harness.NOT_APPLICABLE]


def test_every_fault_has_a_mutation() -> None:
    assert set(RUN_MUTATION) == set(harness.FAULT_BY_ID)
    assert set(REPORT_MUTATION) == {f for f, _ in REPORT_CELLS}


@pytest.mark.parametrize("cell", RUN_CELLS, ids=cells.cell_id)
def test_run_cell_catches_its_mutation(cell: tuple[str, str], lab: dict[str, Any], tmp_path: Path) -> None:
    fault, phase = cell
    cells.skip_without_full_disk(fault, phase)
    mutation = RUN_MUTATION[fault]
    obs = cells.run_cell(fault, phase, lab, tmp_path, mutation=mutation)
    obs.save(harness.out_dir())
    assert any(CAUGHT_BY[mutation] in p for p in obs.problems), (mutation, obs.problems)


@pytest.mark.parametrize("cell", REPORT_CELLS, ids=cells.cell_id)
def test_report_cell_catches_its_mutation(cell: tuple[str, str], lab: dict[str, Any], passing_run: CellRun,
                                          passing_copy: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    fault, phase = cell
    cells.skip_without_full_disk(fault, phase)
    mutation = REPORT_MUTATION[fault]
    obs = cells.report_cell(fault, lab, passing_run, passing_copy, tmp_path, capsys, mutation=mutation)
    obs.save(harness.out_dir())
    assert any(CAUGHT_BY[mutation] in p for p in obs.problems), (mutation, obs.problems)
