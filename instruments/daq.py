"""NI multifunction DAQ on the ``nidaqmx`` package: pressure/flow acquisition and the fault valves.

Why one code path for local and remote devices: with ``grpc_server = "host:port"`` every task is
created with ``nidaqmx.Task(grpc_options=nidaqmx.GrpcSessionOptions(...))`` (NI's public API for a
remote NI gRPC Device Server, which is also how the simulated bench is reached); without it the
same calls go to the local NI-DAQmx driver. Nothing else differs.

Wiring comes from the station file's ``[instruments.<name>.options.channels]``: AI channels
(``physical = "aiN"``) are read in volts and scaled here with the transducer's linear calibration
(``value = volts · scale_per_volt + offset``) so the calibration is versioned with the station file
and recorded with every run; ``kink_valve`` is an AO (0..100 % restriction = 0..10 V); the
``occlusion_valve``, ``leak_valve`` and ``disconnect_valve`` are digital lines (high = fault).

Acquisition is continuous and buffered on the device; a reader thread reads it one chunk
(``chunk_samples``) at a time, streams every chunk to disk (instruments.daq_stream), keeps only the
latest values in memory, and hands each chunk to listeners (the overpressure interlock runs there).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import grpc
import nidaqmx
import nidaqmx.errors
import numpy as np
from nidaqmx.constants import AcquisitionType, LineGrouping
from nidaqmx.error_codes import DAQmxErrors
from nidaqmx.stream_readers import AnalogMultiChannelReader, DigitalMultiChannelReader
from nidaqmx.stream_writers import AnalogSingleChannelWriter, DigitalMultiChannelWriter

from instruments.daq_channels import KINK, OPTIONS, VALVES
from instruments.daq_stream import AveragingStreamWriter, StreamWriter
from instruments.errors import (
    InstrumentDisconnected,
    InstrumentError,
    InstrumentReportedError,
    InstrumentTimeout,
    SafeStateNotConfirmed,
)
from instruments.visa_instrument import Identity, in_range
from rig.settings import check_options

log = logging.getLogger(__name__)

KINK_VOLTS_PER_PCT = 0.1  # 0..100 % restriction = 0..10 V
AI_RANGE_V = 10.0
AO_READBACK_TOLERANCE_V = 0.02
BUFFER_SECONDS = 600.0  # device input buffer: room for the reader to fall behind this long
MAX_CHUNKS_PER_READ = 512  # how many waiting chunks one read may fetch
LATEST_KEYS = {  # what procedures and the live display ask for
    "pressure_upstream": "pressure_upstream_kpa",
    "pressure_downstream": "pressure_downstream_kpa",
    "flow_sensor": "flow_ul_min",
}


def no_driver_message(name: str) -> str:
    return (
        f"the NI-DAQmx driver is not installed on this machine and no NI gRPC device server is "
        f"configured; set grpc_server = \"host:port\" in [instruments.{name}] of the "
        f"station file to use a remote device, or use the simulated bench (mode = \"sim\", "
        f"grpc_server = \"sim\")."
    )


class DaqConfigError(ValueError):
    """The DAQ's options table cannot be used (names the field and what is allowed)."""


@dataclass(frozen=True)
class AiChannel:
    name: str
    physical: str
    scale_per_volt: float
    offset: float
    unit: str

    @property
    def latest_key(self) -> str:
        slug = self.unit.lower().replace("µ", "u").replace("/", "_").replace(" ", "")
        return LATEST_KEYS.get(self.name, f"{self.name}_{slug}")


@dataclass(frozen=True)
class DaqChunk:
    """One chunk of scaled samples as the reader delivered it."""

    first_index: int  # sample number of data[:, 0] since start_acquisition
    rate_hz: float
    channels: tuple[str, ...]
    data: np.ndarray  # channels × n, engineering units

    @property
    def n(self) -> int:
        return int(self.data.shape[1])

    def column(self, channel: str) -> np.ndarray:
        return self.data[self.channels.index(channel)]

    def t_s(self, index: int) -> float:
        """Time of sample ``index`` since the acquisition started."""
        return index / self.rate_hz


@dataclass
class AcquisitionStats:
    """What the reader did; the benchmark and the run record read it."""

    path: Path | None = None
    samples: int = 0  # per channel, delivered to disk
    chunks: int = 0
    read_timeouts: int = 0
    reader_cpu_s: float = 0.0
    started_monotonic: float = 0.0
    stopped_monotonic: float | None = None
    error: str | None = None
    events: list[str] = field(default_factory=list)


ChunkListener = Callable[[DaqChunk], None]
FailureListener = Callable[[str], None]


@dataclass
class _Stream:
    """What reading one acquisition needs (the reader thread's, or the paced caller's)."""

    task: Any
    writer: StreamWriter
    reader: Any
    names: tuple[str, ...]
    scale: np.ndarray
    offset: np.ndarray
    buf: np.ndarray
    timeout_s: float
    next_index: int = 0


class Daq:
    """The rig's NI DAQ: ``latest()`` values, valve outputs, streamed acquisition, safe state."""

    kind: ClassVar[str] = "daq"

    def __init__(
        self,
        name: str,
        resource: str,
        *,
        timeout_ms: int = 5000,
        options: dict[str, Any] | None = None,
        grpc_server: str | None = None,
    ) -> None:
        self.name = name
        self.device = resource
        self.timeout_ms = timeout_ms
        self.grpc_server = grpc_server
        options = dict(options or {})
        try:  # the station loader checked these already; direct construction is checked here
            checked = check_options(options, OPTIONS, f"instruments.{name}.options")
        except ValueError as exc:
            raise DaqConfigError(str(exc)) from None
        self.rate_hz = float(checked["sample_rate_hz"])
        self.chunk_samples = int(checked.get("chunk_samples", max(1, int(self.rate_hz / 10))))
        self.ai_channels, self.kink_physical, self.valve_physical = self._wiring(options.get("channels") or {})
        self._grpc_channel: grpc.Channel | None = None
        if grpc_server == "sim":
            raise InstrumentDisconnected(
                name, "open", "grpc_server = \"sim\" must be resolved to the simulated bench's address "
                "(the bench does this when it starts the sim); give \"host:port\" here",
            )
        if grpc_server:
            self._grpc_channel = grpc.insecure_channel(grpc_server)
        self._out_lock = threading.RLock()
        self._listeners: list[ChunkListener] = []
        self._failure_listeners: list[FailureListener] = []
        self._latest: dict[str, float] | None = None
        self._latest_cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._ai_task: Any = None
        self._stop = threading.Event()
        self._paced: _Stream | None = None  # paced acquisition: read by wait_for_elapsed's caller
        self._paced_lock = threading.RLock()
        self._failure: InstrumentError | None = None
        self.stats = AcquisitionStats()
        self._valves = {v: False for v in self.valve_physical}
        self._ao_task: Any = None
        self._do_task: Any = None
        try:
            self._open_outputs()
        except BaseException:
            self.close()
            raise

    # -- configuration ------------------------------------------------------------------------

    def _wiring(self, channels: dict[str, Any]) -> tuple[list[AiChannel], str | None, dict[str, str]]:
        ai: list[AiChannel] = []
        kink: str | None = None
        valves: dict[str, str] = {}
        for ch_name, spec in channels.items():
            where = f"instruments.{self.name}.options.channels.{ch_name}"
            physical = str((spec or {}).get("physical", ""))
            if physical.startswith("ai"):
                try:
                    scale = float(spec.get("scale_per_volt", 1.0))
                    offset = float(spec.get("offset", 0.0))
                except (TypeError, ValueError):
                    raise DaqConfigError(f"{where}: scale_per_volt and offset must be numbers") from None
                if scale == 0:
                    raise DaqConfigError(f"{where}.scale_per_volt must be non-zero")
                ai.append(AiChannel(ch_name, physical, scale, offset, str(spec.get("unit", "V"))))
            elif ch_name == KINK and physical.startswith("ao"):
                kink = physical
            elif ch_name in VALVES and physical.startswith("port"):
                valves[ch_name] = physical
            else:
                raise DaqConfigError(
                    f"{where}: physical {physical!r} is not usable here; expected \"aiN\" for an input, "
                    f"\"aoN\" for {KINK}, or \"portN/lineM\" for {', '.join(VALVES)}"
                )
        return ai, kink, valves

    def _physical(self, local: str) -> str:
        return local if "/" in local and not local.startswith("port") else f"{self.device}/{local}"

    # -- tasks and errors ---------------------------------------------------------------------

    @contextmanager
    def _op(self, operation: str) -> Iterator[None]:
        """Map nidaqmx/gRPC failures to the driver's exceptions, naming the instrument and operation."""
        try:
            yield
        except nidaqmx.errors.DaqError as exc:
            summary = str(exc).strip().splitlines()[0] if str(exc).strip() else "no description"
            err = InstrumentReportedError(self.name, operation, f"DAQmx error {exc.error_code}: {summary}")
            err.daqmx_error_code = exc.error_code  # type: ignore[attr-defined]
            raise err from exc
        except (nidaqmx.errors.DaqNotFoundError, nidaqmx.errors.DaqNotSupportedError) as exc:
            raise InstrumentDisconnected(self.name, operation, no_driver_message(self.name)) from exc
        except nidaqmx.errors.RpcError as exc:
            raise InstrumentDisconnected(
                self.name, operation, f"NI gRPC device server {self.grpc_server}: {exc}"
            ) from exc

    def _new_task(self) -> Any:
        """A task on the local driver or, with grpc_server, on that server (one code path)."""
        if self._grpc_channel is None:
            return nidaqmx.Task()
        return nidaqmx.Task(grpc_options=nidaqmx.GrpcSessionOptions(self._grpc_channel, ""))

    def _open_outputs(self) -> None:
        with self._op("open outputs"):
            if self.kink_physical:
                self._ao_task = self._new_task()
                self._ao_task.ao_channels.add_ao_voltage_chan(
                    self._physical(self.kink_physical), KINK, min_val=0.0, max_val=100 * KINK_VOLTS_PER_PCT
                )
                self._ao_writer = AnalogSingleChannelWriter(self._ao_task.out_stream, auto_start=True)
            if self.valve_physical:
                self._do_task = self._new_task()
                for valve, physical in self.valve_physical.items():
                    self._do_task.do_channels.add_do_chan(
                        self._physical(physical), valve, line_grouping=LineGrouping.CHAN_PER_LINE
                    )
                self._do_writer = DigitalMultiChannelWriter(self._do_task.out_stream, auto_start=True)
                self._do_reader = DigitalMultiChannelReader(self._do_task.in_stream)

    # -- outputs ------------------------------------------------------------------------------

    def set_kink_pct(self, pct: float) -> None:
        """Pinch valve restriction, 0 (open) .. 100 % (closed)."""
        pct = in_range("kink_pct", 0.0, 100.0, "%")(pct)
        if self._ao_task is None:
            raise DaqConfigError(f"instruments.{self.name}: no {KINK} channel is configured")
        with self._out_lock, self._op(f"set_kink_pct({pct:g})"):
            self._ao_writer.write_one_sample(pct * KINK_VOLTS_PER_PCT, timeout=self.timeout_ms / 1000)

    def _set_valve(self, valve: str, high: bool) -> None:
        if valve not in self._valves:
            raise DaqConfigError(f"instruments.{self.name}: no {valve} channel is configured")
        with self._out_lock, self._op(f"set {valve} {'high' if high else 'low'}"):
            states = dict(self._valves, **{valve: bool(high)})
            self._do_writer.write_one_sample_one_line(
                np.array([states[v] for v in self._valves], dtype=bool), timeout=self.timeout_ms / 1000
            )
            self._valves = states

    def set_occlusion(self, closed: bool) -> None:
        self._set_valve("occlusion_valve", closed)

    def set_leak(self, open_: bool) -> None:
        self._set_valve("leak_valve", open_)

    def set_disconnect(self, disconnected: bool) -> None:
        self._set_valve("disconnect_valve", disconnected)

    def read_outputs(self) -> dict[str, Any]:
        """Read the outputs back from the device (DO registers; AO through its internal
        ``_aoN_vs_aognd`` channel), not from this driver's memory."""
        out: dict[str, Any] = {}
        with self._out_lock:
            if self._do_task is not None:
                with self._op("read back valves"):
                    lines = np.zeros(len(self._valves), dtype=bool)
                    self._do_reader.read_one_sample_one_line(lines, timeout=self.timeout_ms / 1000)
                out.update({v: bool(s) for v, s in zip(self._valves, lines)})
            if self.kink_physical:
                with self._op("read back kink valve"):
                    task = self._new_task()
                    try:
                        task.ai_channels.add_ai_voltage_chan(
                            f"{self.device}/_{self.kink_physical}_vs_aognd", min_val=-AI_RANGE_V, max_val=AI_RANGE_V
                        )
                        volts = float(task.read(timeout=self.timeout_ms / 1000))
                    finally:
                        task.close()
                out[KINK] = volts / KINK_VOLTS_PER_PCT
        return out

    def safe_state(self) -> dict[str, Any]:
        """Every fault valve to normal flow and the kink valve open (0 %), then read back.

        Raises SafeStateNotConfirmed if a write fails or the read-back disagrees. Acquisition keeps
        running: the rig must keep watching pressure while it makes the line safe.
        """
        problems: list[str] = []
        for valve in self._valves:
            try:
                self._set_valve(valve, False)
            except InstrumentError as exc:
                problems.append(str(exc))
        if self.kink_physical:
            try:
                self.set_kink_pct(0.0)
            except InstrumentError as exc:
                problems.append(str(exc))
        try:
            readback = self.read_outputs()
        except InstrumentError as exc:
            raise SafeStateNotConfirmed(self.name, "safe_state", f"read-back failed: {exc}") from exc
        problems += [f"{v} reads high" for v in self._valves if readback.get(v)]
        if self.kink_physical and abs(readback[KINK]) * KINK_VOLTS_PER_PCT > AO_READBACK_TOLERANCE_V:
            problems.append(f"{KINK} reads {readback[KINK]:.2f} % (expected 0)")
        if problems:
            raise SafeStateNotConfirmed(self.name, "safe_state", "; ".join(problems))
        return readback

    # -- identity -----------------------------------------------------------------------------

    def identify(self) -> Identity:
        """Product type and serial from the device, NI-DAQmx driver version from its host."""
        with self._op("identify"):
            if self._grpc_channel is None:
                device = nidaqmx.system.Device(self.device)
                version = nidaqmx.system.System.local().driver_version
            else:
                opts = nidaqmx.GrpcSessionOptions(self._grpc_channel, "")
                device = nidaqmx.system.Device(self.device, grpc_options=opts)
                version = nidaqmx.system.System.remote(opts).driver_version
            product, serial = device.product_type, device.serial_num
        return Identity(
            model=str(product),
            serial=f"{int(serial):08X}",
            firmware=f"NI-DAQmx {version.major_version}.{version.minor_version}.{version.update_version}",
        )

    # -- acquisition --------------------------------------------------------------------------

    def add_chunk_listener(self, listener: ChunkListener) -> None:
        """Called in the reader thread with every chunk (keep it quick; it delays the next read)."""
        self._listeners.append(listener)

    def add_failure_listener(self, listener: FailureListener) -> None:
        """Called in the reader thread when the acquisition fails (e.g. buffer overflow)."""
        self._failure_listeners.append(listener)

    def remove_listener(self, listener: ChunkListener | FailureListener) -> None:
        """Stop calling ``listener`` (chunk or failure listener; absent is fine): a run's interlock
        and monitors leave with the run, the DAQ stays open for the next one."""
        for listeners in (self._listeners, self._failure_listeners):
            while listener in listeners:
                listeners.remove(listener)  # type: ignore[arg-type]

    def listeners(self) -> tuple[list[ChunkListener], list[FailureListener]]:
        """Copies of the registered (chunk, failure) listeners: what a run added is what it must
        remove when it ends (rig.engine.acquisition), and the nightly counts them."""
        return list(self._listeners), list(self._failure_listeners)

    @property
    def acquiring(self) -> bool:
        if self._paced is not None:
            return self._failure is None
        return self._reader is not None and self._reader.is_alive()

    def start_acquisition(self, out_path: str | Path, *, paced: bool = False, stored_rate_hz: float | None = None) -> Path:
        """Start continuous acquisition of every AI channel, streaming to ``out_path``.

        ``stored_rate_hz``: keep block means at about this rate on disk instead of every sample
        (instruments.daq_stream.AveragingStreamWriter); listeners still get every sample.

        ``paced``: the caller owns time (a virtual clock) and reports every jump with
        ``wait_for_elapsed``, which then reads exactly the whole chunks that jump produced, in one
        call, in the caller's thread, and hands them to the listeners before it returns: no reader
        thread, no polling of the device, no thread hand-offs (each costs up to a GIL switch
        interval) — one round trip per jump instead of three."""
        if self._reader is not None or self._paced is not None:
            raise InstrumentReportedError(self.name, "start_acquisition", "acquisition is already running")
        if not self.ai_channels:
            raise DaqConfigError(f"instruments.{self.name}: no analog input channels are configured")
        buffer = max(10 * self.chunk_samples, int(self.rate_hz * BUFFER_SECONDS))
        with self._op("start_acquisition"):
            task = self._new_task()
            self._ai_task = task
            for ch in self.ai_channels:
                task.ai_channels.add_ai_voltage_chan(
                    self._physical(ch.physical), ch.name, min_val=-AI_RANGE_V, max_val=AI_RANGE_V
                )
            task.timing.cfg_samp_clk_timing(
                self.rate_hz, sample_mode=AcquisitionType.CONTINUOUS, samps_per_chan=buffer
            )
            task.start()
        header = {
            "instrument": self.name,
            "device": self.device,
            "grpc_server": self.grpc_server,
            "rate_hz": self.rate_hz,
            "chunk_samples": self.chunk_samples,
            "channels": [c.name for c in self.ai_channels],
            "units": [c.unit for c in self.ai_channels],
            "calibration": {c.name: {"scale_per_volt": c.scale_per_volt, "offset": c.offset} for c in self.ai_channels},
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        average = 1 if not stored_rate_hz else max(1, round(self.rate_hz / stored_rate_hz))
        writer = StreamWriter(out_path, header) if average == 1 else AveragingStreamWriter(out_path, header, average)
        self.stats = AcquisitionStats(path=Path(out_path), started_monotonic=time.monotonic())
        self._failure = None
        self._latest = None
        self._stop.clear()
        if paced:
            self._paced = self._stream(task, writer)
            return Path(out_path)
        self._reader = threading.Thread(target=self._read_loop, args=(task, writer), name=f"{self.name}-reader", daemon=True)
        self._reader.start()
        return Path(out_path)

    def _stream(self, task: Any, writer: StreamWriter) -> "_Stream":
        reader = AnalogMultiChannelReader(task.in_stream)
        reader.verify_array_shape = False
        n_ch = len(self.ai_channels)
        return _Stream(
            task=task, writer=writer, reader=reader,
            names=tuple(c.name for c in self.ai_channels),
            scale=np.array([c.scale_per_volt for c in self.ai_channels])[:, None],
            offset=np.array([c.offset for c in self.ai_channels])[:, None],
            buf=np.zeros((n_ch, self.chunk_samples * MAX_CHUNKS_PER_READ)),
            # Long enough for a chunk in real time; in virtual time a timeout just means "no time passed".
            timeout_s=max(self.timeout_ms / 1000, 3 * self.chunk_samples / self.rate_hz),
        )

    def _read_loop(self, task: Any, writer: StreamWriter) -> None:
        stream = self._stream(task, writer)
        cpu0 = time.thread_time()
        try:
            while True:
                stopping = self._stop.is_set()
                want = self._samples_to_read(task)
                result = self._read_once(stream, want, stopping)
                self.stats.reader_cpu_s = time.thread_time() - cpu0
                if result != "more" or stopping:
                    return
        finally:
            self.stats.reader_cpu_s = time.thread_time() - cpu0
            self._close_stream(stream)

    def _close_stream(self, stream: "_Stream") -> None:
        try:
            stream.writer.close()
        except OSError as exc:
            log.warning("%s: closing the sample stream: %s", self.name, exc)

    def _read_once(self, stream: "_Stream", want: int, stopping: bool) -> str:
        """One read of ``want`` samples per channel: scale, stream to disk, hand to the listeners.
        Returns "more" (keep reading), "done" (stopped; what was acquired is saved) or "failed"."""
        n_ch = stream.buf.shape[0]
        try:
            n = stream.reader.read_many_sample(stream.buf[:, :want], want, timeout=stream.timeout_s)
            volts = stream.buf[:, :want]
            error: nidaqmx.errors.DaqError | None = None
        except nidaqmx.errors.DaqReadError as exc:
            # Partial reads are packed: channel c's samples start at c·n.
            n = exc.samps_per_chan_read
            volts = stream.buf[:, :want].copy().reshape(-1)[: n_ch * n].reshape(n_ch, n)
            error = exc
        except nidaqmx.errors.DaqError as exc:
            n, volts, error = 0, stream.buf[:, :0], exc
        except nidaqmx.errors.RpcError as exc:
            self._fail(stream.writer, stream.next_index, f"NI gRPC device server {self.grpc_server}: {exc}",
                       InstrumentDisconnected)
            return "failed"
        if n:
            data = volts[:, :n] * stream.scale + stream.offset
            try:
                stream.writer.write(stream.next_index, data)
            except OSError as exc:  # disk full, quota, I/O error: the stream is lost
                self._fail(stream.writer, stream.next_index, f"cannot write the sample stream to disk: {exc}",
                           InstrumentReportedError)
                return "failed"
            chunk = DaqChunk(stream.next_index, self.rate_hz, stream.names, data)
            stream.next_index += n
            self._publish(chunk)
            self.stats.samples = stream.next_index
            self.stats.chunks += 1
        if error is not None:
            if stopping or self._stop.is_set():
                return "done"  # the stop woke the read; what was acquired has been saved
            if error.error_code == DAQmxErrors.SAMPLES_NOT_YET_AVAILABLE:
                self.stats.read_timeouts += 1
                return "more"
            self._fail(stream.writer, stream.next_index, f"DAQmx error {error.error_code}: {str(error).splitlines()[0]}",
                       InstrumentReportedError)
            return "failed"
        return "more"

    def _samples_to_read(self, task: Any) -> int:
        """One chunk, or every whole chunk already waiting when the reader is behind.

        Why: after a stall of the reader many chunks wait in the device buffer; fetching them in
        one call instead of one call per chunk keeps it from falling further behind. Costs one
        attribute query per read.
        """
        try:
            waiting = int(task.in_stream.avail_samp_per_chan)
        except (nidaqmx.errors.DaqError, nidaqmx.errors.RpcError):
            return self.chunk_samples  # the read itself will report what is wrong
        chunks = min(MAX_CHUNKS_PER_READ, max(1, waiting // self.chunk_samples))
        return chunks * self.chunk_samples

    def _publish(self, chunk: DaqChunk) -> None:
        """Listeners first, then the chunk counts as delivered: whoever waits for a sample
        (``wait_for_sample``, a virtual clock before it moves on) then knows the interlock has
        already acted on it."""
        for listener in list(self._listeners):
            try:
                listener(chunk)
            except Exception:  # noqa: BLE001 - a listener bug must not stop the acquisition
                log.exception("%s: chunk listener %r failed", self.name, listener)
        last = chunk.first_index + chunk.n - 1
        latest = {c.latest_key: float(chunk.data[i, -1]) for i, c in enumerate(self.ai_channels)}
        latest["sample_index"] = last
        latest["t_s"] = chunk.t_s(last)
        with self._latest_cond:
            self._latest = latest
            self._latest_cond.notify_all()

    def _fail(self, writer: StreamWriter, at_sample: int, detail: str, cls: type[InstrumentError]) -> None:
        """Mark the acquisition failed and tell every failure listener (the interlock trips on it)."""
        try:
            writer.event("error", detail, at_sample)
        except OSError:
            pass  # the disk that failed the stream may fail its index too; the listeners still hear
        self._failure = cls(self.name, "acquisition", detail)
        self.stats.error = detail
        with self._latest_cond:
            self._latest_cond.notify_all()
        for listener in list(self._failure_listeners):
            try:
                listener(str(self._failure))
            except Exception:  # noqa: BLE001
                log.exception("%s: failure listener %r failed", self.name, listener)

    def latest(self) -> dict[str, float]:
        """The most recent sample of every AI channel (scaled), its sample_index and t_s.

        Waits up to timeout_ms for the first chunk; raises the acquisition's failure if it failed.
        """
        if self._failure is not None:
            raise self._failure
        if self._reader is None and self._paced is None:
            raise InstrumentReportedError(self.name, "latest", "acquisition is not running; call start_acquisition first")
        with self._latest_cond:
            if self._latest is None and self._paced is None:  # paced: nothing arrives while we wait
                self._latest_cond.wait(self.timeout_ms / 1000)
            if self._failure is not None:
                raise self._failure
            if self._latest is None:
                raise InstrumentTimeout(self.name, "latest", f"no samples within {self.timeout_ms} ms")
            return dict(self._latest)

    def wait_for_sample(self, sample_index: int, timeout_s: float) -> bool:
        """Block until the reader has delivered ``sample_index`` (for virtual-time callers)."""
        deadline = time.monotonic() + timeout_s
        with self._latest_cond:
            while self._latest is None or self._latest["sample_index"] < sample_index:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._failure is not None or not self.acquiring:
                    return False
                self._latest_cond.wait(min(remaining, 0.1))
            return True

    def wait_for_elapsed(self, elapsed_s: float, timeout_s: float = 10.0) -> bool:
        """Block until the reader has delivered every full chunk acquired in the first
        ``elapsed_s`` of acquisition: the barrier a virtual clock needs so that jumping time never
        outruns the device buffer (which would be a genuine DAQmx overflow)."""
        samples = int(round(elapsed_s * self.rate_hz)) - 1  # a sample landing exactly at the end may be late
        last_full_chunk = (samples // self.chunk_samples) * self.chunk_samples - 1
        if not self.acquiring or last_full_chunk < 0:
            return True
        stream = self._paced
        if stream is not None:
            with self._paced_lock:  # one paced reader at a time
                while stream.next_index <= last_full_chunk:
                    want = min(last_full_chunk + 1 - stream.next_index, MAX_CHUNKS_PER_READ * self.chunk_samples)
                    if self._read_once(stream, want, False) == "failed":
                        return False
            return True
        return self.wait_for_sample(last_full_chunk, timeout_s)

    def stop_acquisition(self) -> AcquisitionStats:
        """Stop the task; the reader saves what was acquired and exits. Returns its statistics."""
        if self._paced is not None:
            return self._stop_paced()
        if self._reader is None:
            return self.stats
        self._stop.set()
        task, self._ai_task = self._ai_task, None
        try:
            with self._op("stop_acquisition"):
                task.stop()
        except InstrumentError as exc:
            log.warning("%s", exc)
        self._reader.join(timeout=max(5.0, self.timeout_ms / 1000 * 2))
        if self._reader.is_alive():
            log.warning("%s: reader thread did not stop", self.name)
        self._reader = None
        try:
            task.close()
        except Exception:  # noqa: BLE001 - the server may be gone already
            pass
        self.stats.stopped_monotonic = time.monotonic()
        return self.stats

    def _stop_paced(self) -> AcquisitionStats:
        """Stop a paced acquisition: save what the device still holds, close the stream."""
        stream, self._paced = self._paced, None
        assert stream is not None
        self._stop.set()
        task, self._ai_task = self._ai_task, None
        cpu0 = time.thread_time()
        try:
            if self._failure is None:
                try:
                    left = int(task.in_stream.avail_samp_per_chan)
                except (nidaqmx.errors.DaqError, nidaqmx.errors.RpcError):
                    left = 0
                while left > 0:
                    want = min(left, MAX_CHUNKS_PER_READ * self.chunk_samples)
                    before = stream.next_index
                    if self._read_once(stream, want, True) != "more" or stream.next_index == before:
                        break
                    left -= stream.next_index - before
            try:
                with self._op("stop_acquisition"):
                    task.stop()
            except InstrumentError as exc:
                log.warning("%s", exc)
        finally:
            self.stats.reader_cpu_s += time.thread_time() - cpu0
            self._close_stream(stream)
            try:
                task.close()
            except Exception:  # noqa: BLE001 - the server may be gone already
                pass
            self.stats.stopped_monotonic = time.monotonic()
        return self.stats

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop acquiring and release every task and the connection (outputs keep their state)."""
        try:
            self.stop_acquisition()
        finally:
            for attr in ("_ao_task", "_do_task"):
                task = getattr(self, attr, None)
                setattr(self, attr, None)
                if task is not None:
                    try:
                        task.close()
                    except Exception:  # noqa: BLE001 - closing must not mask the real error
                        pass
            if self._grpc_channel is not None:
                self._grpc_channel.close()
                self._grpc_channel = None

    def __enter__(self) -> "Daq":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
