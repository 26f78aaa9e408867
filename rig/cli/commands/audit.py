"""`rig audit verify [FILE]`: check the hash-chained audit log.

Why a command: the log is only useful if anyone can check it; an edited, deleted or reordered
line is reported with its line number and exit code 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from reports import audit
from rig.cli.trust import audit_path
from rig.errors import UsageError
from rig.textsafe import for_terminal


def cmd_verify(args: argparse.Namespace) -> int:
    path = audit.resolve_log_path(args.file) if args.file else audit_path(args)
    if not path.is_file():
        raise UsageError(f"no audit log at {path}")
    anchors, expected, problems = [], [], []
    if args.bundle:
        from reports.verify import bundle_anchors

        try:
            log_id = audit.anchor_of(path)["log_id"]
        except (OSError, ValueError) as exc:
            log_id, problems = None, [f"cannot read the log's first entry: {exc}"]
        for bundle in args.bundle:
            found = bundle_anchors(Path(bundle), log_id)
            anchors += found[0]
            expected += found[1]
            problems += found[2]
    try:
        check = audit.verify_log(path, expect_head=args.head, anchors=anchors, expected=expected)
    except OSError as exc:
        raise UsageError(f"cannot read audit log {path}: {exc.strerror or exc}") from None
    check.problems += problems
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
                        help="audit log (default $RIG_AUDIT_LOG, else the station file's audit_log)")
    verify.add_argument("--station", metavar="FILE", default=None,
                        help="station file naming the audit trail (default $RIG_STATION, else ./rig.toml)")
    verify.add_argument("--head", metavar="HASH", help="a head hash noted earlier: fail if it is no longer in the log")
    verify.add_argument("--bundle", metavar="BUNDLE", nargs="+", default=None,
                        help="report bundles whose signatures anchor this log: fail if an anchored entry is missing "
                             "(truncated) or different (rewritten), or a signature's entry was cut out")
    verify.set_defaults(func=cmd_verify)
