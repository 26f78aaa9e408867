"""`rig report build|sign|verify|show`: report bundles and their electronic signatures.

Why one command group: a bundle's life is build -> sign (performer, reviewer, approver) -> verify
(any time later, by anyone with the key registry); the four verbs share the bundle, the registry
and the audit log options.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rig.textsafe import for_markup, for_terminal
from rich.table import Table

from reports import audit
from reports.bundle import build_bundle, load_manifest, require_bundle_dir
from reports.canonical import load_json_bytes
from reports.formatting import limits_text, uncertainty_text, value_text
from reports.keys import load_key_file
from reports.key_registry import ENV_VAR as REGISTRY_ENV
from reports.key_registry import ROLES
from reports.signing import sign_bundle
from reports.verify import BundleCheck, verify_bundle
from rig import secret_env
from rig.cli.trust import add_options, audit_path, load_registry
from rig.errors import RigError, UsageError

PASSPHRASE_ENV = "RIG_KEY_PASSPHRASE"
VERDICT_STYLE = {"PASS": "bold green", "FAIL": "bold red", "INCOMPLETE": "bold dark_orange", "ABORTED": "bold magenta",
                 "ERROR": "bold magenta"}
DESCRIPTION = """\
A report bundle is a directory: results.json (authoritative), report.html (self-contained, with
plots), junit.xml, record.jsonl, raw/, manifest.json (sha256 of every file) and signatures/
(DSSE envelopes, Ed25519). `rig run` builds one at the end of every run.

report.html carries a signatures block that `rig report sign` rewrites; the manifest hashes the page
without that block and `rig report verify` checks the block against signatures/, so every byte of
every file is still covered.
"""
EPILOG = f"""\
exit codes (verify): 0 valid, 1 invalid (reasons listed; with --require-hardware also simulated data),
  2 usage error.
exit codes (show): 0 bundle intact, every signature valid, verdict PASS and valid for release;
  1 verdict not PASS; 4 PASS but NOT VALID FOR RELEASE (a validity condition: calibration, identity,
  lab environment out of limits or unstable, torn record); 5 bundle or a signature invalid (takes precedence); 2 usage error. Simulated data is
  marked SIMULATED and never valid for release, but alone does not change the exit code.
The key registry is --registry, else ${REGISTRY_ENV}, else the station file's key_registry; its
entries count only when signed by an administrator the station file pins ([signing] admin_keys,
or --admin-key-id). The station file is --station, else $RIG_STATION, else ./rig.toml.
The audit trail is --audit-log, else $RIG_AUDIT_LOG, else the station file's audit_log (for a
build: the station that made the run).
When the station names a time-stamp authority ([signing] tsa_url and tsa_certificate), sign asks it
for an RFC 3161 token over each signature (signatures/NN-role.tst) and refuses to sign without one;
verify checks the token against that certificate (or --tsa-certificate) and judges the signing
time by the token's genTime. Without a TSA the signing time is the signer's own claim.
examples:
  rig report build runs/20260110T090000Z-flow_accuracy
  rig report sign runs/…/report --role performed_by --key ~/.rig/keys/jdoe.key
  rig report verify runs/…/report --registry keys/registry.json
  rig report show runs/…/report
"""


def read_passphrase(env_name: str, prompt: str, *, confirm: bool = False) -> str:
    """From the named environment variable (station keys, CI; scrubbed from the environment once
    read, see rig.secret_env) or a terminal prompt."""
    taken = secret_env.take(env_name)
    if taken:
        return taken
    if not sys.stdin.isatty():
        raise UsageError(f"no passphrase: set {env_name} or run in a terminal to be prompted")
    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("repeat passphrase: ") != first:
        raise UsageError("the two passphrases differ")
    return first


def _run_station_audit(run: Path) -> Path | None:
    """The audit trail of the station that made this run (its station file, as recorded), if that
    file is still there: a report build belongs in the same trail as the run."""
    from rig.record import read_record
    from rig.station.config import load_station

    try:
        snapshot = read_record(run).started.get("station") or {}
        station_file = (snapshot.get("station") or {}).get("path")
        return Path(load_station(Path(station_file)).audit_log) if station_file else None
    except Exception:  # noqa: BLE001 - no station file any more: fall back to the runs directory
        return None


def cmd_build(args: argparse.Namespace) -> int:
    try:
        explicit = args.audit_log or os.environ.get(audit.ENV_VAR)
        bundle = build_bundle(Path(args.run), Path(args.out) if args.out else None, supersedes=args.supersedes,
                              audit_log=Path(explicit) if explicit else _run_station_audit(Path(args.run)))
    except OSError as exc:  # disk full, permission denied: the partial bundle is already removed
        raise RigError(f"report bundle not built: {exc}") from exc
    manifest, _ = load_manifest(bundle)
    print(for_terminal(f"report {manifest['report_id']} ({manifest['verdict']}) written to {bundle}"))
    return 0


def time_stamp_authority(args: argparse.Namespace) -> Any:
    """--tsa-certificate (verify, show); None = the station's TSA (set on the registry by
    rig.cli.trust.load_registry), or none at all (signing times are then the signer's claim)."""
    from reports.timestamp import TimeStampAuthority, certificate_problem, load_certificate

    explicit = getattr(args, "tsa_certificate", None)
    if not explicit:
        return None
    try:
        cert = load_certificate(explicit)
    except OSError as exc:
        raise UsageError(f"--tsa-certificate {explicit}: cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise UsageError(f"--tsa-certificate {exc}") from None
    problem = certificate_problem(cert)
    if problem:
        raise UsageError(f"--tsa-certificate {explicit} {problem}")
    return TimeStampAuthority(cert)


def cmd_sign(args: argparse.Namespace) -> int:
    bundle = require_bundle_dir(Path(args.bundle))
    registry = load_registry(args, required=True)
    assert registry is not None
    passphrase = read_passphrase(args.passphrase_env, f"passphrase for {args.key}: ")
    key = load_key_file(Path(args.key), passphrase)
    try:
        path = sign_bundle(bundle, key, args.role, registry, meaning=args.meaning,
                           audit_log=audit_path(args, near=registry.path.parent))
    except OSError as exc:  # disk full, read-only bundle: one line, not a traceback
        raise RigError(f"signature not written: {exc}") from exc
    print(for_terminal(f"signed as {args.role} by {key.printed_name} ({key.signer_id}): {path}"))
    from rig.cli.commands.audit import mirror_after_write

    note = mirror_after_write(args, audit_path(args, near=registry.path.parent))
    if note:
        print(note, file=sys.stderr)
    return 0


SIGNATURE_STYLE = {"valid": "green", "invalid": "red"}
SHOW_EXIT = {"pass": 0, "not_pass": 1, "not_valid_for_release": 4, "invalid": 5}


def release_line(simulated: bool, conditions: list[str]) -> str:
    """SIMULATED and NOT VALID FOR RELEASE, as rich markup (empty when neither applies)."""
    parts = []
    if simulated:
        parts.append("[bold black on yellow] SIMULATED [/] data from the simulated bench / virtual clock")
    if conditions:
        parts.append(f"[bold white on red] NOT VALID FOR RELEASE [/] {for_markup('; '.join(conditions))}")
    return "\n".join(parts)


def check_json(check: BundleCheck) -> dict[str, Any]:
    """What `rig report verify --json` prints."""
    return {
        "valid": check.ok, "report_id": check.report_id, "run_id": check.run_id, "verdict": check.verdict,
        "simulated": check.simulated, "conditions": check.conditions,
        "signatures": [{"file": s.file, "sequence": s.sequence, "role": s.role,
                        "signer_id": s.statement.get("signer_id"), "printed_name": s.statement.get("printed_name"),
                        "signed_at": s.statement.get("signed_at"), "time_stamped_at": s.time_stamped_at,
                        "status": check.signature_status(s),
                        "problems": list(s.problems)} for s in check.signatures],
        "reasons": check.reasons(), "notes": check.notes, "bytes": check.bytes_hashed, "seconds": check.seconds,
    }


def print_check(check: BundleCheck, console: Console) -> None:
    state = "[bold green]VALID[/]" if check.ok else "[bold red]INVALID[/]"
    verdict = check.verdict or "?"
    console.print(f"Bundle {state}: report {for_markup(str(check.report_id))}, run {for_markup(str(check.run_id))}, "
                  f"run verdict [{VERDICT_STYLE.get(verdict, 'bold')}]{for_markup(verdict)}[/], "
                  f"{len(check.signatures)} signature(s), {check.files_checked} file(s), "
                  f"{check.bytes_hashed / 1e6:.1f} MB checked in {check.seconds:.2f} s")
    line = release_line(check.simulated, check.conditions)
    if line:
        console.print(line)
    for sig in check.signatures:
        s = sig.statement
        status = check.signature_status(sig)
        mark = f"[{SIGNATURE_STYLE.get(status, 'dark_orange')}]{for_markup(status)}[/]"
        stamp = f" (time-stamped {for_markup(sig.time_stamped_at)})" if sig.time_stamped_at else ""
        console.print(f"  #{sig.sequence:02d} {for_markup(sig.role)}: {for_markup(str(s.get('printed_name', '?')))} "
                      f"at {for_markup(str(s.get('signed_at', '?')))}{stamp} — {mark}")
    for note in check.notes:
        console.print(f"  [dim]note: {for_markup(note)}[/]")
    reasons = check.reasons()
    if reasons:
        console.print(f"[bold red]{len(reasons)} reason(s):[/]")
        for reason in reasons:
            console.print(f"  - {for_markup(reason)}")


def cmd_verify(args: argparse.Namespace) -> int:
    bundle = require_bundle_dir(Path(args.bundle))
    has_signatures = (bundle / "signatures").is_dir() and any((bundle / "signatures").iterdir())
    registry = load_registry(args, required=has_signatures)
    check = verify_bundle(bundle, registry, allow_unsigned=args.allow_unsigned,
                          require_hardware=args.require_hardware, tsa=time_stamp_authority(args))
    if args.json:
        print(json.dumps(check_json(check), indent=2))
    else:
        print_check(check, Console(highlight=False))
    return 0 if check.ok else 1


def cmd_show(args: argparse.Namespace) -> int:
    bundle = require_bundle_dir(Path(args.bundle))
    console = Console(highlight=False)
    try:
        results = load_json_bytes((bundle / "results.json").read_bytes(), "results.json")
    except (OSError, ValueError) as exc:
        raise UsageError(f"{bundle}: cannot read results.json: {exc}") from None
    verdict = results["verdict"]
    proc = results.get("procedure") or {}
    console.print(f"[bold]{for_markup(str(results.get('report_id')))}[/]  {for_markup(str(proc.get('id')))} "
                  f"v{for_markup(str(proc.get('version')))}  station {for_markup(str(results['station'].get('id')))}  "
                  f"run {for_markup(str(results['run'].get('run_id')))}")
    style = VERDICT_STYLE.get(verdict["outcome"], "bold")
    console.print(f"Verdict: [{style}]{for_markup(verdict['outcome'])}[/] — {for_markup(str(verdict.get('reason')))}")
    simulated = bool(results["station"].get("simulated", True))
    conditions = list(verdict.get("conditions") or [])
    line = release_line(simulated, conditions)
    if line:
        console.print(line)
    table = Table("measurement", "value", "uncertainty", "limits", "requirement", "outcome", title="Measurements")
    for m in results.get("measurements") or []:
        colour = {"pass": "green", "fail": "red"}.get(m["outcome"], "magenta")
        table.add_row(for_markup(str(m["name"])), for_markup(value_text(m)), for_markup(uncertainty_text(m)), for_markup(limits_text(m)),
                      for_markup(str(m.get("requirement") or "")), f"[{colour}]{m['outcome'].upper()}[/]")
    console.print(table)
    registry = load_registry(args, required=False)
    check = verify_bundle(bundle, registry, allow_unsigned=True, tsa=time_stamp_authority(args))
    sigs = Table("#", "printed name", "signed (UTC)", "role", "meaning", "status", title="Signatures")
    sigs.columns[2].no_wrap = True
    for sig in check.signatures:
        s = sig.statement
        state = check.signature_status(sig)
        status = (f"[red]{for_markup('; '.join(sig.problems))}[/]" if sig.problems
                  else f"[{SIGNATURE_STYLE.get(state, 'dark_orange')}]{for_markup(state)}[/]")
        when = str(s.get("signed_at", "?"))[:19].replace("T", " ")
        if sig.time_stamped_at:  # the trusted time: the time-stamp authority's
            when += f" (TSA {sig.time_stamped_at[:19].replace('T', ' ')})"
        sigs.add_row(f"{sig.sequence:02d}", for_markup(str(s.get("printed_name", "?"))), for_markup(when),
                     for_markup(sig.role), for_markup(str(s.get("meaning", "?"))), status)
    console.print(sigs if check.signatures else "[dark_orange]Not signed.[/]")
    integrity = "[green]intact[/]" if not check.problems else f"[red]{len(check.problems)} problem(s)[/]: " + for_markup("; ".join(check.problems))
    console.print(f"Files: {integrity}")
    if check.problems or any(sig.problems for sig in check.signatures):
        return SHOW_EXIT["invalid"]
    if verdict["outcome"] != "PASS":
        return SHOW_EXIT["not_pass"]
    return SHOW_EXIT["not_valid_for_release"] if conditions else SHOW_EXIT["pass"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("report", help="build, sign, verify and show report bundles", description=DESCRIPTION,
                                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="report_command", metavar="VERB", required=True)

    build = verbs.add_parser("build", help="build the report bundle of a run record")
    build.add_argument("run", metavar="RUN", help="run directory (holds record.jsonl and raw/)")
    build.add_argument("--out", metavar="DIR", help="bundle directory (default RUN/report, RUN/report-N for a reissue)")
    build.add_argument("--supersedes", metavar="REPORT_ID", help="report id this bundle replaces (needed for a reissue)")
    build.add_argument("--audit-log", metavar="FILE")
    build.set_defaults(func=cmd_build)

    sign = verbs.add_parser("sign", help="add an electronic signature (DSSE, Ed25519)")
    sign.add_argument("bundle", metavar="BUNDLE")
    sign.add_argument("--role", required=True, choices=ROLES)
    sign.add_argument("--key", required=True, metavar="KEYFILE", help="encrypted private key from `rig keys new`")
    add_options(sign, audit_log=False)
    sign.add_argument("--meaning", metavar="TEXT", help="what the signature means (default: the role's meaning and the verdict)")
    sign.add_argument("--passphrase-env", default=PASSPHRASE_ENV, metavar="VAR",
                      help=f"environment variable holding the passphrase (default {PASSPHRASE_ENV}); prompted otherwise")
    sign.add_argument("--audit-log", metavar="FILE")
    sign.set_defaults(func=cmd_sign)

    verify = verbs.add_parser("verify", help="check every file and signature; exit 0 valid, 1 invalid")
    verify.add_argument("bundle", metavar="BUNDLE")
    add_options(verify, audit_log=False)
    verify.add_argument("--allow-unsigned", action="store_true", help="accept a bundle without signatures (integrity only)")
    verify.add_argument("--json", action="store_true", help="machine-readable result")
    verify.add_argument("--require-hardware", action="store_true",
                        help="reject a bundle from a simulated bench or virtual clock (exit 1)")
    verify.add_argument("--tsa-certificate", metavar="FILE",
                        help="certificate of the time-stamp authority whose tokens the signatures carry "
                             "(default: the station's [signing] tsa_certificate)")
    verify.set_defaults(func=cmd_verify)

    show = verbs.add_parser("show", help="summarise a bundle: verdict, measurements, signatures; "
                                         "exit 0 only for an intact PASS valid for release")
    show.add_argument("bundle", metavar="BUNDLE")
    add_options(show, audit_log=False)
    show.add_argument("--tsa-certificate", metavar="FILE", help="as for verify")
    show.set_defaults(func=cmd_show)
