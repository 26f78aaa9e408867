"""Characterise the line-fault detectors on the physical model: latency per fault, false alarms.

    python -m benchmarks.detection [--quick]

Why the model directly (not the simulated instruments over their transports): detector latency
and false-alarm rate are properties of the detection logic and the line physics; driving the
model in virtual time makes a 24 h soak cost seconds. ``run(quick)`` returns the numbers as a
dict for ``benchmarks.run_all``.

Scenario: the pump delivers at the rate; after the detectors have settled and learnt a baseline
the fault valve is set; latency = first alarm of the matching detector − fault time. The pure
threshold needs C·(P_backstop − P0)/Q, shown for comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks.verdict import Figure, conclude
from instruments.sim.model import FluidLine
from rig.analysis.detection import DetectionParams, DetectorBank, Event, Sample

FAULT_AFTER_ARMING_S = 60.0  # monitor this long on a healthy line before the fault
LINGER_S = 600.0  # keep watching after the alarm, to list other detectors the fault trips


@dataclass
class ScenarioResult:
    fault: str
    rate_ml_h: float
    severity_pct: float | None
    target: str  # the detector that should see this fault
    fault_t_s: float
    latency_s: float | None  # None: not detected within the horizon
    horizon_s: float
    events: list[Event] = field(default_factory=list)

    def others(self) -> dict[str, float]:
        """Other detectors that fired, with their latency (a severe kink is also an occlusion)."""
        out: dict[str, float] = {}
        for e in self.events:
            if e.detector != self.target and e.detector not in out:
                out[e.detector] = e.t_s - self.fault_t_s
        return out


TARGET = {"occlusion": "occlusion", "backstop": "occlusion_backstop", "kink": "kink",
          "leak": "leak", "disconnect": "disconnect"}


def make_line(rate_ml_h: float, seed: int, pump_kind: str = "syringe") -> FluidLine:
    model = FluidLine(seed=seed)
    model.pump.kind = pump_kind
    model.pump.rate_ml_h = rate_ml_h
    model.pump.running = True
    return model


def attach_bank(model: FluidLine, bank: DetectorBank, sample_hz: float) -> None:
    """Feed the bank from a model sampler, as the DAQ's buffered acquisition would."""
    # the ODE is integrated exactly per step, so one step per sample loses nothing
    model.max_step_s = min(FluidLine.max_step_s, 1.0 / sample_hz) if sample_hz > 4 else 1.0 / sample_hz

    def feed(m: FluidLine) -> None:
        bank.update(Sample(
            m.t_s, m.upstream_pressure_kpa(), m.downstream_pressure_kpa(), m.flow_sensor_ul_min(),
            m.pump.rate_ml_h, m.pump.running,
        ))

    model.add_sampler(1.0 / sample_hz, feed)


def apply_fault(model: FluidLine, fault: str, severity_pct: float | None) -> None:
    if fault in ("occlusion", "backstop"):
        model.valves.occlusion = True
    elif fault == "kink":
        model.valves.kink_pct = 100.0 if severity_pct is None else severity_pct
    elif fault == "leak":
        model.valves.leak = True
    elif fault == "disconnect":
        model.valves.disconnect = True
    else:
        raise ValueError(f"unknown fault {fault!r}; expected occlusion, backstop, kink, leak or disconnect")


def run_scenario(
    fault: str,
    rate_ml_h: float,
    *,
    severity_pct: float | None = None,
    sample_hz: float = 2.0,
    horizon_s: float = 3600.0,
    params: DetectionParams | None = None,
    seed: int = 1,
    pump_kind: str = "syringe",
    linger_s: float = 0.0,
) -> ScenarioResult:
    """Deliver, arm, inject ``fault``, run until its detector alarms or ``horizon_s`` passes.

    ``linger_s`` keeps running after the alarm so other detectors the fault trips (a 90 % kink
    is also an occlusion for a while) show up in ``others()``.
    """
    params = params or DetectionParams()
    model = make_line(rate_ml_h, seed, pump_kind)
    bank = DetectorBank(params)
    attach_bank(model, bank, sample_hz)
    fault_t_s = params.settle_s + params.learn_s + FAULT_AFTER_ARMING_S
    model.advance_to(fault_t_s)
    apply_fault(model, fault, severity_pct)
    target = TARGET[fault]
    chunk_s = 5.0
    while model.t_s < fault_t_s + horizon_s and bank.first(target) is None:
        model.advance(min(chunk_s, fault_t_s + horizon_s - model.t_s))
    hit = bank.first(target)
    if hit is not None and linger_s > 0:
        model.advance(linger_s)
    return ScenarioResult(
        fault, rate_ml_h, severity_pct, target, fault_t_s,
        None if hit is None else hit.t_s - fault_t_s, horizon_s, list(bank.events),
    )


def run_soak(
    rate_ml_h: float,
    duration_s: float = 24 * 3600.0,
    *,
    sample_hz: float = 1.0,
    params: DetectionParams | None = None,
    seed: int = 7,
    pump_kind: str = "syringe",
) -> DetectorBank:
    """Normal delivery for ``duration_s`` of virtual time; the bank's events are false alarms."""
    model = make_line(rate_ml_h, seed, pump_kind)
    bank = DetectorBank(params or DetectionParams())
    attach_bank(model, bank, sample_hz)
    model.advance_to(duration_s)
    return bank


def threshold_theory_s(rate_ml_h: float, params: DetectionParams | None = None) -> float:
    """Time a pure threshold needs: C·(P_backstop − P0)/Q, P0 the healthy line pressure."""
    p = (params or DetectionParams()).occlusion
    line = FluidLine().params
    p0 = line.back_pressure_kpa + rate_ml_h * (line.catheter_resistance_kpa_per_ml_h
                                               + line.valve_resistance_kpa_per_ml_h)
    return p.compliance_ml_per_kpa * (p.backstop_pressure_kpa - p0) / rate_ml_h * 3600.0


# -- the table ----------------------------------------------------------------------------------

OCCLUSION_TARGETS_S = {1.0: 120.0, 0.1: 1200.0}
KINK_SEVERITIES_PCT = (50.0, 75.0, 90.0, 100.0)


def _fmt_s(value: float | None) -> str:
    if value is None:
        return "not detected"
    if value < 10:
        return f"{value:.1f} s"
    if value < 120:
        return f"{value:.0f} s"
    return f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.1f} h"


def run(quick: bool = False, sample_hz: float = 2.0) -> dict[str, Any]:
    """All scenarios and the soaks at ``sample_hz``; returns rows (dicts) and the false-alarm count."""
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []

    def add(result: ScenarioResult, note: str = "") -> None:
        rows.append({
            "fault": result.fault if result.severity_pct is None else f"{result.fault} {result.severity_pct:g} %",
            "rate_ml_h": result.rate_ml_h,
            "detector": result.target,
            "latency_s": result.latency_s,
            "horizon_s": result.horizon_s,
            "also": {k: round(v, 1) for k, v in result.others().items()},
            "note": note,
        })

    for rate in (1.0, 0.1, 0.01):
        r = run_scenario("occlusion", rate, sample_hz=sample_hz, horizon_s=4 * 3600.0, linger_s=LINGER_S)
        target = OCCLUSION_TARGETS_S.get(rate)
        verdict = "" if target is None else ("meets" if r.latency_s is not None and r.latency_s < target
                                             else "MISSES") + f" target < {_fmt_s(target)}"
        add(r, f"{verdict}; threshold alone: {_fmt_s(threshold_theory_s(rate))}".lstrip("; "))
    # the same-run baseline of the trend detector: the pure threshold (backstop) on the same line
    for rate in OCCLUSION_TARGETS_S:
        add(run_scenario("backstop", rate, sample_hz=sample_hz, horizon_s=12 * 3600.0),
            f"theory C·ΔP/Q = {_fmt_s(threshold_theory_s(rate))}")
    for sev in KINK_SEVERITIES_PCT:
        add(run_scenario("kink", 1.0, severity_pct=sev, sample_hz=sample_hz, horizon_s=1800.0, linger_s=LINGER_S))
    if not quick:
        for sev in KINK_SEVERITIES_PCT:
            add(run_scenario("kink", 0.1, severity_pct=sev, sample_hz=sample_hz, horizon_s=1800.0, linger_s=LINGER_S))
    for fault in ("leak", "disconnect"):
        for rate in (1.0, 0.1, 0.01) if not quick else (1.0, 0.01):
            add(run_scenario(fault, rate, sample_hz=sample_hz, horizon_s=1800.0, linger_s=LINGER_S))

    soak_s = (2 if quick else 24) * 3600.0
    soak_rates = (1.0, 0.1, 0.01) if quick else (1.0, 0.1, 0.01, 0.002)
    soaks: list[dict[str, Any]] = []
    for rate in soak_rates:
        for kind in ("syringe", "peristaltic") if rate >= 0.1 else ("syringe",):
            bank = run_soak(rate, soak_s, sample_hz=sample_hz, pump_kind=kind, seed=7 + len(soaks))
            soaks.append({
                "rate_ml_h": rate, "pump": kind, "hours": soak_s / 3600.0,
                "false_alarms": len(bank.events),
                "alarms": [f"{e.detector}@{e.t_s:.0f}s" for e in bank.events],
                "closest_approach": {k: round(v, 3) for k, v in bank.closest_approach().items()},
            })
    return {
        "sample_hz": sample_hz,
        "rows": rows,
        "soak": soaks,
        "false_alarms": sum(s["false_alarms"] for s in soaks),
        "soak_hours": sum(s["hours"] for s in soaks),
        "wall_s": round(time.perf_counter() - started, 1),
    }


def print_table(result: dict[str, Any], out: Any = sys.stdout) -> None:
    print(f"Detection latency on the physical model (detectors at {result['sample_hz']:g} Hz)", file=out)
    print(f"{'fault':<16}{'rate mL/h':>10}  {'detector':<19}{'latency':>13}  also fired / note", file=out)
    for row in result["rows"]:
        also = ", ".join(f"{k} {_fmt_s(v)}" for k, v in row["also"].items())
        extra = "; ".join(x for x in (also, row["note"]) if x)
        print(f"{row['fault']:<16}{row['rate_ml_h']:>10g}  {row['detector']:<19}"
              f"{_fmt_s(row['latency_s']):>13}  {extra}", file=out)
    print("", file=out)
    print("Normal-delivery soak (virtual time): false alarms and closest approach (statistic/threshold)",
          file=out)
    for s in result["soak"]:
        approach = ", ".join(f"{k} {v:.2f}" for k, v in s["closest_approach"].items())
        print(f"  {s['rate_ml_h']:>6g} mL/h {s['pump']:<11} {s['hours']:>4g} h: "
              f"{s['false_alarms']} false alarm(s) {' '.join(s['alarms'])}  [{approach}]", file=out)
    print(f"Total false alarms: {result['false_alarms']} in {result['soak_hours']:g} h "
          f"(wall {result['wall_s']} s)", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detection", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer scenarios, 2 h soaks (under a minute)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--sample-hz", type=float, default=2.0, help="detector sample rate (default 2 Hz)")
    args = parser.parse_args(argv)
    if not 0.1 <= args.sample_hz <= 100.0:
        parser.error(f"--sample-hz {args.sample_hz:g} is out of range; allowed 0.1..100 Hz")
    result = run(quick=args.quick, sample_hz=args.sample_hz)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return conclude(figures(result))


def figures(result: dict[str, Any]) -> list[Figure]:
    """Occlusion latency against its targets (baseline: the threshold detector, same run, same
    line); every other fault found within its horizon; no false alarm in the soaks."""
    out = []
    rows = result["rows"]
    for rate, target_s in OCCLUSION_TARGETS_S.items():
        trend = next(r for r in rows if r["fault"] == "occlusion" and r["rate_ml_h"] == rate)
        backstop = next(r for r in rows if r["fault"] == "backstop" and r["rate_ml_h"] == rate)
        out.append(Figure(f"occlusion latency at {rate:g} mL/h", trend["latency_s"], "s", "<", target_s,
                          baseline=f"threshold detector alone on the same line: {_fmt_s(backstop['latency_s'])}"))
    for row in rows:
        if row["fault"].split()[0] in ("kink", "leak", "disconnect") or (
                row["fault"] == "occlusion" and row["rate_ml_h"] not in OCCLUSION_TARGETS_S):
            out.append(Figure(f"{row['fault']} at {row['rate_ml_h']:g} mL/h detected by {row['detector']}",
                              row["latency_s"], "s", "<=", row["horizon_s"],
                              absolute="found at all within the scenario's horizon (no latency target set)"))
    out.append(Figure(f"false alarms in {result['soak_hours']:g} h of normal delivery", result["false_alarms"], "",
                      "==", 0, absolute="any false alarm stops a healthy run"))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
