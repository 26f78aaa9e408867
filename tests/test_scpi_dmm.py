"""SCPI DMM: protocol replay (driver bytes), emulator replies, and end-to-end over TCP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from instruments.errors import (
    InstrumentDisconnected,
    InstrumentReportedError,
    InstrumentTimeout,
    MalformedReply,
    SafeStateNotConfirmed,
)
from instruments.scpi_dmm import ScpiDmm
from instruments.sim.scpi_dmm_emulator import ScpiDmmEmulator, header_matches
from instruments.sim.transports import TcpPort
from instruments.sim.world import SimWorld
from instruments.testing import ScriptedResource

NO_ERROR = (b"SYST:ERR?\n", b'+0,"No error"\n')
IDN = b"Keysight Technologies,34465A,MY12345678,A.02.14-02.40-02.14-00.49-03-01"

# -- protocol replay ---------------------------------------------------------------------------


def scripted(*pairs: tuple[bytes, bytes | None], retries: int = 0) -> tuple[ScpiDmm, ScriptedResource]:
    res = ScriptedResource(list(pairs))
    return ScpiDmm("dmm", res, retries=retries), res


def test_read_voltage_autorange_and_fixed_range() -> None:
    dmm, res = scripted(
        (b"MEAS:VOLT:DC?\n", b"+1.23456789E-01\n"),
        (b"MEAS:VOLT:DC? 10\n", b"-2.50000000E+00\n"),
        (b"MEAS:VOLT:DC? 0.1\n", b"+5.00000000E-03\n"),
    )
    assert dmm.read_voltage_v() == pytest.approx(0.123456789)
    assert dmm.read_voltage_v(10.0) == pytest.approx(-2.5)
    assert dmm.read_voltage_v(0.1) == pytest.approx(0.005)
    res.assert_done()


def test_bad_range_is_refused_before_any_io() -> None:
    dmm, res = scripted()
    allowed = r"range_v must be None \(autorange\) or one of 0.1, 1, 10, 100, 1000 V, got 5"
    with pytest.raises(ValueError, match=allowed):
        dmm.read_voltage_v(5)


def test_overload_reading_is_reported() -> None:
    dmm, res = scripted((b"MEAS:VOLT:DC? 1\n", b"+9.90000000E+37\n"))
    with pytest.raises(InstrumentReportedError, match=r"dmm \('MEAS:VOLT:DC\? 1'\): overload"):
        dmm.read_voltage_v(1.0)
    res.assert_done()


def test_identify() -> None:
    dmm, res = scripted((b"*IDN?\n", IDN + b"\n"))
    ident = dmm.identify()
    assert ident.as_dict() == {
        "model": "Keysight Technologies 34465A",
        "serial": "MY12345678",
        "firmware": "A.02.14-02.40-02.14-00.49-03-01",
    }
    res.assert_done()


def test_safe_state_aborts_and_reads_back_an_empty_error_queue() -> None:
    dmm, res = scripted(
        (b"SYST:ERR?\n", b'-113,"Undefined header"\n'), NO_ERROR, (b"ABOR\n", None), NO_ERROR
    )
    assert dmm.safe_state() == {
        "aborted": True,
        "error_queue": '+0,"No error"',
        "earlier_errors": ['-113,"Undefined header"'],
    }
    res.assert_done()


def test_safe_state_not_confirmed_when_abort_leaves_an_error() -> None:
    dmm, res = scripted(NO_ERROR, (b"ABOR\n", None), (b"SYST:ERR?\n", b'-113,"Undefined header"\n'))
    with pytest.raises(SafeStateNotConfirmed, match=r"dmm \('ABOR'\).*-113"):
        dmm.safe_state()
    res.assert_done()


def test_command_is_confirmed_through_the_error_queue() -> None:
    dmm, res = scripted((b"CONF:VOLT:DC 10\n", None), NO_ERROR)
    dmm.command("CONF:VOLT:DC 10")
    res.assert_done()
    dmm, res = scripted(
        (b"CONF:VOLT:DC 5000\n", None), (b"SYST:ERR?\n", b'-222,"Data out of range"\n'), NO_ERROR
    )
    with pytest.raises(InstrumentReportedError, match=r"dmm \('CONF:VOLT:DC 5000'\): rejected: -222"):
        dmm.command("CONF:VOLT:DC 5000")
    res.assert_done()


def test_silent_query_is_explained_by_the_error_queue() -> None:
    dmm, res = scripted(
        (b"MEAS:VOLT:DC?\n", None), (b"SYST:ERR?\n", b'-113,"Undefined header"\n'), NO_ERROR
    )
    with pytest.raises(InstrumentReportedError, match=r"no reply; error queue: -113,\"Undefined header\""):
        dmm.read_voltage_v()
    res.assert_done()


def test_silent_query_with_silent_error_queue_is_a_timeout() -> None:
    dmm, res = scripted((b"MEAS:VOLT:DC?\n", None), (b"SYST:ERR?\n", None))
    with pytest.raises(InstrumentTimeout, match=r"dmm \('MEAS:VOLT:DC\?'\): no reply"):
        dmm.read_voltage_v()
    res.assert_done()


@pytest.mark.parametrize(
    ("cmd", "reply"),
    [
        ("read_voltage_v", b"\x15#~garbage~#\n"),
        ("read_voltage_v", b"1.2.3\n"),
        ("identify", b"Keysight Technologies,34465A\n"),
    ],
)
def test_garbage_is_malformed_reply(cmd: str, reply: bytes) -> None:
    wire = {"read_voltage_v": b"MEAS:VOLT:DC?\n", "identify": b"*IDN?\n"}[cmd]
    dmm, res = scripted((wire, reply))
    with pytest.raises(MalformedReply) as info:
        getattr(dmm, cmd)()
    assert info.value.command == wire.decode().strip()
    res.assert_done()


def test_garbage_query_is_retried() -> None:
    dmm, res = scripted(
        (b"MEAS:VOLT:DC?\n", b"\x15\n"), (b"MEAS:VOLT:DC?\n", b"+1.00000000E+00\n"), retries=1
    )
    assert dmm.read_voltage_v() == 1.0
    res.assert_done()


def test_error_queue_drains_oldest_first() -> None:
    dmm, res = scripted(
        (b"SYST:ERR?\n", b'-113,"Undefined header"\n'),
        (b"SYST:ERR?\n", b'-222,"Data out of range"\n'),
        NO_ERROR,
    )
    assert dmm.error_queue() == ['-113,"Undefined header"', '-222,"Data out of range"']
    res.assert_done()


# -- emulator ----------------------------------------------------------------------------------


@pytest.fixture()
def world() -> SimWorld:
    return SimWorld(virtual=True, seed=5)


def run_pump(world: SimWorld, rate_ml_h: float, settle_s: float = 60.0) -> None:
    with world.locked() as model:
        model.pump.rate_ml_h, model.pump.running = rate_ml_h, True
    world.advance(settle_s)


def test_header_matching_short_long_optional_and_case() -> None:
    pattern = "MEASure:VOLTage[:DC]?"
    for header in ("MEAS:VOLT:DC?", "meas:volt?", ":MEASURE:VOLTAGE:DC?", "Meas:Voltage:dc?"):
        assert header_matches(pattern, header), header
    for header in ("MEAS:VOLT:DC", "MEA:VOLT?", "MEAS:VOLT:AC?", "MEAS?"):
        assert not header_matches(pattern, header), header


def test_emulator_idn_and_reading_format(world: SimWorld) -> None:
    emu = ScpiDmmEmulator("dmm", world, serial="MY00000001")
    idn = b"Keysight Technologies,34465A,MY00000001,A.02.14-02.40-02.14-00.49-03-01\n"
    assert emu.handle(b"*IDN?") == idn
    reply = emu.handle(b"MEAS:VOLT:DC?")
    assert reply is not None and len(reply) == len(b"+1.23456789E-01\n") and reply[:1] in b"+-"
    assert emu.handle(b"*OPC?") == b"1\n"


def test_emulator_reads_the_flow_sensor_output(world: SimWorld) -> None:
    emu = ScpiDmmEmulator("dmm", world, options={"volts_per_ul_min": 0.1})
    run_pump(world, 1.2)  # 20 uL/min
    volts = float(emu.handle(b"MEAS:VOLT:DC?"))  # type: ignore[arg-type]
    assert volts == pytest.approx(2.0, abs=0.01)
    assert emu.state()["last_reading_v"] == pytest.approx(volts, rel=1e-8)


def test_emulator_fixed_range_overload(world: SimWorld) -> None:
    emu = ScpiDmmEmulator("dmm", world)
    run_pump(world, 1.2)  # 2 V
    assert emu.handle(b"MEAS:VOLT:DC? 1") == b"+9.90000000E+37\n"
    assert emu.state()["range_v"] == 1.0
    assert float(emu.handle(b"MEAS:VOLT:DC? AUTO")) == pytest.approx(2.0, abs=0.01)  # type: ignore[arg-type]


def test_emulator_errors_are_silent_and_queued(world: SimWorld) -> None:
    emu = ScpiDmmEmulator("dmm", world)
    assert emu.handle(b"FOO?") is None
    assert emu.handle(b"MEAS:VOLT:DC? 5000") is None
    assert emu.handle(b"MEAS:VOLT:DC? banana") is None
    assert emu.handle(b"*RST 1") is None
    assert emu.handle(b"SYST:ERR?") == b'-113,"Undefined header"\n'
    assert emu.handle(b"SYSTEM:ERROR:NEXT?") == b'-222,"Data out of range"\n'
    assert emu.handle(b"syst:err?") == b'-224,"Illegal parameter value"\n'
    assert emu.handle(b"SYST:ERR?") == b'-108,"Parameter not allowed"\n'
    assert emu.handle(b"SYST:ERR?") == b'+0,"No error"\n'


def test_emulator_error_queue_overflow_and_clear(world: SimWorld) -> None:
    emu = ScpiDmmEmulator("dmm", world)
    for _ in range(25):
        emu.handle(b"FOO")
    queue = emu.state()["error_queue"]
    assert len(queue) == 20 and queue[-1] == '-350,"Error queue overflow"'
    emu.handle(b"*RST")  # *RST keeps the queue
    assert len(emu.state()["error_queue"]) == 20
    emu.handle(b"*CLS")
    assert emu.handle(b"SYST:ERR?") == b'+0,"No error"\n'


def test_emulator_compound_line_and_abort(world: SimWorld) -> None:
    emu = ScpiDmmEmulator("dmm", world)
    assert emu.handle(b"ABOR;*OPC?;SYST:ERR?") == b'1;+0,"No error"\n'
    assert emu.state()["aborts"] == 1
    assert emu.handle(b"CONF:VOLT:DC 10;FOO;*OPC?") is None  # the rest after an error is dropped
    assert emu.state()["range_v"] == 10.0


# -- end to end: driver -> pyvisa TCPIP SOCKET -> emulator -> model ------------------------------


@pytest.fixture()
def bench(world: SimWorld) -> Iterator[tuple[SimWorld, ScpiDmm, ScpiDmmEmulator]]:
    emu = ScpiDmmEmulator("dmm", world, serial="MY87654321")
    port = TcpPort(emu).start()
    dmm = ScpiDmm("dmm", port.resource, timeout_ms=200, retries=1)
    try:
        yield world, dmm, emu
    finally:
        dmm.close()
        port.close()


def test_e2e_identify_and_voltage_follows_flow(bench: tuple[SimWorld, ScpiDmm, ScpiDmmEmulator]) -> None:
    world, dmm, _ = bench
    assert dmm.identify().serial == "MY87654321"
    assert dmm.read_voltage_v() == pytest.approx(0.0, abs=0.01)
    run_pump(world, 3.0)  # 50 uL/min -> 5 V
    assert dmm.read_voltage_v() == pytest.approx(5.0, abs=0.02)
    with pytest.raises(InstrumentReportedError, match="overload"):
        dmm.read_voltage_v(1.0)


def test_e2e_safe_state_reaches_the_instrument(bench: tuple[SimWorld, ScpiDmm, ScpiDmmEmulator]) -> None:
    _, dmm, emu = bench
    with pytest.raises(InstrumentReportedError, match='Undefined header'):
        dmm.query("FOO?")
    state = dmm.safe_state()
    assert state["error_queue"] == '+0,"No error"'
    assert emu.state()["aborts"] == 1 and emu.state()["error_queue"] == []


@pytest.mark.parametrize(
    ("fault", "error", "words"),
    [
        ("silent", InstrumentTimeout, "no reply"),
        ("garbage", MalformedReply, "not a SCPI reply"),
        ("drop", InstrumentDisconnected, "connection"),
    ],
)
def test_e2e_transport_faults(
    bench: tuple[SimWorld, ScpiDmm, ScpiDmmEmulator], fault: str, error: type, words: str
) -> None:
    world, dmm, _ = bench
    dmm.read_voltage_v()
    world.set_fault("dmm", fault)
    with pytest.raises(error, match=words) as info:
        dmm.read_voltage_v()
    assert (info.value.instrument, info.value.command) == ("dmm", "MEAS:VOLT:DC?")


def test_emulator_ieee_488_2_status_commands(world: SimWorld) -> None:
    """The mandatory IEEE 488.2 common commands, with the status bits the standard defines."""
    dmm = ScpiDmmEmulator("dmm", world)
    assert dmm.handle(b"*TST?") == b"+0\n" and dmm.handle(b"*ESR?") == b"+0\n"
    assert dmm.handle(b"*ESE 32") is None and dmm.handle(b"*ESE?") == b"+32\n"
    assert dmm.handle(b"*SRE 32") is None and dmm.handle(b"*SRE?") == b"+32\n"
    assert dmm.handle(b"BOGUS") is None  # -113: a command error, silent on the wire
    assert dmm.handle(b"*STB?") == b"+100\n"  # error queue (4) + enabled event (32) + service request (64)
    assert dmm.handle(b"*ESR?") == b"+32\n" and dmm.handle(b"*ESR?") == b"+0\n"  # read clears it
    assert dmm.handle(b"*OPC") is None and dmm.handle(b"*WAI") is None and dmm.handle(b"*ESR?") == b"+1\n"
    assert dmm.handle(b"*ESE 300") is None and dmm.handle(b"SYST:ERR?") == b'-113,"Undefined header"\n'
    assert dmm.handle(b"SYST:ERR?") == b'-222,"Data out of range"\n'
    assert dmm.handle(b"*CLS") is None and dmm.handle(b"*STB?") == b"+0\n"
