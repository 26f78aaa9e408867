"""How fast virtual time goes: the runner, `rig run` end to end, and the nightly suite, in one run.

    python -m benchmarks.procedure_speed [--quick] [--station FILE] [--json]

Why: a refill interval (weeks) must cost minutes on the simulated bench and the nightly must
stay cheap, or nobody runs them. Measured on the shipped station (rig.toml), each against its
target (issue 16); the process exits 1 when one is missed:

* runner       2 h flow_accuracy through the Runner, simulated bench already up (its start-up
               is paid once per `rig run`, not per simulated hour): simulated s per wall s,
               target >= 5000
* rig run      `rig run flow_accuracy` (2 h) as a child process: interpreter start, bench start,
               the run, the signed-off report bundle; target <= 5 s wall
* nightly      `rig nightly --unsigned` over the shipped suites/nightly.toml; target <= 10 s wall

Same-run baseline: the simulated bench's model alone — the fluid line with the DAQ's buffered
acquisition attached (20 Hz, three channels), advanced over the same 2 h in the procedure's 10 s
ticks in this process, no transports — i.e. the cost no controller can go below; the runner's
figure is shown as a fraction of it. Also shown, not judged: the same 2 h with the DAQ at 100 Hz
in 0.5 s chunks (the cost of a faster stream). ``run(quick) -> dict`` returns the numbers for
benchmarks.run_all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import procedures
from benchmarks.verdict import Figure, conclude
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
TARGET_RUNNER_X = 5000.0  # simulated s per wall s
TARGET_RIG_RUN_S = 5.0
TARGET_NIGHTLY_S = 10.0
TICK_S = 10.0  # flow_accuracy reads the balance every 10 s: the runner's clock ticks


def station_answers(station_path: Path) -> dict[str, str]:
    """Operator answers: the item under test is the station's pump (its serial must match)."""
    data = tomllib.loads(station_path.read_text(encoding="utf-8"))
    pump = next(i for i in data["instruments"].values() if i.get("under_test"))
    return {"item_serial": str(pump["serial"]), "setup": "done"}


def station_variant(source: Path, directory: Path, daq_options: dict[str, Any] | None) -> Path:
    """A copy of ``source`` whose runs go to ``directory`` and whose DAQ options are overridden."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from conftest import dump_toml  # the tests' minimal TOML writer
    finally:
        sys.path.pop(0)
    data = tomllib.loads(source.read_text(encoding="utf-8"))
    data["station"]["runs_dir"] = str(directory / "runs")
    for inst in data.get("instruments", {}).values():
        if inst.get("kind") == "daq" and daq_options:
            inst.setdefault("options", {}).update(daq_options)
    path = directory / "station.toml"
    path.write_text(dump_toml(data), encoding="utf-8")
    return path


def measure_runner(station_path: Path, params: dict[str, float]) -> dict[str, Any]:
    """One flow_accuracy run through the Runner on a fresh simulated bench; times and sizes."""
    procedure = procedures.load("flow_accuracy")
    spec = procedure.load_spec()
    values = parse_params([f"{k}={v}" for k, v in params.items()], procedure)
    station = load_station(station_path)
    answers = station_answers(station_path)
    t0 = time.perf_counter()
    with Bench.open(station) as bench:
        t_open = time.perf_counter() - t0
        run_dir = station.runs_dir / "benchmark"
        runner = Runner(procedure=procedure, spec=spec, params=values, bench=bench, run_dir=run_dir,
                        run_id="benchmark", operator=Operator("benchmark", answers, interactive=False),
                        display=Display(), item_under_test={"item_serial": answers["item_serial"]})
        w0, v0, c0 = time.perf_counter(), bench.clock.now_s(), time.process_time()
        result = runner.run()
        wall_s, cpu_s = time.perf_counter() - w0, time.process_time() - c0
        virtual_s = bench.clock.now_s() - v0
    size = sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file())
    return {
        "outcome": result.outcome,
        "virtual_s": round(virtual_s, 1),
        "wall_s": round(wall_s, 3),
        "controller_cpu_s": round(cpu_s, 3),
        "sim_s_per_wall_s": round(virtual_s / wall_s, 1),
        "bench_open_s": round(t_open, 3),
        "record_bytes": size,
    }


def measure_model_alone(station_path: Path, virtual_s: float) -> dict[str, Any]:
    """Baseline: the simulated bench's model with the DAQ acquisition attached, in-process, advanced
    in the runner's ticks with the pump delivering — no transports, no controller."""
    from instruments.sim.daq_device import CONTINUOUS_SAMPLES, VirtualDaq
    from instruments.sim.world import SimWorld

    station = load_station(station_path)
    daq_cfg = next(c for c in station.instruments.values() if c.kind == "daq")
    world = SimWorld(virtual=True, seed=1)
    device = VirtualDaq(world, daq_cfg.resource, daq_cfg.serial, dict(daq_cfg.options.get("channels", {})))
    rate = float(daq_cfg.options.get("sample_rate_hz", 100.0))
    task, _ = device.create_task("baseline")
    device.add_channels(task, f"{daq_cfg.resource}/ai0:2", "ai", "", -10.0, 10.0)
    device.configure_timing(task, rate, CONTINUOUS_SAMPLES, int(rate * 600))
    with world.lock:
        world.model.pump.rate_ml_h, world.model.pump.running = 1.0, True
        device.start(task)
    w0 = time.perf_counter()
    t = 0.0
    while t < virtual_s:
        world.advance(TICK_S)
        with world.lock:
            task.acquisition.take(task.acquisition.available)  # type: ignore[union-attr]
        t += TICK_S
    wall_s = time.perf_counter() - w0
    return {"virtual_s": t, "wall_s": round(wall_s, 4), "sim_s_per_wall_s": round(t / wall_s, 1)}


def _rig(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "rig", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False)
    return proc.returncode, time.perf_counter() - t0, (proc.stdout + proc.stderr)[-2000:]


def measure_rig_run(station_path: Path, params: dict[str, float], directory: Path) -> dict[str, Any]:
    """`rig run flow_accuracy` as a child process, report bundle included."""
    env = {**os.environ, "RIG_AUDIT_LOG": str(directory / "audit.jsonl")}
    args = ["run", "flow_accuracy", "--station", str(station_path), "--out", str(directory / "runs"), "--plain",
            *(a for k, v in station_answers(station_path).items() for a in ("--answer", f"{k}={v}")),
            *(a for k, v in params.items() for a in ("--param", f"{k}={v}"))]
    code, wall_s, tail = _rig(args, REPO, env)
    out = {"exit_code": code, "wall_s": round(wall_s, 3)}
    if code != 0:
        out["output"] = tail
    return out


def measure_nightly(station_path: Path, directory: Path) -> dict[str, Any]:
    """`rig nightly --unsigned` over the shipped suite."""
    env = {**os.environ, "RIG_AUDIT_LOG": str(directory / "audit.jsonl")}
    args = ["nightly", "--station", str(station_path), "--suite", str(REPO / "suites" / "nightly.toml"),
            "--out", str(directory / "nightly"), "--unsigned",
            "--history", f"sqlite:///{directory / 'history.sqlite3'}"]
    code, wall_s, tail = _rig(args, REPO, env)
    out = {"exit_code": code, "wall_s": round(wall_s, 3)}
    if code != 0:
        out["output"] = tail
    return out


def run(quick: bool = False, station: Path | None = None) -> dict[str, Any]:
    source = Path(station) if station else REPO / "rig.toml"
    params = QUICK if quick else FULL
    out: dict[str, Any] = {"procedure": "flow_accuracy", "params": params, "stations": {},
                           "targets": {"runner_sim_s_per_wall_s": TARGET_RUNNER_X, "rig_run_wall_s": TARGET_RIG_RUN_S,
                                       "nightly_wall_s": TARGET_NIGHTLY_S}}
    with tempfile.TemporaryDirectory(prefix="rig-procedure-speed-") as tmp:
        shipped = station_variant(source, Path(tmp), None)
        out["stations"]["shipped rig.toml"] = measure_runner(shipped, params)
        out["baseline_model_alone"] = measure_model_alone(shipped, params["run_min"] * 60.0)
        out["rig_run"] = measure_rig_run(shipped, params, Path(tmp))
        out["nightly"] = measure_nightly(shipped, Path(tmp))
    with tempfile.TemporaryDirectory(prefix="rig-procedure-speed-") as tmp:
        out["stations"]["DAQ 100 Hz, 0.5 s chunks"] = measure_runner(station_variant(source, Path(tmp), FAST_DAQ), params)
    out["misses"] = [f.name for f in figures(out, quick) if not f.passed]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 62-minute flow_accuracy instead of 120")
    parser.add_argument("--station", type=Path, default=None, help="station file (default: rig.toml)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    result = run(args.quick, args.station)
    if args.json:
        print(json.dumps(result, indent=2))
        return 1 if result["misses"] else 0
    minutes = result["params"]["run_min"]
    base = result["baseline_model_alone"]
    print(f"flow_accuracy, {minutes} min of virtual time (load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs)")
    print(f"{'runner on':38} {'outcome':8} {'virtual s':>10} {'wall s':>8} {'sim s/wall s':>13} "
          f"{'ctl CPU s':>10} {'bench open s':>13} {'record MB':>10}")
    for label, r in result["stations"].items():
        print(f"{label:38} {r['outcome']:8} {r['virtual_s']:>10.0f} {r['wall_s']:>8.2f} "
              f"{r['sim_s_per_wall_s']:>13.0f} {r['controller_cpu_s']:>10.2f} {r['bench_open_s']:>13.2f} "
              f"{r['record_bytes'] / 1e6:>10.2f}")
    runner = result["stations"]["shipped rig.toml"]
    print(f"baseline, model alone (same run): {base['virtual_s']:.0f} virtual s in {base['wall_s']:.3f} wall s = "
          f"{base['sim_s_per_wall_s']:.0f} simulated s per wall s; the runner reaches "
          f"{100 * runner['sim_s_per_wall_s'] / base['sim_s_per_wall_s']:.1f} % of it")
    print(f"runner (shipped)   {runner['sim_s_per_wall_s']:>8.0f} simulated s per wall s   target >= {TARGET_RUNNER_X:g}")
    print(f"rig run (end to end) {result['rig_run']['wall_s']:>6.2f} s wall (exit {result['rig_run']['exit_code']})"
          f"       target <= {TARGET_RIG_RUN_S:g} s{' (not judged with --quick)' if args.quick else ''}")
    print(f"rig nightly (shipped suite) {result['nightly']['wall_s']:>6.2f} s wall (exit {result['nightly']['exit_code']})"
          f"   target <= {TARGET_NIGHTLY_S:g} s")
    for key in ("rig_run", "nightly"):
        if "output" in result[key]:
            print(f"--- {key} output (tail) ---\n{result[key]['output']}")
    return conclude(figures(result, args.quick))


def figures(result: dict[str, Any], quick: bool) -> list[Figure]:
    """The judged figures (benchmarks.verdict); a run that did not end as it should is not measured."""
    runner, base = result["stations"]["shipped rig.toml"], result["baseline_model_alone"]
    rig_run, nightly = result["rig_run"], result["nightly"]
    out = [Figure(f"runner, {result['params']['run_min']} min flow_accuracy (shipped station)",
                  runner["sim_s_per_wall_s"] if runner["outcome"] == "PASS" else None, "simulated s / wall s", ">=",
                  TARGET_RUNNER_X, baseline=f"model alone {base['sim_s_per_wall_s']:.0f} simulated s / wall s")]
    if not quick:
        out.append(Figure("rig run flow_accuracy end to end (2 h)", rig_run["wall_s"] if rig_run["exit_code"] == 0 else None,
                          "s", "<=", TARGET_RIG_RUN_S, absolute="the issue's bound for one command at the bench"))
    out.append(Figure("rig nightly, shipped suite", nightly["wall_s"] if nightly["exit_code"] == 0 else None, "s", "<=",
                      TARGET_NIGHTLY_S, absolute="the issue's bound for the whole suite"))
    return out


if __name__ == "__main__":
    sys.exit(main())
