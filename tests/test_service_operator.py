"""Operator steps answered in the panel: every kind of step, its validation, who answered, abort
while waiting — without a bench (the run thread is a plain thread here)."""

from __future__ import annotations

import threading

import pytest

from rig.engine.operator import Confirm, Entry, Instruction, OperatorDeclined
from rig.engine.outcomes import RunAborted
from rig.engine.signals import ABORTED, AbortFlag
from rig.service.hub import EventHub
from rig.service.panel_operator import PanelOperator


def asking(operator: PanelOperator, step) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def ask() -> None:
        try:
            result["answer"] = operator.ask(step)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            result["error"] = exc

    thread = threading.Thread(target=ask)
    thread.start()
    while operator.pending is None and thread.is_alive():
        thread.join(0.01)
    return thread, result


def make(abort: AbortFlag | None = None, answers: dict | None = None) -> PanelOperator:
    abort = abort or AbortFlag()
    return PanelOperator("olivia", EventHub(), "job-1", answers or {}, answers_via={},
                         abort_requested=abort.reason)


def test_entry_is_validated_and_recorded_with_who_answered() -> None:
    operator = make()
    step = Entry("lot", "Fluid lot number", pattern=r"L\d{4}", example="L0042", image="setup_line.svg")
    thread, result = asking(operator, step)
    assert operator.pending == {"step": "lot", "kind": "entry", "prompt": "Fluid lot number",
                                "image": "setup_line.svg", "pattern": r"L\d{4}", "example": "L0042"}
    with pytest.raises(ValueError, match="does not match the expected form"):
        operator.answer("lot", "lot 42", "rita")
    with pytest.raises(LookupError, match="waiting for 'lot'"):
        operator.answer("setup", "done", "rita")
    assert operator.answer("lot", " L0042 ", "rita") == "L0042"
    thread.join(10)
    answer = result["answer"]
    assert (answer.step, answer.answer, answer.answered_by, answer.via) == ("lot", "L0042", "rita", "panel")
    assert operator.pending is None


def test_a_no_to_a_confirmation_stops_the_run() -> None:
    operator = make()
    thread, result = asking(operator, Confirm("sealed", "Is the draft shield closed?"))
    with pytest.raises(ValueError, match="answer 'yes' or 'no'"):
        operator.answer("sealed", "perhaps", "olivia")
    operator.answer("sealed", "no", "olivia")
    thread.join(10)
    assert isinstance(result["error"], OperatorDeclined) and "olivia answered no" in str(result["error"])


def test_abort_while_a_dialog_is_open_ends_the_wait() -> None:
    abort = AbortFlag()
    operator = make(abort)
    thread, result = asking(operator, Instruction("setup", "Prime the line"))
    abort.request(ABORTED, "aborted from the panel by olivia")
    thread.join(10)
    assert isinstance(result["error"], RunAborted) and "olivia" in str(result["error"])


def test_pre_supplied_answers_are_not_asked() -> None:
    operator = make(answers={"setup": "done"})
    answer = operator.ask(Instruction("setup", "Prime the line"))
    assert answer.answer == "done" and operator.pending is None
