"""The hash-chained audit log: any edit, deletion or reordering is found, with its line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reports.audit import append_event, verify_log
from rig.cli.main import main


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    for i in range(5):
        append_event(path, "report_built", report_id=f"RPT-{i}", verdict="PASS")
    return path


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_intact_log_verifies(log: Path) -> None:
    check = verify_log(log)
    assert check.ok and check.entries == 5
    assert check.head == json.loads(lines(log)[-1])["hash"]
    assert verify_log(log, expect_head=check.head).ok


def test_edit_is_detected(log: Path) -> None:
    data = lines(log)
    data[2] = data[2].replace(b"RPT-2", b"RPT-X")
    log.write_bytes(b"".join(data))
    check = verify_log(log)
    assert not check.ok and check.problems[0].startswith("line 3:") and "edited" in check.problems[0]


def test_recomputed_hash_still_breaks_the_chain(log: Path) -> None:
    """An editor who also fixes the line's own hash breaks the next line's prev link."""
    from reports.audit import entry_hash
    from reports.canonical import canonical_json

    data = lines(log)
    entry = json.loads(data[1])
    entry["data"]["verdict"] = "FAIL"
    entry["hash"] = entry_hash(entry)
    data[1] = canonical_json(entry) + b"\n"
    log.write_bytes(b"".join(data))
    check = verify_log(log)
    assert not check.ok and check.problems[0].startswith("line 3:")


@pytest.mark.parametrize("mutate,where", [
    (lambda d: d[:2] + d[3:], "line 3:"),             # deletion
    (lambda d: [d[0], d[2], d[1], *d[3:]], "line 2:"),  # reordering
    (lambda d: d[1:], "line 1:"),                      # deletion of the first line
])
def test_delete_and_reorder_are_detected(log: Path, mutate, where: str) -> None:
    log.write_bytes(b"".join(mutate(lines(log))))
    check = verify_log(log)
    assert not check.ok and check.problems[0].startswith(where)


def test_truncation_is_detected_against_a_noted_head(log: Path) -> None:
    head = verify_log(log).head
    log.write_bytes(b"".join(lines(log)[:-1]))
    assert verify_log(log).ok  # the file alone cannot tell
    assert not verify_log(log, expect_head=head).ok


def test_cli_audit_verify(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", str(log)]) == 0
    data = lines(log)
    log.write_bytes(b"".join(data[:1] + data[2:]))
    assert main(["audit", "verify", str(log)]) == 1
    assert "line 2:" in capsys.readouterr().out
    assert main(["audit", "verify", str(log.with_name("none.jsonl"))]) == 2
