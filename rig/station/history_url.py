"""Where the history database is: the URL rules shared by the station file and rig.fleet.history.

Why in rig.station: the station file validates its [history] url when it loads, and the station
layer must not import the fleet above it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from rig import secret_env
from rig.errors import UsageError

URL_ENV = "RIG_HISTORY_URL"
DEFAULT_FILE_NAME = "history.sqlite3"
# libpq connection parameters (and common spellings) that carry a secret when given in the query.
SECRET_QUERY_KEY = re.compile(r"^(password|passwd|pwd|pass|sslpassword|secret|token|api_?key)$", re.IGNORECASE)
COMMAND_LINE_PASSWORD = ("a password on the command line is visible to every user in `ps`; give the URL in "
                         f"${URL_ENV} (read once and scrubbed), or keep the password in PGPASSWORD or ~/.pgpass")


def secrets_in(url: str) -> list[str]:
    """The secret values a URL carries: the userinfo password and secret query parameters."""
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
        found += [v for k, v in parse_qsl(parts.query, keep_blank_values=False) if SECRET_QUERY_KEY.match(k)]
    except ValueError:
        return []
    return [s for s in found if s]


def scrub(text: str, url: str) -> str:
    """``text`` (an error message, a log line) with every secret of ``url`` replaced by ***."""
    for secret in sorted(secrets_in(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text



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
        if secrets_in(url) and not allow_password:
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
    """Explicit override, else $RIG_HISTORY_URL, else the station's [history] url, else the default.

    A password in ``override`` (a command-line option, visible in `ps`) is refused; the one in the
    environment variable is allowed (it is taken once and scrubbed, see rig.secret_env)."""
    if override and secrets_in(override):
        raise UsageError(f"history URL {redact(override)!r}: {COMMAND_LINE_PASSWORD}")
    for candidate in (override, (secret_env.take(URL_ENV) or "").strip() or None):
        if candidate:
            problem = url_problem(candidate, allow_password=True)  # env/flag: a secret may hold one
            if problem:
                raise UsageError(f"history URL {problem}")
            return resolve_url(candidate, Path.cwd())
    configured = (getattr(station, "sections", {}) or {}).get("history", {}).get("url")
    return configured or default_url(station.runs_dir)


def redact(url: str) -> str:
    """The URL without its secrets (userinfo password, secret query parameters), for messages and logs."""
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return "<unparseable URL>"
    if not secrets_in(url):
        return url
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", ":***@")
    query_text = urlencode([(k, "***" if SECRET_QUERY_KEY.match(k) else v) for k, v in query], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query_text))
