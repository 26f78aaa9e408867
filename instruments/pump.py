"""What procedures may ask of a pump, whichever pump plays the implant on the bench.

Why a Protocol: a procedure runs unchanged on a syringe pump (New Era NE-1000) or a peristaltic
pump (Ismatec Reglo ICC); both drivers satisfy ``Pump`` structurally, and tests check that with
``isinstance(driver, Pump)`` (runtime-checkable).

Rates are in mL/h at the implant's scale: intrathecal delivery runs from about 0.002 mL/h to about
1 mL/h (SynchroMed II: ~0.048-24 mL/day, DESIGN.md section 1), and a pump may go faster for
priming and boluses up to its own maximum, which each driver states in its validation message.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from instruments.errors import InstrumentReportedError
from instruments.visa_instrument import Identity

INTRATHECAL_MIN_RATE_ML_H = 0.002  # ~0.048 mL/day, the low end of SynchroMed II programming
INTRATHECAL_MAX_RATE_ML_H = 1.0  # ~24 mL/day


class PumpAlarm(InstrumentReportedError):
    """The pump reported an alarm instead of executing the command (e.g. its motor stalled).

    ``alarm`` is a short stable name ("stall", "reset", "timeout", "program_error",
    "out_of_range") that procedures record and compare; the message keeps the instrument's words.
    """

    def __init__(self, instrument: str, command: str | None, alarm: str, detail: str) -> None:
        self.alarm = alarm
        super().__init__(instrument, command, detail)


@runtime_checkable
class Pump(Protocol):
    """The pump interface procedures use. Every call talks to the instrument (no cached state)."""

    name: str

    def set_rate_ml_h(self, rate_ml_h: float) -> None:
        """Set the delivery rate; ValueError (before any I/O) names the allowed range."""

    def rate_ml_h(self) -> float:
        """The rate the pump reports it is set to, in mL/h."""

    def start(self) -> None:
        """Start infusing at the set rate (continuously, until ``stop``)."""

    def stop(self) -> None:
        """Stop pumping."""

    def is_running(self) -> bool:
        """Whether the pump reports that it is pumping now."""

    def alarm(self) -> str | None:
        """The alarm the pump reported since the last call (e.g. "stall"), or None."""

    def dispensed_ml(self) -> float:
        """Volume the pump says it infused since ``clear_dispensed`` (its own count, not measured)."""

    def clear_dispensed(self) -> None:
        """Zero the pump's dispensed-volume counter."""

    def safe_state(self) -> dict[str, Any]:
        """Stop, read back that the pump is stopped, return the read-back."""

    def identify(self) -> Identity:
        """Model, serial and firmware as the pump reports them."""


__all__ = [
    "INTRATHECAL_MAX_RATE_ML_H",
    "INTRATHECAL_MIN_RATE_ML_H",
    "Pump",
    "PumpAlarm",
]
