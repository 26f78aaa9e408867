"""Attack tests, issue 18 findings 8 and 10: symbolic links and resource exhaustion.

Finding 8: a symlink planted in a run directory, a bundle or beside a file we rewrite is never
followed (it is an error naming the file). Finding 10: oversized files, deeply nested JSON and an
endless line to the DMM emulator are refused with bounded memory and time, without a traceback.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from reports import audit
from reports.bundle import build_bundle
from reports.manifest import MAX_HTML_BYTES
from reports.key_registry import Registry
from reports.signing import sign_bundle
from reports.synthetic import make_signer, write_record
from reports.verify import verify_bundle
from rig.cli.main import main
from rig.errors import UsageError
from rig.record import read_record


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("RIG_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    registry = Registry(tmp_path / "keys" / "registry.json")
    key = make_signer(registry, tmp_path / "keys", "jdoe", "Jane Doe", ["performed_by"])
    return {"root": tmp_path, "registry": registry, "key": key}


# -- finding 8: symlinks ----------------------------------------------------------------------------


def test_build_refuses_a_symlink_in_raw_instead_of_copying_its_target(lab: dict) -> None:
    secret = lab["root"] / "secret.txt"
    secret.write_text("the lab's database password")
    os.chmod(secret, 0o600)
    run = write_record(lab["root"] / "runs" / "r1", "PASS", duration_s=60.0)
    (run / "raw" / "notes.txt").symlink_to(secret)
    with pytest.raises(UsageError, match=r"raw/notes.txt.*symbolic link"):
        build_bundle(run)
    assert not (run / "report").exists()
    assert not [p for p in run.iterdir() if p.name.startswith(".report")]  # no partial left behind


def test_build_refuses_a_symlinked_raw_directory(lab: dict) -> None:
    elsewhere = lab["root"] / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "id_rsa").write_text("PRIVATE")
    run = write_record(lab["root"] / "runs" / "r1", "PASS", duration_s=60.0)
    (run / "raw" / "more").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UsageError, match=r"raw/more.*symbolic link"):
        build_bundle(run)


def test_record_jsonl_symlink_is_not_read(lab: dict) -> None:
    run = write_record(lab["root"] / "runs" / "r1", "PASS", duration_s=60.0)
    real = lab["root"] / "elsewhere.jsonl"
    (run / "record.jsonl").rename(real)
    (run / "record.jsonl").symlink_to(real)
    with pytest.raises(UsageError, match="symbolic link"):
        read_record(run)


def test_symlinked_manifest_outside_the_bundle_does_not_verify(lab: dict) -> None:
    run = write_record(lab["root"] / "runs" / "r1", "PASS", duration_s=60.0)
    bundle = build_bundle(run)
    sign_bundle(bundle, lab["key"], "performed_by", lab["registry"])
    assert verify_bundle(bundle, lab["registry"]).ok
    outside = lab["root"] / "manifest-elsewhere.json"
    (bundle / "manifest.json").rename(outside)
    (bundle / "manifest.json").symlink_to(outside)
    check = verify_bundle(bundle, lab["registry"])
    assert not check.ok and any("symbolic link" in r for r in check.reasons())


def test_registry_save_does_not_write_through_a_planted_temporary_file(lab: dict) -> None:
    """Someone with write access to a shared registry folder plants the old fixed temporary name
    (.registry.json.tmp-PID) as a symlink to a file of the administrator's."""
    victim = lab["root"] / "victim.txt"
    victim.write_text("precious")
    folder = lab["registry"].path.parent
    for pid in range(os.getpid() - 5, os.getpid() + 5):
        (folder / f".registry.json.tmp-{pid}").symlink_to(victim)
    lab["registry"].save()
    assert victim.read_text() == "precious"
    assert Registry.load(lab["registry"].path).find(lab["key"].key_id) is not None


def test_audit_log_symlink_is_not_appended_through(lab: dict) -> None:
    victim = lab["root"] / "victim.jsonl"
    victim.write_text("")
    log = lab["root"] / "audit-link.jsonl"
    log.symlink_to(victim)
    with pytest.raises(audit.AuditLogError, match="symbolic link"):
        audit.append_event(log, "test")
    assert victim.read_text() == ""


# -- finding 10: resource exhaustion ------------------------------------------------------------------


def test_huge_report_html_is_refused_without_reading_it(lab: dict) -> None:
    run = write_record(lab["root"] / "runs" / "r1", "PASS", duration_s=60.0)
    bundle = build_bundle(run)
    with open(bundle / "report.html", "ab") as page:
        page.truncate(MAX_HTML_BYTES + 1)  # sparse: no disk used, but larger than allowed
    check = verify_bundle(bundle, lab["registry"], allow_unsigned=True)
    assert not check.ok and any("at most" in r and "report.html" in r for r in check.reasons())


@pytest.mark.parametrize("where", ["manifest.json", "results.json"])
def test_deeply_nested_bundle_json_is_a_reason_not_a_recursion_error(lab: dict, where: str) -> None:
    run = write_record(lab["root"] / "runs" / "r1", "PASS", duration_s=60.0)
    bundle = build_bundle(run)
    (bundle / where).write_bytes(b"[" * 200_000 + b"]" * 200_000)
    check = verify_bundle(bundle, lab["registry"], allow_unsigned=True)
    assert not check.ok and any("levels deep" in r for r in check.reasons())


def test_deeply_nested_audit_line_is_reported_not_a_traceback(lab: dict, capsys: pytest.CaptureFixture[str]) -> None:
    log = lab["root"] / "audit.jsonl"
    audit.append_event(log, "test")
    with open(log, "ab") as handle:
        handle.write(b"[" * 200_000 + b"]" * 200_000 + b"\n")
    assert main(["audit", "verify", str(log)]) == 1
    out = capsys.readouterr().out
    assert "line 2" in out and "levels deep" in out


def test_deeply_nested_record_line_is_a_usage_error(tmp_path: Path) -> None:
    run = write_record(tmp_path / "r1", "PASS", duration_s=60.0)
    lines = (run / "record.jsonl").read_bytes().splitlines(keepends=True)
    nested = b'{"type": "event", "detail": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    (run / "record.jsonl").write_bytes(b"".join([lines[0], nested, *lines[1:]]))
    with pytest.raises(UsageError, match="levels deep"):
        read_record(run)


def test_dmm_input_without_newline_is_bounded_and_the_instrument_still_answers(sim_server) -> None:
    """19 MB without a newline used to take 17 s of quadratic rescanning and unbounded memory."""
    from instruments.sim.transports import MAX_REQUEST_BYTES

    host_port = sim_server.resources()["instruments"]["dmm"].split("::")
    with socket.create_connection((host_port[1], int(host_port[2])), timeout=30) as conn:
        chunk = b"A" * 65536
        for _ in range((4 * MAX_REQUEST_BYTES) // len(chunk)):
            conn.sendall(chunk)
        conn.sendall(b"\n*IDN?\n")
        replies = conn.makefile("rb")
        identity = replies.readline()
        conn.sendall(b"SYST:ERR?\n")
        error = replies.readline()
    assert identity.startswith(b"Keysight Technologies,34465A,")
    assert error == b'-363,"Input buffer overrun"\n'  # as the instrument reports it; then the queue is empty
