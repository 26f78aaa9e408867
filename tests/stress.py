"""`make test-stress`: the whole suite three times in a row while two CPU hogs keep both cores busy.

    .venv/bin/python tests/stress.py [--runs N] [--hogs N] [-- extra pytest arguments]

Why: CI machines and a developer's laptop are busy; a test that passes only on an idle machine
(a wall-clock bound, a race with a background thread, a too-short deadline) turns CI red at random
and then a red CI means nothing. Each hog is ``python -c 'while 1: pass'``; they are started before
the first run and killed (by their own pids) after the last, whatever happens. Exit 0 only if every
run passed; the duration of each run is printed, for docs/testing.md and the closing notes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOG = "while 1: pass"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tests/stress.py", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="how many times in a row (default 3)")
    parser.add_argument("--hogs", type=int, default=2, help="busy-loop processes alongside (default 2)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.hogs < 0:
        parser.error(f"--runs must be >= 1 and --hogs >= 0 (got {args.runs}, {args.hogs})")
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(args.hogs)]
    results: list[tuple[int, float]] = []
    try:
        for n in range(1, args.runs + 1):
            print(f"== stress run {n}/{args.runs} with {args.hogs} CPU hog(s)", flush=True)
            t0 = time.monotonic()
            code = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadfile", "-q", "-p", "no:cacheprovider",
                                   *args.pytest_args], cwd=REPO).returncode
            results.append((code, time.monotonic() - t0))
            print(f"== stress run {n}/{args.runs}: exit {code} in {results[-1][1]:.0f} s", flush=True)
            if code != 0:
                break
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    summary = ", ".join(f"run {i}: {'pass' if code == 0 else f'FAIL (exit {code})'} in {s:.0f} s"
                        for i, (code, s) in enumerate(results, 1))
    ok = len(results) == args.runs and all(code == 0 for code, _ in results)
    print(f"stress: {summary}; " + ("all passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
