"""`rig users`: accounts of the operator panel (`rig serve`): add, list, remove.

Why passwords only from the environment or a hidden prompt: a password on the command line ends
up in shell history and the process list.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from rig.errors import UsageError

PASSWORD_ENV = "RIG_PANEL_PASSWORD"
HELP = "accounts for the operator panel (rig serve): add, list, remove"
DESCRIPTION = f"""\
Panel accounts live in a JSON file (mode 0600) with scrypt password hashes. Roles: operator
(starts runs, answers operator steps, signs as performed_by), reviewer (signs as reviewed_by),
admin (all of that, signs as reviewed_by or approved_by). The password is read from
${PASSWORD_ENV} or asked twice at the terminal; --key names the user's signing key file
(`rig keys new`), whose passphrase is asked in the panel at each signature and never stored.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("users", help=HELP, description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("add", "list", "remove"))
    parser.add_argument("user", nargs="?", help="user name (add, remove)")
    parser.add_argument("--accounts", metavar="FILE", required=True, help="the accounts file")
    parser.add_argument("--role", choices=("operator", "reviewer", "admin"), default=None)
    parser.add_argument("--name", default="", help="printed name (default: the user name)")
    parser.add_argument("--key", metavar="KEYFILE", default="", help="the user's signing key file")
    parser.set_defaults(func=run)


def _password(user: str) -> str:
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise UsageError(f"no password: set {PASSWORD_ENV} or run in a terminal to be prompted")
    first = getpass.getpass(f"password for {user}: ")
    if getpass.getpass("repeat password: ") != first:
        raise UsageError("the two passwords differ")
    return first


def run(args: argparse.Namespace) -> int:
    from rig.service.accounts import Accounts

    path = Path(args.accounts).expanduser().resolve()
    accounts = Accounts.load(path)
    if args.action == "list":
        for a in accounts.users.values():
            print(f"{a.user:16} {a.role:9} {a.name}" + (f"  key {a.key}" if a.key else ""))
        return 0
    if not args.user:
        raise UsageError(f"rig users {args.action}: give the user name")
    if args.action == "remove":
        if accounts.users.pop(args.user, None) is None:
            raise UsageError(f"no user {args.user!r} in {path}")
        accounts.save()
        print(f"removed {args.user} from {path}")
        return 0
    if not args.role:
        raise UsageError("rig users add: give --role operator, reviewer or admin")
    key = str(Path(args.key).expanduser().resolve()) if args.key else ""
    if key and not Path(key).is_file():
        raise UsageError(f"--key {args.key}: no such file")
    account = accounts.add(args.user, args.name, args.role, _password(args.user), key)
    accounts.save()
    print(f"{account.user} ({account.role}) saved in {path}")
    return 0
