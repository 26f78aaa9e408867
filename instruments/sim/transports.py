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
import tty
from collections.abc import Callable

from instruments.sim.emulator import Emulator


class _RequestLoop:
    """Frames a byte stream into requests and answers them, honouring injected faults."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._buffer = b""

    def feed(self, data: bytes, send: Callable[[bytes], None]) -> bool:
        """Process incoming bytes; return False when the connection must be dropped."""
        self._buffer += data
        term = self.emulator.request_terminator
        while term in self._buffer:
            request, self._buffer = self._buffer.split(term, 1)
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
        return True


class PtyPort:
    """Serves one emulator on a pseudo-terminal; clients open ``self.path`` as a serial port."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline: bytes as on a serial cable
        self.path = os.ttyname(self._slave)
        self.resource = f"ASRL{self.path}::INSTR"
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pty-{emulator.name}", daemon=True)

    def start(self) -> "PtyPort":
        self._thread.start()
        return self

    def _send(self, data: bytes) -> None:
        os.write(self._master, data)

    def _run(self) -> None:
        loop = _RequestLoop(self.emulator)
        while not self._closed.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(self._master, 4096)
            except OSError:
                break
            if not loop.feed(data, self._send):
                self.close()
                break

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            # The reader sits in select() on the master; the pty only goes away once it returns.
            self._thread.join(timeout=1.0)
        for fd in (self._master, self._slave):
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
                conn, _ = self._server.accept()
            except OSError:
                break
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        loop = _RequestLoop(self.emulator)
        try:
            while not self._closed.is_set():
                if self.emulator.world.fault_of(self.emulator.name) == "drop":
                    break
                ready, _, _ = select.select([conn], [], [], 0.1)
                if not ready:
                    continue
                data = conn.recv(4096)
                if not data or not loop.feed(data, conn.sendall):
                    break
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
