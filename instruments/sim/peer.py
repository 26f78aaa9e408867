"""Who is on the other end of a loopback TCP connection: only the bench's own user may connect.

Why: the simulated bench serves its control channel, the SCPI DMM and the NI-DAQmx gRPC server on
127.0.0.1, and any local user can connect to a loopback port. One control line from user
``nobody`` (``{"cmd": "pump", "displacement_factor": 1.3}``) turned a running PASS into a FAIL
that the station key then signed. A token would change the instruments' protocols (a program
written to the Keysight manual cannot send one) and a Unix socket would change their addresses
(pyvisa's ``TCPIP::…::SOCKET`` cannot reach one); so each connection's peer is looked up in the
kernel's socket table (``/proc/net/tcp``, ``/proc/net/tcp6``: the uid that owns the client
socket) and refused unless it is the user the bench runs as. That is the guarantee a Unix socket
in a 0700 directory gives, on unchanged addresses and protocols.

What it does not cover: another process of the *same* user (it could read the resources file
and ptrace the bench anyway), root, and hosts other than this one (the bench listens on loopback only).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
ESTABLISHED = "01"


def _port(field: str) -> int:
    return int(field.rpartition(":")[2], 16)


def peer_uid(server_port: int, client_port: int) -> int | None:
    """The uid owning the client end of the loopback connection client_port -> server_port, or None."""
    for table in _TABLES:
        try:
            lines = table.read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 8 or fields[3] != ESTABLISHED:
                continue
            if _port(fields[1]) == client_port and _port(fields[2]) == server_port:
                return int(fields[7])
    return None


def same_user(server_port: int, client_address: tuple) -> bool:
    """Is the connecting process (``client_address`` from accept) run by this process's user?"""
    host, port = client_address[0], int(client_address[1])
    if host not in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        log.warning("refused a connection from %s: the simulated bench serves loopback only", host)
        return False
    uid = peer_uid(server_port, port)
    if uid != os.getuid():
        log.warning("refused a connection from uid %s on port %d: only uid %d may use this simulated bench",
                    uid, server_port, os.getuid())
        return False
    return True


def grpc_peer_allowed(server_port: int, peer: str) -> bool:
    """``same_user`` for a gRPC ``context.peer()`` string (``ipv4:127.0.0.1:54321``, ``ipv6:[::1]:54321``)."""
    kind, _, rest = peer.partition(":")
    host, _, port = rest.rpartition(":")
    if kind not in ("ipv4", "ipv6") or not port.isdigit():
        return False
    return same_user(server_port, (host.strip("[]"), int(port)))
