"""`rig keys new|list|revoke`: signing keys and the key registry.

Why: a signature only counts if the registry says whose key it is, for which roles and when; the
people who administer keys need the same clear commands as the people who sign.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cryptography.exceptions import InvalidSignature

from reports import audit
from reports.canonical import canonical_json, load_json_bytes
from reports.dsse import b64, unb64
from reports.keys import generate_key_file, key_id_of, load_key_file, public_key_from_b64, public_raw
from reports.key_registry import (
    AdminEntry,
    KeyEntry,
    Registry,
    format_utc,
    parse_roles,
    parse_utc,
)
from rig.cli.commands.report import PASSPHRASE_ENV, read_passphrase
from rig.cli.trust import add_options, audit_path, load_registry
from rig.errors import UsageError
from rig.textsafe import for_markup, for_terminal, name_problem

SIGNER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_KEY_DIR = Path.home() / ".rig" / "keys"


REQUEST_FORMAT = "rig-enrolment-request/1"
ADMIN_PASSPHRASE_ENV = "RIG_ADMIN_PASSPHRASE"


def _log(args: argparse.Namespace, registry: Registry, kind: str, **data: Any) -> None:
    """A registry event into the station's audit trail, copied to its mirror when the station keeps one."""
    from rig.cli.commands.audit import mirror_after_write

    path = audit_path(args, near=registry.path.parent)
    audit.append_event(path, kind, registry=str(registry.path.resolve()), **data)
    note = mirror_after_write(args, path)
    if note:
        print(note, file=sys.stderr)


def _now() -> str:
    return format_utc(_dt.datetime.now(_dt.timezone.utc))


def _check_identity(args: argparse.Namespace) -> list[str]:
    if not SIGNER_ID.match(args.id):
        raise UsageError(f"--id {args.id!r}: use 1-64 letters, digits, '.', '_' or '-' (e.g. jdoe, station-01)")
    problem = name_problem(args.name, "--name (the signer's printed name, shown with every signature)")
    if problem:
        raise UsageError(problem)
    return parse_roles(args.roles) if getattr(args, "roles", None) is not None else []


def _new_key_file(args: argparse.Namespace, prompt: str) -> Any:
    out = Path(args.out).expanduser() if args.out else DEFAULT_KEY_DIR
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path = out / f"{args.id}.key"
    if key_path.exists():
        raise UsageError(f"key file {key_path} already exists; refusing to overwrite a key")
    passphrase = read_passphrase(args.passphrase_env, prompt, confirm=True)
    return generate_key_file(key_path, signer_id=args.id, printed_name=args.name.strip(), passphrase=passphrase), key_path


def _admin_key(args: argparse.Namespace, registry: Registry) -> Any:
    if not args.admin_key:
        raise UsageError("this change needs an administrator: give --admin-key FILE (the key made by "
                         "`rig keys init-admin` whose id the station file pins)")
    passphrase = read_passphrase(args.admin_passphrase_env, f"passphrase for administrator key {args.admin_key}: ")
    key = load_key_file(Path(args.admin_key), passphrase)
    if registry.admin(key.key_id) is None:
        raise UsageError(f"{args.admin_key} ({key.key_id}) is not an administrator of {registry.path}")
    if not registry.pinned:
        raise UsageError(f"no administrator key is pinned for {registry.path}: add [signing] admin_keys = "
                         f"[\"{key.key_id}\"] to the station file (or give --admin-key-id)")
    return key


def cmd_init_admin(args: argparse.Namespace) -> int:
    _check_identity(args)
    registry = load_registry(args, create=True)
    assert registry is not None
    if registry.admins or registry.keys:
        raise UsageError(f"the key registry {registry.path} already exists; an administrator is added by "
                         "an existing administrator, not by starting over")
    key, key_path = _new_key_file(args, f"new passphrase for administrator {args.id}: ")
    at = _now()
    registry.add_admin(AdminEntry(key.key_id, args.id, key.printed_name, b64(public_raw(key.public_key)), at))
    registry.sign_document(key, at)
    registry.save()
    _log(args, registry, "registry_created", admin_key_id=key.key_id, admin_id=args.id, printed_name=key.printed_name)
    print(for_terminal(f"administrator key {key.key_id} for {key.printed_name} ({args.id})"))
    print(f"  private key: {key_path} (mode 0600, keep it and its passphrase secret; it approves every signer)")
    print(f"  registry:    {registry.path}")
    print(f"  pin it in the station file:\n    [signing]\n    admin_keys = [\"{key.key_id}\"]")
    return 0


def _request(args: argparse.Namespace, key: Any, roles: list[str]) -> dict[str, Any]:
    body = {"format": REQUEST_FORMAT, "signer_id": args.id, "printed_name": key.printed_name, "roles": roles,
            "public_key": b64(public_raw(key.public_key)), "key_id": key.key_id, "valid_days": args.valid_days,
            "requested_at": _now()}
    return {**body, "proof": b64(key.private_key.sign(canonical_json(body)))}


def _enrol(registry: Registry, request: dict[str, Any], admin: Any) -> KeyEntry:
    now = _dt.datetime.now(_dt.timezone.utc)
    entry = KeyEntry(key_id=request["key_id"], signer_id=request["signer_id"], printed_name=request["printed_name"],
                     public_key=request["public_key"], roles=list(request["roles"]), valid_from=format_utc(now),
                     valid_until=format_utc(now + _dt.timedelta(days=int(request["valid_days"]))),
                     added_at=format_utc(now))
    registry.add(entry)
    registry.endorse(entry, admin, entry.added_at)
    registry.sign_document(admin, entry.added_at)
    registry.save()
    return entry


def cmd_new(args: argparse.Namespace) -> int:
    roles = _check_identity(args)
    if args.valid_days <= 0:
        raise UsageError(f"--valid-days {args.valid_days}: must be a positive number of days")
    registry = load_registry(args)
    assert registry is not None
    if registry.find_signer_name(args.name.strip(), args.id):
        raise UsageError(f"printed name {args.name.strip()!r} is already registered to another signer")
    admin = _admin_key(args, registry) if args.admin_key else None
    key, key_path = _new_key_file(args, f"new passphrase for {args.id}: ")
    request = _request(args, key, roles)
    if admin is None:
        request_path = key_path.with_name(f"{args.id}.request.json")
        request_path.write_bytes(canonical_json(request) + b"\n")
        _log(args, registry, "enrolment_requested", key_id=key.key_id, signer_id=args.id,
             printed_name=key.printed_name, roles=roles)
        print(for_terminal(f"key {key.key_id} for {key.printed_name} ({args.id}): NOT yet enrolled"))
        print(f"  private key: {key_path} (mode 0600, keep it and its passphrase secret)")
        print(f"  enrolment request: {request_path}")
        print(f"  an administrator enrols it: rig keys approve {request_path} --admin-key ADMIN.key")
        return 0
    try:
        entry = _enrol(registry, request, admin)
    except BaseException:
        key_path.unlink(missing_ok=True)  # a key the registry does not know is useless
        raise
    _log(args, registry, "key_enrolled", key_id=key.key_id, signer_id=args.id, printed_name=key.printed_name,
         roles=roles, approved_by=admin.key_id)
    print(for_terminal(f"key {key.key_id} for {key.printed_name} ({args.id}), roles {', '.join(entry.roles)}, "
                       f"enrolled by administrator {admin.signer_id}"))
    print(f"  private key: {key_path} (mode 0600, keep it and its passphrase secret)")
    print(f"  registry:    {registry.path}")
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    registry = load_registry(args)
    assert registry is not None
    path = Path(args.request)
    try:
        request = load_json_bytes(path.read_bytes().strip(), f"enrolment request {path}")
    except (OSError, ValueError) as exc:
        raise UsageError(f"enrolment request {path} cannot be read: {exc}") from None
    fields = ("format", "signer_id", "printed_name", "roles", "public_key", "key_id", "valid_days", "requested_at")
    if not isinstance(request, dict) or request.get("format") != REQUEST_FORMAT or set(request) != {*fields, "proof"}:
        raise UsageError(f"{path} is not an enrolment request ({REQUEST_FORMAT}) from `rig keys new`")
    body = {k: request[k] for k in fields}
    try:
        public = public_key_from_b64(request["public_key"])
        public.verify(unb64(request["proof"], "proof"), canonical_json(body))
        if key_id_of(public) != request["key_id"]:
            raise ValueError("key id does not match the public key")
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise UsageError(f"enrolment request {path} is not signed by the key it enrols (edited?): {exc}") from None
    roles = parse_roles(",".join(request["roles"])) if isinstance(request["roles"], list) else parse_roles("")
    admin = _admin_key(args, registry)
    entry = _enrol(registry, {**body, "roles": roles}, admin)
    _log(args, registry, "key_enrolled", key_id=entry.key_id, signer_id=entry.signer_id,
         printed_name=entry.printed_name, roles=entry.roles, approved_by=admin.key_id)
    print(for_terminal(f"enrolled {entry.key_id} for {entry.printed_name} ({entry.signer_id}), roles "
                       f"{', '.join(entry.roles)}, approved by {admin.printed_name} ({admin.signer_id})"))
    return 0


def _status(registry: Registry, entry: KeyEntry, now: _dt.datetime) -> str:
    trust = registry.entry_problem(entry) if registry.pinned else "no pinned administrator"
    if trust:
        return "[red]NOT TRUSTED (see below)[/]"
    if entry.revoked_at:
        kind = "COMPROMISED" if entry.compromised else "revoked"
        return f"[red]{kind} {for_markup(entry.revoked_at)}: {for_markup(str(entry.revocation_reason))}[/]"
    problem = entry.problem_at(now)
    return f"[dark_orange]{for_markup(problem)}[/]" if problem else "[green]active[/]"


def cmd_list(args: argparse.Namespace) -> int:
    registry = load_registry(args)
    assert registry is not None
    now = _dt.datetime.now(_dt.timezone.utc)
    table = Table("signer", "printed name", "key id", "roles", "valid from", "valid until", "status",
                  title=f"Key registry {registry.path}")
    for e in sorted(registry.keys, key=lambda k: (k.signer_id, k.valid_from)):
        table.add_row(for_markup(e.signer_id), for_markup(e.printed_name), for_markup(e.key_id), for_markup(", ".join(e.roles)),
                      for_markup(e.valid_from[:19]), for_markup((e.valid_until or "—")[:19]), _status(registry, e, now))
    console = Console(highlight=False)
    for admin in registry.admins:
        pinned = "pinned by the station" if admin.key_id in registry.pinned else "[red]NOT pinned[/]"
        console.print(f"administrator {for_markup(admin.printed_name)} ({for_markup(admin.admin_id)}) "
                      f"{for_markup(admin.key_id)}: {pinned}")
    for problem in registry.trust_problems():
        console.print(f"[bold red]registry not trusted:[/] {for_markup(problem)}", soft_wrap=True)
    console.print(table if registry.keys else f"No keys in {registry.path}.")
    for e in registry.keys:
        trust = registry.entry_problem(e) if registry.pinned else None
        if trust:
            console.print(f"[bold red]not trusted:[/] {for_markup(trust)}", soft_wrap=True)
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    registry = load_registry(args)
    assert registry is not None
    registry.admin_signer = _admin_key(args, registry)
    at = args.at or format_utc(_dt.datetime.now(_dt.timezone.utc))
    try:
        parse_utc(at, "--at")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    revoked = registry.revoke(args.id, reason=args.reason, at=at, compromised=args.compromised)
    registry.save()
    for key in revoked:
        _log(args, registry, "key_revoked", key_id=key.key_id, signer_id=key.signer_id, reason=args.reason,
             revoked_at=at, compromised=args.compromised, approved_by=registry.admin_signer.key_id)
        print(for_terminal(f"revoked {key.key_id} ({key.signer_id}) at {at}: {args.reason}")
              + (" — compromised: all its signatures are now invalid" if args.compromised else ""))
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "keys", help="administer the key registry: administrator, enrolment, approval, revocation",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Ed25519 signing keys (private key encrypted with scrypt + AES-256-GCM, mode 0600) and the "
                    "registry of public keys that decides whose signature counts. Every registry entry is signed "
                    "by an administrator whose key id the station file pins ([signing] admin_keys): without "
                    "an administrator, `rig keys new` only writes an enrolment request.",
        epilog="The registry is --registry, else $RIG_KEY_REGISTRY, else the station file's key_registry;\n"
               "registry changes go to the station's audit trail (audit_log).\n"
               "examples:\n  rig keys init-admin --id qa-admin --name \"Q. Admin\"   # then pin the printed id\n"
               "  rig keys new --id jdoe --name \"Jane Doe\" --roles performed_by   # writes jdoe.request.json\n"
               "  rig keys approve ~/.rig/keys/jdoe.request.json --admin-key ~/.rig/keys/qa-admin.key\n"
               "  rig keys revoke jdoe --reason \"left the lab\" --admin-key ~/.rig/keys/qa-admin.key")
    verbs = parser.add_subparsers(dest="keys_command", metavar="VERB", required=True)
    common = argparse.ArgumentParser(add_help=False)
    add_options(common)
    admin = argparse.ArgumentParser(add_help=False)
    admin.add_argument("--admin-key", metavar="FILE", help="administrator key file (enrols, revokes)")
    admin.add_argument("--admin-passphrase-env", default=ADMIN_PASSPHRASE_ENV, metavar="VAR",
                       help=f"environment variable holding the administrator passphrase (default {ADMIN_PASSPHRASE_ENV}); "
                            "prompted otherwise")

    init = verbs.add_parser("init-admin", parents=[common],
                            help="start a key registry with its administrator key (pin its id in the station file)")
    init.add_argument("--id", required=True, help="administrator id, e.g. qa-admin")
    init.add_argument("--name", required=True, help="administrator's printed name")
    init.add_argument("--out", metavar="DIR", help=f"where the private key goes (default {DEFAULT_KEY_DIR})")
    init.add_argument("--passphrase-env", default=ADMIN_PASSPHRASE_ENV, metavar="VAR",
                      help=f"environment variable holding the new passphrase (default {ADMIN_PASSPHRASE_ENV})")
    init.set_defaults(func=cmd_init_admin)

    new = verbs.add_parser("new", parents=[common, admin],
                           help="create a key pair and an enrolment request (enrolled at once with --admin-key)")
    new.add_argument("--id", required=True, help="signer id (person or station), e.g. jdoe")
    new.add_argument("--name", required=True, help="printed name shown with signatures")
    new.add_argument("--roles", required=True, help="comma list of generated_by, performed_by, reviewed_by, approved_by")
    new.add_argument("--out", metavar="DIR", help=f"where the private key goes (default {DEFAULT_KEY_DIR})")
    new.add_argument("--valid-days", type=int, default=730, metavar="N", help="validity from now (default 730)")
    new.add_argument("--passphrase-env", default=PASSPHRASE_ENV, metavar="VAR",
                     help=f"take the passphrase from this environment variable (default {PASSPHRASE_ENV}); prompted otherwise")
    new.set_defaults(func=cmd_new)

    approve = verbs.add_parser("approve", parents=[common, admin],
                               help="administrator: enrol the key of an enrolment request")
    approve.add_argument("request", metavar="REQUEST", help="the .request.json written by `rig keys new`")
    approve.set_defaults(func=cmd_approve)

    lst = verbs.add_parser("list", parents=[common], help="show the registry")
    lst.set_defaults(func=cmd_list)

    revoke = verbs.add_parser("revoke", parents=[common, admin],
                              help="administrator: revoke a key (by key id) or all keys of a signer")
    revoke.add_argument("id", metavar="ID", help="key id (ed25519:…) or signer id")
    revoke.add_argument("--reason", required=True)
    revoke.add_argument("--compromised", action="store_true",
                        help="the private key leaked: invalidate every signature it ever made")
    revoke.add_argument("--at", metavar="UTC", help="revocation time (default now), e.g. 2026-01-10T09:00:00Z")
    revoke.set_defaults(func=cmd_revoke)
