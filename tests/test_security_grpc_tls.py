"""Attack tests, issue 18 finding 2: the NI gRPC link to the DAQ was never encrypted.

The attacker here is someone on the network path: they can offer their own server (a certificate
not issued by the lab's CA), connect to the device server themselves (no client certificate), or
simply listen to plaintext. With the station file's ``grpc_tls`` the driver talks only to a server
whose certificate chains to the configured CA, the server (mutual TLS) only to a client with a
certificate, and a non-loopback server without TLS is refused before anything is sent.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from nidaqmx._stubs import nidaqmx_pb2_grpc as pb_grpc

from instruments.daq import Daq, DaqConfigError
from instruments.errors import InstrumentError
from instruments.sim.daq_device import VirtualDaq
from instruments.sim.daq_service import DaqService
from instruments.sim.world import SimWorld
from rig.errors import ConfigError
from tests.daq_fixtures import CHANNELS


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool = False, server: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A lab CA, a device-server certificate and a client certificate from it, and a rogue server."""
    d = tmp_path_factory.mktemp("pki")
    ca_key, srv_key, cli_key, rogue_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    ca = _cert("Lab CA", ca_key, "Lab CA", ca_key, ca=True)
    files = {
        "ca.pem": _pem(ca),
        "server.pem": _pem(_cert("localhost", srv_key, "Lab CA", ca_key, server=True)), "server.key": _key_pem(srv_key),
        "client.pem": _pem(_cert("rig-pc", cli_key, "Lab CA", ca_key)), "client.key": _key_pem(cli_key),
        "rogue.pem": _pem(_cert("localhost", rogue_key, "localhost", rogue_key, server=True)),
        "rogue.key": _key_pem(rogue_key),
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
        (d / name).chmod(0o600)
    return {"dir": d, **{name: d / name for name in files}}


def serve_tls(cert: Path, key: Path, *, client_ca: Path | None = None) -> tuple[grpc.Server, int]:
    """The simulated NI device behind a TLS port (as NI's gRPC Device Server with TLS configured)."""
    world = SimWorld(virtual=True, seed=3)
    device = VirtualDaq(world, device_name="SimDAQ1", serial="01ABCDEF", channels=CHANNELS, seed=1)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_NiDAQmxServicer_to_server(DaqService(device), server)
    credentials = grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())],
        root_certificates=client_ca.read_bytes() if client_ca else None, require_client_auth=client_ca is not None)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, port


def open_daq(port: int, tls: dict | None, host: str = "localhost") -> Daq:
    return Daq("daq", "SimDAQ1", timeout_ms=5000, options={"channels": CHANNELS, "sample_rate_hz": 100.0},
               grpc_server=f"{host}:{port}", grpc_tls=tls)


def test_server_tls_link_works_and_a_rogue_server_is_not_believed(pki: dict) -> None:
    server, port = serve_tls(pki["server.pem"], pki["server.key"])
    try:
        daq = open_daq(port, {"ca_file": str(pki["ca.pem"])})
        try:
            assert daq.identify().serial == "01ABCDEF"
        finally:
            daq.close()
    finally:
        server.stop(0)
    rogue, rogue_port = serve_tls(pki["rogue.pem"], pki["rogue.key"])  # the attacker's fake device
    try:
        with pytest.raises((InstrumentError, DaqConfigError)):
            daq = open_daq(rogue_port, {"ca_file": str(pki["ca.pem"])})
            try:
                daq.identify()
            finally:
                daq.close()
    finally:
        rogue.stop(0)


def test_mutual_tls_refuses_a_client_without_the_lab_certificate(pki: dict) -> None:
    server, port = serve_tls(pki["server.pem"], pki["server.key"], client_ca=pki["ca.pem"])
    try:
        daq = open_daq(port, {"ca_file": str(pki["ca.pem"]), "cert_file": str(pki["client.pem"]),
                              "key_file": str(pki["client.key"])})
        try:
            assert daq.identify().serial == "01ABCDEF"
        finally:
            daq.close()
        with pytest.raises((InstrumentError, DaqConfigError)):  # the attacker has no client certificate
            intruder = open_daq(port, {"ca_file": str(pki["ca.pem"])})
            try:
                intruder.identify()
            finally:
                intruder.close()
    finally:
        server.stop(0)


def test_driver_refuses_plaintext_to_another_host() -> None:
    with pytest.raises(DaqConfigError, match="not on this host"):
        Daq("daq", "Dev1", options={"channels": CHANNELS}, grpc_server="10.20.30.40:31763")


def test_station_file_refuses_a_remote_device_server_without_tls(station_file, pki: dict) -> None:
    from rig.station.config import load_station

    remote = {"instruments.daq.grpc_server": "10.20.30.40:31763"}
    with pytest.raises(ConfigError, match="needs TLS"):
        load_station(station_file(set=remote))
    station = load_station(station_file(set={
        **remote, "instruments.daq.grpc_tls": {"ca_file": str(pki["ca.pem"]), "cert_file": str(pki["client.pem"]),
                                               "key_file": str(pki["client.key"]), "server_name": "localhost"}}))
    assert station.instruments["daq"].grpc_tls == {
        "ca_file": str(pki["ca.pem"]), "cert_file": str(pki["client.pem"]), "key_file": str(pki["client.key"]),
        "server_name": "localhost"}
    with pytest.raises(ConfigError, match="cert_file and key_file"):
        load_station(station_file(set={
            **remote, "instruments.daq.grpc_tls": {"ca_file": str(pki["ca.pem"]), "cert_file": str(pki["client.pem"])}}))
