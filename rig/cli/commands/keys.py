"""`rig keys new|list|revoke`: signing keys and the key registry.

Why: a signature only counts if the registry says whose key it is, for which roles and when; the
people who administer keys need the same clear commands as the people who sign.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re
from pathlib import Path
from typing import Any

from rich.console import Console
from rig.textsafe import for_markup, for_terminal, name_problem
from rich.table import Table

from reports import audit
from reports.dsse import b64
from reports.keys import generate_key_file, public_raw
from reports.registry import (
    KeyEntry,
    Registry,
    default_registry_path,
    format_utc,
    parse_roles,
    parse_utc,
)
from rig.cli.commands.report import PASSPHRASE_ENV, read_passphrase
from rig.errors import UsageError

SIGNER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_KEY_DIR = Path.home() / ".rig" / "keys"


def _registry_path(args: argparse.Namespace) -> Path:
    return Path(args.registry) if args.registry else default_registry_path()


def _log(args: argparse.Namespace, registry: Registry, kind: str, **data: Any) -> None:
    audit.append_event(audit.resolve_log_path(args.audit_log, near=registry.path.parent), kind, **data)


def cmd_new(args: argparse.Namespace) -> int:
    if not SIGNER_ID.match(args.id):
        raise UsageError(f"--id {args.id!r}: use 1-64 letters, digits, '.', '_' or '-' (e.g. jdoe, station-01)")
    problem = name_problem(args.name, "--name (the signer's printed name, shown with every signature)")
    if problem:
        raise UsageError(problem)
    if args.valid_days <= 0:
        raise UsageError(f"--valid-days {args.valid_days}: must be a positive number of days")
    roles = parse_roles(args.roles)
    registry = Registry.load(_registry_path(args), create=True)
    out = Path(args.out).expanduser() if args.out else DEFAULT_KEY_DIR
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path = out / f"{args.id}.key"
    if key_path.exists():
        raise UsageError(f"key file {key_path} already exists; refusing to overwrite a key")
    passphrase = read_passphrase(args.passphrase_env, f"new passphrase for {args.id}: ", confirm=True)
    now = _dt.datetime.now(_dt.timezone.utc)
    key = generate_key_file(key_path, signer_id=args.id, printed_name=args.name.strip(), passphrase=passphrase)
    try:
        registry.add(KeyEntry(key_id=key.key_id, signer_id=args.id, printed_name=key.printed_name,
                              public_key=b64(public_raw(key.public_key)), roles=roles, valid_from=format_utc(now),
                              valid_until=format_utc(now + _dt.timedelta(days=args.valid_days)), added_at=format_utc(now)))
        registry.save()
    except BaseException:
        key_path.unlink(missing_ok=True)  # a key the registry does not know is useless
        raise
    _log(args, registry, "key_created", key_id=key.key_id, signer_id=args.id, printed_name=key.printed_name, roles=roles)
    print(f"key {key.key_id} for {key.printed_name} ({args.id}), roles {', '.join(roles)}")
    print(f"  private key: {key_path} (mode 0600, keep it and its passphrase secret)")
    print(f"  registry:    {registry.path}")
    return 0


def _status(entry: KeyEntry, now: _dt.datetime) -> str:
    if entry.revoked_at:
        kind = "COMPROMISED" if entry.compromised else "revoked"
        return f"[red]{kind} {for_markup(entry.revoked_at)}: {for_markup(str(entry.revocation_reason))}[/]"
    problem = entry.problem_at(now)
    return f"[dark_orange]{for_markup(problem)}[/]" if problem else "[green]active[/]"


def cmd_list(args: argparse.Namespace) -> int:
    registry = Registry.load(_registry_path(args))
    now = _dt.datetime.now(_dt.timezone.utc)
    table = Table("signer", "printed name", "key id", "roles", "valid from", "valid until", "status",
                  title=f"Key registry {registry.path}")
    for e in sorted(registry.keys, key=lambda k: (k.signer_id, k.valid_from)):
        table.add_row(for_markup(e.signer_id), for_markup(e.printed_name), for_markup(e.key_id), for_markup(", ".join(e.roles)),
                      for_markup(e.valid_from[:19]), for_markup((e.valid_until or "—")[:19]), _status(e, now))
    Console(highlight=False).print(table if registry.keys else f"No keys in {registry.path}.")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    registry = Registry.load(_registry_path(args))
    at = args.at or format_utc(_dt.datetime.now(_dt.timezone.utc))
    try:
        parse_utc(at, "--at")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    revoked = registry.revoke(args.id, reason=args.reason, at=at, compromised=args.compromised)
    registry.save()
    for key in revoked:
        _log(args, registry, "key_revoked", key_id=key.key_id, signer_id=key.signer_id, reason=args.reason,
             revoked_at=at, compromised=args.compromised)
        print(for_terminal(f"revoked {key.key_id} ({key.signer_id}) at {at}: {args.reason}")
              + (" — compromised: all its signatures are now invalid" if args.compromised else ""))
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "keys", help="create, list and revoke signing keys", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Ed25519 signing keys (private key encrypted with scrypt + AES-256-GCM, mode 0600) and the "
                    "registry of public keys that decides whose signature counts.",
        epilog="The registry is --registry, else $RIG_KEY_REGISTRY, else ./keys/registry.json.\n"
               "examples:\n  rig keys new --id jdoe --name \"Jane Doe\" --roles performed_by,reviewed_by\n"
               "  rig keys new --id station-01 --name \"Station SIM-BENCH-01\" --roles generated_by --out /etc/rig\n"
               "  rig keys revoke jdoe --reason \"left the lab\"")
    verbs = parser.add_subparsers(dest="keys_command", metavar="VERB", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--registry", metavar="FILE")
    common.add_argument("--audit-log", metavar="FILE")

    new = verbs.add_parser("new", parents=[common], help="create a key pair and register its public key")
    new.add_argument("--id", required=True, help="signer id (person or station), e.g. jdoe")
    new.add_argument("--name", required=True, help="printed name shown with signatures")
    new.add_argument("--roles", required=True, help="comma list of generated_by, performed_by, reviewed_by, approved_by")
    new.add_argument("--out", metavar="DIR", help=f"where the private key goes (default {DEFAULT_KEY_DIR})")
    new.add_argument("--valid-days", type=int, default=730, metavar="N", help="validity from now (default 730)")
    new.add_argument("--passphrase-env", default=PASSPHRASE_ENV, metavar="VAR",
                     help=f"take the passphrase from this environment variable (default {PASSPHRASE_ENV}); prompted otherwise")
    new.set_defaults(func=cmd_new)

    lst = verbs.add_parser("list", parents=[common], help="show the registry")
    lst.set_defaults(func=cmd_list)

    revoke = verbs.add_parser("revoke", parents=[common], help="revoke a key (by key id) or all keys of a signer")
    revoke.add_argument("id", metavar="ID", help="key id (ed25519:…) or signer id")
    revoke.add_argument("--reason", required=True)
    revoke.add_argument("--compromised", action="store_true",
                        help="the private key leaked: invalidate every signature it ever made")
    revoke.add_argument("--at", metavar="UTC", help="revocation time (default now), e.g. 2026-01-10T09:00:00Z")
    revoke.set_defaults(func=cmd_revoke)
