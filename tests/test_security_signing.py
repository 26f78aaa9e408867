"""Attack tests, issue 18 findings 1 (backdated signatures) and 4 (an audit trail cut or rewritten).

Finding 1: the signer chooses ``signed_at`` and the unsigned ``created_at``; a signature dated
before the run it signs ended, or in the future, is invalid, and the audit anchor exposes a
signature logged after its key's revocation. Finding 4: truncating, emptying or rewriting the log
is found against the anchors the bundles carry; a damaged log refuses the signature instead of
leaving a signed bundle with no audit entry.
"""

from __future__ import annotations

import os

import errno
import json
from pathlib import Path

import pytest

from reports import audit
from reports.bundle import build_bundle, load_manifest
from reports.canonical import canonical_json, sha256_hex
from reports.dsse import sign_envelope
from reports.key_registry import Registry
from reports.signing import SigningRefused, sign_bundle
from reports.synthetic import make_signer, write_record
from reports.verify import STATEMENT_KIND, chain_hash, verify_bundle
from rig.cli.main import main

RUN_END = "2026-01-10T09:21:02.000000Z"  # run_finished of reports.synthetic.write_record


@pytest.fixture
def lab(tmp_path: Path) -> dict:
    registry = Registry(tmp_path / "keys" / "registry.json")
    return {
        "root": tmp_path, "registry": registry, "audit": tmp_path / "audit.jsonl",
        # the synthetic run's operator: performed_by is the recorded operator's own signature
        "tech": make_signer(registry, tmp_path / "keys", "demo.tech", "Jane Doe", ["performed_by"]),
    }


def new_bundle(lab: dict, name: str = "r1") -> Path:
    run = write_record(lab["root"] / "runs" / name, "PASS", duration_s=60.0)
    return build_bundle(run, audit_log=lab["audit"])


def sign(lab: dict, bundle: Path, **kw) -> Path:
    return sign_bundle(bundle, lab["tech"], "performed_by", lab["registry"], audit_log=lab["audit"], **kw)


def revoke(lab: dict, at: str) -> None:
    pins = lab["registry"].pinned
    os.environ["RIG_ADMIN_PASSPHRASE"] = "correct horse battery staple"  # make_admin's (scrubbed when taken)
    assert main(["keys", "revoke", "demo.tech", "--reason", "left the lab", "--at", at,
                 "--registry", str(lab["registry"].path), "--audit-log", str(lab["audit"]),
                 "--admin-key", str(lab["root"] / "keys" / "registry-admin.key"),
                 "--admin-key-id", pins[0]]) == 0
    lab["registry"] = Registry.load(lab["registry"].path, pinned=pins)


def set_created_at(bundle: Path, created_at: str) -> None:
    """The attacker edits the unsigned manifest before signing it (it is still canonical)."""
    manifest, _ = load_manifest(bundle)
    manifest["created_at"] = created_at
    (bundle / "manifest.json").write_bytes(canonical_json(manifest))


def forge(bundle: Path, key, *, signed_at: str, anchor: dict | None = None, extra: dict | None = None) -> bytes:
    """The attacker's small script: a statement with any signed_at, signed with a revoked key."""
    manifest, manifest_bytes = load_manifest(bundle)
    statement = {
        "statement": STATEMENT_KIND, "manifest_sha256": sha256_hex(manifest_bytes),
        "report_id": manifest["report_id"], "run_id": manifest["run_id"], "verdict": manifest["verdict"],
        "role": "performed_by", "meaning": "I performed this test; verdict PASS", "signer_id": key.signer_id,
        "printed_name": key.printed_name, "key_id": key.key_id, "signed_at": signed_at, "sequence": 1,
        "prior_signatures_sha256": chain_hash([]),
        "simulated": manifest["simulated"], "conditions": manifest["conditions"],
    }
    if anchor is not None:
        statement["audit_anchor"] = anchor
    statement.update(extra or {})  # e.g. time_stamp_authority (tests/test_security_timestamp.py)
    envelope = sign_envelope(canonical_json(statement), key.private_key, key.key_id)
    (bundle / "signatures").mkdir(exist_ok=True)
    (bundle / "signatures" / "01-performed_by.dsse.json").write_bytes(envelope)
    from reports.html import with_signature_block

    page = bundle / "report.html"
    page.write_bytes(with_signature_block(page.read_bytes(), [statement]))
    return envelope


# -- finding 1: backdated signatures -------------------------------------------------------------


def test_signature_backdated_before_the_run_ended_is_invalid(lab: dict) -> None:
    """The issue's attack: key revoked before the run ended; signed_at and created_at set before both."""
    revoke(lab, "2026-01-10T09:15:00Z")
    bundle = new_bundle(lab)
    set_created_at(bundle, "2026-01-10T09:05:00.000000Z")
    forge(bundle, lab["tech"], signed_at="2026-01-10T09:10:00.000000Z")
    check = verify_bundle(bundle, lab["registry"])
    assert not check.ok
    assert any("before the run it signs ended" in r and "backdated" in r for r in check.reasons())


def test_signature_dated_in_the_future_is_invalid(lab: dict) -> None:
    bundle = new_bundle(lab)
    forge(bundle, lab["tech"], signed_at="2099-01-01T00:00:00.000000Z")
    check = verify_bundle(bundle, lab["registry"])
    assert not check.ok and any("in the future" in r for r in check.reasons())


def test_signing_with_a_clock_behind_the_run_is_refused(lab: dict) -> None:
    import datetime as dt

    bundle = new_bundle(lab)
    set_created_at(bundle, "2026-01-10T09:00:00.000000Z")
    with pytest.raises(SigningRefused, match="behind the run's end"):
        sign(lab, bundle, now=dt.datetime(2026, 1, 10, 9, 20, tzinfo=dt.timezone.utc))


def test_verify_says_the_signing_time_is_the_signers_claim(lab: dict, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = new_bundle(lab)
    sign(lab, bundle)
    assert main(["report", "verify", str(bundle), "--registry", str(lab["registry"].path),
                 "--admin-key-id", lab["registry"].pinned[0]]) == 0
    assert "signers' own claim (no time-stamp authority)" in capsys.readouterr().out


def test_backdated_signature_with_fabricated_times_is_caught_by_the_audit_anchor(lab: dict,
                                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """All times fabricated consistently (after the run, before the revocation): the signature's own
    audit entry still comes after the key_revoked entry, and the bundle anchors the log."""
    import datetime as dt

    bundle = new_bundle(lab)
    set_created_at(bundle, "2026-01-10T09:22:00.000000Z")
    revoke(lab, "2026-01-10T09:30:00Z")
    sign(lab, bundle, now=dt.datetime(2026, 1, 10, 9, 25, tzinfo=dt.timezone.utc))  # the attacker's own clock
    assert verify_bundle(bundle, lab["registry"]).ok  # the bundle alone cannot tell
    assert main(["audit", "verify", str(lab["audit"]), "--bundle", str(bundle)]) == 1
    assert "after its key" in capsys.readouterr().out


def test_forged_signature_without_its_audit_entry_is_found(lab: dict, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = new_bundle(lab)
    forge(bundle, lab["tech"], signed_at="2026-11-30T00:00:00.000000Z", anchor=audit.anchor_of(lab["audit"]))
    assert main(["audit", "verify", str(lab["audit"]), "--bundle", str(bundle)]) == 1
    assert "no signature entry" in capsys.readouterr().out


# -- finding 4: the audit trail ------------------------------------------------------------------------


@pytest.fixture
def history(lab: dict) -> dict:
    """Three bundles built and signed: the log has report_built and signature entries interleaved."""
    bundles = [new_bundle(lab, f"r{i}") for i in range(3)]
    for bundle in bundles:
        sign(lab, bundle)
    lab["bundles"] = bundles
    return lab


def audit_verify(lab: dict) -> int:
    return main(["audit", "verify", str(lab["audit"]), "--bundle", *map(str, lab["bundles"])])


def test_intact_log_verifies_against_its_bundles(history: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit_verify(history) == 0
    assert "OK, 6 entries" in capsys.readouterr().out


@pytest.mark.parametrize("cut", [1, 3])
def test_truncated_log_is_found(history: dict, cut: int, capsys: pytest.CaptureFixture[str]) -> None:
    lines = history["audit"].read_bytes().splitlines(keepends=True)
    history["audit"].write_bytes(b"".join(lines[:-cut]))  # head -n -CUT
    assert main(["audit", "verify", str(history["audit"])]) == 0  # the file alone cannot tell
    capsys.readouterr()
    assert audit_verify(history) == 1
    out = capsys.readouterr().out
    assert "truncated" in out or "cut out" in out


def test_emptied_log_fails(history: dict, capsys: pytest.CaptureFixture[str]) -> None:
    history["audit"].write_bytes(b"")
    assert main(["audit", "verify", str(history["audit"])]) == 1
    assert "empty" in capsys.readouterr().out


def rewrite(path: Path, change) -> None:
    """Rewrite the chain with fresh hashes (what an attacker with write access does)."""
    entries = [json.loads(line) for line in path.read_bytes().splitlines()]
    entries = change(entries)
    prev = audit.GENESIS
    out = []
    for seq, entry in enumerate(entries, start=1):
        entry["seq"], entry["prev"] = seq, prev
        entry["hash"] = audit.entry_hash(entry)
        prev = entry["hash"]
        out.append(canonical_json(entry) + b"\n")
    path.write_bytes(b"".join(out))


def test_rewritten_chain_is_found(history: dict, capsys: pytest.CaptureFixture[str]) -> None:
    def to_fail(entries: list) -> list:
        entries[0]["data"]["verdict"] = "FAIL"
        return entries

    rewrite(history["audit"], to_fail)
    assert main(["audit", "verify", str(history["audit"])]) == 0  # a consistent chain on its own
    capsys.readouterr()
    assert audit_verify(history) == 1
    assert "rewritten" in capsys.readouterr().out


def test_dropped_signature_entry_is_found(history: dict, capsys: pytest.CaptureFixture[str]) -> None:
    rewrite(history["audit"], lambda entries: [e for e in entries if not (
        e["kind"] == "signature" and e["data"]["report_id"] == load_manifest(history["bundles"][2])[0]["report_id"])])
    assert main(["audit", "verify", str(history["audit"])]) == 0
    capsys.readouterr()
    assert audit_verify(history) == 1
    assert "no signature entry" in capsys.readouterr().out


def test_damaged_last_line_refuses_to_sign_and_writes_nothing(lab: dict, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    bundle = new_bundle(lab)
    with open(lab["audit"], "ab") as handle:
        handle.write(b'{"seq": 2, "hash": "dead\n')
    html_before = (bundle / "report.html").read_bytes()
    monkeypatch.setenv("RIG_KEY_PASSPHRASE", "correct horse battery staple")
    code = main(["report", "sign", str(bundle), "--role", "performed_by", "--key",
                 str(lab["root"] / "keys" / "demo.tech.key"), "--registry", str(lab["registry"].path),
                 "--audit-log", str(lab["audit"])])
    err = capsys.readouterr().err
    assert code == 2 and "damaged" in err and "Traceback" not in err
    assert not (bundle / "signatures").exists() or not any((bundle / "signatures").iterdir())
    assert (bundle / "report.html").read_bytes() == html_before


def test_failed_envelope_write_rolls_the_audit_entry_back(lab: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import reports.signing as signing

    bundle = new_bundle(lab)
    log_before = lab["audit"].read_bytes()

    def disk_full(path: Path, data: bytes, mode: int = 0o644) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(signing, "write_new", disk_full)
    with pytest.raises(OSError, match="No space left"):
        sign(lab, bundle)
    assert lab["audit"].read_bytes() == log_before
    assert not verify_bundle(bundle, lab["registry"]).signatures


def test_every_signature_anchors_the_head_at_signing(history: dict) -> None:
    entries = [json.loads(line) for line in history["audit"].read_bytes().splitlines()]
    check = verify_bundle(history["bundles"][1], history["registry"])
    anchor = check.signatures[0].statement["audit_anchor"]
    assert anchor["log_id"] == entries[0]["hash"]
    assert entries[anchor["seq"] - 1]["hash"] == anchor["hash"]
    assert entries[anchor["seq"]]["kind"] == "signature"  # its own entry comes right after the anchor


def test_run_record_anchors_the_log_and_its_run_finished_entry_is_checked(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A real run (runner on an in-memory bench): its record anchors the run_started entry; a log
    rewritten to say FAIL for a PASS run, or cut below the anchor, no longer matches the bundle."""
    from tests.test_runner_logic import MemoryBench, measure_param, procedure_with, run, start_pump
    from rig.engine.procedure import Step

    proc = procedure_with(Step("start", start_pump), Step("measure", measure_param), tmp_path=tmp_path)
    log = tmp_path / "runs" / "audit.jsonl"
    for i in range(3):  # the station's log already holds earlier events
        audit.append_event(log, "report_built", report_id=f"RPT-old-{i}")
    result, record = run(proc, tmp_path, MemoryBench())
    assert result.outcome == "PASS"
    anchor = record.started["audit_anchor"]
    entries = [json.loads(line) for line in log.read_bytes().splitlines()]
    assert entries[anchor["seq"] - 1]["kind"] == "run_started" and entries[anchor["seq"] - 1]["hash"] == anchor["hash"]
    bundle = build_bundle(result.run_dir, audit_log=log)
    assert main(["audit", "verify", str(log), "--bundle", str(bundle)]) == 0
    original = log.read_bytes()

    def to_fail(items: list) -> list:
        for item in items:
            if item["kind"] == "run_finished":
                item["data"]["outcome"] = "FAIL"
        return items

    rewrite(log, to_fail)
    capsys.readouterr()
    assert main(["audit", "verify", str(log), "--bundle", str(bundle)]) == 1
    assert "rewritten" in capsys.readouterr().out
    log.write_bytes(b"".join(original.splitlines(keepends=True)[:anchor["seq"] - 1]))  # cut below the anchor
    assert main(["audit", "verify", str(log), "--bundle", str(bundle)]) == 1
    assert "truncated" in capsys.readouterr().out
