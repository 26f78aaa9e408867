"""`rig list`: the procedures this controller can run, with what they verify and accept.

Why: the technician picks a procedure and its parameters here (units and allowed ranges), and QA
checks which requirement IDs a procedure version covers, without opening any code.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import procedures
from rig.engine.display import format_duration
from rig.engine.operator import OperatorStep
from rig.engine.procedure import Parameter, Procedure, Step, format_number, step_name

HELP = "list the verification procedures (id, version, requirements, parameters)"
DESCRIPTION = """\
List every procedure in procedures/: id, version, title, the requirement IDs it verifies, its
parameters with unit, default and allowed range, the rules between parameters (e.g. rate ×
duration must give enough volume) and its operator steps. `rig list PROCEDURE` shows one procedure
in full, with the `--answer` flags an unattended run needs. A procedure module that fails to load is
reported (exit 2) instead of hiding the others.
"""
EPILOG = """\
exit codes:
  0  all procedure modules loaded
  2  at least one procedure module is broken (listed on stderr)
examples:
  rig list
  rig list delivery_check
  rig list --json
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("list", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("procedure", metavar="PROCEDURE", nargs="?", default=None,
                        help="show one procedure in full: steps, parameters, operator steps, rules")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def describe_parameter(p: Parameter) -> str:
    unit = f" {p.unit}" if p.unit else ""
    lo = "" if p.low is None else format_number(p.low)
    hi = "" if p.high is None else format_number(p.high)
    return f"{p.name} = {format_number(p.default)}{unit} ({lo}..{hi})"


def describe_operator_step(step: OperatorStep) -> str:
    return f"{step.id} [{step.kind}]: {step.prompt}"


def _detail(procedure: Procedure) -> list[str]:
    """Everything needed to prepare an unattended run of ``procedure`` in one go."""
    defaults = procedure.defaults()
    out = [f"{procedure.id} {procedure.version} — {procedure.title}",
           f"requirements: {', '.join(procedure.requirements) or 'none'}", "parameters:"]
    out += [f"  {describe_parameter(p)}" + (f" — {p.description}" if p.description else "")
            for p in procedure.parameters] or ["  (none)"]
    out.append("rules between parameters (checked before anything starts):")
    out += [f"  - {rule}" for rule in procedure.rules()] or ["  (none)"]
    steps = procedure.operator_steps()
    out.append("operator steps (an unattended run needs an answer for each: --answer ID=... or --answers FILE):")
    out += [f"  {describe_operator_step(s)}" for s in steps] or ["  (none)"]
    out.append("steps (expected procedure time at the default parameters):")
    for n, step in enumerate(procedure.steps, start=1):
        expected = step.expected_s(defaults) if isinstance(step, Step) else None
        shown = "operator" if expected is None else format_duration(expected)
        out.append(f"  {n}. {step_name(step)} ({shown})")
    out.append("measurements:")
    out += [f"  {m.name} [{m.unit}]" for m in procedure.measurements] or ["  (none)"]
    if steps:
        flags = " ".join(f"--answer {s.id}=..." for s in steps)
        out.append(f"unattended: rig run {procedure.id} {flags}")
    return out


def run(args: argparse.Namespace) -> int:
    if args.procedure is not None:
        procedure = procedures.load(args.procedure)  # UsageError (exit 2) naming what exists
        if args.json:
            print(json.dumps(procedure.describe(), indent=2))
        else:
            print("\n".join(_detail(procedure)))
        return 0
    found = procedures.discover()
    if args.json:
        print(json.dumps({"procedures": [p.describe() for p in found.procedures.values()],
                          "broken": found.broken}, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 200)
        table = Table(title="Procedures (`rig list PROCEDURE` for one in full)", show_lines=True)
        for col in ("id", "version", "title", "requirements", "parameters", "rules", "operator steps"):
            table.add_column(col)
        for p in found.procedures.values():
            table.add_row(p.id, p.version, p.title, "\n".join(p.requirements),
                          "\n".join(describe_parameter(x) for x in p.parameters),
                          "\n".join(f"- {r}" for r in p.rules()),
                          "\n".join(s.id for s in p.operator_steps()))
        console.print(table)
    for name, why in found.broken.items():
        print(f"rig: error: procedures/{name}.py cannot be loaded: {why}", file=sys.stderr)
    return 2 if found.broken else 0
