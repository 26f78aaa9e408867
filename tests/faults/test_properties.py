"""Property-based tests (hypothesis) for the parsers and the protocol emulators.

Parsers: whatever the input, the result is either a valid value or the project's own one-message
error (UsageError / ConfigError / CanonicalJSONError) — never another exception, which the CLI
would show as a traceback. Emulators: arbitrary bytes on the wire never crash an emulator, and
every reply it sends is protocol-valid (framing of that instrument) or it stays silent; the bytes
go through the transports' real request framing (``_RequestLoop``), as on a pty or socket.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import math
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import dump_toml, write_station
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instruments.sim.mt_sics_emulator import MTSicsEmulator
from instruments.sim.ne1000_emulator import NE1000Emulator
from instruments.sim.reglo_icc_emulator import RegloICCEmulator
from instruments.sim.scpi_dmm_emulator import ScpiDmmEmulator
from instruments.sim.transports import _RequestLoop
from instruments.sim.world import SimWorld
from reports.canonical import CanonicalJSONError, canonical_json, load_json_bytes
from reports.synthetic import write_record
from rig.engine.params import parse_value
from rig.engine.procedure import Parameter
from rig.errors import ConfigError, UsageError
from rig.record import read_record
from rig.station.config import load_station

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SCRATCH = Path(tempfile.mkdtemp(prefix="faults-props-"))  # hypothesis reuses it across examples
atexit.register(shutil.rmtree, SCRATCH, True)


# -- parameters ---------------------------------------------------------------------------------

RATE = Parameter("rate_ml_h", "mL/h", 1.0, low=0.05, high=10.0)
COUNT = Parameter("repeats", "", 3, low=1, high=100, integer=True)


@FAST
@given(text=st.text(max_size=40) | st.from_regex(r"[-+]?\d{0,6}(\.\d{0,6})?([eE][-+]?\d{1,4})? ?(mL/h|ml/H|uL)?",
                                                  fullmatch=True))
def test_parameter_values_parse_into_range_or_name_the_parameter(text: str) -> None:
    for param in (RATE, COUNT):
        try:
            value = parse_value(param, text)
        except UsageError as exc:
            assert str(exc).startswith(f"parameter {param.name}: ") and "\n" not in str(exc)
            continue
        assert math.isfinite(value) and param.low <= value <= param.high
        assert isinstance(value, int) if param.integer else isinstance(value, float)


# -- station loader -----------------------------------------------------------------------------

SCALARS = (st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=True)
           | st.text(max_size=20) | st.dates(min_value=_dt.date(1, 1, 1)))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) |
                      st.dictionaries(st.text("abcdefgh_", min_size=1, max_size=8), inner, max_size=3), max_leaves=6)
KEYS = st.sampled_from([
    "station.id", "station.clock", "station.mode", "station.runs_dir", "sim.seed", "fluid.density_g_ml",
    "safety.max_line_pressure_kpa", "instruments.pump.timeout_ms", "instruments.pump.options.address",
    "instruments.pump.resource", "instruments.balance.calibration_due", "instruments.daq.options.channels",
    "instruments.daq.options.sample_rate_hz", "instruments.dmm", "instruments.extra", "detection",
])


@FAST
@given(key=KEYS, value=VALUES)
def test_station_loader_accepts_or_lists_problems(key: str, value: Any) -> None:
    try:
        path = write_station(SCRATCH, set={key: value}, name="prop.toml")
    except (TypeError, ValueError):  # the test's TOML writer cannot express this value (None, nan)
        return
    try:
        load_station(path)
    except ConfigError as exc:  # "<file> is invalid (n problem(s)):" + one line per problem
        assert exc.problems and all(p.strip() and "\n" not in p for p in exc.problems), exc.problems
        assert str(exc).splitlines()[0].endswith(f"is invalid ({len(exc.problems)} problem(s)):")
        assert str(exc).splitlines()[1:] == [f"  - {p}" for p in exc.problems]


@FAST
@given(data=st.binary(max_size=300))
def test_station_loader_survives_arbitrary_bytes(data: bytes) -> None:
    path = SCRATCH / "bytes.toml"
    path.write_bytes(data)
    with pytest.raises(UsageError):
        load_station(path)


# -- record reader --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def passing_record_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    run = write_record(tmp_path_factory.mktemp("rec") / "r", "PASS", duration_s=60.0)
    return (run / "record.jsonl").read_bytes()


@FAST
@given(fraction=st.floats(0.0, 1.0, exclude_max=True))
def test_a_torn_record_is_never_a_pass(passing_record_bytes: bytes, fraction: float) -> None:
    """Cut a PASS record at any byte (a crash mid-write): it reads as INCOMPLETE or is refused."""
    cut = int(len(passing_record_bytes) * fraction)
    path = SCRATCH / "torn.jsonl"
    path.write_bytes(passing_record_bytes[:cut])
    try:
        record = read_record(path)
    except UsageError:
        return
    last_line_complete = passing_record_bytes[:cut].endswith(b"}")  # the run_finished line is last
    assert record.outcome != "PASS" or (cut >= len(passing_record_bytes) - 1 and last_line_complete)


@FAST
@given(data=st.binary(max_size=400) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_record_reader_survives_arbitrary_bytes(data: bytes) -> None:
    path = SCRATCH / "noise.jsonl"
    path.write_bytes(data)
    try:
        record = read_record(path)
    except UsageError:
        return
    assert record.events[0]["type"] == "run_started"


# -- canonical JSON -------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def same_json(loaded: Any, value: Any) -> bool:
    """Equal as JSON numbers: canonical JSON writes a float like 6.496096499394753e16 as the
    integer literal 64960964993947530 (RFC 8785 / ECMAScript form), which denotes the same double."""
    if isinstance(value, float) and isinstance(loaded, int) and not isinstance(loaded, bool):
        return float(loaded) == value
    if isinstance(value, list) and isinstance(loaded, list):
        return len(value) == len(loaded) and all(same_json(a, b) for a, b in zip(loaded, value))
    if isinstance(value, dict) and isinstance(loaded, dict):
        return value.keys() == loaded.keys() and all(same_json(loaded[k], value[k]) for k in value)
    return type(loaded) is type(value) and loaded == value or (isinstance(value, float) and loaded == value)


@FAST
@given(value=JSON)
def test_canonical_json_round_trips_and_is_a_fixed_point(value: Any) -> None:
    data = canonical_json(value)
    assert same_json(load_json_bytes(data, "value"), value)
    assert canonical_json(load_json_bytes(data, "value")) == data


@FAST
@given(value=JSON, bad=st.sampled_from([math.nan, math.inf, -math.inf]))
def test_canonical_json_refuses_non_finite_numbers_naming_the_field(value: Any, bad: float) -> None:
    with pytest.raises(CanonicalJSONError, match=r"\$\.x"):
        canonical_json({"x": bad, "y": value})


# -- protocol emulators -----------------------------------------------------------------------------

# Reply framing of each instrument (one complete reply).
NE1000_REPLY = re.compile(rb"\x02\d\d[IWSPTUXA][^\x02\x03]*\x03", re.S)
REGLO_REPLY = re.compile(rb"[*#+\-]|[^\r\n]*\r\n")
LINE_CRLF = re.compile(rb"(?:[^\r\n]*\r\n)+")
LINE_LF = re.compile(rb"[^\n]*\n")

EMULATORS = [
    (NE1000Emulator, {"address": 0, "syringe_diameter_mm": 14.43}, NE1000_REPLY),
    (RegloICCEmulator, {"address": 1, "tubing_inner_diameter_mm": 0.25}, REGLO_REPLY),
    (MTSicsEmulator, {}, LINE_CRLF),
    (ScpiDmmEmulator, {}, LINE_LF),
]
# Requests that look like the protocol, so the fuzzing reaches the command handlers, not only the
# "unknown command" path: a valid command word with arbitrary arguments and bytes around it.
WORDS = [b"RAT", b"VOL", b"DIA", b"DIR", b"RUN", b"STP", b"DIS", b"CLD", b"VER", b"*", b"1H", b"1I", b"1f", b"1@",
         b"S", b"SI", b"Z", b"T", b"I4", b"*IDN?", b"MEAS:VOLT:DC?", b"CONF:VOLT:DC", b"SYST:ERR?", b"0", b"00"]
REQUEST = st.builds(lambda pre, word, arg, post: pre + word + arg + post, st.binary(max_size=3),
                    st.sampled_from(WORDS), st.binary(max_size=12), st.binary(max_size=3))
TERMINATORS = st.sampled_from([b"\r", b"\n", b"\r\n", b""])


@pytest.mark.parametrize(("cls", "options", "reply"), EMULATORS, ids=lambda v: getattr(v, "__name__", None))
@FAST
@given(chunks=st.lists(st.tuples(REQUEST | st.binary(max_size=20), TERMINATORS), min_size=1, max_size=8))
def test_emulator_never_crashes_and_replies_in_frame(cls: type, options: dict[str, Any], reply: re.Pattern[bytes],
                                                     chunks: list[tuple[bytes, bytes]]) -> None:
    world = SimWorld(virtual=True)
    emulator = cls("dut", world, serial="SIM0001", options=options)
    loop = _RequestLoop(emulator)
    sent: list[bytes] = []
    for request, terminator in chunks:
        assert loop.feed(request + terminator, sent.append)
        world.advance(0.5)
    for message in sent:
        assert reply.fullmatch(message), (cls.__name__, message)
    emulator.state()  # and it can still report its state


def test_the_toml_writer_used_above_is_the_shared_one() -> None:
    """The station property test relies on tests/conftest.dump_toml: it must round-trip a table."""
    import tomllib

    table = {"a": 1, "b": {"c": "x", "d": [1.5, 2]}}
    assert tomllib.loads(dump_toml(table)) == table
