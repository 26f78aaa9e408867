"""The key registry: which public keys count, for whom, for which roles, and when.

Why a registry separate from the key files: verification years later must not trust a key just
because a signature names it. The registry (a JSON file kept under change control) says who the
signer is (id and printed name), the roles they may sign, the validity window, and revocation.
A revoked key still validates signatures made *before* ``revoked_at`` (someone leaving the lab
does not void their past work) unless it is revoked as ``compromised``, which voids all of them.

Default location: $RIG_KEY_REGISTRY, else ``keys/registry.json`` under the current directory.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reports.canonical import load_json_bytes
from reports.keys import key_id_of, public_key_from_b64
from rig.errors import UsageError
from rig.safeio import replace_atomically
from rig.textsafe import name_problem

REGISTRY_FORMAT = "rig-key-registry/1"
ENV_VAR = "RIG_KEY_REGISTRY"
ROLES = ("generated_by", "performed_by", "reviewed_by", "approved_by")


def default_registry_path() -> Path:
    return Path(os.environ.get(ENV_VAR) or Path("keys") / "registry.json")


def parse_utc(text: Any, what: str) -> _dt.datetime:
    """An ISO 8601 UTC timestamp (Z or +00:00 suffix) as an aware datetime; ValueError names it."""
    if not isinstance(text, str):
        raise ValueError(f"{what} is not a timestamp: {text!r}")
    try:
        value = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{what} is not an ISO 8601 UTC timestamp: {text!r}") from None
    if value.tzinfo is None or value.utcoffset() != _dt.timedelta(0):
        raise ValueError(f"{what} must be UTC (suffix Z): {text!r}")
    return value


def format_utc(value: _dt.datetime) -> str:
    return value.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_roles(text: str) -> list[str]:
    roles = [r.strip() for r in text.split(",") if r.strip()]
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise UsageError(f"roles {text!r}: unknown {', '.join(bad) or '(none given)'}; allowed: {', '.join(ROLES)}")
    return roles


def _check_identity(entry: "KeyEntry") -> None:
    """ValueError unless the entry's names are printable names and its key id is its key's.

    Why: the printed name is shown on terminals and in reports (no control or bidi characters),
    and a key id that is not the fingerprint of the public key beside it would let one entry
    borrow another's identity in every message and audit event that names keys by id.
    """
    for what, value in (("signer_id", entry.signer_id), ("printed_name", entry.printed_name)):
        problem = name_problem(value, what)
        if problem:
            raise ValueError(problem)
    try:
        actual = key_id_of(public_key_from_b64(entry.public_key))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"public_key is not a base64 Ed25519 key: {exc}") from None
    if actual != entry.key_id:
        raise ValueError(f"key_id {entry.key_id!r} is not the fingerprint of its public key ({actual})")


@dataclass
class KeyEntry:
    key_id: str
    signer_id: str
    printed_name: str
    public_key: str  # base64 of the raw 32-byte Ed25519 key
    roles: list[str]
    valid_from: str
    valid_until: str | None
    added_at: str
    revoked_at: str | None = None
    revocation_reason: str | None = None
    compromised: bool = False

    def problem_at(self, when: _dt.datetime) -> str | None:
        """Why this key cannot sign at ``when``, or None if it can."""
        if self.revoked_at and self.compromised:
            return f"key {self.key_id} was revoked as compromised at {self.revoked_at} ({self.revocation_reason})"
        if self.revoked_at and parse_utc(self.revoked_at, "revoked_at") <= when:
            return f"key {self.key_id} was revoked at {self.revoked_at} ({self.revocation_reason}), before the signature"
        if when < parse_utc(self.valid_from, "valid_from"):
            return f"key {self.key_id} is not valid before {self.valid_from}"
        if self.valid_until and when > parse_utc(self.valid_until, "valid_until"):
            return f"key {self.key_id} expired at {self.valid_until}"
        return None


class Registry:
    """A registry file loaded in memory; ``save`` writes it back atomically."""

    def __init__(self, path: Path, keys: list[KeyEntry] | None = None) -> None:
        self.path = Path(path)
        self.keys = list(keys or [])

    @classmethod
    def load(cls, path: Path, *, create: bool = False) -> "Registry":
        path = Path(path)
        if not path.is_file():
            if create:
                return cls(path)
            raise UsageError(f"no key registry at {path} (give --registry FILE or set {ENV_VAR})")
        try:
            document = load_json_bytes(path.read_bytes(), f"key registry {path}")
            if not isinstance(document, dict) or document.get("format") != REGISTRY_FORMAT:
                raise ValueError(f"key registry {path}: format {REGISTRY_FORMAT!r} expected")
            keys = []
            for i, raw in enumerate(document.get("keys") or []):
                try:
                    entry = KeyEntry(**raw)
                    # A string would pass `role in entry.roles` as a substring test: list only.
                    if not isinstance(entry.roles, list) or not all(r in ROLES for r in entry.roles):
                        raise ValueError(f"roles must be a list of {', '.join(ROLES)}, got {entry.roles!r:.80}")
                    parse_utc(entry.valid_from, "valid_from")
                    _check_identity(entry)
                    for field in ("valid_until", "revoked_at"):
                        if getattr(entry, field):
                            parse_utc(getattr(entry, field), field)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"key registry {path}: keys[{i}] is invalid: {exc}") from None
                keys.append(entry)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return cls(path, keys)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {"format": REGISTRY_FORMAT, "keys": [asdict(k) for k in self.keys]}
        text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        replace_atomically(self.path, text.encode("utf-8"))

    def find(self, key_id: str) -> KeyEntry | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    def add(self, entry: KeyEntry) -> None:
        if self.find(entry.key_id):
            raise UsageError(f"key {entry.key_id} is already in {self.path}")
        other = next((k for k in self.keys if k.signer_id == entry.signer_id and k.printed_name != entry.printed_name), None)
        if other:
            raise UsageError(f"signer id {entry.signer_id!r} is registered as {other.printed_name!r}, "
                             f"not {entry.printed_name!r}; one id is one person or station")
        self.keys.append(entry)

    def revoke(self, ident: str, *, reason: str, at: str, compromised: bool = False) -> list[KeyEntry]:
        """Revoke the key with this key id, or every unrevoked key of this signer id."""
        if not reason.strip():
            raise UsageError("--reason must say why the key is revoked")
        targets = [k for k in self.keys if k.key_id == ident] or [
            k for k in self.keys if k.signer_id == ident and not k.revoked_at]
        if not targets:
            known = ", ".join(sorted({k.signer_id for k in self.keys})) or "none"
            raise UsageError(f"no unrevoked key with id or signer {ident!r} in {self.path} (signers: {known})")
        for key in targets:
            key.revoked_at, key.revocation_reason = at, reason
            key.compromised = key.compromised or compromised
        return targets
