"""One owner per bench: the station lock, and exclusive locks on serial device nodes.

Why: two controllers on one bench interleave commands (one tares the balance while the other
weighs, one stops the pump the other is timing) and produce a signable FAIL or ERROR that
blames a healthy pump. So everything that touches a station's instruments — `rig run`, `rig
nightly`, `rig check`, a bench service — first takes the station lock, and is refused *before it
sends a byte* when another controller holds it.

The API (small on purpose)::

    with StationLock.acquire(station, owner="rig run delivery_check", run_id=run_id) as lock:
        lock.holder        # who we are, as written into the lock file (a Holder)
        lock.took_over     # the stale Holder we replaced, or None
        lock.update(run_id=...)   # e.g. a nightly names the run in progress
    # StationBusy (a UsageError: exit 2) when another live controller holds it, naming it.

How it works: the lock file ``<lock dir>/station-<id>.lock`` is locked with ``flock`` for as long
as the holder lives; the kernel drops that lock when the holder process ends in any way
(exit, crash, ``kill -9``) and a reboot (power loss) drops every lock. The file's content says
who holds it (station, station file, host, user, pid, process start time, boot id, command, run
id, since when) and is emptied on a clean release. So a lock file that is not locked but still
names a holder was left by a holder that did not release it: it is *stale* when that holder is
demonstrably gone — another boot of this machine, its pid no longer running, or its pid now
belonging to another process (start times differ) — and is then taken over, which the caller
records (``took_over``). If the named holder is still running on this host although its kernel
lock is gone, the station is refused all the same (fail closed).

The lock directory is ``$RIG_LOCK_DIR``, else ``<tmp>/rig-locks`` (shared by every user of the
machine: created world-writable with the sticky bit, lock files readable and writable by all).

Serial device nodes (``ASRL/dev/ttyUSB0::INSTR``, the simulated bench's ``/dev/pts/N``) get the
same ``flock`` on the device node itself (``DeviceLock``), which is also what pyserial's
``exclusive=True`` takes: a second program on the same port is refused whatever station file it
uses. VISA exclusive locks are taken by the drivers (instruments.visa_instrument) where the
VISA backend supports them.
"""

from __future__ import annotations

import errno
import fcntl
import getpass
import json
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from rig.errors import UsageError
from rig.record import utc_now

LOCK_DIR_ENV = "RIG_LOCK_DIR"
BUSY_READ_WAIT_S = 1.0  # a holder that has just taken the lock may not have written its name yet


class StationBusy(UsageError):
    """The station (or one of its instrument resources) is held by another controller (exit 2)."""

    def __init__(self, message: str, holder: "Holder | None" = None) -> None:
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True)
class Holder:
    """Who holds a station: what the lock file records."""

    station: str
    station_file: str
    host: str
    user: str
    pid: int
    command: str  # e.g. "rig run delivery_check", "rig nightly", "rig check"
    run_id: str | None
    since_utc: str
    boot_id: str
    process_start: str  # /proc/<pid>/stat starttime (clock ticks since boot); "" where unknown

    def describe(self) -> str:
        run = f", run {self.run_id}" if self.run_id else ""
        return (f"{self.command!r} (pid {self.pid} on host {self.host}, user {self.user}{run}) "
                f"since {self.since_utc}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, text: str) -> "Holder | None":
        """The holder named by a lock file's content; None for an empty or unreadable file."""
        try:
            data = json.loads(text)
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except (ValueError, TypeError, KeyError):
            return None


# -- facts about processes -------------------------------------------------------------------


def boot_id() -> str:
    """This boot of this machine (changes on every reboot, e.g. after a power loss)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def process_start(pid: int) -> str:
    """When ``pid`` started (clock ticks since boot), to tell a reused pid from the holder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    return fields[19] if len(fields) > 19 else ""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def stale_reason(holder: Holder) -> str | None:
    """Why a holder whose kernel lock is gone is really gone; None if it still runs here."""
    if holder.host != socket.gethostname():
        return f"host {holder.host} no longer holds the lock"
    if holder.boot_id and holder.boot_id != boot_id():
        return "this machine has restarted since (reboot or power loss)"
    if not pid_alive(holder.pid):
        return f"process {holder.pid} is no longer running (killed or crashed)"
    now = process_start(holder.pid)
    if holder.process_start and now and now != holder.process_start:
        return f"pid {holder.pid} now belongs to another process"
    return None


def default_lock_dir() -> Path:
    configured = os.environ.get(LOCK_DIR_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path(tempfile.gettempdir()) / "rig-locks"


def _ensure_dir(path: Path) -> None:
    if path.is_dir():
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.environ.get(LOCK_DIR_ENV):
            os.chmod(path, 0o1777)  # the shared default: every user of the machine locks here
    except OSError as exc:
        raise UsageError(f"station lock directory {path}: cannot be created ({exc.strerror or exc}); "
                         f"set ${LOCK_DIR_ENV} to a writable directory") from None


def lock_path(station_id: str, directory: Path | None = None) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", station_id) or "_"
    return (directory or default_lock_dir()) / f"station-{safe}.lock"


def read_holder(station_id: str, directory: Path | None = None) -> Holder | None:
    """Who the lock file names (the live holder, or a stale one); None when it names nobody.

    For `rig show`/`rig attach` to tell a run in progress from a dead one, without locking."""
    try:
        return Holder.from_json(lock_path(station_id, directory).read_text(encoding="utf-8"))
    except OSError:
        return None


def holder_is_live(holder: Holder, directory: Path | None = None) -> bool:
    """True while some process holds the lock file's flock (read from /proc/locks, so asking
    never takes the lock, not even for a moment)."""
    return bool(flock_holders(lock_path(holder.station, directory)))


# -- the station lock ------------------------------------------------------------------------


class StationLock:
    """A held station lock (see the module docstring). Obtain with ``StationLock.acquire``."""

    def __init__(self, path: Path, fd: int, holder: Holder, took_over: Holder | None,
                 stale_reason: str | None) -> None:
        self.path = path
        self.holder = holder
        self.took_over = took_over
        self.stale_reason = stale_reason  # why took_over was judged gone
        self._fd: int | None = fd

    @classmethod
    @contextmanager
    def acquire(cls, station: Any, *, owner: str, run_id: str | None = None,
                directory: Path | None = None) -> Iterator["StationLock"]:
        """Hold the lock of ``station`` (a rig.station.model.Station) for the ``with`` block.

        Raises StationBusy when another live controller holds it (never waits)."""
        lock = cls.take(station, owner=owner, run_id=run_id, directory=directory)
        try:
            yield lock
        finally:
            lock.release()

    @classmethod
    def take(cls, station: Any, *, owner: str, run_id: str | None = None,
             directory: Path | None = None) -> "StationLock":
        """Like ``acquire`` without the ``with``: the caller must ``release()``."""
        directory = directory or default_lock_dir()
        _ensure_dir(directory)
        path = lock_path(station.id, directory)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise UsageError(f"station lock {path}: cannot be opened ({exc.strerror or exc}); set "
                             f"${LOCK_DIR_ENV} to a writable directory") from None
        try:
            try:
                os.fchmod(fd, 0o666)  # other users of the machine must be able to lock it too
            except OSError:
                pass
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise UsageError(f"station lock {path}: {exc.strerror or exc}") from None
                raise _busy(station.id, path, _wait_for_name(fd)) from None
            previous = Holder.from_json(_read(fd))
            reason = None
            if previous is not None:
                reason = stale_reason(previous)
                if reason is None:
                    raise StationBusy(
                        f"station {station.id} is in use by {previous.describe()}: that process still runs "
                        f"although its lock on {path} is gone; refusing to share the bench", previous)
            me = Holder(station=station.id, station_file=str(station.path), host=socket.gethostname(),
                        user=_user(), pid=os.getpid(), command=owner, run_id=run_id, since_utc=utc_now(),
                        boot_id=boot_id(), process_start=process_start(os.getpid()))
            _write(fd, me)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, me, previous, reason)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def update(self, *, run_id: str | None) -> None:
        """Name the run in progress (a nightly holds the station across many runs)."""
        if self._fd is None:
            raise RuntimeError("the station lock was released")
        self.holder = replace(self.holder, run_id=run_id)
        _write(self._fd, self.holder)

    def takeover_note(self) -> str | None:
        """One line for the record and the audit log when a stale lock was taken over."""
        if self.took_over is None:
            return None
        return (f"took over the station lock of {self.took_over.describe()}, which did not release it: "
                f"{self.stale_reason}")

    def record_takeover(self, audit_log: Path) -> str | None:
        """When a stale lock was taken over: append ``station_lock_taken_over`` (both holders) to
        the hash-chained audit log and return the note; None otherwise. Raises OSError/ValueError
        if the log cannot be written."""
        note = self.takeover_note()
        if note is None or self.took_over is None:
            return None
        from reports import audit

        audit.append_event(Path(audit_log), "station_lock_taken_over", station=self.holder.station,
                           detail=note, stale_holder=self.took_over.as_dict(), new_holder=self.holder.as_dict())
        return note

    def release(self) -> None:
        """Empty the lock file (a clean release) and unlock. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            os.fsync(fd)
        except OSError:
            pass  # the kernel lock below is what matters; a left name is judged stale later
        finally:
            os.close(fd)  # closing drops the flock

    def __enter__(self) -> "StationLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (containers)
        return str(os.getuid())


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _write(fd: int, holder: Holder) -> None:
    data = (json.dumps(holder.as_dict(), indent=1, sort_keys=True) + "\n").encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def _wait_for_name(fd: int) -> Holder | None:
    deadline = time.monotonic() + BUSY_READ_WAIT_S
    while True:
        holder = Holder.from_json(_read(fd))
        if holder is not None or time.monotonic() > deadline:
            return holder
        time.sleep(0.05)


def _busy(station_id: str, path: Path, holder: Holder | None) -> StationBusy:
    who = holder.describe() if holder is not None else "another process (it has not written its name yet)"
    return StationBusy(f"station {station_id} is in use by {who}; wait for it to finish, or stop it "
                       f"(lock {path})", holder)


def warn_takeover(lock: StationLock, *, audit_log_near: Path, stream: TextIO | None = None) -> str | None:
    """For commands: a stale lock taken over is said on ``stream`` (stderr) and kept in the audit
    log (``$RIG_AUDIT_LOG``, else ``<audit_log_near>/audit.jsonl``); returns the note."""
    note = lock.takeover_note()
    if note is None:
        return None
    stream = stream or sys.stderr
    stream.write(f"rig: warning: {note}\n")
    try:
        from reports.audit import resolve_log_path

        lock.record_takeover(resolve_log_path(None, near=audit_log_near))
    except Exception as exc:  # noqa: BLE001 - said above; the audit log's own problem is secondary
        stream.write(f"rig: warning: the takeover is not in the audit log: {exc}\n")
    return note


# -- serial device nodes ---------------------------------------------------------------------


_ASRL_PATH = re.compile(r"^ASRL(/[^:]+)::INSTR$", re.IGNORECASE)


def serial_device_path(resource: str) -> Path | None:
    """The device node of a VISA serial resource given by path (``ASRL/dev/ttyUSB0::INSTR``)."""
    match = _ASRL_PATH.match(resource.strip())
    return Path(match.group(1)) if match else None


def flock_holders(path: Path) -> list[int]:
    """Pids holding a flock on ``path``'s inode, from /proc/locks (empty where unknown)."""
    try:
        st = os.stat(path)
        text = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return []
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    pids = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK":
            continue
        try:
            pid = int(parts[4])
            major, minor, inode = parts[5].split(":")
            if (int(major, 16), int(minor, 16), int(inode)) == want:
                pids.append(pid)
        except ValueError:
            continue
    return pids


def _process_name(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(p.decode(errors="replace") for p in raw.split(b"\0") if p)[:120]


class DeviceLock:
    """An exclusive ``flock`` on one serial device node, held until ``release()``.

    Why on the node itself: every process that opens the port — another station file, a
    terminal program using pyserial's ``exclusive=True`` — meets the same lock."""

    def __init__(self, instrument: str, path: Path) -> None:
        self.instrument = instrument
        self.path = path
        try:
            self._fd: int | None = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:  # absent or no permission: the driver's open reports it properly
            self._fd = None
            self.problem = exc.strerror or str(exc)
            return
        self.problem = None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._fd)
            self._fd = None
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                self.problem = exc.strerror or str(exc)
                return
            pids = flock_holders(path)
            who = ", ".join(f"pid {p}" + (f" ({_process_name(p)})" if _process_name(p) else "")
                            for p in pids) or "another process"
            raise StationBusy(f"instruments.{instrument}: serial port {path} is in use by {who}; "
                              "refusing to share it") from None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


__all__ = [
    "LOCK_DIR_ENV", "DeviceLock", "Holder", "StationBusy", "StationLock", "default_lock_dir",
    "holder_is_live", "lock_path", "pid_alive", "read_holder", "serial_device_path", "stale_reason", "warn_takeover",
]
