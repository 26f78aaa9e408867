"""The fault-injection matrix: every fault × every phase of a run (harness.FAULTS × harness.PHASES).

For each cell: the bench ends in its safe state as the simulated instruments themselves report it;
the record is readable and truthful (outcome and reason name the fault; it claims a safe state only
when the bench confirms one); every measurement already on disk when the fault struck is still
there, unchanged; and the run can never be reported or signed as a pass. Cells where a fault
cannot reach the phase are "n/a" with the reason (harness.NOT_APPLICABLE); known limitations no
controller code can fix are strict xfails (harness.KNOWN_GAPS; none at present: kill -9 is covered
by the safe-state supervisor, rig.engine.supervisor).

Every cell writes what it observed to $RIG_FAULT_MATRIX_OUT (when set) as JSON;
tests/faults/render_reliability.py runs this module and renders docs/reliability.md from them.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from faults import harness
from faults.harness import CellRun, Observation
from reports.bundle import build_bundle, load_manifest
from reports.signing import SigningRefused, sign_bundle
from reports.verify import verify_bundle
from rig.cli.main import main
from rig.errors import UsageError
from rig.record import read_record

# (outcome, reason pattern) alternatives per fault: the record must name what happened.
EXPECTED: dict[str, tuple[tuple[str, str], ...]] = {
    "silent": (("ERROR", r"instrument error: balance \('\w+'\): no reply within 300 ms"),),
    "garbage": (("ERROR", r"instrument error: balance \('\w+'\): not an MT-SICS reply"),),
    "drop": (("ERROR", r"instrument error: balance \('\w+'\): connection lost"),),
    "stall": (("FAIL", r"^pump alarm 'stall'$"),),
    # Whichever notices the dead server first ends the run: the reader (the interlock trips) or a
    # procedure call to the DAQ; both are truthful, and the safe state is never claimed.
    "daq_error": (("ERROR", r"safe state NOT confirmed: .*daq.*interlock tripped: pressure monitoring lost"),
                  ("ERROR", r"safe state NOT confirmed: .*daq.*(instrument error: daq|NI gRPC device server)")),
    "overpressure": (("ABORTED", r"^interlock tripped: overpressure: upstream line pressure"),),
    # A step that hangs while the procedure holds the occlusion valve closed is stopped by the
    # interlock before its own timeout: both are truthful endings.
    "step_timeout": (("ERROR", r"^step '\w+' exceeded its timeout of \d+ s of procedure time$"),
                     ("ABORTED", r"^interlock tripped: overpressure")),
    "sigint": (("ABORTED", r"^interrupted by SIGINT \(Ctrl-C\)$"),),
    "sigterm": (("ABORTED", r"^interrupted by SIGTERM$"),),
    "kill9": (("INCOMPLETE", r"did not finish"),),
    "disk_full": (("INCOMPLETE", r"did not finish"),),
    "clock_jump": (("ERROR", r"^step '\w+' exceeded its timeout"), ("ABORTED", r"pressure monitoring lost")),
}
PASS_CLAIM = "I confirm the item under test passed"



def cell_id(cell: tuple[str, str]) -> str:
    return f"{cell[0]}-{cell[1]}"


# -- judging ------------------------------------------------------------------------------------


def signable_as_pass(bundle: Path, lab: dict[str, Any]) -> tuple[bool, str]:
    """Try every way a signature could read as a pass; (True, how) if any is accepted.

    An undecided run (INCOMPLETE, ABORTED, ERROR) must refuse performed_by and approved_by
    outright; a FAIL run may be signed, but only with a meaning that names FAIL, never a pass."""
    verdict = str(load_manifest(bundle)[0]["verdict"])
    attempts = [("jdoe", "performed_by", None), ("jdoe", "performed_by", PASS_CLAIM), ("rroe", "approved_by", None)]
    accepted = []
    for who, role, meaning in attempts:
        try:
            path = sign_bundle(bundle, lab[who], role, lab["registry"], meaning=meaning, audit_log=lab["audit"])
        except SigningRefused:
            continue
        statement = verify_bundle(bundle, lab["registry"]).signatures[-1].statement
        path.unlink()  # try the next role on the bundle as built
        if verdict != "FAIL" or meaning is not None or statement["verdict"] != "FAIL" or "FAIL" not in statement["meaning"]:
            return True, f"{role} signature accepted on a {verdict} bundle (meaning {statement['meaning']!r})"
        accepted.append(role)
    if accepted:
        return False, f"bundle verdict {verdict}: {', '.join(accepted)} signatures only as FAIL; a pass claim is refused"
    return False, f"bundle verdict {verdict}: performed_by and approved_by refused"


def observe(fault: str, phase: str, cell: CellRun, lab: dict[str, Any], wall_s: float) -> Observation:
    obs = Observation(fault, phase, wall_s=round(wall_s, 2))
    record = cell.record
    obs.pump_stopped, obs.valves_safe = harness.safe_from_sim(cell.sim_state)
    obs.measured_before = sorted(cell.snapshot)
    if record is None:
        obs.outcome, obs.reason = "UNREADABLE", cell.record_error or ""
        return obs
    obs.outcome, obs.reason = record.outcome, record.reason
    obs.ended_in = harness.ended_in(record)
    safe = record.of_type("safe_state")
    obs.record_safe_claim = bool(safe[-1]["confirmed"]) if safe else None
    on_disk = {m["name"]: m["value"] for m in record.measurements}
    kept_snapshot = all(on_disk.get(k, object()) == v for k, v in cell.snapshot.items())
    kept_memory = all(on_disk.get(m["name"], object()) == m["value"] for m in cell.in_memory)
    obs.measurements_kept = kept_snapshot and kept_memory
    bundle = build_bundle(cell.run_dir, audit_log=lab["audit"])
    obs.verdict = str(load_manifest(bundle)[0]["verdict"])
    obs.signable_as_pass, obs.note = signable_as_pass(bundle, lab)
    return obs


def assert_cell(fault: str, phase: str, obs: Observation) -> None:
    assert obs.outcome != "UNREADABLE", f"record unreadable: {obs.reason}"
    assert obs.outcome != "PASS" and obs.verdict != "PASS", (obs.outcome, obs.reason)
    assert any(obs.outcome == outcome and re.search(pattern, obs.reason) for outcome, pattern in EXPECTED[fault]), \
        f"untruthful or unexpected ending: {obs.outcome}: {obs.reason}"
    assert obs.verdict == obs.outcome, "the bundle's verdict must be the record's outcome"
    assert not obs.signable_as_pass, obs.note
    assert set(harness.MEASURED_BEFORE[phase]) <= set(obs.measured_before), "the phase measured before the fault"
    assert obs.measurements_kept, "a measurement on disk before the fault was lost or changed"
    if obs.record_safe_claim:  # the record may claim a safe state only if the bench agrees
        assert obs.pump_stopped and obs.valves_safe, "record claims a safe state the bench does not confirm"
    if obs.outcome != "INCOMPLETE" and not obs.record_safe_claim:
        assert obs.outcome == "ERROR" and "safe state NOT confirmed" in obs.reason


def finish(obs: Observation, fault: str, phase: str) -> None:
    """Save the observation; the bench itself must show the pump stopped (or a known gap)."""
    gap = harness.KNOWN_GAPS.get((fault, phase))
    if gap and not obs.pump_stopped:
        obs.status, obs.note = "xfail", gap
        obs.save(harness.out_dir())
        pytest.xfail(gap)
    obs.save(harness.out_dir())
    assert gap is None, f"known gap no longer shows (pump stopped): remove it from harness.KNOWN_GAPS: {gap}"
    assert obs.pump_stopped, "the simulated pump is still running after the run ended"


# -- the cells ----------------------------------------------------------------------------------


def test_control_run_passes_and_is_signable(passing_run: CellRun, lab: dict[str, Any], tmp_path: Path) -> None:
    """Without a fault the same run PASSes and can be signed: the matrix's checks can tell."""
    import shutil

    run_dir = tmp_path / "control"
    shutil.copytree(passing_run.run_dir, run_dir)
    cell = CellRun(run_dir, read_record(run_dir), None, passing_run.sim_state, {}, passing_run.in_memory)
    obs = observe("none", "-", cell, lab, 0.0)
    assert (obs.outcome, obs.verdict, obs.record_safe_claim, obs.pump_stopped, obs.valves_safe) == \
        ("PASS", "PASS", True, True, True)
    assert obs.signable_as_pass, obs.note
    obs.note = "control run, no fault: PASS and signable — the checks below can tell a pass from a fault"
    obs.save(harness.out_dir())


RUN_CELLS = [(f, p) for f, p in harness.cells() if p != "report"]
REPORT_CELLS = [(f, p) for f, p in harness.cells() if p == "report"]


@pytest.mark.parametrize("cell", RUN_CELLS, ids=cell_id)
def test_fault_during_run(cell: tuple[str, str], lab: dict[str, Any], tmp_path: Path) -> None:
    fault, phase = cell
    t0 = time.monotonic()
    if harness.FAULT_BY_ID[fault].kind == "process":
        run = harness.run_as_process(fault, phase, tmp_path)
        assert "Traceback" not in run.output, run.output
        assert run.exit_code == (-9 if fault == "kill9" else 3), run.output
    else:
        run = harness.run_in_process(fault, phase, tmp_path)
    obs = observe(fault, phase, run, lab, time.monotonic() - t0)
    assert_cell(fault, phase, obs)
    if fault == "kill9":  # nothing of the runner survives: the supervisor made it safe and said so
        assert run.record is not None
        by_supervisor = [e["type"] for e in run.record.events if e.get("by") == "supervisor"]
        assert by_supervisor == ["event", "safe_state"], by_supervisor
        assert obs.record_safe_claim and obs.valves_safe, "the supervisor did not confirm a safe bench"
    finish(obs, fault, phase)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_no_signable_bundle(run_dir: Path, lab: dict[str, Any]) -> None:
    """An interrupted build leaves nothing that looks like a bundle or can be signed."""
    assert not (run_dir / "report" / "manifest.json").exists()
    with pytest.raises(UsageError):
        sign_bundle(run_dir / "report", lab["jdoe"], "performed_by", lab["registry"], audit_log=lab["audit"])


def report_observation(fault: str, run_dir: Path, lab: dict[str, Any], wall_s: float, note: str) -> Observation:
    """After the fault: the record is untouched, and a rebuild gives a verifiable bundle."""
    record = read_record(run_dir)
    rebuilt = build_bundle(run_dir, audit_log=lab["audit"])
    assert verify_bundle(rebuilt, lab["registry"], allow_unsigned=True).ok
    obs = Observation(fault, "report", outcome=record.outcome, reason=record.reason, ended_in=harness.ended_in(record),
                      record_safe_claim=True, pump_stopped=True, valves_safe=True, measurements_kept=True,
                      measured_before=sorted(m["name"] for m in record.measurements), verdict=None,
                      signable_as_pass=False, wall_s=round(wall_s, 2), note=note)
    return obs


@pytest.mark.parametrize("cell", REPORT_CELLS, ids=cell_id)
def test_fault_during_report_writing(cell: tuple[str, str], lab: dict[str, Any], passing_copy: Path,
                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    fault, phase = cell
    if (fault, phase) in harness.NOT_APPLICABLE:
        Observation(fault, phase, status="n/a", note=harness.NOT_APPLICABLE[(fault, phase)]).save(harness.out_dir())
        pytest.skip(f"n/a: {harness.NOT_APPLICABLE[(fault, phase)]}")
    t0 = time.monotonic()
    run_dir = passing_copy
    record_sha = _sha256(run_dir / "record.jsonl")
    if fault in harness.SIGNALS:
        marker = tmp_path / "holding"
        proc = subprocess.Popen([sys.executable, "-m", "faults.report_hold", str(run_dir), str(marker),
                                 "--audit-log", str(tmp_path / "audit.jsonl")], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=harness.child_env(), cwd=harness.REPO)
        harness.wait_for_text(lambda: [marker] if marker.exists() else [], "holding", proc)
        os.kill(proc.pid, harness.SIGNALS[fault])
        out, err = proc.communicate(timeout=60)
        assert "Traceback" not in out + err
        expected_code = {"sigint": 3, "sigterm": -15, "kill9": -9}[fault]
        assert proc.returncode == expected_code, out + err
        if fault == "sigint":
            assert err.strip() == "rig: interrupted"
        leftovers = sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".report.partial"))
        note = ("build interrupted: " + ("partial bundle removed" if not leftovers else
                f"hidden partial directory {leftovers[0]} left, ignored by build/sign/verify"))
    elif fault == "disk_full":
        real_write_bytes = Path.write_bytes

        def full_disk(self: Path, data: Any) -> int:
            if str(self.resolve()).startswith(str(run_dir.resolve())):
                raise OSError(28, os.strerror(28), str(self))
            return real_write_bytes(self, data)

        monkeypatch.setattr(Path, "write_bytes", full_disk)
        code = main(["report", "build", str(run_dir), "--audit-log", str(tmp_path / "audit.jsonl")])
        monkeypatch.undo()
        out, err = capsys.readouterr()
        assert code != 0 and "Traceback" not in out + err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "No space left on device" in lines[0], err
        assert not [p for p in run_dir.iterdir() if p.name.startswith(".report")], "partial bundle not cleaned up"
        shown = re.sub(r"'[^']*/([^'/]+)'", r"'…/\1'", lines[0])  # no machine-specific temp paths in the doc
        note = f"`rig report build` exits {code}: {shown}"
    elif fault == "clock_jump":
        bundle = build_bundle(run_dir, audit_log=lab["audit"])
        now = _dt.datetime.now(_dt.timezone.utc)
        sign_bundle(bundle, lab["jdoe"], "performed_by", lab["registry"], now=now, audit_log=lab["audit"])
        with pytest.raises(SigningRefused, match="the clock is behind the previous signature's signed_at"):
            sign_bundle(bundle, lab["rroe"], "reviewed_by", lab["registry"], now=now - _dt.timedelta(hours=1),
                        audit_log=lab["audit"])
        assert len(verify_bundle(bundle, lab["registry"]).signatures) == 1
        record = read_record(run_dir)
        obs = Observation(fault, phase, outcome="PASS", reason=record.reason, verdict="PASS",
                          ended_in=harness.ended_in(record),
                          measured_before=sorted(m["name"] for m in record.measurements),
                          pump_stopped=True, valves_safe=True, record_safe_claim=True, measurements_kept=True,
                          signable_as_pass=False, wall_s=round(time.monotonic() - t0, 2),
                          note="clock 1 h behind the performer's signature: the reviewer's signature is refused")
        obs.save(harness.out_dir())
        return
    else:  # pragma: no cover - every report cell is handled above or n/a
        raise AssertionError(f"no report-phase injection for {fault}")
    assert_no_signable_bundle(run_dir, lab)
    assert _sha256(run_dir / "record.jsonl") == record_sha, "report writing changed the record"
    report_observation(fault, run_dir, lab, time.monotonic() - t0, note).save(harness.out_dir())
