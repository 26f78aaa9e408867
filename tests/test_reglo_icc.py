"""Reglo ICC peristaltic pump: driver bytes (replay), emulator bytes, and both over a real pty."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import serial

from instruments.errors import (
    InstrumentDisconnected,
    InstrumentReportedError,
    InstrumentTimeout,
    MalformedReply,
    SafeStateNotConfirmed,
)
from instruments.pump import Pump
from instruments.reglo_icc import (
    RegloICC,
    format_volume_type1,
    format_volume_type2,
    parse_volume_type1,
    parse_volume_type2,
)
from instruments.sim.reglo_icc_emulator import RegloICCEmulator, ml_per_rev
from instruments.sim.transports import PtyPort
from instruments.sim.world import SimWorld
from instruments.testing import ScriptedResource, WriteSpy
from instruments.visa_instrument import Identity

CONFIGURE = [(b"1M\r", b"*"), (b"1J\r", b"*"), (b"1+0025\r", b"*")]
MAX_FLOW = (b"1?\r", b"0.2454 ml/min\r\n")


def scripted(script: list[tuple[bytes, bytes | None]], **options: Any) -> tuple[RegloICC, ScriptedResource]:
    res = ScriptedResource(script)
    return RegloICC("pump", res, options=options), res


# -- (a) protocol replay ------------------------------------------------------------------------


def test_volume_types_round_trip() -> None:
    assert format_volume_type1(0.012) == "1200E-2" and format_volume_type2(0.012) == "1200-2"
    assert format_volume_type2(0.002 / 60) == "3333-5"
    assert parse_volume_type1("1200E-2") == pytest.approx(0.012)
    assert parse_volume_type2("1667-5") == pytest.approx(1.667e-5)
    with pytest.raises(ValueError):
        parse_volume_type1("12E-2")


def test_identify_reads_model_firmware_and_serial() -> None:
    pump, res = scripted([(b"1#\r", b"REGLO ICC 310 408\r\n"), (b"1xS\r", b"RG-0042\r\n")])
    assert pump.identify() == Identity(model="REGLO ICC", serial="RG-0042", firmware="310")
    res.assert_done()
    assert isinstance(pump, Pump)


def test_first_rate_change_configures_then_sets_flow_in_ml_per_min() -> None:
    pump, res = scripted(
        [
            (b"2#\r", b"REGLO ICC 310 408\r\n"),
            (b"2M\r", b"*"),
            (b"2J\r", b"*"),
            (b"2+0025\r", b"*"),
            (b"2?\r", b"0.2454 ml/min\r\n"),
            (b"2f3333-5\r", b"3333E-5\r\n"),
        ],
        address=2, tubing_inner_diameter_mm=0.25, rollers=8,
    )
    pump.set_rate_ml_h(0.002)
    res.assert_done()


def test_rate_start_stop_running_dispensed_clear() -> None:
    pump, res = scripted(
        [
            (b"1M\r", b"*"),
            (b"1J\r", b"*"),
            (b"1H\r", b"*"),
            (b"1E\r", b"+"),
            (b"1f\r", b"1667E-5\r\n"),
            (b"1:\r", b"4.983 ml\r\n"),
            (b"1:\r", b"2.000 ul\r\n"),
            (b"1I\r", b"*"),
            (b"1W\r", b"*"),
            (b"1E\r", b"-"),
        ]
    )
    pump.start()
    assert pump.is_running()
    assert pump.rate_ml_h() == pytest.approx(1.667e-5 * 60)
    assert pump.dispensed_ml() == pytest.approx(4.983)
    assert pump.dispensed_ml() == pytest.approx(0.002)
    pump.stop()
    pump.clear_dispensed()
    assert not pump.is_running()
    assert pump.alarm() is None
    res.assert_done()


def test_refusals_name_instrument_and_command() -> None:
    pump, res = scripted([*CONFIGURE, MAX_FLOW, (b"1f1000-1\r", b"#"), (b"1H\r", b"-")],
                         tubing_id_mm=0.25)
    with pytest.raises(InstrumentReportedError, match=r"pump \('1f1000-1'\): pump answered '#'"):
        pump.set_rate_ml_h(6.0)
    with pytest.raises(InstrumentReportedError, match=r"pump \('1H'\): .*cannot run"):
        pump.start()
    res.assert_done()


def test_rollers_mismatch_is_a_clear_error() -> None:
    pump, _ = scripted([(b"1#\r", b"REGLO ICC 310 412\r\n")], rollers=8)
    with pytest.raises(InstrumentReportedError, match="12 rollers but options.rollers = 8"):
        pump.start()


@pytest.mark.parametrize("bad", [0, -0.5, "x", float("nan"), 15.0])
def test_rate_validation_names_the_range(bad: Any) -> None:
    pump, res = scripted([*CONFIGURE, MAX_FLOW], tubing_inner_diameter_mm=0.25)
    with pytest.raises(ValueError, match=r"rate_ml_h must be .*1e-06\.\.14\.72.* mL/h"):
        pump.set_rate_ml_h(bad)
    res.assert_done()  # only configuration and the maximum-flow query went out


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="address must be an integer 1..8"):
        RegloICC("pump", ScriptedResource([]), options={"address": 0})
    with pytest.raises(ValueError, match="tubing_inner_diameter_mm must be in 0.13..3.17 mm"):
        RegloICC("pump", ScriptedResource([]), options={"tubing_inner_diameter_mm": 5})


def test_the_emulator_refuses_an_address_the_pump_cannot_have() -> None:
    """Driver and emulator read the address with one check (rig.settings.int_option)."""
    with pytest.raises(ValueError, match=r"^pump: options\.address must be an integer 1\.\.8, got 9$"):
        RegloICCEmulator("pump", SimWorld(virtual=True), options={"address": 9})
    assert RegloICCEmulator("pump", SimWorld(virtual=True), options={}).address == 1  # factory setting


def test_garbage_is_malformed_queries_retried_commands_sent_once() -> None:
    pump, res = scripted([(b"1E\r", b"\x15")] * 3)
    with pytest.raises(MalformedReply, match=r"pump \('1E'\)"):
        pump.is_running()
    res.assert_done()
    pump, res = scripted([(b"1f\r", b"\x15#~junk\r\n")] * 3)
    with pytest.raises(MalformedReply, match=r"pump \('1f'\): cannot parse"):
        pump.rate_ml_h()
    pump, res = scripted([(b"1I\r", b"\x15#~junk\r\n")])
    with pytest.raises(MalformedReply):
        pump.stop()
    res.assert_done()
    pump, res = scripted([(b"1W\r", None)])
    with pytest.raises(InstrumentTimeout):
        pump.clear_dispensed()
    res.assert_done()


def test_safe_state_reads_back_stopped() -> None:
    pump, res = scripted([(b"1I\r", b"*"), (b"1E\r", b"-")])
    assert pump.safe_state() == {"running": False, "status": "stopped"}
    res.assert_done()
    pump, _ = scripted([(b"1I\r", b"*"), (b"1E\r", b"+")])
    with pytest.raises(SafeStateNotConfirmed, match="still running"):
        pump.safe_state()


# -- (b) the emulator -----------------------------------------------------------------------------


@pytest.fixture
def world() -> SimWorld:
    return SimWorld(virtual=True, pump_kind="peristaltic")


@pytest.fixture
def emulator(world: SimWorld) -> RegloICCEmulator:
    return RegloICCEmulator("pump", world, serial="RG-0042",
                            options={"address": 1, "tubing_inner_diameter_mm": 0.25, "rollers": 8})


def test_emulator_replies_byte_for_byte(emulator: RegloICCEmulator, world: SimWorld) -> None:
    assert emulator.handle(b"2H") is None  # another pump's address
    assert emulator.handle(b"1#") == b"REGLO ICC 310 408\r\n"
    assert emulator.handle(b"1xS") == b"RG-0042\r\n"
    assert emulator.handle(b"1+") == b"0.25 mm\r\n"
    assert emulator.handle(b"1?") == b"0.2454 ml/min\r\n"
    assert emulator.handle(b"1H") == b"-"  # zero flow: cannot run
    assert emulator.handle(b"1f1000-1") == b"1000E-1\r\n"  # 0.1 mL/min: accepted, echoed
    assert emulator.handle(b"1f1000+0") == b"#"  # 1 mL/min: above the 0.2454 maximum
    assert emulator.handle(b"1f1667-5") == b"1667E-5\r\n"
    assert emulator.handle(b"1f") == b"1667E-5\r\n"
    assert emulator.handle(b"1Z") == b"#"
    assert emulator.handle(b"1H") == b"*" and emulator.handle(b"1E") == b"+"
    assert emulator.handle(b"1+0152") == b"#"  # no tubing change while running
    assert emulator.handle(b"1K") == b"*" and emulator.handle(b"1xD") == b"K\r\n"
    assert emulator.handle(b"1I") == b"*" and emulator.handle(b"1E") == b"-"
    assert emulator.garbage().endswith(b"\r\n")


def test_emulator_pulsates_at_rollers_times_head_speed(emulator: RegloICCEmulator, world: SimWorld) -> None:
    emulator.handle(b"1f1667-2")  # 1 mL/h
    emulator.handle(b"1H")
    rpm = 1.667e-2 / ml_per_rev(0.25)
    state = emulator.state()
    assert state["rpm"] == pytest.approx(rpm, rel=1e-3)
    assert state["pulsation_hz"] == pytest.approx(8 * rpm / 60, rel=1e-3)


def test_emulator_counts_and_resets_pumped_volume(emulator: RegloICCEmulator, world: SimWorld) -> None:
    emulator.handle(b"1f1667-2")
    emulator.handle(b"1H")
    world.advance(3600)
    reply = emulator.handle(b"1:")
    assert reply is not None and reply.endswith(b" ml\r\n")
    assert float(reply.split()[0]) == pytest.approx(1.0, abs=0.01)  # pulsation ripple
    assert emulator.handle(b"1W") == b"*"
    assert emulator.handle(b"1:") == b"0.000 ul\r\n"


# -- (c) end to end over a pseudo-terminal --------------------------------------------------------



@pytest.fixture
def bench(emulator: RegloICCEmulator) -> Iterator[tuple[RegloICC, RegloICCEmulator, PtyPort]]:
    port = PtyPort(emulator).start()
    pump = RegloICC("pump", port.resource, timeout_ms=300,
                    options={"address": 1, "tubing_inner_diameter_mm": 0.25, "rollers": 8})
    try:
        yield pump, emulator, port
    finally:
        pump.close()
        port.close()


def test_e2e_delivers_the_set_rate(bench: Any, world: SimWorld) -> None:
    pump, emulator, _ = bench
    assert pump.identify() == Identity(model="REGLO ICC", serial="RG-0042", firmware="310")
    pump.set_rate_ml_h(0.5)
    pump.clear_dispensed()
    pump.start()
    assert pump.is_running() and pump.rate_ml_h() == pytest.approx(0.5, rel=1e-3)
    world.advance(3600)
    assert pump.dispensed_ml() == pytest.approx(0.5, rel=0.02)
    assert world.snapshot()["totals"]["pumped_ml"] == pytest.approx(0.5, rel=0.02)
    result = pump.safe_state()
    assert result["running"] is False and emulator.state()["running"] is False


def test_e2e_faults(bench: Any, world: SimWorld) -> None:
    pump, _, _ = bench
    spy = WriteSpy(pump._res)
    pump._res = spy
    world.set_fault("pump", "silent")
    with pytest.raises(InstrumentTimeout, match=r"pump \('1E'\)"):
        pump.is_running()
    world.set_fault("pump", "garbage")
    spy.writes.clear()
    with pytest.raises(MalformedReply, match=r"pump \('1E'\)"):
        pump.is_running()
    assert spy.writes == [b"1E\r"] * 3
    spy.writes.clear()
    with pytest.raises(MalformedReply, match=r"pump \('1I'\)"):
        pump.stop()
    assert spy.writes == [b"1I\r"]
    world.set_fault("pump", "none")
    assert pump.is_running() is False  # the leftover noise was flushed
    world.set_fault("pump", "drop")
    with pytest.raises(InstrumentDisconnected, match=r"pump \('1E'\)"):
        pump.is_running()


def test_third_party_pyserial_client(bench: Any) -> None:
    _, _, port = bench
    with serial.Serial(port.path, 9600, timeout=2) as client:
        client.write(b"1#\r")
        assert client.read_until(b"\r\n") == b"REGLO ICC 310 408\r\n"
        client.write(b"1M\r")
        assert client.read(1) == b"*"


# -- communications management, modes and channel addressing (manual 14-036 rev. D, Ref 1-3) -----


def test_emulator_serves_a_client_that_switches_to_channel_addressing(world: SimWorld) -> None:
    pump = RegloICCEmulator("pump", world, options={"address": 1, "channels": 4})
    assert pump.handle(b"@2") == b"*"  # set the address ...
    assert pump.handle(b"1~") is None and pump.handle(b"2~") == b"0\r\n"  # ... legacy mode
    assert pump.handle(b"2xE0") == b"*" and pump.handle(b"2xE") == b"0\r\n"  # events off
    assert pump.handle(b"2x!") == b"8\r\n"
    assert pump.handle(b"2~1") == b"*" and pump.state()["channel_addressing"] is True
    assert pump.handle(b"0~") == b"1\r\n"  # pump-wide: the address field is ignored
    assert pump.handle(b"0H") == b"#" and pump.handle(b"5H") == b"#"  # no channel 0 or 5
    assert pump.handle(b"3f1000-1") == b"1000E-1\r\n" and pump.handle(b"3H") == b"*"
    assert pump.handle(b"3E") == b"+" and pump.handle(b"1E") == b"-"  # channel 3 is not the rig's line
    assert pump.state()["running"] is False
    assert pump.handle(b"1f1000-2") == b"1000E-2\r\n" and pump.handle(b"1H") == b"*"
    assert pump.state()["running"] is True and pump.handle(b"3xI") == b"*" and pump.handle(b"3E") == b"-"
    assert pump.handle(b"0~0") == b"*" and pump.handle(b"2E") == b"+"  # legacy again: pump address 2


def test_emulator_modes_and_flow_source(world: SimWorld) -> None:
    pump = RegloICCEmulator("pump", world)
    assert pump.handle(b"1xM") == b"M\r\n"
    for letter in "LOGQNPM":
        assert pump.handle(b"1" + letter.encode()) == b"*" and pump.handle(b"1xM") == letter.encode() + b"\r\n"
    assert pump.handle(b"1M5") == b"#"
    assert pump.handle(b"1xf") == b"1\r\n" and pump.handle(b"1xf0") == b"*" and pump.handle(b"1xf") == b"0\r\n"
    assert pump.handle(b"1xf7") == b"#"


def test_emulator_cannot_run_cause_and_legacy_controls(world: SimWorld) -> None:
    pump = RegloICCEmulator("pump", world, options={"tubing_inner_diameter_mm": 0.25})
    assert pump.handle(b"1H") == b"-"  # flow 0: cannot run ...
    assert pump.handle(b"1xe") == b"R 2454E-1\r\n"  # ... R: rate, and the maximum flow in mL/min
    assert [pump.handle(c) for c in (b"1-", b"1A", b"1B")] == [b"*", b"*", b"*"]


def test_emulator_settings_of_the_legacy_list(world: SimWorld) -> None:
    pump = RegloICCEmulator("pump", world, options={"tubing_inner_diameter_mm": 0.25})
    assert pump.handle(b"1%") == b"0\r\n" and pump.handle(b"1%0010") == b"*" and pump.handle(b"1%") == b"10\r\n"
    assert pump.handle(b"1%10") == b"#"
    assert pump.handle(b"1T0105") == b"*" and pump.handle(b"1T") == b"105\r\n"
    assert pump.handle(b"1TM005") == b"*" and pump.handle(b"1T") == b"3000\r\n"  # 5 min in 0.1 s
    assert pump.handle(b"1TH001") == b"*" and pump.handle(b"1T") == b"36000\r\n"
    assert pump.handle(b"1TH1") == b"#"
    assert pump.handle(b'1"0003') == b"*" and pump.handle(b'1"') == b"3\r\n"
    assert pump.handle(b"1*") == b"*" and pump.handle(b"10") == b"*" and pump.handle(b"1%") == b"0\r\n"
    assert pump.handle(b"1C") == b"-"  # foot switch open
    assert pump.handle(b"1S005000") == b"*" and pump.handle(b"1S") == b"005000\r\n"  # 50.00 rpm
    assert pump.handle(b"1f") == b"1227E-1\r\n"  # 50 rpm x 2.454 µL/rev = 0.1227 mL/min
    assert pump.handle(b"1S020000") == b"#"  # 200 rpm: above the head's 100 rpm
