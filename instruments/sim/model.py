"""One physical model of the fluid line, shared by every emulator of the simulated bench.

SI-flavoured lab units inside (mL, kPa, s, g) with the unit in every name. Topology:

    pump --[upstream transducer]-- tubing (compliance C) --+-- leak bleed (R_leak) --> leak pot
                                                           |   (the rig's leak valve; a leak of
                                                           |    the line itself bleeds here too)
                                 occlusion valve / kink pinch valve (R_valve / (1-k)^2)
                                                           |
                                  [downstream transducer] -+-- disconnect --> spill
                                                           |
                                      flow sensor -- catheter (R_cath / (1-k_cath)^2) --> outlet at
                                                                    CSF back-pressure, on balance

Two kinds of disturbance, kept apart on purpose (``FluidLine.valves`` and ``FluidLine.faults``):

* the rig's own **fault valves** (occlusion, kink pinch, leak, disconnect), driven only by the NI
  device's outputs — what the rig writes, and what its safe state sets back to normal flow;
* **faults of the line/item itself** (a catheter that kinks or blocks, a leaking line, a catheter
  that comes off), injected only by tests over the control channel (``line``) and never touched by
  anything the rig writes: a rig that "repairs" an injected occlusion by zeroing its kink valve
  would otherwise look as if it had stopped the pump.

The tubing node obeys C·dP/dt = Q_pump − Q_out − Q_leak, integrated exactly over each step
(linear ODE with constant coefficients), so volume is conserved to rounding:
pumped = delivered + leaked + spilled + C·(P − P0).

Why one model: the pumps, balance, flow sensor, transducers and valves must all tell one
consistent story (an occlusion raises pressure at ≈ Q/C and stops mass gain on the balance).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

ML_H_PER_ML_S = 3600.0
WATER_DRHO_DT_G_ML_K = 0.00021  # −dρ/dT of water near 20 °C
QUIET_STEP_S = 600.0  # longest step when nothing needs the model at fixed ticks (exact anyway)


@dataclass
class LineParams:
    """Physical constants of the line; defaults follow DESIGN.md section 1 (clinical scale)."""

    compliance_ml_per_kpa: float = 0.010
    catheter_resistance_kpa_per_ml_h: float = 0.20  # ~110 cm catheter, 0.5 mm ID, water
    valve_resistance_kpa_per_ml_h: float = 0.05  # open pinch/occlusion valve
    leak_resistance_kpa_per_ml_h: float = 5.0  # bleed path when open
    disconnect_resistance_kpa_per_ml_h: float = 0.01  # open end after a disconnect
    back_pressure_kpa: float = 1.47  # CSF, ~15 cmH2O
    density_g_ml: float = 0.998
    evaporation_g_h: float = 0.0005  # open weighing vessel
    balance_tau_s: float = 1.5  # settling time constant of the weighing cell
    balance_noise_g: float = 0.00002
    balance_resolution_g: float = 0.0001
    balance_capacity_g: float = 220.0
    pressure_noise_kpa: float = 0.05
    pressure_offset_kpa: float = 0.0
    flow_noise_ul_min: float = 0.02
    flow_gain: float = 1.0
    flow_offset_ul_min: float = 0.0
    # Slow effects that make a refill interval interesting (station [sim]; off in the shipped one):
    # peristaltic tubing wear: the head's flow falls linearly with its revolutions. Assumption of
    # this simulation (no Ismatec figure): pump tubing loses a few % of flow as it fatigues, which
    # is why Ismatec's manual asks for recalibration; e.g. 1 % per 1000 rev.
    tubing_wear_pct_per_1000_rev: float = 0.0
    # syringe stick-slip: below this rate the plunger sticks and moves in slips of stick_slip_ml
    # (static friction of the rubber stopper; a known limit of syringe pumps at very low rates).
    stick_slip_below_ml_h: float = 0.0
    stick_slip_ml: float = 0.0005  # assumed breakaway volume of one slip
    # lab temperature drift from 20 °C: the fluid's density follows water's −0.00021 g/mL per K
    # near 20 °C (0.99820 g/mL at 20 °C, 0.99799 at 21 °C), so grams per delivered mL change.
    temperature_drift_c_per_day: float = 0.0


@dataclass
class PumpState:
    """The stand-in pump's mechanism, commanded by whichever pump emulator is on the station.

    Syringe: displacement advances in steps of ``step_volume_ml`` (stepper resolution).
    Peristaltic: flow pulsates at rollers × rpm / 60 Hz with relative amplitude
    ``pulsation_amplitude``.
    """

    kind: str = "syringe"  # "syringe" | "peristaltic"
    rate_ml_h: float = 0.0  # commanded magnitude
    running: bool = False
    infuse: bool = True
    target_ml: float = 0.0  # stop after this volume since RUN (0 = no target)
    displacement_factor: float = 1.0  # real / commanded displacement (fault: 0.8 = 20 % low)
    step_volume_ml: float = 1.0e-6
    rollers: int = 8
    rpm_per_ml_h: float = 10.0  # peristaltic head speed per unit flow
    pulsation_amplitude: float = 0.3
    stall_pressure_kpa: float = 100.0  # syringe motor stalls above this line pressure
    stalled: bool = False
    force_stall: bool = False
    run_volume_ml: float = 0.0  # displaced since the last RUN
    # Why the pump last stopped ("command" | "stall" | "target"; None while running or never
    # stopped) and when it last received a stop command (model s, even if already stopped): what
    # lets a test tell "the rig stopped the pump" from "the fault stopped it".
    stopped_by: str | None = None
    last_stop_command_t_s: float | None = None
    revolutions: float = 0.0  # peristaltic head revolutions so far (tubing wear)
    _displaced_exact_ml: float = 0.0
    _displaced_steps_ml: float = 0.0

    def command_start(self) -> None:
        """A pump emulator's run command."""
        self.running = True
        self.stopped_by = None

    def command_stop(self, t_s: float) -> None:
        """A pump emulator's stop command (recorded even when the pump is already stopped)."""
        if self.running:
            self.running = False
            self.stopped_by = "command"
        self.last_stop_command_t_s = t_s

    @property
    def rpm(self) -> float:
        return self.rate_ml_h * self.rpm_per_ml_h if self.running else 0.0

    @property
    def pulsation_hz(self) -> float:
        return self.rollers * self.rpm / 60.0


@dataclass
class LineState:
    """One set of line disturbances: used for the rig's fault valves and for the line's own faults.

    kink_pct is a restriction in 0..100 (100 = shut): the pinch valve's for the rig's valves, the
    catheter's for a fault of the line. Disconnect and leak mean an open end / an open bleed.
    """

    occlusion: bool = False
    kink_pct: float = 0.0
    leak: bool = False
    disconnect: bool = False


@dataclass
class Totals:
    pumped_ml: float = 0.0  # net volume displaced by the pump into the line
    delivered_ml: float = 0.0  # through the catheter to the outlet (onto the balance)
    leaked_ml: float = 0.0
    spilled_ml: float = 0.0


Sampler = Callable[["FluidLine"], None]


@dataclass(frozen=True)
class Segment:
    """One model step [t0_s, t1_s] with constant inputs, in closed form.

    Why: the tubing node is a linear ODE with constant coefficients inside a step, so its pressure
    at *any* time of the step is known exactly: P(t) = p_inf + (p0 − p_inf)·exp(−b·(t − t0)) (b in
    1/h), or a straight line when nothing drains the node (b = 0). Observers that need many
    samples inside a step (the DAQ at 20 Hz and more) evaluate them vectorised from this instead
    of the model stepping once per sample.
    """

    t0_s: float
    t1_s: float
    p0_kpa: float
    p_inf_kpa: float
    b_per_h: float
    slope_kpa_h: float  # dP/dt when b = 0
    g_out: float  # conductance node -> outlet, (mL/h)/kPa
    p_sink_kpa: float
    disconnect: bool

    def pressure_kpa(self, t_s: np.ndarray) -> np.ndarray:
        dt_h = (np.asarray(t_s, dtype=float) - self.t0_s) / ML_H_PER_ML_S
        if self.b_per_h > 0:
            return self.p_inf_kpa + (self.p0_kpa - self.p_inf_kpa) * np.exp(-self.b_per_h * dt_h)
        return self.p0_kpa + self.slope_kpa_h * dt_h

    def outlet_flow_ml_h(self, t_s: np.ndarray) -> np.ndarray:
        """Flow through the flow sensor to the outlet (0 when the catheter is disconnected)."""
        if self.disconnect:
            return np.zeros(np.shape(t_s))
        return self.g_out * (self.pressure_kpa(t_s) - self.p_sink_kpa)


class SegmentObserver(Protocol):
    """Something that watches the model step by step (the DAQ's buffered acquisition)."""

    def horizon_s(self, model: "FluidLine", segment: Segment) -> float:
        """The latest time this step may end (math.inf: no constraint)."""

    def on_segment(self, model: "FluidLine", segment: Segment) -> None:
        """Called after every committed step."""


@dataclass
class _SamplerSlot:
    """Sample n is due at origin + n·period: counted as an integer so times never drift."""

    period_s: float
    origin_s: float
    callback: Sampler
    index: int = 1

    @property
    def next_t_s(self) -> float:
        return self.origin_s + self.index * self.period_s


class FluidLine:
    """The model. Not thread-safe: the simulated bench holds a lock around it."""

    max_step_s = 0.25

    def __init__(self, params: LineParams | None = None, seed: int = 1) -> None:
        self.params = params or LineParams()
        self.pump = PumpState()
        self.valves = LineState()  # the rig's fault valves (written by the NI device only)
        self.faults = LineState()  # faults of the line/item at the catheter (control channel only)
        self.totals = Totals()
        self.rng = random.Random(seed)
        self.t_s = 0.0
        self.pressure_kpa = self.params.back_pressure_kpa  # tubing node, gauge
        self._initial_pressure_kpa = self.pressure_kpa
        self.outlet_flow_ml_h = 0.0  # through the flow sensor, now
        self.leak_flow_ml_h = 0.0
        self.balance_tare_g = 0.0
        self.vessel_g = 50.0  # weighing vessel with some fluid already in it
        self.evaporated_g = 0.0
        self._delivered_g = 0.0  # mass of the delivered fluid (density at the time it landed)
        self._displayed_g = self.vessel_g
        self._samplers: list[_SamplerSlot] = []
        self._observers: list[SegmentObserver] = []
        self._stop_requested: str | None = None

    # -- samplers: observers called at exact sample times (the DAQ's buffered acquisition) ----

    def add_sampler(self, period_s: float, callback: Sampler) -> _SamplerSlot:
        slot = _SamplerSlot(period_s, self.t_s, callback)
        self._samplers.append(slot)
        return slot

    def remove_sampler(self, slot: _SamplerSlot) -> None:
        if slot in self._samplers:
            self._samplers.remove(slot)

    def add_observer(self, observer: SegmentObserver) -> None:
        self._observers.append(observer)

    def remove_observer(self, observer: SegmentObserver) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def request_stop(self, reason: str) -> None:
        """An observer asks ``advance_to`` to end after the current step (a guard hit)."""
        self._stop_requested = reason

    # -- time ---------------------------------------------------------------------------------

    def advance(self, dt_s: float) -> str | None:
        """Advance model time by dt_s (see ``advance_to``)."""
        if dt_s < 0:
            raise ValueError(f"cannot advance time backwards (dt_s={dt_s})")
        return self.advance_to(self.t_s + dt_s)

    def advance_to(self, t_end_s: float) -> str | None:
        """Advance to t_end_s, stepping at every tick-sampler time, at every pump event (stall
        pressure reached, volume target reached) and where an observer's horizon says; returns
        early (with the observer's reason) when an observer requests a stop, else None."""
        self._stop_requested = None
        while self.t_s < t_end_s - 1e-12:
            t_next = min(t_end_s, self.t_s + self._step_limit_s())
            due = min((s.next_t_s for s in self._samplers), default=math.inf)
            if due <= t_next + 1e-9:  # a sample due at (or within rounding of) the step end
                t_next = max(due, self.t_s)
            t_next = min(t_next, self._event_time_s(t_next))
            if self._observers:
                preview = self._segment(t_next, self._coefficients(None))
                for obs in self._observers:
                    horizon = obs.horizon_s(self, preview)
                    if self.t_s < horizon < t_next:
                        t_next = horizon
            segment = self._step(t_next - self.t_s)
            self.t_s = t_next
            for slot in self._samplers:
                if slot.next_t_s <= self.t_s + 1e-9:
                    slot.callback(self)
                    slot.index += 1
            if segment is not None:
                for obs in list(self._observers):
                    obs.on_segment(self, segment)
            if self._stop_requested is not None:
                return self._stop_requested
        return None

    def _step_limit_s(self) -> float:
        p = self.pump
        if p.kind == "peristaltic" and p.running and p.pulsation_hz > 0:
            return min(self.max_step_s, 1.0 / (p.pulsation_hz * 16))
        if self._samplers:  # tick samplers read the model's scalar state: keep the fine grid
            return self.max_step_s
        return QUIET_STEP_S

    def _event_time_s(self, t_next: float) -> float:
        """The earliest pump event in (t, t_next]: the syringe reaching its stall pressure, or the
        volume target reached. Steps end there, so a long step never runs past one."""
        p = self.pump
        if not p.running or p.stalled or p.rate_ml_h <= 0:
            return math.inf
        event = math.inf
        q_ml_s = p.rate_ml_h * self.displacement() / ML_H_PER_ML_S
        if p.target_ml > 0 and q_ml_s > 0:
            event = self.t_s + max(0.0, p.target_ml - p.run_volume_ml) / q_ml_s + 1e-6
        if p.kind == "syringe" and p.infuse and self.pressure_kpa <= p.stall_pressure_kpa:
            seg = self._segment(t_next, self._coefficients(None))
            if seg.pressure_kpa(np.array(t_next)) > p.stall_pressure_kpa:
                if seg.b_per_h > 0:
                    frac = (p.stall_pressure_kpa - seg.p_inf_kpa) / (seg.p0_kpa - seg.p_inf_kpa)
                    dt_h = -math.log(frac) / seg.b_per_h if frac > 0 else math.inf
                else:
                    dt_h = (p.stall_pressure_kpa - seg.p0_kpa) / seg.slope_kpa_h
                event = min(event, self.t_s + dt_h * ML_H_PER_ML_S + 1e-6)
        return event

    # -- the physics --------------------------------------------------------------------------

    def _pump_volume_ml(self, t0: float, dt: float) -> float:
        """Net volume the pump displaces into the line during [t0, t0+dt]."""
        p = self.pump
        if not p.running or p.stalled or p.rate_ml_h <= 0:
            return 0.0
        factor = self.displacement()
        mean_ml = p.rate_ml_h * factor * dt / ML_H_PER_ML_S
        if p.kind == "peristaltic":
            w = 2 * math.pi * p.pulsation_hz
            if w > 0:  # Q(t) = Q̄(1 − A·cos ωt): exact integral over the step
                mean_ml -= (
                    p.rate_ml_h * factor / ML_H_PER_ML_S
                    * p.pulsation_amplitude / w * (math.sin(w * (t0 + dt)) - math.sin(w * t0))
                )
            p.revolutions += p.rpm * dt / 60.0
            return mean_ml if p.infuse else -mean_ml
        # syringe: stepper resolution quantises the displaced volume; below the stick-slip rate
        # the stopper only moves in whole slips
        quantum = p.step_volume_ml
        if p.rate_ml_h < self.params.stick_slip_below_ml_h:
            quantum = max(quantum, self.params.stick_slip_ml)
        p._displaced_exact_ml += mean_ml
        steps_ml = math.floor(p._displaced_exact_ml / quantum) * quantum
        vol = steps_ml - p._displaced_steps_ml
        p._displaced_steps_ml = steps_ml
        return vol if p.infuse else -vol

    @property
    def disconnected(self) -> bool:
        """An open end downstream of the valves: the rig's disconnect valve or a catheter come off."""
        return self.valves.disconnect or self.faults.disconnect

    def _valves_shut(self) -> bool:
        return self.valves.occlusion or self.valves.kink_pct >= 100.0

    def _catheter_shut(self) -> bool:
        return self.faults.occlusion or self.faults.kink_pct >= 100.0

    def _catheter_resistance(self) -> float:
        """The catheter with its own kink (a fault of the line); inf when blocked."""
        if self._catheter_shut():
            return math.inf
        return self.params.catheter_resistance_kpa_per_ml_h / (1 - self.faults.kink_pct / 100.0) ** 2

    def _out_resistance(self) -> float:
        """Resistance from the tubing node to where the outflow goes (inf when occluded).

        The pinch valve and the catheter are in series; a disconnect (either kind) opens the line
        before the catheter, so a blocked catheter no longer matters then."""
        prm = self.params
        if self._valves_shut():
            return math.inf
        valve = prm.valve_resistance_kpa_per_ml_h / (1 - self.valves.kink_pct / 100.0) ** 2
        if self.disconnected:
            return valve + prm.disconnect_resistance_kpa_per_ml_h
        return valve + self._catheter_resistance()

    def _leak_conductance(self) -> float:
        """Open bleeds (the rig's leak valve, a leak of the line): parallel paths of R_leak each."""
        return (int(self.valves.leak) + int(self.faults.leak)) / self.params.leak_resistance_kpa_per_ml_h

    def displacement(self) -> float:
        """Real / commanded displacement: the pump's fault factor and, for a peristaltic head,
        tubing wear (never below zero)."""
        p = self.pump
        wear = self.params.tubing_wear_pct_per_1000_rev
        if p.kind == "peristaltic" and wear > 0:
            return p.displacement_factor * max(0.0, 1.0 - wear / 100.0 * p.revolutions / 1000.0)
        return p.displacement_factor

    def density_now_g_ml(self) -> float:
        """The fluid's density at the lab temperature now (temperature drift, if any)."""
        prm = self.params
        return prm.density_g_ml - WATER_DRHO_DT_G_ML_K * prm.temperature_drift_c_per_day * self.t_s / 86400.0

    def _coefficients(self, q_pump_ml_h: float | None) -> tuple[float, float, float, float]:
        """(q_pump, g_out, g_leak, p_sink) for the current valves; q_pump defaults to the pump's
        mean rate (what a step will deliver before stepper quantisation)."""
        prm, p = self.params, self.pump
        if q_pump_ml_h is None:
            q_pump_ml_h = 0.0
            if p.running and not p.stalled and p.rate_ml_h > 0:
                q_pump_ml_h = p.rate_ml_h * self.displacement() * (1.0 if p.infuse else -1.0)
        r_out = self._out_resistance()
        p_sink = 0.0 if self.disconnected else prm.back_pressure_kpa
        g_out = 0.0 if math.isinf(r_out) else 1.0 / r_out
        return q_pump_ml_h, g_out, self._leak_conductance(), p_sink

    def _segment(self, t1_s: float, coeff: tuple[float, float, float, float]) -> Segment:
        q_pump, g_out, g_leak, p_sink = coeff
        c = self.params.compliance_ml_per_kpa
        b = (g_out + g_leak) / c  # C dP/dt = q_pump + g_out·p_sink − (g_out + g_leak)·P (per hour)
        p_inf = (q_pump + g_out * p_sink) / (c * b) if b > 0 else math.nan
        return Segment(self.t_s, t1_s, self.pressure_kpa, p_inf, b, q_pump / c, g_out, p_sink,
                       self.disconnected)

    def _step(self, dt: float) -> Segment | None:
        if dt <= 0:
            return None
        prm, p = self.params, self.pump
        vol_pump = self._pump_volume_ml(self.t_s, dt)
        if p.target_ml > 0 and p.running:
            remaining = p.target_ml - p.run_volume_ml
            if abs(vol_pump) >= remaining:
                vol_pump = math.copysign(max(0.0, remaining), vol_pump)
                p.running = False
                p.stopped_by = "target"
        p.run_volume_ml += abs(vol_pump)
        q_pump = vol_pump / dt * ML_H_PER_ML_S  # mL/h, step average
        coeff = self._coefficients(q_pump)
        seg = self._segment(self.t_s + dt, coeff)
        _, g_out, g_leak, p_sink = coeff
        b, c = seg.b_per_h, prm.compliance_ml_per_kpa
        dt_h = dt / ML_H_PER_ML_S
        p0 = self.pressure_kpa
        if b > 0:
            p_inf = seg.p_inf_kpa
            decay = math.exp(-b * dt_h)
            p1 = p_inf + (p0 - p_inf) * decay
            integral = p_inf * dt_h + (p0 - p_inf) * (1 - decay) / b  # ∫P dt (kPa·h)
        else:
            p1 = p0 + q_pump * dt_h / c
            integral = (p0 + p1) / 2 * dt_h
        out_ml = g_out * (integral - p_sink * dt_h)
        leak_ml = g_leak * integral
        m0 = self.true_mass_g()
        self.pressure_kpa = p1
        self.totals.pumped_ml += vol_pump
        self.totals.leaked_ml += leak_ml
        if self.disconnected:
            self.totals.spilled_ml += out_ml
            self.outlet_flow_ml_h = 0.0
        else:
            self.totals.delivered_ml += out_ml
            self._delivered_g += out_ml * self.density_now_g_ml()
            self.outlet_flow_ml_h = g_out * (p1 - p_sink)  # at the end of the step (steps can be long)
        self.leak_flow_ml_h = g_leak * p1
        if p.kind == "syringe" and p.running and (p1 > p.stall_pressure_kpa or p.force_stall):
            p.stalled = True
            p.running = False
            p.stopped_by = "stall"
        # balance: delivered fluid lands in the vessel; evaporation; first-order settling
        self.evaporated_g += prm.evaporation_g_h * dt_h
        self._settle_balance(seg, m0, dt)
        return seg

    def _settle_balance(self, seg: Segment, m0_g: float, dt_s: float) -> None:
        """The weighing cell's first-order lag (τ) over the step, in closed form for the step's
        mass m(s) = m0 + a·s + B·(1 − e^(−β·s)) (steady outflow, the line's transient, evaporation),
        so the display is right whatever the step length."""
        prm = self.params
        d = self.density_now_g_ml()
        g_out = 0.0 if seg.disconnect else seg.g_out  # a disconnected catheter spills off the balance
        if seg.b_per_h > 0 and g_out > 0:
            a = (d * g_out * (seg.p_inf_kpa - seg.p_sink_kpa) - prm.evaporation_g_h) / ML_H_PER_ML_S
            big_b = d * g_out * (seg.p0_kpa - seg.p_inf_kpa) / seg.b_per_h
            beta = seg.b_per_h / ML_H_PER_ML_S
        else:
            a, big_b, beta = -prm.evaporation_g_h / ML_H_PER_ML_S, 0.0, 0.0
        tau = prm.balance_tau_s
        w = math.exp(-dt_s / tau)
        y = w * self._displayed_g + m0_g * (1 - w) + a * (dt_s - tau * (1 - w)) + big_b * (1 - w)
        if big_b:
            if abs(1 - beta * tau) < 1e-9:
                y -= big_b * (dt_s / tau) * w
            else:
                y -= big_b * (math.exp(-beta * dt_s) - w) / (1 - beta * tau)
        self._displayed_g = y

    # -- readings (what sensors see) ----------------------------------------------------------

    def true_mass_g(self) -> float:
        return self.vessel_g + self._delivered_g - self.evaporated_g

    def balance_reading_g(self) -> tuple[float, bool]:
        """(net reading rounded to resolution, stable?) — stable when settled within 2 digits."""
        prm = self.params
        raw = self._displayed_g + self.rng.gauss(0.0, prm.balance_noise_g) - self.balance_tare_g
        stable = abs(self.true_mass_g() - self._displayed_g) < 2 * prm.balance_resolution_g
        return round(raw / prm.balance_resolution_g) * prm.balance_resolution_g, stable

    def balance_gross_g(self) -> float:
        return self._displayed_g

    def upstream_pressure_kpa(self) -> float:
        prm = self.params
        return self.pressure_kpa + prm.pressure_offset_kpa + self.rng.gauss(0.0, prm.pressure_noise_kpa)

    def downstream_pressure_kpa(self) -> float:
        """Pressure after the valves: the sink plus the catheter's drop at the outlet flow; with the
        catheter blocked (and the valves open) nothing flows, so it reads the tubing pressure."""
        prm = self.params
        if self.disconnected:
            true = self.outlet_flow_ml_h * prm.disconnect_resistance_kpa_per_ml_h
        elif self._catheter_shut() and not self._valves_shut():
            true = self.pressure_kpa
        else:
            true = prm.back_pressure_kpa + self.outlet_flow_ml_h * self._catheter_resistance_or_zero()
        return true + prm.pressure_offset_kpa + self.rng.gauss(0.0, prm.pressure_noise_kpa)

    def _catheter_resistance_or_zero(self) -> float:
        r = self._catheter_resistance()
        return 0.0 if math.isinf(r) else r

    def flow_sensor_ul_min(self) -> float:
        prm = self.params
        ul_min = self.outlet_flow_ml_h * 1000.0 / 60.0
        return ul_min * prm.flow_gain + prm.flow_offset_ul_min + self.rng.gauss(0.0, prm.flow_noise_ul_min)

    # vectorised, noise-free sensor values inside one step (for the DAQ's buffered acquisition)

    def upstream_pressure_noiseless_kpa(self, seg: Segment, t_s: np.ndarray) -> np.ndarray:
        return seg.pressure_kpa(t_s) + self.params.pressure_offset_kpa

    def downstream_pressure_noiseless_kpa(self, seg: Segment, t_s: np.ndarray) -> np.ndarray:
        """As ``downstream_pressure_kpa`` (same cases), at every time of the step."""
        prm = self.params
        if seg.disconnect:
            true = seg.outlet_flow_ml_h(t_s) * prm.disconnect_resistance_kpa_per_ml_h
        elif self._catheter_shut() and not self._valves_shut():
            true = seg.pressure_kpa(t_s)
        else:
            true = prm.back_pressure_kpa + seg.outlet_flow_ml_h(t_s) * self._catheter_resistance_or_zero()
        return true + prm.pressure_offset_kpa

    def flow_sensor_noiseless_ul_min(self, seg: Segment, t_s: np.ndarray) -> np.ndarray:
        prm = self.params
        return seg.outlet_flow_ml_h(t_s) * (1000.0 / 60.0) * prm.flow_gain + prm.flow_offset_ul_min

    def stored_ml(self) -> float:
        return self.params.compliance_ml_per_kpa * (self.pressure_kpa - self._initial_pressure_kpa)

    def snapshot(self) -> dict[str, Any]:
        """Noise-free state for the control channel and tests."""
        return {
            "t_s": self.t_s,
            "pressure_kpa": self.pressure_kpa,
            "outlet_flow_ml_h": self.outlet_flow_ml_h,
            "leak_flow_ml_h": self.leak_flow_ml_h,
            "true_mass_g": self.true_mass_g(),
            "pump": {
                "kind": self.pump.kind,
                "running": self.pump.running,
                "rate_ml_h": self.pump.rate_ml_h,
                "infuse": self.pump.infuse,
                "stalled": self.pump.stalled,
                "displacement_factor": self.pump.displacement_factor,
                "stopped_by": self.pump.stopped_by,
                "last_stop_command_t_s": self.pump.last_stop_command_t_s,
            },
            "valves": asdict(self.valves),  # the rig's fault valves, as the NI device drives them
            "faults": asdict(self.faults),  # faults of the line itself, injected over the control channel
            "totals": {
                "pumped_ml": self.totals.pumped_ml,
                "delivered_ml": self.totals.delivered_ml,
                "leaked_ml": self.totals.leaked_ml,
                "spilled_ml": self.totals.spilled_ml,
                "stored_ml": self.stored_ml(),
            },
        }
