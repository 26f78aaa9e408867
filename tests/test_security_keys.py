"""Attack tests, issue 18 finding 9: key files and passphrases.

A key file others can read (or a symbolic link to one) is refused as ssh refuses it; a key folder
others can write is refused; the passphrase taken from the environment is scrubbed and never
reaches a child process; a passphrase that is not UTF-8 is a clear error, not a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reports.keys import KeyFileError, load_key_file
from reports.key_registry import Registry
from reports.synthetic import make_signer, write_record
from rig import secret_env
from rig.cli.main import main

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("RIG_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    keys = tmp_path / "keys"
    registry = Registry(keys / "registry.json")
    key = make_signer(registry, keys, "jdoe", "Jane Doe", ["performed_by"])
    run = write_record(tmp_path / "runs" / "r1", "PASS", duration_s=60.0)
    assert main(["report", "build", str(run)]) == 0
    return {"root": tmp_path, "registry": registry, "key": key, "key_path": keys / "jdoe.key",
            "bundle": run / "report"}


def sign_cli(lab: dict, key_path: Path) -> int:
    return main(["report", "sign", str(lab["bundle"]), "--role", "performed_by", "--key", str(key_path),
                 "--registry", str(lab["registry"].path), "--admin-key-id", *lab["registry"].pinned[:1],
                 "--audit-log", str(lab["root"] / "audit.jsonl")])


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_key_file_readable_or_writable_by_others_is_refused(lab: dict, mode: int, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    os.chmod(lab["key_path"], mode)
    with pytest.raises(KeyFileError, match="group or others"):
        load_key_file(lab["key_path"], PASSPHRASE)
    monkeypatch.setenv("RIG_KEY_PASSPHRASE", PASSPHRASE)
    assert sign_cli(lab, lab["key_path"]) == 2
    assert "chmod 600" in capsys.readouterr().err
    assert not (lab["bundle"] / "signatures").exists()


def test_key_file_behind_a_symbolic_link_is_refused(lab: dict) -> None:
    link = lab["root"] / "innocent.key"
    link.symlink_to(lab["key_path"])
    with pytest.raises(KeyFileError, match="symbolic link"):
        load_key_file(link, PASSPHRASE)


def test_key_folder_writable_by_others_is_refused(lab: dict, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    os.chmod(lab["key_path"].parent, 0o777)  # anyone could swap the key file
    with pytest.raises(KeyFileError, match="writable by group or others"):
        load_key_file(lab["key_path"], PASSPHRASE)
    shared = lab["root"] / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    monkeypatch.setenv("RIG_KEY_PASSPHRASE", PASSPHRASE)
    assert main(["keys", "new", "--id", "rroe", "--name", "Richard Roe", "--roles", "reviewed_by",
                 "--out", str(shared), "--registry", str(lab["registry"].path)]) == 2
    assert "writable by group or others" in capsys.readouterr().err
    assert not (shared / "rroe.key").exists()


def test_passphrase_is_scrubbed_from_the_environment_after_signing(lab: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIG_KEY_PASSPHRASE", PASSPHRASE)
    assert sign_cli(lab, lab["key_path"]) == 0
    assert "RIG_KEY_PASSPHRASE" not in os.environ
    assert PASSPHRASE not in secret_env.child_environment().values()


def test_non_utf8_passphrase_is_a_clear_error(lab: dict, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(os.environb, b"RIG_KEY_PASSPHRASE", b"caf\xe9 latte au lait")
    assert sign_cli(lab, lab["key_path"]) == 2
    err = capsys.readouterr().err
    assert "not valid UTF-8" in err and "Traceback" not in err and "caf" not in err


def test_simulated_bench_child_does_not_inherit_secrets(station_file, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack: read /proc/PID/environ of the bench the controller started."""
    from instruments.sim.launcher import start_sim

    monkeypatch.setenv("RIG_KEY_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("PGPASSWORD", "db-secret-123")
    monkeypatch.setenv("RIG_HISTORY_URL", "postgresql://rig:db-secret-456@db/rig")
    with start_sim(station_file(), timeout_s=60) as sim:
        environ = Path(f"/proc/{sim.pid}/environ").read_bytes()
    assert b"RIG_KEY_PASSPHRASE" not in environ and PASSPHRASE.encode() not in environ
    assert b"db-secret-123" not in environ and b"db-secret-456" not in environ
    assert b"PATH=" in environ  # a usable environment, only without secrets


def test_supervisor_child_does_not_inherit_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    from rig.engine.supervisor import Supervisor

    monkeypatch.setenv("RIG_KEY_PASSPHRASE", PASSPHRASE)
    supervisor = Supervisor.start({"instruments": {}, "station": {}, "mode": "test"})
    try:
        environ = Path(f"/proc/{supervisor.proc.pid}/environ").read_bytes()
    finally:
        supervisor.release()
    assert PASSPHRASE.encode() not in environ
