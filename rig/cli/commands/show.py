"""`rig show RUN`: print a run record — finished or not.

Why: after a crash, a kill or a nightly failure the first question is "how far did it get and
what did it measure?". A record without ``run_finished`` is shown as INCOMPLETE (never as a pass),
with the last thing it recorded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from reports.formatting import limits_text, parameter_effective, uncertainty_text, value_text
from reports.results import equipment, release_text, station_identity, validity_conditions
from rig.errors import UsageError
from rig.record import INCOMPLETE, SUPERVISOR, RunRecord, read_record
from rig.station.config import STATION_ENV, default_station_path, load_station
from rig.station.lock import holder_is_live, read_holder
from rig.textsafe import for_terminal

HELP = "print a run record (outcome INCOMPLETE for an unfinished run)"
DESCRIPTION = """\
Print a run record: outcome and reason, procedure and spec identity, station and instruments with
calibration status, operator, item under test, parameters, steps, operator entries, measurements
against limits, events and the safe-state read-back. RUN is a run directory, a record.jsonl, or a
run id (or unique prefix of one) in the station's runs directory.
"""
EPILOG = f"""\
exit codes: (the record is printed in every case)
  0  PASS, valid for release (simulated data is marked SIMULATED but does not change the code)
  1  the outcome is not PASS (FAIL, ABORTED, ERROR, INCOMPLETE)
  2  no such run, or the record is corrupt
  4  PASS but NOT VALID FOR RELEASE (equipment calibration overdue or unknown at the run date,
     serial mismatch on a hardware station, lab environment out of limits or unstable, torn record)
The station file (for run ids) is --station, else ${STATION_ENV}, else ./rig.toml.
examples:
  rig show runs/20250101T120000Z-delivery_check-a1b2c3
  rig show 20250101T1200 --station rig.toml
  rig show RUN --json
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("show", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--json", action="store_true",
                        help="print outcome, reason and every event as JSON")
    parser.set_defaults(func=run)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """RUN and --station, as ``find_run`` reads them (rig show, rig attach)."""
    parser.add_argument("run_ref", metavar="RUN", help="run directory, record.jsonl, or run id")
    parser.add_argument("--station", metavar="FILE", default=None,
                        help="station file whose runs_dir holds RUN ids")


def find_run(ref: str, station_path: str | None) -> Path:
    path = Path(ref).expanduser()
    if path.exists():
        return path
    runs_dir = load_station(station_path or default_station_path()).runs_dir
    if (runs_dir / ref).is_dir():
        return runs_dir / ref
    # a run id prefix is a plain name; a path that does not exist matches nothing (glob refuses it)
    prefix_ok = runs_dir.is_dir() and bool(ref) and Path(ref).name == ref
    matches = sorted(p for p in runs_dir.glob(f"{ref}*") if p.is_dir()) if prefix_ok else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(p.name for p in matches[:5])
        raise UsageError(f"run {ref!r} is ambiguous in {runs_dir}: {names}{' ...' if len(matches) > 5 else ''}")
    raise UsageError(f"no run {ref!r}: not a path, and not a run id in {runs_dir}")


def _num(value: Any) -> str:
    return "" if value is None else (f"{value:.5g}" if isinstance(value, float) else str(value))


def release(record: RunRecord) -> tuple[bool, list[str]]:
    """(simulated, validity conditions) of a record: the same rules as the report bundle."""
    identity = station_identity(record.started.get("station") or {})
    return identity["simulated"], validity_conditions(record, equipment(record), identity)


def _lines(record: RunRecord) -> list[str]:
    s = record.started
    proc = s.get("procedure", {})
    station = s.get("station", {})
    sw = s.get("software", {})
    out: list[str] = []
    finished = record.finished
    simulated, conditions = release(record)
    out.append(f"Run {s.get('run_id', record.run_dir.name)}")
    out.append(f"  OUTCOME: {record.outcome} — {record.reason}")
    if simulated:
        out.append("  SIMULATED: data from the simulated bench / virtual clock, not from real equipment")
    out.append(f"  {release_text(conditions, simulated)}")
    if finished is None:
        run_id = str(s.get("run_id", record.run_dir.name))
        holder = read_holder(str((station.get("station") or {}).get("id") or ""))
        if holder is not None and holder.run_id == run_id and holder_is_live(holder):
            out.append(f"  IN PROGRESS: {holder.describe()} is running it; follow it with "
                       f"`rig attach {record.run_dir}`")
        last = record.events[-1]
        where = last.get("step") or last.get("kind") or ""
        out.append(f"  last recorded event: {last.get('type')} {where} at {last.get('t_utc', '?')}"
                   + ("; the last line was torn mid-write" if record.truncated_tail else ""))
    out.append(f"Procedure {proc.get('id')} {proc.get('version')} — {proc.get('title', '')}")
    statements = proc.get("requirement_statements") or {}
    out.append("  requirements:")
    for req in proc.get("requirements", []):
        out.append(f"    {req}: {statements.get(req, '(no statement in the spec)')}")
    out.append(f"  source sha256 {proc.get('source_sha256')}")
    out.append(f"  spec {proc.get('spec_version')} sha256 {proc.get('spec_sha256')}")
    st = station.get("station", {})
    out.append(f"Station {st.get('id')} (mode {st.get('mode')}, clock {st.get('clock')}, "
               f"calibration policy {st.get('calibration_policy')})")
    dirty = " (uncommitted changes)" if sw.get("git_dirty") else ""
    out.append(f"Software rig {sw.get('version')} git {sw.get('git_sha') or 'unknown'}{dirty}")
    out.append(f"Operator {s.get('operator')}; started {s.get('t_utc')}"
               + (f"; finished {finished.get('t_utc')}" if finished else ""))
    item = s.get("item_under_test") or {}
    out.append("Item under test: " + (", ".join(f"{k} = {v}" for k, v in item.items()) or "(not named)"))
    for row in equipment(record):
        if row["under_test"]:
            out.append(f"  instrument {row['name']}: {row['model'] or 'model not reported'}, serial {row['serial']}"
                       + (f" (reports {row['reported_serial']})" if row.get("reported_serial") else ""))
    out.append("Parameters:")
    for name, p in (s.get("parameters") or {}).items():
        out.append(f"  {name} = {parameter_effective(p)} ({p.get('source', '')})")
    out.append("Instruments:")
    for row in equipment(record):
        if row["under_test"]:
            out.append(f"  {row['name']:<8} {row['kind'] or '':<16} {row['model'] or ''} serial {row['serial']} "
                       f"fw {row['firmware'] or ''} — ITEM UNDER TEST (not test equipment)")
            continue
        out.append(f"  {row['name']:<8} {row['kind'] or '':<16} {row['model'] or ''} serial "
                   f"{row['serial']} fw {row['firmware'] or ''} calibration due "
                   f"{row['calibration_due']} ({row['calibration_status']})")
    out.append("Steps:")
    for e in record.events:
        if e["type"] == "step_finished":
            reason = f" — {e['reason']}" if e.get("reason") else ""
            out.append(f"  {e.get('index', 0) + 1}. {e.get('step')}: {e.get('status')} "
                       f"(t = {_num(e.get('t_proc_s'))} s){reason}")
        elif e["type"] == "step_started" and not any(
                x["type"] == "step_finished" and x.get("index") == e.get("index") for x in record.events):
            out.append(f"  {e.get('index', 0) + 1}. {e.get('step')}: started, never finished")
    entries = record.of_type("operator_entry")
    if entries:
        out.append("Operator entries:")
        for e in entries:
            out.append(f"  {e.get('step')}: {e.get('answer')!r} by {e.get('answered_by')} via "
                       f"{e.get('via', '?')} at {e.get('t_utc')}")
    out.append("Measurements:")
    for m in record.measurements:
        out.append(f"  {m.get('name')} = {value_text(m)} ({uncertainty_text(m)}); limits {limits_text(m)}; "
                   f"{m.get('requirement', '')} -> {str(m.get('outcome', '')).upper()}")
    if not record.measurements:
        out.append("  (none)")
    events = record.of_type("event")
    if events:
        out.append("Events:")
        for e in events:
            out.append(f"  t = {_num(e.get('t_proc_s'))} s  {e.get('kind')}: {e.get('detail')}")
    safe = record.of_type("safe_state")
    if safe:
        last = safe[-1]
        state = "confirmed" if last.get("confirmed") else f"NOT confirmed: {last.get('error')}"
        by = " by the safe-state supervisor (the run process died)" if last.get("by") == SUPERVISOR else ""
        out.append(f"Safe state: {state}{by}")
    elif record.outcome == INCOMPLETE:
        out.append("Safe state: not recorded (the process ended before reaching it)")
    return out


def exit_code(record: RunRecord, conditions: list[str]) -> int:
    """See EPILOG: 1 not PASS, 4 PASS with a validity condition, else 0."""
    if record.outcome != "PASS":
        return 1
    return 4 if conditions else 0


def run(args: argparse.Namespace) -> int:
    record = read_record(find_run(args.run_ref, args.station))
    simulated, conditions = release(record)
    if args.json:
        print(json.dumps({"outcome": record.outcome, "reason": record.reason, "simulated": simulated,
                          "conditions": conditions, "release": release_text(conditions, simulated),
                          "truncated_tail": record.truncated_tail, "events": record.events}, indent=2))
    else:
        sys.stdout.write("\n".join(for_terminal(line) for line in _lines(record)) + "\n")
    return exit_code(record, conditions)
