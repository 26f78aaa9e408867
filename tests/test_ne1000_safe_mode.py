"""NE-1000 Safe mode: packets pinned to the manual's bytes, Basic/Safe switching, the comms watchdog.

Driver and emulator each have their own CRC (stdlib ``binascii.crc_hqx`` / a bitwise loop); both are
pinned here to the packet the manual prints (10.2.2: ``(0x2) (0x8) SAF0 (0x55) (0x43) (0x3)``) and
to hand-computed CRCs, never to each other.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import serial

from instruments.errors import InstrumentTimeout, MalformedReply
from instruments.ne1000 import NE1000, decode_safe_packet, encode_safe_packet
from instruments.pump import PumpAlarm
from instruments.sim import ne1000_emulator
from instruments.sim.ne1000_emulator import NE1000Emulator, crc16_ccitt, safe_packet
from instruments.sim.transports import PtyPort
from instruments.sim.world import SimWorld
from instruments.testing import ScriptedResource

MANUAL_SAF0 = bytes([0x02, 0x08]) + b"SAF0" + bytes([0x55, 0x43, 0x03])  # manual 10.2.2, verbatim


def packet(data: bytes, crc: int) -> bytes:
    """A Safe packet built by hand: STX, length (4 + data), data, CRC high/low, ETX."""
    return bytes([0x02, len(data) + 4]) + data + bytes([crc >> 8, crc & 0xFF, 0x03])


# Hand-checked CRC-16/CCITT (poly 0x1021, init 0) values: a single byte's CRC is its entry in the
# standard table (0x30 -> 0x3653); the empty message is 0; "SAF0" is the manual's 0x5543.
HAND_CRCS = [(b"", 0x0000), (b"0", 0x3653), (b"SAF0", 0x5543)]


@pytest.mark.parametrize(("data", "crc"), HAND_CRCS)
def test_both_crcs_match_hand_computed_values(data: bytes, crc: int) -> None:
    assert crc16_ccitt(data) == crc
    assert encode_safe_packet(data.decode()) == packet(data, crc)
    assert safe_packet(data) == packet(data, crc)


def test_the_manuals_packet_is_what_both_sides_build_and_accept() -> None:
    assert encode_safe_packet("SAF0") == MANUAL_SAF0
    assert safe_packet(b"SAF0") == MANUAL_SAF0
    assert decode_safe_packet(MANUAL_SAF0) == "SAF0"


@pytest.mark.parametrize(
    "bad",
    [MANUAL_SAF0[:-1] + b"\x04", MANUAL_SAF0[:6] + b"\x00" + MANUAL_SAF0[7:],
     MANUAL_SAF0[:1] + b"\x09" + MANUAL_SAF0[2:], b"\x02\x04\x00"],
    ids=["no-etx", "bad-crc", "bad-length", "short"],
)
def test_driver_rejects_a_damaged_packet(bad: bytes) -> None:
    with pytest.raises(ValueError):
        decode_safe_packet(bad)


# -- the emulator, fed bytes ------------------------------------------------------------------


@pytest.fixture
def world() -> SimWorld:
    return SimWorld(virtual=True)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(ne1000_emulator, "time", fake)
    return fake


def feed(emulator: NE1000Emulator, data: bytes) -> list[bytes]:
    """Frame ``data`` as the transport does and collect the replies."""
    replies, buffer = [], data
    while True:
        request, buffer = emulator.next_request(buffer)
        if request is None:
            return replies
        reply = emulator.handle(request)
        if reply:
            replies.append(reply)


def test_basic_saf_switches_to_safe_mode_and_the_manuals_saf0_switches_back(world: SimWorld) -> None:
    pump = NE1000Emulator("pump", world)
    assert feed(pump, b"SAF5\r") == [b"\x0200S\x03"]  # answered in Basic framing ...
    assert pump.state()["comms_mode"] == "safe"  # ... then Safe mode
    assert feed(pump, b"VER\r") == []  # Basic text is not a packet: ignored
    assert feed(pump, packet(b"SAF", crc16_ccitt(b"SAF"))) == [safe_packet(b"00S5")]
    assert feed(pump, MANUAL_SAF0) == [safe_packet(b"00S")]  # answered in Safe framing ...
    assert pump.state()["comms_mode"] == "basic"  # ... then Basic mode
    assert feed(pump, b"SAF\r") == [b"\x0200S0\x03"]


def test_safe_mode_bad_packets_answer_com_and_split_packets_are_joined(world: SimWorld) -> None:
    pump = NE1000Emulator("pump", world, options={"safe_mode_timeout_s": 5})
    bad_crc = MANUAL_SAF0[:6] + b"\x00" + MANUAL_SAF0[7:]
    assert feed(pump, bad_crc) == [safe_packet(b"00S?COM")]
    assert pump.state()["comms_mode"] == "safe" and not pump.state()["watchdog_armed"]
    ver = encode_safe_packet("0VER")
    request, rest = pump.next_request(ver[:4])
    assert request is None and rest == ver[:4]  # incomplete: waits for the rest
    assert feed(pump, b"noise" + ver) == [safe_packet(b"00SNE1000V3.928")]


def test_powered_up_in_safe_mode_the_timer_starts_with_the_first_valid_packet(
    world: SimWorld, clock: FakeClock
) -> None:
    pump = NE1000Emulator("pump", world, options={"safe_mode_timeout_s": 2})
    clock.now += 100  # "Auto-Alarm only" mode until a valid packet arrives: no timeout
    assert pump.poll() is None and pump.state()["alarm"] is None
    feed(pump, encode_safe_packet("RAT1.0MH"))
    feed(pump, encode_safe_packet("RUN"))
    assert pump.state()["watchdog_armed"] and pump.state()["running"]
    clock.now += 1.9
    feed(pump, encode_safe_packet(""))  # a valid packet restarts the timer
    clock.now += 1.9
    assert pump.poll() is None and pump.state()["running"]
    clock.now += 0.2  # 2.1 s since the last valid packet
    assert pump.poll() == safe_packet(b"00A?T")  # stops, alarms, and says so unasked
    state = pump.state()
    assert state["running"] is False and state["alarm"] == "timeout" and not state["watchdog_armed"]
    assert pump.poll() is None  # sent once
    # The unasked message does not acknowledge; the next command's reply does (not executed).
    assert feed(pump, encode_safe_packet("RUN")) == [safe_packet(b"00A?T")]
    assert pump.state()["running"] is False
    assert feed(pump, encode_safe_packet("")) == [safe_packet(b"00S")]


def test_a_stall_in_safe_mode_is_sent_unasked(world: SimWorld) -> None:
    pump = NE1000Emulator("pump", world, options={"safe_mode_timeout_s": 30})
    feed(pump, encode_safe_packet("RAT1.0MH"))
    feed(pump, encode_safe_packet("RUN"))
    with world.locked() as model:
        model.pump.force_stall = True
    world.advance(1)
    assert pump.poll() == safe_packet(b"00A?S")


# -- the driver, replayed -----------------------------------------------------------------------


def ok(data: str = "", status: str = "S") -> bytes:
    return f"\x02{0:02d}{status}{data}\x03".encode()


def safe_ok(data: str = "", status: str = "S") -> bytes:
    return encode_safe_packet(f"00{status}{data}")


def test_driver_switches_to_safe_mode_before_the_first_start_and_back_on_close() -> None:
    script = [
        (b"0DIRINF\r", ok()), (b"0VOL0\r", ok()),
        (b"0SAF7\r", ok()),  # Basic: the switch
        (encode_safe_packet("0"), safe_ok()),  # the first valid packet arms the timer
        (encode_safe_packet("0RUN"), safe_ok(status="I")),
        (encode_safe_packet("0SAF"), safe_ok("7", status="I")),
        (encode_safe_packet("0SAF0"), safe_ok(status="I")),  # close: back to Basic
    ]
    res = ScriptedResource(script)
    pump = NE1000("pump", res, options={"comms_watchdog_s": 7})
    pump.start()
    assert pump.watchdog_state() == {"configured_s": 7, "mode": "safe", "pump_timeout_s": 7, "armed": True}
    pump.close()
    res.assert_done()


def test_driver_finds_a_pump_left_in_safe_mode() -> None:
    res = ScriptedResource([(b"0VER\r", None), (encode_safe_packet("0VER"), safe_ok("NE1000V3.928"))])
    pump = NE1000("pump", res, options={"comms_watchdog_s": 5})
    assert pump.identify().firmware == "3.928"
    assert pump._safe  # and it stays in Safe mode from now on


def test_driver_without_watchdog_never_probes() -> None:
    res = ScriptedResource([(b"0VER\r", None)] * 3)
    pump = NE1000("pump", res, options={"comms_watchdog_s": 0})
    with pytest.raises(InstrumentTimeout):
        pump.identify()
    res.assert_done()


def test_driver_retries_a_corrupted_safe_reply() -> None:
    corrupted = safe_ok("5")[:-3] + b"\x00\x00\x03"
    res = ScriptedResource([(encode_safe_packet("0SAF"), corrupted), (encode_safe_packet("0SAF"), safe_ok("5"))])
    pump = NE1000("pump", res, options={"comms_watchdog_s": 5})
    pump._safe = True
    assert pump.watchdog_state()["pump_timeout_s"] == 5
    res.assert_done()


@pytest.mark.parametrize("bad", [0.5, -1, 256, "5", True])
def test_watchdog_option_names_the_allowed_range(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"comms_watchdog_s must be an integer 0\.\.255 s"):
        NE1000("pump", ScriptedResource([]), options={"comms_watchdog_s": bad})


# -- end to end over a pseudo-terminal -------------------------------------------------------------


@pytest.fixture
def bench(world: SimWorld) -> Iterator[tuple[NE1000, NE1000Emulator, PtyPort]]:
    emulator = NE1000Emulator("pump", world)
    port = PtyPort(emulator).start()
    pump = NE1000("pump", port.resource, timeout_ms=500, options={"comms_watchdog_s": 1})
    try:
        yield pump, emulator, port
    finally:
        pump.close()
        port.close()


def wait_for(predicate: Any, limit_s: float = 10.0) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_e2e_keepalives_hold_the_watchdog_and_a_frozen_driver_trips_it(bench: Any) -> None:
    pump, emulator, _ = bench
    alarms: list[str] = []
    pump.add_alarm_listener(lambda alarm, detail: alarms.append(alarm))
    pump.set_rate_ml_h(1.0)
    pump.start()
    state = emulator.state()
    assert state["comms_mode"] == "safe" and state["safe_timeout_s"] == 1 and state["watchdog_armed"]
    time.sleep(2.5)  # 2.5 watchdog periods with nothing but keep-alives
    assert emulator.state()["running"] is True and emulator.state()["alarm"] is None
    pump._keepalive_stop.set()  # the controller freezes: nothing more on the line
    assert wait_for(lambda: emulator.state()["running"] is False)
    assert emulator.state()["alarm"] == "timeout"
    with pytest.raises(PumpAlarm) as info:
        pump.is_running()  # the unasked alarm is drained first, then the reply acknowledges it
    assert info.value.alarm == "timeout" and "timed out" in str(info.value)
    assert "timeout" in alarms and pump.alarm() == "timeout"
    assert pump.safe_state()["status"] == "S"
    pump.close()
    assert emulator.state()["comms_mode"] == "basic" and emulator.state()["alarm"] is None


def test_e2e_a_third_party_client_speaks_safe_mode_from_the_manual(bench: Any) -> None:
    _, emulator, port = bench
    with serial.Serial(port.path, 19200, timeout=2) as client:
        client.write(b"SAF30\r")
        assert client.read_until(b"\x03") == b"\x0200S\x03"
        client.write(encode_safe_packet("VER"))
        assert client.read(2) == b"\x02\x13" and client.read(0x13 - 1) == safe_packet(b"00SNE1000V3.928")[2:]
        client.write(MANUAL_SAF0)
        assert client.read(9) == packet(b"00S", 0xAAA6)
    assert emulator.state()["comms_mode"] == "basic"


def test_malformed_safe_reply_from_garbage_fault(bench: Any, world: SimWorld) -> None:
    pump, emulator, _ = bench
    pump._safe = emulator.safe_mode = True  # both in Safe mode (SAF 0: no watchdog)
    world.set_fault("pump", "garbage")
    with pytest.raises(MalformedReply):
        pump.watchdog_state()
    world.set_fault("pump", "none")
    pump._safe = False


def test_a_reopening_process_speaks_safe_mode_first_and_falls_back_to_basic() -> None:
    """The supervisor reopens a pump a run held: Safe mode first; a Basic-mode pump keeps the
    packet's bytes as a line, so the driver ends that line (answer dropped) and repeats in Basic."""
    pump = NE1000("pump", ScriptedResource([]), options={"comms_watchdog_s": 10})
    assert pump.reopen_options() == {"comms_watchdog_s": 10, "assume_safe_mode": True}
    res = ScriptedResource([(encode_safe_packet("0STP"), None), (b"\r", ok("?")), (b"0STP\r", ok()),
                            (b"0\r", ok())])
    reopened = NE1000("pump", res, options=pump.reopen_options())
    assert reopened.safe_state()["status"] == "S"
    res.assert_done()
    res = ScriptedResource([(encode_safe_packet("0STP"), safe_ok()), (encode_safe_packet("0"), safe_ok())])
    assert NE1000("pump", res, options=pump.reopen_options()).safe_state()["status"] == "S"
    res.assert_done()
