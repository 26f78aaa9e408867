"""Keys, registry, signing rules and the verify mutation test."""

from __future__ import annotations

import os
import random
import shutil
import stat
from pathlib import Path

import pytest

from reports.bundle import build_bundle
from reports.keys import KeyFileError, generate_key_file, load_key_file, read_key_header
from reports.key_registry import Registry
from reports.signing import SigningRefused, sign_bundle
from reports.synthetic import make_signer, write_record
from reports.verify import verify_bundle

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def lab(tmp_path: Path) -> dict:
    """A registry with a performer, a reviewer/approver, a station key, and signer helpers."""
    registry = Registry(tmp_path / "keys" / "registry.json")
    keys = tmp_path / "keys"
    lab = {
        "root": tmp_path, "registry": registry, "audit": tmp_path / "audit.jsonl",
        "jdoe": make_signer(registry, keys, "jdoe", "Jane Doe", ["performed_by", "reviewed_by"]),
        "rroe": make_signer(registry, keys, "rroe", "Richard Roe", ["reviewed_by", "approved_by"]),
        "aapp": make_signer(registry, keys, "aapp", "Ann Approver", ["approved_by"]),
        "station": make_signer(registry, keys, "station-01", "Station SIM-BENCH-01", ["generated_by"]),
    }
    return lab


def new_bundle(lab: dict, outcome: str = "PASS", name: str = "run") -> Path:
    run = write_record(lab["root"] / "runs" / name, outcome, duration_s=300.0)
    return build_bundle(run, audit_log=lab["audit"])


def sign(lab: dict, bundle: Path, who: str, role: str, **kw) -> Path:
    return sign_bundle(bundle, lab[who], role, lab["registry"], audit_log=lab["audit"], **kw)


@pytest.fixture
def signed(lab: dict) -> Path:
    bundle = new_bundle(lab)
    sign(lab, bundle, "jdoe", "performed_by")
    sign(lab, bundle, "rroe", "reviewed_by")
    sign(lab, bundle, "aapp", "approved_by")  # one role per signer per bundle
    return bundle


def reasons(bundle: Path, registry: Registry) -> str:
    check = verify_bundle(bundle, registry)
    assert not check.ok
    return "\n".join(check.reasons())


def test_signed_bundle_verifies_and_html_shows_signatures(lab: dict, signed: Path) -> None:
    check = verify_bundle(signed, lab["registry"])
    assert check.ok, check.reasons()
    assert [s.statement["role"] for s in check.signatures] == ["performed_by", "reviewed_by", "approved_by"]
    assert sorted(p.name for p in (signed / "signatures").iterdir()) == [
        "01-performed_by.dsse.json", "02-reviewed_by.dsse.json", "03-approved_by.dsse.json"]
    html = (signed / "report.html").read_text(encoding="utf-8")
    assert "Jane Doe" in html and "Richard Roe" in html and "I approve this report; verdict PASS" in html
    assert check.signatures[0].statement["signed_at"] in html


def all_files(bundle: Path) -> list[Path]:
    return sorted(p for p in bundle.rglob("*") if p.is_file())


def test_any_single_byte_flip_fails_verify(lab: dict, signed: Path) -> None:
    """Mutation test: flip one byte at sampled positions of EVERY file (start, end, random middle)."""
    rng = random.Random(7)
    tried = 0
    for path in all_files(signed):
        original = path.read_bytes()
        positions = {0, len(original) - 1, len(original) // 2, *(rng.randrange(len(original)) for _ in range(6))}
        if path.name == "report.html":  # inside the signatures block, which the manifest hash skips
            positions.add(original.index(b"Jane Doe"))
            positions.add(original.index(b"rig:signatures:end"))
        for pos in sorted(positions):
            mutated = bytearray(original)
            mutated[pos] ^= 1 << rng.randrange(8)
            path.write_bytes(bytes(mutated))
            try:
                assert not verify_bundle(signed, lab["registry"]).ok, f"{path.relative_to(signed)} byte {pos}"
            finally:
                path.write_bytes(original)
            tried += 1
    assert tried > 60
    assert verify_bundle(signed, lab["registry"]).ok


def test_deleting_or_adding_files_fails(lab: dict, signed: Path) -> None:
    for victim in ("raw/daq.csv", "manifest.json", "signatures/02-reviewed_by.dsse.json", "junit.xml"):
        backup = (signed / victim).read_bytes()
        (signed / victim).unlink()
        try:
            assert not verify_bundle(signed, lab["registry"]).ok, victim
        finally:
            (signed / victim).write_bytes(backup)
    for extra in ("raw/extra.csv", "notes.txt", "signatures/04-approved_by.dsse.json", "signatures/README"):
        (signed / extra).write_bytes(b"x")
        try:
            assert extra in reasons(signed, lab["registry"]) or "#4" in reasons(signed, lab["registry"])
        finally:
            (signed / extra).unlink()
    assert verify_bundle(signed, lab["registry"]).ok


def test_swapping_signature_order_fails(lab: dict, signed: Path) -> None:
    a, b = signed / "signatures/01-performed_by.dsse.json", signed / "signatures/02-reviewed_by.dsse.json"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.unlink(), b.unlink()
    (signed / "signatures/01-reviewed_by.dsse.json").write_bytes(data_b)
    (signed / "signatures/02-performed_by.dsse.json").write_bytes(data_a)
    text = reasons(signed, lab["registry"])
    assert "renamed or reordered" in text and "chain broken" in text


def test_replayed_signature_fails(lab: dict, signed: Path) -> None:
    other = new_bundle(lab, name="other")
    (other / "signatures").mkdir()
    shutil.copy(signed / "signatures/01-performed_by.dsse.json", other / "signatures/01-performed_by.dsse.json")
    assert "replayed" in reasons(other, lab["registry"])


def test_revoked_key_rejects_later_signatures_only(lab: dict) -> None:
    bundle = new_bundle(lab)
    sign(lab, bundle, "jdoe", "performed_by")
    registry: Registry = lab["registry"]
    registry.revoke("jdoe", reason="left the lab", at="2099-01-01T00:00:00Z")
    assert verify_bundle(bundle, registry).ok  # revoked after signing: still counts
    registry.revoke(lab["jdoe"].key_id, reason="left the lab", at="2021-01-01T00:00:00Z")
    assert "was revoked at 2021-01-01T00:00:00Z (left the lab), before the signature" in reasons(bundle, registry)
    registry.revoke(lab["jdoe"].key_id, reason="laptop stolen", at="2099-01-01T00:00:00Z", compromised=True)
    assert "revoked as compromised" in reasons(bundle, registry)
    with pytest.raises(SigningRefused, match="revoked"):
        sign(lab, new_bundle(lab, name="second"), "jdoe", "performed_by")


def test_key_outside_validity_window(lab: dict) -> None:
    registry: Registry = lab["registry"]
    late = make_signer(registry, lab["root"] / "keys", "late", "Lee Late", ["performed_by"],
                       valid_from="2099-01-01T00:00:00Z")
    with pytest.raises(SigningRefused, match="not valid before 2099"):
        sign_bundle(new_bundle(lab), late, "performed_by", registry, audit_log=lab["audit"])
    bundle = new_bundle(lab, name="b2")
    sign(lab, bundle, "jdoe", "performed_by")
    registry.find(lab["jdoe"].key_id).valid_until = "2021-01-01T00:00:00Z"
    assert "expired at 2021-01-01T00:00:00Z" in reasons(bundle, registry)


def test_wrong_role_reviewer_is_performer_and_unknown_key(lab: dict) -> None:
    bundle = new_bundle(lab)
    with pytest.raises(SigningRefused, match="rroe may not sign as performed_by"):
        sign(lab, bundle, "rroe", "performed_by")
    sign(lab, bundle, "jdoe", "performed_by")
    with pytest.raises(SigningRefused, match="jdoe performed this run and cannot also sign it as reviewed_by"):
        sign(lab, bundle, "jdoe", "reviewed_by")
    # The registry changes later: roles withdrawn, key removed -> verify names the reason.
    registry: Registry = lab["registry"]
    registry.find(lab["jdoe"].key_id).roles = ["reviewed_by"]
    assert "jdoe may not sign as performed_by" in reasons(bundle, registry)
    registry.keys = [k for k in registry.keys if k.signer_id != "jdoe"]
    assert f"unknown key {lab['jdoe'].key_id}" in reasons(bundle, registry)


def test_forged_reviewer_signature_by_performer_is_rejected_at_verify(lab: dict, tmp_path: Path) -> None:
    """Bypass sign_bundle's refusal: verify must still catch reviewer = performer."""
    bundle = new_bundle(lab)
    sign(lab, bundle, "jdoe", "performed_by")
    import reports.signing as signing
    original = signing.roles.order_problems
    signing.roles.order_problems = lambda statements: [[] for _ in statements]
    try:
        sign(lab, bundle, "jdoe", "reviewed_by")
    finally:
        signing.roles.order_problems = original
    assert "jdoe performed this run and cannot also sign it as reviewed_by" in reasons(bundle, lab["registry"])


@pytest.mark.parametrize("outcome", ["INCOMPLETE", "ABORTED"])
def test_undecided_run_can_never_be_signed_as_pass(lab: dict, outcome: str) -> None:
    bundle = new_bundle(lab, outcome)
    for role in ("performed_by", "approved_by"):
        with pytest.raises(SigningRefused, match=f"a {outcome} run has no result to sign as {role}"):
            sign(lab, bundle, "jdoe" if role == "performed_by" else "rroe", role)
    with pytest.raises(SigningRefused, match="claims a pass"):
        sign(lab, bundle, "rroe", "reviewed_by", meaning="Reviewed: passed")
    sign(lab, bundle, "station", "generated_by")
    sign(lab, bundle, "rroe", "reviewed_by")
    check = verify_bundle(bundle, lab["registry"])
    assert check.ok, check.reasons()
    assert {s.statement["verdict"] for s in check.signatures} == {outcome}
    assert "Verdict: PASS" not in (bundle / "report.html").read_text(encoding="utf-8")


def test_fail_bundle_signatures_carry_fail(lab: dict) -> None:
    bundle = new_bundle(lab, "FAIL")
    sign(lab, bundle, "jdoe", "performed_by")
    check = verify_bundle(bundle, lab["registry"])
    assert check.ok and check.signatures[0].statement["verdict"] == "FAIL"
    assert check.signatures[0].statement["meaning"].endswith("verdict FAIL")


def test_signing_a_tampered_bundle_is_refused(lab: dict) -> None:
    bundle = new_bundle(lab)
    (bundle / "raw/balance.csv").write_text("t_s,mass_g\n0,0\n")
    with pytest.raises(SigningRefused, match="raw/balance.csv: content changed"):
        sign(lab, bundle, "jdoe", "performed_by")
    assert not (bundle / "signatures").exists()


def test_key_file_mode_passphrase_and_tamper(tmp_path: Path) -> None:
    path = tmp_path / "k" / "a.key"
    key = generate_key_file(path, signer_id="a", printed_name="A Person", passphrase=PASSPHRASE, scrypt_log2_n=10)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key_file(path, PASSPHRASE).key_id == key.key_id
    assert read_key_header(path)["kdf"]["name"] == "scrypt"
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_key_file(path, "not the passphrase!")
    text = path.read_text().replace('"printed_name":"A Person"', '"printed_name":"B Person"')
    path.write_text(text)
    with pytest.raises(KeyFileError, match="wrong passphrase .*or the file was modified"):
        load_key_file(path, PASSPHRASE)
    with pytest.raises(Exception, match="already exists"):
        generate_key_file(path, signer_id="a", printed_name="A", passphrase=PASSPHRASE, scrypt_log2_n=10)


def test_default_kdf_is_strong() -> None:
    from reports import keys

    assert keys.DEFAULT_SCRYPT_LOG2_N >= 15
    import inspect

    assert inspect.signature(keys.generate_key_file).parameters["scrypt_log2_n"].default == keys.DEFAULT_SCRYPT_LOG2_N


def test_signature_audit_trail(lab: dict, signed: Path) -> None:
    import json

    from reports.audit import verify_log

    kinds = [json.loads(l)["kind"] for l in lab["audit"].read_text().splitlines()]
    assert kinds == ["report_built", "signature", "signature", "signature"]
    assert verify_log(lab["audit"]).ok
