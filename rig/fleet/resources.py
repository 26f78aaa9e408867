"""What this process holds: threads, open file descriptors, child processes (and a DAQ's listeners).

Why: a nightly runs many procedures in one process; anything one run subscribes, starts or opens
and does not release accumulates over the night (a listener of the previous procedure writing
into a closed record, a reader thread per run, a leaked socket) and eventually breaks a later
run. The nightly logs these counts before and after the suite and keeps them in summary.json, so
a leak is seen the first night it appears, with numbers.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def open_fds() -> list[str]:
    """What each open file descriptor of this process is, beyond stdin/stdout/stderr (a hang-up
    moves those to /dev/null): a path, or "socket"/"pipe"/... (the inode number dropped, so two
    snapshots compare by kind)."""
    out = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return out
    for name in names:
        if name in ("0", "1", "2"):
            continue
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the descriptor listdir itself used, closed by now
        out.append(re.sub(r":\[\d+\]$", "", target))
    return sorted(out)


def children(exclude: Iterable[int] = ()) -> list[dict[str, Any]]:
    """Direct child processes of this one (pid, state, command), zombies included, but for the
    pids in ``exclude``."""
    me = os.getpid()
    skip = {str(pid) for pid in exclude}
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or entry.name in skip:
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        if len(rest) > 1 and rest[1] == str(me):
            out.append({"pid": int(entry.name), "state": rest[0],
                        "command": stat[stat.find("(") + 1:stat.rfind(")")]})
    return out


def daq_listeners(daq: Any) -> int | None:
    """Chunk + failure listeners registered on a DAQ driver (None: not a DAQ with listeners)."""
    listeners = getattr(daq, "listeners", None)
    if listeners is None:
        return None
    chunk, failure = listeners()
    return len(chunk) + len(failure)


def snapshot(daq: Any = None, *, exclude_children: Iterable[int] = ()) -> dict[str, Any]:
    """Counts now: threads, fds, children (and zombies among them), and the DAQ's listeners."""
    kids = children(exclude_children)
    counts: dict[str, Any] = {
        "threads": threading.active_count(),
        "thread_names": sorted(t.name for t in threading.enumerate()),
        "open_fds": len(fds := open_fds()),
        "open_fd_targets": fds,
        "children": len([c for c in kids if c["state"] != "Z"]),
        "zombies": len([c for c in kids if c["state"] == "Z"]),
    }
    if daq is not None:
        counts["daq_listeners"] = daq_listeners(daq)
    return counts


def describe(counts: dict[str, Any]) -> str:
    text = (f"threads {counts['threads']}, open fds {counts['open_fds']}, child processes "
            f"{counts['children']} (+{counts['zombies']} unreaped)")
    if counts.get("daq_listeners") is not None:
        text += f", DAQ listeners {counts['daq_listeners']}"
    return text


__all__ = ["children", "daq_listeners", "describe", "open_fds", "snapshot"]
