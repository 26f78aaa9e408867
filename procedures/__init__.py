"""The verification procedures: every module here that defines ``PROCEDURE`` is one.

Why discovery by module: adding a procedure is adding one file (plus its spec file), never editing
a list. The module name should equal the procedure id, so `rig run ID` imports only that module
and a broken sibling cannot stop it; `rig list` imports all of them and reports broken ones
instead of crashing.

Procedures outside this package (test-only procedures such as the fault-injection matrix's, under
tests/faults/) are added by naming their modules, comma-separated, in ``$RIG_EXTRA_PROCEDURES``
(e.g. ``faults.fault_matrix``, importable from ``sys.path``); the env var keeps test code out of
the shipped package while `rig run` finds them through the same discovery.
"""

from __future__ import annotations

import difflib
import importlib
import os
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path

from rig.engine.procedure import Procedure
from rig.errors import UsageError

EXTRA_ENV = "RIG_EXTRA_PROCEDURES"


@dataclass
class Discovery:
    procedures: dict[str, Procedure] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # module name -> why it did not load


def _from_module(module_name: str) -> Procedure | None:
    qualified = module_name if "." in module_name else f"{__name__}.{module_name}"
    module = importlib.import_module(qualified)
    procedure = getattr(module, "PROCEDURE", None)
    if procedure is None:
        return None
    if not isinstance(procedure, Procedure):
        raise TypeError(f"PROCEDURE is a {type(procedure).__name__}, not a rig.engine.procedure.Procedure")
    return procedure.bound(Path(module.__file__ or ""))


def module_names() -> list[str]:
    return sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))


def extra_module_names() -> list[str]:
    """Fully qualified modules named in $RIG_EXTRA_PROCEDURES (see the module docstring)."""
    return [name.strip() for name in os.environ.get(EXTRA_ENV, "").split(",") if name.strip()]


def discover() -> Discovery:
    """Every procedure, by id; modules that fail to import are listed in ``broken``."""
    found = Discovery()
    for name in module_names() + extra_module_names():
        try:
            procedure = _from_module(name)
        except Exception as exc:  # noqa: BLE001 - one broken module must not hide the others
            found.broken[name] = f"{type(exc).__name__}: {exc}"
            continue
        if procedure is None:
            continue
        if procedure.id in found.procedures:
            found.broken[name] = f"duplicate procedure id {procedure.id!r}"
            continue
        found.procedures[procedure.id] = procedure
    return found


def load(procedure_id: str) -> Procedure:
    """The procedure named ``procedure_id``; UsageError lists what exists."""
    if procedure_id in module_names():
        try:
            procedure = _from_module(procedure_id)
        except Exception as exc:  # noqa: BLE001 - report which module is broken and why
            raise UsageError(f"procedure module procedures/{procedure_id}.py cannot be loaded: "
                             f"{type(exc).__name__}: {exc}") from exc
        if procedure is not None and procedure.id == procedure_id:
            return procedure
    found = discover()
    if procedure_id in found.procedures:
        return found.procedures[procedure_id]
    known = sorted(found.procedures)
    close = difflib.get_close_matches(procedure_id, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise UsageError(f"unknown procedure {procedure_id!r}{hint}; available: {', '.join(known) or 'none'} "
                     "(see `rig list`)")


__all__ = ["Discovery", "discover", "load", "module_names"]
