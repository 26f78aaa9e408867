"""Suite files: which procedures a nightly runs, in which order, with which parameters and
operator answers, within which wall-clock budget.

Why validate the whole suite before anything moves: a nightly runs with nobody watching. A typo in
the tenth entry must not be discovered at 3 a.m. after nine procedures ran; and an operator step
without a pre-supplied answer would hang an unattended run forever. So every entry's procedure,
spec file, parameters and answers are checked up front, every problem is listed at once (one
sentence each, naming the entry and key), and the nightly refuses to start (exit 2).

Format (TOML)::

    [suite]
    name = "nightly"            # shown in logs, JUnit and the summary
    budget_min = 60             # wall-clock budget for the whole suite
    operator = "A. Tech"        # the recorded operator: a known operator of the station (default:
                                # the station key's printed name; rig.station.operators)

    [[run]]
    procedure = "delivery_check"
    label = "delivery_check"    # optional; unique; needed when a procedure appears twice
    [run.params]                # procedure parameters, in the parameter's unit
    duration_min = 6
    [run.answers]               # every operator step and item-under-test entry, by step id
    item_serial = "NE1000-SIM-0001"
    setup = "done"
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import procedures
from rig.engine.params import ParameterValues, parse_params
from rig.engine.procedure import Procedure
from rig.engine.spec import Spec
from rig.errors import ConfigError, UsageError
from rig.station.config import Key, Problems, show

SUITE_ENV = "RIG_SUITE"
MAX_BUDGET_MIN = 7 * 24 * 60
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}")

_TOP: dict[str, Key] = {"suite": Key("table", required=True), "run": Key("table")}  # "run" checked below
_SUITE: dict[str, Key] = {
    "name": Key("str", required=True, check=lambda v: None if _LABEL.fullmatch(v) else (
        f"{show(v)} is not a valid suite name; use letters, digits, '.', '_' or '-' (it names the JUnit suite)")),
    "budget_min": Key("number", required=True, low=0.05, high=MAX_BUDGET_MIN, unit="min"),
    "operator": Key("str"),  # checked against the station by rig.fleet.nightly.nightly_operator
    "description": Key("str", default=""),
}
_RUN: dict[str, Key] = {
    "procedure": Key("str", required=True),
    "label": Key("str", check=lambda v: None if _LABEL.fullmatch(v) else (
        f"{show(v)} is not a valid label; use 1-64 letters, digits, '.', '_' or '-'")),
    "params": Key("table"),
    "answers": Key("table"),
}


@dataclass(frozen=True)
class SuiteEntry:
    """One validated run of the suite."""

    index: int  # 0-based position in the file
    label: str
    procedure: Procedure
    spec: Spec
    params: ParameterValues
    answers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str
    budget_s: float
    operator: str | None  # None: the station key's printed name (rig.fleet.nightly.nightly_operator)
    description: str
    entries: tuple[SuiteEntry, ...]

    def procedure_ids(self) -> set[str]:
        return {e.procedure.id for e in self.entries}


def default_suite_path() -> Path:
    """$RIG_SUITE, else ./suites/nightly.toml, else the suite shipped beside this code."""
    import os

    env = os.environ.get(SUITE_ENV, "").strip()
    if env:
        return Path(env)
    local = Path("suites") / "nightly.toml"
    if local.is_file():
        return local
    return Path(__file__).resolve().parents[1] / "suites" / "nightly.toml"


def load_suite(path: Path | str) -> Suite:
    """Read and validate a suite file; ConfigError (exit 2) lists every problem."""
    path = Path(path).expanduser()
    source = f"suite file {path}"
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"file not found (give --suite FILE or set ${SUITE_ENV})"], source=source) from None
    except (IsADirectoryError, PermissionError) as exc:
        raise ConfigError([f"cannot be read ({exc.strerror or exc})"], source=source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"is not UTF-8 text ({exc.reason} at byte {exc.start})"], source=source) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"invalid TOML syntax: {exc}"], source=source) from None
    return _validate(raw, path.resolve(), source)


def _validate(raw: dict[str, Any], path: Path, source: str) -> Suite:
    problems = Problems()
    runs = raw.get("run")
    top = problems.table({k: v for k, v in raw.items() if k != "run"}, "", _TOP)
    suite = problems.table(top["suite"], "suite", _SUITE) if "suite" in top else {}
    if runs is None:
        problems.add("run", "no [[run]] entries; a suite runs at least one procedure")
        runs = []
    elif not isinstance(runs, list):
        problems.add("run", "must be an array of tables, written [[run]] (one per procedure run)")
        runs = []
    entries: list[SuiteEntry] = []
    labels: dict[str, int] = {}
    for index, table in enumerate(runs):
        entry = _entry(index, table, problems)
        if entry is None:
            continue
        if entry.label in labels:
            problems.add(f"run[{index}]", f"label {show(entry.label)} is already used by run[{labels[entry.label]}]; "
                         "give each run of the same procedure its own label = \"...\"")
            continue
        labels[entry.label] = index
        entries.append(entry)
    if problems.items:
        raise ConfigError(problems.items, source=source)
    return Suite(path=path, name=suite["name"], budget_s=float(suite["budget_min"]) * 60.0,
                 operator=suite.get("operator"), description=suite["description"], entries=tuple(entries))


def _entry(index: int, table: Any, problems: Problems) -> SuiteEntry | None:
    where = f"run[{index}]"
    checked = problems.table(table, where, _RUN)
    if "procedure" not in checked:
        return None
    procedure_id = checked["procedure"]
    where = f"run[{index}] ({procedure_id})"
    try:
        procedure = procedures.load(procedure_id)
        spec = procedure.load_spec()
    except UsageError as exc:
        problems.add(f"{where}.procedure", str(exc))
        return None
    n_before = len(problems.items)
    params = _params(procedure, checked.get("params", {}), f"{where}.params", problems)
    answers = _answers(procedure, checked.get("answers", {}), f"{where}.answers", problems)
    if params is None or len(problems.items) != n_before:
        return None
    return SuiteEntry(index=index, label=checked.get("label", procedure.id), procedure=procedure, spec=spec,
                      params=params, answers=answers)


def _params(procedure: Procedure, table: dict[str, Any], where: str, problems: Problems) -> ParameterValues | None:
    items: list[str] = []
    for name, value in table.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            problems.add(f"{where}.{name}", f"{show(value)} is not a number; give the value in the parameter's unit")
            return None
        items.append(f"{name}={value!r}" if isinstance(value, float) else f"{name}={value}")
    try:
        return parse_params(items, procedure, source="suite file")
    except UsageError as exc:
        problems.add(where, str(exc))
        return None


def _answers(procedure: Procedure, table: dict[str, Any], where: str, problems: Problems) -> dict[str, str]:
    """Every operator step needs an answer (nobody is there to ask); each must be valid."""
    steps = {s.id: s for s in procedure.operator_steps()}
    answers: dict[str, str] = {}
    for key, value in table.items():
        if key not in steps:
            known = ", ".join(steps) or "none"
            problems.add(f"{where}.{key}", f"procedure {procedure.id} has no operator step {show(key)} "
                         f"(its operator steps: {known})")
            continue
        if isinstance(value, bool):
            value = "yes" if value else "no"
        if not isinstance(value, (str, int, float)):
            problems.add(f"{where}.{key}", f"{show(value)} is not text; an answer is a string")
            continue
        try:
            steps[key].normalise(str(value))
        except ValueError as exc:
            problems.add(f"{where}.{key}", f"invalid answer to {show(steps[key].prompt)}: {exc}")
            continue
        answers[key] = str(value)
    for step_id, step in steps.items():
        if step_id not in table:
            problems.add(f"{where}.{step_id}", f"operator step {show(step_id)} ({step.kind}: {show(step.prompt)}) has "
                         "no answer; an unattended run cannot ask, so add it to this run's answers")
    return answers


__all__ = ["SUITE_ENV", "Suite", "SuiteEntry", "default_suite_path", "load_suite"]
