"""MT-SICS balance: protocol replay (driver bytes), emulator replies, and end-to-end on a pty."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instruments.errors import (
    InstrumentDisconnected,
    InstrumentReportedError,
    InstrumentTimeout,
    MalformedReply,
)
from instruments.mt_sics import (
    BalanceOverload,
    BalanceUnderload,
    BalanceUnstable,
    MTSicsBalance,
)
from instruments.sim.mt_sics_emulator import MTSicsEmulator, format_weight_line
from instruments.sim.transports import PtyPort
from instruments.sim.world import SimWorld
from instruments.testing import ScriptedResource

# -- protocol replay: the exact bytes of every method ------------------------------------------


def scripted(*pairs: tuple[bytes, bytes | None], retries: int = 0) -> tuple[MTSicsBalance, ScriptedResource]:
    res = ScriptedResource(list(pairs))
    return MTSicsBalance("balance", res, retries=retries), res


def test_read_mass_g_sends_S_and_parses_stable_weight() -> None:
    bal, res = scripted((b"S\r\n", b"S S   100.0000 g\r\n"))
    assert bal.read_mass_g() == pytest.approx(100.0)
    res.assert_done()


def test_read_mass_g_negative_and_other_units() -> None:
    bal, res = scripted(
        (b"S\r\n", b"S S    -12.3456 g\r\n"),
        (b"S\r\n", b"S S     250.00 mg\r\n"),
        (b"S\r\n", b"S S     0.1200 kg\r\n"),
    )
    assert bal.read_mass_g() == pytest.approx(-12.3456)
    assert bal.read_mass_g() == pytest.approx(0.25)
    assert bal.read_mass_g() == pytest.approx(120.0)
    res.assert_done()


def test_read_mass_immediate_reports_stability() -> None:
    bal, res = scripted((b"SI\r\n", b"S D    50.0012 g\r\n"), (b"SI\r\n", b"S S    50.0013 g\r\n"))
    assert bal.read_mass_immediate_g() == (pytest.approx(50.0012), False)
    assert bal.read_mass_immediate_g() == (pytest.approx(50.0013), True)
    res.assert_done()


def test_zero_and_tare() -> None:
    bal, res = scripted((b"Z\r\n", b"Z A\r\n"), (b"T\r\n", b"T S    50.0000 g\r\n"))
    bal.zero()
    assert bal.tare() == pytest.approx(50.0)
    res.assert_done()


def test_identify_from_I2_I4_I3() -> None:
    bal, res = scripted(
        (b"I2\r\n", b'I2 A "XS205DU 220.0000 g"\r\n'),
        (b"I4\r\n", b'I4 A "B123456789"\r\n'),
        (b"I3\r\n", b'I3 A "3.10 10.28.0.493.142"\r\n'),
    )
    ident = bal.identify()
    assert (ident.model, ident.serial, ident.firmware) == ("XS205DU", "B123456789", "3.10 10.28.0.493.142")
    res.assert_done()


def test_serial_number() -> None:
    bal, res = scripted((b"I4\r\n", b'I4 A "0123456789"\r\n'))
    assert bal.serial_number() == "0123456789"
    res.assert_done()


@pytest.mark.parametrize(
    ("cmd", "reply", "error", "words"),
    [
        ("read_mass_g", b"S I\r\n", BalanceUnstable, "stable"),
        ("read_mass_g", b"S +\r\n", BalanceOverload, "overload"),
        ("read_mass_g", b"S -\r\n", BalanceUnderload, "underload"),
        ("read_mass_immediate_g", b"S I\r\n", InstrumentReportedError, "busy"),
        ("read_mass_immediate_g", b"S +\r\n", BalanceOverload, "overload"),
        ("zero", b"Z I\r\n", BalanceUnstable, "stable"),
        ("zero", b"Z +\r\n", InstrumentReportedError, "zero-setting range"),
        ("zero", b"Z -\r\n", InstrumentReportedError, "zero-setting range"),
        ("tare", b"T I\r\n", BalanceUnstable, "stable"),
        ("tare", b"T +\r\n", BalanceOverload, "taring range"),
        ("tare", b"T -\r\n", InstrumentReportedError, "taring range"),
        ("serial_number", b"I4 I\r\n", InstrumentReportedError, "busy"),
    ],
)
def test_status_replies_raise_distinct_errors(cmd: str, reply: bytes, error: type, words: str) -> None:
    wire = {"read_mass_g": b"S", "read_mass_immediate_g": b"SI", "zero": b"Z", "tare": b"T",
            "serial_number": b"I4"}[cmd]
    bal, res = scripted((wire + b"\r\n", reply))
    with pytest.raises(error, match=words) as info:
        getattr(bal, cmd)()
    assert info.value.instrument == "balance"
    assert info.value.command == wire.decode()
    res.assert_done()


def test_unstable_and_overload_are_instrument_reported_errors() -> None:
    assert issubclass(BalanceUnstable, InstrumentReportedError)
    assert issubclass(BalanceOverload, InstrumentReportedError)


@pytest.mark.parametrize(
    ("reply", "words"), [(b"ES\r\n", "syntax"), (b"ET\r\n", "transmission"), (b"EL\r\n", "logical")]
)
def test_general_errors_name_the_command(reply: bytes, words: str) -> None:
    bal, res = scripted((b"T\r\n", reply))
    with pytest.raises(InstrumentReportedError, match=words) as info:
        bal.tare()
    assert type(info.value) is InstrumentReportedError
    assert "balance ('T')" in str(info.value)
    res.assert_done()


@pytest.mark.parametrize(
    "reply",
    [
        b"\x15#~garbage~#\r\n",
        b"Z A\r\n",  # answer to another command
        b"S S\r\n",  # stable but no weight
        b"S S   1O0.0000 g\r\n",  # letter O in the number
        b"S X   100.0000 g\r\n",  # unknown status
        b"S S   100.0000 lb\r\n",  # unit the driver does not convert
        b"S S   100.0000 g extra\r\n",
    ],
)
def test_garbage_is_malformed_reply(reply: bytes) -> None:
    bal, res = scripted((b"S\r\n", reply))
    with pytest.raises(MalformedReply) as info:
        bal.read_mass_g()
    assert info.value.command == "S"
    res.assert_done()


def test_garbled_query_is_retried_but_command_is_sent_once() -> None:
    bal, res = scripted(
        (b"SI\r\n", b"#!\r\n"), (b"SI\r\n", None), (b"SI\r\n", b"S S     1.0000 g\r\n"), retries=2
    )
    assert bal.read_mass_immediate_g() == (1.0, True)
    res.assert_done()
    bal, res = scripted((b"T\r\n", b"#!\r\n"), retries=2)
    with pytest.raises(MalformedReply):
        bal.tare()
    res.assert_done()  # exactly one T on the wire


def test_timeout_names_instrument_and_command() -> None:
    bal, res = scripted((b"S\r\n", None))
    with pytest.raises(InstrumentTimeout, match=r"balance \('S'\): no reply"):
        bal.read_mass_g()


def test_safe_state_reads_back_and_reports_overload_without_raising() -> None:
    bal, res = scripted((b"SI\r\n", b"S S    50.0000 g\r\n"), (b"SI\r\n", b"S +\r\n"))
    assert bal.safe_state() == {"responding": True, "mass_g": 50.0, "stable": True, "out_of_range": None}
    state = bal.safe_state()
    assert state["responding"] and state["mass_g"] is None and "overload" in state["out_of_range"]
    res.assert_done()


# -- emulator replies --------------------------------------------------------------------------


@pytest.fixture()
def world() -> SimWorld:
    w = SimWorld(virtual=True, seed=3)
    w.advance(30.0)  # the cell has settled on the 50 g vessel
    return w


def set_model(world: SimWorld, **values: float) -> None:
    with world.locked() as model:
        for key, value in values.items():
            setattr(model, key, value)


def test_weight_field_is_ten_characters_right_aligned() -> None:
    assert format_weight_line("S", "S", 100.0, 2) == b"S S     100.00 g\r\n"  # the manual's example
    assert format_weight_line("S", "D", -0.00001, 4) == b"S D     0.0000 g\r\n"  # never "-0.0000"
    assert format_weight_line("T", "S", -12.3456, 4) == b"T S   -12.3456 g\r\n"


def test_emulator_answers_level_0_and_1_commands(world: SimWorld) -> None:
    emu = MTSicsEmulator("balance", world, serial="B123456789")
    assert emu.handle(b"S") == b"S S    50.0000 g\r\n"
    assert emu.handle(b"SI") == b"S S    50.0000 g\r\n"
    assert emu.handle(b"I2") == b'I2 A "XS205DU 220.0000 g"\r\n'
    assert emu.handle(b"I3") == b'I3 A "3.10 10.28.0.493.142"\r\n'
    assert emu.handle(b"I4") == b'I4 A "B123456789"\r\n'
    assert emu.handle(b"T") == b"T S    50.0000 g\r\n"
    assert emu.handle(b"S") == b"S S     0.0000 g\r\n"
    assert emu.state()["tare_g"] == pytest.approx(50.0)
    assert emu.handle(b"@") == b'I4 A "B123456789"\r\n'  # reset clears the tare
    assert emu.state()["tare_g"] == 0.0


def test_emulator_general_errors(world: SimWorld) -> None:
    emu = MTSicsEmulator("balance", world)
    assert emu.handle(b"X") == b"ES\r\n"
    assert emu.handle(b"s") == b"ES\r\n"  # commands are upper case only
    assert emu.handle(b"") == b"ES\r\n"
    assert emu.handle(b"S\x00") == b"ET\r\n"
    assert emu.handle(b"SI 5") == b"EL\r\n"


def test_emulator_unstable_after_a_change_then_stable(world: SimWorld) -> None:
    emu = MTSicsEmulator("balance", world)
    set_model(world, vessel_g=50.5)
    assert emu.handle(b"S") == b"S I\r\n"  # answers at once in virtual time, never blocks
    assert emu.handle(b"SI").startswith(b"S D ")
    assert emu.handle(b"T") == b"T I\r\n"
    world.advance(20.0)
    assert emu.handle(b"S") == b"S S    50.5000 g\r\n"


def test_emulator_zero_only_within_zero_range(world: SimWorld) -> None:
    emu = MTSicsEmulator("balance", world)
    assert emu.handle(b"Z") == b"Z +\r\n"  # 50 g vessel is far outside 2 % of 220 g
    set_model(world, vessel_g=1.0)
    world.advance(30.0)
    assert emu.handle(b"Z") == b"Z A\r\n"
    assert emu.handle(b"S") == b"S S     0.0000 g\r\n"


def test_emulator_overload_and_underload(world: SimWorld) -> None:
    emu = MTSicsEmulator("balance", world)
    set_model(world, vessel_g=300.0)
    world.advance(30.0)
    replies = [emu.handle(c) for c in (b"S", b"SI", b"T", b"Z")]
    assert replies == [b"S +\r\n", b"S +\r\n", b"T +\r\n", b"Z +\r\n"]
    assert emu.state()["out_of_range"] == "+"
    set_model(world, vessel_g=-5.0)  # weighing pan removed
    world.advance(30.0)
    assert emu.handle(b"S") == b"S -\r\n"


def test_emulator_real_time_S_waits_briefly_for_stability() -> None:
    real = SimWorld(virtual=False)
    emu = MTSicsEmulator("balance", real, options={"stability_wait_s": 0.05})
    set_model(real, vessel_g=80.0)
    assert emu.handle(b"S") == b"S I\r\n"  # 30 g step, tau 1.5 s: not settled within 50 ms


def test_emulator_real_time_S_returns_once_settled() -> None:
    real = SimWorld(virtual=False)
    emu = MTSicsEmulator("balance", real, options={"stability_wait_s": 3.0})
    set_model(real, vessel_g=50.0003)  # a drop: settles within 2 digits after ~0.6 s
    assert emu.handle(b"SI").startswith(b"S D ")
    assert emu.handle(b"S").startswith(b"S S ")


_LINE = re.compile(rb"^(ES|ET|EL|[A-Z0-9]+ [ASDI+\-]( [ -~]+)?)\r\n$")


@settings(max_examples=300, deadline=None)
@given(
    request=st.one_of(
        st.binary(max_size=24),
        st.sampled_from([b"S", b"SI", b"Z", b"T", b"I2", b"I3", b"I4", b"@"]).flatmap(
            lambda c: st.binary(max_size=4).map(lambda tail: c + tail)
        ),
    ),
    vessel_g=st.floats(min_value=-10.0, max_value=400.0),
)
def test_emulator_never_crashes_and_answers_one_valid_line(request: bytes, vessel_g: float) -> None:
    world = SimWorld(virtual=True)
    set_model(world, vessel_g=vessel_g)
    world.advance(1.0)
    reply = MTSicsEmulator("balance", world).handle(request)
    assert reply is not None and _LINE.match(reply), reply
    assert reply.count(b"\r\n") == 1


# -- end to end: driver -> pyvisa -> pseudo-terminal -> emulator -> model -------------------------


@pytest.fixture()
def bench(world: SimWorld) -> Iterator[tuple[SimWorld, MTSicsBalance]]:
    port = PtyPort(MTSicsEmulator("balance", world, serial="B987654321")).start()
    balance = MTSicsBalance("balance", port.resource, timeout_ms=200, retries=1)
    try:
        yield world, balance
    finally:
        balance.close()
        port.close()


def test_e2e_identify_and_mass_increases_as_the_pump_delivers(
    bench: tuple[SimWorld, MTSicsBalance],
) -> None:
    world, balance = bench
    assert balance.identify().serial == "B987654321"
    assert balance.tare() == pytest.approx(50.0, abs=2e-4)
    start_g = balance.read_mass_g()
    assert start_g == pytest.approx(0.0, abs=2e-4)
    with world.locked() as model:
        model.pump.rate_ml_h, model.pump.running = 6.0, True
    world.advance(600.0)
    during_g, _ = balance.read_mass_immediate_g()
    with world.locked() as model:
        model.pump.running = False
    world.advance(60.0)
    final_g = balance.read_mass_g()
    delivered_g = world.snapshot()["totals"]["delivered_ml"] * 0.998
    assert 0.9 < during_g < final_g  # ~1 mL in 10 min at 6 mL/h
    assert final_g == pytest.approx(delivered_g, abs=5e-4)  # minus evaporation, within digits


def test_e2e_unstable_right_after_a_change_then_stable(bench: tuple[SimWorld, MTSicsBalance]) -> None:
    world, balance = bench
    set_model(world, vessel_g=50.25)
    with pytest.raises(BalanceUnstable, match=r"balance \('S'\)"):
        balance.read_mass_g()
    assert balance.read_mass_immediate_g()[1] is False
    world.advance(20.0)
    assert balance.read_mass_g() == pytest.approx(50.25, abs=2e-4)


def test_e2e_zero_and_tare(bench: tuple[SimWorld, MTSicsBalance]) -> None:
    world, balance = bench
    with pytest.raises(InstrumentReportedError, match="zero-setting range"):
        balance.zero()
    set_model(world, vessel_g=0.5)
    world.advance(30.0)
    balance.zero()
    assert balance.read_mass_g() == pytest.approx(0.0, abs=2e-4)
    set_model(world, vessel_g=20.0)
    world.advance(30.0)
    assert balance.tare() == pytest.approx(19.5, abs=2e-4)  # gross above the zero point
    assert balance.read_mass_g() == pytest.approx(0.0, abs=2e-4)


def test_e2e_overload(bench: tuple[SimWorld, MTSicsBalance]) -> None:
    world, balance = bench
    set_model(world, vessel_g=250.0)
    world.advance(30.0)
    with pytest.raises(BalanceOverload):
        balance.read_mass_g()
    assert balance.safe_state()["out_of_range"]


@pytest.mark.parametrize(
    ("fault", "error", "words"),
    [
        ("silent", InstrumentTimeout, "no reply"),
        ("garbage", MalformedReply, "not an MT-SICS reply"),
        ("drop", InstrumentDisconnected, "connection lost"),
    ],
)
def test_e2e_transport_faults(
    bench: tuple[SimWorld, MTSicsBalance], fault: str, error: type, words: str
) -> None:
    world, balance = bench
    assert balance.safe_state()["responding"]
    world.set_fault("balance", fault)
    with pytest.raises(error, match=words) as info:
        balance.read_mass_g()
    assert (info.value.instrument, info.value.command) == ("balance", "S")


# -- level 0 and 1 in full (the bytes of the MT-SICS reference manual's command pages) ----------


def test_emulator_lists_every_level_0_and_1_command_with_i0_and_i1(world: SimWorld) -> None:
    emu = MTSicsEmulator("balance", world)
    lines = emu.handle(b"I0").decode().split("\r\n")[:-1]
    assert lines[0] == 'I0 B 0 "@"' and lines[-1] == 'I0 A 1 "TI"'
    assert [line.split('"')[1] for line in lines] == [
        "@", "I0", "I1", "I2", "I3", "I4", "S", "SI", "SIR", "Z", "ZI", "D", "DW", "K", "SR", "T", "TA", "TAC", "TI"]
    assert all(line.startswith("I0 B ") for line in lines[:-1])
    assert emu.handle(b"I1") == b'I1 A "01" "2.20" "2.20" "" ""\r\n'


def test_emulator_zero_and_tare_immediately_and_tare_value(world: SimWorld) -> None:
    emu = MTSicsEmulator("balance", world)
    assert emu.handle(b"ZI") == b"ZI +\r\n"  # 50 g vessel: outside the zero-setting range
    assert emu.handle(b"TI") == b"TI S    50.0000 g\r\n"
    assert emu.handle(b"TA") == b"TA A    50.0000 g\r\n"
    assert emu.handle(b"TAC") == b"TAC A\r\n" and emu.handle(b"TA") == b"TA A     0.0000 g\r\n"
    assert emu.handle(b"TA 12.5 g") == b"TA A    12.5000 g\r\n"
    assert emu.handle(b"S") == b"S S    37.5000 g\r\n"
    assert emu.handle(b"TA 300 g") == b"TA L\r\n" and emu.handle(b"TA x") == b"TA L\r\n"
    set_model(world, vessel_g=50.5)
    assert emu.handle(b"TI").startswith(b"TI D ")  # tares the moving value, says it was dynamic
    set_model(world, vessel_g=0.5)
    world.advance(30.0)
    assert emu.handle(b"ZI") == b"ZI S\r\n" and emu.handle(b"SI") == b"S S     0.0000 g\r\n"
    set_model(world, vessel_g=300.0)
    world.advance(30.0)
    assert emu.handle(b"TI") == b"TI +\r\n" and emu.handle(b"ZI") == b"ZI +\r\n"


def test_emulator_display_and_keys(world: SimWorld) -> None:
    emu = MTSicsEmulator("balance", world)
    assert emu.handle(b'D "RIG RUNNING"') == b"D A\r\n" and emu.state()["display_text"] == "RIG RUNNING"
    assert emu.handle(b'D "' + b"X" * 21 + b'"') == b"D L\r\n"
    assert emu.handle(b"D") == b"EL\r\n"
    assert emu.handle(b"DW") == b"DW A\r\n" and emu.state()["display_text"] is None
    assert emu.handle(b"K 3") == b"K A\r\n" and emu.state()["keys_mode"] == 3
    assert emu.handle(b"K 9") == b"K L\r\n"
    assert emu.handle(b"@").startswith(b"I4 A ") and emu.state()["keys_mode"] == 1


def test_emulator_repeat_commands_send_until_stopped(world: SimWorld) -> None:
    emu = MTSicsEmulator("balance", world)
    assert emu.handle(b"SIR") == b"S S    50.0000 g\r\n"
    assert emu.poll() == b"S S    50.0000 g\r\n" and emu.state()["repeating"] == "SIR"
    assert emu.handle(b"SI") == b"S S    50.0000 g\r\n" and emu.poll() is None  # SI ends it
    assert emu.handle(b"SR 1 g") == b"S S    50.0000 g\r\n"
    assert emu.poll() is None  # no change yet
    set_model(world, vessel_g=52.0)
    world.advance(1.5)  # the reading has moved > 1 g and is still settling
    assert emu.poll().startswith(b"S D ")  # moved by more than 1 g: the dynamic value, once
    assert emu.poll() is None
    world.advance(30.0)
    assert emu.poll() == b"S S    52.0000 g\r\n"  # then the next stable value
    assert emu.handle(b"SR 0 g") == b"SR L\r\n"
    assert emu.handle(b"@").startswith(b"I4") and emu.poll() is None
