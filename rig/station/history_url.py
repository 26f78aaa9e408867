"""Where the history database is: the URL rules shared by the station file and rig.fleet.history.

Why in rig.station: the station file validates its [history] url when it loads, and the station
layer must not import the fleet above it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rig.errors import UsageError

URL_ENV = "RIG_HISTORY_URL"
DEFAULT_FILE_NAME = "history.sqlite3"



def url_problem(url: str, *, allow_password: bool = False) -> str | None:
    """Why ``url`` is not a history URL we can open, or None (used by rig.station.config). A password is
    refused unless ``allow_password`` (a URL from a CI secret, not from the station file)."""
    if not isinstance(url, str) or not url.strip():
        return "is empty; expected \"sqlite:///PATH\" or \"postgresql://USER@HOST/DB\""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
            return (f"{url!r} is not a SQLite URL; expected \"sqlite:///relative/path.sqlite3\" "
                    "(relative to the station file) or \"sqlite:////absolute/path.sqlite3\"")
        return None
    if scheme in ("postgresql", "postgres"):
        parts = urlsplit(url)
        if not parts.path.strip("/"):
            return f"{redact(url)!r} names no database; expected \"postgresql://USER@HOST[:PORT]/DATABASE\""
        if parts.password and not allow_password:
            return ("contains a password; keep it out of the station file (use PGPASSWORD, ~/.pgpass "
                    f"or ${URL_ENV})")
        return None
    return (f"{redact(url)!r} has an unsupported scheme {scheme!r}; expected \"sqlite:///PATH\" or "
            "\"postgresql://USER@HOST/DB\"")


def resolve_url(url: str, base: Path) -> str:
    """A relative SQLite path means "next to the station file" (like runs_dir), not the CWD."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):]).expanduser()
        if not path.is_absolute():
            path = (Path(base) / path).resolve()
        return f"sqlite:///{path}"
    return url


def default_url(runs_dir: Path) -> str:
    return f"sqlite:///{Path(runs_dir) / DEFAULT_FILE_NAME}"


def station_url(station: Any, override: str | None = None) -> str:
    """Explicit override, else $RIG_HISTORY_URL, else the station's [history] url, else the default."""
    for candidate in (override, os.environ.get(URL_ENV, "").strip() or None):
        if candidate:
            problem = url_problem(candidate, allow_password=True)  # env/flag: a secret may hold one
            if problem:
                raise UsageError(f"history URL {problem}")
            return resolve_url(candidate, Path.cwd())
    configured = (getattr(station, "sections", {}) or {}).get("history", {}).get("url")
    return configured or default_url(station.runs_dir)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
