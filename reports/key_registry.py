"""The key registry: which public keys count, for whom, for which roles, and when — and who said so.

Why a registry separate from the key files: verification years later must not trust a key just
because a signature names it. The registry (a JSON file kept under change control) says who the
signer is (id and printed name), the roles they may sign, the validity window, and revocation.
A revoked key still validates signatures made *before* ``revoked_at`` (someone leaving the lab
does not void their past work) unless it is revoked as ``compromised``, which voids all of them.

Root of trust (21 CFR 11.100: identity established before a signature is enrolled): every entry is
*endorsed* by an administrator key — an Ed25519 signature over the entry's canonical JSON, made when
the administrator enrolled, changed or revoked it — and the whole document carries the
administrator's signature too, so any edit, addition or removal after signing shows. The registry
names its administrators' public keys, but trust comes from outside it: the station file pins the
administrator key ids (``[signing] admin_keys``), and ``pinned`` carries them into verification.
``trust_problems`` and ``entry_problem`` say, in words, why a registry or an entry cannot be trusted.

Default location: --registry, else $RIG_KEY_REGISTRY, else the station file's ``key_registry``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature

from reports.canonical import canonical_json, load_json_bytes
from reports.dsse import b64, unb64
from reports.keys import key_id_of, public_key_from_b64
from rig.errors import UsageError
from rig.safeio import replace_atomically
from rig.textsafe import name_problem

REGISTRY_FORMAT = "rig-key-registry/2"
LEGACY_FORMATS = ("rig-key-registry/1",)  # no administrator: loads, but nothing in it is trusted
ENTRY_KIND = "rig.registry-entry/1"
DOCUMENT_KIND = "rig.registry/2"
ENV_VAR = "RIG_KEY_REGISTRY"
ROLES = ("generated_by", "performed_by", "reviewed_by", "approved_by")


def default_registry_path(station_registry: Path | None = None) -> Path:
    """$RIG_KEY_REGISTRY, else the station file's key_registry, else keys/registry.json."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return Path(station_registry) if station_registry else Path("keys") / "registry.json"


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
    endorsement: dict[str, Any] | None = None  # {admin_key_id, signed_at, signature}: see the module doc

    def signed_part(self) -> bytes:
        """What an administrator signs: every field but the endorsement itself."""
        fields = {k: v for k, v in asdict(self).items() if k != "endorsement"}
        return canonical_json({"kind": ENTRY_KIND, **fields})

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


@dataclass
class AdminEntry:
    """An administrator key the registry names (trusted only if the station pins its key id)."""

    key_id: str
    admin_id: str
    printed_name: str
    public_key: str
    added_at: str


def _verify_raw(public_key_b64: str, signature_b64: Any, data: bytes) -> bool:
    from reports.keys import public_key_from_b64

    try:
        public_key_from_b64(public_key_b64).verify(unb64(signature_b64, "signature"), data)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


class Registry:
    """A registry file loaded in memory; ``save`` writes it back atomically.

    ``pinned``: the administrator key ids the station trusts (from its station file). Empty means
    "no root of trust", and verification says so."""

    def __init__(self, path: Path, keys: list[KeyEntry] | None = None, *, admins: list[AdminEntry] | None = None,
                 signature: dict[str, Any] | None = None, pinned: tuple[str, ...] = (),
                 format: str = REGISTRY_FORMAT) -> None:  # noqa: A002 - the file's own word
        self.path = Path(path)
        self.keys = list(keys or [])
        self.admins = list(admins or [])
        self.signature = signature
        self.pinned = tuple(pinned)
        self.format = format
        self.admin_signer: Any = None  # an unlocked administrator key kept in memory (tests, demo tools)
        # the station's time-stamp authority (reports.timestamp), set with the pins by whoever loads
        # the station: signing asks it for tokens, verify checks them against its certificate
        self.time_stamp_authority: Any = None

    @classmethod
    def load(cls, path: Path, *, create: bool = False, pinned: tuple[str, ...] | list[str] = (),
             time_stamp_authority: Any = None) -> "Registry":
        registry = cls._load(path, create=create, pinned=pinned)
        registry.time_stamp_authority = time_stamp_authority
        return registry

    @classmethod
    def _load(cls, path: Path, *, create: bool, pinned: tuple[str, ...] | list[str]) -> "Registry":
        path = Path(path)
        if not path.is_file():
            if create:
                return cls(path, pinned=tuple(pinned))
            raise UsageError(f"no key registry at {path} (give --registry FILE, set {ENV_VAR}, or name "
                             "key_registry in the station file; a new one starts with `rig keys init-admin`)")
        try:
            document = load_json_bytes(path.read_bytes(), f"key registry {path}")
            if not isinstance(document, dict) or document.get("format") not in (REGISTRY_FORMAT, *LEGACY_FORMATS):
                raise ValueError(f"key registry {path}: format {REGISTRY_FORMAT!r} expected")
            admins = []
            for i, raw in enumerate(document.get("admins") or []):
                try:
                    admins.append(AdminEntry(**raw))
                except TypeError as exc:
                    raise ValueError(f"key registry {path}: admins[{i}] is invalid: {exc}") from None
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
        signature = document.get("signature") if isinstance(document.get("signature"), dict) else None
        return cls(path, keys, admins=admins, signature=signature, pinned=tuple(pinned),
                   format=str(document.get("format")))

    # -- root of trust ----------------------------------------------------------------------------

    def _document_part(self) -> bytes:
        return canonical_json({"kind": DOCUMENT_KIND, "admins": [asdict(a) for a in self.admins],
                               "keys": [asdict(k) for k in self.keys]})

    def admin(self, key_id: str) -> AdminEntry | None:
        return next((a for a in self.admins if a.key_id == key_id), None)

    def add_admin(self, entry: AdminEntry) -> None:
        if self.admin(entry.key_id):
            raise UsageError(f"administrator key {entry.key_id} is already in {self.path}")
        self.admins.append(entry)

    def _require_admin(self, admin_key: Any) -> AdminEntry:
        entry = self.admin(admin_key.key_id)
        if entry is None:
            raise UsageError(f"key {admin_key.key_id} ({admin_key.signer_id}) is not an administrator of the "
                             f"registry {self.path}; only an administrator may enrol, change or revoke keys")
        if self.pinned and admin_key.key_id not in self.pinned:
            raise UsageError(f"administrator key {admin_key.key_id} is not pinned by the station "
                             f"(pinned: {', '.join(self.pinned)})")
        return entry

    def endorse(self, entry: KeyEntry, admin_key: Any, at: str) -> None:
        """Sign ``entry`` as administrator ``admin_key`` (a reports.keys.SigningKey)."""
        self._require_admin(admin_key)
        entry.endorsement = None
        entry.endorsement = {"admin_key_id": admin_key.key_id, "signed_at": at,
                             "signature": b64(admin_key.private_key.sign(entry.signed_part()))}

    def sign_document(self, admin_key: Any, at: str) -> None:
        """Sign the whole registry (after every change), so removals and edits show."""
        self._require_admin(admin_key)
        self.signature = {"admin_key_id": admin_key.key_id, "signed_at": at,
                          "signature": b64(admin_key.private_key.sign(self._document_part()))}

    def trust_problems(self) -> list[str]:
        """Why this registry as a whole cannot be trusted (empty: it can)."""
        if not self.pinned:
            return ["no administrator key is pinned (station file [signing] admin_keys, or --admin-key-id): "
                    "the key registry has no root of trust"]
        if self.format != REGISTRY_FORMAT:
            return [f"key registry {self.path} is format {self.format}, without administrator signatures"]
        sig = self.signature or {}
        admin = self.admin(str(sig.get("admin_key_id")))
        if not sig:
            return [f"key registry {self.path} is not signed by an administrator"]
        if admin is None or admin.key_id not in self.pinned:
            return [f"key registry {self.path} is signed by {sig.get('admin_key_id')}, not by a pinned "
                    f"administrator key ({', '.join(self.pinned)})"]
        if not self._admin_key_matches(admin):
            return [f"administrator {admin.key_id}: its public key does not match its key id"]
        if not _verify_raw(admin.public_key, sig.get("signature"), self._document_part()):
            return [f"key registry {self.path} was edited after the administrator signed it "
                    "(entries added, changed or removed without authority)"]
        return []

    @staticmethod
    def _admin_key_matches(admin: AdminEntry) -> bool:
        from reports.keys import key_id_of, public_key_from_b64

        try:
            return key_id_of(public_key_from_b64(admin.public_key)) == admin.key_id
        except (ValueError, TypeError):
            return False

    def entry_problem(self, entry: KeyEntry, signed_at: _dt.datetime | None = None) -> str | None:
        """Why ``entry`` does not trace back to a pinned administrator (or did not exist yet at
        ``signed_at``), or a duplicate printed name makes it ambiguous; None when it is sound."""
        endorsement = entry.endorsement or {}
        if not endorsement:
            return (f"registry entry of {entry.signer_id} ({entry.key_id}) is not signed by an administrator: "
                    "enrolled without authority")
        admin = self.admin(str(endorsement.get("admin_key_id")))
        if admin is None or admin.key_id not in self.pinned:
            return (f"registry entry of {entry.signer_id} ({entry.key_id}) is signed by "
                    f"{endorsement.get('admin_key_id')}, a foreign key (not a pinned administrator)")
        if not self._admin_key_matches(admin) or not _verify_raw(admin.public_key, endorsement.get("signature"),
                                                                 entry.signed_part()):
            return f"registry entry of {entry.signer_id} ({entry.key_id}) was edited after the administrator signed it"
        if signed_at is not None:
            try:
                enrolled = parse_utc(entry.added_at, "added_at")
            except ValueError as exc:
                return str(exc)
            if enrolled > signed_at:
                return (f"registry entry of {entry.signer_id} ({entry.key_id}) was enrolled at {entry.added_at}, "
                        "after the signature")
        twins = sorted({k.signer_id for k in self.keys
                        if k.printed_name.casefold() == entry.printed_name.casefold() and k.signer_id != entry.signer_id})
        if twins:
            return (f"printed name {entry.printed_name!r} is registered to another signer too "
                    f"({', '.join(twins)}): a signature by that name is ambiguous")
        return None

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {"format": REGISTRY_FORMAT, "admins": [asdict(a) for a in self.admins],
                    "keys": [asdict(k) for k in self.keys], "signature": self.signature}
        text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        replace_atomically(self.path, text.encode("utf-8"))

    def find_signer_name(self, printed_name: str, signer_id: str) -> KeyEntry | None:
        """An entry of *another* signer under this printed name (names must be unambiguous)."""
        return next((k for k in self.keys if k.printed_name.casefold() == printed_name.casefold()
                     and k.signer_id != signer_id), None)

    def find(self, key_id: str) -> KeyEntry | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    def add(self, entry: KeyEntry) -> None:
        if self.find(entry.key_id):
            raise UsageError(f"key {entry.key_id} is already in {self.path}")
        other = next((k for k in self.keys if k.signer_id == entry.signer_id and k.printed_name != entry.printed_name), None)
        if other:
            raise UsageError(f"signer id {entry.signer_id!r} is registered as {other.printed_name!r}, "
                             f"not {entry.printed_name!r}; one id is one person or station")
        twin = next((k for k in self.keys if k.printed_name.casefold() == entry.printed_name.casefold()
                     and k.signer_id != entry.signer_id), None)
        if twin:
            raise UsageError(f"printed name {entry.printed_name!r} is already registered to signer "
                             f"{twin.signer_id!r}; two people cannot sign under one name")
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
            if self.admin_signer is not None:
                self.endorse(key, self.admin_signer, at)
        if self.admin_signer is not None:
            self.sign_document(self.admin_signer, at)
        return targets
