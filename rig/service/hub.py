"""The live event stream: what the service publishes, fanned out to every watching client.

Why like this: the run thread (and the DAQ reader thread) must never wait for a browser. Publishing
serialises an event once, appends it to the job's replay log and hands it to the event loop with
at most one ``call_soon_threadsafe`` per burst (a virtual-time run publishes thousands of events a
second); the loop puts each into every subscriber's bounded queue. A subscriber that falls behind
is dropped (its browser reconnects and replays from its last event id), so twenty viewers cost the
run a list append per event and one wake-up per burst, not twenty socket writes.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

MAX_QUEUE = 20_000  # events waiting for one subscriber before it is dropped
MAX_LOG = 400_000  # events kept per job for replay (a 24 h soak at one chunk per second fits)


@dataclass(eq=False)  # identity: each connection is its own subscriber
class Subscriber:
    """One SSE connection: a queue of (id, job, json text); ``None`` ends the stream."""

    job: str | None  # only this job's events (None: station-level events only)
    queue: asyncio.Queue[tuple[int, str | None, str] | None] = field(
        default_factory=lambda: asyncio.Queue(MAX_QUEUE))
    dropped: bool = False


class EventHub:
    """Thread-safe publish; asyncio-side subscribe. Event ids are one increasing sequence."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq = 0
        self._logs: dict[str, list[tuple[int, str | None, str]]] = {}
        self._subscribers: set[Subscriber] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[int, str | None, str]] = []  # published, not yet fanned out
        self._wake_scheduled = False

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, event: dict[str, Any], job: str | None = None) -> int:
        """Any thread. ``job`` None: a station-level event (job queued/started/finished)."""
        with self._lock:
            self._seq += 1
            seq = self._seq
            text = json.dumps({**event, "seq": seq, **({"job": job} if job else {})},
                              separators=(",", ":"), default=str)
            item = (seq, job, text)
            if job is not None:
                log = self._logs.setdefault(job, [])
                if len(log) < MAX_LOG:
                    log.append(item)
            loop = self._loop
            if loop is None or loop.is_closed():
                return seq
            self._pending.append(item)
            if self._wake_scheduled:  # the loop has not drained the last burst yet: no second wake-up
                return seq
            self._wake_scheduled = True
        try:
            loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is shutting down
            pass
        return seq

    def _drain(self) -> None:
        """Event-loop thread: fan out everything published since the last wake-up."""
        with self._lock:
            items, self._pending = self._pending, []
            self._wake_scheduled = False
        for item in items:
            self._fan_out(item)

    def _fan_out(self, item: tuple[int, str | None, str]) -> None:
        for sub in list(self._subscribers):
            if sub.job != item[1] and not (item[1] is None):
                continue
            try:
                sub.queue.put_nowait(item)
            except asyncio.QueueFull:
                sub.dropped = True
                self._subscribers.discard(sub)
                self._end(sub)

    @staticmethod
    def _end(sub: Subscriber) -> None:
        try:
            sub.queue.put_nowait(None)
        except asyncio.QueueFull:
            pass  # the reader sees ``dropped`` when it drains the queue

    def subscribe(self, job: str | None, after: int = 0) -> tuple[Subscriber, list[tuple[int, str | None, str]]]:
        """Event-loop thread. Returns the subscriber and the replay (the job's events after ``after``)."""
        sub = Subscriber(job)
        with self._lock:
            replay = [e for e in self._logs.get(job, [])] if job else []
            self._subscribers.add(sub)
        return sub, [e for e in replay if e[0] > after]

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def close_all(self) -> None:
        """Event-loop thread: end every stream (service shutdown)."""
        for sub in list(self._subscribers):
            self._subscribers.discard(sub)
            self._end(sub)

    def forget(self, job: str) -> None:
        with self._lock:
            self._logs.pop(job, None)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)


__all__ = ["EventHub", "Subscriber"]
