"""Where the commands find the key registry, its pinned administrators and the audit trail.

Why one place: `rig keys`, `rig report` and `rig audit` must agree. The station file is the
authority (its ``key_registry``, ``audit_log`` and ``[signing] admin_keys``); options and
environment variables override the paths, and ``--admin-key-id`` adds a pin for a bundle checked
away from its station. Nothing defaults to the current directory: without a station file the
commands say what to give.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from reports import audit
from reports.key_registry import ENV_VAR as REGISTRY_ENV
from reports.key_registry import Registry
from rig.errors import UsageError
from rig.station.config import STATION_ENV, load_station
from rig.station.model import station_tsa


def add_options(parser: argparse.ArgumentParser, *, registry: bool = True, audit_log: bool = True) -> None:
    """--station, --registry, --admin-key-id, --audit-log."""
    parser.add_argument("--station", metavar="FILE", default=None,
                        help=f"station file naming the key registry, audit log and pinned admin keys "
                             f"(default ${STATION_ENV}, else ./rig.toml when present)")
    if registry:
        parser.add_argument("--registry", metavar="FILE", help=f"key registry (overrides ${REGISTRY_ENV} and the station)")
        parser.add_argument("--admin-key-id", metavar="ID", action="append", default=[],
                            help="pin an administrator key id (repeatable; adds to the station's [signing] admin_keys)")
    if audit_log:
        parser.add_argument("--audit-log", metavar="FILE", help="audit trail (overrides $RIG_AUDIT_LOG and the station)")


def station_of(args: argparse.Namespace) -> Any | None:
    """The station file if one is named or ./rig.toml exists; None otherwise."""
    named = getattr(args, "station", None) or os.environ.get(STATION_ENV)
    if named:
        return load_station(Path(named))
    local = Path("rig.toml")
    return load_station(local) if local.is_file() else None


def registry_path(args: argparse.Namespace, station: Any | None) -> Path:
    if getattr(args, "registry", None):
        return Path(args.registry)
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV])
    if station is not None:
        return Path(station.key_registry)
    raise UsageError(f"no key registry: give --registry FILE, set ${REGISTRY_ENV}, or --station FILE "
                     "(its key_registry)")


def pins(args: argparse.Namespace, station: Any | None) -> tuple[str, ...]:
    pinned = list(getattr(station, "admin_keys", ()) or ())
    pinned += [p for p in getattr(args, "admin_key_id", []) or [] if p not in pinned]
    return tuple(pinned)


def load_registry(args: argparse.Namespace, *, required: bool = True, create: bool = False) -> Registry | None:
    """The registry with its pins; None when not required and none is configured or present."""
    station = station_of(args)
    try:
        path = registry_path(args, station)
    except UsageError:
        if required:
            raise
        return None
    if not required and not create and not path.is_file():
        return None
    return Registry.load(path, create=create, pinned=pins(args, station),
                         time_stamp_authority=station_tsa(station))


def audit_path(args: argparse.Namespace, *, near: Path | None = None) -> Path:
    """--audit-log, else $RIG_AUDIT_LOG, else the station's audit_log, else next to ``near``."""
    explicit = getattr(args, "audit_log", None)
    if explicit or os.environ.get(audit.ENV_VAR):
        return audit.resolve_log_path(explicit)
    station = station_of(args)
    if station is not None:
        return Path(station.audit_log)
    if near is not None:
        return audit.resolve_log_path(None, near=near)
    raise UsageError(f"no audit trail: give --audit-log FILE, set ${audit.ENV_VAR}, or --station FILE (its audit_log)")


__all__ = ["add_options", "audit_path", "load_registry", "pins", "registry_path", "station_of"]
