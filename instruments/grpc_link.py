"""The channel to an NI gRPC Device Server: TLS (server or mutual) from the station file.

Why: the DAQ reads the line pressures that feed the overpressure interlock and drives the fault
valves. Over a plaintext channel anyone on the network path can fake a pressure (defeating the
interlock) or switch a valve. NI's gRPC Device Server supports server TLS and mutual TLS; the
station file names the files (``[instruments.<daq>.grpc_tls]``: ``ca_file`` — the CA or
self-signed certificate that the server's certificate must chain to — and, for mutual TLS,
``cert_file`` + ``key_file`` of this client, optionally ``server_name`` when the certificate's
name differs from the host in ``grpc_server``). Without TLS only a server on this host
(loopback, or a ``unix:`` socket) is accepted: the simulated bench, or a device server on the
rig PC itself.

What it does not cover: authorisation inside the device server (who may do what once
authenticated) and the protection of the client key file on this PC (keep it mode 0600).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TLS_KEYS = ("ca_file", "cert_file", "key_file", "server_name")
MAX_PEM_BYTES = 1 << 20


class InsecureLinkError(ValueError):
    """The station asks for a link this module will not open (plaintext off this host, bad TLS files)."""


@dataclass(frozen=True)
class GrpcTls:
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None

    @property
    def mutual(self) -> bool:
        return self.cert_file is not None


def host_of(server: str) -> str:
    """The host part of ``host:port`` (``[v6]:port`` too)."""
    host = server.rpartition(":")[0]
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_local(server: str) -> bool:
    """Does ``server`` stay on this host (loopback address, localhost, or a unix: socket)?"""
    if server.startswith("unix:"):
        return True
    host = host_of(server)
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_problem(table: Any, base: Path | None = None) -> str | None:
    """Why a ``grpc_tls`` table cannot be used, or None (for the station file's messages)."""
    if not isinstance(table, Mapping):
        return "must be a table with ca_file (and cert_file + key_file for mutual TLS)"
    unknown = sorted(set(table) - set(TLS_KEYS))
    if unknown:
        return f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(TLS_KEYS)}"
    if not isinstance(table.get("ca_file"), str):
        return "needs ca_file: the CA (or self-signed) certificate the server's certificate must chain to"
    if ("cert_file" in table) != ("key_file" in table):
        return "mutual TLS needs both cert_file and key_file"
    for key in ("ca_file", "cert_file", "key_file"):
        if key in table:
            value = table[key]
            if not isinstance(value, str) or not value:
                return f"{key} must be a file name"
            path = Path(value).expanduser()
            if base is not None and not path.is_absolute():
                path = base / path
            if not path.is_file():
                return f"{key} {value!r}: no such file"
    if "server_name" in table and (not isinstance(table["server_name"], str) or not table["server_name"]):
        return "server_name must be the host name in the server's certificate"
    return None


def tls_from_table(table: Mapping[str, Any] | None, base: Path | None = None) -> GrpcTls | None:
    """A validated ``grpc_tls`` table as GrpcTls (paths relative to ``base``); InsecureLinkError otherwise."""
    if table is None:
        return None
    problem = tls_problem(table, base)
    if problem:
        raise InsecureLinkError(f"grpc_tls {problem}")

    def path(key: str) -> Path | None:
        if key not in table:
            return None
        p = Path(str(table[key])).expanduser()
        return p if p.is_absolute() or base is None else (base / p).resolve()

    return GrpcTls(ca_file=path("ca_file"), cert_file=path("cert_file"), key_file=path("key_file"),  # type: ignore[arg-type]
                   server_name=table.get("server_name"))


def _pem(path: Path) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(MAX_PEM_BYTES + 1)
    if len(data) > MAX_PEM_BYTES:
        raise InsecureLinkError(f"{path} is larger than {MAX_PEM_BYTES} bytes: not a PEM file")
    return data


def open_channel(server: str, tls: GrpcTls | Mapping[str, Any] | None) -> Any:
    """A gRPC channel to ``server``: TLS when ``tls`` is given, plaintext only to this host."""
    import grpc

    if isinstance(tls, Mapping):
        tls = tls_from_table(tls)
    if tls is None:
        if not is_local(server):
            raise InsecureLinkError(
                f"NI gRPC device server {server} is not on this host and no grpc_tls is configured: anyone on "
                "the network path could fake pressures or switch valves; give [grpc_tls] ca_file (and cert_file + "
                "key_file for mutual TLS) in the station file")
        return grpc.insecure_channel(server)
    try:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_pem(tls.ca_file),
            private_key=_pem(tls.key_file) if tls.key_file else None,
            certificate_chain=_pem(tls.cert_file) if tls.cert_file else None,
        )
    except OSError as exc:
        raise InsecureLinkError(f"grpc_tls: cannot read {exc.filename}: {exc.strerror}") from None
    options = [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []
    return grpc.secure_channel(server, credentials, options=options)
