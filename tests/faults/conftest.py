"""Fixtures of the fault-injection suite (tests/faults).

``lab``          session (per xdist worker): a key registry with a performer (jdoe: performed_by,
                 reviewed_by) and a reviewer/approver (rroe), built with the reports package's own
                 ``make_signer`` (cheap scrypt cost; the registry rules are the production ones).
``passing_run``  session (per worker): one fault-free run of the matrix procedure on a fresh
                 simulated bench — the control cell (it must PASS, or the matrix proves nothing) and
                 the record the report-phase cells build bundles from.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faults import harness
from reports.key_registry import Registry
from reports.synthetic import make_signer


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("lab")
    registry = Registry(root / "keys" / "registry.json")
    return {
        "registry": registry,
        "audit": root / "audit.jsonl",
        "jdoe": make_signer(registry, root / "keys", "jdoe", "Jane Doe", ["performed_by", "reviewed_by"]),
        "rroe": make_signer(registry, root / "keys", "rroe", "Richard Roe", ["reviewed_by", "approved_by"]),
    }


@pytest.fixture(scope="session")
def passing_run(tmp_path_factory: pytest.TempPathFactory) -> harness.CellRun:
    return harness.run_in_process(None, None, tmp_path_factory.mktemp("control"))


@pytest.fixture
def passing_copy(passing_run: harness.CellRun, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the passing run's directory (report cells write bundles into it)."""
    target = tmp_path / "runs" / passing_run.run_dir.name
    shutil.copytree(passing_run.run_dir, target)
    yield target
