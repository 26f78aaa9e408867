"""Who may operate a station: the recorded operator of every run is an identity, never free text.

Why one place: `rig run --operator`, the nightly suite's ``operator`` and anything else that
starts a run must apply the same rule (issue 17: performed_by must be signed by the recorded
operator's key, so the recorded operator has to be someone the station knows). The rule: never
empty; when the station names operators (its ``[operators] names``) or its key registry has
signers, one of those printed names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rig.errors import RigError, UsageError
from rig.textsafe import name_problem


def known_operators(station: Any) -> list[str]:
    """Printed names that may operate: the station's [operators] names and every signer in its key
    registry (whoever will sign performed_by must be the recorded operator)."""
    names = list(getattr(station, "operators", ()) or ())
    registry_path = getattr(station, "key_registry", None)
    if registry_path is not None and Path(registry_path).is_file():
        from reports.key_registry import Registry

        try:
            names += [k.printed_name for k in Registry.load(Path(registry_path)).keys]
        except RigError:
            pass  # a damaged registry is reported where it is used; the operator list still applies
    return sorted(set(names))


def operator_identity(given: str | None, station: Any, *, default: str, field: str = "--operator") -> str:
    """The recorded operator: ``given`` (else ``default``), never empty; when the station names its
    operators (or has signers), one of them. UsageError naming ``field`` otherwise."""
    if given is not None and not given.strip():
        raise UsageError(f"{field} is empty; give the operator's printed name as in the key registry "
                         "or the station's [operators] names")
    name = (given if given is not None else default).strip()
    problem = name_problem(name, field)
    if problem:
        raise UsageError(problem)
    allowed = known_operators(station)
    if allowed and name not in allowed:
        raise UsageError(f"{field} {name!r} is not a known operator of station {station.id}; known: "
                         f"{', '.join(allowed)} (station [operators] names and key registry signers)")
    return name


__all__ = ["known_operators", "operator_identity"]
