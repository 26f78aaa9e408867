"""Station file validation: every mistake gives exactly one message naming key path, value, allowed.

Each bad station below is a good station with one edit, so each case proves both that the mistake
is caught and that it does not cascade into unrelated messages.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rig.errors import ConfigError
from rig.station.config import default_station_path, is_visa_resource, load_station

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "rig.toml"

HARDWARE = """\
[station]
id = "HW-RIG-02"
name = "Hardware rig 2"
mode = "hardware"
clock = "real"
calibration_policy = "block"
runs_dir = "records/runs"

[fluid]
name = "water"
density_g_ml = 0.998

[safety]
max_line_pressure_kpa = 120.0

[instruments.pump]
kind = "syringe_pump"
driver = "ne1000"
resource = "ASRL/dev/ttyUSB0::INSTR"
serial = "NE-0001"
calibration_due = 2027-06-30
timeout_ms = 1000
[instruments.pump.options]
address = 0
syringe_diameter_mm = 14.43

[instruments.balance]
kind = "balance"
driver = "mt_sics"
resource = "ASRL3::INSTR"
serial = "B1"
calibration_due = 2027-03-31

[instruments.dmm]
kind = "dmm"
driver = "scpi_dmm"
resource = "TCPIP0::192.168.1.20::5025::SOCKET"
serial = "MY1"
calibration_due = 2027-01-15

[instruments.daq]
kind = "daq"
driver = "nidaqmx"
resource = "Dev1"
serial = "01ABCDEF"
calibration_due = 2027-09-30
[instruments.daq.options]
sample_rate_hz = 100.0
[instruments.daq.options.channels]
pressure_upstream = { physical = "ai0", scale_per_volt = 50.0, offset = -25.0, unit = "kPa" }
kink_valve = { physical = "ao0", unit = "%" }
occlusion_valve = { physical = "port0/line0" }
leak_valve = { physical = "port0/line1" }

[detection]
settle_s = 45.0
"""

SIM = SHIPPED.read_text(encoding="utf-8")


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_station(path)
    assert info.value.source == str(path.resolve()) or info.value.source == str(path)
    return info.value.problems


def edited(base: str, *edits: tuple[str, str]) -> str:
    text = base
    for old, new in edits:
        assert old in text, f"test bug: {old!r} not in the base station"
        text = text.replace(old, new, 1)
    return text


def write(tmp_path: Path, text: str, name: str = "station.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# (id, base, edits, key path, gist of the message as a regex, exactly one problem?)
BAD = [
    ("unknown-section", HARDWARE, [("[fluid]", "[extras]\nx = 1\n\n[fluid]")],
     "extras", r"unknown key .*allowed keys: detection, environment, fluid, history, instruments, operators, safety, service, signing, sim, station", True),
    ("unknown-station-key", HARDWARE, [('clock = "real"', 'clock = "real"\ncolour = "red"')],
     "station.colour", r'unknown key \(value "red"\); allowed keys: audit_log, calibration_policy, clock', True),
    ("option-typo", HARDWARE, [("syringe_diameter_mm", "syringe_diamter_mm")],
     "instruments.pump.options.syringe_diamter_mm",
     r'unknown key .*did you mean "syringe_diameter_mm"', True),
    ("serial-bidi-control", HARDWARE, [('serial = "NE-0001"', 'serial = "NE-\u202e0001"')],
     "instruments.pump.serial", r"contains U\+202E \(RIGHT-TO-LEFT OVERRIDE\); expected printable characters only",
     True),
    ("timeout-is-string", HARDWARE, [("timeout_ms = 1000", 'timeout_ms = "1000"')],
     "instruments.pump.timeout_ms", r'"1000" has the wrong type \(string\); expected an integer', True),
    ("address-is-bool", HARDWARE, [("address = 0", "address = true")],
     "instruments.pump.options.address", r"true has the wrong type \(boolean\); expected an integer",
     True),
    ("address-out-of-range", HARDWARE, [("address = 0", "address = 100")],
     "instruments.pump.options.address", r"100 is out of range; expected an integer in 0\.\.99", True),
    ("density-high", HARDWARE, [("density_g_ml = 0.998", "density_g_ml = 3.0")],
     "fluid.density_g_ml", r"3\.0 is out of range; expected a number in 0\.5\.\.2\.5 g/mL", True),
    ("density-nan", HARDWARE, [("density_g_ml = 0.998", "density_g_ml = nan")],
     "fluid.density_g_ml", r"nan is not a finite number", True),
    ("pressure-low", HARDWARE, [("max_line_pressure_kpa = 120.0", "max_line_pressure_kpa = 0.5")],
     "safety.max_line_pressure_kpa", r"0\.5 is out of range; expected a number in 1\.\.1000 kPa", True),
    ("pressure-high", SIM, [("max_line_pressure_kpa = 120.0", "max_line_pressure_kpa = 5000")],
     "safety.max_line_pressure_kpa", r"5000 is out of range.*1\.\.1000 kPa", True),
    ("timeout-low", HARDWARE, [("timeout_ms = 1000", "timeout_ms = 5")],
     "instruments.pump.timeout_ms", r"5 is out of range; expected an integer in 10\.\.600000 ms", True),
    ("sample-rate-zero", HARDWARE, [("sample_rate_hz = 100.0", "sample_rate_hz = 0")],
     "instruments.daq.options.sample_rate_hz", r"0 is out of range.*1\.\.250000 Hz", True),
    ("mode-enum", HARDWARE, [('mode = "hardware"', 'mode = "simulated"')],
     "station.mode", r'"simulated" is not allowed; expected one of "sim", "hardware"', True),
    ("clock-enum", HARDWARE, [('clock = "real"', 'clock = "fast"')],
     "station.clock", r'"fast" is not allowed; expected one of "real", "virtual"', True),
    ("policy-enum", HARDWARE, [('calibration_policy = "block"', 'calibration_policy = "ignore"')],
     "station.calibration_policy", r'"ignore" is not allowed; expected one of "warn", "block"', True),
    ("kind-enum", HARDWARE, [('kind = "dmm"', 'kind = "multimeter"')],
     "instruments.dmm.kind", r'"multimeter" is not allowed; expected one of "syringe_pump", '
     r'"peristaltic_pump", "balance", "dmm", "daq"', True),
    ("driver-enum", HARDWARE, [('driver = "ne1000"', 'driver = "ne2000"')],
     "instruments.pump.driver", r'"ne2000" is not allowed \(did you mean "ne1000"\?\); expected one of',
     True),
    ("driver-kind-mismatch", HARDWARE, [('driver = "scpi_dmm"', 'driver = "mt_sics"')],
     "instruments.dmm.driver", r'"mt_sics" drives a balance, not a dmm; drivers for kind "dmm": '
     r'"scpi_dmm"', True),
    ("missing-safety-table", HARDWARE, [("[safety]\nmax_line_pressure_kpa = 120.0\n", "")],
     "safety", r"missing required table \[safety\]", True),
    ("missing-serial", HARDWARE, [('serial = "B1"\n', "")],
     "instruments.balance.serial", r"missing required key; expected a string", True),
    ("missing-mode", HARDWARE, [('mode = "hardware"\n', "")],
     "station.mode", r'missing required key; expected one of "sim", "hardware"', True),
    ("empty-station-name", HARDWARE, [('name = "Hardware rig 2"', 'name = "  "')],
     "station.name", r"is empty; expected a non-empty string", True),
    ("no-balance", HARDWARE, [('[instruments.balance]\nkind = "balance"\ndriver = "mt_sics"\n'
                               'resource = "ASRL3::INSTR"\nserial = "B1"\n'
                               'calibration_due = 2027-03-31\n', "")],
     "instruments", r'no balance; a station needs one instrument with kind = "balance"', True),
    ("no-pump", HARDWARE, [('kind = "syringe_pump"\ndriver = "ne1000"', 'kind = "dmm"\ndriver = "scpi_dmm"'),
                           ("[instruments.pump.options]\naddress = 0\nsyringe_diameter_mm = 14.43\n", "")],
     "instruments", r'no pump; a station needs at least one instrument with kind = "syringe_pump" or '
     r'"peristaltic_pump"', False),  # the pump turned dmm also needs a VISA resource of its own
    ("duplicate-resource", HARDWARE, [('resource = "ASRL3::INSTR"', 'resource = "asrl/dev/ttyUSB0::INSTR"')],
     "instruments.balance.resource", r'"asrl/dev/ttyUSB0::INSTR" is already used by instruments\.pump',
     True),
    ("resource-not-visa", HARDWARE, [('resource = "ASRL/dev/ttyUSB0::INSTR"', 'resource = "/dev/ttyUSB0"')],
     "instruments.pump.resource", r'"/dev/ttyUSB0" is not a VISA resource; expected ASRL<port number '
     r"or /dev path>::INSTR, TCPIP\[n\]::host::port::SOCKET", True),
    ("socket-without-port", HARDWARE, [("::5025::SOCKET", "::SOCKET")],
     "instruments.dmm.resource", r'"TCPIP0::192\.168\.1\.20::SOCKET" is not a VISA resource', True),
    ("socket-port-out-of-range", HARDWARE, [("::5025::SOCKET", "::70000::SOCKET")],
     "instruments.dmm.resource", r"is not a VISA resource", True),
    ("sim-resource-on-hardware", HARDWARE, [('resource = "ASRL3::INSTR"', 'resource = "sim"')],
     "instruments.balance.resource", r'"sim" is only allowed when station\.mode = "sim"', True),
    ("virtual-clock-on-hardware", HARDWARE, [('clock = "real"', 'clock = "virtual"')],
     "station.clock", r'"virtual" needs station\.mode = "sim"', True),
    ("calibration-due-text", HARDWARE, [("calibration_due = 2027-03-31", 'calibration_due = "next year"')],
     "instruments.balance.calibration_due",
     r'"next year" has the wrong type \(string\); expected a date such as 2027-06-30', True),
    ("calibration-due-datetime", HARDWARE,
     [("calibration_due = 2027-03-31", "calibration_due = 2027-03-31T08:00:00")],
     "instruments.balance.calibration_due", r"2027-03-31T08:00:00 has the wrong type \(date-time\)", True),
    ("grpc-server-no-port", HARDWARE, [('resource = "Dev1"', 'resource = "Dev1"\ngrpc_server = "ni-host"')],
     "instruments.daq.grpc_server", r'"ni-host" is not a gRPC server address; expected "host:port"', True),
    ("grpc-server-sim-on-hardware", HARDWARE, [('resource = "Dev1"', 'resource = "Dev1"\ngrpc_server = "sim"')],
     "instruments.daq.grpc_server", r'"sim" is only allowed when station\.mode = "sim"', True),
    ("grpc-server-on-balance", HARDWARE, [('serial = "B1"', 'serial = "B1"\ngrpc_server = "h:1"')],
     "instruments.balance.grpc_server", r'only an instrument with kind = "daq" takes grpc_server', True),
    ("daq-device-name", HARDWARE, [('resource = "Dev1"', 'resource = "Dev 1"')],
     "instruments.daq.resource", r'"Dev 1" is not an NI-DAQmx device name', True),
    ("channel-with-device", HARDWARE, [('physical = "ai0"', 'physical = "Dev1/ai0"')],
     "instruments.daq.options.channels.pressure_upstream.physical",
     r'"Dev1/ai0" is not a physical channel; expected "aiN", "aoN" or "portN/lineM"', True),
    ("ai-without-scale", HARDWARE, [("scale_per_volt = 50.0, ", "")],
     "instruments.daq.options.channels.pressure_upstream.scale_per_volt",
     r"missing required key; expected a number", True),
    ("ai-zero-scale", HARDWARE, [("scale_per_volt = 50.0", "scale_per_volt = 0.0")],
     "instruments.daq.options.channels.pressure_upstream.scale_per_volt", r"non-zero", True),
    ("ao-with-offset", HARDWARE, [('physical = "ao0", unit', 'physical = "ao0", offset = 1.0, unit')],
     "instruments.daq.options.channels.kink_valve.offset",
     r"unknown key \(value 1\.0\); allowed keys: physical, unit", True),
    ("duplicate-line", HARDWARE, [('physical = "port0/line1"', 'physical = "port0/line0"')],
     "instruments.daq.options.channels.leak_valve.physical",
     r'"port0/line0" is already used by channel "occlusion_valve"', True),
    ("ao-channel-role", HARDWARE, [("kink_valve = {", "pinch_valve = {")],
     "instruments.daq.options.channels.pinch_valve.physical",
     r'"ao0" is an analog output; the DAQ driver drives only the channel named "kink_valve"', True),
    ("do-channel-role", HARDWARE, [("leak_valve = {", "bleed = {")],
     "instruments.daq.options.channels.bleed.physical",
     r'"port0/line1" is a digital line; the DAQ driver drives only valves named "occlusion_valve"', True),
    ("reglo-tubing-range", HARDWARE, [('kind = "syringe_pump"\ndriver = "ne1000"',
                                       'kind = "peristaltic_pump"\ndriver = "reglo_icc"'),
                                      ("address = 0\nsyringe_diameter_mm = 14.43",
                                       "address = 1\ntubing_inner_diameter_mm = 5.0")],
     "instruments.pump.options.tubing_inner_diameter_mm", r"5\.0 is out of range.*0\.13\.\.3\.17 mm",
     True),
    ("detection-not-number", HARDWARE, [("settle_s = 45.0", 'settle_s = "fast"')],
     "detection.settle_s", r'"fast" has the wrong type \(string\); expected a number', True),
    # [detection] is checked with the detectors' own schema when the file loads, not mid-run
    ("detection-typo", HARDWARE, [("settle_s = 45.0", "setle_s = 45.0")],
     "detection.setle_s", r'unknown key \(value 45\.0\) \(did you mean "settle_s"\?\); allowed keys: .*learn_s', True),
    ("detection-sub-table-range", HARDWARE, [("settle_s = 45.0", "[detection.leak]\nflow_deficit_allowance_pct = 150")],
     "detection.leak.flow_deficit_allowance_pct", r"150 is out of range; expected a number > 0 and <= 100", True),
    ("detection-cross-rule", HARDWARE, [("settle_s = 45.0", "[detection.occlusion]\nrise_ratio_min = 4.0")],
     "detection.occlusion", r"rise_ratio_min \(4\) must be below rise_ratio_max \(3\)", True),
    # the driver's own range (the NE-1000 takes 0.1..80 mm syringes), one declaration for both
    ("syringe-too-wide", HARDWARE, [("syringe_diameter_mm = 14.43", "syringe_diameter_mm = 90")],
     "instruments.pump.options.syringe_diameter_mm", r"90 is out of range; expected a number in 0\.1\.\.80 mm", True),
    # what only the emulator reads is checked with the emulator's declaration
    ("sim-option-range", SIM, [("[instruments.balance]", "[instruments.balance.options]\nzero_range_pct = 200\n\n[instruments.balance]")],
     "instruments.balance.options.zero_range_pct", r"200 is out of range; expected a number in 0\.\.100 %", True),
    ("instrument-name", HARDWARE, [("[instruments.dmm]", '[instruments."DMM 1"]')],
     'instruments."DMM 1"', r'"DMM 1" is not a valid instrument name', True),
    ("seed-negative", SIM, [("seed = 1", "seed = -1")],
     "sim.seed", r"-1 is out of range; expected an integer in 0\.\.4294967295", True),
    ("options-not-table", HARDWARE, [("[instruments.pump.options]\naddress = 0\nsyringe_diameter_mm = 14.43\n",
                                      ""), ("timeout_ms = 1000", "timeout_ms = 1000\noptions = 5")],
     "instruments.pump.options", r"5 has the wrong type \(integer\); expected a table", True),
    ("station-id-spaces", SIM, [('id = "SIM-BENCH-01"', 'id = "SIM BENCH"')],
     "station.id", r'"SIM BENCH" is not a valid station id', True),
]


@pytest.mark.parametrize(
    "base,edits,key_path,gist,only_one", [case[1:] for case in BAD], ids=[case[0] for case in BAD]
)
def test_bad_station_is_rejected_with_key_path_and_reason(
    tmp_path: Path, base: str, edits: list, key_path: str, gist: str, only_one: bool
) -> None:
    problems = problems_of(write(tmp_path, edited(base, *edits)))
    matching = [p for p in problems if p.startswith(f"{key_path}: ")]
    assert matching, f"no problem about {key_path}; got {problems}"
    assert any(re.search(gist, p) for p in matching), f"{matching} does not match {gist!r}"
    if only_one:
        assert len(problems) == 1, problems


def test_bad_cases_are_distinct() -> None:
    texts = {edited(base, *edits) for _, base, edits, *_ in BAD}
    assert len(texts) == len(BAD) >= 25


def test_every_problem_is_collected_in_one_pass(tmp_path: Path) -> None:
    text = edited(
        HARDWARE,
        ('mode = "hardware"', 'mode = "simulated"'),
        ("density_g_ml = 0.998", "density_g_ml = 9"),
        ("timeout_ms = 1000", "timeout_ms = 0"),
        ('resource = "Dev1"', 'resource = "Dev 1"'),
    )
    problems = problems_of(write(tmp_path, text))
    assert [p.split(":")[0] for p in problems] == [
        "station.mode", "fluid.density_g_ml", "instruments.pump.timeout_ms", "instruments.daq.resource",
    ]


def test_invalid_toml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, edited(HARDWARE, ("[fluid]", "[fluid")))
    (problem,) = problems_of(path)
    assert re.search(r"invalid TOML syntax: .*at line 9, column 7", problem), problem


@pytest.mark.parametrize("make", ["missing", "directory", "not-utf8"])
def test_unreadable_station_file(tmp_path: Path, make: str) -> None:
    path = tmp_path / "station.toml"
    if make == "directory":
        path.mkdir()
    elif make == "not-utf8":
        path.write_bytes(b"[station]\nname = \"\xff\"\n")
    (problem,) = problems_of(path)
    expected = {"missing": "file not found", "directory": "is a directory", "not-utf8": "not UTF-8"}
    assert expected[make] in problem


def test_config_error_message_lists_every_problem_with_source(tmp_path: Path) -> None:
    path = write(tmp_path, edited(HARDWARE, ('clock = "real"', 'clock = "virtual"')))
    with pytest.raises(ConfigError) as info:
        load_station(path)
    assert info.value.exit_code == 2
    assert str(path) in str(info.value)
    assert '  - station.clock: "virtual" needs station.mode = "sim"' in str(info.value)


def test_shipped_station_loads() -> None:
    station = load_station(SHIPPED)
    assert station.path == SHIPPED
    assert (station.id, station.mode, station.clock) == ("SIM-BENCH-01", "sim", "virtual")
    assert station.runs_dir == REPO / "runs"
    assert station.fluid.density_g_ml == pytest.approx(0.998)
    assert station.safety.max_line_pressure_kpa == pytest.approx(120.0)
    assert list(station.instruments) == ["pump", "balance", "dmm", "daq"]
    pump = station.instruments["pump"]
    assert (pump.kind, pump.driver, pump.resource, pump.serial) == (
        "syringe_pump", "ne1000", "sim", "NE1000-SIM-0001")
    assert pump.calibration_due == dt.date(2027, 6, 30)
    assert pump.options == {"address": 0, "syringe_diameter_mm": 14.43}
    daq = station.instruments["daq"]
    assert daq.grpc_server == "sim" and daq.timeout_ms == 5000
    assert daq.options["channels"]["kink_valve"] == {"physical": "ao0", "unit": "%"}
    assert station.raw["instruments"]["balance"]["serial"] == "B123456789"
    assert [i.name for i in station.by_kind("balance")] == ["balance"]


def test_hardware_station_resolves_paths_and_keeps_sections(tmp_path: Path) -> None:
    sub = tmp_path / "stations"
    sub.mkdir()
    station = load_station(write(sub, HARDWARE, "rig-02.toml"))
    assert station.runs_dir == sub / "records" / "runs"
    assert station.sections == {"detection": {"settle_s": 45.0}}
    assert station.instruments["dmm"].timeout_ms == 1000  # default
    assert station.instruments["daq"].grpc_server is None
    # The driver's copy of options is not the snapshot's: editing one leaves Station.raw intact.
    station.instruments["pump"].options["address"] = 7
    assert station.raw["instruments"]["pump"]["options"]["address"] == 0


def test_sim_attach_is_relative_to_the_station_file(tmp_path: Path) -> None:
    text = SIM.replace('# attach = "/tmp/rig-sim/resources.json"', 'attach = "sim/resources.json"')
    station = load_station(write(tmp_path, text))
    assert station.sim.attach == tmp_path / "sim" / "resources.json"


@pytest.mark.parametrize(
    "resource",
    [
        "ASRL/dev/ttyUSB0::INSTR", "ASRL/dev/pts/7::INSTR", "ASRL3::INSTR", "asrl3::instr",
        "ASRLCOM4::INSTR", "ASRLsocket://127.0.0.1:4001::INSTR", "TCPIP::127.0.0.1::5025::SOCKET",
        "TCPIP0::dmm.lab.local::5025::SOCKET", "TCPIP::10.0.0.5::INSTR", "TCPIP0::10.0.0.5::inst0::INSTR",
        "TCPIP0::10.0.0.5::hislip0::INSTR", "USB0::0x2A8D::0x0101::MY12345678::INSTR",
        "USB::0x0957::0x0607::MY47000419::0::INSTR", "GPIB0::22::INSTR", "GPIB::1::0::INSTR",
    ],
)
def test_accepted_visa_resources(resource: str) -> None:
    assert is_visa_resource(resource)


@pytest.mark.parametrize(
    "resource",
    ["/dev/ttyUSB0", "COM3", "ASRL::INSTR", "TCPIP::host::SOCKET", "TCPIP::host::0::SOCKET",
     "TCPIP::host::5025", "USB0::MY1::INSTR", "GPIB0::INSTR", "GPIB0::22::INSTR extra", "sim", ""],
)
def test_rejected_visa_resources(resource: str) -> None:
    assert not is_visa_resource(resource)


def test_default_station_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RIG_STATION", raising=False)
    assert default_station_path() == Path("rig.toml")
    monkeypatch.setenv("RIG_STATION", str(tmp_path / "rig-07.toml"))
    assert default_station_path() == tmp_path / "rig-07.toml"


def test_cli_reports_a_bad_station_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, edited(HARDWARE, ("density_g_ml = 0.998", "density_g_ml = 3.0")))
    proc = subprocess.run(
        [sys.executable, "-m", "rig", "check", "--station", str(path)],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "fluid.density_g_ml: 3.0 is out of range; expected a number in 0.5..2.5 g/mL" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_cli_uses_rig_station_env(tmp_path: Path) -> None:
    path = write(tmp_path, edited(HARDWARE, ('mode = "hardware"', 'mode = "lab"')))
    proc = subprocess.run(
        [sys.executable, "-m", "rig", "check"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
        env={**__import__("os").environ, "RIG_STATION": str(path)},
    )
    assert proc.returncode == 2
    assert 'station.mode: "lab" is not allowed' in proc.stderr


# -- one schema per component ---------------------------------------------------------------------


def test_a_syringe_the_driver_accepts_is_accepted_by_the_station_file(tmp_path: Path) -> None:
    """The NE-1000 takes 0.1..80 mm syringes; the station file used to stop at 50 mm."""
    from instruments.ne1000 import DIAMETER_RANGE_MM

    station = load_station(write(tmp_path, edited(HARDWARE, ("syringe_diameter_mm = 14.43",
                                                             "syringe_diameter_mm = 60"))))
    assert station.instruments["pump"].options["syringe_diameter_mm"] == 60
    assert DIAMETER_RANGE_MM == (0.1, 80.0)


def test_a_driver_without_an_options_schema_is_a_clear_load_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from instruments import drivers

    bare = drivers.DriverInfo("syringe_pump", "instruments.ne1000:NE1000", "registered without options")
    monkeypatch.setitem(drivers.DRIVERS, "ne1000", bare)
    (problem,) = problems_of(write(tmp_path, HARDWARE))
    assert problem.startswith("instruments.pump.options: driver \"ne1000\" declares no options")
    assert "every driver must declare the options it reads" in problem


def test_options_only_an_emulator_reads_are_checked_with_its_declaration(tmp_path: Path) -> None:
    from instruments.sim.mt_sics_emulator import MTSicsEmulator

    assert MTSicsEmulator.SIM_OPTIONS["zero_range_pct"].high == 100
    station = load_station(write(tmp_path, edited(SIM, (
        "[instruments.balance]", '[instruments.balance.options]\nmodel = "XPE205"\n\n[instruments.balance]'))))
    assert station.instruments["balance"].options == {"model": "XPE205"}


def test_a_hardware_station_without_emulator_options_loads_no_simulator(tmp_path: Path) -> None:
    path = write(tmp_path, HARDWARE)
    code = ("import sys; from rig.station.config import load_station; "
            f"load_station({str(path)!r}); "
            "print(sorted(m for m in sys.modules if m.startswith('instruments.sim') "
            "and m != 'instruments.sim.emulators' and m != 'instruments.sim'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"
