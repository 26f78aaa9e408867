"""Which code ran: version and git commit, for the run record and the report bundle alike.

Why one module at the bottom of the package: the engine (what ran the procedure) and reports
(what built the bundle) must describe the software the same way, without importing each other.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

from rig import __version__
from rig.secret_env import child_environment


@functools.lru_cache(maxsize=1)
def software_identity() -> dict[str, Any]:
    """Version, git commit and dirty flag of this checkout (None where git cannot tell)."""
    root = Path(__file__).resolve().parent
    info: dict[str, Any] = {"version": __version__, "git_sha": None, "git_dirty": None}
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, env=child_environment())
        if sha.returncode == 0:
            info["git_sha"] = sha.stdout.strip()
            status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10, env=child_environment())
            info["git_dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return info
