"""`rig serve`: the bench service with the operator panel (see rig/service).

Why refuse a non-loopback bind without accounts: anything on a network must be authenticated and
authorised; on 127.0.0.1 the login name is the user, as for `rig run` at the same computer.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rig.cli import trust
from rig.errors import UsageError
from rig.station.config import STATION_ENV, default_station_path, load_station

HELP = "serve the bench: job queue, JSON API, live event stream and the operator panel"
DESCRIPTION = f"""\
One long-running process per station. It holds the station (a second `rig serve` is refused), runs
procedures submitted from the panel, `rig run --via URL` or `rig nightly --via URL` one at a time
— exactly as `rig run` runs them: same engine, record, report and safe-state guarantees — and keeps
running when a browser or terminal goes away. Open the printed URL in a browser.

Binds 127.0.0.1 by default (no accounts needed: you are your login name). Any other address needs
accounts (`rig users add`, file from --accounts or the station file's [service] accounts); TLS is
used when the station file's [service] names tls_certificate and tls_key.
"""
EPILOG = f"""\
exit codes:
  0  stopped by SIGINT/SIGTERM (a running procedure was aborted to its safe state)
  2  usage or station-file error, no accounts for a network bind, or the station is already held

The station file is --station, else ${STATION_ENV}, else ./rig.toml.
examples:
  rig serve                                   # http://127.0.0.1:8714/
  rig serve --host 0.0.0.0 --accounts /etc/rig/accounts.json
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("serve", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--station", metavar="FILE", default=None,
                        help=f"station file (default: ${STATION_ENV} if set, else ./rig.toml)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None,
                        help="TCP port (default: the station's [service] port, else 8714)")
    parser.add_argument("--accounts", metavar="FILE", default=None,
                        help="accounts file (default: the station's [service] accounts)")
    parser.add_argument("--registry", metavar="FILE", default=None,
                        help="key registry for signing and verifying (default: $RIG_KEY_REGISTRY, else the "
                             "station file's key_registry; its [signing] admin_keys are the pinned administrators)")
    parser.add_argument("--no-check", action="store_true",
                        help="do not open the instruments at start to show their identities")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rig.service.accounts import Accounts
    from rig.service.server import serve
    from rig.service.state import Service, is_loopback

    station = load_station(args.station or default_station_path())
    settings = station.sections.get("service", {})
    accounts_path = Path(args.accounts).expanduser().resolve() if args.accounts else settings.get("accounts")
    accounts = Accounts.load(accounts_path)
    if accounts_path is not None and not accounts:
        raise UsageError(f"accounts file {accounts_path} has no users; add one with "
                         f"`rig users add NAME --role admin --accounts {accounts_path}`")
    if not is_loopback(args.host) and not accounts:
        raise UsageError(f"--host {args.host} is reachable from the network: give an accounts file "
                         "(--accounts or [service] accounts in the station file; `rig users add`) — "
                         "the panel never serves a network without authentication")
    port = args.port or settings.get("port", 8714)
    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port}: allowed 1..65535")
    cert, key = settings.get("tls_certificate"), settings.get("tls_key")
    for what, path in (("tls_certificate", cert), ("tls_key", key)):
        if path is not None and not Path(path).is_file():
            raise UsageError(f"service.{what}: no file {path}")
    service = Service(station, accounts, host=args.host, port=port, tls=cert is not None,
                      registry_path=trust.registry_path(args, station).expanduser().resolve())
    return serve(service, tls_cert=cert, tls_key=key, check_at_start=not args.no_check)
