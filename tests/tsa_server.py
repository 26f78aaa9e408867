"""A small, real RFC 3161 time-stamp authority over HTTP on 127.0.0.1, for tests.

Why real: the client (reports.timestamp) must be tested against the protocol, not against a
mock of itself. This server parses the DER TimeStampReq it is POSTed, builds a TSTInfo, wraps it
in a CMS SignedData with the signed attributes RFC 3161/5652 require, signs it with its own key
(ECDSA P-256 or RSA) and answers a DER TimeStampResp as application/timestamp-reply. Knobs let a
test make it lie about the time or refuse.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as a509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def make_tsa_identity(name: str = "Test TSA", *, rsa_key: bool = False, time_stamping: bool = True
                      ) -> tuple[Any, x509.Certificate]:
    """A key and a self-signed certificate for a TSA (extended key usage timeStamping, critical)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if rsa_key else ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rig tests")])
    now = _dt.datetime.now(_dt.timezone.utc)
    usage = ExtendedKeyUsageOID.TIME_STAMPING if time_stamping else ExtendedKeyUsageOID.SERVER_AUTH
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - _dt.timedelta(days=365))
            .not_valid_after(now + _dt.timedelta(days=365))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def write_certificate(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


class Reply(core.Sequence):
    """TimeStampResp with the token OPTIONAL, as RFC 3161 §2.4.2 has it (a refusal carries none)."""

    _fields = [("status", tsp.PKIStatusInfo), ("time_stamp_token", cms.ContentInfo, {"optional": True})]


@dataclass
class TsaState:
    key: Any
    cert: x509.Certificate
    gen_time_offset: _dt.timedelta = _dt.timedelta(0)  # lie about the time by this much
    refuse: bool = False  # answer status "rejection"
    requests: list[bytes] = field(default_factory=list)
    serial: int = 0


def _sign(key: Any, data: bytes) -> tuple[bytes, str]:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256()), "sha256_rsa"
    return key.sign(data, ec.ECDSA(hashes.SHA256())), "sha256_ecdsa"


def time_stamp_response(state: TsaState, request_der: bytes) -> bytes:
    """The DER TimeStampResp for a DER TimeStampReq (granted, or a rejection when ``state.refuse``)."""
    request = tsp.TimeStampReq.load(request_der)
    if state.refuse:
        return Reply({"status": {"status": "rejection", "status_string": ["policy refuses"],
                                 "fail_info": tsp.PKIFailureInfo({"unaccepted_policy"})}}).dump()
    state.serial += 1
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0) + state.gen_time_offset
    info = tsp.TSTInfo({
        "version": "v1", "policy": "1.3.6.1.4.1.99999.1.1",
        "message_imprint": request["message_imprint"],
        "serial_number": state.serial, "gen_time": now,
        "accuracy": {"seconds": 1},
        "nonce": request["nonce"].native if request["nonce"].native is not None else None,
    })
    content = info.dump()
    cert_asn1 = a509.Certificate.load(state.cert.public_bytes(serialization.Encoding.DER))
    attrs = cms.CMSAttributes([
        {"type": "content_type", "values": ["tst_info"]},
        {"type": "signing_time", "values": [cms.Time({"utc_time": now})]},
        {"type": "message_digest", "values": [hashlib.sha256(content).digest()]},
        {"type": "signing_certificate_v2", "values": [{"certs": [{"cert_hash": hashlib.sha256(cert_asn1.dump()).digest()}]}]},
    ])
    signature, algorithm = _sign(state.key, attrs.dump())
    signer = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
            "issuer": cert_asn1["tbs_certificate"]["issuer"], "serial_number": cert_asn1["tbs_certificate"]["serial_number"]})}),
        "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
        "signed_attrs": attrs,
        "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": algorithm}),
        "signature": signature,
    })
    signed = cms.SignedData({
        "version": "v3",
        "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
        "encap_content_info": {"content_type": "tst_info", "content": cms.ParsableOctetString(content)},
        "certificates": [cert_asn1] if request["cert_req"].native else [],
        "signer_infos": [signer],
    })
    token = cms.ContentInfo({"content_type": "signed_data", "content": signed})
    return Reply({"status": {"status": "granted"}, "time_stamp_token": token}).dump()


class TsaServer:
    """``with TsaServer(state) as url:`` a TSA at ``url`` until the block ends."""

    def __init__(self, state: TsaState) -> None:
        self.state = state

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Type") != "application/timestamp-query":
                    self.send_error(415, "expected application/timestamp-query")
                    return
                state.requests.append(body)
                reply = time_stamp_response(state, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/tsa"

    def __enter__(self) -> str:
        self.thread.start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
