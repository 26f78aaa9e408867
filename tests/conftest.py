"""Shared pytest fixtures: station files and the simulated bench.

Fixtures (function-scoped unless noted; everything started is stopped at teardown):

``station_file``  factory -> Path. Writes a copy of the shipped ``rig.toml`` into ``tmp_path`` with
                  overrides, so tests run against the real station schema and never edit the repo:

                      station_file()                                  # the shipped station as is
                      station_file(clock="real")                      # real time instead of virtual
                      station_file(without=("dmm", "daq"))            # drop instruments (cheaper)
                      station_file(pump="peristaltic")                # Reglo ICC instead of NE-1000
                      station_file(set={"sim.seed": 3, "instruments.pump.options.address": 7})
                      station_file(set={"instruments.pump.serial": None})  # None deletes a key
                      station_file(name="other.toml")                 # several files in one test

                  ``runs_dir`` stays relative, so run records land next to the file (in tmp_path).
``station_writer`` session-scoped: the writer behind ``station_file`` as
                  ``write_station(directory, **overrides)``, for module-scoped fixtures.
``sim_station``   Path of the station the two fixtures below serve. Default: ``station_file()``.
                  Override it in a test module (define a fixture of the same name) or per test
                  with ``@pytest.mark.parametrize("sim_station", [...], indirect=True)`` where
                  each param is a dict of ``station_file`` keyword arguments.
``sim_server``    an in-process, started ``instruments.sim.server.SimServer`` for ``sim_station``;
                  stopped at teardown. Cheapest way to get real ptys/sockets and a control channel.
``station_lock_dir`` autouse: a private $RIG_LOCK_DIR per test (station locks, rig.station.lock).
``rig_cli``       the real `rig` process, failing the test on any traceback (tests/cli.py).
``sim_process``   ``rig sim serve`` for ``sim_station`` as a child process
                  (``instruments.sim.launcher.start_sim``); stopped (SIGTERM) at teardown. Use it
                  when the test is about process behaviour or the exact production path.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The DAQ tests' fixtures (world -> server -> daq); module-level fixtures of the same name win.
pytest_plugins = ("tests.daq_fixtures",)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _forget_taken_secrets() -> Iterator[None]:
    """A passphrase taken from the environment is kept for the process (rig.secret_env); tests
    share one process, so each starts without the values earlier tests took."""
    from rig import secret_env

    secret_env.forget()
    yield
    secret_env.forget()
SHIPPED_STATION = REPO / "rig.toml"

PERISTALTIC_PUMP: dict[str, Any] = {
    "kind": "peristaltic_pump",
    "driver": "reglo_icc",
    "resource": "sim",
    "serial": "REGLO-SIM-0001",
    "calibration_due": dt.date(2027, 6, 30),
    "timeout_ms": 1000,
    "options": {"address": 1, "tubing_inner_diameter_mm": 0.25},
}


# -- a minimal TOML writer (tomllib only reads); enough for station files -------------------------


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML: {value!r}")


def dump_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Scalars first, then one [table] per nested dict (TOML requires that order)."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, value in data.items():
        if isinstance(value, dict):
            name = f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key)
            out += f"\n[{name}]\n" + dump_toml(value, name)
    return out


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value


StationFactory = Callable[..., Path]


def write_station(
    directory: Path,
    *,
    clock: str | None = None,
    without: Iterable[str] = (),
    pump: str | None = None,
    set: dict[str, Any] | None = None,  # noqa: A002 - reads naturally at the call site
    name: str = "rig.toml",
) -> Path:
    """Copy the shipped station into ``directory`` with overrides (see the module docstring)."""
    data = tomllib.loads(SHIPPED_STATION.read_text(encoding="utf-8"))
    if clock is not None:
        data["station"]["clock"] = clock
    for instrument in without:
        if instrument not in data["instruments"]:
            raise KeyError(f"the shipped station has no instrument {instrument!r}")
        del data["instruments"][instrument]
    if pump == "peristaltic":
        data["instruments"]["pump"] = copy.deepcopy(PERISTALTIC_PUMP)
    elif pump not in (None, "syringe"):
        raise ValueError(f"pump must be 'syringe' or 'peristaltic', got {pump!r}")
    for dotted, value in (set or {}).items():
        _set_dotted(data, dotted, value)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(dump_toml(data), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def station_lock_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own station lock directory ($RIG_LOCK_DIR, inherited by `rig` children):
    tests on parallel workers all use station id "sim-01" and must not refuse each other."""
    path = tmp_path_factory.mktemp("locks")
    monkeypatch.setenv("RIG_LOCK_DIR", str(path))
    return path


@pytest.fixture
def rig_cli() -> Callable[..., Any]:
    """``rig_cli(*args, env=..., cwd=...)``: the real `rig` process (tests/cli.py ``run_rig``);
    fails the test when it prints a traceback."""
    from tests.cli import run_rig

    return run_rig


@pytest.fixture(scope="session")
def station_writer() -> Callable[..., Path]:
    """``write_station(directory, **overrides)`` for module- or session-scoped fixtures."""
    return write_station


@pytest.fixture
def station_file(tmp_path: Path) -> StationFactory:
    return functools.partial(write_station, tmp_path)


@pytest.fixture
def sim_station(request: pytest.FixtureRequest, station_file: StationFactory) -> Path:
    overrides = getattr(request, "param", None) or {}
    return station_file(**overrides)


@pytest.fixture
def sim_server(sim_station: Path) -> Iterator[Any]:
    from instruments.sim.server import SimServer
    from rig.station.config import load_station

    server = SimServer(load_station(sim_station)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sim_process(sim_station: Path) -> Iterator[Any]:
    from instruments.sim.launcher import start_sim

    sim = start_sim(sim_station, timeout_s=60)
    try:
        yield sim
    finally:
        sim.stop()
