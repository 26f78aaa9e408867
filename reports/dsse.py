"""DSSE envelopes (Dead Simple Signing Envelope, secure-systems-lab/dsse v1) with Ed25519.

Why DSSE: the signature covers the payload type and the payload through the pre-authentication
encoding (PAE), so a signature can never be re-interpreted as another kind of document; it is a
published, tool-independent format a verifier can re-implement in a page of code.

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body   (LEN = decimal byte count)

Envelope files are canonical JSON and must re-encode to exactly their own bytes, so no byte of the
file (not even a base64 padding bit) can change without verification noticing.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from reports.canonical import canonical_json, load_json_bytes

PAYLOAD_TYPE = "application/vnd.rig.signature+json"


class EnvelopeError(ValueError):
    """The envelope is malformed or its signature does not verify."""


def pae(payload_type: str, payload: bytes) -> bytes:
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise EnvelopeError(f"{what} is not a base64 string")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise EnvelopeError(f"{what} is not valid base64: {exc}") from None
    if b64(data) != text:
        raise EnvelopeError(f"{what} is not canonical base64")
    return data


def sign_envelope(payload: bytes, key: Ed25519PrivateKey, key_id: str, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """The envelope file bytes for ``payload`` signed by ``key``."""
    signature = key.sign(pae(payload_type, payload))
    return canonical_json({"payload": b64(payload), "payloadType": payload_type,
                           "signatures": [{"keyid": key_id, "sig": b64(signature)}]})


def open_envelope(data: bytes, what: str) -> tuple[bytes, str, str, bytes]:
    """(payload, payload type, key id, signature) of a single-signature envelope file.

    Checks structure and canonical form only; call ``check_signature`` with the signer's key.
    """
    try:
        envelope = load_json_bytes(data, what)
    except ValueError as exc:
        raise EnvelopeError(str(exc)) from None
    if not isinstance(envelope, dict) or set(envelope) != {"payload", "payloadType", "signatures"}:
        raise EnvelopeError(f"{what} is not a DSSE envelope (needs payload, payloadType, signatures)")
    sigs = envelope["signatures"]
    if not isinstance(sigs, list) or len(sigs) != 1 or not isinstance(sigs[0], dict) or set(sigs[0]) != {"keyid", "sig"}:
        raise EnvelopeError(f"{what} must carry exactly one signature with keyid and sig")
    payload = unb64(envelope["payload"], f"{what} payload")
    signature = unb64(sigs[0]["sig"], f"{what} signature")
    if canonical_json(envelope) != data:
        raise EnvelopeError(f"{what} is not in canonical form (modified after signing)")
    return payload, str(envelope["payloadType"]), str(sigs[0]["keyid"]), signature


def check_signature(public_key: Ed25519PublicKey, payload_type: str, payload: bytes, signature: bytes) -> bool:
    try:
        public_key.verify(signature, pae(payload_type, payload))
    except InvalidSignature:
        return False
    return True
