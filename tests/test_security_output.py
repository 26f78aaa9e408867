"""Attack tests, issue 18 finding 7: terminal escape injection through printed names and fields.

Each test performs the attack (ESC/CSI sequences, bidi overrides, zero-width characters in data
that the command line prints) and asserts it fails: the bytes reach the terminal escaped, and
names with such characters are refused where people type them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from reports.bundle import build_bundle, load_manifest
from reports.canonical import canonical_json, sha256_hex
from reports.dsse import sign_envelope
from reports.keys import key_id_of
from reports.key_registry import Registry
from reports.synthetic import make_signer, write_record
from reports.verify import STATEMENT_KIND, chain_hash
from rig.cli.main import main
from rig.engine.operator import Operator
from rig.errors import UsageError
from rig.textsafe import for_terminal, name_problem

PASSPHRASE = "correct horse battery staple"
CLEAR_AND_FAKE = "\x1b[2J\x1b[H\x1b[1;32mBundle VALID\x1b[0m"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("RIG_KEY_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("RIG_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.delenv("RIG_KEY_REGISTRY", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    registry = Registry(tmp_path / "keys" / "registry.json")
    make_signer(registry, tmp_path / "keys", "jdoe", "Jane Doe", ["performed_by"])
    return {"root": tmp_path, "registry": registry}


def forge_unregistered_signature(bundle: Path, printed_name: str) -> None:
    """What the attacker does: a DSSE envelope by a key nobody registered, any printed name."""
    manifest, manifest_bytes = load_manifest(bundle)
    key = Ed25519PrivateKey.generate()
    kid = key_id_of(key.public_key())
    statement = {
        "statement": STATEMENT_KIND, "manifest_sha256": sha256_hex(manifest_bytes),
        "report_id": manifest["report_id"], "run_id": manifest["run_id"], "verdict": manifest["verdict"],
        "role": "performed_by", "meaning": "I performed this test; verdict PASS", "signer_id": "x",
        "printed_name": printed_name, "key_id": kid, "signed_at": "2026-01-10T10:00:00.000000Z",
        "sequence": 1, "prior_signatures_sha256": chain_hash([]),
        "simulated": manifest["simulated"], "conditions": manifest["conditions"],
    }
    (bundle / "signatures").mkdir()
    (bundle / "signatures" / "01-performed_by.dsse.json").write_bytes(
        sign_envelope(canonical_json(statement), key, kid))


def test_forged_printed_name_cannot_rewrite_the_verify_screen(env: dict, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_record(env["root"] / "runs" / "r1", "PASS", duration_s=300.0)
    bundle = build_bundle(run)
    forge_unregistered_signature(bundle, CLEAR_AND_FAKE)
    code = main(["report", "verify", str(bundle), "--registry", str(env["registry"].path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "\x1b" not in out, "an escape sequence from the bundle reached the terminal"
    assert "\\x1b[2J" in out and "INVALID" in out and "unknown key" in out
    assert main(["report", "show", str(bundle), "--registry", str(env["registry"].path)]) == 5  # invalid bundle
    assert "\x1b" not in capsys.readouterr().out


@pytest.mark.parametrize("name", [CLEAR_AND_FAKE, "Jane\u202eeoD", "Ja\u200bne Doe", "Jane\x85Doe", "Jane\x7fDoe"])
def test_keys_new_refuses_control_bidi_and_zero_width_names(env: dict, name: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["keys", "new", "--id", "evil", "--name", name, "--roles", "performed_by",
                 "--out", str(env["root"] / "private"), "--registry", str(env["registry"].path)])
    err = capsys.readouterr().err
    assert code == 2 and "control or invisible characters" in err
    assert "\x1b" not in err and "\u202e" not in err
    assert not (env["root"] / "private" / "evil.key").exists()


@pytest.mark.parametrize("name", ["A. Tech\x1b]0;pwned\x07", "A\u2066Tech", "\u200b"])
def test_operator_names_are_validated_like_station_strings(name: str) -> None:
    with pytest.raises(UsageError, match="operator"):
        Operator(name, {})


def test_rig_show_prints_record_fields_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_record(tmp_path / "r1", "PASS", duration_s=60.0)
    record = run / "record.jsonl"
    lines = record.read_bytes().splitlines()
    first = json.loads(lines[0])
    first["operator"] = "jdoe" + CLEAR_AND_FAKE  # a record copied from elsewhere, edited
    record.write_bytes(b"\n".join([json.dumps(first).encode(), *lines[1:]]) + b"\n")
    assert main(["show", str(run)]) == 4  # the synthetic balance is overdue: NOT VALID FOR RELEASE
    out = capsys.readouterr().out
    assert "\x1b" not in out and "jdoe\\x1b[2J" in out


def test_registry_entry_whose_key_id_is_not_its_key_is_refused(env: dict) -> None:
    path = env["registry"].path
    document = json.loads(path.read_text())
    other = Ed25519PrivateKey.generate()
    document["keys"][0]["key_id"] = key_id_of(other.public_key())  # borrow another key's identity
    path.write_text(json.dumps(document))
    with pytest.raises(UsageError, match="not the fingerprint of its public key"):
        Registry.load(path)


def test_registry_entry_with_escape_in_printed_name_is_refused(env: dict) -> None:
    path = env["registry"].path
    document = json.loads(path.read_text())
    document["keys"][0]["printed_name"] = "Jane" + CLEAR_AND_FAKE
    path.write_text(json.dumps(document))
    with pytest.raises(UsageError, match="printed_name"):
        Registry.load(path)


def test_sanitiser_escapes_every_dangerous_class_and_keeps_ordinary_text() -> None:
    assert for_terminal("Jürgen Müller, 20 °C") == "Jürgen Müller, 20 °C"
    assert for_terminal("a\x1bb\x9bc\x7fd\u202ee\u200bf\ufeffg\u2028h") == \
        "a\\x1bb\\x9bc\\x7fd\\u202ee\\u200bf\\ufeffg\\u2028h"
    assert for_terminal("two\nlines\tok\x1b", multiline=True) == "two\nlines\tok\\x1b"
    assert name_problem("Jane Doe", "name") is None
    assert "leading or trailing" in str(name_problem(" Jane", "name"))
