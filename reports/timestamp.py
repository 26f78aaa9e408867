"""RFC 3161 time-stamp tokens: a trusted signing time from a time-stamp authority (TSA).

Why: a signature's ``signed_at`` is the signer's own claim; a key holder can backdate it to a time
before the key was revoked. A TSA signs (hash of our envelope, its own clock's time): the token
proves the envelope existed at the token's genTime, which nobody at the bench can choose. So when
the station names a TSA, `rig report sign` asks it for a token over the envelope (HTTP POST of a
TimeStampReq, RFC 3161 §3.4) and stores the token beside the envelope; `rig report verify`
checks it (our imprint, the configured TSA's certificate and signature, the nonce-free token
itself) and judges key validity and the run's end against genTime, not against ``signed_at``.

What is checked in a token (``check_token``): a CMS SignedData (RFC 5652) over a TSTInfo; the
message imprint is SHA-256 of exactly the envelope bytes; one signer, identified by the
configured TSA certificate (issuer + serial, or subject key identifier); the signed attributes
carry content type id-ct-TSTInfo and the digest of the TSTInfo; their signature verifies with the
certificate's public key (RSA PKCS#1 v1.5 or ECDSA); the certificate is for time-stamping
(extended key usage id-kp-timeStamping) and valid at genTime. Not checked: revocation of the TSA
certificate (pin a new certificate in the station file when the TSA changes keys).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import cms, core, tsp
from asn1crypto import x509 as a509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
MAX_REPLY_BYTES = 1 << 20  # a token is a few kB; a longer reply is not one
TOKEN_SUFFIX = ".tst"  # DER TimeStampToken next to NN-role.dsse.json
_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


class TimeStampResp(core.Sequence):
    """RFC 3161 §2.4.2 TimeStampResp: the token is OPTIONAL (absent when the TSA refuses);
    asn1crypto's own definition makes it mandatory, so a refusal would not even parse."""

    _fields = [("status", tsp.PKIStatusInfo), ("time_stamp_token", cms.ContentInfo, {"optional": True})]


class TimeStampError(ValueError):
    """A token could not be obtained, or does not prove what it must (the reason is the message)."""


@dataclass(frozen=True)
class TimeStampAuthority:
    """A TSA as the station file names it: where to ask (``url``, None when only verifying) and
    the certificate its tokens must be signed with."""

    certificate: x509.Certificate
    url: str | None = None
    timeout_s: float = 10.0

    @property
    def fingerprint(self) -> str:
        """What a signature statement records: which TSA the signer asked (sha256 of the DER cert)."""
        return "sha256:" + self.certificate.fingerprint(hashes.SHA256()).hex()

    @property
    def name(self) -> str:
        return self.certificate.subject.rfc4514_string() or self.fingerprint


def load_certificate(path: Path | str) -> x509.Certificate:
    """A PEM or DER certificate file; ValueError naming the file when it is not one."""
    data = Path(path).read_bytes()
    try:
        return x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ValueError(f"{path}: not an X.509 certificate (PEM or DER): {exc}") from None


def certificate_problem(cert: x509.Certificate) -> str | None:
    """Why ``cert`` cannot be a TSA certificate (RFC 3161 §2.3: extended key usage timeStamping)."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return "has no extended key usage timeStamping (not a time-stamp authority certificate)"
    if ExtendedKeyUsageOID.TIME_STAMPING not in usage:
        return "its extended key usage does not include timeStamping (not a time-stamp authority certificate)"
    return None


def token_path(envelope: Path) -> Path:
    """``signatures/NN-role.tst`` for ``signatures/NN-role.dsse.json``."""
    return envelope.with_name(envelope.name.removesuffix(".dsse.json") + TOKEN_SUFFIX)


def build_request(data: bytes, nonce: int) -> bytes:
    """The DER TimeStampReq for SHA-256 of ``data`` (certReq: the token names its certificate)."""
    return tsp.TimeStampReq({
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"},
                            "hashed_message": hashlib.sha256(data).digest()},
        "nonce": nonce,
        "cert_req": True,
    }).dump()


def request_token(tsa: TimeStampAuthority, data: bytes) -> bytes:
    """Ask ``tsa`` for a token over ``data``; return the token (DER) after checking it as verify
    will (and that it carries the nonce we sent). TimeStampError with the reason when it cannot be had."""
    if not tsa.url:
        raise TimeStampError("no time-stamp authority URL configured")
    nonce = secrets.randbits(63)
    http = urllib.request.Request(tsa.url, data=build_request(data, nonce), method="POST",
                                  headers={"Content-Type": QUERY_TYPE, "Accept": REPLY_TYPE})
    try:
        with urllib.request.urlopen(http, timeout=tsa.timeout_s) as reply:  # noqa: S310 - the station's TSA
            body = reply.read(MAX_REPLY_BYTES + 1)
            kind = reply.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        raise TimeStampError(f"time-stamp authority {tsa.url} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise TimeStampError(f"time-stamp authority {tsa.url} unreachable: {reason}") from None
    if len(body) > MAX_REPLY_BYTES:
        raise TimeStampError(f"time-stamp authority {tsa.url}: reply longer than {MAX_REPLY_BYTES} bytes")
    if kind.split(";")[0].strip().lower() != REPLY_TYPE:
        raise TimeStampError(f"time-stamp authority {tsa.url} answered {kind or 'no content type'}, not {REPLY_TYPE}")
    token = token_from_reply(body, tsa.url)
    info = _tst_info(token)
    if info["nonce"].native != nonce:
        raise TimeStampError(f"time-stamp authority {tsa.url}: the token's nonce is not ours (a replayed reply)")
    check_token(token, data, tsa)
    return token


def token_from_reply(body: bytes, source: str) -> bytes:
    """The TimeStampToken (DER) of a granted TimeStampResp; TimeStampError naming the TSA's status."""
    try:
        resp = TimeStampResp.load(body)
        status = resp["status"]["status"].native
        token = resp["time_stamp_token"]
        resp.native  # noqa: B018 - parse everything now: a malformed reply is reported here
    except (ValueError, TypeError, KeyError) as exc:
        raise TimeStampError(f"time-stamp authority {source}: the reply is not a TimeStampResp ({exc})") from None
    if status not in ("granted", "granted_with_mods"):
        text = resp["status"]["status_string"].native if resp["status"]["status_string"] else None
        fail = resp["status"]["fail_info"].native if resp["status"]["fail_info"] else None
        raise TimeStampError(f"time-stamp authority {source} refused: {status}"
                             + (f" ({'; '.join(text)})" if text else "") + (f" [{', '.join(sorted(fail))}]" if fail else ""))
    if not isinstance(token, cms.ContentInfo):
        raise TimeStampError(f"time-stamp authority {source} granted but sent no token")
    return token.dump()


def _signed_data(token: bytes) -> cms.SignedData:
    try:
        info = cms.ContentInfo.load(token)
        if info["content_type"].native != "signed_data":
            raise ValueError(f"content type {info['content_type'].native}, not signed_data")
        signed = info["content"]
        if signed["encap_content_info"]["content_type"].native != "tst_info":
            raise ValueError("the signed content is not a TSTInfo")
        signed["encap_content_info"]["content"].parsed.native  # noqa: B018 - parse now, fail here
        return signed
    except (ValueError, TypeError, KeyError) as exc:
        raise TimeStampError(f"not an RFC 3161 time-stamp token: {exc}") from None


def _tst_info(token: bytes) -> tsp.TSTInfo:
    return _signed_data(token)["encap_content_info"]["content"].parsed


def gen_time(token: bytes) -> _dt.datetime:
    """The token's genTime (UTC), without checking anything else (``check_token`` checks)."""
    return _tst_info(token)["gen_time"].native.astimezone(_dt.timezone.utc)


def _identifies(sid: cms.SignerIdentifier, cert: x509.Certificate) -> bool:
    if sid.name == "issuer_and_serial_number":
        ours = a509.Certificate.load(cert.public_bytes(Encoding.DER))["tbs_certificate"]
        return (sid.chosen["serial_number"].native == cert.serial_number
                and sid.chosen["issuer"].dump() == ours["issuer"].dump())
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return False
    return sid.chosen.native == ski


def _verify_with(cert: x509.Certificate, signer: cms.SignerInfo, signed_bytes: bytes) -> None:
    algo = _HASHES[signer["digest_algorithm"]["algorithm"].native]()  # checked by _check_token
    key = cert.public_key()
    signature = signer["signature"].native
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed_bytes, padding.PKCS1v15(), algo)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, signed_bytes, ec.ECDSA(algo))
        else:
            raise TimeStampError(f"TSA certificate key type {type(key).__name__} is not supported (RSA or ECDSA)")
    except InvalidSignature:
        raise TimeStampError("the token's signature does not verify with the configured TSA certificate") from None


def check_token(token: bytes, data: bytes, tsa: TimeStampAuthority) -> _dt.datetime:
    """genTime of ``token`` once it is shown to be the configured TSA's token over SHA-256 of
    ``data``; TimeStampError with the reason otherwise (see the module docstring)."""
    try:
        return _check_token(token, data, tsa)
    except TimeStampError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:  # asn1crypto parses lazily
        raise TimeStampError(f"not a well-formed RFC 3161 time-stamp token ({type(exc).__name__}: {exc})") from None


def _check_token(token: bytes, data: bytes, tsa: TimeStampAuthority) -> _dt.datetime:
    signed = _signed_data(token)
    info: tsp.TSTInfo = signed["encap_content_info"]["content"].parsed
    imprint = info["message_imprint"]
    if imprint["hash_algorithm"]["algorithm"].native != "sha256" \
            or imprint["hashed_message"].native != hashlib.sha256(data).digest():
        raise TimeStampError("the token time-stamps other data (its message imprint is not SHA-256 of this "
                             "signature): a token taken from another signature")
    signers = list(signed["signer_infos"])
    if len(signers) != 1:
        raise TimeStampError(f"the token has {len(signers)} signers, expected 1 (the TSA)")
    signer = signers[0]
    if not _identifies(signer["sid"], tsa.certificate):
        raise TimeStampError(f"the token was not issued by the configured TSA ({tsa.name}): another authority's token")
    attrs = signer["signed_attrs"]
    if not attrs:
        raise TimeStampError("the token's signer info has no signed attributes (RFC 3161 requires them)")
    values = {a["type"].native: a["values"] for a in attrs}
    if "content_type" not in values or values["content_type"][0].native != "tst_info":
        raise TimeStampError("the token's signed content-type attribute is not id-ct-TSTInfo")
    digest_name = signer["digest_algorithm"]["algorithm"].native
    if digest_name not in _HASHES:
        raise TimeStampError(f"token signed with digest {digest_name}; accepted: {', '.join(_HASHES)}")
    content = signed["encap_content_info"]["content"].contents
    if "message_digest" not in values or values["message_digest"][0].native != hashlib.new(digest_name, content).digest():
        raise TimeStampError("the token's message-digest attribute does not match its TSTInfo (token edited)")
    # the signature is over the DER SET OF the attributes, not their [0] IMPLICIT encoding (RFC 5652 §5.4)
    _verify_with(tsa.certificate, signer, b"\x31" + attrs.dump()[1:])
    problem = certificate_problem(tsa.certificate)
    if problem:
        raise TimeStampError(f"configured TSA certificate {problem}")
    when = info["gen_time"].native.astimezone(_dt.timezone.utc)
    if not tsa.certificate.not_valid_before_utc <= when <= tsa.certificate.not_valid_after_utc:
        raise TimeStampError(f"genTime {when.isoformat()} is outside the TSA certificate's validity "
                             f"({tsa.certificate.not_valid_before_utc.isoformat()} … "
                             f"{tsa.certificate.not_valid_after_utc.isoformat()})")
    return when


__all__ = ["TimeStampAuthority", "TimeStampError", "build_request", "certificate_problem", "check_token",
           "gen_time", "load_certificate", "request_token", "token_from_reply", "token_path"]
