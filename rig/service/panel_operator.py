"""Operator steps answered in the browser: a dialog per step, recorded with who answered.

Why a subclass of ``Operator``: the run must record an operator step exactly as `rig run` does
(an ``operator_entry`` with the step, prompt, answer, who, how and when); only the way the
question reaches a person differs. The run thread waits here, checking the abort flag, until a
signed-in user answers through the API; a wrong answer is refused there with the step's own rule
(the dialog shows it inline) and the run keeps waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from rig.engine.operator import Operator, OperatorAnswer, OperatorDeclined, OperatorStep
from rig.engine.outcomes import RunAborted
from rig.record import utc_now
from rig.service.hub import EventHub

WAIT_SLICE_S = 0.2


class PanelOperator(Operator):
    """Asks pre-supplied answers first (the item entries from the form), else the panel."""

    def __init__(self, name: str, hub: EventHub, job: str, answers: Mapping[str, str], *,
                 answers_via: Mapping[str, str], abort_requested: Callable[[], str | None],
                 before_prompt: Callable[[], object] | None = None) -> None:
        super().__init__(name, answers, answers_via=answers_via, interactive=True,
                         abort_requested=abort_requested)
        self.hub = hub
        self.job = job
        self._before_prompt = before_prompt  # the live plot's gathered points go out before the dialog
        self._cond = threading.Condition()
        self._pending: OperatorStep | None = None
        self._answer: tuple[str, str] | None = None  # (normalised answer, who)

    @property
    def pending(self) -> dict[str, Any] | None:
        with self._cond:
            return None if self._pending is None else prompt_fields(self._pending)

    def ask(self, step: OperatorStep) -> OperatorAnswer:
        if step.id in self.answers:
            return super().ask(step)
        with self._cond:
            self._pending, self._answer = step, None
        if self._before_prompt is not None:
            self._before_prompt()
        self.hub.publish({"type": "prompt", **prompt_fields(step)}, self.job)
        try:
            while True:
                reason = self.abort_requested()
                if reason:
                    raise RunAborted(reason)
                with self._cond:
                    if self._answer is not None:
                        answer, who = self._answer
                        break
                    self._cond.wait(WAIT_SLICE_S)
        finally:
            with self._cond:
                self._pending = None
        result = OperatorAnswer(step.id, step.kind, step.prompt, answer, who, "panel", utc_now())
        self.hub.publish({"type": "prompt_answered", "step": step.id, "answer": answer,
                          "answered_by": who}, self.job)
        if step.kind == "confirm" and answer == "no":
            raise OperatorDeclined(f"operator {who} answered no to {step.id!r}: {step.prompt}")
        return result

    def answer(self, step_id: str, text: str, who: str) -> str:
        """From the API thread: the normalised answer, or ValueError saying what is allowed."""
        with self._cond:
            step = self._pending
            if step is None or step.id != step_id:
                asked = f"; the run is waiting for {step.id!r}" if step is not None else ""
                raise LookupError(f"operator step {step_id!r} is not being asked{asked}")
            normalised = step.normalise(text)
            self._answer = (normalised, who)
            self._cond.notify_all()
            return normalised


def prompt_fields(step: OperatorStep) -> dict[str, Any]:
    """What the dialog shows: the prompt, its kind, the entry rule and an optional picture."""
    return {"step": step.id, "kind": step.kind, "prompt": step.prompt,
            "image": getattr(step, "image", "") or "", "pattern": getattr(step, "pattern", None) or "",
            "example": getattr(step, "example", "") or ""}


__all__ = ["PanelOperator", "prompt_fields"]
