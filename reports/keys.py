"""Ed25519 signing keys, encrypted at rest.

Why not PKCS#8 ``BestAvailableEncryption``: its PBKDF2 cost (a few thousand iterations) falls to
a GPU in hours for a typical passphrase. A private key file here is JSON holding the 32-byte
Ed25519 seed encrypted with AES-256-GCM under a key derived by scrypt (default n = 2**17, r = 8,
p = 1: ~128 MiB and ~0.5 s per try, the OWASP recommendation). The header (signer, key id,
public key, KDF parameters) is the GCM associated data, so editing it makes the file unusable
instead of silently pairing a wrong identity with the key. Files are created with mode 0600, and
a key file is refused (as ssh refuses) when group or others can read or write it, when it is a
symbolic link, or when its folder is writable by others.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from reports.canonical import canonical_json, load_json_bytes
from reports.dsse import b64, unb64
from rig.errors import UsageError

KEY_FORMAT = "rig-ed25519-key/1"
DEFAULT_SCRYPT_LOG2_N = 17
MIN_SCRYPT_LOG2_N = 10  # tests only; `rig keys new` never goes below the default
MIN_PASSPHRASE_CHARS = 12
MAX_KEY_FILE_BYTES = 64 * 1024


class KeyFileError(UsageError):
    """A key file cannot be used: wrong passphrase, damaged, wrong format (exit 2)."""


def public_raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """Key fingerprint: first 128 bits of sha256 over the raw public key, hex, with a prefix."""
    return "ed25519:" + hashlib.sha256(public_raw(public_key)).hexdigest()[:32]


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(unb64(text, "public key"))


def _kdf(salt: bytes, log2_n: int) -> Scrypt:
    return Scrypt(salt=salt, length=32, n=2**log2_n, r=8, p=1)


def check_passphrase_strength(passphrase: str) -> None:
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise UsageError(f"passphrase is {len(passphrase)} characters; use at least {MIN_PASSPHRASE_CHARS}")


@dataclass
class SigningKey:
    signer_id: str
    printed_name: str
    key_id: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()


def generate_key_file(path: Path, *, signer_id: str, printed_name: str, passphrase: str,
                      scrypt_log2_n: int = DEFAULT_SCRYPT_LOG2_N) -> SigningKey:
    """Create a new key pair and write the encrypted private key to ``path`` (mode 0600)."""
    if not MIN_SCRYPT_LOG2_N <= scrypt_log2_n <= 22:
        raise UsageError(f"scrypt cost 2**{scrypt_log2_n} out of range 2**{MIN_SCRYPT_LOG2_N}..2**22")
    check_passphrase_strength(passphrase)
    path = Path(path)
    check_key_dir(path.absolute().parent)
    private_key = Ed25519PrivateKey.generate()
    public_key = private_key.public_key()
    seed = private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                     serialization.NoEncryption())
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    header: dict[str, Any] = {
        "format": KEY_FORMAT, "signer_id": signer_id, "printed_name": printed_name,
        "key_id": key_id_of(public_key), "public_key": b64(public_raw(public_key)),
        "kdf": {"name": "scrypt", "log2_n": scrypt_log2_n, "r": 8, "p": 1, "salt": b64(salt)},
        "cipher": {"name": "AES-256-GCM", "nonce": b64(nonce)},
    }
    secret = _kdf(salt, scrypt_log2_n).derive(passphrase_bytes(passphrase))
    ciphertext = AESGCM(secret).encrypt(nonce, seed, canonical_json(header))
    document = {**header, "ciphertext": b64(ciphertext)}
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"key file {path} already exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(canonical_json(document) + b"\n")
    os.chmod(path, 0o600)  # umask cannot widen it, but be explicit
    return SigningKey(signer_id, printed_name, header["key_id"], private_key)


def passphrase_bytes(passphrase: str) -> bytes:
    """UTF-8 of a passphrase; one that is not text (stray bytes from the environment) is a clear error."""
    try:
        return passphrase.encode("utf-8")
    except UnicodeEncodeError:
        raise KeyFileError("the passphrase is not valid UTF-8 text (check how it was set)") from None


def _private_file_problem(st: os.stat_result, what: str) -> str | None:
    """Why a private key file or its folder is not private enough (as ssh checks), or None."""
    if st.st_uid not in (os.getuid(), 0):
        return f"{what} is owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
    if stat.S_ISDIR(st.st_mode):
        if st.st_mode & 0o022:
            return f"{what} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); chmod go-w it"
        return None
    if st.st_mode & 0o077:
        return (f"{what} is accessible by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                "a private key must be mode 0600 (chmod 600 it)")
    return None


def check_key_dir(folder: Path) -> None:
    """KeyFileError when an existing key folder could let someone else swap or add keys."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise KeyFileError(f"key folder {folder} is not a directory (symbolic links are not followed)")
    problem = _private_file_problem(st, f"key folder {folder}")
    if problem:
        raise KeyFileError(problem)


def read_key_header(path: Path) -> dict[str, Any]:
    """The public part of a key file (no passphrase needed).

    The file is opened without following a symbolic link and refused, as ssh refuses, when it is
    readable or writable by group or others, not owned by the user, or in a folder others can write.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise KeyFileError(f"no key file at {path}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise KeyFileError(f"key file {path} is a symbolic link; give the real file") from None
        raise KeyFileError(f"cannot open key file {path}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # before fdopen, which raises IsADirectoryError for a folder
        os.close(fd)
        raise KeyFileError(f"no key file at {path} (not a regular file)")
    with os.fdopen(fd, "rb") as handle:
        problem = _private_file_problem(st, f"key file {path}")
        if problem:
            raise KeyFileError(problem)
        check_key_dir(path.absolute().parent)
        data = handle.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{path} is larger than {MAX_KEY_FILE_BYTES} bytes: not a rig key file")
    try:
        document = load_json_bytes(data.strip(), f"key file {path}")
    except ValueError as exc:
        raise KeyFileError(str(exc)) from None
    if not isinstance(document, dict) or document.get("format") != KEY_FORMAT:
        raise KeyFileError(f"{path} is not a rig key file (format {KEY_FORMAT} expected)")
    return document


def load_key_file(path: Path, passphrase: str) -> SigningKey:
    """Decrypt a key file; a wrong passphrase or an edited file is a KeyFileError."""
    document = read_key_header(path)
    header = {k: v for k, v in document.items() if k != "ciphertext"}
    try:
        kdf = document["kdf"]
        if kdf.get("name") != "scrypt" or document["cipher"].get("name") != "AES-256-GCM":
            raise KeyFileError(f"{path}: unsupported KDF or cipher")
        log2_n = int(kdf["log2_n"])
        if not MIN_SCRYPT_LOG2_N <= log2_n <= 22 or kdf.get("r") != 8 or kdf.get("p") != 1:
            raise KeyFileError(f"{path}: KDF parameters out of range")
        salt = unb64(kdf["salt"], "salt")
        nonce = unb64(document["cipher"]["nonce"], "nonce")
        ciphertext = unb64(document["ciphertext"], "ciphertext")
    except (KeyError, TypeError, AttributeError, ValueError) as exc:  # KeyFileError is none of these
        raise KeyFileError(f"{path} is damaged: {exc}") from None
    secret = _kdf(salt, log2_n).derive(passphrase_bytes(passphrase))
    try:
        seed = AESGCM(secret).decrypt(nonce, ciphertext, canonical_json(header))
    except InvalidTag:
        raise KeyFileError(f"wrong passphrase for key file {path} (or the file was modified)") from None
    private_key = Ed25519PrivateKey.from_private_bytes(seed)
    if key_id_of(private_key.public_key()) != document.get("key_id"):
        raise KeyFileError(f"{path}: key id does not match the key")
    return SigningKey(str(document["signer_id"]), str(document["printed_name"]), str(document["key_id"]), private_key)
