"""The service's shared state: the station, the queue, the event hub, accounts and sessions.

Why one object: every request handler needs the same few things, and tests build the app around
one of these on a temporary station without starting a server.
"""

from __future__ import annotations

import getpass
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports import audit
from rig.service.accounts import Account, Accounts
from rig.service.finished import Trust
from rig.service.hub import EventHub
from rig.service.jobs import JobQueue
from rig.service.sessions import SessionStore
from rig.station.lock import StationLock
from rig.station.model import Station


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def local_account() -> Account:
    """Without accounts (loopback only): the login name, with every role — like `rig run`."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - containers without a login name
        user = "local"
    return Account(user, user, "local")


@dataclass
class Service:
    station: Station
    accounts: Accounts
    host: str = "127.0.0.1"
    port: int = 8714
    tls: bool = False
    registry_path: Path | None = None
    hub: EventHub = field(default_factory=EventHub)
    sessions: SessionStore = field(default_factory=SessionStore)
    queue: JobQueue | None = None
    station_lock: StationLock | None = None  # held by rig.service.server for the service's life
    audit_log: Path | None = None
    last_check: dict[str, Any] | None = None  # rig.service.status.check_bench's latest answer

    def __post_init__(self) -> None:
        if self.queue is None:
            self.queue = JobQueue(self.station, self.hub)
        if self.audit_log is None:
            self.audit_log = audit.resolve_log_path(None, near=self.station.runs_dir)

    @property
    def trust(self) -> Trust:
        """The key registry and its pinned administrators, as `rig report verify` reads them from the
        station file (``--registry`` overrides the path; the pins always come from the station)."""
        return Trust(self.registry_path or self.station.key_registry, tuple(self.station.admin_keys),
                     self.station.time_stamp_authority())

    @property
    def auth_required(self) -> bool:
        """Accounts are required off loopback, and used whenever an accounts file has users."""
        return bool(self.accounts) or not is_loopback(self.host)

    @property
    def lock_holder(self) -> dict[str, Any]:
        return self.station_lock.holder.as_dict() if self.station_lock is not None else {}

    def hold(self, lock: StationLock) -> None:
        """The service owns the bench from here on: every job opens it under this lock."""
        self.station_lock = lock
        self.jobs.lock = lock

    @property
    def jobs(self) -> JobQueue:
        assert self.queue is not None
        return self.queue

    def audit(self, kind: str, **data: Any) -> None:
        """One entry in the station's hash-chained audit trail (never a passphrase or password)."""
        assert self.audit_log is not None
        audit.append_event(self.audit_log, kind, station=self.station.id, **data)


__all__ = ["Service", "is_loopback", "local_account"]
