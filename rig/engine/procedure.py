"""The procedure model: what a verification procedure declares, independent of how it is run.

Why a declarative model: `rig list` must show a procedure's id, version, requirements and parameters
without touching the bench; `rig run` must reject bad parameters before any instrument moves; the
record must carry the procedure's identity (id, version, source sha256, spec sha256) so a report
read years later says exactly which method produced it. The steps are plain functions taking a
``rig.engine.context.StepContext``; operator steps (``rig.engine.operator``) sit in the same ordered list.

A procedure module in ``procedures/`` exposes ``PROCEDURE = Procedure(...)``; its limits live in a
versioned spec file beside it (``rig.engine.spec``).
"""

from __future__ import annotations

import hashlib
import inspect
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from rig.engine.operator import Entry, OperatorStep
from rig.engine.spec import Spec, load_spec

if TYPE_CHECKING:  # pragma: no cover - typing only
    from rig.engine.context import StepContext

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Measurement names may be dotted into groups, e.g. flow.trumpet.P2.max_pct (issue 6 names them so).
_MEASUREMENT_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[A-Za-z0-9_]+)*$")

# A duration or timeout is a number of seconds or a function of the parameters (e.g. the delivery
# step lasts `duration_min` minutes), so the declaration stays next to the step it describes.
Seconds = Union[float, Callable[[Mapping[str, float]], float]]


def _seconds(value: Seconds | None, params: Mapping[str, float]) -> float | None:
    if value is None:
        return None
    return float(value(params) if callable(value) else value)


def format_number(value: float) -> str:
    """Compact, exact-enough rendering for messages and tables (0.01, 10, 1e-05)."""
    return f"{value:g}"


@dataclass(frozen=True)
class Parameter:
    """A typed, unit-named procedure parameter with a default and an allowed (inclusive) range."""

    name: str  # unit in the name, e.g. rate_ml_h
    unit: str  # as printed, e.g. "mL/h"; "" for dimensionless
    default: float
    low: float | None = None
    high: float | None = None
    description: str = ""
    integer: bool = False
    # What 0 means, when 0 is "not given": `station_default` is a dotted path into the run's station
    # snapshot (e.g. "fluid.density_g_ml") used instead; `zero_means` says it in words ("no
    # correction"). The report shows the effective value, never a bare "0".
    station_default: str = ""
    zero_means: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"parameter name {self.name!r} must be lower_snake_case")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"parameter {self.name}: low {self.low} > high {self.high}")
        problem = self.problem(self.default)
        if problem:
            raise ValueError(f"parameter {self.name}: default {self.default} {problem}")

    def allowed(self) -> str:
        """The allowed range in words, for messages and `rig list`."""
        unit = f" {self.unit}" if self.unit else ""
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            return f"{kind} from {format_number(self.low)} to {format_number(self.high)}{unit}"
        if self.low is not None:
            return f"{kind} >= {format_number(self.low)}{unit}"
        if self.high is not None:
            return f"{kind} <= {format_number(self.high)}{unit}"
        return f"{kind}{unit and ' in' + unit}"

    def problem(self, value: float) -> str | None:
        """Why ``value`` is not allowed, or None when it is."""
        if not math.isfinite(value):
            return "is not a finite number"
        if self.integer and value != int(value):
            return "is not an integer"
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            return "is out of range"
        return None

    def convert(self, value: float) -> float | int:
        return int(value) if self.integer else float(value)


@dataclass(frozen=True)
class Measurement:
    """A named result with a unit; its limits come from the spec file (never from code)."""

    name: str
    unit: str
    description: str = ""

    def __post_init__(self) -> None:
        if not _MEASUREMENT_NAME.match(self.name):
            raise ValueError(f"measurement name {self.name!r} must be lower_snake_case, optionally "
                             "dotted into groups (flow.trumpet.P2.max_pct)")


@dataclass(frozen=True)
class Step:
    """One automated step.

    ``timeout_s`` bounds the step in procedure time, ``wall_timeout_s`` in wall time (default: the
    same number; in virtual time a hung instrument burns wall time without moving procedure time,
    so both are needed). ``duration_s`` is the expected duration, used only for progress and
    remaining-time estimates.
    """

    name: str
    run: Callable[["StepContext"], None]
    timeout_s: Seconds = 300.0
    wall_timeout_s: Seconds | None = None
    duration_s: Seconds = 0.0
    description: str = ""

    def timeouts(self, params: Mapping[str, float]) -> tuple[float, float]:
        proc = _seconds(self.timeout_s, params)
        proc = math.inf if proc is None else proc
        wall = _seconds(self.wall_timeout_s, params)
        return proc, proc if wall is None else wall

    def expected_s(self, params: Mapping[str, float]) -> float:
        return max(0.0, _seconds(self.duration_s, params) or 0.0)


AnyStep = Union[Step, OperatorStep]


def step_name(step: AnyStep) -> str:
    return step.name if isinstance(step, Step) else step.id


@dataclass(frozen=True)
class Procedure:
    """A verification procedure's declaration. ``source_path`` is bound by discovery."""

    id: str
    version: str
    title: str
    requirements: tuple[str, ...]
    parameters: tuple[Parameter, ...]
    steps: tuple[AnyStep, ...]
    measurements: tuple[Measurement, ...]
    spec_file: str  # relative to the procedure's source file
    item_under_test: tuple[Entry, ...] = ()  # asked before the run starts; named in the record
    description: str = ""
    # Cross-parameter rules: each returns why a combination is not allowed, or None.
    checks: tuple[Callable[[Mapping[str, float]], str | None], ...] = ()
    source_path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.id):
            raise ValueError(f"procedure id {self.id!r} must be lower_snake_case")
        for what, names in (
            ("parameter", [p.name for p in self.parameters]),
            ("step", [step_name(s) for s in self.steps] + [e.id for e in self.item_under_test]),
            ("measurement", [m.name for m in self.measurements]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"procedure {self.id}: duplicate {what} name(s) {', '.join(dupes)}")
        if not self.steps:
            raise ValueError(f"procedure {self.id} has no steps")

    # -- lookup -----------------------------------------------------------------------------

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    def measurement(self, name: str) -> Measurement | None:
        return next((m for m in self.measurements if m.name == name), None)

    def defaults(self) -> dict[str, float]:
        return {p.name: p.convert(p.default) for p in self.parameters}

    def operator_steps(self) -> list[OperatorStep]:
        """Every question an operator (or an answers file) must answer, item entries first."""
        return [*self.item_under_test, *(s for s in self.steps if isinstance(s, OperatorStep))]

    # -- files and hashes ---------------------------------------------------------------------

    def bound(self, source_path: Path) -> "Procedure":
        return replace(self, source_path=Path(source_path).resolve())

    @property
    def spec_path(self) -> Path:
        if self.source_path is None:
            raise ValueError(f"procedure {self.id} is not bound to its source file")
        return self.source_path.parent / self.spec_file

    def source_sha256(self) -> str:
        if self.source_path is None:
            raise ValueError(f"procedure {self.id} is not bound to its source file")
        return hashlib.sha256(self.source_path.read_bytes()).hexdigest()

    def load_spec(self) -> Spec:
        """The spec file, checked against this procedure (every measurement has a limit)."""
        return load_spec(self.spec_path, self)

    def describe(self) -> dict[str, Any]:
        """Identity for `rig list --json` and the record."""
        return {
            "id": self.id,
            "version": self.version,
            "title": self.title,
            "requirements": list(self.requirements),
            "parameters": [
                {
                    "name": p.name, "unit": p.unit, "default": p.default, "low": p.low,
                    "high": p.high, "integer": p.integer, "description": p.description,
                }
                for p in self.parameters
            ],
            "measurements": [{"name": m.name, "unit": m.unit} for m in self.measurements],
            "steps": [step_name(s) for s in self.steps],
            "operator_steps": [{"id": s.id, "kind": s.kind, "prompt": s.prompt} for s in self.operator_steps()],
            "rules": self.rules(),
        }

    def rules(self) -> list[str]:
        """The cross-parameter rules in words (each check's docstring), for `rig list`: so a
        technician sees "rate × duration ≥ 0.1 mL" before a refused run tells them."""
        out = []
        for check in self.checks:
            doc = " ".join((inspect.getdoc(check) or "").split("\n\n")[0].split())
            out.append(doc or f"{getattr(check, '__name__', 'rule')} (not described)")
        return out


__all__ = [
    "AnyStep", "Measurement", "Parameter", "Procedure", "Seconds", "Step", "format_number",
    "step_name",
]
