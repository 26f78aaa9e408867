"""Sign a bundle: one DSSE envelope per signature in signatures/NN-role.dsse.json.

Why check everything before signing: a signature is a person's statement that they stand behind
the bundle; signing a bundle that does not verify, or a signature that verification would reject
(wrong role, key revoked, performer reviewing their own run, a pass claimed for a failed run),
must be refused at the moment of signing with the reason, not discovered years later.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from reports import audit, roles
from reports.bundle import load_manifest, require_bundle_dir
from reports.canonical import canonical_json, load_json_bytes, sha256_hex
from reports.dsse import sign_envelope
from reports.html import with_signature_block
from reports.keys import SigningKey
from reports.manifest import MAX_HTML_BYTES, MAX_RESULTS_BYTES, REPORT_HTML, SIGNATURES_DIR
from reports.key_registry import ROLES, Registry, format_utc, parse_utc
from reports.timestamp import TimeStampAuthority, TimeStampError, gen_time, request_token, token_path
from reports.verify import MAX_CLOCK_SKEW, STATEMENT_KIND, chain_hash, verify_bundle
from rig.errors import UsageError
from rig.safeio import read_regular, replace_atomically, write_new


class SigningRefused(UsageError):
    """The signature would not be valid; nothing was written (exit 2)."""


def clock_problem(existing: list[dict[str, Any]], signed_at: str) -> str | None:
    """A signature may not be dated before the one it follows: a clock set back cannot reorder
    who signed first (same-format UTC strings compare in time order)."""
    if existing and signed_at < str(existing[-1].get("signed_at")):
        return "the clock is behind the previous signature's signed_at"
    return None


def sign_bundle(bundle: Path, key: SigningKey, role: str, registry: Registry, *, meaning: str | None = None,
                now: _dt.datetime | None = None, audit_log: Path | None = None,
                tsa: TimeStampAuthority | None = None) -> Path:
    """Add a signature by ``key`` in ``role``; return the new envelope file. With ``tsa`` (the
    station names a time-stamp authority; default the registry's) the envelope gets an RFC 3161 token beside it
    (``NN-role.tst``); no token, no signature."""
    bundle = require_bundle_dir(bundle)
    if role not in ROLES:
        raise UsageError(f"role {role!r} is not one of {', '.join(ROLES)}")
    tsa = tsa if tsa is not None else registry.time_stamp_authority
    check = verify_bundle(bundle, registry, allow_unsigned=True, tsa=tsa)
    if not check.ok:
        raise SigningRefused("bundle does not verify, refusing to sign:\n  - " + "\n  - ".join(check.reasons()))
    manifest, manifest_bytes = load_manifest(bundle)
    verdict = str(manifest["verdict"])
    signed_at = format_utc(now or _dt.datetime.now(_dt.timezone.utc))
    meaning = meaning if meaning is not None else roles.default_meaning(role, verdict)
    entry = registry.find(key.key_id)
    problems = [roles.verdict_problem(role, verdict), roles.meaning_problem(meaning, verdict)]
    if entry is None:
        problems.append(f"key {key.key_id} of {key.signer_id} is not in the key registry {registry.path}")
    else:
        if role not in entry.roles:
            problems.append(f"{entry.signer_id} may not sign as {role} (allowed: {', '.join(entry.roles)})")
        if entry.signer_id != key.signer_id or entry.printed_name != key.printed_name:
            problems.append(f"key file says {key.signer_id} ({key.printed_name}); registry says "
                            f"{entry.signer_id} ({entry.printed_name})")
        when = _dt.datetime.fromisoformat(signed_at.replace("Z", "+00:00"))
        problems.append(entry.problem_at(when))
        problems.append(registry.entry_problem(entry, when))
    problems += registry.trust_problems()
    run_end = _run_end(bundle)
    if run_end and parse_utc(signed_at, "signed_at") < run_end:
        problems.append(f"the clock ({signed_at}) is behind the run's end ({run_end})")
    log = audit.resolve_log_path(audit_log, near=registry.path.parent)
    try:
        anchor = audit.anchor_of(log)
    except (OSError, ValueError) as exc:
        raise SigningRefused(f"audit log {log} cannot anchor the signature, nothing was signed: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
    existing = [s.statement for s in check.signatures]
    statement = {
        "statement": STATEMENT_KIND, "manifest_sha256": sha256_hex(manifest_bytes),
        "report_id": manifest["report_id"], "run_id": manifest.get("run_id"), "verdict": verdict, "role": role,
        "meaning": meaning, "signer_id": key.signer_id, "printed_name": key.printed_name, "key_id": key.key_id,
        "signed_at": signed_at, "sequence": len(existing) + 1,
        "simulated": bool(manifest.get("simulated", True)), "conditions": list(manifest.get("conditions") or []),
        "prior_signatures_sha256": chain_hash([(bundle / SIGNATURES_DIR / s.file).read_bytes() for s in check.signatures]),
        "audit_anchor": anchor,
    }
    if tsa is not None:
        statement["time_stamp_authority"] = tsa.fingerprint
    problems.append(clock_problem(existing, signed_at))
    problems += roles.order_problems(existing + [statement])[-1]
    problems.append(roles.operator_problem(statement, check.operator))
    problems = [p for p in problems if p]
    if problems:
        raise SigningRefused("refusing to sign: " + "; ".join(problems))
    folder = bundle / SIGNATURES_DIR
    folder.mkdir(exist_ok=True)
    path = folder / f"{statement['sequence']:02d}-{role}.dsse.json"
    envelope = sign_envelope(canonical_json(statement), key.private_key, key.key_id)  # Ed25519: deterministic
    token = _time_stamp(tsa, envelope, signed_at, entry) if tsa is not None else None
    stamp = {"tst_sha256": sha256_hex(token), "tsa": tsa.fingerprint} if token is not None and tsa else {}
    # The audit entry first: a signature that is not in the log must never exist. If the envelope
    # or the page cannot be written, the entry is rolled back and the bundle left as it was.
    try:
        logged = audit.append_event(
            log, "signature", report_id=statement["report_id"], manifest_sha256=statement["manifest_sha256"],
            role=role, signer_id=key.signer_id, key_id=key.key_id, verdict=verdict, signed_at=signed_at,
            envelope_sha256=sha256_hex(envelope), bundle=str(bundle.resolve()), **stamp)
    except (OSError, ValueError) as exc:
        raise SigningRefused(f"the signature cannot be logged in {log}, nothing was signed: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
    page = bundle / REPORT_HTML
    try:
        html = read_regular(page, max_bytes=MAX_HTML_BYTES, what=REPORT_HTML)
        try:
            write_new(path, envelope)
        except FileExistsError:
            raise SigningRefused(f"{path.name} appeared meanwhile (someone else signed); sign again") from None
        try:
            if token is not None:
                write_new(token_path(path), token)
            replace_atomically(page, with_signature_block(html, existing + [statement]))
        except BaseException:
            path.unlink(missing_ok=True)
            if token is not None:
                token_path(path).unlink(missing_ok=True)
            raise
    except BaseException:
        audit.rollback(log, logged)
        raise
    return path


def _time_stamp(tsa: TimeStampAuthority, envelope: bytes, signed_at: str, entry: Any) -> bytes:
    """The TSA's token over ``envelope``, refused (nothing written yet) when the TSA cannot be
    reached or its time disagrees with ours by more than verify allows, or the key is not valid
    at the TSA's time: verify would reject such a signature."""
    try:
        token = request_token(tsa, envelope)
    except TimeStampError as exc:
        raise SigningRefused(f"{exc}; nothing was signed (the station requires a time stamp on every signature)") from None
    gen = gen_time(token)
    if abs(gen - parse_utc(signed_at, "signed_at")) > MAX_CLOCK_SKEW:
        raise SigningRefused(f"this computer's clock ({signed_at}) differs from the time-stamp authority's "
                             f"({format_utc(gen)}) by more than {MAX_CLOCK_SKEW}; set the clock, nothing was signed")
    problem = entry.problem_at(gen) if entry is not None else None
    if problem:
        raise SigningRefused(f"at the time-stamp authority's time {format_utc(gen)}: {problem}; nothing was signed")
    return token


def _run_end(bundle: Path) -> _dt.datetime | None:
    """When the run ended (or, unfinished, started) per results.json: no signature can predate it."""
    try:
        results = load_json_bytes(read_regular(bundle / "results.json", max_bytes=MAX_RESULTS_BYTES,
                                               what="results.json"), "results.json")
        run = results["run"]
        return parse_utc(run.get("finished_utc") or run.get("started_utc"), "run end")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
