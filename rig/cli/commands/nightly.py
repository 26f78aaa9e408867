"""`rig nightly`: run a suite of procedures unattended, sign, verify and file every result.

Why the order below: everything that can be wrong with the request (station file, suite file,
every entry's procedure, parameters and operator answers, the station key and its registry entry,
the calibration policy) is checked before the bench opens, so a nightly that cannot succeed says
so in one message at once (exit 2) instead of after an hour.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rig.engine.runner import check_calibration_policy
from rig.errors import RigError
from rig.fleet.history import URL_ENV, open_history, redact, scrub, station_url
from rig.fleet.nightly import (
    KEY_ENV,
    PASSPHRASE_ENV,
    NightlyRunner,
    load_station_signer,
    new_nightly_id,
    nightly_operator,
)
from rig.fleet.launch import station_audit_log
from rig.fleet.suite import SUITE_ENV, default_suite_path, load_suite
from rig.station.config import STATION_ENV, default_station_path, load_station

HELP = "run the nightly suite unattended (signed bundles, JUnit, HTML summary, history)"
DESCRIPTION = f"""\
Run every procedure of a suite file (TOML: procedures, parameters, operator answers, a wall-clock
budget) one after the other on the station's bench, with no prompts and plain timestamped log
lines. The bench is put in its safe state (read back) after every procedure; a failing or erroring
procedure does not stop the others; when the budget is spent the running procedure is aborted and
the rest are recorded as not run (ERROR). It holds the station lock throughout (another
controller is refused, exit 2). A hang-up (the terminal closed) does not stop it: it goes on,
logging to nightly.log; SIGTERM/SIGINT abort it.

Each run's report bundle is signed by the station key as generated_by and verified; every run and
measurement is filed in the history database ([history] url in the station file, default
sqlite:///<runs_dir>/history.sqlite3; ${URL_ENV} overrides).

Writes into --out (default <runs_dir>/nightly/<nightly id>): runs/<run id>/ (record, raw data,
report/ bundle), junit.xml (every entry), summary.html (one page, trend plots, works offline),
summary.json and nightly.log.

The station key: ${KEY_ENV} = key file (or --key), ${PASSPHRASE_ENV} = its passphrase; the registry
is --registry, else $RIG_KEY_REGISTRY, else the station file's key_registry; its administrator must be
pinned in the station file ([signing] admin_keys). Without a key the nightly refuses
to start, unless --unsigned (then bundles verify only for integrity).
"""
EPILOG = f"""\
exit codes:
  0  every procedure PASSED
  1  at least one FAILED (and none erred)
  2  usage or configuration error: bad station/suite file, missing operator answer, no key, an
     unwritable --out, or the station is held by another controller (named) (nothing ran)
  3  at least one ERROR, ABORTED or not run, or a bundle/signature/history problem

The station file is --station, else ${STATION_ENV}, else ./rig.toml; the suite is --suite, else
${SUITE_ENV}, else ./suites/nightly.toml (else the suite shipped with the rig).
examples:
  RIG_STATION_KEY=/etc/rig/station-01.key RIG_KEY_PASSPHRASE=... rig nightly --out nightly-out
  rig nightly --station /etc/rig/rig.toml --suite suites/nightly.toml --unsigned
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("nightly", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--station", metavar="FILE", default=None,
                        help=f"station file (default: ${STATION_ENV} if set, else ./rig.toml)")
    parser.add_argument("--suite", metavar="FILE", default=None,
                        help=f"suite file (default: ${SUITE_ENV}, else ./suites/nightly.toml)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output directory (default: <runs_dir>/nightly/<nightly id>)")
    parser.add_argument("--key", metavar="KEYFILE", default=None,
                        help=f"station key file (default: ${KEY_ENV})")
    parser.add_argument("--registry", metavar="FILE", default=None, help="key registry")
    parser.add_argument("--unsigned", action="store_true",
                        help="run without a station key; bundles are not signed (the summary says so)")
    parser.add_argument("--history", metavar="URL", default=None,
                        help=f"history database URL (default: ${URL_ENV}, else the station's [history] url)")
    parser.add_argument("--via", metavar="URL", default=None,
                        help="submit the suite to a bench service (`rig serve`) at URL and follow its log "
                             "here; the service's station key signs ($RIG_STATION_KEY on the service)")
    parser.add_argument("--user", metavar="NAME", default=None,
                        help="with --via: account on the service (password from $RIG_PANEL_PASSWORD)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.via:
        from rig.service.client import nightly_via

        return nightly_via(args)
    station = load_station(args.station or default_station_path())
    suite = load_suite(args.suite or default_suite_path())
    check_calibration_policy(station)
    signer = None if args.unsigned else load_station_signer(args.key, args.registry, station=station)
    suite = nightly_operator(suite, station, signer)
    url = station_url(station, args.history)
    nightly_id = new_nightly_id(suite.name)
    out_dir = Path(args.out).expanduser().resolve() if args.out else station.runs_dir / "nightly" / nightly_id
    history, history_error = None, None
    try:
        history = open_history(url)
    except RigError as exc:
        # The bundles are the authoritative record; `rig history --import` can file them later.
        history_error = f"{redact(url)}: {scrub(str(exc), url)}"
    try:
        result = NightlyRunner(station=station, suite=suite, out_dir=out_dir, signer=signer, history=history,
                               nightly_id=nightly_id, history_error=history_error).run()
    finally:
        if history is not None:
            history.close()
    from rig.cli.commands.audit import mirror_after_write

    note = mirror_after_write(args, station_audit_log(station))  # the station keeps a copy of its trail
    if note:
        print(note, file=sys.stderr)
    return result.exit_code
