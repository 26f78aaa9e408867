"""Start the simulated bench of the station a command is about to open, before the command's own
imports: the bench's start-up (~0.7 s: an interpreter, numpy, gRPC, every transport) then runs on
the other core while the controller loads the engine and the drivers (another ~0.6 s), instead of
after it. Only a guess at what the command will do: anything unclear (a bad station file, --via,
--help) starts nothing, and the command itself reports what is wrong. A bench started here that
the command never opens is stopped when the command returns (``stop_unopened_benches``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# Commands that open the station's bench as soon as their request checks out.
OPENS_BENCH = ("run", "nightly")


def start_bench_early(command: str | None, argv: Sequence[str]) -> None:
    if command not in OPENS_BENCH:
        return
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--station")
    parser.add_argument("--via")
    parser.add_argument("-h", "--help", action="store_true")
    try:
        known, _ = parser.parse_known_args(list(argv))
        if known.via or known.help:
            return
        from rig.station.bench import start_early
        from rig.station.config import default_station_path, load_station

        start_early(load_station(known.station or default_station_path()))
    except (Exception, SystemExit):  # noqa: BLE001 - the command reports it, in its own words
        return


def stop_unopened_benches() -> None:
    """When the command is over: a bench it did not open goes now, not at interpreter exit (a
    process that runs many commands, such as a test session, must not collect them)."""
    bench = sys.modules.get("rig.station.bench")
    if bench is not None:  # nothing was started early unless it was imported
        bench.stop_unopened()


__all__ = ["OPENS_BENCH", "start_bench_early", "stop_unopened_benches"]
