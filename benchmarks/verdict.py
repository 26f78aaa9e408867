"""The verdict every benchmark ends with: each figure against its target, PASS or FAIL, an exit code.

Why one module: `make bench` must fail when any figure misses its target, and
benchmarks/results.md must show pass/fail per figure, so every benchmark states its figures the
same way. ``conclude`` prints one line per figure,

    VERDICT PASS | ratio balance_SI_pty | 1.06 | <= 1.15 | same-run baseline: raw write/read 226.9 us

(``benchmarks.run_all`` collects these lines; any program that prints them takes part) and
returns the exit code: 0 only when every figure meets its target. A figure with no same-run
baseline says so and why its target is absolute; a figure that could not be measured (None)
misses its target.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

PREFIX = "VERDICT"
LINE = re.compile(rf"^{PREFIX} (PASS|FAIL) \| (.*)$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq,
}


@dataclass(frozen=True)
class Figure:
    """One measured figure and its target.

    ``op`` is one of <=, <, >=, >, == (value op target) or "in" (target is (low, high),
    inclusive). Exactly one of ``baseline`` (what was measured in the same run to compare with)
    and ``absolute`` (why the target is absolute: there is nothing to measure it against) is set.
    """

    name: str
    value: float | None
    unit: str
    op: str
    target: float | tuple[float, float]
    baseline: str = ""
    absolute: str = ""

    def __post_init__(self) -> None:
        if self.op != "in" and self.op not in _OPS:
            raise ValueError(f"figure {self.name!r}: op must be one of {', '.join([*_OPS, 'in'])}, got {self.op!r}")
        if self.op == "in" and not (isinstance(self.target, tuple) and len(self.target) == 2):
            raise ValueError(f"figure {self.name!r}: op 'in' needs target (low, high), got {self.target!r}")
        if bool(self.baseline) == bool(self.absolute):
            raise ValueError(f"figure {self.name!r}: give either a same-run baseline or why the target is absolute")

    @property
    def passed(self) -> bool:
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return False
        if self.op == "in":
            low, high = self.target  # type: ignore[misc]
            return low <= self.value <= high
        return _OPS[self.op](self.value, self.target)  # type: ignore[arg-type]

    def target_text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.op == "in":
            low, high = self.target  # type: ignore[misc]
            return f"{_num(low)}..{_num(high)}{unit}"
        return f"{self.op} {_num(self.target)}{unit}"  # type: ignore[arg-type]

    def line(self) -> str:
        unit = f" {self.unit}" if self.unit and self.value is not None else ""
        value = "not measured" if self.value is None else f"{_num(self.value)}{unit}"
        against = f"same-run baseline: {self.baseline}" if self.baseline else f"absolute target: {self.absolute}"
        return f"{PREFIX} {'PASS' if self.passed else 'FAIL'} | {self.name} | {value} | {self.target_text()} | {against}"


def _num(x: float) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def conclude(figures: Iterable[Figure], out: Callable[[str], None] = print) -> int:
    """Print every figure's verdict and a summary; 0 if all meet their targets, else 1."""
    figures = list(figures)
    if not figures:
        out(f"{PREFIX} FAIL | figures | none | >= 1 | absolute target: a benchmark must judge something")
        return 1
    for figure in figures:
        out(figure.line())
    missed = [f.name for f in figures if not f.passed]
    out(f"{len(figures) - len(missed)} of {len(figures)} figure(s) meet their targets"
        + (f"; MISSED: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


def parse(output: str) -> list[tuple[bool, list[str]]]:
    """The verdict lines in a benchmark's output: (passed, [name, measured, target, against])."""
    found = []
    for text in output.splitlines():
        match = LINE.match(text.strip())
        if match:
            found.append((match.group(1) == "PASS", [part.strip() for part in match.group(2).split(" | ")]))
    return found
