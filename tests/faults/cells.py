"""One cell of the fault-injection matrix: inject, observe, judge.

Why a module of its own: the matrix (test_matrix.py) runs every cell on the real code and requires
no problem; the mutation checks (test_mutations.py) run the same cells with one guarantee
sabotaged (sabotage.py) and require the same checks to find a problem. Both must run exactly the
same injection, observation and judgement, so both call ``run_cell`` and ``problems`` here.

Every column of an Observation is read from the system: the simulated bench's own state over its
control channel (pump model and emulator, the NI device's output registers, the line's injected
faults), the run record as ``read_record`` reads it back, the bundle's manifest, and what signing
and verification answer. Nothing is filled in from what the test expects.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from faults import harness, sabotage
from faults.harness import CellRun, Observation
from reports.bundle import build_bundle, load_manifest
from reports.signing import SigningRefused, sign_bundle
from reports.verify import verify_bundle
from rig.cli.main import main
from rig.errors import UsageError
from rig.record import read_record

# (outcome, reason pattern) alternatives per fault: the record must name what happened.
EXPECTED: dict[str, tuple[tuple[str, str], ...]] = {
    "silent": (("ERROR", r"instrument error: balance \('\w+'\): no reply within \d+ ms"),),
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
    # A real full disk: the DAQ stream (written all the time) usually meets ENOSPC first and the
    # interlock trips; a few lines of record still fit the last page of the record file, or not.
    "disk_full": (("INCOMPLETE", r"did not finish"),
                  ("ABORTED", r"^interlock tripped: pressure monitoring lost \(.*cannot write the sample stream to disk"),
                  ("ERROR", r"^cannot write the run's data to disk \(.*\): No space left on device$")),
    "clock_jump": (("ERROR", r"^step '\w+' exceeded its timeout"), ("ABORTED", r"pressure monitoring lost")),
}
PASS_CLAIM = "I confirm the item under test passed"
REPORT_EXIT = {"sigint": 3, "sigterm": -15, "kill9": -9}


def cell_id(cell: tuple[str, str]) -> str:
    return f"{cell[0]}-{cell[1]}"


def skip_without_full_disk(fault: str, phase: str) -> None:
    """Disk full needs a real full filesystem; where none can be mounted the cell says why."""
    reason = harness.tmpfs_unavailable() if fault == "disk_full" else None
    if reason:
        Observation(fault, phase, status="skipped", note=reason).save(harness.out_dir())
        pytest.skip(reason)


# -- run-phase cells ------------------------------------------------------------------------------


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


def bench_observations(obs: Observation, state: dict[str, Any], stops_before: int | None) -> None:
    """The columns the simulated bench answers over its control channel."""
    obs.pump_stopped, obs.valves_safe = harness.safe_from_sim(state)
    pump = state["model"]["pump"]
    obs.pump_stopped_by = pump["stopped_by"]
    obs.pump_stop_commanded = None if stops_before is None else pump["stop_commands"] > stops_before


def observe(fault: str, phase: str, cell: CellRun, lab: dict[str, Any], wall_s: float) -> Observation:
    obs = Observation(fault, phase, wall_s=round(wall_s, 2), exit_code=cell.exit_code)
    bench_observations(obs, cell.sim_state, cell.stops_before)
    if fault == "overpressure":
        obs.line_fault_kept = cell.sim_state["model"]["faults"]["occlusion"]
    obs.measured_before = sorted(cell.snapshot)
    record = cell.record
    if record is None:
        obs.outcome, obs.reason = "UNREADABLE", cell.record_error or ""
        return obs
    obs.outcome, obs.reason = record.outcome, record.reason
    obs.ended_in = harness.ended_in(record)
    safe = record.of_type("safe_state")
    obs.record_safe_claim = bool(safe[-1]["confirmed"]) if safe else None
    obs.by_supervisor = [e["type"] for e in record.events if e.get("by") == "supervisor"]
    on_disk = {m["name"]: m["value"] for m in record.measurements}
    kept_snapshot = all(on_disk.get(k, object()) == v for k, v in cell.snapshot.items())
    kept_memory = all(on_disk.get(m["name"], object()) == m["value"] for m in cell.in_memory)
    obs.measurements_kept = kept_snapshot and kept_memory
    bundle = build_bundle(cell.run_dir, audit_log=lab["audit"])
    obs.verdict = str(load_manifest(bundle)[0]["verdict"])
    obs.signable_as_pass, obs.note = signable_as_pass(bundle, lab)
    return obs


def run_problems(fault: str, phase: str, obs: Observation, output: str = "") -> list[str]:
    """Everything a run-phase cell requires, as a list of what is wrong (empty: the cell holds)."""
    problems = []

    def need(ok: object, what: str) -> None:
        if not ok:
            problems.append(what)

    if harness.FAULT_BY_ID[fault].kind == "process":
        need("Traceback" not in output, "a traceback in the output of `rig run`")
        need(obs.exit_code == (-9 if fault == "kill9" else 3), f"`rig run` exit code {obs.exit_code}")
    need(obs.pump_stopped, "the simulated pump is still running after the run ended")
    need(obs.pump_stop_commanded, "the pump got no stop command after the fault (the bench's pump model)")
    if obs.outcome == "UNREADABLE":
        return problems + [f"record unreadable: {obs.reason}"]
    need(obs.outcome != "PASS" and obs.verdict != "PASS", f"a {obs.outcome} run or {obs.verdict} bundle")
    need(any(obs.outcome == o and re.search(p, obs.reason) for o, p in EXPECTED[fault]),
         f"untruthful or unexpected ending: {obs.outcome}: {obs.reason}")
    need(obs.verdict == obs.outcome, "the bundle's verdict is not the record's outcome")
    need(not obs.signable_as_pass, f"signable as a pass: {obs.note}")
    need(set(harness.MEASURED_BEFORE[phase]) <= set(obs.measured_before),
         "a measurement the phase took before the fault was not on disk")
    need(obs.measurements_kept, "a measurement on disk before the fault was lost or changed")
    if obs.record_safe_claim:
        need(obs.pump_stopped and obs.valves_safe, "the record claims a safe state the bench does not confirm")
    if obs.outcome != "INCOMPLETE" and not obs.record_safe_claim:
        need(obs.outcome == "ERROR" and "safe state NOT confirmed" in obs.reason,
             "no confirmed safe state, yet the outcome does not say so")
    if fault == "overpressure":  # the injected occlusion stays: only the rig can have stopped the pump
        need(obs.line_fault_kept, "the injected line occlusion was cleared (by whom?)")
        need(obs.pump_stopped_by == "command", f"the pump stopped by {obs.pump_stopped_by!r}, not by the rig")
    if fault == "kill9":  # nothing of the runner survives: the supervisor made it safe and said so
        need(obs.by_supervisor == ["event", "safe_state"], f"supervisor events in the record: {obs.by_supervisor}")
        need(obs.record_safe_claim and obs.valves_safe, "the supervisor did not confirm a safe bench")
    return problems


def run_cell(fault: str, phase: str, lab: dict[str, Any], tmp_path: Path, mutation: str | None = None) -> Observation:
    """Run one run-phase cell (with ``mutation`` applied, or the real code) and judge it."""
    t0 = time.monotonic()
    if harness.FAULT_BY_ID[fault].kind == "process":
        run = harness.run_as_process(fault, phase, tmp_path, mutation=mutation)
    else:
        run = harness.run_in_process(fault, phase, tmp_path, mutation=mutation)
    obs = observe(fault, phase, run, lab, time.monotonic() - t0)
    obs.mutation = mutation
    obs.problems = run_problems(fault, phase, obs, run.output)
    return obs


# -- report-phase cells ---------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _signable_left(run_dir: Path, lab: dict[str, Any]) -> tuple[bool, str]:
    """Whatever the fault left as run_dir/report: can it be signed at all?"""
    bundle = run_dir / "report"
    try:
        path = sign_bundle(bundle, lab["jdoe"], "performed_by", lab["registry"], audit_log=lab["audit"])
    except UsageError as exc:
        return False, f"signing what is left refused: {str(exc).splitlines()[0]}"
    path.unlink()
    return True, "what the interrupted build left was accepted for signing"


def _build_with_hold(run_dir: Path, tmp_path: Path, fault: str, mutation: str | None) -> tuple[int, str]:
    """`rig report build` in a child that pauses inside the build; the signal lands there."""
    marker = tmp_path / "holding"
    proc = subprocess.Popen([sys.executable, "-m", "faults.report_hold", str(run_dir), str(marker),
                             "--audit-log", str(tmp_path / "audit.jsonl")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=harness.child_env(mutation), cwd=harness.REPO)
    harness.wait_for_text(lambda: [marker] if marker.exists() else [], "holding", proc)
    os.kill(proc.pid, harness.SIGNALS[fault])
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out + err


def report_cell(fault: str, lab: dict[str, Any], passing: CellRun, run_dir: Path, tmp_path: Path,
                capsys: pytest.CaptureFixture[str], mutation: str | None = None) -> Observation:
    """Run one report-phase cell on ``run_dir`` (a private copy of the control run) and judge it."""
    t0 = time.monotonic()
    obs = Observation(fault, "report", mutation=mutation)
    # The bench as the control run left it: report writing touches no instrument.
    bench_observations(obs, passing.sim_state, None)
    before = read_record(run_dir)
    record_sha = _sha256(run_dir / "record.jsonl")
    obs.measured_before = sorted(m["name"] for m in before.measurements)
    problems: list[str] = []
    if fault in harness.SIGNALS:
        obs.exit_code, output = _build_with_hold(run_dir, tmp_path, fault, mutation)
        if "Traceback" in output:
            problems.append("a traceback in the output of `rig report build`")
        if obs.exit_code != REPORT_EXIT[fault]:
            problems.append(f"`rig report build` exit code {obs.exit_code}, expected {REPORT_EXIT[fault]}")
        if fault == "sigint" and output.strip() != "rig: interrupted":
            problems.append(f"Ctrl-C output {output.strip()!r}, expected 'rig: interrupted'")
        obs.note = f"`rig report build` ended by {fault} (exit {obs.exit_code})"
    elif fault == "disk_full":
        obs.exit_code, obs.note = _build_on_full_disk(run_dir, tmp_path, lab, capsys, mutation, problems)
    elif fault == "clock_jump":
        _sign_with_clock_jump(run_dir, lab, obs, mutation, problems)
    else:  # pragma: no cover - the matrix has no other report-phase fault
        raise AssertionError(f"no report-phase injection for {fault}")
    obs.staging_left = sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".report"))
    after = read_record(run_dir)
    obs.outcome, obs.reason, obs.ended_in = after.outcome, after.reason, harness.ended_in(after)
    safe = after.of_type("safe_state")
    obs.record_safe_claim = bool(safe[-1]["confirmed"]) if safe else None
    obs.record_unchanged = _sha256(run_dir / "record.jsonl") == record_sha
    obs.measurements_kept = after.measurements == before.measurements
    if fault != "clock_jump":
        manifest = run_dir / "report" / "manifest.json"
        obs.verdict = str(load_manifest(run_dir / "report")[0]["verdict"]) if manifest.exists() else None
        obs.signable_as_pass, why = _signable_left(run_dir, lab)
        obs.note += f"; {why}"
        try:  # on what the fault left: an operator must be able to rebuild without cleaning up by hand
            if obs.staging_left:
                obs.note += f"; staging directory {obs.staging_left[0]} left (build, sign and verify ignore it)"
            rebuilt = build_bundle(run_dir, audit_log=lab["audit"])
            obs.rebuild_verifies = verify_bundle(rebuilt, lab["registry"], allow_unsigned=True).ok
        except Exception as exc:  # noqa: BLE001 - a rebuild that fails is an observation
            obs.rebuild_verifies = False
            obs.note += f"; rebuild failed: {exc}"
    obs.wall_s = round(time.monotonic() - t0, 2)
    obs.problems = problems + report_problems(fault, obs)
    return obs


def _build_on_full_disk(run_dir: Path, tmp_path: Path, lab: dict[str, Any], capsys: pytest.CaptureFixture[str],
                        mutation: str | None, problems: list[str]) -> tuple[int, str]:
    """Copy the run onto a small tmpfs, fill it (leaving half the record's size free, so the copy
    of the record starts and then meets ENOSPC) and build there; then move the result back."""
    mount = tmp_path / "disk"
    with harness.small_tmpfs(mount):
        on_disk = mount / run_dir.name
        shutil.copytree(run_dir, on_disk)
        filler = harness.fill_disk(mount, leave_bytes=(on_disk / "record.jsonl").stat().st_size // 2)
        undo = sabotage.apply(mutation) if mutation else None
        try:
            code = main(["report", "build", str(on_disk), "--audit-log", str(tmp_path / "audit.jsonl")])
        finally:
            if undo is not None:
                undo()
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        if code == 0 or "Traceback" in out + err:
            problems.append(f"`rig report build` on a full disk exited {code}: {err.strip()[:200]}")
        if not (len(lines) == 1 and "No space left on device" in lines[0]):
            problems.append(f"not one clear ENOSPC message: {err.strip()[:200]!r}")
        filler.unlink()  # free the disk again: what the build left is judged below, as on disk
        shutil.rmtree(run_dir)
        shutil.copytree(on_disk, run_dir, symlinks=True)
    shown = re.sub(r"'[^']*/([^'/]+)'", r"'…/\1'", lines[0] if lines else "")  # no temp paths in the doc
    return code, f"`rig report build` on a full tmpfs exits {code}: {shown}"


def _sign_with_clock_jump(run_dir: Path, lab: dict[str, Any], obs: Observation, mutation: str | None,
                          problems: list[str]) -> None:
    """Sign as performer now, then as reviewer with the clock 1 h behind: the second is refused."""
    bundle = build_bundle(run_dir, audit_log=lab["audit"])
    obs.verdict = str(load_manifest(bundle)[0]["verdict"])
    now = _dt.datetime.now(_dt.timezone.utc)
    sign_bundle(bundle, lab["jdoe"], "performed_by", lab["registry"], now=now, audit_log=lab["audit"])
    undo = sabotage.apply(mutation) if mutation else None
    try:
        sign_bundle(bundle, lab["rroe"], "reviewed_by", lab["registry"], now=now - _dt.timedelta(hours=1),
                    audit_log=lab["audit"])
        obs.backdated_refused, obs.note = False, "the reviewer's signature dated 1 h before the performer's was accepted"
    except SigningRefused as exc:
        obs.backdated_refused = "the clock is behind the previous signature's signed_at" in str(exc)
        obs.note = f"clock 1 h behind the performer's signature: the reviewer's signature is refused ({exc})"
    finally:
        if undo is not None:
            undo()
    signatures = verify_bundle(bundle, lab["registry"]).signatures
    obs.signable_as_pass = any(s.statement["role"] == "performed_by" and s.statement["verdict"] == "PASS"
                               for s in signatures)  # the run passed: its pass signature is legitimate
    obs.rebuild_verifies = verify_bundle(bundle, lab["registry"]).ok
    if len(signatures) != 1:
        problems.append(f"{len(signatures)} signatures on the bundle, expected the performer's only")


def report_problems(fault: str, obs: Observation) -> list[str]:
    problems = []
    if obs.record_unchanged is not True:
        problems.append("report writing changed the record")
    if obs.rebuild_verifies is not True:
        problems.append("the bundle built after the fault does not verify")
    if fault == "clock_jump":
        if not obs.backdated_refused:
            problems.append("a signature dated before the previous one was accepted")
        return problems
    if obs.signable_as_pass or obs.verdict is not None:
        problems.append(f"the interrupted build left a bundle (verdict {obs.verdict}) that can be signed")
    if fault in ("sigint", "disk_full") and obs.staging_left:  # the build had the chance to clean up
        problems.append(f"staging directory left behind: {', '.join(obs.staging_left)}")
    return problems
