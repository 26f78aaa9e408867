"""`rig check`: is this station ready? Validate the station file, reach every instrument, show who
answered.

Why a separate command: before a run (or at the start of a nightly CI job) the technician wants one
screen that says which instrument is unreachable, which serial does not match the station file
(the calibration record would then be for another unit), and which calibration is overdue.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from typing import Any

from rich.console import Console
from rig.textsafe import for_markup
from rich.table import Table
from rich.text import Text

from rig.station.bench import PUMP_KINDS, Bench, describe_error
from rig.station.config import STATION_ENV, default_station_path, load_station
from rig.station.lock import StationLock, warn_takeover

HELP = "check the station file and that every instrument answers"
DESCRIPTION = """\
Validate the station file, open every instrument it lists (in sim mode the simulated bench is
started, or attached to with sim.attach) and ask each one who it is. Prints one row per instrument:
kind, resource, model, serial and firmware as reported, calibration due date and status.

A reported serial that differs from the station file's serial counts as a failure (the calibration
on record would belong to another unit). An overdue calibration is a warning here; with
station.calibration_policy = "block" runs will refuse to start.
"""
EPILOG = f"""\
exit codes:
  0  every instrument answered with the expected serial
  2  the station file is invalid (every problem is listed, with its key path), or another
     controller holds the station (the message names it: command, pid, host, run, since when)
  3  an instrument is unreachable, misbehaves or reports another serial; or the bench cannot start

The station file is --station, else ${STATION_ENV}, else ./rig.toml.
examples:
  rig check
  rig check --station stations/rig-02.toml
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--station",
        metavar="FILE",
        default=None,
        help=f"station file (default: ${STATION_ENV} if set, else ./rig.toml)",
    )
    parser.set_defaults(func=run)


def _console() -> Console:
    # Captured output (CI logs, pipes) gets a wide fixed width so serials and reasons are never
    # cut or folded mid-word.
    return Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 200)


def run(args: argparse.Namespace) -> int:
    station = load_station(args.station or default_station_path())
    today = _dt.date.today()
    with StationLock.acquire(station, owner="rig check") as lock:
        warn_takeover(lock, audit_log_near=station.runs_dir)
        with Bench.open(station, only_check=True, lock=lock) as bench:
            snap = bench.snapshot(today)
            watchdogs = {name: _watchdog_line(name, driver) for name, driver in bench.instruments.items()
                         if station.instruments[name].kind in PUMP_KINDS}
    console = _console()
    console.print(
        f"Station [bold]{for_markup(station.id)}[/bold] — {for_markup(station.name)} ({for_markup(str(station.path))})\n"
        f"mode {station.mode}, clock {station.clock}, calibration policy "
        f"{station.calibration_policy}"
    )
    table = Table(show_lines=False)
    for column in ("Instrument", "Kind", "Resource", "Model", "Serial", "Firmware",
                   "Calibration due", "Status"):
        table.add_column(column, no_wrap=column not in ("Status", "Model"), overflow="fold")
    problems: list[str] = []
    warnings: list[str] = []
    for name, entry in snap["instruments"].items():
        status, problem = _status(entry)
        if problem:
            problems.append(f"{name}: {problem}")
        if entry["calibration_overdue"]:
            warnings.append(_overdue_warning(entry, station.calibration_policy, today))
        ident = entry["identity"] or {}
        resource = entry["resource"]
        if entry["resolved_resource"] and entry["resolved_resource"] != resource:
            resource = f"{resource} → {entry['resolved_resource']}"
        if entry["grpc_server"]:  # an NI device behind a gRPC device server
            server = entry["resolved_grpc_server"] or entry["grpc_server"]
            shown = server if server == entry["grpc_server"] else f"{entry['grpc_server']} → {server}"
            resource = f"{resource} @ {shown}"
        due = Text(entry["calibration_due"], style="bold yellow" if entry["calibration_overdue"] else "")
        cells = (name, entry["kind"], resource, ident.get("model", "—"),
                 ident.get("serial") or entry["serial"], ident.get("firmware", "—"))
        table.add_row(*(Text(str(c)) for c in cells), due, status)  # Text: no markup parsing
    console.print(table)
    for line in watchdogs.values():
        console.print(Text(line))
    for warning in warnings:
        console.print(Text(warning, style="bold yellow"))
    total = len(snap["instruments"])
    if problems:
        console.print(Text(f"FAILED: {len(problems)} of {total} instrument(s) not ready:",
                           style="bold red"))
        for problem in problems:
            console.print(Text(f"  - {problem}"))
        return 3
    console.print(Text(f"OK: all {total} instruments answered.", style="bold green"))
    return 0


def _watchdog_line(name: str, driver: Any) -> str:
    """The pump's own communications watchdog: what the station asks for and what the pump says.

    Why shown: it is the last line of defence when the controller machine dies with its
    supervisor; a technician should see at a glance whether this bench has it."""
    state_of = getattr(driver, "watchdog_state", None)
    if state_of is None:
        return (f"{name}: comms watchdog: none on this pump (it has no communications timeout); "
                "the safe-state supervisor is the last line of defence")
    try:
        state = state_of()
    except Exception as exc:  # noqa: BLE001 - shown, not fatal: the identity row already passed
        return f"{name}: comms watchdog: could not read it: {describe_error(exc)}"
    now = (f"pump now in {state['mode'].capitalize()} mode, SAF {state['pump_timeout_s']} s"
           + (", armed" if state["armed"] else ""))
    if state["configured_s"] == 0:
        return f"{name}: comms watchdog: OFF (options.comms_watchdog_s = 0; {now})"
    return (f"{name}: comms watchdog: {state['configured_s']} s, Safe mode switched on before each run's "
            f"first start; with no packet for {state['configured_s']} s the pump stops itself ({now})")


def _status(entry: dict[str, Any]) -> tuple[Text, str | None]:
    """(cell shown in the table, problem line or None)."""
    if "error" in entry:
        return Text(f"UNREACHABLE: {entry['error']}", style="bold red"), entry["error"]
    if entry["serial_mismatch"]:
        reported = entry["identity"]["serial"]
        problem = f"reports serial {reported!r}, station file says {entry['serial']!r}"
        return Text(f"SERIAL MISMATCH: {problem}", style="bold red"), problem
    if entry["calibration_overdue"]:
        return Text("OK (calibration overdue)", style="yellow"), None
    return Text("OK", style="green"), None


def _overdue_warning(entry: dict[str, Any], policy: str, today: _dt.date) -> str:
    days = (today - _dt.date.fromisoformat(entry["calibration_due"])).days
    consequence = ("runs will refuse to start (calibration_policy = \"block\")" if policy == "block"
                   else "runs proceed and their reports mark it (calibration_policy = \"warn\")")
    return (f"WARNING: calibration of {entry['name']} (serial {entry['serial']}) is overdue: was due "
            f"{entry['calibration_due']}, {days} day(s) ago; {consequence}")
