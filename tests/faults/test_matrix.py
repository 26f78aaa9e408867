"""The fault-injection matrix: every fault × every phase of a run (harness.FAULTS × harness.PHASES).

For each cell: the bench ends in its safe state as the simulated instruments themselves report it,
and the pump got a stop command after the fault (so a fault that stops the pump by itself cannot
hide a rig that never does); the record is readable and truthful (outcome and reason name the
fault; it claims a safe state only when the bench confirms one); every measurement already on disk
when the fault struck is still there, unchanged; and the run can never be reported or signed as a
pass. Report-phase cells start from the control run that PASSED: an interrupted or failed build
leaves nothing signable, leaves the record untouched, and a rebuild on what it left verifies.
Cells where a fault cannot reach the phase are "n/a" with the reason (harness.NOT_APPLICABLE).

The judging is in cells.py, shared with the mutation checks (test_mutations.py), which run the same
cells with the guarded thing sabotaged and require these checks to fail. Every cell writes what it
observed to $RIG_FAULT_MATRIX_OUT (when set) as JSON; tests/faults/render_reliability.py runs the
matrix and the mutation checks and renders docs/reliability.md from them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from faults import cells, harness
from faults.harness import CellRun
from rig.record import read_record


def test_control_run_passes_and_is_signable(passing_run: CellRun, lab: dict[str, Any], tmp_path: Path) -> None:
    """Without a fault the same run PASSes and can be signed: the matrix's checks can tell."""
    run_dir = tmp_path / "control"
    shutil.copytree(passing_run.run_dir, run_dir)
    cell = CellRun(run_dir, read_record(run_dir), None, passing_run.sim_state, {}, passing_run.in_memory)
    obs = cells.observe("none", "-", cell, lab, 0.0)
    assert (obs.outcome, obs.verdict, obs.record_safe_claim, obs.pump_stopped, obs.valves_safe) == \
        ("PASS", "PASS", True, True, True)
    assert obs.pump_stopped_by == "command"  # the procedure's own stop at the end of measurement
    assert obs.signable_as_pass, obs.note
    obs.note = "control run, no fault: PASS and signable — the checks below can tell a pass from a fault"
    obs.save(harness.out_dir())


RUN_CELLS = [(f, p) for f, p in harness.cells() if p != "report"]
REPORT_CELLS = [(f, p) for f, p in harness.cells() if p == "report"]


@pytest.mark.parametrize("cell", RUN_CELLS, ids=cells.cell_id)
def test_fault_during_run(cell: tuple[str, str], lab: dict[str, Any], tmp_path: Path,
                          request: pytest.FixtureRequest) -> None:
    fault, phase = cell
    cells.skip_without_full_disk(fault, phase)
    obs = cells.run_cell(fault, phase, lab, tmp_path)
    obs.save(harness.out_dir())
    assert obs.problems == [], obs


@pytest.mark.parametrize("cell", REPORT_CELLS, ids=cells.cell_id)
def test_fault_during_report_writing(cell: tuple[str, str], lab: dict[str, Any], passing_run: CellRun,
                                     passing_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fault, phase = cell
    if (fault, phase) in harness.NOT_APPLICABLE:
        harness.Observation(fault, phase, status="n/a", note=harness.NOT_APPLICABLE[(fault, phase)]).save(
            harness.out_dir())
        pytest.skip(f"n/a: {harness.NOT_APPLICABLE[(fault, phase)]}")
    cells.skip_without_full_disk(fault, phase)
    obs = cells.report_cell(fault, lab, passing_run, passing_copy, tmp_path, capsys)
    obs.save(harness.out_dir())
    assert obs.problems == [], obs
