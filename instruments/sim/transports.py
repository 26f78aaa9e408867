"""Real transports for emulators: pseudo-terminals (serial instruments) and TCP sockets (SCPI).

Why real transports: drivers (and third-party software written for the real instruments) open
``ASRL/dev/pts/N::INSTR`` or ``TCPIP::127.0.0.1::PORT::SOCKET`` through pyvisa exactly as on a
bench. Transport faults injected through the control channel are applied here, below the
emulator: "silent" swallows requests, "garbage" answers noise, "drop" closes the connection.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
import tty
from collections.abc import Callable

from instruments.sim.emulator import Emulator
from instruments.sim.peer import same_user


MAX_REQUEST_BYTES = 64 * 1024  # an instrument's input buffer: a longer line is discarded, not kept
POLL_S = 0.1  # how often a transport lets its instrument act unasked (watchdogs, alarms, repeats)


class _RequestLoop:
    """Frames a byte stream into requests and answers them, honouring injected faults.

    Bounded and linear: bytes already searched for the terminator are not searched again, and a
    line longer than MAX_REQUEST_BYTES is discarded up to its terminator (the emulator's
    ``input_overrun`` hook, if any, is told, as a real instrument queues an input-overrun error).
    """

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._buffer = bytearray()
        self._searched = 0  # bytes of _buffer known not to hold a terminator (minus its length - 1)
        self._discarding = False
        self._last_byte = time.monotonic()
        self.last_idle = time.monotonic()

    def idle(self, send: Callable[[bytes], None]) -> None:
        """Between reads: drop a stale partial request, send what the instrument sends unasked."""
        self.last_idle = time.monotonic()
        self._drop_stale(self.last_idle)
        if self.emulator.world.fault_of(self.emulator.name) in ("silent", "drop"):
            return
        unasked = self.emulator.poll()
        if unasked:
            send(unasked)

    def _drop_stale(self, now: float) -> None:
        """An instrument with an inter-byte timeout discards a request that stalled half-way."""
        timeout = self.emulator.interbyte_timeout_s
        if self._buffer and timeout is not None and now - self._last_byte > timeout:
            self._buffer.clear()
            self._searched = 0

    def _next_packet(self) -> bytes | None:
        """A request framed by the emulator itself (binary packets, e.g. NE-1000 Safe mode)."""
        request, rest = self.emulator.next_request(bytes(self._buffer))
        self._buffer = bytearray(rest)
        self._searched = 0
        return request

    def _overrun(self) -> None:
        hook = getattr(self.emulator, "input_overrun", None)
        if callable(hook):
            hook()

    def _next_request(self, term: bytes) -> bytes | None:
        """The next complete request, or None when more bytes are needed (overlong lines dropped)."""
        while True:
            at = self._buffer.find(term, self._searched)
            if at < 0:
                if len(self._buffer) > MAX_REQUEST_BYTES:
                    keep = len(term) - 1  # a terminator may straddle the next read
                    del self._buffer[:len(self._buffer) - keep]
                    if not self._discarding:
                        self._discarding = True
                        self._overrun()
                self._searched = max(0, len(self._buffer) - len(term) + 1)
                return None
            request = bytes(self._buffer[:at])
            del self._buffer[:at + len(term)]
            self._searched = 0
            if self._discarding:  # the end of an overlong line: drop it, go on with the next
                self._discarding = False
                continue
            if len(request) > MAX_REQUEST_BYTES:
                self._overrun()
                continue
            return request

    def feed(self, data: bytes, send: Callable[[bytes], None]) -> bool:
        """Process incoming bytes; return False when the connection must be dropped."""
        now = time.monotonic()
        self._drop_stale(now)
        self._last_byte = now
        self._buffer += data
        term = self.emulator.request_terminator
        while True:
            request = self._next_packet() if self.emulator.packet_framed() else self._next_request(term)
            if request is None:
                return True
            fault = self.emulator.world.fault_of(self.emulator.name)
            if fault == "drop":
                return False
            if fault == "silent":
                continue
            if fault == "garbage":
                send(self.emulator.garbage())
                continue
            reply = self.emulator.handle(request)
            if reply:
                send(reply)


class PtyPort:
    """Serves one emulator on a pseudo-terminal; clients open ``self.path`` as a serial port."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: bytes as on a serial cable
        self.path = os.ttyname(self._slave)
        self.resource = f"ASRL{self.path}::INSTR"
        self._closed = threading.Event()
        # written to by close(): wakes the reader's select() at once instead of after its timeout
        # (the bench stops when every run ends; each port used to add up to POLL_S to that)
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name=f"pty-{emulator.name}", daemon=True)

    def start(self) -> "PtyPort":
        self._thread.start()
        return self

    def _send(self, data: bytes) -> None:
        os.write(self._master, data)

    def _run(self) -> None:
        loop = _RequestLoop(self.emulator)
        while not self._closed.is_set():
            ready, _, _ = select.select([self._master, self._wake_r], [], [], POLL_S)
            if self._closed.is_set():
                break
            try:
                if self._master in ready:
                    data = os.read(self._master, 4096)
                    if not loop.feed(data, self._send):
                        self.close()
                        break
                if not ready or time.monotonic() - loop.last_idle >= POLL_S:  # a busy line still gets it
                    loop.idle(self._send)
            except OSError:
                break

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            # The reader sits in select() on the master; the pty only goes away once it returns.
            self._thread.join(timeout=1.0)
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


class TcpPort:
    """Serves one emulator on a loopback TCP port (raw socket, as SCPI instruments on 5025)."""

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator
        self._server = socket.create_server((host, port))
        self.host, self.port = self._server.getsockname()[:2]
        self.resource = f"TCPIP::{self.host}::{self.port}::SOCKET"
        self._closed = threading.Event()
        self._conns: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, name=f"tcp-{emulator.name}", daemon=True)

    def start(self) -> "TcpPort":
        self._thread.start()
        return self

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, address = self._server.accept()
            except OSError:
                break
            if not same_user(self.port, address):  # only the bench's own user (instruments.sim.peer)
                conn.close()
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        loop = _RequestLoop(self.emulator)
        try:
            while not self._closed.is_set():
                if self.emulator.world.fault_of(self.emulator.name) == "drop":
                    break
                ready, _, _ = select.select([conn], [], [], POLL_S)
                if ready:
                    data = conn.recv(4096)
                    if not data or not loop.feed(data, conn.sendall):
                        break
                if not ready or time.monotonic() - loop.last_idle >= POLL_S:  # a busy line still gets it
                    loop.idle(conn.sendall)
        except OSError:
            pass
        finally:
            self._conns.discard(conn)
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self._closed.set()
        try:
            self._server.shutdown(socket.SHUT_RDWR)  # wakes accept(); close() alone does not on Linux
        except OSError:
            pass
        try:
            self._server.close()
        except OSError:
            pass
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=1.0)
        for conn in list(self._conns):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
