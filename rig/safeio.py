"""Reading and writing files that someone else may have planted: no symlinks, bounded, shallow JSON.

Why: run directories, report bundles and key stores are read by `rig` on behalf of a user, but
their contents may come from elsewhere (a copied run, a bundle to verify, a shared folder). A
symbolic link named ``raw/notes.txt`` would make `rig report build` copy a private file into a
world-readable bundle; a symlinked ``manifest.json`` would make verify check a file outside the
bundle; a 400 MB page or a JSON document nested 100 000 deep would exhaust memory or the stack.
So every such file is opened with ``O_NOFOLLOW`` (a symlink is an error, never followed), must be
a regular file, is read up to a stated size, and JSON is checked for nesting depth with a loop
(no recursion) before it is parsed. Temporary files are created exclusively with random names.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import IO

MAX_JSON_DEPTH = 64
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'"[]{}')
_AS_PARENS = bytes.maketrans(b"[]{}", b"()()")


class UnsafeFileError(OSError):
    """A file that is a symbolic link, not a regular file, or larger than allowed."""

    def __str__(self) -> str:
        return str(self.strerror)


def regular_files_under(root: Path) -> list[Path]:
    """Every file below ``root`` (sorted), refusing symlinks and special files anywhere in the tree.

    Why not ``rglob``: it follows symlinked directories; a run directory must not pull in files
    from elsewhere just because someone planted a link in it.
    """
    root = Path(root)
    found: list[Path] = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        for name in [*dirs, *names]:
            path = Path(folder) / name
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeFileError(errno.ELOOP, f"{path.relative_to(root.parent).as_posix()} is a symbolic link "
                                      "(not followed: a bundle takes only regular files)")
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                raise UnsafeFileError(errno.EINVAL, f"{path.relative_to(root.parent).as_posix()} is not a regular file")
            if stat.S_ISREG(st.st_mode):
                found.append(path)
    return sorted(found)


def open_regular(path: Path | str, *, what: str | None = None) -> IO[bytes]:
    """Open ``path`` for reading without following a symbolic link; it must be a regular file."""
    what = what or str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(errno.ELOOP, f"{what} is a symbolic link (not followed)") from None
        raise
    handle = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        handle.close()
        raise UnsafeFileError(errno.EINVAL, f"{what} is not a regular file")
    return handle


def read_regular(path: Path | str, *, max_bytes: int, what: str | None = None) -> bytes:
    """The bytes of a regular file (never through a symlink), at most ``max_bytes``."""
    what = what or str(path)
    with open_regular(path, what=what) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise UnsafeFileError(errno.EFBIG, f"{what} is {size} bytes; at most {max_bytes} are allowed")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafeFileError(errno.EFBIG, f"{what} grew beyond {max_bytes} bytes while read")
    return data


def json_depth_problem(data: bytes, what: str, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why ``data`` (JSON text) nests deeper than ``max_depth``, or None; a loop, never recursion."""
    # Outside strings only: drop escaped backslashes and quotes, then every other piece between
    # quotes is string content. All C-speed bytes operations; the loop is over brackets only.
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = unescaped.translate(None, _NOT_STRUCTURE)  # quotes and brackets only: small
    brackets = b"".join(skeleton.split(b'"')[::2]).translate(_AS_PARENS)
    # Peel the innermost pairs off, one level per pass (C-speed replace); depth = passes + what
    # is left open. A document shallower than the limit takes at most limit passes.
    depth = 0
    while b"()" in brackets and depth <= max_depth:
        brackets = brackets.replace(b"()", b"")
        depth += 1
    depth += brackets.count(b"(")
    if depth > max_depth:
        return f"{what} nests more than {max_depth} levels deep" if depth > max_depth + 1 else \
            f"{what} nests {depth} levels deep; at most {max_depth} are allowed"
    return None


def write_new(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Create ``path`` exclusively (never through an existing file or symlink) and write ``data``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def replace_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to an exclusive, randomly named sibling and rename it over ``path``.

    A fixed temporary name (``.name.tmp-PID``) can be planted in advance as a symlink to a file
    of the user's; ``mkstemp`` cannot.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
