"""A long run stays bounded: RSS, bytes on disk per simulated day, and `rig show` on the record.

    python -m benchmarks.long_run [--quick] [--days N] [--station FILE] [--json]

Why: a refill interval is weeks (up to 90 days) of procedure time; its run must not grow the
controller's memory with the interval, must write raw data at a size a lab keeps, and its record
must stay quick to open (issue 16, item 5). Measured, each against its target; exit 1 on a miss:

* run RSS      `rig run reservoir_cycle --param interval_days=N` (N = 90, --quick 7; past 45 days
               with reservoir_ml = 20, as the default 10 mL holds no more) as a child
               process, report bundle included: the peak resident set of the largest process of
               the run (the controller, or the simulated bench it starts; getrusage of the
               waited-for children), target < 500 MB
* rig show     `rig show <run>` as a child process: wall time, target < 1 s
* report RSS   the report plots of a full-rate DAQ stream far larger than any plot (a synthetic
               20 Hz, 3-channel stream of STREAM_DAYS simulated days written in blocks: 41 MB a
               day) read by a child process: its peak RSS, target < 500 MB whatever the file size

Also shown, not judged: wall time of the run, bytes on disk per simulated day (record + raw
data, as stored: reservoir_cycle keeps 10 s means of the DAQ stream) and the run's outcome.
``run(quick) -> dict`` returns the numbers for benchmarks.run_all.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.procedure_speed import station_answers, station_variant
from procedures.reservoir_cycle import fill_ml
from benchmarks.verdict import Figure, conclude

REPO = Path(__file__).resolve().parents[1]
TARGET_RSS_MB = 500.0
TARGET_SHOW_S = 1.0
FULL_DAYS = 90
QUICK_DAYS = 7
STREAM_DAYS = 10  # the synthetic stream for the report's reader: 410 MB at 20 Hz, 3 channels
STREAM_RATE_HZ = 20.0
DAY_S = 86400.0


def _station(source: Path, directory: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the station whose runs go to ``directory``, and the operator answers for it."""
    path = station_variant(source, directory, None)
    return path, {**station_answers(path), "refill": "done"}


def _child(args: list[str], env: dict[str, str]) -> tuple[int, float, float, str]:
    """Run a child to the end: (exit code, wall s, peak RSS MB of it and its descendants, output tail).

    ru_maxrss of RUSAGE_CHILDREN is the largest of the waited-for descendants, so the children
    this benchmark ran before are measured apart by running each in a fresh intermediate process."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "w = time.perf_counter() - t; "
             "print(p.returncode, w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
             "print((p.stdout + p.stderr)[-1500:])")
    proc = subprocess.run([sys.executable, "-c", probe, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, check=True)
    first, _, tail = proc.stdout.partition("\n")
    code, wall_s, rss_kb = first.split()
    return int(code), float(wall_s), int(rss_kb) / 1024.0, tail


def reservoir_ml(days: int) -> float:
    """The default 10 mL reservoir (the shipped station's syringe) holds 45 default days; longer
    intervals get SynchroMed II's 20 mL reservoir (procedures/reservoir_cycle.py, its sources)."""
    import procedures

    defaults = dict(procedures.load("reservoir_cycle").defaults())
    return 10.0 if fill_ml({**defaults, "interval_days": days}) <= 10.0 else 20.0


def measure_run(station: Path, answers: dict[str, str], days: int, directory: Path) -> dict[str, Any]:
    env = {**os.environ, "RIG_AUDIT_LOG": str(directory / "audit.jsonl")}
    out_dir = directory / "runs"
    args = [sys.executable, "-m", "rig", "run", "reservoir_cycle", "--station", str(station), "--out", str(out_dir),
            "--plain", "--param", f"interval_days={days}", "--param", f"reservoir_ml={reservoir_ml(days)}",
            *(a for k, v in answers.items() for a in ("--answer", f"{k}={v}"))]
    code, wall_s, rss_mb, tail = _child(args, env)
    runs = [p for p in out_dir.iterdir() if p.is_dir()] if out_dir.is_dir() else []
    result: dict[str, Any] = {"days": days, "exit_code": code, "wall_s": round(wall_s, 1), "peak_rss_mb": round(rss_mb, 1)}
    if not runs:
        result["output"] = tail
        return result
    run_dir = runs[0]
    stored = [p for p in run_dir.rglob("*") if p.is_file() and "report" not in p.relative_to(run_dir).parts]
    size = sum(p.stat().st_size for p in stored)
    finished = [json.loads(line) for line in (run_dir / "record.jsonl").read_text(encoding="utf-8").splitlines()
                if '"run_finished"' in line]
    virtual_s = float(finished[-1].get("t_proc_s") or 0.0) if finished else 0.0
    result.update({"run_dir": str(run_dir), "outcome": finished[-1].get("outcome") if finished else None,
                   "simulated_days": round(virtual_s / DAY_S, 2), "record_and_raw_bytes": size,
                   "bytes_per_simulated_day": round(size / (virtual_s / DAY_S)) if virtual_s else None,
                   "files": {p.name: p.stat().st_size for p in stored}})
    if code not in (0, 4):
        result["output"] = tail
    return result


def measure_show(run_dir: Path, station: Path) -> dict[str, Any]:
    code, wall_s, rss_mb, tail = _child([sys.executable, "-m", "rig", "show", str(run_dir), "--station", str(station)],
                                        dict(os.environ))
    out: dict[str, Any] = {"exit_code": code, "wall_s": round(wall_s, 3), "peak_rss_mb": round(rss_mb, 1)}
    if code not in (0, 4):
        out["output"] = tail
    return out


def write_stream(path: Path, days: float, rate_hz: float = STREAM_RATE_HZ) -> int:
    """A full-rate 3-channel DAQ stream of ``days`` simulated days in one-second chunks, written a
    simulated hour at a time (as instruments.daq_stream writes it: scans, header, index)."""
    header = {"format": "float64-le scans", "channels": ["pressure_upstream", "pressure_downstream", "flow_sensor"],
              "units": ["kPa", "kPa", "uL/min"], "rate_hz": rate_hz}
    path.with_name(path.name + ".header.json").write_text(json.dumps(header), encoding="utf-8")
    rng = np.random.default_rng(7)
    hour = int(3600 * rate_hz)
    chunk = int(rate_hz)
    n_total = int(days * DAY_S * rate_hz)
    with open(path, "wb") as data, open(path.with_name(path.name + ".index.jsonl"), "w", encoding="utf-8") as index:
        for start in range(0, n_total, hour):
            n = min(hour, n_total - start)
            scans = np.column_stack([10 + rng.normal(0, 0.05, n), 9 + rng.normal(0, 0.05, n), 3.3 + rng.normal(0, 0.5, n)])
            offset = data.tell()
            scans.astype("<f8").tofile(data)
            index.writelines(json.dumps({"first": start + i, "count": min(chunk, n - i), "offset": offset + 24 * i}) + "\n"
                             for i in range(0, n, chunk))
    return path.stat().st_size


def measure_report_reader(directory: Path) -> dict[str, Any]:
    path = directory / "raw" / "daq.f64"
    path.parent.mkdir(parents=True)
    size = write_stream(path, STREAM_DAYS)
    reader = ("import sys; from pathlib import Path; from reports.plots import build_plots; "
              "plots, notes = build_plots(Path(sys.argv[1]), {}, salt='bench'); "
              "assert [p.id for p in plots] == ['flow', 'pressure'] and not notes, (plots, notes)")
    code, wall_s, rss_mb, tail = _child([sys.executable, "-c", reader, str(path.parent)], dict(os.environ))
    out: dict[str, Any] = {"stream_days": STREAM_DAYS, "stream_bytes": size, "exit_code": code,
                           "wall_s": round(wall_s, 2), "peak_rss_mb": round(rss_mb, 1)}
    if code != 0:
        out["output"] = tail
    return out


def run(quick: bool = False, station: Path | None = None, days: int | None = None) -> dict[str, Any]:
    days = days or (QUICK_DAYS if quick else FULL_DAYS)
    source = Path(station) if station else REPO / "rig.toml"
    out: dict[str, Any] = {"targets": {"peak_rss_mb": TARGET_RSS_MB, "rig_show_wall_s": TARGET_SHOW_S}}
    with tempfile.TemporaryDirectory(prefix="rig-long-run-") as tmp:
        path, answers = _station(source, Path(tmp))
        out["run"] = measure_run(path, answers, days, Path(tmp))
        if "run_dir" in out["run"]:
            out["show"] = measure_show(Path(out["run"]["run_dir"]), path)
    with tempfile.TemporaryDirectory(prefix="rig-long-run-") as tmp:
        out["report_reader"] = measure_report_reader(Path(tmp))
    out["misses"] = [f.name for f in figures(out) if not f.passed]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_DAYS} days instead of {FULL_DAYS}")
    parser.add_argument("--days", type=int, default=None, help="interval_days of the run (1..90)")
    parser.add_argument("--station", type=Path, default=None, help="station file (default: rig.toml)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    if args.days is not None and not 1 <= args.days <= 90:
        print("long_run: --days must be 1..90 (reservoir_cycle's interval_days)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    result = run(args.quick, args.station, args.days)
    if args.json:
        print(json.dumps(result, indent=2))
        return 1 if result["misses"] else 0
    r, show, reader = result["run"], result.get("show") or {}, result["report_reader"]
    print(f"reservoir_cycle, interval_days = {r['days']} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"benchmark {time.perf_counter() - t0:.0f} s)")
    print(f"run: {r.get('outcome')} (exit {r['exit_code']}) in {r['wall_s']:.0f} s wall for "
          f"{r.get('simulated_days', 0):g} simulated days")
    print(f"run peak RSS (largest process, report included) {r['peak_rss_mb']:>7.0f} MB   target < {TARGET_RSS_MB:g} MB")
    if r.get("bytes_per_simulated_day"):
        print(f"stored record + raw data: {r['record_and_raw_bytes'] / 1e6:.2f} MB = "
              f"{r['bytes_per_simulated_day'] / 1e3:.0f} kB per simulated day "
              f"({', '.join(f'{k} {v / 1e3:.0f} kB' for k, v in sorted(r['files'].items()))})")
    if show:
        print(f"rig show on the record            {show['wall_s']:>7.2f} s    target < {TARGET_SHOW_S:g} s")
    print(f"report plots of a {reader['stream_days']}-day 20 Hz stream ({reader['stream_bytes'] / 1e6:.0f} MB): "
          f"peak RSS {reader['peak_rss_mb']:.0f} MB in {reader['wall_s']:.1f} s   target < {TARGET_RSS_MB:g} MB")
    for key in ("run", "show", "report_reader"):
        if isinstance(result.get(key), dict) and "output" in result[key]:
            print(f"--- {key} output (tail) ---\n{result[key]['output']}")
    return conclude(figures(result))


def figures(result: dict[str, Any]) -> list[Figure]:
    """Each judged figure against its target (benchmarks.verdict); a failed step is not measured."""
    r, show, reader = result["run"], result.get("show") or {}, result["report_reader"]
    passed = r["exit_code"] in (0, 4) and r.get("outcome") == "PASS"
    bounded = "memory must not grow with the interval: nothing to compare it with"
    return [
        Figure(f"peak RSS of a {r['days']}-day reservoir_cycle run (largest process, report included)",
               r["peak_rss_mb"] if passed else None, "MB", "<", TARGET_RSS_MB, absolute=bounded),
        Figure("rig show on the long run's record", show.get("wall_s") if show.get("exit_code") in (0, 4) else None,
               "s", "<", TARGET_SHOW_S, absolute="an operator opening a record: the issue's bound"),
        Figure(f"report plots of a {reader['stream_bytes'] / 1e6:.0f} MB DAQ stream: peak RSS",
               reader["peak_rss_mb"] if reader["exit_code"] == 0 else None, "MB", "<", TARGET_RSS_MB, absolute=bounded),
    ]


if __name__ == "__main__":
    sys.exit(main())
