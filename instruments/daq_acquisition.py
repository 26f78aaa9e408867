"""Streamed acquisition of the DAQ's analog inputs: read, scale, save, hand on, keep the latest.

Acquisition is continuous and buffered on the device; a reader thread reads it one chunk
(``chunk_samples``) at a time, streams every chunk to disk (instruments.daq_stream), keeps only the
latest values in memory, and hands each chunk to the listeners (instruments.daq_listeners: the
overpressure interlock runs there). AI channels are read in volts and scaled here with the
transducer's linear calibration (``value = volts · scale_per_volt + offset``) so the calibration
is versioned with the station file and recorded with every run. With a virtual clock the caller
paces the reads instead of a thread (``paced``; see ``DaqAcquisition.start``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nidaqmx
import nidaqmx.errors
import numpy as np
from nidaqmx.constants import AcquisitionType
from nidaqmx.error_codes import DAQmxErrors
from nidaqmx.stream_readers import AnalogMultiChannelReader

from instruments.daq_channels import AiChannel, DaqConfigError
from instruments.daq_link import AI_RANGE_V, DaqLink, close_quietly, log
from instruments.daq_listeners import DaqChunk, DaqListeners
from instruments.daq_stream import AveragingStreamWriter, StreamWriter
from instruments.errors import InstrumentDisconnected, InstrumentError, InstrumentReportedError, InstrumentTimeout

BUFFER_SECONDS = 600.0  # device input buffer: room for the reader to fall behind this long
MAX_CHUNKS_PER_READ = 512  # how many waiting chunks one read may fetch
# Paced (virtual-time) acquisition: the caller reads when its clock has jumped, so the buffer
# sets how far time may jump between reads (rig.engine.acquisition.DAQ_PACE_S is half of it).
# Each read costs a gRPC round trip (~1 ms here), and a 42-day refill interval is 3.6 million
# seconds: 2 h of buffer and reads of up to PACED_READ_BYTES make that ~1000 reads, not 12,000.
PACED_BUFFER_SECONDS = 7200.0
PACED_READ_BYTES = 3 * 1024 * 1024  # under gRPC's default 4 MB message limit with room to spare


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

    def close(self, instrument: str) -> None:
        try:
            self.writer.close()
        except OSError as exc:
            log.warning("%s: closing the sample stream: %s", instrument, exc)


def _samples_to_read(task: Any, chunk_samples: int) -> int:
    """One chunk, or every whole chunk already waiting when the reader is behind.

    Why: after a stall of the reader many chunks wait in the device buffer; fetching them in
    one call instead of one call per chunk keeps it from falling further behind. Costs one
    attribute query per read.
    """
    try:
        waiting = int(task.in_stream.avail_samp_per_chan)
    except (nidaqmx.errors.DaqError, nidaqmx.errors.RpcError):
        return chunk_samples  # the read itself will report what is wrong
    chunks = min(MAX_CHUNKS_PER_READ, max(1, waiting // chunk_samples))
    return chunks * chunk_samples


class DaqAcquisition:
    """One DAQ's acquisition: at most one running at a time, its statistics, its latest values."""

    def __init__(self, link: DaqLink, ai_channels: list[AiChannel], rate_hz: float, chunk_samples: int,
                 listeners: DaqListeners) -> None:
        self._link = link
        self.name = link.name
        self.ai_channels = ai_channels
        self.rate_hz = rate_hz
        self.chunk_samples = chunk_samples
        self._listeners = listeners
        self._latest: dict[str, float] | None = None
        self._latest_cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._ai_task: Any = None
        self._stop = threading.Event()
        self._paced: _Stream | None = None  # paced acquisition: read by wait_for_elapsed's caller
        self._paced_lock = threading.RLock()
        self._failure: InstrumentError | None = None
        self.stats = AcquisitionStats()

    @property
    def acquiring(self) -> bool:
        if self._paced is not None:
            return self._failure is None
        return self._reader is not None and self._reader.is_alive()

    def start(self, out_path: str | Path, *, paced: bool = False, stored_rate_hz: float | None = None) -> Path:
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
        link = self._link
        seconds = PACED_BUFFER_SECONDS if paced else BUFFER_SECONDS
        buffer = max(10 * self.chunk_samples, int(self.rate_hz * seconds))
        with link.op("start_acquisition"):
            task = link.new_task()
            self._ai_task = task
            for ch in self.ai_channels:
                task.ai_channels.add_ai_voltage_chan(
                    link.physical(ch.physical), ch.name, min_val=-AI_RANGE_V, max_val=AI_RANGE_V
                )
            task.timing.cfg_samp_clk_timing(
                self.rate_hz, sample_mode=AcquisitionType.CONTINUOUS, samps_per_chan=buffer
            )
            task.start()
        header = {
            "instrument": self.name,
            "device": link.device,
            "grpc_server": link.grpc_server,
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
            self._paced = self._stream(task, writer, self._paced_read_samples())
            return Path(out_path)
        self._reader = threading.Thread(target=self._read_loop, args=(task, writer), name=f"{self.name}-reader", daemon=True)
        self._reader.start()
        return Path(out_path)

    def _paced_read_samples(self) -> int:
        """Whole chunks per paced read: as many as fit in PACED_READ_BYTES (at least one)."""
        per_chunk = 8 * len(self.ai_channels) * self.chunk_samples
        return max(1, PACED_READ_BYTES // per_chunk) * self.chunk_samples

    def _stream(self, task: Any, writer: StreamWriter, read_samples: int | None = None) -> _Stream:
        reader = AnalogMultiChannelReader(task.in_stream)
        reader.verify_array_shape = False
        n_ch = len(self.ai_channels)
        return _Stream(
            task=task, writer=writer, reader=reader,
            names=tuple(c.name for c in self.ai_channels),
            scale=np.array([c.scale_per_volt for c in self.ai_channels])[:, None],
            offset=np.array([c.offset for c in self.ai_channels])[:, None],
            buf=np.zeros((n_ch, read_samples or self.chunk_samples * MAX_CHUNKS_PER_READ)),
            # Long enough for a chunk in real time; in virtual time a timeout just means "no time passed".
            timeout_s=max(self._link.timeout_s, 3 * self.chunk_samples / self.rate_hz),
        )

    def _read_loop(self, task: Any, writer: StreamWriter) -> None:
        stream = self._stream(task, writer)
        cpu0 = time.thread_time()
        try:
            while True:
                stopping = self._stop.is_set()
                want = _samples_to_read(task, self.chunk_samples)
                result = self._read_once(stream, want, stopping)
                self.stats.reader_cpu_s = time.thread_time() - cpu0
                if result != "more" or stopping:
                    return
        finally:
            self.stats.reader_cpu_s = time.thread_time() - cpu0
            stream.close(self.name)

    def _read_once(self, stream: _Stream, want: int, stopping: bool) -> str:
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
            self._fail(stream.writer, stream.next_index, f"NI gRPC device server {self._link.grpc_server}: {exc}",
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
            listener_failure = self._publish(chunk)
            self.stats.samples = stream.next_index
            self.stats.chunks += 1
            if listener_failure is not None:
                self._fail(stream.writer, stream.next_index, listener_failure, InstrumentReportedError)
                return "failed"
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

    def _publish(self, chunk: DaqChunk) -> str | None:
        """Listeners first, then the chunk counts as delivered: whoever waits for a sample
        (``wait_for_sample``, a virtual clock before it moves on) then knows the interlock has
        already acted on it. Returns why a safety listener failed, if one did."""
        failure = self._listeners.publish(chunk)
        last = chunk.first_index + chunk.n - 1
        latest = {c.latest_key: float(chunk.data[i, -1]) for i, c in enumerate(self.ai_channels)}
        latest["sample_index"] = last
        latest["t_s"] = chunk.t_s(last)
        with self._latest_cond:
            self._latest = latest
            self._latest_cond.notify_all()
        return failure

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
        self._listeners.tell_failure(str(self._failure))

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
                self._latest_cond.wait(self._link.timeout_s)
            if self._failure is not None:
                raise self._failure
            if self._latest is None:
                raise InstrumentTimeout(self.name, "latest", f"no samples within {self._link.timeout_ms} ms")
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
                    want = min(last_full_chunk + 1 - stream.next_index, stream.buf.shape[1])
                    if self._read_once(stream, want, False) == "failed":
                        return False
            return True
        return self.wait_for_sample(last_full_chunk, timeout_s)

    def stop(self) -> AcquisitionStats:
        """Stop the task; the reader saves what was acquired and exits. Returns its statistics."""
        if self._paced is not None:
            return self._stop_paced()
        if self._reader is None:
            return self.stats
        self._stop.set()
        task, self._ai_task = self._ai_task, None
        try:
            with self._link.op("stop_acquisition"):
                task.stop()
        except InstrumentError as exc:
            log.warning("%s", exc)
        self._reader.join(timeout=max(5.0, self._link.timeout_s * 2))
        if self._reader.is_alive():
            log.warning("%s: reader thread did not stop", self.name)
        self._reader = None
        close_quietly(task)
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
                    want = min(left, stream.buf.shape[1])
                    before = stream.next_index
                    if self._read_once(stream, want, True) != "more" or stream.next_index == before:
                        break
                    left -= stream.next_index - before
            try:
                with self._link.op("stop_acquisition"):
                    task.stop()
            except InstrumentError as exc:
                log.warning("%s", exc)
        finally:
            self.stats.reader_cpu_s += time.thread_time() - cpu0
            stream.close(self.name)
            close_quietly(task)
            self.stats.stopped_monotonic = time.monotonic()
        return self.stats


__all__ = ["BUFFER_SECONDS", "MAX_CHUNKS_PER_READ", "PACED_BUFFER_SECONDS", "PACED_READ_BYTES", "AcquisitionStats", "DaqAcquisition"]
