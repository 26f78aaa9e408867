"""Panel accounts: per-user scrypt password hashes and roles mapped to the signing roles.

Why scrypt from the standard library: a memory-hard KDF (RFC 7914), the same one the signing keys
use at rest (reports.keys), with no extra dependency. Why roles map to signing roles: the panel
only offers a signature a user may make (an operator performs, a reviewer reviews, an admin
reviews or approves); the key registry still decides whether the key may sign — the panel role
is a second gate, never a substitute.

The accounts file is JSON (written 0600): {"users": {"jdoe": {"name": ..., "role": ...,
"password": "scrypt$N$r$p$salt$hash", "key": "path/to/jdoe.key"}}}. `rig users` edits it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig.errors import UsageError

ROLES = ("operator", "reviewer", "admin")
SIGNING_ROLES = {
    "operator": ("performed_by",),
    "reviewer": ("reviewed_by",),
    "admin": ("reviewed_by", "approved_by"),
    # the login name on a loopback service without accounts: like `rig report sign` at the bench,
    # the key registry alone decides
    "local": ("performed_by", "reviewed_by", "approved_by"),
}
# What each panel role may do besides watching.
MAY_RUN = ("operator", "admin", "local")  # start runs and nightlies, answer operator steps
MAY_ADMINISTER = ("admin",)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 10
_USER = re.compile(r"[a-z][a-z0-9._-]{1,31}")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


_DUMMY = hash_password(secrets.token_hex(8))  # unknown users cost the same time as known ones


@dataclass(frozen=True)
class Account:
    user: str
    name: str
    role: str
    password_hash: str = ""
    key: str = ""  # the user's signing key file (encrypted at rest)

    @property
    def signing_roles(self) -> tuple[str, ...]:
        return SIGNING_ROLES.get(self.role, ())

    @property
    def may_run(self) -> bool:
        return self.role in MAY_RUN

    def public(self) -> dict[str, Any]:
        return {"user": self.user, "name": self.name, "role": self.role,
                "signing_roles": list(self.signing_roles), "may_run": self.may_run}


class Accounts:
    """The accounts file, read at start and on every change."""

    def __init__(self, path: Path | None, users: dict[str, Account] | None = None) -> None:
        self.path = path
        self.users = dict(users or {})

    @classmethod
    def load(cls, path: Path | None) -> "Accounts":
        if path is None or not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            users = {u: Account(u, str(e.get("name", u)), str(e["role"]), str(e["password"]),
                                str(e.get("key", ""))) for u, e in data.get("users", {}).items()}
        except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
            raise UsageError(f"accounts file {path}: cannot be read ({exc}); expected JSON "
                             '{"users": {NAME: {"name", "role", "password", "key"}}} as written by `rig users`') from None
        for account in users.values():
            if account.role not in ROLES:
                raise UsageError(f"accounts file {path}: user {account.user!r} has role "
                                 f"{account.role!r}; allowed: {', '.join(ROLES)}")
        return cls(path, users)

    def save(self) -> None:
        assert self.path is not None
        data = {"users": {a.user: {"name": a.name, "role": a.role, "password": a.password_hash,
                                   "key": a.key} for a in self.users.values()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
        os.replace(tmp, self.path)

    def add(self, user: str, name: str, role: str, password: str, key: str = "") -> Account:
        if not _USER.fullmatch(user):
            raise UsageError(f"user name {user!r}: use 2-32 lower-case letters, digits, '.', '_' or '-', "
                             "starting with a letter")
        if role not in ROLES:
            raise UsageError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise UsageError(f"password for {user}: at least {MIN_PASSWORD} characters")
        account = Account(user, name or user, role, hash_password(password), key)
        self.users[user] = account
        return account

    def authenticate(self, user: str, password: str) -> Account | None:
        account = self.users.get(user)
        ok = check_password(password, account.password_hash if account else _DUMMY)
        return account if (ok and account is not None) else None

    def __bool__(self) -> bool:
        return bool(self.users)


__all__ = ["Account", "Accounts", "MAY_RUN", "ROLES", "SIGNING_ROLES", "check_password", "hash_password"]
