"""The simulated bench as a server: `rig sim serve`, its resources file, transports and control.

The clients here are deliberately *not* our drivers: plain pyserial on the pseudo-terminals and a
raw socket on the DMM port, as third-party software written for the real instruments would be.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import serial

from instruments.sim.control import SimControl, SimControlError
from instruments.sim.launcher import SimProcess, read_resources, start_sim
from rig.cli.main import main as rig_main
from rig.errors import BenchError, UsageError

REPO = Path(__file__).resolve().parents[1]
STX, ETX = b"\x02", b"\x03"


def _tcp_address(resource: str) -> tuple[str, int]:
    """TCPIP::host::port::SOCKET -> (host, port)."""
    _, host, port, _ = resource.split("::")
    return host, int(port)


def _serial(path: str) -> serial.Serial:
    return serial.Serial(path, baudrate=9600, timeout=2.0)


def _wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _open_pty_client(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)


def _hung_up(fd: int) -> bool:
    """True when the server side of a pty is gone (writes fail with EIO). Checking that the
    /dev/pts/N node vanished is not enough: other processes on the machine reuse the number."""
    try:
        os.write(fd, b"\r")
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _port_refuses(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=1.0).close()
    except OSError:
        return True
    return False


# -- one `rig sim serve` child shared by the protocol-level tests (the shipped station) -------------


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory, station_writer: Callable[..., Path]) -> Iterator[SimProcess]:
    station = station_writer(tmp_path_factory.mktemp("bench"))
    sim = start_sim(station, timeout_s=60)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def control(bench: SimProcess) -> Iterator[SimControl]:
    with bench.control(timeout_s=10) as ctl:
        yield ctl
        for name in bench.resources["instruments"]:  # leave no fault behind for the next test
            ctl.fault(name, "none")


def test_resources_list_every_instrument_of_the_station(bench: SimProcess) -> None:
    res = bench.resources
    assert set(res["instruments"]) == {"pump", "balance", "dmm", "daq"}
    assert set(res["serial_ports"]) == {"pump", "balance"}
    for name in ("pump", "balance"):
        assert res["instruments"][name] == f"ASRL{res['serial_ports'][name]}::INSTR"
        assert os.path.exists(res["serial_ports"][name])
    assert res["instruments"]["dmm"].startswith("TCPIP::127.0.0.1::")
    assert res["clock"] == "virtual"
    assert res["pid"] == bench.pid
    assert res["instruments"]["daq"] == "SimDAQ1" and ":" in res["daq_grpc"]
    assert read_resources(bench.resources_path) == res


def test_plain_pyserial_client_talks_to_the_balance(bench: SimProcess) -> None:
    with _serial(bench.resources["serial_ports"]["balance"]) as port:
        port.write(b"I4\r\n")
        assert port.readline() == b'I4 A "B123456789"\r\n'  # MT-SICS serial number reply


def test_plain_pyserial_client_talks_to_the_syringe_pump(bench: SimProcess) -> None:
    with _serial(bench.resources["serial_ports"]["pump"]) as port:
        port.write(b"0VER\r")
        reply = port.read_until(ETX)
    assert reply.startswith(STX + b"00") and reply.endswith(ETX)  # STX, address 00, status, data, ETX
    assert b"NE1000" in reply.replace(b"-", b"").upper()


def test_raw_socket_client_talks_to_the_dmm(bench: SimProcess) -> None:
    with socket.create_connection(_tcp_address(bench.resources["instruments"]["dmm"]), timeout=5) as s:
        s.sendall(b"*IDN?\n")
        reply = s.makefile("rb").readline()
    assert b"MY12345678" in reply and reply.endswith(b"\n")


def test_advance_moves_virtual_time_and_time_reports_the_mode(control: SimControl) -> None:
    t0 = control.time_s()
    assert control.call("time")["mode"] == "virtual"
    assert control.advance(7200.0) == pytest.approx(t0 + 7200.0)
    assert control.time_s() == pytest.approx(t0 + 7200.0)
    assert control.state()["model"]["t_s"] == pytest.approx(t0 + 7200.0)


@pytest.mark.parametrize(
    ("cmd", "args", "message"),
    [
        ("warp", {}, "unknown command 'warp'"),
        ("advance", {}, "missing argument(s) dt_s"),
        ("advance", {"dt_s": -1}, "dt_s must be between 0"),
        ("advance", {"dt_s": "ten"}, "dt_s must be a number"),
        ("advance", {"dt_s": True}, "dt_s must be a number"),
        ("fault", {"instrument": "scope", "fault": "silent"}, "unknown instrument 'scope'"),
        ("fault", {"instrument": "balance", "fault": "smoke"}, "fault must be one of none, silent, garbage, drop"),
        ("line", {"kink_pct": 101}, "kink_pct must be between 0 and 100"),
        ("line", {"kink_pct": -5}, "kink_pct must be between 0 and 100"),
        ("line", {"occlusion": "yes"}, "occlusion must be true or false"),
        ("line", {"valve": True}, "unknown argument(s) valve"),
        ("pump", {"displacement_factor": 5}, "displacement_factor must be between 0.1 and 2"),
        ("pump", {"stall": 1}, "stall must be true or false"),
        ("state", {"verbose": True}, "unknown argument(s) verbose"),
    ],
)
def test_control_refuses_bad_commands_clearly(control: SimControl, cmd: str, args: dict[str, Any], message: str) -> None:
    with pytest.raises(SimControlError) as err:
        control.call(cmd, **args)
    assert message in str(err.value)
    control.time_s()  # the connection survives a refused command


def test_control_answers_malformed_lines_with_errors(bench: SimProcess) -> None:
    host, _, port = bench.resources["control"].rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        f = s.makefile("rwb")
        for line in (b"{not json\n", b"[1, 2]\n", b'{"dt_s": 1}\n', b'{"cmd": "advance", "dt_s": NaN}\n'):
            f.write(line)
            f.flush()
            reply = json.loads(f.readline())
            assert reply["ok"] is False and reply["error"], line


def test_transport_faults_on_a_serial_port(bench: SimProcess, control: SimControl) -> None:
    with _serial(bench.resources["serial_ports"]["balance"]) as port:
        port.timeout = 0.5
        control.fault("balance", "silent")
        port.write(b"I4\r\n")
        assert port.readline() == b""
        control.fault("balance", "garbage")
        port.write(b"I4\r\n")
        garbage = port.readline()
        assert garbage and not garbage.startswith(b"I4 A")
        control.fault("balance", "none")
        port.timeout = 2.0
        port.write(b"I4\r\n")
        assert port.readline().startswith(b"I4 A")


def test_state_reports_the_model_and_every_emulator(control: SimControl) -> None:
    state = control.state()
    assert set(state["instruments"]) == {"pump", "balance", "dmm"}
    assert state["model"]["pump"]["kind"] == "syringe"
    assert set(state["model"]["totals"]) >= {"pumped_ml", "delivered_ml", "leaked_ml", "spilled_ml", "stored_ml"}
    assert "outputs" in state["daq"]  # the simulated DAQ reports its own state too


def test_line_and_pump_commands_change_the_model(control: SimControl) -> None:
    control.line(kink_pct=40.0, leak=True)
    control.pump(displacement_factor=0.8, stall=True)
    model = control.state()["model"]
    assert model["faults"] == {"occlusion": False, "kink_pct": 40.0, "leak": True, "disconnect": False}
    # a fault of the line is not the rig's valve: the valves stay where the rig (not) put them
    assert model["valves"] == {"occlusion": False, "kink_pct": 0.0, "leak": False, "disconnect": False}
    assert model["pump"]["displacement_factor"] == 0.8
    control.line(kink_pct=0.0, leak=False)
    control.pump(displacement_factor=1.0, stall=False)
    model = control.state()["model"]
    assert model["faults"]["kink_pct"] == 0.0 and not model["pump"]["stalled"]


# -- process lifecycle -----------------------------------------------------------------------------


def _serve(station: Path, resources: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rig", "sim", "serve", "--station", str(station), "--resources-out", str(resources)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_serve_cleanly(tmp_path: Path, station_file: Callable[..., Path], sig: signal.Signals) -> None:
    resources_path = tmp_path / "run" / "resources.json"
    proc = _serve(station_file(without=("daq",)), resources_path)
    try:
        assert _wait_for(resources_path.exists, 30), proc.stdout.read() if proc.poll() is not None else "timeout"
        res = read_resources(resources_path)
        assert res["pid"] == proc.pid
        clients = [_open_pty_client(p) for p in res["serial_ports"].values()]  # connected while it stops
        control_host, _, control_port = res["control"].rpartition(":")
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    assert "instrument balance: ASRL/dev/pts/" in out  # plain lines when stdout is not a tty
    assert not resources_path.exists()
    assert all([_hung_up(fd) for fd in clients])  # list: close every fd
    assert _port_refuses((control_host, int(control_port)))
    assert _port_refuses(_tcp_address(res["instruments"]["dmm"]))


def test_serve_with_a_bad_station_exits_2_without_traceback(tmp_path: Path, station_file: Callable[..., Path]) -> None:
    station = station_file(set={"station.clock": "sometimes"})
    proc = subprocess.run(
        [sys.executable, "-m", "rig", "sim", "serve", "--station", str(station),
         "--resources-out", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert proc.returncode == 2
    assert "station.clock" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_launcher_reports_a_child_that_dies_with_its_log(station_file: Callable[..., Path]) -> None:
    station = station_file(set={"fluid.density_g_ml": 9.0})
    with pytest.raises(UsageError) as err:
        start_sim(station, timeout_s=60)
    assert "exited with code 2" in str(err.value) and "fluid.density_g_ml" in str(err.value)


def test_launcher_stop_is_idempotent_and_reports_exit_code(sim_process: SimProcess) -> None:
    control_address = sim_process.resources["control"]
    with sim_process.control() as ctl:
        assert ctl.time_s() >= 0
    assert sim_process.stop() == 0
    assert sim_process.stop() == 0
    host, _, port = control_address.rpartition(":")
    assert _port_refuses((host, int(port)))


def test_serve_refuses_a_resources_file_of_a_running_bench(tmp_path: Path, station_file: Callable[..., Path],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    resources = tmp_path / "busy.json"
    resources.write_text(json.dumps({"pid": os.getppid()}))  # a live process that is not us
    code = rig_main(["sim", "serve", "--station", str(station_file()), "--resources-out", str(resources)])
    assert code == 2
    assert f"running simulated bench (pid {os.getppid()})" in capsys.readouterr().err
    assert resources.exists()


def test_default_resources_path_prefers_the_runtime_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rig.cli.commands.sim import default_resources_path

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert default_resources_path("SIM-BENCH-01") == tmp_path / "rig-sim-SIM-BENCH-01.json"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_resources_path("R2").name == "rig-sim-R2.json"


# -- resources file --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("{half", "not valid JSON"),
        ("[1]", "must hold a JSON object"),
        ('{"instruments": {}}', "lacks serial_ports, control, clock, pid"),
    ],
)
def test_read_resources_explains_what_is_wrong(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "resources.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BenchError) as err:
        read_resources(path)
    assert message in str(err.value) and str(path) in str(err.value)


# -- in-process server -----------------------------------------------------------------------------


@pytest.mark.parametrize("sim_station", [{"without": ("dmm", "daq")}], indirect=True)
def test_pump_commanded_over_its_pty_drives_the_shared_model(sim_server: Any) -> None:
    # 1 mL/h into an occluded line: pressure rises at Q/C = 100 kPa/h -> +16.7 kPa in 10 min.
    res = sim_server.resources()
    with _serial(res["serial_ports"]["pump"]) as port, SimControl(res["control"]) as ctl:
        for cmd in (b"0RAT 1.000 MH\r", b"0RUN\r"):
            port.write(cmd)
            reply = port.read_until(ETX)
            assert reply.startswith(STX + b"00") and b"?" not in reply, (cmd, reply)
        ctl.advance(120)
        pump = ctl.state()["model"]["pump"]
        assert pump["running"] and pump["rate_ml_h"] == pytest.approx(1.0)
        p0 = ctl.state()["model"]["pressure_kpa"]
        ctl.line(occlusion=True)
        ctl.advance(600)
        assert ctl.state()["model"]["pressure_kpa"] - p0 == pytest.approx(100.0 / 6, rel=0.02)


@pytest.mark.parametrize("sim_station", [{"clock": "real", "without": ("dmm", "daq")}], indirect=True)
def test_real_time_bench_progresses_without_queries_and_refuses_advance(sim_server: Any) -> None:
    samples: list[float] = []
    with sim_server.world.lock:
        sim_server.world.model.add_sampler(0.05, lambda m: samples.append(m.t_s))
    time.sleep(0.6)  # nobody queries: only the ticker can move the model
    assert len(samples) >= 5
    with SimControl(sim_server.resources()["control"]) as ctl:
        assert ctl.call("time")["mode"] == "real"
        with pytest.raises(SimControlError, match="advance needs clock = \"virtual\""):
            ctl.advance(1.0)


@pytest.mark.parametrize("sim_station", [{"pump": "peristaltic", "without": ("dmm", "daq")}], indirect=True)
def test_peristaltic_station_drives_a_peristaltic_model(sim_server: Any) -> None:
    assert sim_server.world.model.pump.kind == "peristaltic"
    assert set(sim_server.resources()["serial_ports"]) == {"pump", "balance"}


@pytest.mark.parametrize("sim_station", [{"without": ("daq",)}], indirect=True)
def test_stop_closes_every_transport(sim_server: Any) -> None:
    res = sim_server.resources()
    host, _, port = res["control"].rpartition(":")
    clients = [_open_pty_client(p) for p in res["serial_ports"].values()]
    sim_server.stop()
    assert all([_hung_up(fd) for fd in clients])  # list: close every fd
    assert _port_refuses((host, int(port)))
    assert _port_refuses(_tcp_address(res["instruments"]["dmm"]))
    sim_server.stop()  # idempotent
