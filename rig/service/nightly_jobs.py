"""A nightly suite submitted to the service (`rig nightly --via URL`): checked, then queued.

Why the service's own station key: an unattended suite signs its bundles as the station
(generated_by); the key and its passphrase belong to the service's environment
($RIG_STATION_KEY, $RIG_KEY_PASSPHRASE) exactly as for `rig nightly` on the bench computer, and
never travel over the network. The suite file is one of the station's (a name under the station
file's suites/ folder, or the default suite), so a remote user cannot make the service read an
arbitrary file.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rig.errors import RigError, UsageError
from rig.fleet.history import open_history, redact, station_url
from rig.fleet.nightly import NightlyRunner, load_station_signer, new_nightly_id, nightly_operator
from rig.fleet.suite import default_suite_path, load_suite
from rig.service.jobs import Job


def suite_path(station: Any, name: str | None) -> Path:
    if not name:
        return default_suite_path()
    if "/" in name or name.startswith("."):
        raise UsageError(f"suite {name!r}: give the name of a suite file in {station.path.parent / 'suites'}")
    path = station.path.parent / "suites" / (name if name.endswith(".toml") else f"{name}.toml")
    if not path.is_file():
        raise UsageError(f"suite {name!r}: no file {path}")
    return path


def submit_nightly(service: Any, name: str | None, unsigned: bool, user: str) -> Job:
    station = service.station
    path = suite_path(station, name)
    suite = load_suite(path)
    signer = None if unsigned else load_station_signer(None, str(service.trust.registry_path), station=station)
    suite = nightly_operator(suite, station, signer)

    def make_runner(job: Job, stream: io.TextIOBase) -> NightlyRunner:
        nightly_id = new_nightly_id(suite.name)
        url = station_url(station, None)
        history, history_error = None, None
        try:
            history = open_history(url)
        except RigError as exc:
            history_error = f"{redact(url)}: {exc}"
        return NightlyRunner(station=station, suite=suite, out_dir=station.runs_dir / "nightly" / nightly_id,
                             signer=signer, history=history, nightly_id=nightly_id, stream=stream,  # type: ignore[arg-type]
                             history_error=history_error, held_lock=service.station_lock)

    return service.jobs.submit_nightly(path, unsigned, user, make_runner)


__all__ = ["submit_nightly", "suite_path"]
