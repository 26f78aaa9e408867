"""Secrets passed through the environment: taken once, scrubbed, never handed to children.

Why: CI hands the station key's passphrase (and sometimes a database URL with a password) to
`rig` in environment variables, because an unattended run cannot be prompted. Left in
``os.environ`` they are inherited by every child process (the simulated bench, the supervisor,
git) and readable by anyone who can read those processes' ``/proc/PID/environ`` for as long as
they live. So a secret is read with ``take``, which removes the variable from this process's
environment at once (the value is kept in memory for a second read in the same process), and
children are started with ``child_environment()``, which drops every variable taken and every
variable whose name says it holds a secret.

What it does not do: the kernel keeps the environment block the process was *started* with, so
this process's own ``/proc/self/environ`` (readable by the same user and root only) still shows
the value; the parent that set it (the CI runner) has it too.
"""

from __future__ import annotations

import os
import re

from rig.errors import UsageError

# Names that hold secrets by convention; dropped from every child's environment.
SECRET_NAME = re.compile(r"PASSWORD|PASSPHRASE|SECRET|TOKEN|PGPASS|CREDENTIAL|RIG_HISTORY_URL", re.IGNORECASE)

_taken: dict[str, str] = {}
_names: set[str] = set()


def take(name: str) -> str | None:
    """The value of environment variable ``name`` (None when unset or empty), removed from the environment.

    A value that is not valid UTF-8 is a UsageError naming the variable (never a traceback, never
    the value). A variable set again later wins over the value taken before.
    """
    _names.add(name)
    raw = os.environb.get(name.encode("utf-8", "surrogateescape"))
    if raw is not None:
        os.environ.pop(name, None)
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            _taken.pop(name, None)
            raise UsageError(f"${name} is not valid UTF-8 text; set it to the passphrase in UTF-8") from None
        if value:
            _taken[name] = value
        else:
            _taken.pop(name, None)
    return _taken.get(name)


def forget(name: str | None = None) -> None:
    """Drop a taken value (all of them without ``name``): the next ``take`` sees only the environment."""
    if name is None:
        _taken.clear()
    else:
        _taken.pop(name, None)


def is_secret_name(name: str) -> bool:
    return name in _names or bool(SECRET_NAME.search(name))


def child_environment(**extra: str) -> dict[str, str]:
    """A copy of the environment without secrets, plus ``extra``: what every child process gets."""
    env = {k: v for k, v in os.environ.items() if not is_secret_name(k)}
    env.update(extra)
    return env
