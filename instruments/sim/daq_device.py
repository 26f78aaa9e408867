"""The virtual NI multifunction DAQ behind the simulated NI-DAQmx gRPC server.

Why a device object separate from the gRPC servicer: the DAQmx semantics (tasks, channels, sample
clock, bounded input buffer, output ranges, real DAQmx error codes) are the behaviour under test and
must be testable and readable without protobuf plumbing; the servicer only translates messages.

Wiring: the station's ``[instruments.daq.options.channels]`` table says which physical channel is
connected to what. Analog inputs named ``pressure_upstream``, ``pressure_downstream`` and
``flow_sensor`` read the shared fluid-line model and are converted back to volts with that channel's
calibration (``volts = (value - offset) / scale_per_volt``), so the driver's scaling round-trips.
``kink_valve`` (AO, 0..10 V = 0..100 % restriction) and the ``*_valve`` digital lines drive the
model's valves. Unwired inputs read a grounded input (0 V plus noise). ``_aoN_vs_aognd`` internal
channels read back the analog outputs, as on real NI multifunction devices. Digital lines are
always one channel per line (the driver's CHAN_PER_LINE grouping); DO tasks can be read to get the
output registers back.

Sample generation: a buffered acquisition observes the model step by step
(``FluidLine.add_observer``). Each model step is a closed-form segment, so every sample of the
step is computed exactly at its own time, vectorised (numpy), with the channel's Gaussian noise:
a quiet hour of a 20 Hz acquisition costs one model step and a few array operations, not 72 000
Python calls, and samples are the same in real and virtual time.

Guarded advance (virtual time only): while the controller's overpressure interlock is armed, the
clock's ``advance`` carries a guard ({"channel", "above", "chunk_samples"}). When a sample of that
channel, converted exactly as the driver converts it, exceeds the limit, the model stops at the end
of the chunk holding it, so the controller reads that chunk and acts before time moves on — as it
would in real time, where the interlock acts within one chunk. Near the limit (the noise-free value
within 8 σ of it) the model steps chunk by chunk for the same reason.
"""

from __future__ import annotations

import math
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from nidaqmx.error_codes import DAQmxErrors
from nidaqmx.utils import unflatten_channel_string

from instruments.daq_channels import KINK, VALVES
from instruments.sim.model import FluidLine, Segment
from instruments.sim.world import SimWorld

GUARD_SIGMAS = 8.0  # noise-free value this many σ below a guard limit: no sample can cross it
DEVICE_RANGE_V = 10.0  # ±10 V AI and AO, like a USB-6343
N_AI, N_AO, N_LINES = 16, 4, 8
GROUND_NOISE_V = 0.0002
PRODUCT_TYPE = "USB-6343 (simulated)"
DRIVER_VERSION = (24, 8, 0)  # reported through the system-info attributes

# DAQmx sample modes and line grouping (values of nidaqmx.constants)
CONTINUOUS_SAMPLES = 10123
FINITE_SAMPLES = 10178
HW_TIMED_SINGLE_POINT = 12522

MESSAGES: dict[int, str] = {
    DAQmxErrors.INVALID_DEVICE_ID: "Device identifier is invalid.",
    DAQmxErrors.PHYSICAL_CHAN_DOES_NOT_EXIST: "Physical channel specified does not exist on this device.",
    DAQmxErrors.INVALID_PHYS_CHAN_TYPE: "Physical channel type is not valid for this operation.",
    DAQmxErrors.INVALID_TASK: "Task specified is invalid or does not exist.",
    DAQmxErrors.DUPLICATE_TASK: "Task cannot be created because a task with the same name already exists.",
    DAQmxErrors.INVALID_ATTRIBUTE_VALUE: "Requested value is not a supported value for this property.",
    DAQmxErrors.INVALID_AO_DATA_WRITE: "Attempted writing analog data that is too large or too small.",
    DAQmxErrors.SAMPLES_NOT_YET_AVAILABLE: "Some or all of the samples requested have not yet been acquired.",
    DAQmxErrors.SAMPLES_NO_LONGER_AVAILABLE: (
        "The application is not able to keep up with the hardware acquisition. Increasing the buffer "
        "size, reading the data more frequently, or specifying a fixed number of samples to read "
        "instead of reading all available samples might correct the problem. Attempted to read "
        "samples that are no longer available."
    ),
    DAQmxErrors.CANNOT_READ_WHEN_AUTO_START_FALSE_AND_TASK_NOT_RUNNING_OR_COMMITTED: (
        "Read cannot be performed because the task is not running."
    ),
    DAQmxErrors.ATTR_NOT_SUPPORTED: "Specified property is not supported by the device or is not applicable to the task.",
    DAQmxErrors.INVALID_PHYS_CHAN_NAME: "Physical channel name is invalid.",
}


class DaqmxFault(Exception):
    """A DAQmx error status: the servicer turns it into the code the nidaqmx package raises."""

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = int(code)
        base = MESSAGES.get(self.code, f"DAQmx error {self.code}.")
        self.message = f"{base}\n\n{detail}\n\nStatus Code: {self.code}" if detail else f"{base}\n\nStatus Code: {self.code}"
        super().__init__(self.message)


def error_string(code: int) -> str:
    """GetErrorString: the description of a status code (empty for unknown codes, as DAQmx does)."""
    return MESSAGES.get(int(code), "")


def default_buffer_samples(rate_hz: float) -> int:
    """DAQmx's default continuous input buffer size for a sample rate (per channel)."""
    if rate_hz <= 100:
        return 1_000
    if rate_hz <= 10_000:
        return 10_000
    if rate_hz <= 1_000_000:
        return 100_000
    return 1_000_000


# -- wiring: channel names in the station file -> the model ----------------------------------------

Reading = Callable[[FluidLine], float]
NoiseOf = Callable[[FluidLine], float]
Noiseless = Callable[[FluidLine, Segment, np.ndarray], np.ndarray]

AI_SIGNALS: dict[str, tuple[Reading, NoiseOf, Noiseless]] = {
    "pressure_upstream": (FluidLine.upstream_pressure_kpa, lambda m: m.params.pressure_noise_kpa,
                          FluidLine.upstream_pressure_noiseless_kpa),
    "pressure_downstream": (FluidLine.downstream_pressure_kpa, lambda m: m.params.pressure_noise_kpa,
                            FluidLine.downstream_pressure_noiseless_kpa),
    "flow_sensor": (FluidLine.flow_sensor_ul_min, lambda m: m.params.flow_noise_ul_min,
                    FluidLine.flow_sensor_noiseless_ul_min),
}
DO_VALVES = dict(zip(VALVES, ("occlusion", "leak", "disconnect")))  # station role -> model.valves field
AO_KINK = KINK
KINK_PCT_PER_VOLT = 10.0


@dataclass(frozen=True)
class Wire:
    """What one physical channel is connected to, from the station's channel table."""

    name: str
    scale_per_volt: float = 1.0
    offset: float = 0.0


@dataclass
class Channel:
    physical: str  # without device, e.g. "ai0", "port0/line1", "_ao0_vs_aognd"
    name: str
    kind: str  # "ai" | "ao" | "do"
    min_v: float = -DEVICE_RANGE_V
    max_v: float = DEVICE_RANGE_V


@dataclass
class Task:
    """One DAQmx task on the virtual device."""

    name: str
    channels: list[Channel] = field(default_factory=list)
    rate_hz: float | None = None
    sample_mode: int | None = None
    buffer_samples: int | None = None
    running: bool = False
    acquisition: "Acquisition | None" = None

    @property
    def kind(self) -> str | None:
        return self.channels[0].kind if self.channels else None


class Acquisition:
    """A running buffered AI acquisition: a model observer that fills a bounded ring buffer.

    Sample i is taken at ``origin + (i + 1) / rate`` (the first one a sample period after start).
    """

    def __init__(self, device: "VirtualDaq", task: Task, model: FluidLine) -> None:
        assert task.rate_hz is not None
        self.device = device
        self.task = task
        self.n_channels = len(task.channels)
        self.rate_hz = task.rate_hz
        self.period_s = 1.0 / self.rate_hz
        self.origin_s = model.t_s
        self.capacity = max(1, int(task.buffer_samples or default_buffer_samples(self.rate_hz)))
        self.ring = np.zeros((self.n_channels, self.capacity))
        self.written = 0  # total samples per channel acquired
        self.read = 0  # total samples per channel read by the client
        self.overflowed = False
        self._rng = np.random.default_rng(zlib.crc32(task.name.encode()) ^ device.seed)
        self._guard_hit_end: int | None = None  # last sample of the chunk where the guard was hit
        model.add_observer(self)

    # -- the model observer ----------------------------------------------------------------------

    def _sample_index_at(self, t_s: float) -> int:
        """Number of samples taken by time t_s."""
        return max(0, math.floor((t_s - self.origin_s) * self.rate_hz + 1e-6))

    def _time_of(self, index: int) -> float:
        return self.origin_s + (index + 1) * self.period_s

    def _guard(self) -> tuple[int, float, int, Wire] | None:
        """(row, limit, chunk_samples, wire) of the world's guard if it watches one of our channels."""
        guard = self.device.world.guard
        if guard is None:
            return None
        for row, ch in enumerate(self.task.channels):
            wire = self.device.wires.get(ch.physical)
            if wire is not None and wire.name == guard["channel"]:
                return row, float(guard["above"]), int(guard["chunk_samples"]), wire
        return None

    def horizon_s(self, model: FluidLine, segment: Segment) -> float:
        """End the step where the chunk in which the guard was hit completes, or at the next chunk
        end while the guarded signal is within GUARD_SIGMAS noise of its limit."""
        guard = self._guard()
        if guard is None or self.overflowed:
            return math.inf
        row, limit, chunk, wire = guard
        if self._guard_hit_end is not None:
            return self._time_of(self._guard_hit_end)
        signal = AI_SIGNALS.get(wire.name)
        if signal is None:
            return math.inf
        ends = np.array([segment.t0_s, segment.t1_s])
        peak = float(np.max(signal[2](model, segment, ends)))
        if peak + GUARD_SIGMAS * signal[1](model) < limit:
            return math.inf
        end = (self.written // chunk + 1) * chunk - 1
        return self._time_of(end)

    def on_segment(self, model: FluidLine, segment: Segment) -> None:
        """Take every sample that falls in the step, vectorised."""
        if self.overflowed:
            return
        last = self._sample_index_at(segment.t1_s)
        n = last - self.written
        if n <= 0:
            self._check_guard_stop(model)
            return
        times = self.origin_s + (np.arange(self.written, last) + 1) * self.period_s
        block = np.empty((self.n_channels, n))
        noise = self._rng.standard_normal((self.n_channels, n))
        for row, ch in enumerate(self.task.channels):
            mean_v, sigma_v = self.device.volts_over(ch, model, segment, times)
            block[row] = mean_v + noise[row] * sigma_v
        np.clip(block, -DEVICE_RANGE_V, DEVICE_RANGE_V, out=block)
        if self.written + n - self.read > self.capacity:
            # DAQmx (overwrite mode "do not overwrite unread samples") stops the acquisition and
            # reports the overflow on the next read. (The observer stays registered until the task
            # stops: removing it here would mutate the model's observer list while it iterates.)
            self.overflowed = True
            return
        start = self.written % self.capacity
        first = min(n, self.capacity - start)
        self.ring[:, start : start + first] = block[:, :first]
        if first < n:
            self.ring[:, : n - first] = block[:, first:]
        first_new = self.written
        self.written += n
        self._scan_guard(block, first_new)
        self._check_guard_stop(model)

    def _scan_guard(self, block: np.ndarray, first_index: int) -> None:
        guard = self._guard()
        if guard is None or self._guard_hit_end is not None:
            return
        row, limit, chunk, wire = guard
        values = block[row] * wire.scale_per_volt + wire.offset  # exactly the driver's scaling
        over = np.flatnonzero(values > limit)
        if over.size:
            index = first_index + int(over[0])
            self._guard_hit_end = (index // chunk + 1) * chunk - 1

    def _check_guard_stop(self, model: FluidLine) -> None:
        hit = self._guard_hit_end
        if hit is not None and self.written > hit:
            self._guard_hit_end = None
            model.request_stop(f"{self.device.world.guard['channel']} above "  # type: ignore[index]
                               f"{self.device.world.guard['above']:g} in the chunk ending at sample {hit}")  # type: ignore[index]

    # -- the client side ------------------------------------------------------------------------

    @property
    def available(self) -> int:
        return self.written - self.read

    def take(self, n: int) -> np.ndarray:
        """Remove and return the oldest n samples per channel (channels × n)."""
        start = self.read % self.capacity
        if start + n <= self.capacity:
            out = self.ring[:, start : start + n].copy()
        else:
            idx = (start + np.arange(n)) % self.capacity
            out = self.ring[:, idx]
        self.read += n
        return out

    def stop(self, model: FluidLine) -> None:
        model.remove_observer(self)


class VirtualDaq:
    """The device: its channels, its output registers and its tasks.

    Every method runs with the world lock held by the caller (``with world.lock``), so model,
    outputs and tasks change together.
    """

    def __init__(
        self,
        world: SimWorld,
        device_name: str,
        serial: str,
        channels: dict[str, dict[str, Any]],
        seed: int = 1,
    ) -> None:
        self.world = world
        self.device_name = device_name
        self.serial_number = _serial_number(serial)
        self.seed = seed
        self.wires: dict[str, Wire] = {}
        for name, spec in (channels or {}).items():
            physical = str(spec.get("physical", "")).lower()
            self.wires[physical] = Wire(
                name=name,
                scale_per_volt=float(spec.get("scale_per_volt", 1.0)),
                offset=float(spec.get("offset", 0.0)),
            )
        self.ao_volts: dict[str, float] = {f"ao{i}": 0.0 for i in range(N_AO)}
        self.lines: dict[str, bool] = {f"port0/line{i}": False for i in range(N_LINES)}
        self.stuck_lines: dict[str, bool] = {}  # fault injection: welded relay -> line stays at value
        self.tasks: dict[str, Task] = {}
        self._unnamed = 0
        self._noise = np.random.default_rng(seed)
        self.lock = threading.Lock()  # for state() readers that do not hold the world lock

    # -- channels ---------------------------------------------------------------------------------

    def resolve(self, spec: str, kind: str) -> list[str]:
        """Physical channel string ("Dev1/ai0:2, Dev1/ai5") -> local names, or the DAQmx error."""
        try:
            names = unflatten_channel_string(spec)
        except Exception as exc:  # noqa: BLE001 - malformed range syntax
            raise DaqmxFault(DAQmxErrors.INVALID_PHYS_CHAN_NAME, f"Physical Channel Name: {spec}") from exc
        if not names:
            raise DaqmxFault(DAQmxErrors.INVALID_PHYS_CHAN_NAME, "Physical Channel Name: (empty)")
        out = []
        for full in names:
            device, sep, local = full.partition("/")
            if not sep or device.lower() != self.device_name.lower():
                raise DaqmxFault(DAQmxErrors.INVALID_DEVICE_ID, f"Device Specified: {device}\nSuggested Device(s): {self.device_name}")
            local = local.lower()
            actual = self._kind_of(local)
            if actual is None:
                raise DaqmxFault(
                    DAQmxErrors.PHYSICAL_CHAN_DOES_NOT_EXIST,
                    f"Physical Channel Name: {local}\nDevice: {self.device_name}",
                )
            if actual != kind and not (kind == "ai" and actual == "ai_internal"):
                raise DaqmxFault(DAQmxErrors.INVALID_PHYS_CHAN_TYPE, f"Physical Channel Name: {full}")
            out.append(local)
        return out

    def _kind_of(self, local: str) -> str | None:
        if local in self.ao_volts:
            return "ao"
        if local in self.lines:
            return "do"
        if local.startswith("ai") and local[2:].isdigit() and int(local[2:]) < N_AI:
            return "ai"
        if local.startswith("_ao") and local.endswith("_vs_aognd") and local[3:-9] in {str(i) for i in range(N_AO)}:
            return "ai_internal"
        return None

    def read_volts(self, ch: Channel, model: FluidLine) -> float:
        """One noisy reading of an AI channel in volts."""
        if ch.physical.startswith("_ao"):
            return self.ao_volts[ch.physical[1:-9]] + float(self._noise.normal(0.0, GROUND_NOISE_V))
        wire = self.wires.get(ch.physical)
        signal = AI_SIGNALS.get(wire.name) if wire else None
        if wire is None or signal is None:
            return float(self._noise.normal(0.0, GROUND_NOISE_V))
        value = signal[0](model)
        return (value - wire.offset) / wire.scale_per_volt

    def volts_over(self, ch: Channel, model: FluidLine, segment: Segment,
                   times: np.ndarray) -> tuple[np.ndarray | float, float]:
        """Noise-free volts of an AI channel at ``times`` inside a model step, and its noise σ."""
        if ch.physical.startswith("_ao"):
            return self.ao_volts[ch.physical[1:-9]], GROUND_NOISE_V
        wire = self.wires.get(ch.physical)
        signal = AI_SIGNALS.get(wire.name) if wire else None
        if wire is None or signal is None:
            return 0.0, GROUND_NOISE_V
        value = signal[2](model, segment, times)
        return (value - wire.offset) / wire.scale_per_volt, signal[1](model) / abs(wire.scale_per_volt)

    def noise_volts(self, ch: Channel, model: FluidLine) -> float:
        wire = self.wires.get(ch.physical)
        signal = AI_SIGNALS.get(wire.name) if wire else None
        if wire is None or signal is None:
            return GROUND_NOISE_V
        return signal[1](model) / abs(wire.scale_per_volt)

    # -- tasks ------------------------------------------------------------------------------------

    def create_task(self, name: str) -> tuple[Task, bool]:
        """Returns (task, new?). An existing name attaches, like the NI gRPC device server's AUTO."""
        if not name:
            name = f"_unnamedTask<{self._unnamed}>"
            self._unnamed += 1
        if name in self.tasks:
            return self.tasks[name], False
        task = Task(name)
        self.tasks[name] = task
        return task, True

    def task(self, name: str) -> Task:
        try:
            return self.tasks[name]
        except KeyError:
            raise DaqmxFault(DAQmxErrors.INVALID_TASK, f"Task Name: {name}") from None

    def add_channels(self, task: Task, spec: str, kind: str, names: str, min_v: float, max_v: float) -> None:
        if task.running:
            raise DaqmxFault(DAQmxErrors.INVALID_TASK, f"Task Name: {task.name} is running")
        locals_ = self.resolve(spec, kind)
        if kind in ("ai", "ao") and not (-DEVICE_RANGE_V <= min_v < max_v <= DEVICE_RANGE_V):
            raise DaqmxFault(
                DAQmxErrors.INVALID_ATTRIBUTE_VALUE,
                f"Property: Maximum/Minimum Value\nRequested Value: {min_v}..{max_v}\n"
                f"Valid Values Begin with: -{DEVICE_RANGE_V}\nValid Values End with: {DEVICE_RANGE_V}",
            )
        if task.channels and task.kind != kind:
            raise DaqmxFault(DAQmxErrors.INVALID_PHYS_CHAN_TYPE, f"Task {task.name} already has {task.kind} channels")
        assigned = [n.strip() for n in names.split(",")] if names else []
        for i, local in enumerate(locals_):
            name = assigned[i] if i < len(assigned) and assigned[i] else f"{self.device_name}/{local}"
            task.channels.append(Channel(local, name, kind, min_v, max_v))

    def configure_timing(self, task: Task, rate_hz: float, sample_mode: int, samps_per_chan: int) -> None:
        if not (0 < rate_hz <= 500_000):
            raise DaqmxFault(
                DAQmxErrors.INVALID_ATTRIBUTE_VALUE,
                f"Property: Sample Clock Rate\nRequested Value: {rate_hz}\nValid Values Begin with: 0.1\n"
                "Valid Values End with: 500000",
            )
        task.rate_hz = float(rate_hz)
        task.sample_mode = int(sample_mode)
        if sample_mode == CONTINUOUS_SAMPLES:
            task.buffer_samples = max(int(samps_per_chan), default_buffer_samples(rate_hz))
        else:
            task.buffer_samples = max(int(samps_per_chan), 1)

    def start(self, task: Task) -> None:
        if task.running:
            return
        if task.kind == "ai" and task.rate_hz is not None:
            self.world.sync()  # real time: the sample clock starts now, not when the model last moved
            task.acquisition = Acquisition(self, task, self.world.model)
        task.running = True

    def stop(self, task: Task) -> None:
        task.running = False
        if task.acquisition is not None:
            task.acquisition.stop(self.world.model)
        self.world.time_changed.notify_all()  # wake a read waiting on this task

    def clear(self, task: Task) -> None:
        self.stop(task)
        self.tasks.pop(task.name, None)

    # -- reading ------------------------------------------------------------------------------------

    def read_analog(self, task: Task, n: int, timeout_s: float) -> tuple[np.ndarray, int]:
        """Read n samples per channel (n = -1: all available). Returns (channels × k, status).

        Blocks (releasing the world lock) until the samples exist: real time advances with the wall
        clock (``world.sync``), virtual time when someone calls ``world.advance``. On timeout it
        returns the samples it has with SAMPLES_NOT_YET_AVAILABLE, as DAQmx does.
        """
        if task.kind != "ai":
            raise DaqmxFault(DAQmxErrors.INVALID_PHYS_CHAN_TYPE, f"Task {task.name} has no analog input channels")
        if task.rate_hz is None:  # on-demand (software-timed): one reading now
            self.world.sync()
            k = 1 if n in (-1, 0) else n
            col = np.array([self.read_volts(ch, self.world.model) for ch in task.channels])
            return np.repeat(col[:, None], k, axis=1), 0
        acq = task.acquisition
        if not task.running and acq is not None and acq.available and not acq.overflowed:
            # stopped with unread samples: hand them over, then report that the task is stopped
            return acq.take(acq.available), DAQmxErrors.CANNOT_READ_WHEN_AUTO_START_FALSE_AND_TASK_NOT_RUNNING_OR_COMMITTED
        if not task.running or acq is None:
            raise DaqmxFault(
                DAQmxErrors.CANNOT_READ_WHEN_AUTO_START_FALSE_AND_TASK_NOT_RUNNING_OR_COMMITTED,
                f"Task Name: {task.name}",
            )
        deadline = math.inf if timeout_s < 0 else time.monotonic() + timeout_s
        while True:
            self.world.sync()
            if acq.overflowed:
                return np.zeros((acq.n_channels, 0)), DAQmxErrors.SAMPLES_NO_LONGER_AVAILABLE
            want = acq.available if n < 0 else n
            if acq.available >= want:
                return acq.take(want), 0
            if not task.running:  # stopped while we waited: hand over what was acquired
                return acq.take(acq.available), DAQmxErrors.CANNOT_READ_WHEN_AUTO_START_FALSE_AND_TASK_NOT_RUNNING_OR_COMMITTED
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return acq.take(acq.available), DAQmxErrors.SAMPLES_NOT_YET_AVAILABLE
            if self.world.virtual:
                wait_s = min(remaining, 0.5)
            else:  # real time: nobody notifies; wake when the missing samples should exist
                wait_s = min(remaining, max(0.001, min(0.05, (want - acq.available) / acq.rate_hz)))
            self.world.time_changed.wait(wait_s)

    def read_lines(self, task: Task) -> np.ndarray:
        """Read back the digital lines of a DO task (one bool per line): the output registers."""
        if task.kind != "do":
            raise DaqmxFault(DAQmxErrors.INVALID_PHYS_CHAN_TYPE, f"Task {task.name} has no digital channels")
        return np.array([self.lines[ch.physical] for ch in task.channels], dtype=bool)

    # -- writing ------------------------------------------------------------------------------------

    def write_analog(self, task: Task, values: np.ndarray) -> int:
        """Write one value per AO channel (the last sample of each channel is what stays)."""
        if task.kind != "ao":
            raise DaqmxFault(DAQmxErrors.INVALID_PHYS_CHAN_TYPE, f"Task {task.name} has no analog output channels")
        values = np.asarray(values, dtype=float).reshape(len(task.channels), -1)
        for ch, row in zip(task.channels, values):
            bad = (row < ch.min_v - 1e-9) | (row > ch.max_v + 1e-9) | ~np.isfinite(row)
            if bad.any():
                raise DaqmxFault(
                    DAQmxErrors.INVALID_AO_DATA_WRITE,
                    f"Value Written: {row[bad][0]}\nChannel Name: {ch.name}\n"
                    f"Minimum Value: {ch.min_v}\nMaximum Value: {ch.max_v}",
                )
        self.world.sync()
        for ch, row in zip(task.channels, values):
            if row.size:
                self.ao_volts[ch.physical] = float(row[-1])
                self._apply_ao(ch.physical)
        return values.shape[1]

    def write_lines(self, task: Task, states: np.ndarray) -> int:
        if task.kind != "do":
            raise DaqmxFault(DAQmxErrors.INVALID_PHYS_CHAN_TYPE, f"Task {task.name} has no digital channels")
        states = np.asarray(states, dtype=bool).reshape(len(task.channels), -1)
        self.world.sync()
        for ch, row in zip(task.channels, states):
            if row.size:
                self.lines[ch.physical] = self.stuck_lines.get(ch.physical, bool(row[-1]))
                self._apply_line(ch.physical)
        return states.shape[1]

    def write_port_value(self, task: Task, value: int) -> None:
        """WriteDigitalScalarU32: bit k drives line k of the port."""
        self.write_lines(task, np.array([[bool(value >> int(ch.physical.rsplit("line", 1)[1]) & 1)] for ch in task.channels]))

    def _apply_ao(self, physical: str) -> None:
        wire = self.wires.get(physical)
        if wire is not None and wire.name == AO_KINK:
            pct = min(100.0, max(0.0, self.ao_volts[physical] * KINK_PCT_PER_VOLT))
            self.world.model.valves.kink_pct = pct

    def _apply_line(self, physical: str) -> None:
        wire = self.wires.get(physical)
        if wire is not None and wire.name in DO_VALVES:
            setattr(self.world.model.valves, DO_VALVES[wire.name], self.lines[physical])

    # -- introspection --------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Output registers and task states for the control channel's ``state``."""
        outputs: dict[str, Any] = {}
        for physical, wire in self.wires.items():
            if physical in self.ao_volts:
                outputs[wire.name] = {"physical": physical, "volts": self.ao_volts[physical]}
            elif physical in self.lines:
                outputs[wire.name] = {"physical": physical, "high": self.lines[physical]}
        tasks = {}
        for t in self.tasks.values():
            acq = t.acquisition
            tasks[t.name] = {
                "kind": t.kind,
                "channels": [c.physical for c in t.channels],
                "running": t.running,
                "rate_hz": t.rate_hz,
                "acquired": acq.written if acq else 0,
                "available": acq.available if acq else 0,
                "overflowed": acq.overflowed if acq else False,
            }
        return {
            "device": self.device_name,
            "product_type": PRODUCT_TYPE,
            "serial_number": f"{self.serial_number:08X}",
            "outputs": outputs,
            "ao_volts": dict(self.ao_volts),
            "lines": dict(self.lines),
            "tasks": tasks,
        }


def _serial_number(serial: str) -> int:
    """NI serial numbers are 32-bit and shown in hex (e.g. 01ABCDEF); anything else is hashed."""
    try:
        return int(serial, 16) & 0xFFFFFFFF
    except (TypeError, ValueError):
        return zlib.crc32(str(serial).encode())
