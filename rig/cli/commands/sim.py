"""`rig sim serve`: run the simulated bench of a station until SIGINT/SIGTERM.

Why a command: third-party software and several terminals can share one simulated bench, and
`rig check`/`rig run` start exactly this command as a child (instruments.sim.launcher). The
resources file it writes (atomically, removed on exit) is the only thing a client needs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import stat
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from rig.errors import UsageError
from rig.station.lock import pid_alive

# Set by instruments.sim.launcher: the child stops by itself if the process that started it dies,
# so a crashed test run never leaves an orphaned bench holding ptys and ports.
EXIT_WITH_PARENT_ENV = "RIG_SIM_EXIT_WITH_PARENT"
PARENT_POLL_S = 0.5


def register(subparsers: argparse._SubParsersAction) -> None:
    sim = subparsers.add_parser("sim", help="the simulated bench",
                                description="The simulated bench: every instrument of a station on real transports.")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SIM_COMMAND")
    serve = sim_sub.add_parser(
        "serve",
        help="serve every instrument of the station on real transports until Ctrl-C/SIGTERM",
        description="Start the simulated bench for a station, write its resources file, serve until "
        "SIGINT or SIGTERM, then stop everything and remove the resources file.",
    )
    serve.add_argument("--station", type=Path, default=None,
                       help="station file (default: $RIG_STATION or ./rig.toml)")
    serve.add_argument("--resources-out", type=Path, default=None, metavar="FILE",
                       help="where to write the resources JSON, mode 0600 (default: $XDG_RUNTIME_DIR, else the "
                       "private directory /tmp/rig-<uid>, /rig-sim-<station id>.json)")
    serve.set_defaults(func=serve_command)
    sim.set_defaults(func=lambda args: _usage(sim))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def private_dir() -> Path:
    """A directory only this user can enter: $XDG_RUNTIME_DIR, else <tmp>/rig-<uid> (mode 0700).

    Why: with a fixed name in a shared /tmp, another user could create the resources file (or a
    symlink in its place) first and point our clients at their own "bench". The directory is
    created exclusively; an existing one must be ours, a real directory, and mode 0700.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime)
    folder = Path(tempfile.gettempdir()) / f"rig-{os.getuid()}"
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise UsageError(f"{folder} is not a private directory of yours (it must be a directory owned by uid "
                         f"{os.getuid()} with mode 0700); someone may have created it first: remove it, or give "
                         "--resources-out in a directory of your own")
    return folder


def default_resources_path(station_id: str) -> Path:
    """In the per-user private directory (see ``private_dir``)."""
    return private_dir() / f"rig-sim-{station_id}.json"


def _check_resources_dir(folder: Path) -> None:
    """Others must not be able to replace the resources file: refuse a folder they can write to
    (unless it is sticky, as /tmp is, where they cannot remove or rename our file)."""
    st = os.stat(folder)
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise UsageError(f"--resources-out: {folder} is writable by other users (mode "
                         f"{stat.S_IMODE(st.st_mode):04o}); they could replace the resources file")


def write_resources(path: Path, resources: dict[str, Any]) -> None:
    """Write atomically (tmp + rename) so a reader never sees a half-written file; mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _check_resources_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(resources, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _refuse_if_served(path: Path) -> None:
    """Two benches writing one resources file would strand one of them: refuse clearly."""
    try:
        pid = int(json.loads(path.read_text(encoding="utf-8")).get("pid", 0))
    except (OSError, ValueError, AttributeError, TypeError):
        return  # absent or unreadable: a stale file we may overwrite
    if pid and pid != os.getpid() and pid_alive(pid):
        raise UsageError(
            f"{path} belongs to a running simulated bench (pid {pid}); stop it first, "
            "give --resources-out FILE, or delete the file if that process is not a simulated bench"
        )


def _print_resources(resources: dict[str, Any], path: Path) -> None:
    rows: list[tuple[str, str]] = [(f"instrument {n}", r) for n, r in sorted(resources["instruments"].items())]
    rows += [(f"serial port {n}", p) for n, p in sorted(resources["serial_ports"].items())]
    rows += [("control", str(resources["control"])), ("clock", resources["clock"])]
    if "daq_grpc" in resources:
        rows.append(("daq gRPC", resources["daq_grpc"]))
    rows += [("pid", str(resources["pid"])), ("resources file", str(path))]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Simulated bench {resources['station']} (Ctrl-C to stop)")
        table.add_column("what")
        table.add_column("where")
        for what, where in rows:
            table.add_row(what, where)
        Console().print(table)
    else:
        for what, where in rows:
            print(f"{what}: {where}")
    sys.stdout.flush()


def _wait_for_stop(stop: threading.Event) -> None:
    """Block until a signal sets ``stop`` (or, when asked, until the parent process is gone)."""
    watch_parent = os.environ.get(EXIT_WITH_PARENT_ENV) == "1"
    parent = os.getppid()
    while not stop.wait(PARENT_POLL_S):
        if watch_parent and os.getppid() != parent:
            logging.getLogger(__name__).warning("parent process %d is gone; stopping", parent)
            return


def serve_command(args: argparse.Namespace) -> int:
    from instruments.sim.server import SimServer
    from rig.station.config import default_station_path, load_station

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    station = load_station(args.station or default_station_path())
    if station.mode != "sim":
        raise UsageError(f"{station.path}: station.mode is {station.mode!r}; `rig sim serve` needs "
                         "mode = \"sim\"")
    path: Path = (args.resources_out or default_resources_path(station.id)).expanduser().absolute()
    _refuse_if_served(path)

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = SimServer(station)
    try:
        server.start()
        resources = server.resources()
        write_resources(path, resources)
        _print_resources(resources, path)
        _wait_for_stop(stop)
    finally:
        server.stop()
        path.unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("simulated bench stopped", flush=True)
    return 0
