"""Server side of the simulated bench's control channel (protocol: instruments.sim.control).

Why its own module: fault injection and virtual time are the test engineer's levers on the bench;
they must be strict (a typo in a fault name is an error, not a silent no-op) and must never travel
over the instrument transports. One JSON object per line each way, one thread per client.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import socketserver
import threading
from collections.abc import Callable, Mapping
from typing import Any

from instruments.sim.world import TRANSPORT_FAULTS, SimWorld

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024


class CommandError(ValueError):
    """A control request the bench refuses; the message goes back to the client verbatim."""


# -- argument checking ---------------------------------------------------------------------------


def _bool(cmd: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise CommandError(f"{cmd}: {key} must be true or false, got {value!r}")
    return value


def _number(cmd: str, key: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CommandError(f"{cmd}: {key} must be a number, got {value!r}")
    if not lo <= value <= hi:
        raise CommandError(f"{cmd}: {key} must be between {lo:.10g} and {hi:.10g}, got {value!r}")
    return float(value)


def _string(cmd: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise CommandError(f"{cmd}: {key} must be a string, got {value!r}")
    return value


def _check_keys(cmd: str, args: Mapping[str, Any], required: set[str], optional: set[str]) -> None:
    missing = sorted(required - args.keys())
    if missing:
        raise CommandError(f"{cmd}: missing argument(s) {', '.join(missing)}")
    unknown = sorted(args.keys() - required - optional)
    if unknown:
        allowed = ", ".join(sorted(required | optional)) or "none"
        raise CommandError(f"{cmd}: unknown argument(s) {', '.join(unknown)} (allowed: {allowed})")


# -- the commands ----------------------------------------------------------------------------------


class ControlHandler:
    """Executes control commands against the world. Transport-free so it is easy to reason about.

    ``instruments`` maps instrument name -> object with ``state()`` (the emulators);
    ``daq`` is (instrument name, DAQ server object) when the station has a simulated DAQ.
    """

    def __init__(
        self,
        world: SimWorld,
        instruments: Mapping[str, Any],
        daq: tuple[str, Any] | None = None,
    ) -> None:
        self.world = world
        self.instruments = dict(instruments)
        self.daq = daq
        self._commands: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "time": self._time,
            "advance": self._advance,
            "fault": self._fault,
            "line": self._line,
            "pump": self._pump,
            "state": self._state,
        }

    def execute(self, request: Any) -> dict[str, Any]:
        """One request object -> one reply object (always; never raises for client mistakes)."""
        try:
            if not isinstance(request, dict):
                raise CommandError(f"request must be a JSON object, got {type(request).__name__}")
            args = dict(request)
            cmd = args.pop("cmd", None)
            if not isinstance(cmd, str):
                raise CommandError(f"request needs \"cmd\" (one of {', '.join(self._commands)})")
            if cmd not in self._commands:
                raise CommandError(f"unknown command {cmd!r} (known: {', '.join(self._commands)})")
            return {"ok": True, **self._commands[cmd](args)}
        except CommandError as exc:
            return {"ok": False, "error": str(exc)}

    def _names(self) -> list[str]:
        return sorted([*self.instruments, *([self.daq[0]] if self.daq else [])])

    def _time(self, args: dict[str, Any]) -> dict[str, Any]:
        _check_keys("time", args, set(), set())
        return {"t_s": self.world.now_s(), "mode": "virtual" if self.world.virtual else "real"}

    def _advance(self, args: dict[str, Any]) -> dict[str, Any]:
        _check_keys("advance", args, {"dt_s"}, {"guard"})
        if not self.world.virtual:
            raise CommandError("advance: the bench runs in real time; advance needs clock = \"virtual\"")
        dt_s = _number("advance", "dt_s", args["dt_s"], 0.0, 366 * 86400.0)
        guard = self._guard(args.get("guard"))
        t_s = self.world.advance(dt_s, guard)
        return {"t_s": t_s, "stopped": self.world.stopped_by}

    @staticmethod
    def _guard(value: Any) -> dict[str, Any] | None:
        """advance's guard: stop at the end of the DAQ chunk in which ``channel`` exceeds ``above``."""
        if value is None:
            return None
        if not isinstance(value, dict):
            raise CommandError(f"advance: guard must be an object or null, got {value!r}")
        _check_keys("advance guard", value, {"channel", "above", "chunk_samples"}, set())
        return {
            "channel": _string("advance guard", "channel", value["channel"]),
            "above": _number("advance guard", "above", value["above"], -1e12, 1e12),
            "chunk_samples": int(_number("advance guard", "chunk_samples", value["chunk_samples"], 1, 1e9)),
        }

    def _fault(self, args: dict[str, Any]) -> dict[str, Any]:
        _check_keys("fault", args, {"instrument", "fault"}, set())
        name = _string("fault", "instrument", args["instrument"])
        fault = _string("fault", "fault", args["fault"])
        if name not in self._names():
            raise CommandError(f"fault: unknown instrument {name!r} (known: {', '.join(self._names())})")
        if fault not in TRANSPORT_FAULTS:
            raise CommandError(f"fault: fault must be one of {', '.join(TRANSPORT_FAULTS)}, got {fault!r}")
        self.world.set_fault(name, fault)
        return {}

    def _line(self, args: dict[str, Any]) -> dict[str, Any]:
        """Faults of the line itself (at the catheter), never the rig's valves: only the NI
        device's outputs move those, so nothing a test injects here can be undone by the rig."""
        flags = {"occlusion", "leak", "disconnect"}
        _check_keys("line", args, set(), flags | {"kink_pct"})
        changes: dict[str, Any] = {k: _bool("line", k, args[k]) for k in flags & args.keys()}
        if "kink_pct" in args:
            changes["kink_pct"] = _number("line", "kink_pct", args["kink_pct"], 0.0, 100.0)
        with self.world.locked() as model:  # model is synced to now before the valves move
            for key, value in changes.items():
                setattr(model.faults, key, value)
        return {}

    def _pump(self, args: dict[str, Any]) -> dict[str, Any]:
        _check_keys("pump", args, set(), {"displacement_factor", "stall"})
        factor = None
        if "displacement_factor" in args:
            factor = _number("pump", "displacement_factor", args["displacement_factor"], 0.1, 2.0)
        stall = _bool("pump", "stall", args["stall"]) if "stall" in args else None
        with self.world.locked() as model:
            if factor is not None:
                model.pump.displacement_factor = factor
            if stall is not None:
                model.pump.force_stall = stall
                if not stall:
                    model.pump.stalled = False
        return {}

    def _state(self, args: dict[str, Any]) -> dict[str, Any]:
        _check_keys("state", args, set(), set())
        with self.world.locked() as model:
            snapshot = model.snapshot()
        # Instrument states are read outside the world lock: emulators and the DAQ server may
        # hold their own locks while waiting for the world's, and we must not invert that order.
        reply: dict[str, Any] = {
            "t_s": snapshot["t_s"],
            "model": snapshot,
            "instruments": {name: emu.state() for name, emu in self.instruments.items()},
        }
        if self.daq and callable(getattr(self.daq[1], "state", None)):
            reply["daq"] = self.daq[1].state()
        return reply


# -- the TCP server --------------------------------------------------------------------------------


class _Connection(socketserver.StreamRequestHandler):
    server: "_TcpServer"

    def handle(self) -> None:
        self.server.track(self.connection, add=True)
        try:
            while True:
                line = self.rfile.readline(MAX_LINE_BYTES + 1)
                if not line:
                    return
                if not line.strip():
                    continue
                reply = self._answer(line)
                self.wfile.write(json.dumps(reply, default=str).encode() + b"\n")
                self.wfile.flush()
        except OSError:
            return  # client went away or the server is stopping
        finally:
            self.server.track(self.connection, add=False)
            self.server.disown(self.connection)

    def _answer(self, line: bytes) -> dict[str, Any]:
        if len(line) > MAX_LINE_BYTES:
            return {"ok": False, "error": f"request longer than {MAX_LINE_BYTES} bytes"}
        try:
            request = json.loads(line, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            return {"ok": False, "error": f"request is not valid JSON: {exc}"}
        if isinstance(request, dict) and request.get("cmd") in ("claim", "release"):
            return self.server.ownership(self.connection, request)
        try:
            return self.server.handler.execute(request)
        except Exception as exc:  # a bug, not a client mistake: report it and keep serving
            log.exception("control command failed: %r", request)
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}


def _who(owner: dict[str, Any]) -> str:
    """An owner as one phrase (the fields rig.station.lock.Holder records)."""
    run = f", run {owner['run_id']}" if owner.get("run_id") else ""
    return (f"{owner.get('command', 'a controller')!r} (pid {owner.get('pid', '?')} on host "
            f"{owner.get('host', '?')}{run}) since {owner.get('since_utc', '?')}")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed")


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: ControlHandler) -> None:
        self.handler = handler
        self._conns: set[socket.socket] = set()
        self._owner: tuple[socket.socket, dict[str, Any]] | None = None  # (connection, who)
        self._conns_lock = threading.Lock()
        super().__init__(address, _Connection)

    def ownership(self, conn: socket.socket, request: dict[str, Any]) -> dict[str, Any]:
        """``claim`` (owner: {...}) / ``release``: one controller per bench, like the real rig.

        Why per connection: a controller that dies (kill -9 included) closes its connection, and
        with it its claim, so a dead owner can never block the bench."""
        args = dict(request)
        cmd = args.pop("cmd")
        with self._conns_lock:
            if cmd == "release":
                if self._owner is not None and self._owner[0] is conn:
                    self._owner = None
                return {"ok": True}
            owner = args.get("owner")
            if set(args) != {"owner"} or not isinstance(owner, dict):
                return {"ok": False, "error": "claim: needs exactly one argument, owner (an object)"}
            if self._owner is not None and self._owner[0] is not conn:
                return {"ok": False, "busy": True, "owner": self._owner[1],
                        "error": f"the simulated bench is in use by another controller: {_who(self._owner[1])}"}
            self._owner = (conn, owner)
            log.info("claimed by %s", _who(owner))
            return {"ok": True, "owner": owner}

    def disown(self, conn: socket.socket) -> None:
        with self._conns_lock:
            if self._owner is not None and self._owner[0] is conn:
                log.info("released by %s (connection closed)", _who(self._owner[1]))
                self._owner = None

    def owner(self) -> dict[str, Any] | None:
        with self._conns_lock:
            return None if self._owner is None else dict(self._owner[1])

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def drop_all(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class ControlServer:
    """The control channel on 127.0.0.1 (ephemeral port unless given); ``address`` = "host:port"."""

    def __init__(self, handler: ControlHandler, host: str = "127.0.0.1", port: int = 0) -> None:
        self.handler = handler
        self._server = _TcpServer((host, port), handler)
        h, p = self._server.server_address[:2]
        self.address = f"{h}:{p}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="sim-control", daemon=True)
        self._stopped = False

    def start(self) -> "ControlServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, disconnect clients (they see EOF), release the port. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.drop_all()
        self._server.server_close()
