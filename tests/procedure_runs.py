"""Running a procedure end to end for the procedure tests: `rig run` against a simulated bench the
test owns, so it can inject faults through the sim control channel first.

Why attach instead of letting `rig run` start its own sim: the fault must be in place before the
run starts (a worn pump drive, a sensor offset), and only the control channel can do that; the
procedure itself never touches it. The station keeps the shipped instruments; only the DAQ is
sampled at 20 Hz in 2-second chunks instead of 100 Hz in 0.5 s chunks (the
procedures block-average to 2 Hz either way) so that hours of virtual time cost seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import write_station

from instruments.sim.control import SimControl
from instruments.sim.launcher import start_sim
from rig.cli.main import main

FAST_DAQ = {"instruments.daq.options.sample_rate_hz": 20.0, "instruments.daq.options.chunk_samples": 40}
ANSWERS = ["--answer", "item_serial=NE1000-SIM-0001", "--answer", "setup=done"]


@dataclass
class Run:
    exit_code: int
    records: list[dict[str, Any]]
    run_dir: Path

    @property
    def outcome(self) -> str:
        return next(r["outcome"] for r in self.records if r.get("type") == "run_finished")

    def measurements(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in self.records if r.get("type") == "measurement"}

    def value(self, name: str) -> float | None:
        return self.measurements()[name]["value"]

    def failed(self) -> set[str]:
        return {n for n, m in self.measurements().items() if m["outcome"] != "pass"}

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("type") == "event" and r.get("kind") == kind]


@contextmanager
def sim_bench(tmp_path: Path, *, model_step_s: float | None = None,
              **station_set: Any) -> Iterator[tuple[Path, SimControl]]:
    """A `rig sim serve` child for a station with ``station_set`` overrides; yields the station
    file that attaches to it and its control channel.

    ``model_step_s``: serve the bench in this process instead, its model's longest step raised to
    this (``FluidLine.max_step_s``, 0.25 s). For days of a slow peristaltic head: the model steps
    a running head at 1/16 of its pulsation period but never longer than that cap, so at ~0.01 Hz
    pulsation a day costs ~350 000 steps of 0.25 s; volumes are exact integrals over any step.
    Raised cap, same rule: the same delivery at a fraction of the cost."""
    overrides = {**FAST_DAQ, **station_set}
    served = write_station(tmp_path, set=overrides, name="served.toml")
    if model_step_s is not None:
        with _in_process_bench(tmp_path, served, overrides, model_step_s) as bench:
            yield bench
        return
    sim = start_sim(served, timeout_s=60)
    try:
        attach = write_station(tmp_path, set={**overrides, "sim.attach": str(sim.resources_path)},
                               name="attach.toml")
        control = sim.control()
        try:
            yield attach, control
        finally:
            control.close()
    finally:
        sim.stop()


@contextmanager
def _in_process_bench(tmp_path: Path, served: Path, overrides: dict[str, Any],
                      model_step_s: float) -> Iterator[tuple[Path, SimControl]]:
    from instruments.sim.server import SimServer
    from rig.cli.commands.sim import write_resources
    from rig.station.config import load_station

    server = SimServer(load_station(served))
    server.world.model.max_step_s = model_step_s
    server.start()
    try:
        resources = tmp_path / "resources.json"
        write_resources(resources, server.resources())
        attach = write_station(tmp_path, set={**overrides, "sim.attach": str(resources)}, name="attach.toml")
        control = SimControl(server.control.address)
        try:
            yield attach, control
        finally:
            control.close()
    finally:
        server.stop()


def run_procedure(tmp_path: Path, procedure: str, params: dict[str, float] | None = None, *,
                  fault: Callable[[SimControl], None] | None = None, answers: dict[str, str] | None = None,
                  model_step_s: float | None = None, **station_set: Any) -> Run:
    """`rig run PROCEDURE` on a fresh simulated bench; ``fault`` is applied before the run;
    ``answers`` adds operator answers to the item serial and set-up every procedure needs;
    ``model_step_s``: see ``sim_bench``."""
    with sim_bench(tmp_path, model_step_s=model_step_s, **station_set) as (station, control):
        if fault is not None:
            fault(control)
        out = tmp_path / "runs"
        argv = ["run", procedure, "--station", str(station), "--out", str(out), "--plain", "--no-report",
                *ANSWERS, *(a for k, v in (answers or {}).items() for a in ("--answer", f"{k}={v}")),
                *(a for k, v in (params or {}).items() for a in ("--param", f"{k}={v}"))]
        code = main(argv)
    run_dir = next(p for p in out.iterdir() if p.is_dir())  # beside runs: the audit log
    lines = (run_dir / "record.jsonl").read_text(encoding="utf-8").splitlines()
    return Run(code, [json.loads(line) for line in lines], run_dir)
