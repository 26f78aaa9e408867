"""Verify a report bundle: every byte, every signature, every signing rule.

What "valid" means (each failed check adds a reason):
  files       every manifest entry exists with its sha256 and size; no file missing or extra;
              no symlinks; report.html hashed without its signatures block, and that block equal
              to the block rendered from signatures/ (see reports.html).
  content     results.json and manifest agree on report id and verdict.
  signatures  numbered 01, 02, ... without gaps; each envelope canonical, of our payload type,
              its statement bound to THIS bundle (manifest sha256 and report id: no replay) and
              to the signatures before it (hash chain); signed by a registry key that was valid
              and not revoked at signed_at, registered to the same signer and printed name, with
              the role allowed; signed_at not before the bundle and not before the previous one;
              order, separation of duties and verdict rules of reports.roles.
An unsigned bundle is reported INVALID unless ``allow_unsigned``: without a signature, anyone could
have rewritten the manifest along with the files.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports import roles
from reports.bundle import load_manifest, signature_files
from reports.canonical import canonical_json, load_json_bytes, sha256_hex
from reports.dsse import PAYLOAD_TYPE, EnvelopeError, check_signature, open_envelope
from reports.html import render_signature_block, split_signature_block
from reports.keys import public_key_from_b64
from reports.manifest import (
    HTML_HASH_SCOPE,
    MANIFEST_SCHEMA,
    MAX_ENVELOPE_BYTES,
    MAX_HTML_BYTES,
    MAX_RESULTS_BYTES,
    REPORT_HTML,
    hash_many,
    list_payload,
)
from reports.key_registry import Registry, format_utc, parse_utc
from reports.timestamp import MAX_REPLY_BYTES as MAX_TOKEN_BYTES
from reports.timestamp import TimeStampAuthority, TimeStampError, check_token
from rig.safeio import read_regular

STATEMENT_FIELDS = frozenset({
    "statement", "manifest_sha256", "report_id", "run_id", "verdict", "role", "meaning", "signer_id",
    "printed_name", "key_id", "signed_at", "sequence", "prior_signatures_sha256", "simulated", "conditions",
})
STATEMENT_KIND = "rig.report-signature/1"
# Since issue 18 every statement carries the audit head at signing; older ones verify without it.
ANCHORED_FIELDS = STATEMENT_FIELDS | {"audit_anchor"}
# A statement signed at a station that names a time-stamp authority says which one (its certificate's
# fingerprint): its token is then required, so removing the token cannot turn it into a signer's claim.
TSA_FIELDS = ANCHORED_FIELDS | {"time_stamp_authority"}
# How far a signature's signed_at may be ahead of the verifier's clock (clock skew between PCs).
MAX_CLOCK_SKEW = _dt.timedelta(minutes=5)
SIGNER_CLAIM_NOTE = ("signing times are the signers' own claim (no time-stamp authority); they are bounded "
                     "below by the run's end and above by the time of verification")
TSA_NOTE = ("signing times are attested by the time-stamp authority {name} (RFC 3161 tokens, genTime); key "
            "validity and the run's end are judged at genTime")


def chain_hash(envelopes: list[bytes]) -> str:
    """Hash over all earlier signature files, in order (binds each signature to its predecessors)."""
    return sha256_hex(canonical_json([sha256_hex(e) for e in envelopes]))


@dataclass
class SignatureCheck:
    file: str
    sequence: int
    role: str
    statement: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    time_stamped_at: str | None = None  # the token's genTime, once the token checked out

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class BundleCheck:
    bundle: Path
    report_id: str | None = None
    verdict: str | None = None
    run_id: str | None = None
    operator: Any = None  # the recorded operator (results.json run.operator)
    simulated: bool = True
    conditions: list[str] = field(default_factory=list)
    manifest_sha256: str | None = None
    files_checked: int = 0
    bytes_hashed: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    signatures: list[SignatureCheck] = field(default_factory=list)
    allow_unsigned: bool = False
    run_end: _dt.datetime | None = None
    notes: list[str] = field(default_factory=list)

    def signature_status(self, sig: SignatureCheck) -> str:
        """"valid", "invalid", or "not checked": a signature over a bundle whose files do not
        match its manifest vouches for nothing, however good its own cryptography."""
        if sig.problems:
            return "invalid"
        return "not checked: bundle invalid" if self.problems else "valid"

    @property
    def unsigned(self) -> bool:
        return not self.signatures

    @property
    def ok(self) -> bool:
        return (not self.problems and all(s.ok for s in self.signatures)
                and (self.allow_unsigned or not self.unsigned))

    def reasons(self) -> list[str]:
        out = list(self.problems)
        for s in self.signatures:
            out += [f"signatures/{s.file}: {p}" for p in s.problems]
        if self.unsigned and not self.allow_unsigned:
            out.append("bundle has no signatures: file hashes alone do not prove who issued it")
        return out


def _check_entries(manifest: dict[str, Any], check: BundleCheck) -> dict[str, dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(manifest["files"]):
        path = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/") \
                or path == "manifest.json" or path.startswith("signatures/"):
            check.problems.append(f"manifest files[{i}]: bad path {path!r}")
            continue
        if path in entries:
            check.problems.append(f"manifest lists {path} twice")
        entries[path] = entry
    return entries


def _check_files(bundle: Path, manifest: dict[str, Any], check: BundleCheck, workers: int | None) -> None:
    entries = _check_entries(manifest, check)
    present, listing_problems = list_payload(bundle)
    check.problems += listing_problems
    for rel in sorted(set(entries) - set(present)):
        check.problems.append(f"{rel}: missing (listed in the manifest)")
    for rel in sorted(set(present) - set(entries)):
        check.problems.append(f"{rel}: extra file not in the manifest")
    to_hash = sorted(set(entries) & set(present))
    for rel, result in sorted(hash_many(bundle, to_hash, workers).items()):
        entry = entries[rel]
        if isinstance(result, Exception):
            check.problems.append(f"{rel}: cannot be checked: {result}")
            continue
        sha, size = result
        check.bytes_hashed += size
        check.files_checked += 1
        if rel == REPORT_HTML and entry.get("hash_scope") != HTML_HASH_SCOPE:
            check.problems.append(f"{rel}: manifest entry lacks hash_scope {HTML_HASH_SCOPE!r}")
        elif rel != REPORT_HTML and "hash_scope" in entry:
            check.problems.append(f"{rel}: unexpected hash_scope in the manifest")
        if sha != entry.get("sha256") or size != entry.get("size"):
            check.problems.append(f"{rel}: content changed (sha256 {sha[:16]}…, size {size}; "
                                  f"manifest says {str(entry.get('sha256'))[:16]}…, size {entry.get('size')})")


def _anchor_ok(anchor: Any) -> bool:
    return (isinstance(anchor, dict) and set(anchor) == {"log_id", "seq", "hash"}
            and isinstance(anchor["seq"], int) and not isinstance(anchor["seq"], bool) and anchor["seq"] >= 0
            and isinstance(anchor["hash"], str) and len(anchor["hash"]) == 64
            and (anchor["log_id"] is None or (isinstance(anchor["log_id"], str) and len(anchor["log_id"]) == 64)))


def _run_end(results: Any) -> _dt.datetime | None:
    """When the run ended (unfinished: started), per results.json; None when it does not say."""
    try:
        run = results["run"]
        return parse_utc(run.get("finished_utc") or run.get("started_utc"), "run end")
    except (KeyError, TypeError, AttributeError, ValueError):
        return None


def _check_results(bundle: Path, manifest: dict[str, Any], check: BundleCheck) -> None:
    try:
        results = load_json_bytes(read_regular(bundle / "results.json", max_bytes=MAX_RESULTS_BYTES,
                                               what="results.json"), "results.json")
        outcome = results["verdict"]["outcome"]
        report_id = results["report_id"]
        conditions = results["verdict"].get("conditions", [])
        simulated = results["station"].get("simulated", True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        check.problems.append(f"results.json unreadable: {exc}")
        return
    if report_id != manifest.get("report_id"):
        check.problems.append(f"results.json report id {report_id} differs from the manifest's {manifest.get('report_id')}")
    if outcome != manifest.get("verdict"):
        check.problems.append(f"results.json verdict {outcome} differs from the manifest's {manifest.get('verdict')}")
    check.run_end = _run_end(results)
    if conditions != manifest.get("conditions") or simulated != manifest.get("simulated"):
        check.problems.append("results.json validity conditions or simulated flag differ from the manifest's")
    check.simulated, check.conditions = bool(manifest.get("simulated", True)), list(manifest.get("conditions") or [])
    check.run_id = results.get("run", {}).get("run_id") or manifest.get("run_id")
    check.operator = results.get("run", {}).get("operator")


def _check_statement(
    sig: SignatureCheck, statement: Any, *, manifest: dict[str, Any], manifest_sha256: str, prior: list[bytes],
    registry: Registry, key_id: str, payload_type: str, payload: bytes, signature: bytes, previous_at: Any,
    run_end: _dt.datetime | None = None, verified_at: _dt.datetime,
) -> Any:
    """Problems of one signature; returns its signed_at (datetime) for the ordering check."""
    p = sig.problems
    if not isinstance(statement, dict) or set(statement) not in (STATEMENT_FIELDS, ANCHORED_FIELDS, TSA_FIELDS) \
            or statement.get("statement") != STATEMENT_KIND:
        p.append("payload is not a rig signature statement")
        return None
    sig.statement = statement
    if payload_type != PAYLOAD_TYPE:
        p.append(f"payload type {payload_type!r}, expected {PAYLOAD_TYPE!r}")
    if statement["sequence"] != sig.sequence or statement["role"] != sig.role:
        p.append(f"file name says #{sig.sequence:02d} {sig.role}, statement says #{statement['sequence']} "
                 f"{statement['role']} (signatures renamed or reordered)")
    if statement["manifest_sha256"] != manifest_sha256 or statement["report_id"] != manifest.get("report_id"):
        p.append("statement signs a different bundle (manifest sha256 or report id differ): replayed or manifest changed")
    if statement["verdict"] != manifest.get("verdict"):
        p.append(f"statement verdict {statement['verdict']} differs from the bundle verdict {manifest.get('verdict')}")
    if statement["simulated"] != manifest.get("simulated") or statement["conditions"] != manifest.get("conditions"):
        p.append("statement's simulated flag or validity conditions differ from the bundle's")
    if statement["prior_signatures_sha256"] != chain_hash(prior):
        p.append("chain broken: the signatures before this one are not the ones it signed over")
    if key_id != statement["key_id"]:
        p.append(f"envelope key id {key_id} differs from statement key id {statement['key_id']}")
    role_problem = roles.verdict_problem(str(statement["role"]), str(manifest.get("verdict")))
    meaning_problem = roles.meaning_problem(str(statement["meaning"]), str(manifest.get("verdict")))
    p += [x for x in (role_problem, meaning_problem) if x]
    try:
        signed_at = parse_utc(statement["signed_at"], "signed_at")
        created = parse_utc(manifest.get("created_at"), "manifest created_at")
    except ValueError as exc:
        p.append(str(exc))
        return None
    if signed_at < created:
        p.append(f"signed_at {statement['signed_at']} is before the bundle was created ({manifest.get('created_at')})")
    if run_end is not None and signed_at < run_end:
        p.append(f"signed_at {statement['signed_at']} is before the run it signs ended ({format_utc(run_end)}): backdated")
    if signed_at > verified_at + MAX_CLOCK_SKEW:
        p.append(f"signed_at {statement['signed_at']} is in the future (verified at {format_utc(verified_at)})")
    anchor = statement.get("audit_anchor")
    if "audit_anchor" in statement and not _anchor_ok(anchor):
        p.append(f"audit_anchor is not {{log_id, seq, hash}} of an audit log head: {anchor!r:.120}")
    if previous_at is not None and signed_at < previous_at:
        p.append("signed_at is earlier than the previous signature's")
    entry = registry.find(str(statement["key_id"]))
    if entry is None:
        p.append(f"unknown key {statement['key_id']}: not in the key registry {registry.path}")
        return signed_at
    if not check_signature(public_key_from_b64(entry.public_key), payload_type, payload, signature):
        p.append(f"signature does not verify with key {entry.key_id}")
    if entry.signer_id != statement["signer_id"] or entry.printed_name != statement["printed_name"]:
        p.append(f"key {entry.key_id} belongs to {entry.signer_id} ({entry.printed_name}), not "
                 f"{statement['signer_id']} ({statement['printed_name']})")
    if statement["role"] not in entry.roles:
        p.append(f"signer {entry.signer_id} may not sign as {statement['role']} (allowed: {', '.join(entry.roles)})")
    validity = entry.problem_at(signed_at)
    if validity:
        p.append(validity)
    trust = registry.entry_problem(entry, signed_at)
    if trust:
        p.append(trust)
    return signed_at


def _check_time_stamp(sig: SignatureCheck, token_file: Path | None, envelope: bytes,
                      tsa: TimeStampAuthority | None, registry: Registry, run_end: _dt.datetime | None) -> None:
    """The RFC 3161 token of a signature whose statement names a time-stamp authority: required,
    from the configured TSA, over this envelope; its genTime is the trusted signing time, so a
    ``signed_at`` it contradicts is backdated and key validity and the run's end are judged at it."""
    declared, p = sig.statement.get("time_stamp_authority"), sig.problems
    if declared is None:
        if token_file is not None:
            p.append(f"{token_file.name}: a time-stamp token, but the signed statement names no time-stamp authority")
        elif tsa is not None and run_end is not None and run_end >= tsa.certificate.not_valid_before_utc:
            # a signer who leaves the TSA out to date the signature at will: the station's TSA was
            # in service when this run ended, so a signature over it must carry its token
            p.append(f"no time-stamp token, but the station's time-stamp authority ({tsa.name}) was in service "
                     f"when the run ended ({format_utc(run_end)}): its signatures must be time-stamped")
        return
    if token_file is None:
        p.append(f"the statement says it was time-stamped by {declared}, but its token "
                 f"{sig.file.removesuffix('.dsse.json')}.tst is missing (removed?)")
        return
    if tsa is None:
        p.append(f"time-stamped by {declared}, but no TSA certificate is configured to check the token "
                 "(the station's [signing] tsa_certificate, or --tsa-certificate FILE)")
        return
    if declared != tsa.fingerprint:
        p.append(f"time-stamped by another authority ({declared}) than the configured TSA ({tsa.fingerprint})")
        return
    try:
        gen = check_token(read_regular(token_file, max_bytes=MAX_TOKEN_BYTES, what=token_file.name), envelope, tsa)
        signed_at = parse_utc(sig.statement.get("signed_at"), "signed_at")
    except (OSError, TimeStampError, ValueError) as exc:
        p.append(f"time-stamp token {token_file.name}: {getattr(exc, 'strerror', None) or exc}")
        return
    sig.time_stamped_at = format_utc(gen)
    if signed_at < gen - MAX_CLOCK_SKEW:
        p.append(f"signed_at {sig.statement['signed_at']} is contradicted by the time-stamp token: the TSA first saw "
                 f"this signature at {sig.time_stamped_at}: backdated")
    elif signed_at > gen + MAX_CLOCK_SKEW:
        p.append(f"signed_at {sig.statement['signed_at']} is after the time-stamp token's genTime {sig.time_stamped_at}: "
                 "a signature cannot postdate its own time stamp")
    if run_end is not None and gen < run_end:
        p.append(f"time-stamped at {sig.time_stamped_at}, before the run it signs ended ({format_utc(run_end)})")
    entry = registry.find(str(sig.statement.get("key_id")))
    if entry is not None:
        for problem in (entry.problem_at(gen), registry.entry_problem(entry, gen)):
            if problem and problem not in p:  # already found at signed_at
                p.append(f"at the time stamp ({sig.time_stamped_at}): {problem}")


def verify_bundle(bundle: Path, registry: Registry | None, *, allow_unsigned: bool = False,
                  workers: int | None = None, require_hardware: bool = False,
                  tsa: TimeStampAuthority | None = None) -> BundleCheck:
    """Check a bundle completely; never raises for a bad bundle, only collects reasons.
    ``require_hardware``: a bundle from a simulated bench or virtual clock is invalid. ``tsa``:
    the time-stamp authority whose certificate checks signature tokens (default: the registry's, i.e.
    the station's)."""
    start = time.perf_counter()
    verified_at = _dt.datetime.now(_dt.timezone.utc)
    if tsa is None and registry is not None:
        tsa = registry.time_stamp_authority
    bundle = Path(bundle)
    check = BundleCheck(bundle, allow_unsigned=allow_unsigned)
    try:
        manifest, manifest_bytes = load_manifest(bundle)
    except ValueError as exc:
        check.problems.append(str(exc))
        return check
    check.report_id, check.verdict = manifest.get("report_id"), manifest.get("verdict")
    check.run_id = manifest.get("run_id")
    check.manifest_sha256 = sha256_hex(manifest_bytes)
    if manifest.get("schema") != MANIFEST_SCHEMA or canonical_json(manifest) != manifest_bytes:
        check.problems.append("manifest.json is not a canonical manifest of this schema (edited?)")
    _check_files(bundle, manifest, check, workers)
    _check_results(bundle, manifest, check)
    if require_hardware and check.simulated:
        station = manifest.get("station") or {}
        check.problems.append(f"simulated data (station mode {station.get('mode')}, clock {station.get('clock')}): "
                              "--require-hardware accepts only a hardware station on a real clock")
    files, problems = signature_files(bundle)
    check.problems += problems
    prior: list[bytes] = []
    previous_at = None
    for expected, sig_file in enumerate(files, start=1):
        sig = SignatureCheck(sig_file.path.name, sig_file.sequence, sig_file.role)
        check.signatures.append(sig)
        try:
            data = read_regular(sig_file.path, max_bytes=MAX_ENVELOPE_BYTES, what=sig_file.path.name)
        except OSError as exc:
            sig.problems.append(f"cannot be read: {exc.strerror or exc}")
            data = b""
        if sig_file.sequence != expected:
            sig.problems.append(f"numbered {sig_file.sequence:02d} but is signature #{expected} (one missing or added)")
        try:
            payload, payload_type, key_id, signature = open_envelope(data, sig_file.path.name)
            statement = load_json_bytes(payload, "statement")
        except (EnvelopeError, ValueError) as exc:
            sig.problems.append(str(exc))
        else:
            if registry is None:
                sig.problems.append("no key registry given: signature cannot be checked")
            else:
                previous_at = _check_statement(
                    sig, statement, manifest=manifest, manifest_sha256=check.manifest_sha256, prior=prior,
                    registry=registry, key_id=key_id, payload_type=payload_type, payload=payload,
                    signature=signature, previous_at=previous_at, run_end=check.run_end,
                    verified_at=verified_at) or previous_at
                if sig.statement:
                    _check_time_stamp(sig, sig_file.token, data, tsa, registry, check.run_end)
        prior.append(data)
    for sig, order_problems in zip(check.signatures, roles.order_problems([s.statement for s in check.signatures])):
        sig.problems += order_problems
    for sig in check.signatures:
        problem = roles.operator_problem(sig.statement, check.operator)
        if problem:
            sig.problems.append(problem)
    if check.signatures and registry is not None:
        check.problems += registry.trust_problems()
    _check_html_block(bundle, check)
    if check.signatures:
        stamped = [s for s in check.signatures if s.time_stamped_at]
        if stamped and tsa is not None:
            check.notes.append(TSA_NOTE.format(name=tsa.name))
        if len(stamped) < len(check.signatures):
            check.notes.append(SIGNER_CLAIM_NOTE if not stamped else
                               "signatures without a time-stamp token: " + SIGNER_CLAIM_NOTE)
        if not all("audit_anchor" in s.statement for s in check.signatures if s.statement):
            check.notes.append("signatures made before audit anchoring carry no audit head: `rig audit verify "
                               "--bundle` cannot check them against the log")
    check.seconds = time.perf_counter() - start
    return check


def _check_html_block(bundle: Path, check: BundleCheck) -> None:
    try:
        _, block = split_signature_block(read_regular(bundle / REPORT_HTML, max_bytes=MAX_HTML_BYTES, what=REPORT_HTML))
    except (OSError, ValueError) as exc:
        check.problems.append(f"{REPORT_HTML}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}")
        return
    if block != render_signature_block([s.statement for s in check.signatures]):
        check.problems.append(f"{REPORT_HTML}: signatures block does not match signatures/ (edited or stale)")


def _record_anchors(bundle: Path, report_id: Any, log_id: str | None) -> tuple[list[Any], list[Any], list[str]]:
    """The run record's audit anchor (run_started's ``audit_anchor``: the runner's run_started audit
    entry) and, for a finished run, the run_finished entry it implies (record sha256 and outcome)."""
    from reports.audit import Anchor, Expected

    source = f"{report_id} run record"
    try:
        data = read_regular(bundle / "record.jsonl", max_bytes=1 << 30, what="record.jsonl")
    except OSError as exc:
        return [], [], [f"{source}: unreadable: {exc}"]
    anchors: list[Any] = []
    expected: list[Any] = []
    other: list[str] = []
    finished = None
    for raw in data.splitlines():
        try:
            event = load_json_bytes(raw, "record line")
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        anchor = event.get("audit_anchor") if event.get("type") == "run_started" else None
        if _anchor_ok(anchor):
            if anchor["log_id"] == log_id:
                anchors.append(Anchor(source, anchor["seq"], anchor["hash"]))
            else:
                other.append(f"{source} is anchored to another audit log (first entry {str(anchor['log_id'])[:16]}…)")
        elif event.get("type") == "run_finished":
            finished = event
    if anchors and finished is not None:
        expected.append(Expected(source, "run_finished", "record_sha256", sha256_hex(data),
                                 data_equals={"outcome": finished.get("outcome")}))
    return anchors, expected, other


def bundle_anchors(bundle: Path, log_id: str | None) -> tuple[list[Any], list[Any], list[str]]:
    """What a bundle says about the audit log with first-entry hash ``log_id``: (anchors, expected
    entries, problems) for ``reports.audit.verify_log``. Anchors of its run record and signatures
    in another log are skipped (a station may keep one log for runs and one for signatures); a
    bundle with no anchor in this log at all is a problem (the wrong log was given, or this one was
    rewritten from its first entry)."""
    from reports.audit import Anchor, Expected

    problems: list[str] = []
    files, _ = signature_files(bundle)
    try:
        report_id = load_manifest(bundle)[0].get("report_id")
    except ValueError as exc:
        return [], [], [f"{bundle}: {exc}"]
    anchors, expected, elsewhere = _record_anchors(bundle, report_id, log_id)
    for sig_file in files:
        source = f"{report_id} signature #{sig_file.sequence:02d} ({sig_file.role})"
        try:
            data = read_regular(sig_file.path, max_bytes=MAX_ENVELOPE_BYTES, what=sig_file.path.name)
            statement = load_json_bytes(open_envelope(data, sig_file.path.name)[0], "statement")
        except (OSError, EnvelopeError, ValueError) as exc:
            problems.append(f"{source}: unreadable: {exc}")
            continue
        anchor = statement.get("audit_anchor") if isinstance(statement, dict) else None
        if not _anchor_ok(anchor):
            problems.append(f"{source} carries no audit anchor (signed before anchoring): not checked")
            continue
        if anchor["log_id"] is not None and anchor["log_id"] != log_id:
            elsewhere.append(f"{source} is anchored to another audit log (first entry {anchor['log_id'][:16]}…)")
            continue
        if anchor["seq"]:
            anchors.append(Anchor(source, int(anchor["seq"]), str(anchor["hash"])))
        expected.append(Expected(source, "signature", "envelope_sha256", sha256_hex(data),
                                 key_id=str(statement.get("key_id"))))
    if elsewhere and not anchors and not expected:
        problems.append(f"{report_id}: nothing in this bundle is anchored to this audit log (first entry "
                        f"{str(log_id)[:16]}…): the wrong log, or this log was rewritten from its first entry; "
                        + "; ".join(elsewhere))
    return anchors, expected, problems
