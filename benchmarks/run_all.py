"""`make bench`: run every benchmark of the project, write benchmarks/results.md, fail on a missed target.

Every module in benchmarks/ is a benchmark (except this runner, ``verdict`` and private ``_*``
modules): it is run as ``python -m benchmarks.NAME [--quick]`` in its own process, so each
measures its baseline in the same run without sharing a warm process, a loaded sim or leftover
threads with the others. Its printed output goes into results.md verbatim, headed by the machine it
ran on, so the numbers are never retyped by hand; the ``VERDICT`` lines it prints
(benchmarks.verdict) become the pass/fail table at the top. The exit code is non-zero when any
benchmark exits non-zero (a missed target or a crash) or prints a failing figure.

Quick modes by default (each under a minute); `--full` (make bench-full) uses the long runs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"__init__", "run_all", "verdict"}


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        mem = "unknown"
    try:
        load = "load average {:.1f} / {:.1f} / {:.1f} (1/5/15 min) at the start".format(*os.getloadavg())
    except OSError:
        load = "load average unknown"
    return (f"{cpu}, {os.cpu_count()} cores, {mem} RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}; {load}")


def discover(directory: Path = HERE) -> list[str]:
    """Every benchmark module in ``directory``, by name."""
    return sorted(p.stem for p in directory.glob("*.py") if p.stem not in NOT_BENCHMARKS and not p.stem.startswith("_"))


@dataclass
class Outcome:
    name: str
    output: str
    exit_code: int
    wall_s: float
    figures: list[tuple[bool, list[str]]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and all(ok for ok, _ in self.figures)


def run_one(name: str, full: bool, directory: Path = HERE) -> Outcome:
    from benchmarks.verdict import parse

    cmd = [sys.executable, "-m", f"{directory.name}.{name}"] + ([] if full else ["--quick"])
    start = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=directory.parent)
    elapsed = time.monotonic() - start
    output = done.stdout.rstrip()
    if done.returncode != 0:
        output += f"\n\n(exit code {done.returncode}: the benchmark missed a target or failed)"
        if done.stderr.strip():
            output += "\n" + "\n".join(done.stderr.strip().splitlines()[-15:])
    return Outcome(name, output, done.returncode, elapsed, parse(done.stdout))


def summary_table(outcomes: list[Outcome]) -> list[str]:
    rows = ["| Benchmark | Figure | Measured | Target | Compared with | Verdict |", "|---|---|---|---|---|---|"]
    for o in outcomes:
        for ok, parts in o.figures:
            cells = (parts + [""] * 4)[:4]
            cells = [c.replace("|", "\\|") for c in cells]
            rows.append(f"| {o.name} | " + " | ".join(cells) + f" | {'PASS' if ok else '**FAIL**'} |")
        if o.exit_code != 0 and all(ok for ok, _ in o.figures):
            rows.append(f"| {o.name} | (whole benchmark) | exit code {o.exit_code} | exit code 0 | | **FAIL** |")
        if not o.figures and o.exit_code == 0:
            rows.append(f"| {o.name} | (no per-figure verdict printed) | exit code 0 | exit code 0 | | PASS |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="long runs instead of quick modes")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this benchmark (repeatable)")
    parser.add_argument("--dir", type=Path, default=HERE, help=argparse.SUPPRESS)  # tests: another package
    parser.add_argument("--results", type=Path, default=None, help="where to write results (default: DIR/results.md)")
    args = parser.parse_args(argv)
    names = discover(args.dir)
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(names)}")
        names = [n for n in names if n in args.only]
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    outcomes = []
    for name in names:
        print(f"== {name}", flush=True)
        outcome = run_one(name, args.full, args.dir)
        print(outcome.output, flush=True)
        outcomes.append(outcome)
    failed = [o.name for o in outcomes if not o.passed]
    parts = [
        "# Benchmark results",
        "",
        f"Generated by `make bench{'-full' if args.full else ''}` on {when}.",
        f"Machine: {machine_description()}.",
        f"Mode: {'full' if args.full else 'quick'}. Verdict: **{'FAIL' if failed else 'PASS'}**"
        + (f" (missed: {', '.join(failed)})" if failed else " (every figure meets its target)") + ".",
        "",
        "Each figure is compared either with a baseline measured in the same run (named in the table) or,",
        "where nothing can be measured alongside it, with an absolute target (the table says so and why).",
        "",
        *summary_table(outcomes),
        "",
    ]
    for o in outcomes:
        parts += [f"## {o.name}", "", f"({o.wall_s:.1f} s wall, {'PASS' if o.passed else 'FAIL'})", "", "```",
                  o.output, "```", ""]
    results = args.results or args.dir / "results.md"
    results.write_text("\n".join(parts), encoding="utf-8")
    print(f"\nwrote {results}: " + (f"FAIL ({', '.join(failed)})" if failed else "every figure meets its target"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
