"""User-facing errors of the controller, each mapped to a CLI exit code.

Why a hierarchy: the CLI turns any of these into one clear message and an exit code, never a
traceback. Anything else escaping to the CLI is a bug.
"""


class RigError(Exception):
    """Base of every error the CLI reports without a traceback."""

    exit_code = 3


class UsageError(RigError):
    """Bad command-line input, bad parameters, bad station or suite file (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """The station file is invalid. Holds one message per problem."""

    def __init__(self, problems: list[str], source: str = "station file") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source} is invalid ({len(self.problems)} problem(s)):\n{lines}")


class BenchError(RigError):
    """An instrument is unreachable or misbehaves (exit 3)."""

    exit_code = 3


class SimulatedBenchError(RigError):
    """The simulated bench's control channel refused or could not answer (exit 3).

    Why here and not in instruments.sim: the engine must classify it without importing the
    simulated bench, which only the bench assembly may load.
    """

    exit_code = 3
