"""`rig attach RUN`: follow a run in progress — after a hang-up, or from another terminal.

Why: a run survives its terminal (a hang-up does not abort it, see `rig run --help`), so there
must be a way back to its live view. The record is the run's account, written as it goes; this
command follows it and draws the same display as `rig run` (the panel on a terminal, plain lines
otherwise): step, progress, time remaining, measurements, events and alarms, then the outcome.
Following never touches the bench and never stops the run: Ctrl-C here only detaches.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from rig.cli.commands.show import add_run_arguments, find_run
from rig.cli.live_display import make_display
from rig.engine.display import Display, RunInfo
from rig.errors import UsageError
from rig.record import OUTCOMES
from rig.station.config import STATION_ENV
from rig.station.lock import holder_is_live, read_holder

HELP = "follow a run in progress (its live view), until it ends"
DESCRIPTION = """\
Follow the run RUN (a run directory, a record.jsonl, or a run id in the station's runs directory)
while it runs, with the live display of `rig run`, and print its outcome when it ends. Use it to
get the view back after the terminal of `rig run` closed (the run goes on detached), or to watch
a run (or a nightly's current run) from another terminal. Ctrl-C detaches; the run goes on.
"""
EPILOG = f"""\
exit codes:
  0  the run ended PASS        1  the run ended FAIL
  2  no such run               3  ABORTED or ERROR, or the controller died (the record is INCOMPLETE)
The station file (for run ids) is --station, else ${STATION_ENV}, else ./rig.toml.
examples:
  rig attach 20261130T091920Z-delivery_check-afce1f
  rig attach runs/20261130T091920Z-delivery_check-afce1f --plain
"""
POLL_S = 0.2
GONE_AFTER_S = 2.0  # the controller has not held the station this long: it is gone


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("attach", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--plain", action="store_true", help="plain timestamped lines even on a terminal")
    parser.set_defaults(func=run)


def _steps(started: dict[str, Any]) -> list[tuple[str, float]]:
    """(step, expected procedure seconds) from the procedure and the recorded parameter values;
    0 s where the procedure cannot be loaded or has changed since (remaining is then a lower bound)."""
    proc = started.get("procedure") or {}
    names = list(proc.get("steps") or [])
    expected: dict[str, float] = {}
    try:
        import procedures
        from rig.engine.procedure import Step

        procedure = procedures.load(str(proc.get("id")))
        if procedure.version == proc.get("version"):
            values = {k: v.get("value") for k, v in (started.get("parameters") or {}).items()}
            expected = {s.name: s.expected_s(values) for s in procedure.steps if isinstance(s, Step)}
    except Exception:  # noqa: BLE001 - a display estimate; the steps are still shown
        expected = {}
    return [(name, float(expected.get(name, 0.0))) for name in names]


def feed(display: Display, event: dict[str, Any], wall0: float) -> None:
    """One record line into a display, as the runner would have reported it."""
    kind = event.get("type")
    t = event.get("t_proc_s")
    if kind == "run_started":
        st = (event.get("station") or {}).get("station") or {}
        proc = event.get("procedure") or {}
        display.start(RunInfo(str(event.get("run_id")), f"{proc.get('id')} {proc.get('version')}",
                              str(proc.get("title", "")), str(st.get("id", "")), str(event.get("operator", "")),
                              _steps(event), bool((event.get("clock") or {}).get("virtual")), "(attached)"))
    elif kind == "step_started":
        display.step_started(int(event.get("index", 0)), str(event.get("step")), float(t or 0.0))
    elif kind == "step_finished":
        display.step_finished(int(event.get("index", 0)), str(event.get("step")), str(event.get("status")))
    elif kind == "measurement":
        display.measurement(event)
    elif kind == "event":
        display.event(str(event.get("kind")), str(event.get("detail")))
    elif kind == "run_finished":
        display.finish(str(event.get("outcome")), str(event.get("reason")))
    if isinstance(t, (int, float)) and kind != "run_finished":
        display.tick(float(t), time.monotonic() - wall0)


def controller_alive(station_id: str | None, run_id: str) -> bool:
    """Someone holds the station lock and names this run (a nightly names its current run)."""
    holder = read_holder(station_id) if station_id else None
    return holder is not None and holder.run_id == run_id and holder_is_live(holder)


def run(args: argparse.Namespace) -> int:
    path = find_run(args.run_ref, args.station)
    record = path / "record.jsonl" if path.is_dir() else path
    if not record.is_file():
        raise UsageError(f"no run record at {record}")
    display = make_display(plain=True if args.plain else None)
    wall0 = time.monotonic()
    outcome: str | None = None
    station_id: str | None = None
    run_id = record.parent.name
    gone_since: float | None = None
    try:
        with open(record, "rb") as f:
            pending = b""
            while outcome is None:
                chunk = f.read()
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    try:
                        event = json.loads(raw)
                    except ValueError:
                        continue  # a torn line (a killed controller); the reader skips it too
                    if event.get("type") == "run_started":
                        station_id = ((event.get("station") or {}).get("station") or {}).get("id")
                        run_id = str(event.get("run_id") or run_id)
                    feed(display, event, wall0)
                    if event.get("type") == "run_finished":
                        outcome = str(event.get("outcome"))
                if outcome is not None or chunk:
                    gone_since = None
                    continue
                if controller_alive(station_id, run_id):
                    gone_since = None
                elif gone_since is None:
                    gone_since = time.monotonic()
                elif time.monotonic() - gone_since > GONE_AFTER_S:
                    display.finish("INCOMPLETE", "the controller of this run is gone (killed or crashed) "
                                                 "and the record has no run_finished; see `rig show`")
                    return 3
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        display.message("detached; the run goes on (`rig attach` again to follow it)")
        return 0
    finally:
        display.close()
    return {"PASS": 0, "FAIL": 1}.get(outcome, 3) if outcome in OUTCOMES else 3
