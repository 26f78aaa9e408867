"""How a run or a step can end: the four outcomes and the exceptions that carry them.

Why a leaf module: the operator prompt, the step context and the runner all raise or catch these;
keeping them here lets each import them without importing the others.
"""

from __future__ import annotations

PASS, FAIL, ABORTED, ERROR = "PASS", "FAIL", "ABORTED", "ERROR"


class RunAborted(Exception):
    """Raised inside a step when an abort was requested; carries the outcome and reason."""

    def __init__(self, reason: str, outcome: str = ABORTED) -> None:
        self.reason, self.outcome = reason, outcome
        super().__init__(reason)


class StepTimeout(Exception):
    """A step exceeded its procedure-time or wall-time budget."""


class StepFailed(Exception):
    """The procedure declares the item under test failed (e.g. it alarmed during delivery)."""


__all__ = ["ABORTED", "ERROR", "FAIL", "PASS", "RunAborted", "StepFailed", "StepTimeout"]
