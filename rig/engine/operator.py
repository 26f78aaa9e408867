"""Operator steps: instructions, confirmations and entries, asked at the terminal or pre-supplied.

Why: bench work needs people (prime the line, place the outlet in the weighing vessel, type the
serial number of the pump under test). Each answer is evidence, so it is recorded with who gave
it, how (terminal or answers file) and when. An unattended run (nightly, CI) cannot ask anyone:
it must get every answer up front, or refuse to start with a message naming the step — never
hang on a prompt nobody will see.
"""

from __future__ import annotations

import json
import re
import select
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from rig.engine.outcomes import RunAborted
from rig.errors import UsageError
from rig.record import utc_now
from rig.textsafe import name_problem

YES = ("y", "yes", "true", "ok", "done")
NO = ("n", "no", "false")


class OperatorDeclined(Exception):
    """The operator answered "no" to a confirmation: the run stops as ABORTED."""


@dataclass(frozen=True)
class OperatorStep:
    """Base: ``id`` names the step (and the key in an answers file); ``prompt`` is shown."""

    id: str
    prompt: str
    # A picture for the panel's dialog (a file under procedures/images/, e.g. "setup_line.svg"):
    # a terminal shows the prompt only, the recorded evidence is the answer either way.
    image: str = ""

    kind = "operator"

    def normalise(self, answer: str) -> str:
        """The answer as recorded; raise ValueError saying what is allowed."""
        return answer.strip()


@dataclass(frozen=True)
class Instruction(OperatorStep):
    """Something the operator must do; the answer acknowledges it is done."""

    kind = "instruction"

    def normalise(self, answer: str) -> str:
        text = answer.strip().lower()
        if text in ("",) + YES:
            return "done"
        raise ValueError("acknowledge with 'done' (or press Enter at the terminal)")


@dataclass(frozen=True)
class Confirm(OperatorStep):
    """A yes/no question; "no" stops the run (ABORTED), because the precondition is not met."""

    kind = "confirm"

    def normalise(self, answer: str) -> str:
        text = answer.strip().lower()
        if text in YES:
            return "yes"
        if text in NO:
            return "no"
        raise ValueError("answer 'yes' or 'no'")


@dataclass(frozen=True)
class Entry(OperatorStep):
    """Free text such as a serial number or fluid lot, optionally checked against a regex."""

    pattern: str | None = None  # full-match regex
    example: str = ""

    kind = "entry"

    def normalise(self, answer: str) -> str:
        text = answer.strip()
        if not text:
            raise ValueError("an answer is required")
        if self.pattern and not re.fullmatch(self.pattern, text):
            hint = f" (e.g. {self.example})" if self.example else ""
            raise ValueError(f"{text!r} does not match the expected form {self.pattern}{hint}")
        return text


@dataclass(frozen=True)
class OperatorAnswer:
    """One recorded answer (becomes an ``operator_entry`` event)."""

    step: str
    kind: str
    prompt: str
    answer: str
    answered_by: str
    via: str  # "terminal" | "answers file <path>" | "--answer"
    t_utc: str

    def event_fields(self) -> dict[str, Any]:
        return {
            "step": self.step, "kind": self.kind, "prompt": self.prompt, "answer": self.answer,
            "answered_by": self.answered_by, "via": self.via, "t_utc": self.t_utc,
        }


def load_answers_file(path: Path | str) -> dict[str, str]:
    """Answers keyed by step id, from TOML (``serial = "X"``) or JSON ({"serial": "X"})."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"answers file {path}: cannot be read ({exc.strerror or exc})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"answers file {path}: not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"answers file {path}: expected a table of step id = answer")
    answers: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, bool):
            value = "yes" if value else "no"
        if not isinstance(value, (str, int, float)):
            raise UsageError(f"answers file {path}: answer for {key!r} must be text, got {type(value).__name__}")
        answers[str(key)] = str(value)
    return answers


def parse_answer_args(items: Iterable[str]) -> dict[str, str]:
    """``--answer STEP=VALUE`` options."""
    answers: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--answer {item!r}: expected STEP=ANSWER (e.g. --answer item_serial=SN123)")
        answers[key.strip()] = value
    return answers


class Operator:
    """Asks operator steps, from pre-supplied answers first, else at the terminal (if any).

    ``abort_requested`` lets a Ctrl-C during a prompt stop the run instead of waiting for Enter.
    """

    def __init__(
        self,
        name: str,
        answers: Mapping[str, str] | None = None,
        *,
        answers_via: Mapping[str, str] | None = None,
        interactive: bool | None = None,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        abort_requested: Callable[[], str | None] = lambda: None,
    ) -> None:
        problem = name_problem(name, "operator")
        if problem:
            raise UsageError(problem)
        self.name = name
        self.answers = dict(answers or {})
        self.answers_via = dict(answers_via or {})
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.interactive = self._isatty(self.stdin) if interactive is None else interactive
        self.abort_requested = abort_requested

    @staticmethod
    def _isatty(stream: TextIO) -> bool:
        try:
            return stream.isatty()
        except (AttributeError, ValueError):
            return False

    def preflight(self, steps: list[OperatorStep], procedure_id: str) -> None:
        """Before anything moves: every pre-supplied answer names a real step and is valid, and
        an unattended run has an answer for every step. UsageError listing EVERY problem at
        once (one attempt tells the whole answers file)."""
        problems = self.problems(steps, procedure_id)
        if len(problems) == 1:
            raise UsageError(problems[0])
        if problems:
            raise UsageError(f"operator answers for {procedure_id} ({len(problems)} problems):\n"
                             + "\n".join(f"  - {p}" for p in problems))

    def problems(self, steps: list[OperatorStep], procedure_id: str) -> list[str]:
        """What ``preflight`` would refuse, one line per problem (missing answers in one line)."""
        by_id = {s.id: s for s in steps}
        problems: list[str] = []
        for key in self.answers:
            if key not in by_id:
                known = ", ".join(by_id) or "none"
                problems.append(f"answer given for {key!r}, but procedure {procedure_id} has no "
                                f"operator step of that name (its operator steps: {known})")
        missing: list[OperatorStep] = []
        for step in steps:
            if step.id in self.answers:
                try:
                    step.normalise(self.answers[step.id])
                except ValueError as exc:
                    problems.append(f"answer for operator step {step.id!r} ({step.prompt!r}): {exc}")
            elif not self.interactive:
                missing.append(step)
        if len(missing) == 1:
            step = missing[0]
            problems.append(
                f"operator step {step.id!r} ({step.prompt!r}) needs an answer, and this run is "
                f"unattended (stdin is not a terminal); give --answer {step.id}=... or an "
                f"answers file (--answers FILE)")
        elif missing:
            listed = "; ".join(f"{s.id!r} ({s.prompt!r})" for s in missing)
            flags = " ".join(f"--answer {s.id}=..." for s in missing)
            problems.append(f"{len(missing)} operator steps need answers, and this run is unattended (stdin "
                            f"is not a terminal): {listed}; give {flags} or an answers file (--answers FILE)")
        return problems

    def ask(self, step: OperatorStep) -> OperatorAnswer:
        """The recorded answer. Raises OperatorDeclined on a "no" to a confirmation."""
        if step.id in self.answers:
            answer = step.normalise(self.answers[step.id])
            via = self.answers_via.get(step.id, "pre-supplied")
        else:
            answer = self._prompt(step)
            via = "terminal"
        result = OperatorAnswer(step.id, step.kind, step.prompt, answer, self.name, via, utc_now())
        if step.kind == "confirm" and answer == "no":
            raise OperatorDeclined(f"operator {self.name} answered no to {step.id!r}: {step.prompt}")
        return result

    def _prompt(self, step: OperatorStep) -> str:
        if not self.interactive:  # preflight prevents this; kept as a guard against hangs
            raise UsageError(f"operator step {step.id!r} needs an answer and no terminal is attached")
        suffix = {"instruction": " [Enter when done] ", "confirm": " [yes/no] "}.get(step.kind, ": ")
        while True:
            self.stdout.write(f"\n>>> {step.prompt}{suffix}")
            self.stdout.flush()
            line = self._readline()
            try:
                return step.normalise(line)
            except ValueError as exc:
                self.stdout.write(f"    {exc}\n")

    def _readline(self) -> str:
        """Wait for a line, but give up promptly when an abort is requested (Ctrl-C, SIGTERM):
        a blocking input() would otherwise hold the run until someone presses Enter."""
        while True:
            reason = self.abort_requested()
            if reason:
                raise RunAborted(reason)
            try:
                ready, _, _ = select.select([self.stdin], [], [], 0.2)
            except (ValueError, OSError, TypeError):  # not a real file: plain blocking read
                ready = [self.stdin]
            if ready:
                line = self.stdin.readline()
                if line == "":
                    raise UsageError("the terminal closed (end of input) while waiting for an answer")
                return line.rstrip("\n")


__all__ = [
    "Confirm", "Entry", "Instruction", "Operator", "OperatorAnswer", "OperatorDeclined",
    "OperatorStep", "load_answers_file", "parse_answer_args",
]
