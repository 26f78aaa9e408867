"""`rig run PROCEDURE`: run one verification procedure on the station's bench.

Why the order below: everything that can be wrong with the *request* (procedure name, spec file,
parameters, station file, calibration policy, missing operator answers) is checked before the
bench is opened, so a typo costs nothing and exits 2. Once the bench is open the Runner owns the
outcome and the safe state; signals only request an abort from then on.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from rig.cli.live_display import make_display
from rig.engine.display import SafeStream
from rig.engine.operator import Operator, load_answers_file, parse_answer_args
from rig.engine.runner import RunAborted, Runner, RunResult
from rig.engine.signals import abort_on_signals
from rig.fleet.launch import ask_item, build_report, execute, prepare_run, station_audit_log
from rig.station.config import STATION_ENV, default_station_path, load_station
from rig.station.lock import StationLock, warn_takeover
from rig.station.operators import operator_identity as station_operator

HELP = "run a verification procedure on the bench"
DESCRIPTION = """\
Run PROCEDURE (see `rig list`) on the station's bench and write its record to
<runs dir>/<run id>/record.jsonl (plus raw/ data files) as it goes. The bench always ends in its
safe state (pump stopped, valves safe, read back) — on a pass, a failure, an error, a step timeout,
an interlock trip, Ctrl-C or SIGTERM. A second Ctrl-C does not skip the safe state.

What is shown never decides the outcome: a closed pipe (`| head -1`) or a lost terminal only stops
the drawing. A hang-up (SIGHUP: the terminal or ssh session closed) does not abort the run: it
continues detached, recorded as a warning event; `rig attach RUN` follows it again. Ctrl-C
(or SIGTERM) remains the explicit abort.

Parameters are NAME=VALUE in the parameter's unit (the unit may be repeated: rate_ml_h=0.5mL/h).
Operator steps are asked at the terminal; for unattended runs pre-supply every answer with
--answer STEP=VALUE or --answers FILE (TOML or JSON: step = "answer"), or the run refuses to start.
"""
EPILOG = f"""\
exit codes:
  0  PASS     every step completed and every measurement is within its limits
  1  FAIL     the run completed and a limit was violated (or the item under test failed)
  2  usage or configuration error, an unwritable --out, or the station (or one of its serial
     ports, or the simulated bench) is held by another controller, named in the message
     (nothing was started)
  3  ABORTED (Ctrl-C, SIGTERM, interlock, operator) or ERROR (instrument, timeout, safe state)
  4  PASS, but NOT VALID FOR RELEASE: a validity condition holds (equipment calibration overdue or
     unknown at the run date under calibration_policy = "warn", serial mismatch on a hardware
     station, lab environment outside the station's [environment] limits or unstable, torn
     record). The outcome stays PASS; the condition is in the record's report,
     `rig show` and the history. A simulated bench is marked SIMULATED but is not a condition.

The station file is --station, else ${STATION_ENV}, else ./rig.toml.
examples:
  rig run delivery_check --answer item_serial=SN123 --answer setup=done
  rig run delivery_check --param rate_ml_h=0.5 --param duration_min=20 --operator "A. Tech"
  rig run delivery_check --answers answers.toml --out /data/runs
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("run", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("procedure", metavar="PROCEDURE", help="procedure id (see `rig list`)")
    parser.add_argument("--station", metavar="FILE", default=None,
                        help=f"station file (default: ${STATION_ENV} if set, else ./rig.toml)")
    parser.add_argument("--param", metavar="NAME=VALUE", action="append", default=[],
                        help="set a procedure parameter (repeatable)")
    parser.add_argument("--operator", metavar="NAME", default=None,
                        help="who runs the procedure (default: the login name)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="runs directory (default: the station's runs_dir)")
    parser.add_argument("--answers", metavar="FILE", default=None,
                        help="pre-supplied operator answers (TOML or JSON: step = \"answer\")")
    parser.add_argument("--answer", metavar="STEP=VALUE", action="append", default=[],
                        help="pre-supply one operator answer (repeatable; overrides --answers)")
    parser.add_argument("--plain", action="store_true",
                        help="plain timestamped lines even on a terminal")
    parser.add_argument("--no-report", action="store_true",
                        help="do not build the report bundle after the run")
    parser.add_argument("--via", metavar="URL", default=None,
                        help="submit the run to a bench service (`rig serve`) at URL and show it "
                             "live here; the service's station runs it (--station/--out are its own)")
    parser.add_argument("--user", metavar="NAME", default=None,
                        help="with --via: account on the service (password from $RIG_PANEL_PASSWORD "
                             "or a prompt); not needed for a service on 127.0.0.1 without accounts")
    parser.set_defaults(func=run)


def default_operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (containers): say so rather than guess
        return "unknown"


def operator_identity(given: str | None, station: Any) -> str:
    """`--operator`, else the login name, checked as rig.station.operators says (never empty; one of
    the station's known operators when it names any)."""
    return station_operator(given, station, default=default_operator(), field="--operator")


def _answers(args: argparse.Namespace) -> tuple[dict[str, str], dict[str, str]]:
    answers: dict[str, str] = {}
    via: dict[str, str] = {}
    if args.answers:
        for key, value in load_answers_file(args.answers).items():
            answers[key], via[key] = value, f"answers file {args.answers}"
    for key, value in parse_answer_args(args.answer).items():
        answers[key], via[key] = value, "--answer"
    return answers, via


NOT_VALID_FOR_RELEASE_EXIT = 4


def _release(result: RunResult) -> int:
    """Print the validity conditions of the finished record; the exit code they give to a PASS."""
    from reports.results import equipment, release_text, station_identity, validity_conditions
    from rig.record import read_record

    try:
        record = read_record(result.run_dir)
    except Exception as exc:  # noqa: BLE001 - the outcome is printed already; say why no conditions
        print(f"rig: warning: validity conditions not evaluated: {exc}", file=sys.stderr)
        return result.exit_code
    identity = station_identity(record.started.get("station") or {})
    conditions = validity_conditions(record, equipment(record), identity)
    if identity["simulated"] or conditions:
        out = SafeStream(sys.stdout)  # a closed pipe must not turn the outcome into an error
        out.write(release_text(conditions, identity["simulated"]) + "\n")
        out.flush()
    if result.exit_code == 0 and conditions:
        return NOT_VALID_FOR_RELEASE_EXIT
    return result.exit_code


def run(args: argparse.Namespace) -> int:
    if args.via:
        from rig.service.client import run_via

        return run_via(args, make_display)
    station = load_station(args.station or default_station_path())

    def make_operator(abort: Any) -> Operator:
        answers, via = _answers(args)
        return Operator(operator_identity(args.operator, station), answers, answers_via=via,
                        abort_requested=abort.reason)

    prepared = prepare_run(
        args.procedure, args.param, station, make_operator,
        runs_dir=Path(args.out) if args.out else None,
        runs_dir_label="--out" if args.out else f"runs directory (station.runs_dir of {station.path})")
    run_id = prepared.run_id
    with StationLock.acquire(station, owner=f"rig run {prepared.procedure.id}", run_id=run_id) as lock:
        warn_takeover(lock, audit_log_near=station_audit_log(station).parent)
        display = make_display(plain=True if args.plain else None)
        runner: Runner | None = None

        def keep(r: Runner) -> None:
            nonlocal runner
            runner = r

        def hung_up() -> None:
            """SIGHUP: the terminal is gone; the run is not (README "Hang-ups")."""
            display.detach()
            if runner is not None:
                try:
                    runner.event("warning", f"the terminal hung up (SIGHUP): the run continues detached; "
                                            f"follow it with `rig attach {run_id}`, stop it with "
                                            f"`kill -INT {os.getpid()}`")
                except Exception:  # noqa: BLE001 - before the record exists there is nothing to note
                    pass

        try:
            with abort_on_signals(prepared.abort, notify=display.message, on_hangup=hung_up):
                try:
                    item, item_answers = ask_item(prepared, display)
                except RunAborted as exc:
                    print(f"rig: aborted before the run started: {exc.reason}", file=sys.stderr)
                    return 3
                result = execute(prepared, display, lock, item=item, item_answers=item_answers,
                                 on_runner=keep)
        finally:
            display.close()
    out = SafeStream(sys.stdout)  # `| head -1` may have closed it: the exit code still tells
    out.write(f"{result.outcome}: {result.reason}\n")
    out.write(f"record: {result.run_dir / 'record.jsonl'}\n")
    out.flush()
    code = _release(result)
    if not args.no_report:
        bundle = build_report(result, station_audit_log(station))
        if bundle is not None:
            out.write(f"report: {bundle}\n")
            out.flush()
    from rig.cli.commands.audit import mirror_after_write

    note = mirror_after_write(args, station_audit_log(station))  # the station keeps a copy of its trail
    if note:
        print(note, file=sys.stderr)
    return code
