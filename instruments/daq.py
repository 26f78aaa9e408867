"""NI multifunction DAQ on the ``nidaqmx`` package: pressure/flow acquisition and the fault valves.

``Daq`` is the driver the station opens (instruments.drivers: "nidaqmx") and the one object the
engine, the procedures and the bench hold. It checks its options and assembles four parts with one
job each, then passes every call to the part that does it:

- ``instruments.daq_link``: the device, local or behind an NI gRPC device server (one code path),
  its tasks and how their failures read;
- ``instruments.daq_outputs``: the kink valve (AO), the fault valves (DO) and the safe state;
- ``instruments.daq_acquisition``: the streamed acquisition (reader thread or paced by a virtual
  clock), the raw stream on disk, the latest values;
- ``instruments.daq_listeners``: the chunk and failure listeners (the overpressure interlock is a
  safety listener: its failure fails the acquisition, so the interlock trips).

Wiring comes from the station file's ``[instruments.<name>.options.channels]``
(instruments.daq_channels: ``aiN`` inputs with their linear calibration, ``kink_valve`` on an
``aoN``, the valves on ``portN/lineM``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from instruments.daq_acquisition import BUFFER_SECONDS, AcquisitionStats, DaqAcquisition
from instruments.daq_channels import AiChannel, DaqConfigError, OPTIONS, wiring
from instruments.daq_link import DaqLink, no_driver_message
from instruments.daq_listeners import ChunkListener, DaqChunk, DaqListeners, FailureListener
from instruments.daq_outputs import KINK_VOLTS_PER_PCT, DaqOutputs
from instruments.visa_instrument import Identity
from rig.settings import check_options


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
        grpc_tls: Mapping[str, Any] | None = None,
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
        wired = wiring(name, options.get("channels") or {})
        self.ai_channels: list[AiChannel] = wired.ai_channels
        self.kink_physical = wired.kink_physical
        self.valve_physical = wired.valve_physical
        self._link = DaqLink(name, resource, timeout_ms=timeout_ms, grpc_server=grpc_server, grpc_tls=grpc_tls)
        try:
            self._outputs = DaqOutputs(self._link, self.kink_physical, self.valve_physical)
        except BaseException:
            self._link.close()
            raise
        self._listeners = DaqListeners(name)
        self._acquisition = DaqAcquisition(self._link, self.ai_channels, self.rate_hz, self.chunk_samples,
                                           self._listeners)

    # -- outputs (instruments.daq_outputs) -------------------------------------------------------

    def set_kink_pct(self, pct: float) -> None:
        """Pinch valve restriction, 0 (open) .. 100 % (closed)."""
        self._outputs.set_kink_pct(pct)

    def set_occlusion(self, closed: bool) -> None:
        self._outputs.set_valve("occlusion_valve", closed)

    def set_leak(self, open_: bool) -> None:
        self._outputs.set_valve("leak_valve", open_)

    def set_disconnect(self, disconnected: bool) -> None:
        self._outputs.set_valve("disconnect_valve", disconnected)

    def read_outputs(self) -> dict[str, Any]:
        """The outputs as the device reports them (not this driver's memory)."""
        return self._outputs.read_outputs()

    def safe_state(self) -> dict[str, Any]:
        """Every fault valve to normal flow and the kink valve open, confirmed by read-back
        (SafeStateNotConfirmed otherwise). Acquisition keeps running meanwhile."""
        return self._outputs.safe_state()

    def identify(self) -> Identity:
        """Product type and serial from the device, NI-DAQmx driver version from its host."""
        return self._link.identify()

    # -- listeners (instruments.daq_listeners) ---------------------------------------------------

    def add_chunk_listener(self, listener: ChunkListener, *, safety: bool = False) -> None:
        """Called in the reader thread with every chunk (keep it quick; it delays the next read).

        A ``safety`` listener (the overpressure interlock) fails closed: if it raises, the
        acquisition fails as a whole and every failure listener hears why (the interlock trips:
        a check that cannot run must not let the pump run on unwatched). Any other listener's
        exception is logged and the acquisition goes on.
        """
        self._listeners.add_chunk(listener, safety=safety)

    def add_failure_listener(self, listener: FailureListener) -> None:
        """Called in the reader thread when the acquisition fails (e.g. buffer overflow)."""
        self._listeners.add_failure(listener)

    def remove_listener(self, listener: ChunkListener | FailureListener) -> None:
        """Stop calling ``listener`` (chunk or failure listener; absent is fine): a run's interlock
        and monitors leave with the run, the DAQ stays open for the next one."""
        self._listeners.remove(listener)

    def listeners(self) -> tuple[list[ChunkListener], list[FailureListener]]:
        """Copies of the registered (chunk, failure) listeners: what a run added is what it must
        remove when it ends (rig.engine.acquisition), and the nightly counts them."""
        return self._listeners.snapshot()

    # -- acquisition (instruments.daq_acquisition) -----------------------------------------------

    @property
    def acquiring(self) -> bool:
        return self._acquisition.acquiring

    @property
    def stats(self) -> AcquisitionStats:
        """What the reader did in the current or last acquisition."""
        return self._acquisition.stats

    def start_acquisition(self, out_path: str | Path, *, paced: bool = False, stored_rate_hz: float | None = None) -> Path:
        """Start continuous acquisition of every AI channel, streaming to ``out_path``
        (``paced``: a virtual clock drives the reads through ``wait_for_elapsed``; see
        instruments.daq_acquisition.DaqAcquisition.start)."""
        return self._acquisition.start(out_path, paced=paced, stored_rate_hz=stored_rate_hz)

    def latest(self) -> dict[str, float]:
        """The most recent sample of every AI channel (scaled), its sample_index and t_s."""
        return self._acquisition.latest()

    def wait_for_sample(self, sample_index: int, timeout_s: float) -> bool:
        """Block until the reader has delivered ``sample_index`` (for virtual-time callers)."""
        return self._acquisition.wait_for_sample(sample_index, timeout_s)

    def wait_for_elapsed(self, elapsed_s: float, timeout_s: float = 10.0) -> bool:
        """Block until every full chunk of the first ``elapsed_s`` of acquisition is delivered."""
        return self._acquisition.wait_for_elapsed(elapsed_s, timeout_s)

    def stop_acquisition(self) -> AcquisitionStats:
        """Stop the task; what was acquired is saved. Returns the reader's statistics."""
        return self._acquisition.stop()

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop acquiring and release every task and the connection (outputs keep their state)."""
        try:
            self._acquisition.stop()
        finally:
            try:
                self._outputs.close()
            finally:
                self._link.close()

    def __enter__(self) -> "Daq":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "BUFFER_SECONDS", "KINK_VOLTS_PER_PCT", "AcquisitionStats", "AiChannel", "ChunkListener", "Daq", "DaqChunk",
    "DaqConfigError", "FailureListener", "no_driver_message",
]
