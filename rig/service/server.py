"""Running the service: hold the bench, check it, serve HTTP(S) until told to stop.

Why the station lock (rig.station.lock) is taken here, once, for the service's whole life: the
service is the bench's one owner; every job it runs opens the bench under this lock, and a second
`rig serve`, a `rig run` or a `rig nightly` beside it is refused, naming the service. SIGTERM/SIGINT stop accepting
jobs, abort the running one (its safe state is reached and recorded), then exit.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rig.service.app import build_app
from rig.service.state import Service
from rig.service.status import check_bench
from rig.station.lock import StationLock, default_lock_dir, warn_takeover

def serve(service: Service, *, tls_cert: Path | None = None, tls_key: Path | None = None,
          check_at_start: bool = True, log_level: str = "warning") -> int:
    """Blocks until SIGINT/SIGTERM; returns the exit code."""
    import uvicorn

    _Server = _uvicorn_server()

    url = f"{'https' if service.tls else 'http'}://{_shown_host(service.host)}:{service.port}/"
    with StationLock.acquire(service.station, owner=f"rig serve {url}") as lock:
        warn_takeover(lock, audit_log_near=service.station.runs_dir)
        service.hold(lock)
        service.jobs.after_job = lambda job: _after_job(service, job)
        service.jobs.start()
        if check_at_start:
            service.jobs.submit_task("check", "instruments", "rig serve", lambda job: _check(service, job))
        config = uvicorn.Config(build_app(service), host=service.host, port=service.port, log_level=log_level,
                                ssl_certfile=str(tls_cert) if tls_cert else None,
                                ssl_keyfile=str(tls_key) if tls_key else None,
                                timeout_graceful_shutdown=2, access_log=False)
        server = _Server(config)
        print(f"rig serve: station {service.station.id} ({service.station.mode}, {service.station.clock} time) "
              f"panel at {url}" + ("" if service.auth_required else " (loopback, no accounts: you are "
                                                                     "signed in as your login name)"), flush=True)
        service.audit("service_started", url=url, auth_required=service.auth_required, tls=service.tls)

        def stop(signum: int, _frame: Any) -> None:
            if server.should_exit:
                print("rig serve: still putting the bench in its safe state; this is not skipped",
                      file=sys.stderr, flush=True)
            server.should_exit = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            server.run()
        finally:
            print("rig serve: stopping; a running procedure is aborted to its safe state", file=sys.stderr, flush=True)
            try:
                service.jobs.stop()
                service.audit("service_stopped", url=url)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
    return 0


class BackgroundService:
    """The service in this process on an ephemeral 127.0.0.1 port, in a thread: holds the station,
    runs the job worker and uvicorn exactly as ``serve`` does, minus signals and the command line.
    For the tests and benchmarks that drive it over real HTTP."""

    def __init__(self, service: Service, lock_dir: Path | None = None) -> None:
        self.service = service
        self.lock_dir = lock_dir
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        service.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{service.port}"
        self._stack = ExitStack()
        self._thread: threading.Thread | None = None
        self._server: Any = None

    def __enter__(self) -> "BackgroundService":
        import uvicorn

        self.lock_dir = self.lock_dir or default_lock_dir()  # pinned for the service's life
        self.service.hold(self._stack.enter_context(
            StationLock.acquire(self.service.station, owner=f"rig serve {self.url}", directory=self.lock_dir)))
        self.service.jobs.start()
        config = uvicorn.Config(build_app(self.service), log_level="warning", access_log=False,
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.__exit__(None, None, None)
                raise RuntimeError("the bench service did not start within 30 s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.service.jobs.stop(timeout_s=60)
        finally:
            if self._server is not None:
                self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(15)
            self.sock.close()
            self._stack.close()


def _uvicorn_server() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn without its own signal handling: the service's handlers stop it and then wait
        for the running procedure's safe state (uvicorn would re-raise the signal and end the
        process before that)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server


def _check(service: Service, job: Any) -> None:
    service.last_check = check_bench(service.station, service.station_lock)
    error = service.last_check.get("error")
    bad = [n for n, i in service.last_check["instruments"].items() if i.get("error")]
    job.outcome = "ERROR" if (error or bad) else "PASS"
    job.reason = error or (f"not answering: {', '.join(bad)}" if bad else "every instrument answered")


def _after_job(service: Service, job: Any) -> None:
    """A run's record holds a fresh snapshot of the instruments: show it as the latest check."""
    if job.kind != "run" or job.run_dir is None:
        return
    from rig.record import read_record

    started = read_record(job.run_dir).of_type("run_started")
    if started:
        service.last_check = {"t_utc": started[0].get("t_utc"), "error": None,
                              "instruments": (started[0].get("station") or {}).get("instruments", {})}


def _shown_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


__all__ = ["BackgroundService", "serve"]
