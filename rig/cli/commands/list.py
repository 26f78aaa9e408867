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
from rig.engine.procedure import Parameter, format_number

HELP = "list the verification procedures (id, version, requirements, parameters)"
DESCRIPTION = """\
List every procedure in procedures/: id, version, title, the requirement IDs it verifies, and its
parameters with unit, default and allowed range. A procedure module that fails to load is
reported (exit 2) instead of hiding the others.
"""
EPILOG = """\
exit codes:
  0  all procedure modules loaded
  2  at least one procedure module is broken (listed on stderr)
examples:
  rig list
  rig list --json
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("list", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def describe_parameter(p: Parameter) -> str:
    unit = f" {p.unit}" if p.unit else ""
    lo = "" if p.low is None else format_number(p.low)
    hi = "" if p.high is None else format_number(p.high)
    return f"{p.name} = {format_number(p.default)}{unit} ({lo}..{hi})"


def run(args: argparse.Namespace) -> int:
    found = procedures.discover()
    if args.json:
        print(json.dumps({"procedures": [p.describe() for p in found.procedures.values()],
                          "broken": found.broken}, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 200)
        table = Table(title="Procedures", show_lines=True)
        for col in ("id", "version", "title", "requirements", "parameters"):
            table.add_column(col)
        for p in found.procedures.values():
            table.add_row(p.id, p.version, p.title, "\n".join(p.requirements),
                          "\n".join(describe_parameter(x) for x in p.parameters))
        console.print(table)
    for name, why in found.broken.items():
        print(f"rig: error: procedures/{name}.py cannot be loaded: {why}", file=sys.stderr)
    return 2 if found.broken else 0
