"""`rig check` and the Bench, end to end against the simulated bench on its real transports.

The simulated bench runs as a child process (instruments.sim.launcher), exactly as `rig check`
starts it; hardware-mode stations below point at its pseudo-terminals and sockets directly, which is
the hardware code path with no sim involvement in the controller.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from instruments.drivers import DRIVERS
from rig.cli.main import main
from rig.errors import BenchError
from rig.station.bench import Bench
from rig.station.config import load_station

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "rig.toml"
SHIPPED_TEXT = SHIPPED.read_text(encoding="utf-8")
SHIPPED_SERIALS = {"pump": "NE1000-SIM-0001", "balance": "B123456789", "dmm": "MY12345678",
                   "daq": "01ABCDEF"}


def _sim_modules(drivers: list[str]) -> list[str]:
    """Modules the simulated bench and the controller need for these drivers."""
    from instruments.sim.emulators import DAQ_DRIVER, DAQ_SERVER, EMULATORS

    modules = ["instruments.sim.launcher", "instruments.sim.server"]
    for driver in drivers:
        modules.append(DRIVERS[driver].target.partition(":")[0])
        target = DAQ_SERVER if driver == DAQ_DRIVER else EMULATORS[driver].target
        modules.append(target.partition(":")[0])
    return modules


ALL = ("ne1000", "mt_sics", "scpi_dmm", "nidaqmx")


def test_every_driver_and_emulator_of_the_shipped_station_is_importable() -> None:
    """No test here skips for a missing module: if a driver or emulator vanished, this fails and names it."""
    for module in _sim_modules(list(ALL)):
        importlib.import_module(module)


def run_check(capsys: pytest.CaptureFixture[str], station: Path) -> tuple[int, str]:
    code = main(["check", "--station", str(station)])
    out = capsys.readouterr()
    return code, out.out + out.err


def row(output: str, name: str) -> str:
    """The table row of one instrument (rich draws it as one line at our fixed width)."""
    lines = [line for line in output.splitlines() if re.match(rf"^\W*{name}\b", line.strip("│┃ "))]
    assert lines, f"no row for {name} in:\n{output}"
    return lines[0]


def set_key(text: str, table: str, key: str, value: str) -> str:
    """Set one string key inside one [table] of a station file's text (comments untouched)."""
    header = re.search(rf"^\[{re.escape(table)}\]$", text, re.M)
    assert header, table
    line = re.compile(rf"^{key}\s*=\s*\"[^\"]*\"", re.M)
    found = line.search(text, header.end())
    assert found and "\n[" not in text[header.end():found.start()], (table, key)
    return text[: found.start()] + f'{key} = "{value}"' + text[found.end():]


@pytest.fixture(scope="module")
def running_sim() -> Iterator[dict[str, Any]]:
    """One simulated bench for the module (the shipped station), shared through its resources."""
    from instruments.sim.launcher import start_sim

    sim = start_sim(SHIPPED)
    try:
        yield {**sim.resources, "resources_path": str(sim.resources_path)}
    finally:
        sim.stop()


def attached_station(tmp_path: Path, resources: Path, *edits: tuple[str, str]) -> Path:
    text = SHIPPED_TEXT.replace('# attach = "/tmp/rig-sim/resources.json"', f'attach = "{resources}"')
    for old, new in edits:
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "attached.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- the shipped station: rig check starts its own simulated bench ------------------------------


def test_check_shipped_station_lists_every_instrument(capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run_check(capsys, SHIPPED)
    assert code == 0, output
    for name, serial in SHIPPED_SERIALS.items():
        line = row(output, name)
        assert serial in line and "OK" in line, line
    assert "OK: all 4 instruments answered." in output
    assert "Traceback" not in output


def test_check_as_a_process_stops_its_simulated_bench(tmp_path: Path) -> None:
    station = tmp_path / "own.toml"  # a unique path, to find our sim child among all processes
    station.write_text(SHIPPED_TEXT, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "rig", "check"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=90, env={**os.environ, "RIG_STATION": str(station)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SIM-BENCH-01" in proc.stdout
    assert len(re.findall(r"sim → ASRL/dev/pts/\d+::INSTR", proc.stdout)) == 2  # pump, balance
    leftovers = [p for p in psutil.process_iter(["cmdline"])
                 if str(station) in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []


def test_failed_open_stops_the_simulated_bench_it_started(tmp_path: Path) -> None:
    station_path = tmp_path / "refused.toml"  # unique path: finds our sim child among processes
    station_path.write_text(set_key(SHIPPED_TEXT, "instruments.dmm", "resource",
                                    "TCPIP::127.0.0.1::1::SOCKET"), encoding="utf-8")
    station = load_station(station_path)

    def our_sims() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"])
                if str(station_path) in " ".join(p.info["cmdline"] or [])]

    with pytest.raises(BenchError, match=r"instruments\.dmm: .*TCPIP::127\.0\.0\.1::1::SOCKET"):
        Bench.open(station)
    assert our_sims() == []


def test_overdue_calibration_is_a_visible_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "overdue.toml"
    text = SHIPPED_TEXT.replace("calibration_due = 2027-03-31", "calibration_due = 2020-01-31")
    path.write_text(text, encoding="utf-8")
    code, output = run_check(capsys, path)
    assert code == 0, output
    assert re.search(r"WARNING: calibration of balance \(serial B123456789\) is overdue: was due "
                     r"2020-01-31, \d+ day\(s\) ago; runs will refuse to start", output), output  # block: the default
    path.write_text(re.sub(r'^calibration_policy = .*$', 'calibration_policy = "warn"', text, flags=re.M),
                    encoding="utf-8")
    code, output = run_check(capsys, path)
    assert code == 0, output
    assert re.search(r"WARNING: calibration of balance \(serial B123456789\) is overdue: was due "
                     r"2020-01-31, \d+ day\(s\) ago; runs proceed", output), output
    assert "calibration overdue" in row(output, "balance")


# -- hardware mode pointed at the sim's real transports -----------------------------------------


def test_unreachable_pump_in_hardware_mode_exits_3_with_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], running_sim: dict[str, Any]
) -> None:
    served = running_sim["instruments"]
    text = set_key(SHIPPED_TEXT, "station", "mode", "hardware")
    text = set_key(text, "station", "clock", "real")
    text = set_key(text, "instruments.pump", "resource", "ASRL/dev/pts/999::INSTR")
    text = set_key(text, "instruments.balance", "resource", served["balance"])
    text = set_key(text, "instruments.dmm", "resource", served["dmm"])
    text = set_key(text, "instruments.daq", "grpc_server", running_sim["daq_grpc"])
    path = tmp_path / "hardware.toml"
    path.write_text(text, encoding="utf-8")
    code, output = run_check(capsys, path)
    assert code == 3, output
    pump = row(output, "pump")
    assert "UNREACHABLE" in pump and "ASRL/dev/pts/999::INSTR" in output
    assert re.search(r"pump: .*ASRL/dev/pts/999::INSTR", output), output
    for name in ("balance", "dmm", "daq"):
        assert "OK" in row(output, name)
    assert "FAILED: 1 of 4 instrument(s) not ready" in output


# -- attaching to a running simulated bench -----------------------------------------------------


def test_bench_attached_identifies_snapshots_and_reaches_safe_state(
    tmp_path: Path, running_sim: dict[str, Any]
) -> None:
    station = load_station(attached_station(tmp_path, Path(running_sim["resources_path"])))
    with Bench.open(station) as bench:
        assert bench.clock.virtual and bench.sim is not None
        assert bench.pump is bench.instruments["pump"]
        assert bench.balance is bench.instruments["balance"]
        assert bench.dmm is bench.instruments["dmm"] and bench.daq is bench.instruments["daq"]
        snap = bench.snapshot()
        assert snap["station"]["id"] == "SIM-BENCH-01" and snap["fluid"]["density_g_ml"] == 0.998
        for name, serial in SHIPPED_SERIALS.items():
            entry = snap["instruments"][name]
            assert entry["serial"] == serial and entry["calibration_overdue"] is False
            assert entry["identity"]["model"], entry
            assert entry["serial_mismatch"] is False
        assert snap["instruments"]["pump"]["resolved_resource"] == running_sim["instruments"]["pump"]
        assert snap["instruments"]["daq"]["resolved_grpc_server"] == running_sim["daq_grpc"]
        first = bench.safe_state()
        second = bench.safe_state()  # idempotent
        assert list(first) == ["pump", "daq", "balance", "dmm"]  # pump first, then valves
        assert set(second) == set(first)
        assert not any("error" in r for r in first.values() if isinstance(r, dict))
        t0 = bench.clock.now_s()
        bench.clock.sleep(600.0)  # virtual: ten minutes pass in the model at once
        assert bench.clock.now_s() == pytest.approx(t0 + 600.0)
    assert bench.closed and bench.instruments == {}


def test_safe_state_reaches_every_instrument_when_one_fails(
    tmp_path: Path, running_sim: dict[str, Any]
) -> None:
    station = load_station(attached_station(tmp_path, Path(running_sim["resources_path"]),
                                            ("timeout_ms = 2000", "timeout_ms = 100")))
    with Bench.open(station) as bench:
        assert bench.sim is not None
        bench.sim.fault("balance", "silent")
        try:
            with pytest.raises(BenchError, match=r"safe state not confirmed for 1 instrument\(s\): "
                                                 r"balance: ") as info:
                bench.safe_state()
        finally:
            bench.sim.fault("balance", "none")
        results = info.value.results  # type: ignore[attr-defined]
        assert list(results) == ["pump", "daq", "balance", "dmm"]
        assert "error" in results["balance"]
        assert all("error" not in results[n] for n in ("pump", "daq", "dmm"))


def test_serial_mismatch_fails_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], running_sim: dict[str, Any]
) -> None:
    path = attached_station(tmp_path, Path(running_sim["resources_path"]),
                            ('serial = "MY12345678"', 'serial = "MY99999999"'))
    code, output = run_check(capsys, path)
    assert code == 3, output
    assert "SERIAL MISMATCH" in row(output, "dmm")
    assert "dmm: reports serial 'MY12345678', station file says 'MY99999999'" in output


def test_sim_resource_not_served_is_a_clear_bench_error(
    tmp_path: Path, running_sim: dict[str, Any]
) -> None:
    resources = json.loads(Path(running_sim["resources_path"]).read_text())
    del resources["instruments"]["dmm"]
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps(resources))
    station = load_station(attached_station(tmp_path, partial))
    with pytest.raises(BenchError, match=r"instruments\.dmm: resource = \"sim\" but the simulated "
                                         r"bench serves no instrument named 'dmm'"):
        Bench.open(station)
    with Bench.open(station, only_check=True) as bench:
        assert set(bench.failures) == {"dmm"}
        assert set(bench.instruments) == {"pump", "balance", "daq"}
        with pytest.raises(BenchError, match=r"instruments\.dmm is not open: resource = \"sim\""):
            bench.dmm  # configured but failed: an error, not a silent None
        assert bench.snapshot()["instruments"]["dmm"]["error"].startswith("resource = \"sim\"")


# -- errors that need no simulated bench ------------------------------------------------------


def test_attach_to_missing_resources_file_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = run_check(capsys, attached_station(tmp_path, tmp_path / "nope.json"))
    assert code == 3
    assert "nope.json not found: is `rig sim serve` running" in output
    assert "Traceback" not in output


def test_attach_to_a_bench_with_another_clock_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    resources = tmp_path / "resources.json"
    resources.write_text(json.dumps({"instruments": {}, "serial_ports": {}, "control": "127.0.0.1:1",
                                     "clock": "real", "pid": 1}))
    code, output = run_check(capsys, attached_station(tmp_path, resources))
    assert code == 3
    assert "runs clock = 'real' but station.clock = 'virtual'" in output


def test_check_help_explains_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["check", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "--station FILE" in text and "RIG_STATION" in text
    for code in ("0 ", "2 ", "3 "):
        assert f"  {code}" in text


@pytest.mark.parametrize(("edit", "path", "gist"), [
    # a typo in [detection] used to pass rig check and end the run mid-way (exit 3, record written)
    (("[station]", "[detection]\noccluson = { persist_s = 30 }\n\n[station]"), "detection.occluson",
     'did you mean "occlusion"?'),
    # an option outside the range the driver itself accepts (the NE-1000 takes 0.1..80 mm)
    (("syringe_diameter_mm = 14.43", "syringe_diameter_mm = 81"), "instruments.pump.options.syringe_diameter_mm",
     "81 is out of range; expected a number in 0.1..80 mm"),
])
def test_check_rejects_a_bad_setting_with_exit_2_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], path: str, gist: str
) -> None:
    assert edit[0] in SHIPPED_TEXT
    station = tmp_path / "rig.toml"
    station.write_text(SHIPPED_TEXT.replace(edit[0], edit[1], 1), encoding="utf-8")
    code, output = run_check(capsys, station)
    assert code == 2, output
    assert f"{path}: " in output and gist in output
    assert "Station " not in output  # nothing was opened: the table of instruments never printed
