"""Branch coverage of the safety- and integrity-critical modules, enforced by `make test`.

    .venv/bin/python tests/coverage_check.py [--data FILE]

Reads the coverage data `make test` collected (pytest-cov over the xdist workers, and every Python
child the suite starts — `rig run`, the safe-state supervisor, `rig sim serve` — through coverage's
``patch = ["subprocess"]``; see [tool.coverage] in pyproject.toml), and for each module in CRITICAL:
prints its branch coverage, names every branch never taken (``file:line -> line``) and fails if the
module is below its enforced level. The goal is 100 % for each; where the suite has not reached it
yet, the enforced level is what it measured (docs/testing.md says which and why), so coverage of
these modules can only go up. A module missing from the data fails loudly: it was never imported.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# module -> (why it is critical, enforced branch coverage in %). 100 is the goal for every one.
# Below 100: the level measured on the test files that target the module (a lower bound of what the
# whole suite reaches), less one branch of slack; raise it as tests land (docs/testing.md).
CRITICAL: dict[str, tuple[str, float]] = {
    "rig/engine/runner.py": ("run lifecycle: every exit path ends in the safe state, the record's ending", 100.0),
    "rig/engine/safe_state.py": ("the safe-state guard: the supervisor during the run, the read-back at its end",
                                 100.0),
    "rig/engine/acquisition.py": ("arming the interlock, the DAQ stream, pacing so the interlock never goes blind",
                                  100.0),
    "rig/engine/supervisor.py": ("kill -9: the process that makes the bench safe when the runner dies", 100.0),
    "rig/engine/interlock.py": ("overpressure interlock and pressure-monitoring loss", 100.0),
    "rig/engine/signals.py": ("Ctrl-C / SIGTERM: a second signal never skips the safe state", 100.0),
    "rig/record.py": ("record writing and reading: never a pass from a torn or killed run", 100.0),
    "rig/engine/spec.py": ("spec limits: what PASS means", 100.0),
    "instruments/daq.py": ("the DAQ driver's face: every call reaches the part that does it", 100.0),
    "instruments/daq_link.py": ("DAQ tasks and how their failures read (a lost device is never silent)", 100.0),
    "instruments/daq_outputs.py": ("DAQ safe state and valve read-back", 100.0),
    "instruments/daq_listeners.py": ("chunk and failure listeners: the interlock's path fails closed", 100.0),
    "instruments/daq_acquisition.py": ("the DAQ stream: every sample saved, read failures reach the interlock",
                                       100.0),
    "procedures/_pump.py": ("pump start/stop inside procedures, each confirmed by read-back, alarms acknowledged", 100.0),
    "reports/verify.py": ("signature and bundle verification", 100.0),
    "reports/audit.py": ("the hash-chained audit log and its verification", 100.0),
    "reports/keys.py": ("key files: encryption at rest, scrypt parameters", 100.0),
}


def branch_report(data_file: Path) -> dict[str, tuple[int, int, list[str]]]:
    """module -> (branches, branches taken, ["line -> line" never taken]) from ``data_file``."""
    import coverage

    cov = coverage.Coverage(data_file=str(data_file), config_file=str(REPO / "pyproject.toml"))
    cov.load()
    measured = {Path(f).resolve(): f for f in cov.get_data().measured_files()}
    out = {}
    for module in CRITICAL:
        path = (REPO / module).resolve()
        if path not in measured:
            continue
        analysis = cov._analyze(measured[path])  # noqa: SLF001 - the public API has no per-branch detail
        numbers = analysis.numbers
        missing = [f"{line} -> {'exit' if target < 0 else target}"
                   for line, targets in sorted(analysis.missing_branch_arcs().items()) for target in targets]
        out[module] = (numbers.n_branches, numbers.n_branches - numbers.n_missing_branches, missing)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tests/coverage_check.py", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / ".coverage", help="coverage data file (default .coverage)")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"coverage check: no coverage data at {args.data}; run `make test`", file=sys.stderr)
        return 2
    import tomllib

    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["coverage"]["run"]["include"]
    if sorted(include) != sorted(f"*/{m}" for m in CRITICAL):
        print("coverage check: [tool.coverage.run] include in pyproject.toml must list exactly the modules of "
              f"CRITICAL here; it lists {include}", file=sys.stderr)
        return 2
    report = branch_report(args.data)
    failed = []
    for module, (why, required) in CRITICAL.items():
        if module not in report:
            print(f"FAIL {module}: not in the coverage data (never imported by the suite?) — {why}")
            failed.append(module)
            continue
        total, taken, missing = report[module]
        percent = 100.0 if total == 0 else 100.0 * taken / total
        ok = percent >= required - 1e-9
        print(f"{'ok  ' if ok else 'FAIL'} {module}: branch coverage {math.floor(percent * 10) / 10:.1f} % "
              f"({taken}/{total}; enforced {required:g} %, goal 100 %) — {why}")
        for branch in missing:
            print(f"       never taken: {module}:{branch}")
        if not ok:
            failed.append(module)
    if failed:
        print(f"coverage check FAILED: {', '.join(failed)} below the enforced level; add tests that take the "
              "branches named above (docs/testing.md)")
        return 1
    print("coverage check: every critical module at or above its enforced level")
    return 0


if __name__ == "__main__":
    sys.exit(main())
