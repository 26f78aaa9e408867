"""rig.cli.early_bench: the simulated bench of `rig run` / `rig nightly` starts while the command
loads, the bench that opens is that one, and a bench nobody opens does not outlive the command."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from instruments.sim import launcher
from rig.cli.early_bench import start_bench_early
from rig.station.bench import Bench, early_children
from rig.station.config import load_station


@pytest.fixture(autouse=True)
def no_early_leftovers():
    yield
    launcher.stop_early()  # a failed test must not leave a bench running


def test_the_bench_that_opens_is_the_one_started_early(station_file) -> None:
    station = station_file()
    start_bench_early("run", ["run", "delivery_check", "--station", str(station), "--param", "rate_ml_h=1"])
    [pid] = early_children()
    bench = Bench.open(load_station(station))
    try:
        assert bench._sim_process.pid == pid  # noqa: SLF001 - taken over, not a second bench
        assert early_children() == []
        assert bench.identities  # and it works
    finally:
        bench.close()


def test_a_command_that_ends_without_opening_the_bench_stops_it(station_file, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import rig.station.bench as bench_module
    from rig.cli.main import main

    stopped: list[int] = []

    def spy() -> None:
        stopped.extend(early_children())
        launcher.stop_early()

    monkeypatch.setattr(bench_module, "stop_early", spy)
    # a usage error after the early start (no such suite): the bench goes when main returns
    code = main(["nightly", "--station", str(station_file()), "--suite", str(tmp_path / "none.toml"), "--unsigned"])
    assert code == 2 and early_children() == []
    assert len(stopped) == 1 and not _alive(stopped[0])


@pytest.mark.parametrize("command, extra", [
    ("run", ["--via", "http://127.0.0.1:1"]),  # the service's bench, not ours
    ("run", ["--help"]),
    ("check", []),  # not a command that runs a procedure
    ("nightly", ["--station", "/nonexistent/rig.toml"]),  # the command says what is wrong
])
def test_nothing_starts_when_the_command_will_not_open_this_bench(station_file, command, extra) -> None:
    argv = [command, "--station", str(station_file()), *extra]
    start_bench_early(command, argv)
    assert early_children() == []


def test_a_bench_nobody_opens_is_stopped_when_the_command_ends(station_file, tmp_path: Path) -> None:
    station = station_file()
    code = ("import sys; from rig.cli.early_bench import start_bench_early; "
            "from rig.station.bench import early_children; "
            f"start_bench_early('nightly', ['nightly', '--station', {str(station)!r}]); "
            "print(early_children()[0], flush=True)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of an exited parent is reaped by init; its state says it is gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False
