"""Start the simulated NI device server: the NI-DAQmx gRPC service on a loopback port.

Why gRPC and not a Python fake: the unmodified ``nidaqmx`` package reaches it with its public
``GrpcSessionOptions``, exactly as it reaches NI's remote gRPC Device Server, so the production
driver runs the same code against the simulated bench and against hardware.
"""

from __future__ import annotations

import logging
import time
import zlib
from concurrent import futures
from typing import Any

import grpc
from nidaqmx._stubs import nidaqmx_pb2_grpc as pb_grpc

from instruments.sim.daq_device import VirtualDaq
from instruments.sim.daq_service import DaqService
from instruments.sim.peer import grpc_peer_allowed
from instruments.sim.world import SimWorld

log = logging.getLogger(__name__)

# Blocking reads occupy a worker each; outputs, attribute getters and several clients need the rest.
MAX_WORKERS = 16
PEER_CACHE_S = 2.0


class _SameUserOnly(grpc.ServerInterceptor):
    """Every call is checked against the peer's uid (instruments.sim.peer) before it runs."""

    def __init__(self) -> None:
        self.port = 0  # set once the server is bound
        # Peers already checked, with when: the acquisition reader calls many times a second on one
        # connection, and reading the kernel's socket table each time would slow it below real time.
        # A short lifetime bounds how long a closed connection's port could be reused unseen.
        self._allowed: dict[str, float] = {}

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        fields = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
        return handler._replace(**{f: self._guard(getattr(handler, f)) for f in fields if getattr(handler, f)})

    def _guard(self, behaviour: Any) -> Any:
        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            peer, now = context.peer(), time.monotonic()
            if now - self._allowed.get(peer, -PEER_CACHE_S) >= PEER_CACHE_S:
                if not grpc_peer_allowed(self.port, peer):
                    context.abort(grpc.StatusCode.PERMISSION_DENIED, "only the simulated bench's own user may use it")
                if len(self._allowed) > 1024:
                    self._allowed.clear()
                self._allowed[peer] = now
            return behaviour(request, context)

        return guarded


class DaqServer:
    """The running server: ``stop()``, ``state()`` and the virtual ``device`` (for tests)."""

    def __init__(self, world: SimWorld, device: VirtualDaq, host: str = "127.0.0.1") -> None:
        self.world = world
        self.device = device
        guard = _SameUserOnly()
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="sim-daq"),
            options=[("grpc.max_send_message_length", 64 * 1024 * 1024)],
            interceptors=[guard],
        )
        pb_grpc.add_NiDAQmxServicer_to_server(DaqService(device), self._server)
        port = self._server.add_insecure_port(f"{host}:0")
        if port == 0:
            raise OSError(f"simulated NI device server: cannot bind a port on {host}")
        guard.port = port
        self.address = f"{host}:{port}"
        self._server.start()

    def state(self) -> dict[str, Any]:
        with self.world.lock:
            return self.device.state()

    def stop(self, grace: float | None = None) -> None:
        """Stop serving; running acquisitions stop and release their model samplers."""
        with self.world.lock:
            for task in list(self.device.tasks.values()):
                self.device.clear(task)
        self._server.stop(grace).wait()


def start_daq_server(world: SimWorld, instrument_config: Any) -> tuple[DaqServer, str]:
    """Serve the station's DAQ (an ``rig.station.model.InstrumentConfig``): resource = NI device name,
    serial, options.channels = the wiring. Returns (server, "127.0.0.1:port")."""
    options = dict(getattr(instrument_config, "options", {}) or {})
    device = VirtualDaq(
        world,
        device_name=str(instrument_config.resource),
        serial=str(getattr(instrument_config, "serial", "") or ""),
        channels=dict(options.get("channels") or {}),
        # own noise stream: drawing from the model's RNG would shift every other emulator's noise
        seed=zlib.crc32(f"{instrument_config.resource}/{getattr(instrument_config, 'serial', '')}".encode()),
    )
    server = DaqServer(world, device)
    log.info("simulated NI-DAQmx device %s on %s", device.device_name, server.address)
    return server, server.address
