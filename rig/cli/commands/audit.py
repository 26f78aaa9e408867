"""`rig audit verify [FILE]`: check the hash-chained audit log.

Why a command: the log is only useful if anyone can check it; an edited, deleted or reordered
line is reported with its line number and exit code 1.
"""

from __future__ import annotations

import argparse
from typing import Any

from reports import audit
from reports.registry import default_registry_path
from rig.errors import UsageError
from rig.textsafe import for_terminal


def cmd_verify(args: argparse.Namespace) -> int:
    path = audit.resolve_log_path(args.file, near=default_registry_path().parent)
    if not path.is_file():
        raise UsageError(f"no audit log at {path}")
    check = audit.verify_log(path, expect_head=args.head)
    if check.ok:
        print(for_terminal(f"audit log {path}: OK, {check.entries} entries, head {check.head}"))
        return 0
    print(for_terminal(f"audit log {path}: BROKEN after {check.entries} good entries"))
    for problem in check.problems:
        print(f"  - {for_terminal(problem)}")
    return 1


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("audit", help="check the hash-chained audit log",
                                   description=audit.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="audit_command", metavar="VERB", required=True)
    verify = verbs.add_parser("verify", help="detect edited, deleted or reordered entries (exit 1)")
    verify.add_argument("file", nargs="?", metavar="FILE",
                        help="audit log (default $RIG_AUDIT_LOG, else audit.jsonl next to the key registry)")
    verify.add_argument("--head", metavar="HASH", help="a head hash noted earlier: fail if it is no longer in the log")
    verify.set_defaults(func=cmd_verify)
