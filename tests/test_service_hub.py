"""The panel's event hub: a burst of events from the run thread costs the event loop one wake-up,
and every subscriber still gets every event of its job, in order."""

from __future__ import annotations

import asyncio
import json
import threading

from rig.service.hub import EventHub


def test_a_burst_from_another_thread_is_one_wake_up_and_every_event_arrives_in_order() -> None:
    async def scenario() -> tuple[list[int], list[int], int]:
        hub = EventHub()
        loop = asyncio.get_running_loop()
        hub.attach(loop)
        mine, _ = hub.subscribe("job-1")
        other, _ = hub.subscribe("job-2")
        wake_ups = 0
        drain = hub._drain

        def counting_drain() -> None:
            nonlocal wake_ups
            wake_ups += 1
            drain()

        hub._drain = counting_drain  # type: ignore[method-assign]
        publisher = threading.Thread(target=lambda: [hub.publish({"type": "points", "i": i}, "job-1")
                                                     for i in range(500)])
        publisher.start()  # the loop is not running callbacks until we await: the burst piles up
        publisher.join()
        hub.publish({"type": "station"}, None)  # a station-level event reaches every subscriber
        await asyncio.sleep(0)
        got = [json.loads(mine.queue.get_nowait()[2]) for _ in range(mine.queue.qsize())]
        got_other = [json.loads(other.queue.get_nowait()[2]) for _ in range(other.queue.qsize())]
        return [e.get("i", -1) for e in got], [e.get("i", -1) for e in got_other], wake_ups

    mine, other, wake_ups = asyncio.run(scenario())
    assert mine == [*range(500), -1]
    assert other == [-1]  # another job's points never reach it
    assert wake_ups == 1


def test_publishing_before_the_loop_is_attached_keeps_the_replay_and_queues_nothing() -> None:
    hub = EventHub()
    seq = hub.publish({"type": "tick"}, "job-1")
    assert seq == 1 and hub._pending == []

    async def replay() -> list[int]:
        hub.attach(asyncio.get_running_loop())
        _sub, events = hub.subscribe("job-1")
        return [e[0] for e in events]

    assert asyncio.run(replay()) == [1]
