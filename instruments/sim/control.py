"""Client of the simulated bench's control channel (JSON lines over TCP on loopback).

Why a separate channel: fault injection and virtual time must not travel over the instrument
transports, which carry only what a real instrument would see.

Protocol: one JSON object per line each way. Request ``{"cmd": NAME, ...args}``; reply
``{"ok": true, ...result}`` or ``{"ok": false, "error": "message"}``.

Commands (served by instruments.sim.server):
  time                                  -> {"t_s": float, "mode": "real"|"virtual"}
  advance   dt_s, guard?                -> {"t_s": float, "stopped": reason|null}  (virtual mode only;
            guard {"channel", "above", "chunk_samples"}: stop at the end of the DAQ chunk in which
            that AI channel first exceeds "above", so the controller sees it before time moves on)
  fault     instrument, fault           -> {}   fault: "none"|"silent"|"garbage"|"drop"
  line      occlusion?, kink_pct?, leak?, disconnect?  -> {}   (faults of the line itself, at the
                                        catheter; the rig's own fault valves move only with the NI
                                        device's outputs, and its safe state never clears these)
  pump      displacement_factor?, stall? -> {}  (pump faults: real displacement scale, stall alarm)
  state                                 -> {"t_s", "model": {..., "valves", "faults"}, "instruments": {name: {...}}}
  claim     owner: {command, pid, host, run_id, since_utc, ...}
                                        -> {"owner": {...}}; refused ({"busy": true, "owner": ...})
                                           while another connection holds the claim
  release                               -> {}   (closing the connection releases it too)

A controller claims the bench before it touches an instrument; fault-injection and inspection
clients (tests, a second terminal) use the other commands without claiming.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

from rig.errors import SimulatedBenchError


class SimControlError(SimulatedBenchError):
    """The simulated bench refused or could not answer a control command."""

    reply: dict[str, Any] = {}  # the refusal as the bench sent it (empty: no answer at all)


class SimControl:
    """Thread-safe client of the control channel; one persistent connection."""

    def __init__(self, address: str, timeout_s: float = 30.0) -> None:
        host, _, port = address.rpartition(":")
        self.address = address
        self._sock = socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._file = self._sock.makefile("rwb")
        self._lock = threading.Lock()

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        line = json.dumps({"cmd": cmd, **args}).encode() + b"\n"
        with self._lock:
            try:
                self._file.write(line)
                self._file.flush()
                reply = self._file.readline()
            except OSError as exc:
                raise SimControlError(f"simulated bench control {self.address}: {exc}") from exc
        if not reply:
            raise SimControlError(f"simulated bench control {self.address} closed the connection")
        data = json.loads(reply)
        if not data.get("ok"):
            error = SimControlError(f"simulated bench refused {cmd!r}: {data.get('error')}")
            error.reply = data  # e.g. {"busy": true, "owner": {...}} for a refused claim
            raise error
        return data

    def time_s(self) -> float:
        return float(self.call("time")["t_s"])

    def advance(self, dt_s: float, guard: dict[str, Any] | None = None) -> float:
        args: dict[str, Any] = {"dt_s": dt_s}
        if guard is not None:
            args["guard"] = guard
        return float(self.call("advance", **args)["t_s"])

    def fault(self, instrument: str, fault: str) -> None:
        self.call("fault", instrument=instrument, fault=fault)

    def line(self, **states: Any) -> None:
        self.call("line", **states)

    def pump(self, **faults: Any) -> None:
        self.call("pump", **faults)

    def state(self) -> dict[str, Any]:
        return self.call("state")

    def claim(self, owner: dict[str, Any]) -> None:
        """Become the bench's one controller (SimControlError naming the owner if taken)."""
        self.call("claim", owner=owner)

    def release(self) -> None:
        """Stop being the controller now (closing the connection does it too, a moment later)."""
        self.call("release")

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            self._sock.close()

    def __enter__(self) -> "SimControl":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
