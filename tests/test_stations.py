"""The example station files in stations/: `rig check` accepts each one.

The simulated benches answer in full (exit 0, with the pump's comms watchdog line); the hardware
example gets as far as "instrument unreachable" (exit 3) on a machine without the instruments, never
a station-file error (exit 2) or a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rig.cli.main import main
from rig.station.config import load_station

STATIONS = Path(__file__).resolve().parents[1] / "stations"
SHIPPED = Path(__file__).resolve().parents[1] / "rig.toml"


def check(capsys: pytest.CaptureFixture[str], name: str) -> tuple[int, str]:
    code = main(["check", "--station", str(STATIONS / name)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_every_example_is_a_valid_station_file() -> None:
    names = sorted(p.name for p in STATIONS.glob("*.toml"))
    assert names == ["hardware-example.toml", "sim-peristaltic.toml", "sim-syringe.toml"]
    for name in names:
        load_station(STATIONS / name)  # raises with every problem listed


def test_the_syringe_example_is_the_shipped_bench() -> None:
    example, shipped = load_station(STATIONS / "sim-syringe.toml"), load_station(SHIPPED)
    assert example.instruments.keys() == shipped.instruments.keys()
    for name, cfg in shipped.instruments.items():
        mine = example.instruments[name]
        assert (mine.driver, mine.serial, mine.resource) == (cfg.driver, cfg.serial, cfg.resource)
    assert example.instruments["pump"].options["comms_watchdog_s"] == 10


def test_simulated_syringe_bench_checks_ok_with_its_watchdog(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(capsys, "sim-syringe.toml")
    assert code == 0, out
    assert "NE-1000" in out and "OK: all 4 instruments answered." in out
    assert "pump: comms watchdog: 10 s" in out and "pump now in Basic mode, SAF 0 s" in out


def test_simulated_peristaltic_bench_checks_ok(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(capsys, "sim-peristaltic.toml")
    assert code == 0, out
    assert "REGLO ICC" in out and "peristaltic_pump" in out
    assert "pump: comms watchdog: none on this pump" in out


def test_hardware_example_gets_as_far_as_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(capsys, "hardware-example.toml")
    assert code == 3, out
    assert "Traceback" not in out and "FAILED: 4 of 4 instrument(s) not ready" in out
    for resource in ("ASRL/dev/ttyUSB0::INSTR", "ASRL/dev/ttyUSB1::INSTR", "TCPIP::192.168.10.20::5025::SOCKET"):
        assert resource in out
