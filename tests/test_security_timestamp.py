"""Issue 18, finding 1 completed: an RFC 3161 time-stamp authority gives signatures a trusted time.

Every test talks to a real TSA over HTTP on 127.0.0.1 (tests/tsa_server.py: it parses the DER
TimeStampReq and signs a CMS TimeStampToken); nothing of our client is mocked. The attacks: a
token taken from another signature, a token from another authority, a backdated ``signed_at``
(key revoked, the signer's script dates the statement before the revocation and gets a real
token for it), a token removed, the TSA left out of the statement. Each is rejected by
`rig report verify`; an unreachable or refusing TSA refuses the signature with nothing written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from reports import audit
from reports.bundle import build_bundle
from reports.canonical import sha256_hex
from reports.keys import load_key_file
from reports.key_registry import Registry
from reports.synthetic import make_signer, write_record
from reports.timestamp import TimeStampAuthority, request_token
from rig.cli.main import main
from rig.errors import ConfigError
from rig.station.config import load_station
from tests.test_security_signing import forge, set_created_at
from tests.tsa_server import TsaServer, TsaState, make_tsa_identity, write_certificate

PASSPHRASE = "correct horse battery staple"  # reports.synthetic's default


def rig(*argv: Any) -> int:
    return main([str(a) for a in argv])


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, station_writer: Any) -> Any:
    """A registry with the synthetic run's operator (Jane Doe, performed_by), a TSA serving on
    127.0.0.1 and a station file naming the registry, audit trail, pinned admin and that TSA."""
    for var in ("RIG_AUDIT_LOG", "RIG_KEY_REGISTRY", "RIG_STATION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RIG_KEY_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("COLUMNS", "200")
    registry = Registry(tmp_path / "keys" / "registry.json")
    make_signer(registry, tmp_path / "keys", "demo.tech", "Jane Doe", ["performed_by"])
    key, cert = make_tsa_identity("Lab TSA")
    state = TsaState(key, cert)
    cert_file = write_certificate(cert, tmp_path / "tsa.pem")
    with TsaServer(state) as url:
        common = {"station.key_registry": str(registry.path), "station.audit_log": str(tmp_path / "audit.jsonl"),
                  "signing.admin_keys": list(registry.pinned)}
        yield {
            "root": tmp_path, "registry": registry, "audit": tmp_path / "audit.jsonl", "tsa": state, "url": url,
            "cert_file": cert_file, "key": tmp_path / "keys" / "demo.tech.key",
            "station": station_writer(tmp_path, set={**common, "signing.tsa_url": url,
                                                     "signing.tsa_certificate": str(cert_file)}),
            "plain": station_writer(tmp_path, name="plain.toml", set=common),
            "authority": TimeStampAuthority(cert, url=url),
        }


def new_bundle(lab: dict, name: str = "r1") -> Path:
    return build_bundle(write_record(lab["root"] / "runs" / name, "PASS", duration_s=60.0), audit_log=lab["audit"])


def sign(lab: dict, bundle: Path, station: str = "station") -> int:
    return rig("report", "sign", bundle, "--role", "performed_by", "--key", lab["key"], "--station", lab[station])


def verify(lab: dict, bundle: Path, capsys: pytest.CaptureFixture[str], *extra: Any, station: str = "station") -> tuple[int, str]:
    capsys.readouterr()
    code = rig("report", "verify", bundle, "--station", lab[station], *extra)
    out = capsys.readouterr().out
    return code, out if "--json" in extra else " ".join(out.split())  # rich wraps long reasons


def test_signing_stores_a_token_and_verify_judges_by_its_time(lab: dict, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = new_bundle(lab)
    assert sign(lab, bundle) == 0
    token = bundle / "signatures" / "01-performed_by.tst"
    assert token.is_file() and len(lab["tsa"].requests) == 1
    code, out = verify(lab, bundle, capsys)
    assert code == 0, out
    assert "Bundle VALID" in out and "(time-stamped 20" in out and "attested by the time-stamp authority" in out
    assert "own claim" not in out
    entry = json.loads(lab["audit"].read_text().splitlines()[-1])
    assert entry["kind"] == "signature" and entry["data"]["tst_sha256"] == sha256_hex(token.read_bytes())
    code, out = verify(lab, bundle, capsys, "--json")
    assert json.loads(out)["signatures"][0]["time_stamped_at"].startswith("20")
    assert rig("report", "show", bundle, "--station", lab["station"]) == 4  # intact; the synthetic run is NOT VALID (calibration)
    assert "(TSA 20" in capsys.readouterr().out


def test_without_a_tsa_the_time_stays_the_signers_claim(lab: dict, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = new_bundle(lab)
    assert sign(lab, bundle, station="plain") == 0
    assert not list((bundle / "signatures").glob("*.tst")) and not lab["tsa"].requests
    code, out = verify(lab, bundle, capsys, station="plain")
    assert code == 0 and "signing times are the signers' own claim" in out


def test_a_token_of_another_signature_is_rejected(lab: dict, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = new_bundle(lab, "r1"), new_bundle(lab, "r2")
    assert sign(lab, first) == 0 and sign(lab, second) == 0
    (first / "signatures" / "01-performed_by.tst").write_bytes((second / "signatures" / "01-performed_by.tst").read_bytes())
    code, out = verify(lab, first, capsys)
    assert code == 1 and "Bundle INVALID" in out
    assert "time-stamps other data" in out and "a token taken from another signature" in out


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "garbage"])
def test_a_damaged_token_is_a_reason_not_a_traceback(lab: dict, damage: str, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = new_bundle(lab)
    assert sign(lab, bundle) == 0
    path = bundle / "signatures" / "01-performed_by.tst"
    token = bytearray(path.read_bytes())
    if damage == "truncated":
        token = token[: len(token) // 2]
    elif damage == "flipped byte":
        token[-1] ^= 0xFF  # in the TSA's signature (the certificates a token carries are not what is trusted)
    else:
        token = bytearray(b"\x30\x82\xff\xff" + b"x" * 40)
    path.write_bytes(bytes(token))
    code, out = verify(lab, bundle, capsys)
    assert code == 1 and "time-stamp token 01-performed_by.tst:" in out


def test_a_token_from_another_tsa_is_rejected(lab: dict, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = new_bundle(lab)
    assert sign(lab, bundle) == 0
    envelope = (bundle / "signatures" / "01-performed_by.dsse.json").read_bytes()
    rogue_key, rogue_cert = make_tsa_identity("Lab TSA")  # same name, another key: a look-alike authority
    with TsaServer(TsaState(rogue_key, rogue_cert)) as url:
        rogue_token = request_token(TimeStampAuthority(rogue_cert, url=url), envelope)  # a genuine exchange
    (bundle / "signatures" / "01-performed_by.tst").write_bytes(rogue_token)
    code, out = verify(lab, bundle, capsys)
    assert code == 1 and "not issued by the configured TSA" in out and "another authority's token" in out


def _forge(lab: dict, bundle: Path, *, signed_at: str, tsa: str | None) -> bytes:
    """The revoked key holder's script (tests/test_security_signing.py): a statement dated at will,
    the unsigned manifest dated to match, signed with the key."""
    set_created_at(bundle, "2026-01-10T09:30:00.000000Z")
    return forge(bundle, load_key_file(lab["key"], PASSPHRASE), signed_at=signed_at,
                 anchor=audit.anchor_of(lab["audit"]), extra={"time_stamp_authority": tsa} if tsa else None)


def test_a_backdated_signature_is_contradicted_by_its_token(lab: dict, capsys: pytest.CaptureFixture[str]) -> None:
    """Key revoked 2026-02-01; the statement says 2026-01-15 (after the run ended 2026-01-10, before
    the revocation), so without a TSA it would pass verify. The TSA's token says: today."""
    os.environ["RIG_ADMIN_PASSPHRASE"] = PASSPHRASE
    assert rig("keys", "revoke", "demo.tech", "--reason", "left the lab", "--at", "2026-02-01T00:00:00Z",
               "--admin-key", lab["root"] / "keys" / "registry-admin.key", "--station", lab["station"]) == 0
    bundle = new_bundle(lab)
    backdated = "2026-01-15T08:00:00.000000Z"
    envelope = _forge(lab, bundle, signed_at=backdated, tsa=lab["authority"].fingerprint)
    (bundle / "signatures" / "01-performed_by.tst").write_bytes(request_token(lab["authority"], envelope))
    code, out = verify(lab, bundle, capsys)
    assert code == 1 and "Bundle INVALID" in out
    assert f"signed_at {backdated} is contradicted by the time-stamp token" in out and "backdated" in out
    assert "was revoked at 2026-02-01" in out
    # the same signer leaves the token out: the statement says it was time-stamped
    (bundle / "signatures" / "01-performed_by.tst").unlink()
    code, out = verify(lab, bundle, capsys)
    assert code == 1 and "01-performed_by.tst is missing" in out
    # ... or leaves the TSA out of the statement: the station's TSA was in service when the run ended
    _forge(lab, bundle, signed_at=backdated, tsa=None)
    code, out = verify(lab, bundle, capsys)
    assert code == 1 and "must be time-stamped" in out
    # the control: without a TSA at the station this backdated signature passes (the old hole)
    code, out = verify(lab, bundle, capsys, station="plain")
    assert code == 0 and "own claim" in out, out


def test_a_statement_naming_another_tsa_is_rejected(lab: dict, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = new_bundle(lab)
    rogue_key, rogue_cert = make_tsa_identity("Rogue TSA")
    with TsaServer(TsaState(rogue_key, rogue_cert)) as url:
        rogue = TimeStampAuthority(rogue_cert, url=url)
        import datetime as dt

        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        envelope = _forge(lab, bundle, signed_at=now, tsa=rogue.fingerprint)
        (bundle / "signatures" / "01-performed_by.tst").write_bytes(request_token(rogue, envelope))
    code, out = verify(lab, bundle, capsys)
    assert code == 1 and "time-stamped by another authority" in out


def test_a_token_checked_away_from_the_station(lab: dict, capsys: pytest.CaptureFixture[str]) -> None:
    """A reviewer without the station's TSA setting cannot check the token: INVALID with the reason,
    and VALID once they give the TSA's certificate."""
    bundle = new_bundle(lab)
    assert sign(lab, bundle) == 0
    code, out = verify(lab, bundle, capsys, station="plain")
    assert code == 1 and "no TSA certificate is configured" in out
    code, out = verify(lab, bundle, capsys, "--tsa-certificate", lab["cert_file"], station="plain")
    assert code == 0, out


@pytest.mark.parametrize("trouble", ["unreachable", "refuses", "lies about the time"])
def test_no_token_no_signature(lab: dict, trouble: str, capsys: pytest.CaptureFixture[str], station_writer: Any) -> None:
    """Signing is refused with one clear line; the bundle, its page and the audit trail are unchanged."""
    bundle = new_bundle(lab)
    station = lab["station"]
    if trouble == "unreachable":
        import socket

        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        station = station_writer(lab["root"], name="dead.toml", set={
            "station.key_registry": str(lab["registry"].path), "station.audit_log": str(lab["audit"]),
            "signing.admin_keys": list(lab["registry"].pinned), "signing.tsa_url": f"http://127.0.0.1:{port}/tsa",
            "signing.tsa_certificate": str(lab["cert_file"])})
    elif trouble == "refuses":
        lab["tsa"].refuse = True
    else:
        import datetime as dt

        lab["tsa"].gen_time_offset = dt.timedelta(hours=2)
    log_before, page_before = lab["audit"].read_bytes(), (bundle / "report.html").read_bytes()
    capsys.readouterr()
    code = rig("report", "sign", bundle, "--role", "performed_by", "--key", lab["key"], "--station", station)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "nothing was signed" in err
    assert {"unreachable": "unreachable", "refuses": "refused: rejection",
            "lies about the time": "differs from the time-stamp authority's"}[trouble] in err
    assert not (bundle / "signatures").exists() or not any((bundle / "signatures").iterdir())
    assert lab["audit"].read_bytes() == log_before and (bundle / "report.html").read_bytes() == page_before
    assert rig("audit", "verify", lab["audit"]) == 0


def test_station_file_tsa_settings_are_checked(lab: dict, station_writer: Any) -> None:
    half = station_writer(lab["root"], name="half.toml", set={"signing.tsa_url": lab["url"]})
    with pytest.raises(ConfigError, match="signing.tsa_certificate.*needs both"):
        load_station(half)
    _, server_cert = make_tsa_identity("Web server", time_stamping=False)
    wrong = station_writer(lab["root"], name="wrong.toml", set={
        "signing.tsa_url": lab["url"], "signing.tsa_certificate": str(write_certificate(server_cert, lab["root"] / "web.pem"))})
    with pytest.raises(ConfigError, match="not a time-stamp authority certificate"):
        load_station(wrong)
    bad_url = station_writer(lab["root"], name="url.toml", set={
        "signing.tsa_url": "ftp://tsa", "signing.tsa_certificate": str(lab["cert_file"])})
    with pytest.raises(ConfigError, match="not a time-stamp authority URL"):
        load_station(bad_url)


def test_a_token_without_a_declared_authority_is_named(lab: dict, capsys: pytest.CaptureFixture[str]) -> None:
    """A token slipped beside a signature whose statement names no TSA: the statement is what was
    signed, so the token cannot vouch for it."""
    stamped, plain = new_bundle(lab, "r1"), new_bundle(lab, "r2")
    assert sign(lab, stamped) == 0 and sign(lab, plain, station="plain") == 0
    (plain / "signatures" / "01-performed_by.tst").write_bytes((stamped / "signatures" / "01-performed_by.tst").read_bytes())
    code, out = verify(lab, plain, capsys, station="plain")
    assert code == 1 and "a time-stamp token, but the signed statement names no time-stamp authority" in out


def test_a_statement_dated_after_its_token_and_a_token_before_the_run_ended(lab: dict, capsys: pytest.CaptureFixture[str]) -> None:
    """The run's record says it ended in 2099; the statement claims 2099 too; the TSA's genTime is
    now: a signature cannot postdate its own time stamp, nor be stamped before its run ended."""
    run = write_record(lab["root"] / "runs" / "future", "PASS", duration_s=60.0)
    record = run / "record.jsonl"
    record.write_text(record.read_text(encoding="utf-8").replace("2026-01-10T09:21:02", "2099-01-10T09:21:02"),
                      encoding="utf-8")
    bundle = build_bundle(run, audit_log=lab["audit"])
    results = json.loads((bundle / "results.json").read_text(encoding="utf-8"))
    assert results["run"]["finished_utc"].startswith("2099"), results["run"]  # the edit reached the bundle
    envelope = forge(bundle, load_key_file(lab["key"], PASSPHRASE), signed_at="2099-01-11T00:00:00.000000Z",
                     anchor=audit.anchor_of(lab["audit"]), extra={"time_stamp_authority": lab["authority"].fingerprint})
    (bundle / "signatures" / "01-performed_by.tst").write_bytes(request_token(lab["authority"], envelope))
    code, out = verify(lab, bundle, capsys)
    assert code == 1
    assert "a signature cannot postdate its own time stamp" in out
    assert "before the run it signs ended (2099-01-10" in out, out


def test_a_time_stamped_signature_by_an_unregistered_key(lab: dict, capsys: pytest.CaptureFixture[str]) -> None:
    """A genuine token over a signature by a key the registry never enrolled: the token is checked,
    and the signature is still refused for its signer."""
    from reports.keys import generate_key_file

    stranger = generate_key_file(lab["root"] / "stranger.key", signer_id="stranger", printed_name="Jane Doe",
                                 passphrase=PASSPHRASE, scrypt_log2_n=10)
    bundle = new_bundle(lab)
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    set_created_at(bundle, "2026-01-10T09:30:00.000000Z")
    envelope = forge(bundle, stranger, signed_at=now, anchor=audit.anchor_of(lab["audit"]),
                     extra={"time_stamp_authority": lab["authority"].fingerprint})
    (bundle / "signatures" / "01-performed_by.tst").write_bytes(request_token(lab["authority"], envelope))
    code, out = verify(lab, bundle, capsys, "--json")
    report = json.loads(out)
    assert code == 1 and report["signatures"][0]["problems"], report["signatures"][0]
    assert report["signatures"][0]["time_stamped_at"].startswith("20")  # the token itself was good
