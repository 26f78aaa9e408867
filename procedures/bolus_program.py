"""Flex-dosing program with a bolus: delivered volume per segment and for the bolus, by weight.

An implanted pump's programmer sets a day as segments of basal rate starting at set times, plus
patient or clinician boluses. This procedure plays a compressed day (minutes of procedure time
stand for the programmed times): three basal segments — ``rate1_ml_h`` from 0, ``rate2_ml_h`` from
``start2_min``, ``rate3_ml_h`` from ``start3_min`` until ``end_min`` — and one bolus of
``bolus_ml`` delivered at ``bolus_rate_ml_h`` starting at ``bolus_at_min`` (the pump runs at the
bolus rate for bolus_ml/bolus_rate, then returns to the basal rate of that segment).

The balance is read every ``balance_read_s`` and exactly at every program change. Volumes:

* bolus: balance gain from the bolus start to ``tail_s`` after its end, ÷ density, minus the basal
  volume of the tail. The tail matters: a rate step stores C·ΔQ·R in the line's compliance
  (time constant C·R ≈ 9 s) and that volume arrives after the step.
* segment k: balance gain over the segment ÷ density, minus the bolus window (bolus + tail) when
  the bolus falls in it; programmed = rate_k × (segment length − that window).

* program.segment<k>.volume_error_pct = 100·(delivered − programmed)/programmed
* program.bolus.volume_error_pct      = 100·(delivered bolus − bolus_ml)/bolus_ml

Each part is also recorded as a ``program_part`` event and a row of raw/program.csv with its
programmed and delivered volume.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from procedures._gravimetry import BalanceLog, density_g_ml, tare
from procedures._pump import pump_alarm, set_rate, start_pump, stop_pump
from procedures._setup import ITEM_SERIAL, SETUP_LINE
from rig.engine.context import StepContext
from rig.engine.procedure import Measurement, Parameter, Procedure, Step

SEGMENTS = 3
MIN_PART_ML = 0.01  # 100 digits of a 0.1 mg balance: < 1 % quantisation per part


@dataclass(frozen=True)
class Part:
    """One measured part of the program: a basal segment (minus the bolus window) or the bolus."""

    name: str
    start_min: float
    end_min: float
    rate_ml_h: float
    programmed_ml: float
    excluded_min: tuple[float, float] | None = None  # the bolus window inside a segment


@dataclass(frozen=True)
class Program:
    changes: list[tuple[float, float]]  # (minute, rate mL/h) in time order; rate 0 = stop
    parts: list[Part]
    bolus_window_min: tuple[float, float]  # bolus start .. bolus end + tail

    @property
    def end_min(self) -> float:
        return self.changes[-1][0]


def build_program(p: Mapping[str, float]) -> Program:
    """The timeline and the programmed volume of every part (pure; the tests check it by hand)."""
    starts = [0.0, p["start2_min"], p["start3_min"]]
    ends = starts[1:] + [p["end_min"]]
    rates = [p["rate1_ml_h"], p["rate2_ml_h"], p["rate3_ml_h"]]
    bolus_dur_min = p["bolus_ml"] / p["bolus_rate_ml_h"] * 60.0
    b0 = p["bolus_at_min"]
    b1 = b0 + bolus_dur_min
    window = (b0, b1 + p["tail_s"] / 60.0)
    seg_of_bolus = max(k for k in range(SEGMENTS) if starts[k] <= b0)
    changes = [(starts[k], rates[k]) for k in range(SEGMENTS)]
    changes += [(b0, p["bolus_rate_ml_h"]), (b1, rates[seg_of_bolus]), (p["end_min"], 0.0)]
    changes.sort(key=lambda c: c[0])
    parts: list[Part] = []
    for k in range(SEGMENTS):
        excluded = window if k == seg_of_bolus else None
        length = ends[k] - starts[k] - (window[1] - window[0] if excluded else 0.0)
        parts.append(Part(f"segment{k + 1}", starts[k], ends[k], rates[k], rates[k] * length / 60.0, excluded))
    parts.append(Part("bolus", window[0], window[1], rates[seg_of_bolus], p["bolus_ml"]))
    return Program(changes, parts, window)


def _check_program(p: Mapping[str, float]) -> str | None:
    """0 < start2_min < start3_min < end_min; the bolus window lies inside one segment; every part
    delivers at least 0.01 mL (MIN_PART_ML, 100 balance digits)."""
    if not 0 < p["start2_min"] < p["start3_min"] < p["end_min"]:
        return (f"segment starts must increase: 0 < start2_min ({p['start2_min']:g}) < start3_min "
                f"({p['start3_min']:g}) < end_min ({p['end_min']:g})")
    program = build_program(p)
    b0, b1 = program.bolus_window_min
    boundaries = [0.0, p["start2_min"], p["start3_min"], p["end_min"]]
    if not any(lo < b0 and b1 < hi for lo, hi in zip(boundaries, boundaries[1:])):
        return (f"the bolus window {b0:g}..{b1:.3g} min (bolus_at_min + bolus_ml/bolus_rate_ml_h + "
                "tail_s) must lie inside one segment, clear of its start and end")
    for part in program.parts:
        if part.programmed_ml < MIN_PART_ML:
            return (f"{part.name} is programmed to deliver only {part.programmed_ml:.3g} mL; each part needs "
                    f"at least {MIN_PART_ML} mL for the balance to resolve it (raise its rate or length)")
    return None


def tare_balance(ctx: StepContext) -> None:
    tare(ctx)


def run_program(ctx: StepContext) -> None:
    """Follow the timeline; read the balance on schedule and at every change."""
    program = build_program(ctx.params)
    log = BalanceLog.of(ctx)
    read_s = ctx.params["balance_read_s"]
    marks: dict[float, float] = {}  # program minute -> balance reading at that moment

    def mark(minute: float) -> None:
        marks[minute] = log.read(ctx)

    def check_alarm(_t: float) -> None:
        log.read(ctx)
        alarm = pump_alarm(ctx)
        if alarm:
            ctx.event("alarm", f"pump alarm {alarm!r} during the program", alarm=alarm)
            ctx.fail(f"pump alarm {alarm!r} during the program")

    t0 = ctx.now_s()
    ctx.state["program_t0_s"] = t0
    now_min = 0.0
    times = sorted({c[0] for c in program.changes} | {program.bolus_window_min[1]})
    rate_at = dict(program.changes)
    for minute in times:
        ctx.wait((minute - now_min) * 60.0, every_s=read_s, on_tick=check_alarm)
        now_min = minute
        mark(minute)
        if minute not in rate_at:
            continue
        rate = rate_at[minute]
        if minute == 0.0:
            start_pump(ctx, rate)
        elif rate > 0:
            set_rate(ctx, rate)
        else:
            stop_pump(ctx)
        ctx.event("program", f"t = {minute:g} min: " + (f"rate {rate:g} mL/h" if rate > 0 else "stop"),
                  program_min=minute, rate_ml_h=rate)
    ctx.state["marks"] = marks
    ctx.state["program"] = program


def evaluate(ctx: StepContext) -> None:
    program: Program = ctx.state["program"]
    marks: dict[float, float] = ctx.state["marks"]
    density = density_g_ml(ctx)
    raw = ctx.raw("program", ["part", "start_min", "end_min", "programmed_ml", "delivered_ml"])
    for part in program.parts:
        delivered_ml = (marks[part.end_min] - marks[part.start_min]) / density
        if part.name == "bolus":  # minus the basal volume of the tail
            bolus_end = part.end_min - ctx.params["tail_s"] / 60.0
            delivered_ml -= part.rate_ml_h * (part.end_min - bolus_end) / 60.0
        elif part.excluded_min is not None:
            lo, hi = part.excluded_min
            delivered_ml -= (marks[hi] - marks[lo]) / density
        raw.row(part.name, part.start_min, part.end_min, part.programmed_ml, delivered_ml)
        ctx.event("program_part", f"{part.name}: delivered {delivered_ml:.5f} mL, programmed "
                                  f"{part.programmed_ml:.5f} mL", part=part.name,
                  programmed_ml=part.programmed_ml, delivered_ml=delivered_ml)
        ctx.measure(f"program.{part.name}.volume_error_pct",
                    100.0 * (delivered_ml - part.programmed_ml) / part.programmed_ml,
                    detail=f"delivered {delivered_ml:.5f} mL vs programmed {part.programmed_ml:.5f} mL "
                           f"({part.start_min:g}..{part.end_min:.4g} min)")


def _program_s(p: Mapping[str, float]) -> float:
    return p["end_min"] * 60.0


PROCEDURE = Procedure(
    id="bolus_program",
    version="1.0.0",
    title="Flex-dosing program with bolus: delivered volume per segment and bolus (gravimetric)",
    requirements=("REQ-PROG-001", "REQ-PROG-002"),
    description=__doc__ or "",
    parameters=(
        Parameter("rate1_ml_h", "mL/h", 0.5, low=0.01, high=10.0, description="basal rate of segment 1 (from 0)"),
        Parameter("start2_min", "min", 20.0, low=1.0, high=1440.0, description="start of segment 2"),
        Parameter("rate2_ml_h", "mL/h", 1.0, low=0.01, high=10.0, description="basal rate of segment 2"),
        Parameter("start3_min", "min", 40.0, low=2.0, high=1440.0, description="start of segment 3"),
        Parameter("rate3_ml_h", "mL/h", 0.25, low=0.01, high=10.0, description="basal rate of segment 3"),
        Parameter("end_min", "min", 60.0, low=3.0, high=1440.0, description="end of the program"),
        Parameter("bolus_ml", "mL", 0.1, low=0.01, high=2.0, description="programmed bolus volume"),
        Parameter("bolus_rate_ml_h", "mL/h", 6.0, low=0.1, high=30.0, description="rate the bolus is given at"),
        Parameter("bolus_at_min", "min", 25.0, low=0.5, high=1440.0, description="bolus start"),
        Parameter("tail_s", "s", 60.0, low=10.0, high=600.0,
                  description="after a bolus, time for the line's stored volume to arrive (>> C·R)"),
        Parameter("balance_read_s", "s", 30.0, low=1.0, high=600.0, description="balance reading interval"),
    ),
    checks=(_check_program,),
    item_under_test=(ITEM_SERIAL,),
    steps=(
        SETUP_LINE,
        Step("tare_balance", tare_balance, timeout_s=120.0, duration_s=5.0),
        Step("run_program", run_program, timeout_s=lambda p: _program_s(p) + 300.0, duration_s=_program_s),
        Step("evaluate", evaluate, timeout_s=60.0),
    ),
    measurements=(
        *(Measurement(f"program.segment{k}.volume_error_pct", "%", f"segment {k}: delivered vs programmed")
          for k in range(1, SEGMENTS + 1)),
        Measurement("program.bolus.volume_error_pct", "%", "bolus: delivered vs programmed"),
    ),
    spec_file="bolus_program.spec.toml",
)
