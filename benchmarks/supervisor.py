"""Benchmark: the safe-state supervisor's start-up cost and how soon it makes the bench safe after a kill.

Each run starts a supervisor (rig.engine.supervisor); its start-up is paid by every `rig run`, and
after ``kill -9`` of the runner it is the only thing that stops the pump. Measured on the shipped
station's simulated bench served in this process (real time), with the pump infusing and the
occlusion valve closed, as in tests/test_supervisor.py:

* start-up: ``Supervisor.start(plan)`` to return (fork/exec, plan written; not waited for), median
  of N, against the same-run baseline of starting a bare ``python -c pass`` the same way;
* runner gone -> pump stopped and valves safe, as the bench's own state reports them (target <= 5 s:
  README's promise; absolute, nothing to measure it against). The runner's death is what the
  kernel does to the pipe: its write end closes without "done".

    python -m benchmarks.supervisor [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.verdict import Figure, conclude
from instruments.sim.control import SimControl
from instruments.sim.server import SimServer
from rig.cli.commands.sim import write_resources
from rig.engine import supervisor as sup
from rig.record import RecordWriter
from rig.station.bench import Bench
from rig.station.config import load_station

REPO = Path(__file__).resolve().parents[1]
START_TARGET_S = 0.2
KILL_TO_SAFE_TARGET_S = 5.0


def _bench_safe(control: SimControl) -> bool:
    state = control.state()
    pump = not state["model"]["pump"]["running"]
    outputs = state["daq"]["outputs"]
    valves = all(not o["high"] for o in outputs.values() if "high" in o)
    return pump and valves


def _delivering(station: Any, directory: Path) -> dict[str, Any]:
    """Pump infusing, occlusion valve closed, every driver let go: the supervisor's plan."""
    with Bench.open(station) as bench:
        bench.pump.stop()  # a pump the previous supervisor paused must be stopped before reprogramming
        bench.pump.set_rate_ml_h(6.0)
        bench.pump.start()
        bench.daq.set_occlusion(True)
        writer = RecordWriter(directory)
        writer.append("run_started", run_id="bench", t_utc="2026-01-01T00:00:00.000000Z")
        writer.close()
        return {"record": str(writer.path), "run_id": "bench", "runner_pid": os.getpid(),
                "sim_child": bench.sim_child, "instruments": bench.safe_state_plan()}


def _bare_start_s() -> float:
    read_fd, write_fd = os.pipe()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", "pass"], stdin=read_fd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    elapsed = time.perf_counter() - t0
    os.close(read_fd)
    os.close(write_fd)
    proc.wait()
    return elapsed


def run(quick: bool) -> dict[str, Any]:
    n_start, n_kill = (10, 2) if quick else (50, 5)
    with tempfile.TemporaryDirectory(prefix="rig-bench-supervisor-") as tmp:
        root = Path(tmp)
        served = dataclasses.replace(load_station(REPO / "rig.toml"), clock="real")
        server = SimServer(served).start()
        try:
            write_resources(root / "resources.json", server.resources())
            station = dataclasses.replace(served, sim=dataclasses.replace(served.sim, attach=root / "resources.json"))
            control = SimControl(server.control.address)
            try:
                plan = _delivering(station, root / "run-start")
                starts, bare = [], []
                for _ in range(n_start):
                    bare.append(_bare_start_s())
                    t0 = time.perf_counter()
                    supervisor = sup.Supervisor.start(plan)
                    starts.append(time.perf_counter() - t0)
                    supervisor.release()
                kills = []
                for i in range(n_kill):
                    plan = _delivering(station, root / f"run-kill-{i}")
                    supervisor = sup.Supervisor.start(plan)
                    t0 = time.perf_counter()
                    os.close(supervisor._write_fd)  # the kernel's part when the runner dies
                    supervisor._write_fd = None
                    while not _bench_safe(control) and time.perf_counter() - t0 < 60:
                        time.sleep(0.01)
                    kills.append(time.perf_counter() - t0 if _bench_safe(control) else None)
                    supervisor.proc.wait(timeout=60)
            finally:
                control.close()
        finally:
            server.stop()
    worst = None if None in kills else max(kills)
    return {"start_median_s": round(statistics.median(starts), 4), "bare_start_median_s": round(statistics.median(bare), 4),
            "kill_to_safe_s": [None if k is None else round(k, 3) for k in kills],
            "kill_to_safe_worst_s": None if worst is None else round(worst, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.supervisor", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 start-ups and 2 kills instead of 50 and 5")
    args = parser.parse_args(argv)
    result = run(args.quick)
    print(json.dumps(result, indent=2))
    return conclude([
        Figure("supervisor start-up (median)", result["start_median_s"], "s", "<=", START_TARGET_S,
               baseline=f"a bare `python -c pass` started the same way: {result['bare_start_median_s']} s"),
        Figure("runner gone -> pump stopped and valves safe (worst)", result["kill_to_safe_worst_s"], "s", "<=",
               KILL_TO_SAFE_TARGET_S, absolute="README's promise; the bench's own state is the reference"),
    ])


if __name__ == "__main__":
    raise SystemExit(main())
