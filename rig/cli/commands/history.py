"""`rig history`: what the rigs measured over time, as a table and a trend line per measurement.

Why in the terminal: the technician asking "has flow error been creeping up on this rig?" should
get the answer where they already are, with the drift rule applied, without opening a database
client. The nightly summary shows the same series as plots.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

from rich.console import Console
from rig.textsafe import for_markup, for_terminal
from rich.table import Table

from rig import secret_env
from rig.analysis.trends import DEFAULT_RULE, assess, sparkline
from rig.cli import trust
from rig.errors import UsageError
from rig.fleet.history import (
    URL_ENV,
    Filters,
    MeasurementPoint,
    open_history,
    parse_since,
    resolve_url,
    station_url,
)
from rig.station.config import STATION_ENV, default_station_path, load_station

HELP = "show past runs and measurements with trend lines and drift flags"
DESCRIPTION = f"""\
Show runs and measurements from the history database (the station file's [history] url, default
sqlite:///<runs_dir>/history.sqlite3; ${URL_ENV} or --db overrides), newest runs first, and one
trend line per measurement series (station x procedure x suite entry x measurement) with the drift
verdict.

Drift rule: {DEFAULT_RULE.describe()}; a latest value outside its limits is shown as out of limits.

--import files report bundles (their results.json) into the history: runs made with `rig run`, or
a history rebuilt from archived bundles. Each bundle is verified first (signatures against the key
registry; --allow-unsigned for file hashes only) and its manifest sha256 stored: one that does not
verify is not filed, importing the same bundle twice changes nothing, and a different bundle with a
run id already filed is refused.
"""
EPILOG = f"""\
exit codes:
  0  shown (or imported)
  1  a bundle given to --import does not verify, or its run id is filed from another bundle (not filed)
  2  bad option, unreadable station file or bundle
  3  the history database cannot be opened or read

The station file (for the history URL) is --station-file, else ${STATION_ENV}, else ./rig.toml.
examples:
  rig history
  rig history --procedure delivery_check --measurement volume_error_pct --since 2026-01-01
  rig history --station SIM-BENCH-01 --since 7d
  rig history --import runs/*/report
"""
OUTCOME_STYLE = {"PASS": "green", "FAIL": "bold red", "pass": "green", "fail": "bold red"}
STATUS_STYLE = {"drift": "bold red", "near_limit": "dark_orange", "out_of_limits": "bold red",
                "ok": "green", "insufficient": "dim"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("history", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procedure", metavar="ID", help="only this procedure")
    parser.add_argument("--measurement", metavar="NAME", help="only this measurement (shows every value)")
    parser.add_argument("--since", metavar="DATE", help="only runs started at/after this UTC date (2026-01-10, "
                        "2026-01-10T09:00) or this many days ago (7d)")
    parser.add_argument("--station", metavar="ID", help="only this station id")
    parser.add_argument("--label", metavar="LABEL", help="only this nightly suite entry")
    release = parser.add_mutually_exclusive_group()
    release.add_argument("--not-valid", dest="valid_for_release", action="store_false", default=None,
                         help="only runs NOT VALID FOR RELEASE (validity condition or simulated data)")
    release.add_argument("--valid", dest="valid_for_release", action="store_true", default=None,
                         help="only runs valid for release")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--simulated", dest="simulated", action="store_true", default=None,
                      help="only runs on a simulated bench or virtual clock")
    mode.add_argument("--hardware", dest="simulated", action="store_false", default=None,
                      help="only runs on hardware with a real clock")
    parser.add_argument("--limit", metavar="N", type=int, default=20, help="runs to list (default 20)")
    parser.add_argument("--station-file", metavar="FILE", default=None,
                        help=f"station file whose [history] url to use (default ${STATION_ENV} or ./rig.toml)")
    parser.add_argument("--db", metavar="URL", default=None, help=f"history URL (overrides ${URL_ENV} and the station file)")
    parser.add_argument("--import", dest="imports", metavar="BUNDLE", nargs="+", default=None,
                        help="file these report bundles into the history, then exit")
    parser.add_argument("--registry", metavar="FILE", default=None,
                        help="key registry for --import (default $RIG_KEY_REGISTRY, else the station file's "
                             "key_registry)")
    parser.add_argument("--admin-key-id", metavar="ID", action="append", default=[],
                        help="pin an administrator key id for --import (repeatable; adds to the station "
                             "file's [signing] admin_keys)")
    parser.add_argument("--allow-unsigned", action="store_true",
                        help="--import also files unsigned bundles whose file hashes verify")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def _url(args: argparse.Namespace) -> str:
    if args.db:
        return station_url(None, args.db)
    if (secret_env.take(URL_ENV) or "").strip():
        return station_url(None)
    path = Path(args.station_file) if args.station_file else default_station_path()
    if not path.exists():
        raise UsageError(f"no station file at {path} to take the history URL from; give --station-file FILE, "
                         f"set ${STATION_ENV}, or give the history itself with --db URL or ${URL_ENV}")
    return resolve_url(station_url(load_station(path)), Path.cwd())


def _series(points: list[MeasurementPoint]) -> "OrderedDict[tuple[str, str, str, str], list[MeasurementPoint]]":
    groups: OrderedDict[tuple[str, str, str, str], list[MeasurementPoint]] = OrderedDict()
    for p in points:
        groups.setdefault((p.station_id, p.procedure_id, p.suite_label or "", p.name), []).append(p)
    return groups


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _limits(low: float | None, high: float | None) -> str:
    return f"{'' if low is None else f'{low:g}'} … {'' if high is None else f'{high:g}'}"


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit <= 0:
        raise UsageError(f"--limit {args.limit}: must be a positive number of runs")
    filters = Filters(procedure_id=args.procedure, measurement=args.measurement, station_id=args.station,
                      since=parse_since(args.since) if args.since else None, suite_label=args.label,
                      valid_for_release=args.valid_for_release, simulated=args.simulated)
    url = _url(args)
    if not args.imports and url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        print(f"No history yet at {url} (nothing has been filed; `rig nightly` and `rig history --import` file runs).")
        return 0
    with open_history(url) as history:
        if args.imports:
            return _import(history, args.imports, _import_registry(args), args.allow_unsigned)
        runs = history.runs(filters, limit=args.limit)
        points = history.measurements(filters)
        source = history.describe()
    series = _series(points)
    if args.json:
        print(json.dumps({
            "history": source,
            "runs": [r.__dict__ for r in runs],
            "series": [{"station": k[0], "procedure": k[1], "label": k[2] or None, "measurement": k[3],
                        "unit": v[-1].unit, "low": v[-1].low, "high": v[-1].high,
                        "values": [p.value for p in v], "drift": assess([p.value for p in v], v[-1].low,
                                                                          v[-1].high).__dict__}
                       for k, v in series.items()],
        }, indent=2))
        return 0
    console = Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 160)
    if not runs:
        console.print(f"No runs in the history {for_markup(source)} match.")
        return 0
    if args.measurement:
        _print_points(console, points, args.limit)
    else:
        _print_runs(console, runs, source)
    _print_trends(console, series)
    return 0


def _import(history: Any, bundles: list[str], registry: Any, allow_unsigned: bool) -> int:
    """File each bundle that verifies; one that does not (or conflicts) is named with why, exit 1."""
    added = refused = 0
    for bundle in bundles:
        try:
            filed = history.import_bundle(Path(bundle), registry=registry, allow_unsigned=allow_unsigned)
        except UsageError as exc:
            refused += 1
            print(for_terminal(f"NOT filed: {exc}"))
            continue
        added += filed
        print(for_terminal(f"{'filed' if filed else 'already filed'}: {bundle}"))
    print(for_terminal(f"{added} of {len(bundles)} bundle(s) filed in {history.describe()}"
                       + (f"; {refused} refused" if refused else "")))
    return 1 if refused else 0


def _import_registry(args: argparse.Namespace) -> Any:
    """The key registry that checks the bundles' signatures, loaded as `rig report verify` loads it:
    the station file's registry and pinned administrators (a bundle is only as trusted as its
    signers' enrolment), plus --registry/--admin-key-id. None with --allow-unsigned and none found."""
    from reports.key_registry import ENV_VAR as REGISTRY_ENV
    from reports.key_registry import Registry
    from rig.station.model import station_tsa

    station_file = Path(args.station_file) if args.station_file else default_station_path()
    station = load_station(station_file) if station_file.is_file() else None
    try:
        path = trust.registry_path(args, station)
    except UsageError:
        if args.allow_unsigned:
            return None
        raise UsageError(f"no key registry to check the bundles' signatures: give --registry FILE, set "
                         f"${REGISTRY_ENV}, or --station-file FILE (its key_registry); --allow-unsigned "
                         "files bundles by their file hashes alone") from None
    if args.allow_unsigned and not args.registry and not path.is_file():
        return None
    return Registry.load(path, pinned=trust.pins(args, station), time_stamp_authority=station_tsa(station))


def _print_runs(console: Console, runs: list[Any], source: str) -> None:
    table = Table("started (UTC)", "station", "procedure", "entry", "outcome", "data", "release", "report",
                  title=f"Runs in {source}")
    for r in runs:
        data = "unknown" if r.simulated is None else ("[black on yellow]SIMULATED[/]" if r.simulated else "hardware")
        release = r.release or "unknown"
        table.add_row(for_markup(r.started_utc[:19].replace("T", " ")), for_markup(r.station_id),
                      for_markup(f"{r.procedure_id} {r.procedure_version or ''}"), for_markup(r.suite_label or "—"),
                      f"[{OUTCOME_STYLE.get(r.outcome, 'magenta')}]{for_markup(r.outcome)}[/]", data,
                      for_markup(release) if release == "valid for release" else f"[red]{for_markup(release)}[/]",
                      for_markup(r.report_id or "—"))
    console.print(table)


def _print_points(console: Console, points: list[MeasurementPoint], limit: int) -> None:
    shown = points[-limit:]
    table = Table("started (UTC)", "station", "procedure", "entry", "value", "limits", "outcome", "report",
                  title=f"{for_markup(points[0].name)}: last {len(shown)} of {len(points)} value(s)")
    for p in reversed(shown):
        table.add_row(for_markup(p.started_utc[:19].replace("T", " ")), for_markup(p.station_id), for_markup(p.procedure_id),
                      for_markup(p.suite_label or "—"), for_markup(f"{_fmt(p.value)} {p.unit or ''}"), for_markup(_limits(p.low, p.high)),
                      f"[{OUTCOME_STYLE.get(p.outcome, 'magenta')}]{for_markup(p.outcome)}[/]", for_markup(p.report_id or "—"))
    console.print(table)


def _print_trends(console: Console, series: "OrderedDict[tuple[str, str, str, str], list[MeasurementPoint]]") -> None:
    table = Table("station", "procedure", "entry", "measurement", "n", "latest", "limits", "trend (oldest → newest)",
                  "drift", title="Trends")
    for (station, procedure, label, name), points in series.items():
        values = [p.value for p in points]
        last = points[-1]
        a = assess(values, last.low, last.high)
        verdict = a.status.replace("_", " ") + (f" {a.direction}" if a.direction else "")
        table.add_row(for_markup(station), for_markup(procedure), for_markup(label or "—"), for_markup(name), str(len(points)),
                      for_markup(f"{_fmt(last.value)} {last.unit or ''}"), for_markup(_limits(last.low, last.high)),
                      sparkline(values), f"[{STATUS_STYLE.get(a.status, 'bold')}]{for_markup(verdict)}[/]"
                      + (f"\n[dim]{for_markup(a.message)}[/]" if a.flagged else ""))
    console.print(table)
