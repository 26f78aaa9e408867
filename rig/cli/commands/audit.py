"""`rig audit verify [FILE]` and `rig audit mirror`: check the hash-chained audit log, and keep
and compare its copy in the history database.

Why a command: the log is only useful if anyone can check it; an edited, deleted or reordered
line is reported with its line number and exit code 1. A log cut at its end or rewritten with
fresh hashes is found against the bundles' anchors (--bundle), a head noted elsewhere (--head),
or the append-only mirror in the history database (--mirror; rig.fleet.history_audit).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from reports import audit
from rig.cli.trust import audit_path, station_of
from rig.errors import UsageError
from rig.textsafe import for_terminal


def _log_path(args: argparse.Namespace) -> Path:
    path = audit.resolve_log_path(args.file) if args.file else audit_path(args)
    if not path.is_file():
        raise UsageError(f"no audit log at {path}")
    return path


def _mirror(args: argparse.Namespace, path: Path, *, append: bool) -> Any:
    """The file compared with (and with ``append``, copied into) the history's audit mirror."""
    from rig.fleet.history import URL_ENV, open_history, redact
    from rig.fleet.history_audit import compare
    from rig.station.history_url import station_url

    station = station_of(args)
    if station is None and not getattr(args, "history", None) and not os.environ.get(URL_ENV):
        raise UsageError(f"no history database for the audit mirror: give --history URL, set ${URL_ENV}, "
                         "or --station FILE (its [history] url)")
    url = station_url(station, getattr(args, "history", None))
    with open_history(url) as history:
        check = compare(history, path, append=append)
    check.where = redact(url)  # type: ignore[attr-defined]
    return check


def mirror_after_write(args: argparse.Namespace, path: Path) -> str | None:
    """After a command wrote to the audit log: copy the new entries to the mirror when the station
    asks for it ([history] audit_mirror). Never fails the command (what it logged happened); returns
    a line to print (terminal-safe) when the copy failed or the file disagrees with the mirror, else None."""
    station = station_of(args)
    if not ((getattr(station, "sections", {}) or {}).get("history") or {}).get("audit_mirror"):
        return None
    try:
        mirror = _mirror(args, path, append=True)
    except Exception as exc:  # noqa: BLE001 - see above: reported, run `rig audit mirror` later
        return for_terminal(f"rig: warning: audit entries not copied to the mirror ({exc}); run `rig audit mirror`")
    if mirror.problems:
        return for_terminal("rig: warning: the audit log disagrees with its mirror, nothing copied: "
                            + "; ".join(mirror.problems))
    return None


def _mirror_wanted(args: argparse.Namespace) -> bool:
    """--mirror, or the station (the one named, or whose trail is checked) keeps a mirror."""
    if args.mirror:
        return True
    if args.file and not args.station:
        return False  # a log file given by hand: compared with a mirror only when asked
    station = station_of(args)
    return bool(((getattr(station, "sections", {}) or {}).get("history") or {}).get("audit_mirror"))


def cmd_verify(args: argparse.Namespace) -> int:
    path = _log_path(args)
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
    mirror_line = None
    if check.ok and _mirror_wanted(args):
        mirror = _mirror(args, path, append=False)
        check.problems += [f"audit mirror {mirror.where}: {p}" for p in mirror.problems]
        mirror_line = f"mirror {mirror.where}: {mirror.mirrored} entries agree"
    if check.ok:
        print(for_terminal(f"audit log {path}: OK, {check.entries} entries, head {check.head}"))
        if mirror_line:
            print(for_terminal(mirror_line))
        return 0
    print(for_terminal(f"audit log {path}: BROKEN after {check.entries} good entries"))
    for problem in check.problems:
        print(f"  - {for_terminal(problem)}")
    return 1


def cmd_mirror(args: argparse.Namespace) -> int:
    path = _log_path(args)
    mirror = _mirror(args, path, append=True)
    if mirror.problems:
        print(for_terminal(f"audit log {path} disagrees with its mirror {mirror.where}; nothing was copied:"))
        for problem in mirror.problems:
            print(f"  - {for_terminal(problem)}")
        return 1
    print(for_terminal(f"audit log {path}: {mirror.appended} new entries copied to {mirror.where} "
                       f"({mirror.mirrored + mirror.appended} mirrored, the file has {mirror.file_entries})"))
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("audit", help="check the hash-chained audit log and its mirror",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="audit_command", metavar="VERB", required=True)
    verify = verbs.add_parser("verify", help="detect edited, deleted, reordered, cut or rewritten entries (exit 1)",
                              description=audit.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mirror = verbs.add_parser("mirror", help="copy new entries into the history database's append-only audit_mirror "
                                             "(exit 1, nothing copied, when the file disagrees with it)")
    for verb in (verify, mirror):
        verb.add_argument("file", nargs="?", metavar="FILE",
                          help="audit log (default $RIG_AUDIT_LOG, else the station file's audit_log)")
        verb.add_argument("--station", metavar="FILE", default=None,
                          help="station file naming the audit trail (default $RIG_STATION, else ./rig.toml)")
        verb.add_argument("--history", metavar="URL", default=None,
                          help="history database holding the mirror (default $RIG_HISTORY_URL, else the station's "
                               "[history] url)")
    verify.add_argument("--head", metavar="HASH", help="a head hash noted earlier: fail if it is no longer in the log")
    verify.add_argument("--bundle", metavar="BUNDLE", nargs="+", default=None,
                        help="report bundles whose signatures anchor this log: fail if an anchored entry is missing "
                             "(truncated) or different (rewritten), or a signature's entry was cut out")
    verify.add_argument("--mirror", action="store_true",
                        help="compare with the append-only mirror in the history database (the default when the "
                             "station sets [history] audit_mirror = true): fail on a cut or rewritten log")
    verify.set_defaults(func=cmd_verify)
    mirror.set_defaults(func=cmd_mirror)
