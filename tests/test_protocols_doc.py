"""docs/protocols.md stays true: its coverage counts match its command tables, and every test it
cites as pinning a command exists (a renamed or deleted test would leave a command unpinned)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "docs" / "protocols.md").read_text(encoding="utf-8")
SECTIONS = {  # coverage row -> heading of the section with its command table
    "NE-1000 syringe pump": "## NE-1000 syringe pump",
    "Reglo ICC peristaltic pump": "## Reglo ICC peristaltic pump",
    "MT-SICS balance (levels 0 and 1)": "## MT-SICS balance",
    "SCPI DMM (IEEE 488.2 common + DC-volts role)": "## SCPI DMM",
}
_CITED = re.compile(r"(test_[a-z0-9_]+\.py)::(test_[A-Za-z0-9_]+)")


def section(heading: str) -> str:
    start = DOC.index(heading)
    end = DOC.find("\n## ", start + 1)
    return DOC[start:end if end > 0 else None]


def command_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and _CITED.search(cells[-1] if cells else ""):
            rows.append(cells)
    return rows


def functions_in(file: str) -> set[str]:
    tree = ast.parse((REPO / "tests" / file).read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def coverage() -> dict[str, tuple[int, int, int, int]]:
    table = DOC[DOC.index("## Coverage"):]
    found = {}
    for name in SECTIONS:
        match = re.search(rf"^\| {re.escape(name)} \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$", table, re.M)
        assert match, f"no coverage row for {name}"
        found[name] = tuple(int(g) for g in match.groups())
    return found


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_coverage_counts_match_the_command_table(name: str) -> None:
    rows = command_rows(section(SECTIONS[name]))
    driver = sum(1 for r in rows if r[-3] == "yes")
    served = sum(1 for r in rows if r[-2] == "yes")
    tested = sum(1 for r in rows if _CITED.search(r[-1]))
    assert coverage()[name] == (len(rows), served, driver, tested)


def test_every_cited_test_exists() -> None:
    missing = [f"{file}::{func}" for file, func in _CITED.findall(DOC) if func not in functions_in(file)]
    assert missing == []
