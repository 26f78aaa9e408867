"""The one interface a procedure step sees of a run: ``StepContext`` and its instruments.

Why a Protocol in a light module: procedures are written and type-checked against this, and
importing a procedure must not load the runner, the bench assembly or the simulated bench. The
runner's implementation (rig.engine.step_context.RunStepContext) satisfies it structurally.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from instruments.pump import Pump


class Balance(Protocol):
    """What steps ask of the precision balance (MT-SICS)."""

    def read_mass_g(self) -> float:
        """A stable mass in g (raises BalanceUnstable while it settles)."""

    def read_mass_immediate_g(self) -> tuple[float, bool]:
        """The current mass in g and whether the balance calls it stable."""

    def tare(self) -> float:
        """Tare on the next stable reading."""


class LineDaq(Protocol):
    """What steps ask of the DAQ: the latest readings and the rig's fault valves."""

    def latest(self) -> dict[str, float]:
        """The most recent reading of each line channel."""

    def set_occlusion(self, closed: bool) -> None:
        """Close (True) or open the rig's occlusion valve."""

    def set_kink_pct(self, pct: float) -> None:
        """Pinch the line with the rig's kink valve (0 = open)."""


class RawTable(Protocol):
    """A raw-data CSV of the run (raw/<name>.csv)."""

    def row(self, *values: Any) -> None: ...

    def sync(self) -> None: ...


class StepContext(Protocol):
    """What a step function gets. Procedures use only this."""

    params: Mapping[str, float]
    state: dict[str, Any]
    station: Any
    pump: Pump
    balance: Balance
    daq: LineDaq | None

    def now_s(self) -> float:
        """Procedure time since the run started."""

    def step_elapsed_s(self) -> float: ...

    def acquisition_started_s(self) -> float | None:
        """Procedure time of DAQ sample 0, or None when the runner is not acquiring."""

    def check(self) -> None:
        """Raise if an abort was requested or the step is over its time budget."""

    def wait(self, duration_s: float, every_s: float | None = None,
             on_tick: Callable[[float], None] | None = None) -> None:
        """Let procedure time pass, checking aborts and timeouts throughout."""

    def progress(self, fraction: float) -> None: ...

    def measure(self, name: str, value: float | None, uncertainty: "float | dict[str, Any] | None" = None,
                detail: str = "") -> str:
        """Record a measurement against its spec limit; returns "pass" or "fail"."""

    def live(self, name: str, value: float, unit: str, low: float | None = None,
             high: float | None = None) -> None: ...

    def event(self, kind: str, detail: str, **fields: Any) -> None: ...

    def raw(self, name: str, columns: list[str]) -> RawTable: ...

    def fail(self, reason: str) -> None:
        """Declare that the item under test failed (the run ends FAIL)."""

    def until_stable(self, action: Callable[[], Any], retry_s: float = 1.0) -> Any: ...

    def stable_mass_g(self, retry_s: float = 1.0) -> float: ...


__all__ = ["Balance", "LineDaq", "RawTable", "StepContext"]
