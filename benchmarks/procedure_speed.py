"""How fast a full flow_accuracy run goes in virtual time, record included.

    python -m benchmarks.procedure_speed [--quick] [--station FILE]

Why: a 2-hour gravimetric run (and a 24-hour soak) must cost seconds on the simulated bench, or
nobody runs them in CI. The figure of merit is simulated seconds per wall second of the Runner —
from the first record line to the closed record, every step, every instrument call, the DAQ
stream to disk — with the simulated bench already up (its start-up is reported separately: it is
paid once per `rig run`, not per simulated hour). Target: >= 2000.

Two stations are measured: the shipped rig.toml as is (DAQ at 20 Hz in 1-second chunks), and the
same with the DAQ at 100 Hz in 0.5-second chunks; the difference is the cost of a faster stream.
``run(quick) -> dict`` returns the numbers for benchmarks.run_all.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import procedures
from rig.engine.display import Display
from rig.engine.operator import Operator
from rig.engine.params import parse_params
from rig.engine.runner import Runner
from rig.station.bench import Bench
from rig.station.config import load_station

REPO = Path(__file__).resolve().parents[1]
FULL = {"run_min": 120, "analysis_start_min": 60, "analysis_end_min": 120}
QUICK = {"run_min": 62, "analysis_start_min": 31, "analysis_end_min": 62}
FAST_DAQ = {"sample_rate_hz": 100.0, "chunk_samples": 50}
ANSWERS = {"item_serial": "BENCHMARK-1", "setup": "done"}
TARGET = 2000.0


def _station_variant(source: Path, directory: Path, daq_options: dict[str, Any] | None) -> Path:
    """A copy of ``source`` whose runs go to ``directory`` and whose DAQ options are overridden."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from conftest import dump_toml  # the tests' minimal TOML writer
    finally:
        sys.path.pop(0)
    data = tomllib.loads(source.read_text(encoding="utf-8"))
    data["station"]["runs_dir"] = str(directory / "runs")
    for name, inst in data.get("instruments", {}).items():
        if inst.get("kind") == "daq" and daq_options:
            inst.setdefault("options", {}).update(daq_options)
    path = directory / "station.toml"
    path.write_text(dump_toml(data), encoding="utf-8")
    return path


def measure(station_path: Path, params: dict[str, float]) -> dict[str, Any]:
    """One flow_accuracy run on a fresh simulated bench; times and sizes."""
    procedure = procedures.load("flow_accuracy")
    spec = procedure.load_spec()
    values = parse_params([f"{k}={v}" for k, v in params.items()], procedure)
    station = load_station(station_path)
    t0 = time.perf_counter()
    with Bench.open(station) as bench:
        t_open = time.perf_counter() - t0
        run_dir = station.runs_dir / "benchmark"
        runner = Runner(procedure=procedure, spec=spec, params=values, bench=bench, run_dir=run_dir,
                        run_id="benchmark", operator=Operator("benchmark", ANSWERS, interactive=False),
                        display=Display(), item_under_test={"item_serial": ANSWERS["item_serial"]})
        w0, v0 = time.perf_counter(), bench.clock.now_s()
        result = runner.run()
        wall_s = time.perf_counter() - w0
        virtual_s = bench.clock.now_s() - v0
    size = sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file())
    return {
        "outcome": result.outcome,
        "virtual_s": round(virtual_s, 1),
        "wall_s": round(wall_s, 3),
        "sim_s_per_wall_s": round(virtual_s / wall_s, 1),
        "bench_open_s": round(t_open, 3),
        "record_bytes": size,
    }


def run(quick: bool = False, station: Path | None = None) -> dict[str, Any]:
    source = Path(station) if station else REPO / "rig.toml"
    params = QUICK if quick else FULL
    out: dict[str, Any] = {"procedure": "flow_accuracy", "params": params, "target": TARGET, "stations": {}}
    for label, daq in (("shipped rig.toml", None), ("DAQ 100 Hz, 0.5 s chunks", FAST_DAQ)):
        with tempfile.TemporaryDirectory(prefix="rig-procedure-speed-") as tmp:
            out["stations"][label] = measure(_station_variant(source, Path(tmp), daq), params)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 62-minute run instead of 120")
    parser.add_argument("--station", type=Path, default=None, help="station file (default: rig.toml)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    result = run(args.quick, args.station)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"flow_accuracy, {result['params']['run_min']} min of virtual time, record included "
          f"(target >= {TARGET:g} simulated s per wall s)")
    print(f"{'station':38} {'outcome':8} {'virtual s':>10} {'wall s':>8} {'sim s/wall s':>13} "
          f"{'bench open s':>13} {'record MB':>10}")
    for label, r in result["stations"].items():
        print(f"{label:38} {r['outcome']:8} {r['virtual_s']:>10.0f} {r['wall_s']:>8.2f} "
              f"{r['sim_s_per_wall_s']:>13.0f} {r['bench_open_s']:>13.2f} {r['record_bytes'] / 1e6:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
