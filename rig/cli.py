"""The `rig` command: discovers subcommands in rig.commands and maps errors to exit codes.

Exit codes: 0 success/PASS, 1 FAIL, 2 usage or configuration error, 3 ABORTED/ERROR or bench error.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from rig import __version__
from rig.errors import RigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rig",
        description="Controller for the intrathecal pump verification rig.",
    )
    parser.add_argument("--version", action="version", version=f"rig {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import rig.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"rig.commands.{info.name}")
        module.register(subparsers)
    return parser




def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = args.func(args)
    except RigError as exc:
        print(f"rig: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rig: interrupted", file=sys.stderr)
        return 3
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
