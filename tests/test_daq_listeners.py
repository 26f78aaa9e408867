"""The DAQ's listener registry on its own (instruments.daq_listeners): the fail-closed rule.

End to end (a raising interlock check trips the interlock on the simulated bench) is
tests/test_interlock.py; these pin the rule itself without a device.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from instruments.daq_listeners import DaqChunk, DaqListeners


def chunk() -> DaqChunk:
    return DaqChunk(first_index=10, rate_hz=20.0, channels=("pressure_upstream",), data=np.zeros((1, 4)))


def test_a_raising_safety_listener_is_the_failure_and_the_others_still_hear_the_chunk() -> None:
    heard: list[int] = []

    def interlock_check(c: DaqChunk) -> None:
        raise ValueError("pressure column unreadable")

    listeners = DaqListeners("daq")
    listeners.add_chunk(interlock_check, safety=True)
    listeners.add_chunk(lambda c: heard.append(c.first_index))
    failure = listeners.publish(chunk())
    assert failure is not None
    assert failure.startswith("safety check ") and "interlock_check" in failure
    assert "ValueError('pressure column unreadable')" in failure
    assert heard == [10]


def test_a_raising_ordinary_listener_is_logged_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    listeners = DaqListeners("daq")
    listeners.add_chunk(lambda c: 1 / 0)  # e.g. the live display
    with caplog.at_level(logging.ERROR, logger="instruments.daq"):
        assert listeners.publish(chunk()) is None
    assert [r.name for r in caplog.records] == ["instruments.daq"]
    assert "daq: chunk listener" in caplog.records[0].getMessage()


def test_a_removed_safety_listener_no_longer_fails_the_acquisition() -> None:
    def check(c: DaqChunk) -> None:
        raise ValueError("bug")

    listeners = DaqListeners("daq")
    listeners.add_chunk(check, safety=True)
    listeners.remove(check)
    listeners.remove(check)  # absent is fine
    assert listeners.publish(chunk()) is None
    assert listeners.snapshot() == ([], [])


def test_every_failure_listener_hears_even_after_one_raises() -> None:
    heard: list[str] = []

    def broken(message: str) -> None:
        raise RuntimeError("listener bug")

    listeners = DaqListeners("daq")
    listeners.add_failure(broken)
    listeners.add_failure(heard.append)
    listeners.tell_failure("daq (acquisition): DAQmx error -200279")
    assert heard == ["daq (acquisition): DAQmx error -200279"]
