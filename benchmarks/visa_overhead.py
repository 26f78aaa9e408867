"""Benchmark: what the driver layer adds to a VISA round trip (target: driver/raw median <= 1.15).

Serves the MT-SICS balance emulator on a pseudo-terminal and the SCPI DMM emulator on TCP, in
this process, with a real-time simulated bench, then times the same request two ways on the
same pyvisa resource, interleaved (alternating which goes first) so drift and load hit both:

* driver: ``MTSicsBalance.read_mass_immediate_g()`` / ``ScpiDmm.read_voltage_v()`` (framing,
  locking, retry wrapper, reply validation, parsing to a float);
* raw: ``write_raw`` + ``read_raw`` of the very same bytes (``SI`` CR LF / ``MEAS:VOLT:DC?`` LF),
  the floor any pyvisa program pays; pyvisa's own ``query()`` is reported for reference.

The emulator's time is inside both, so the ratio measures the driver's share of a real exchange
on this machine's transports. A loaded machine widens the spread, not the ratio's meaning.

    python -m benchmarks.visa_overhead [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks.verdict import Figure, conclude
from instruments.mt_sics import MTSicsBalance
from instruments.scpi_dmm import ScpiDmm
from instruments.sim.mt_sics_emulator import MTSicsEmulator
from instruments.sim.scpi_dmm_emulator import ScpiDmmEmulator
from instruments.sim.transports import PtyPort, TcpPort
from instruments.sim.world import SimWorld
from instruments.visa_instrument import VisaInstrument, resource_manager

TARGET_RATIO = 1.15
TIMEOUT_MS = 2000


def _time_us(fn: Callable[[], object]) -> float:
    start = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - start) / 1000.0


def _compare(
    driver_call: Callable[[], object],
    raw_call: Callable[[], object],
    query_call: Callable[[], object],
    n: int,
) -> dict[str, Any]:
    """Interleave the three paths n times; medians in microseconds."""
    for _ in range(max(10, n // 20)):  # warm-up: caches, pty/socket buffers, model catch-up
        driver_call(), raw_call(), query_call()
    samples: dict[str, list[float]] = {"driver": [], "raw": [], "pyvisa_query": []}
    paths = [("driver", driver_call), ("raw", raw_call), ("pyvisa_query", query_call)]
    for i in range(n):
        for name, call in paths if i % 2 == 0 else reversed(paths):
            samples[name].append(_time_us(call))
    med = {name: statistics.median(values) for name, values in samples.items()}
    p90 = {name: statistics.quantiles(values, n=10)[-1] for name, values in samples.items()}
    ratio = med["driver"] / med["raw"]
    return {
        "n": n,
        "driver_median_us": round(med["driver"], 1),
        "raw_median_us": round(med["raw"], 1),
        "pyvisa_query_median_us": round(med["pyvisa_query"], 1),
        "driver_p90_us": round(p90["driver"], 1),
        "raw_p90_us": round(p90["raw"], 1),
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "pass": ratio <= TARGET_RATIO,
    }


def _open(resource: str, cls: type[VisaInstrument]) -> Any:
    return resource_manager().open_resource(
        resource, read_termination=cls.read_termination, write_termination=cls.write_termination.decode(),
        timeout=TIMEOUT_MS,
    )


def run(quick: bool = False) -> dict[str, Any]:
    """Both instruments; ~1 s with quick, ~10 s otherwise."""
    n = 300 if quick else 3000
    world = SimWorld(virtual=False)
    balance_port = PtyPort(MTSicsEmulator("balance", world)).start()
    dmm_port = TcpPort(ScpiDmmEmulator("dmm", world)).start()
    balance_res = _open(balance_port.resource, MTSicsBalance)
    dmm_res = _open(dmm_port.resource, ScpiDmm)
    try:
        balance = MTSicsBalance("balance", balance_res, timeout_ms=TIMEOUT_MS)
        dmm = ScpiDmm("dmm", dmm_res, timeout_ms=TIMEOUT_MS)

        def raw(res: Any, request: bytes) -> Callable[[], bytes]:
            def call() -> bytes:
                res.write_raw(request)
                return res.read_raw()

            return call

        results = {
            "balance_SI_pty": _compare(
                balance.read_mass_immediate_g, raw(balance_res, b"SI\r\n"), lambda: balance_res.query("SI"), n
            ),
            "dmm_MEAS_tcp": _compare(
                dmm.read_voltage_v,
                raw(dmm_res, b"MEAS:VOLT:DC?\n"),
                lambda: dmm_res.query("MEAS:VOLT:DC?"),
                n,
            ),
        }
    finally:
        balance_res.close()
        dmm_res.close()
        balance_port.close()
        dmm_port.close()
    return {
        "benchmark": "visa_overhead",
        "quick": quick,
        "results": results,
        "pass": all(r["pass"] for r in results.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.visa_overhead", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="300 round trips per path instead of 3000")
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    for name, r in result["results"].items():
        print(
            f"{name:16s} driver {r['driver_median_us']:8.1f} us   raw {r['raw_median_us']:8.1f} us   "
            f"pyvisa query {r['pyvisa_query_median_us']:8.1f} us   ratio {r['ratio']:.3f} "
            f"(target <= {TARGET_RATIO}) {'PASS' if r['pass'] else 'FAIL'}"
        )
    print(json.dumps(result, indent=2))
    return conclude(
        Figure(f"driver/raw median ratio {name}", r["ratio"], "", "<=", TARGET_RATIO,
               baseline=f"raw write_raw/read_raw of the same bytes, median {r['raw_median_us']:.1f} us "
                        f"(driver {r['driver_median_us']:.1f} us)")
        for name, r in result["results"].items()
    )


if __name__ == "__main__":
    raise SystemExit(main())
