"""The `rig` command: discovers subcommands in rig.cli.commands and maps errors to exit codes.

Exit codes: 0 success/PASS, 1 FAIL, 2 usage or configuration error, 3 ABORTED/ERROR or bench error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from rig import __version__
from rig.cli.early_bench import start_bench_early, stop_unopened_benches
from rig.errors import RigError
from rig.textsafe import for_terminal


def command_names() -> list[str]:
    """Every subcommand: one module per command in rig.cli.commands, named like the command."""
    import rig.cli.commands as commands

    return sorted(m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_"))


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, just that subcommand's module is imported.

    Why: command modules import what their command needs (matplotlib for reports, nidaqmx for
    the bench); `rig sim serve` or `rig check` should not pay a second of start-up for the others.
    """
    parser = argparse.ArgumentParser(
        prog="rig",
        description="Controller for the intrathecal pump verification rig.",
    )
    parser.add_argument("--version", action="version", version=f"rig {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_names():
        if only is None or name == only:
            importlib.import_module(f"rig.cli.commands.{name}").register(subparsers)
    return parser


def _requested_command(argv: Sequence[str]) -> str | None:
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in command_names() else None




def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _requested_command(argv)
    start_bench_early(command, argv)
    try:
        return _dispatch(command, argv)
    finally:
        stop_unopened_benches()


def _dispatch(command: str | None, argv: list[str]) -> int:
    parser = build_parser(only=command)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = args.func(args)
    except RigError as exc:
        _say(f"rig: error: {for_terminal(exc, multiline=True)}")
        code = exc.exit_code
    except KeyboardInterrupt:
        _say("rig: interrupted")
        code = 3
    except BrokenPipeError:  # the reader of our output went away (`rig list | head -1`)
        code = 0
    _flush_or_drop()
    return int(code or 0)


def _say(text: str) -> None:
    """A message on stderr, unless stderr is gone too."""
    try:
        print(text, file=sys.stderr)
    except (OSError, ValueError):
        pass


def _flush_or_drop() -> None:
    """Flush stdout now; if its reader is gone, point it at /dev/null so the interpreter's own
    flush at exit has nothing to complain about (no "Exception ignored ... BrokenPipeError")."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        try:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, sys.stdout.fileno())
            os.close(fd)
        except (OSError, ValueError):
            pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
