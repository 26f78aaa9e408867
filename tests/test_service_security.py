"""Security of the bench service: who may do what, cross-site requests, sessions, the audit trail,
and that nothing about a passphrase or password is ever written anywhere.

The service here believes it is bound to 0.0.0.0 (a network address), so accounts are required;
the socket itself is loopback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from reports import audit
from reports.key_registry import Registry
from reports.synthetic import make_signer
from tests.panel_fixtures import PASSWORDS, PanelServer, make_accounts

PASSPHRASE = "olivia's very secret passphrase 42"
# Runs on the simulated bench under a loaded machine (module fixtures included): waits are conditions.
pytestmark = pytest.mark.timeout(300)

SERIAL = {"item_serial": "NE1000-SIM-0001"}
SHORT = {"duration_min": "2", "rate_ml_h": "6", "settle_s": "5", "sample_interval_s": "10"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, station_writer):
    root = tmp_path_factory.mktemp("security")
    registry = Registry(root / "keys" / "registry.json")
    make_signer(registry, root / "keys", "olivia", "Olivia", ["performed_by"], passphrase=PASSPHRASE)
    make_signer(registry, root / "keys", "rita", "Rita", ["reviewed_by"], passphrase=PASSPHRASE)
    station = station_writer(root, set={"signing.admin_keys": list(registry.pinned)})  # the root of trust
    accounts = make_accounts(root / "accounts.json", keys={"olivia": str(root / "keys" / "olivia.key"),
                                                           "rita": str(root / "keys" / "rita.key")})
    with PanelServer(station, accounts=accounts, host="0.0.0.0", registry=registry.path) as server:
        server.root = root  # type: ignore[attr-defined]
        yield server


@pytest.fixture(scope="module")
def finished_run(lab: PanelServer) -> dict:
    """One PASS run with a report bundle, started by the operator."""
    client = lab.client("olivia")
    job = client.submit("delivery_check", **SHORT, **SERIAL, answers={"setup": "done"})
    done = client.follow(job["id"])[-1]["summary"]
    assert done["outcome"] == "PASS", done
    return done


def audit_entries(lab: PanelServer) -> list[dict]:
    path = lab.service.audit_log
    return [__import__("json").loads(line) for line in path.read_text().splitlines()]


def test_unauthenticated_requests_are_refused(lab: PanelServer) -> None:
    anon = httpx.Client(base_url=lab.url, headers={"Origin": lab.url}, follow_redirects=False)
    for path in ("/api/station", "/api/jobs", "/api/runs", "/api/events", "/api/session"):
        assert anon.get(path).status_code == 401, path
    assert anon.post("/api/jobs", json={"procedure": "delivery_check", "fields": SERIAL}).status_code == 401
    page = anon.get("/")
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert anon.get("/runs").status_code == 303
    assert anon.get("/login").status_code == 200  # the sign-in page itself is public
    assert anon.get("/api/openapi.json").status_code == 200
    r = anon.post("/api/login", json={"user": "olivia", "password": "wrong password!"})
    assert r.status_code == 401 and "set-cookie" not in r.headers
    r = anon.post("/api/login", json={"user": "nobody", "password": "whatever123"})
    assert r.status_code == 401


def test_session_cookie_is_httponly_samesite_strict_and_logout_ends_it(lab: PanelServer) -> None:
    http = httpx.Client(base_url=lab.url, headers={"Origin": lab.url})
    r = http.post("/api/login", json={"user": "rita", "password": PASSWORDS["rita"]})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    csrf = r.json()["csrf"]
    assert http.get("/api/session").json()["user"] == "rita"
    assert http.post("/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    http.cookies.clear()
    http.cookies.set("rig_session", r.cookies["rig_session"])  # replaying the old cookie
    assert http.get("/api/session").status_code == 401


def test_wrong_role_is_refused(lab: PanelServer, finished_run: dict) -> None:
    reviewer = lab.client("rita")
    r = reviewer.post("/api/jobs", {"procedure": "delivery_check", "fields": {**SHORT, **SERIAL}})
    assert r.status_code == 403 and "may not start" in r.json()["error"]
    run = finished_run["run_id"]
    r = reviewer.post(f"/api/runs/{run}/sign", {"role": "performed_by", "passphrase": PASSPHRASE})
    assert r.status_code == 403 and "reviewed_by" in r.json()["error"]
    operator = lab.client("olivia")
    r = operator.post(f"/api/runs/{run}/sign", {"role": "approved_by", "passphrase": PASSPHRASE})
    assert r.status_code == 403
    # a role the panel allows is still checked by the key registry: rita's key may not approve
    admin = lab.client("adam")
    r = admin.post(f"/api/runs/{run}/sign", {"role": "approved_by", "passphrase": PASSPHRASE})
    assert r.status_code == 422 and "no signing key" in r.json()["error"]


def test_cross_site_and_csrf_less_requests_are_refused(lab: PanelServer) -> None:
    client = lab.client("olivia")
    body = {"procedure": "delivery_check", "fields": {**SHORT, **SERIAL}}
    before = len(client.get("/api/jobs").json()["jobs"])
    refused = [
        client.post("/api/jobs", body, headers={"Origin": "https://evil.example"}),
        client.post("/api/jobs", body, headers={"Sec-Fetch-Site": "cross-site"}),
        client.post("/api/jobs", body, headers={"Origin": "null"}),
        client.post("/api/jobs", body, csrf=False),
        client.post("/api/jobs", body, headers={"X-CSRF-Token": "forged"}),
    ]
    for r in refused:
        assert r.status_code == 403, r.text
    assert "cross-site" in refused[0].json()["error"] and "CSRF" in refused[3].json()["error"]
    # a plain cross-site form post (what another site's page can make a browser send)
    form = client.http.post("/procedures/delivery_check/start", data={**SHORT, **SERIAL},
                            headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert form.status_code == 403
    login = httpx.post(f"{lab.url}/api/login", json={"user": "olivia", "password": PASSWORDS["olivia"]},
                       headers={"Origin": "https://evil.example"})
    assert login.status_code == 403
    assert len(client.get("/api/jobs").json()["jobs"]) == before
    refusals = [e for e in audit_entries(lab) if e["kind"] == "panel_request" and e["data"].get("refused")]
    assert any(e["data"]["user"] == "olivia" and "cross-site" in e["data"]["refused"] for e in refusals)


def test_every_state_change_is_in_the_audit_trail_with_the_user(lab: PanelServer, finished_run: dict) -> None:
    client = lab.client("olivia")
    assert httpx.post(f"{lab.url}/api/login", json={"user": "olivia", "password": "not her password"},
                      headers={"Origin": lab.url}).status_code == 401
    r = client.post(f"/api/jobs/{finished_run['id']}/abort")
    assert r.status_code == 409 and "already ended" in r.json()["error"]
    entries = audit_entries(lab)
    keys = ("user", "method", "url_path", "status")
    requests = [{k: e["data"].get(k) for k in keys} for e in entries if e["kind"] == "panel_request"]
    assert all(e["data"]["station"] == lab.station.id for e in entries if e["kind"] == "panel_request")
    assert {"user": "olivia", "method": "POST", "url_path": "/api/jobs", "status": 201} in requests
    assert {"user": "olivia", "method": "POST", "url_path": f"/api/jobs/{finished_run['id']}/abort",
            "status": 409} in requests
    logins = [{k: e["data"].get(k) for k in ("user", "ok", "via")} for e in entries if e["kind"] == "panel_login"]
    assert {"user": "olivia", "ok": True, "via": "api"} in logins
    assert {"user": "olivia", "ok": False, "via": "api"} in logins
    assert not any("not her password" in line for line in lab.service.audit_log.read_text().splitlines())
    check = audit.verify_log(lab.service.audit_log)
    assert check.ok, check


def test_signing_in_the_panel_never_writes_the_passphrase(lab: PanelServer, finished_run: dict, capfd) -> None:
    operator = lab.client("olivia")
    run = finished_run["run_id"]
    wrong = operator.post(f"/api/runs/{run}/sign", {"role": "performed_by", "passphrase": PASSPHRASE + "x"})
    assert wrong.status_code == 422 and PASSPHRASE not in wrong.text
    good = operator.post(f"/api/runs/{run}/sign", {"role": "performed_by", "passphrase": PASSPHRASE})
    assert good.status_code == 201, good.text
    assert good.json()["verify"]["ok"] and good.json()["verify"]["signatures"][0]["signer_id"] == "olivia"
    secrets = [PASSPHRASE.encode(), PASSPHRASE.encode().hex().encode(), PASSWORDS["olivia"].encode()]
    root: Path = lab.root  # type: ignore[attr-defined]
    for path in [p for p in root.rglob("*") if p.is_file()]:
        data = path.read_bytes()
        for secret in secrets:
            assert secret not in data, f"{path} contains a secret"
    out = capfd.readouterr()
    assert PASSPHRASE not in out.out + out.err and PASSWORDS["olivia"] not in out.out + out.err
    signatures = [e for e in audit_entries(lab) if e["kind"] == "signature"]
    assert signatures and signatures[-1]["data"]["signer_id"] == "olivia"


def test_a_network_bind_without_accounts_is_refused(tmp_path: Path, station_writer) -> None:
    station = station_writer(tmp_path)
    done = subprocess.run([sys.executable, "-m", "rig", "serve", "--station", str(station), "--host", "0.0.0.0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "reachable from the network" in done.stderr and "Traceback" not in done.stderr


def _self_signed(directory: Path) -> tuple[Path, Path]:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "panel.crt", directory / "panel.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.timeout(600)  # a loaded 2-core machine: every wait is for a condition
def test_tls_from_the_station_file_and_secure_cookies(tmp_path: Path, station_writer) -> None:
    import socket
    import ssl
    import time

    cert, key = _self_signed(tmp_path)
    make_accounts(tmp_path / "accounts.json")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    station = station_writer(tmp_path, set={"service.tls_certificate": str(cert), "service.tls_key": str(key),
                                            "service.accounts": str(tmp_path / "accounts.json"),
                                            "service.port": port})
    proc = subprocess.Popen([sys.executable, "-m", "rig", "serve", "--station", str(station), "--no-check"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + 240  # a loaded 2-core machine starts Python slowly
        while True:
            try:
                r = httpx.post(f"{url}/api/login", json={"user": "olivia", "password": PASSWORDS["olivia"]},
                               headers={"Origin": url}, verify=ssl.create_default_context(cafile=str(cert)))
                break
            except httpx.ConnectError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "rig serve did not come up"
                time.sleep(0.2)
        assert r.status_code == 200
        cookie = r.headers["set-cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
            httpx.get(f"http://127.0.0.1:{port}/api/openapi.json", timeout=5).raise_for_status()
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert f"panel at https://127.0.0.1:{port}/" in out
    assert "Traceback" not in err
