"""NE-1000 syringe pump: driver bytes (replay), emulator bytes, and both over a real pty."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import serial

from instruments.errors import (
    InstrumentDisconnected,
    InstrumentTimeout,
    MalformedReply,
    SafeStateNotConfirmed,
)
from instruments.ne1000 import NE1000, NE1000CommandError, encode_rate, format_float
from instruments.pump import Pump, PumpAlarm
from instruments.sim.ne1000_emulator import ADVANCE_PER_MICROSTEP_MM, NE1000Emulator
from instruments.sim.transports import PtyPort
from instruments.sim.world import SimWorld
from instruments.testing import ScriptedResource, WriteSpy
from instruments.visa_instrument import Identity


def ok(data: str = "", status: str = "S", address: int = 0) -> bytes:
    return f"\x02{address:02d}{status}{data}\x03".encode()


CONFIGURE = [(b"0DIA14.43\r", ok()), (b"0DIRINF\r", ok()), (b"0VOL0\r", ok())]


def scripted(script: list[tuple[bytes, bytes | None]], **options: Any) -> tuple[NE1000, ScriptedResource]:
    """A Basic-mode pump (no comms watchdog) unless the test asks for one: Safe mode has its own tests."""
    options.setdefault("comms_watchdog_s", 0)
    res = ScriptedResource(script)
    return NE1000("pump", res, options=options), res


# -- (a) protocol replay: exact bytes for every method ----------------------------------------


def test_identify_reads_model_and_firmware_and_has_no_serial() -> None:
    pump, res = scripted([(b"0VER\r", ok("NE1000V3.928"))])
    assert pump.identify() == Identity(model="NE-1000", serial="", firmware="3.928")
    res.assert_done()
    assert isinstance(pump, Pump)


def test_first_rate_change_configures_diameter_direction_and_continuous_volume() -> None:
    pump, res = scripted(
        [*CONFIGURE, (b"0RAT0.002MH\r", ok()), (b"0RAT2.500UH\r", ok())], syringe_diameter_mm=14.43
    )
    pump.set_rate_ml_h(0.002)
    pump.set_rate_ml_h(0.0025)
    res.assert_done()


def test_rate_start_stop_status_dispensed_clear() -> None:
    pump, res = scripted(
        [
            (b"7DIRINF\r", ok(address=7)),
            (b"7VOL0\r", ok(address=7)),
            (b"7RUN\r", ok(status="I", address=7)),
            (b"7\r", ok(status="I", address=7)),
            (b"7RAT\r", ok("2.500UH", status="I", address=7)),
            (b"7DIS\r", ok("I1.234W0.050ML", status="I", address=7)),
            (b"7DIS\r", ok("I1.234W0.000UL", status="I", address=7)),
            (b"7STP\r", ok(status="P", address=7)),
            (b"7CLDINF\r", ok(status="P", address=7)),
            (b"7CLDWDR\r", ok(status="P", address=7)),
        ],
        address=7,
    )
    pump.start()
    assert pump.is_running()
    assert pump.rate_ml_h() == pytest.approx(0.0025)
    assert pump.dispensed_ml() == pytest.approx(1.234)
    assert pump.dispensed_ml() == pytest.approx(0.001234)
    pump.stop()
    pump.clear_dispensed()
    res.assert_done()


def test_rate_units_are_kept_while_pumping() -> None:
    """The pump refuses to change rate units while pumping, so 5 mL/h stays in µL/h."""
    pump, res = scripted([*CONFIGURE[1:], (b"0RUN\r", ok(status="I")), (b"0RAT5000UH\r", ok(status="I"))])
    pump._rate_units = "UH"  # as after an earlier RAT ...UH
    pump.start()
    pump.set_rate_ml_h(5.0)
    res.assert_done()


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        ("?", "", "not recognised"),
        ("?NA", "NA", "not applicable"),
        ("?OOR", "OOR", "out of range"),
        ("?COM", "COM", "invalid communications packet"),
        ("?IGN", "IGN", "ignored"),
    ],
)
def test_command_errors_name_instrument_command_and_meaning(data: str, code: str, words: str) -> None:
    pump, res = scripted([*CONFIGURE[1:], (b"0RAT1.000MH\r", ok(data))])
    with pytest.raises(NE1000CommandError) as info:
        pump.set_rate_ml_h(1.0)
    assert info.value.code == code
    assert "pump" in str(info.value) and "0RAT1.000MH" in str(info.value) and words in str(info.value)
    res.assert_done()


@pytest.mark.parametrize(
    ("letter", "alarm"),
    [("R", "reset"), ("S", "stall"), ("T", "timeout"), ("E", "program_error"), ("O", "out_of_range")],
)
def test_alarm_replies_raise_pump_alarm_and_are_remembered(letter: str, alarm: str) -> None:
    pump, res = scripted([*CONFIGURE[1:], (b"0RUN\r", ok(f"?{letter}", status="A")), (b"0\r", ok())])
    with pytest.raises(PumpAlarm) as info:
        pump.start()
    assert info.value.alarm == alarm and "0RUN" in str(info.value)
    assert pump.alarm() == alarm  # remembered: no I/O
    assert pump.alarm() is None  # asks the pump, which acknowledged the alarm
    res.assert_done()


@pytest.mark.parametrize(
    "reply",
    [b"00SNE1000V3.928\x03", b"\x0200QNE1000V3.928\x03", b"\x0203SNE1000V3.928\x03", b"\x0200S?XYZ\x03",
     b"\x0200A?Z\x03", b"\x02\x03"],
)
def test_garbled_replies_are_malformed_and_queries_retried(reply: bytes) -> None:
    pump, res = scripted([(b"0VER\r", reply)] * 3)
    with pytest.raises(MalformedReply) as info:
        pump.identify()
    assert "pump" in str(info.value) and "0VER" in str(info.value)
    res.assert_done()  # 1 + 2 retries


def test_well_framed_but_unparseable_data_is_malformed_without_retry() -> None:
    """Framing survived, so this is no line noise: asking again would get the same answer."""
    pump, res = scripted([(b"0VER\r", ok("NE1000"))])
    with pytest.raises(MalformedReply, match="cannot parse 'NE1000'"):
        pump.identify()
    res.assert_done()


def test_state_changing_command_is_sent_once_on_garbage_or_timeout() -> None:
    pump, res = scripted([*CONFIGURE[1:], (b"0RUN\r", b"\x15junk\x03")])
    with pytest.raises(MalformedReply):
        pump.start()
    res.assert_done()
    pump, res = scripted([(b"0STP\r", None)])
    with pytest.raises(InstrumentTimeout):
        pump.stop()
    res.assert_done()


@pytest.mark.parametrize("bad", [0, -1, "abc", float("nan"), 1e6])
def test_rate_validation_names_the_range_before_any_io(bad: Any) -> None:
    pump, res = scripted([], syringe_diameter_mm=14.43)
    with pytest.raises(ValueError, match=r"rate_ml_h must be .*1e-06\.\.\d+(\.\d+)? mL/h"):
        pump.set_rate_ml_h(bad)
    assert res.written == []


def test_bad_options_are_one_clear_message() -> None:
    with pytest.raises(ValueError, match="address must be an integer 0..99"):
        NE1000("pump", ScriptedResource([]), options={"address": 100})
    with pytest.raises(ValueError, match="syringe_diameter_mm must be in 0.1..80 mm"):
        NE1000("pump", ScriptedResource([]), options={"syringe_diameter_mm": 120})


def test_the_emulator_refuses_an_address_the_pump_cannot_have() -> None:
    """Driver and emulator read the address with one check (rig.settings.int_option)."""
    with pytest.raises(ValueError, match=r"^pump: options\.address must be an integer 0\.\.99, got 100$"):
        NE1000Emulator("pump", SimWorld(virtual=True), options={"address": 100})
    assert NE1000Emulator("pump", SimWorld(virtual=True), options={}).address == 0  # factory setting


def test_safe_state_reads_back_stopped() -> None:
    pump, res = scripted([(b"0STP\r", ok(status="P")), (b"0\r", ok(status="P"))])
    assert pump.safe_state() == {"running": False, "status": "P", "alarm": None}
    res.assert_done()


def test_safe_state_acknowledges_an_alarm_and_reports_it() -> None:
    pump, res = scripted([(b"0STP\r", ok("?S", status="A")), (b"0STP\r", ok()), (b"0\r", ok())])
    assert pump.safe_state() == {"running": False, "status": "S", "alarm": "stall"}
    res.assert_done()


def test_safe_state_not_confirmed_when_still_infusing() -> None:
    pump, _ = scripted([(b"0STP\r", ok(status="P")), (b"0\r", ok(status="I"))])
    with pytest.raises(SafeStateNotConfirmed, match="still infusing"):
        pump.safe_state()


def test_number_formatting_fits_four_digits_with_best_resolution() -> None:
    assert format_float(14.43) == "14.43" and format_float(0.002) == "0.002" and format_float(9999) == "9999"
    with pytest.raises(ValueError):
        format_float(10000)
    assert encode_rate(0.002) == ("0.002", "MH")
    assert encode_rate(0.0025) == ("2.500", "UH")
    assert encode_rate(24.0) == ("24.00", "MH")
    assert encode_rate(1234.5) == ("20.57", "MM")  # 1234.2 mL/h: closer than 1234 or 1235 MH


# -- (b) the emulator, fed bytes ----------------------------------------------------------------


@pytest.fixture
def world() -> SimWorld:
    return SimWorld(virtual=True)


@pytest.fixture
def emulator(world: SimWorld) -> NE1000Emulator:
    return NE1000Emulator("pump", world, options={"address": 3, "syringe_diameter_mm": 14.43})


def test_emulator_answers_only_its_address_and_ignores_spaces_and_case(emulator: NE1000Emulator) -> None:
    assert emulator.handle(b"0VER") is None
    assert emulator.handle(b"3VER") == b"\x0203SNE1000V3.928\x03"
    assert emulator.handle(b"*VER") == b"\x0203SNE1000V3.928\x03"
    assert emulator.handle(b" 3 rat 1.5 mh") == b"\x0203S\x03"
    assert emulator.handle(b"3RAT") == b"\x0203S1.500MH\x03"
    assert emulator.garbage().endswith(b"\x03") and not emulator.garbage().startswith(b"\x02")


def test_emulator_error_replies(emulator: NE1000Emulator, world: SimWorld) -> None:
    assert emulator.handle(b"3XYZ") == b"\x0203S?\x03"
    assert emulator.handle(b"3RATabc") == b"\x0203S?\x03"
    assert emulator.handle(b"3RAT12345MH") == b"\x0203S?OOR\x03"
    assert emulator.handle(b"3RAT9999MM") == b"\x0203S?OOR\x03"  # faster than the pusher can go
    assert emulator.handle(b"3CLD") == b"\x0203S?\x03"
    assert emulator.handle(b"3RAT1MH") == b"\x0203S\x03"
    assert emulator.handle(b"3RUN") == b"\x0203I\x03"
    assert emulator.handle(b"3RAT1000UH") == b"\x0203I?NA\x03"  # units fixed while pumping
    assert emulator.handle(b"3DIA10") == b"\x0203I?NA\x03"
    with world.locked() as model:
        assert model.pump.running and model.pump.rate_ml_h == 1.0


def test_emulator_diameter_sets_step_volume_and_volume_units(emulator: NE1000Emulator, world: SimWorld) -> None:
    assert emulator.handle(b"3DIA4.78") == b"\x0203S\x03"
    assert emulator.handle(b"3VOL") == b"\x0203S0.000UL\x03"  # <= 14.00 mm: microlitres
    with world.locked() as model:
        assert model.pump.step_volume_ml == pytest.approx(math.pi / 4 * 4.78**2 * ADVANCE_PER_MICROSTEP_MM / 1000)
    assert emulator.handle(b"3DIA26.59") == b"\x0203S\x03"
    assert emulator.handle(b"3VOL") == b"\x0203S0.000ML\x03"


def test_emulator_run_pause_stop_and_volume_target(emulator: NE1000Emulator, world: SimWorld) -> None:
    emulator.handle(b"3RAT1.000MH")
    emulator.handle(b"3VOL0.010")
    assert emulator.handle(b"3RUN") == b"\x0203I\x03"
    world.advance(60)  # 1 mL/h for 60 s would be 0.0167 mL; the target stops it at 0.010
    assert emulator.handle(b"3") == b"\x0203S\x03"
    assert emulator.handle(b"3DIS") == b"\x0203SI0.010W0.000ML\x03"
    emulator.handle(b"3VOL0")
    assert emulator.handle(b"3RUN") == b"\x0203I\x03"
    assert emulator.handle(b"3STP") == b"\x0203P\x03"
    assert emulator.handle(b"3STP") == b"\x0203S\x03"
    emulator.handle(b"3DIRWDR")
    assert emulator.handle(b"3RUN") == b"\x0203W\x03"
    world.advance(36)
    assert emulator.handle(b"3DIS") == b"\x0203WI0.010W0.010ML\x03"
    assert emulator.handle(b"3CLDINF") == b"\x0203W\x03"
    assert emulator.handle(b"3DIS") == b"\x0203WI0.000W0.010ML\x03"


def test_emulator_stall_is_an_alarm_once_then_acknowledged(emulator: NE1000Emulator, world: SimWorld) -> None:
    emulator.handle(b"3RAT1.000MH")
    emulator.handle(b"3RUN")
    with world.locked() as model:
        model.pump.force_stall = True
    world.advance(1)
    assert emulator.state()["alarm"] == "stall" and emulator.state()["running"] is False
    assert emulator.handle(b"3RAT") == b"\x0203A?S\x03"  # the command is not executed
    assert emulator.handle(b"3") == b"\x0203S\x03"
    assert emulator.state()["alarm"] is None


def test_emulator_counts_commanded_not_real_displacement(emulator: NE1000Emulator, world: SimWorld) -> None:
    with world.locked() as model:
        model.pump.displacement_factor = 0.8
    emulator.handle(b"3RAT1.000MH")
    emulator.handle(b"3RUN")
    world.advance(3600)
    assert emulator.handle(b"3DIS") == b"\x0203II1.000W0.000ML\x03"
    assert world.snapshot()["totals"]["pumped_ml"] == pytest.approx(0.8, abs=1e-4)


# -- (c) end to end over a real pseudo-terminal -------------------------------------------------



@pytest.fixture
def bench(world: SimWorld) -> Iterator[tuple[NE1000, NE1000Emulator, PtyPort]]:
    emulator = NE1000Emulator("pump", world, options={"address": 0})
    port = PtyPort(emulator).start()
    pump = NE1000("pump", port.resource, timeout_ms=300, options={"syringe_diameter_mm": 14.43, "comms_watchdog_s": 0})
    try:
        yield pump, emulator, port
    finally:
        pump.close()
        port.close()


@pytest.mark.parametrize("rate_ml_h", [1.0, 0.002])
def test_e2e_delivers_the_set_rate_in_virtual_time(bench: Any, world: SimWorld, rate_ml_h: float) -> None:
    pump, emulator, _ = bench
    pump.set_rate_ml_h(rate_ml_h)
    pump.clear_dispensed()
    pump.start()
    assert pump.is_running() and pump.rate_ml_h() == pytest.approx(rate_ml_h)
    world.advance(3600)
    step_ml = emulator.state()["step_volume_ml"]
    assert world.snapshot()["totals"]["pumped_ml"] == pytest.approx(rate_ml_h, abs=step_ml)
    assert pump.dispensed_ml() == pytest.approx(rate_ml_h, abs=max(step_ml, 0.0005))  # 3 decimals in mL


def test_e2e_stall_in_the_model_is_a_pump_alarm(bench: Any, world: SimWorld) -> None:
    pump, _, _ = bench
    pump.set_rate_ml_h(1.0)
    pump.start()
    with world.locked() as model:
        model.pump.force_stall = True
    world.advance(1)
    with pytest.raises(PumpAlarm) as info:
        pump.is_running()
    assert info.value.alarm == "stall" and "pump" in str(info.value)
    assert pump.alarm() == "stall"
    assert pump.alarm() is None and not pump.is_running()


def test_e2e_safe_state_is_confirmed_by_the_emulator(bench: Any) -> None:
    pump, emulator, _ = bench
    pump.set_rate_ml_h(0.5)
    pump.start()
    assert emulator.state()["running"] is True
    result = pump.safe_state()
    state = emulator.state()
    assert state["running"] is False and state["status"] in ("S", "P")
    assert result["status"] == state["status"]


def test_e2e_silent_garbage_and_drop_faults(bench: Any, world: SimWorld) -> None:
    pump, _, _ = bench
    spy = WriteSpy(pump._res)
    pump._res = spy
    world.set_fault("pump", "silent")
    with pytest.raises(InstrumentTimeout, match=r"pump \('0VER'\): no reply within 300 ms"):
        pump.identify()
    assert spy.writes == [b"0VER\r"] * 3
    world.set_fault("pump", "garbage")
    spy.writes.clear()
    with pytest.raises(MalformedReply, match=r"pump \('0VER'\)"):
        pump.identify()
    assert spy.writes == [b"0VER\r"] * 3  # idempotent query: retried
    spy.writes.clear()
    pump._configured = True
    with pytest.raises(MalformedReply, match=r"pump \('0RUN'\)"):
        pump.start()
    assert spy.writes == [b"0RUN\r"]  # state-changing command: sent once
    world.set_fault("pump", "none")
    assert pump.identify().model == "NE-1000"
    world.set_fault("pump", "drop")
    with pytest.raises(InstrumentDisconnected, match=r"pump \('0VER'\)"):
        pump.identify()


def test_third_party_pyserial_client_gets_the_same_bytes(bench: Any) -> None:
    _, _, port = bench
    with serial.Serial(port.path, 19200, timeout=2) as client:
        client.write(b"0VER\r")
        assert client.read_until(b"\x03") == b"\x0200SNE1000V3.928\x03"
        client.write(b"0 rat 0.5 mh\r")
        assert client.read_until(b"\x03") == b"\x0200S\x03"
        client.write(b"0RAT\r")
        assert client.read_until(b"\x03") == b"\x0200S0.500MH\x03"


# -- the rest of the command set (manual 10.4), as a client written to the manual sends it -------


@pytest.mark.parametrize(
    ("command", "query", "value", "bad", "code"),
    [
        (b"PHN", b"3PHN", b"05", b"3PHN42", "OOR"),
        (b"FUN", b"3FUN", b"PS10", b"3FUNXYZ", ""),
        (b"TRG", b"3TRG", b"LE", b"3TRGQQ", ""),
        (b"LOC", b"3LOC", b"1", b"3LOC2", "OOR"),
        (b"ALR", b"3ALR", b"1", b"3ALRx", ""),
        (b"PF", b"3PF", b"1", b"3PF7", "OOR"),
        (b"DIN", b"3DIN", b"1", b"3DIN9", "OOR"),
        (b"ROM", b"3ROM", b"1", b"3ROM5", "OOR"),
        (b"BP", b"3BP", b"1", b"3BP3", "OOR"),
        (b"BUZ", b"3BUZ", b"13", b"3BUZ2", ""),
        (b"OUT", b"3OUT", b"1", b"3OUT2", ""),
        (b"SAF", b"3SAF", b"0", b"3SAF256", "OOR"),
    ],
)
def test_emulator_settings_commands_set_query_and_refuse(
    emulator: NE1000Emulator, command: bytes, query: bytes, value: bytes, bad: bytes, code: str
) -> None:
    if command != b"SAF":
        assert emulator.handle(b"3" + command + value) == b"\x0203S\x03"
    assert emulator.handle(query) == b"\x0203S" + value + b"\x03"
    assert emulator.handle(bad) == b"\x0203S?" + code.encode() + b"\x03"


def test_emulator_purge_run_at_phase_input_address_and_reset(emulator: NE1000Emulator, world: SimWorld) -> None:
    assert emulator.handle(b"3PUR") == b"\x0203X\x03"  # purging: full speed
    assert emulator.handle(b"3PHN2") == b"\x0203X?NA\x03"  # program data only while stopped
    assert emulator.handle(b"3STP") == b"\x0203S\x03"  # a purge stops outright (no pause)
    emulator.handle(b"3RAT1.0MH")
    assert emulator.handle(b"3RUN2") == b"\x0203I\x03" and emulator.handle(b"3PHN") == b"\x0203I02\x03"
    assert emulator.handle(b"3DIRSTK") == b"\x0203I?NA\x03"
    emulator.handle(b"3STP")
    emulator.handle(b"3STP")
    assert emulator.handle(b"3IN") == b"\x0203S1\x03"
    assert emulator.handle(b"3ADR7") == b"\x0207S\x03"  # answered with the new address (assumed)
    assert emulator.handle(b"3VER") is None and emulator.handle(b"7ADR") == b"\x0207S07\x03"
    emulator.handle(b"7LOC1")
    assert emulator.handle(b"7*RESET") == b"\x0207S\x03" and emulator.handle(b"7LOC") == b"\x0207S0\x03"
